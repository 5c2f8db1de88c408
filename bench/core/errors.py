"""The one exception type for what a user did wrong.

The CLI turns a :class:`UserError` into one line on stderr and exit status 2.
Anything else that escapes is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: an unknown name, a malformed option, a missing data file."""
