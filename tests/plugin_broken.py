"""A plugin module that fails on import (tests/test_bad_input.py): not a test module."""

raise RuntimeError("this plugin is broken on purpose")
