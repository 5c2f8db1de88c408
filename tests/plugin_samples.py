"""Plugin classes for the tests (not a test module): bad ones that the checks refuse with one line
(``tests/test_bad_input.py``), and a good one whose text is hostile HTML (``tests/test_plugins.py``)."""

from removal_bench.core.params import Param
from removal_bench.datasets.base import Dataset
from removal_bench.methods.base import Method
from removal_bench.methods.vanilla import Vanilla


class NotAMethod:
    name = "not_a_method"
    description = "a plain class"


class NoUpdate(Method):
    name = "no_update"
    description = "never trains"


class TakesIrene(Vanilla):
    name = "irene"
    description = "takes a built-in name"


class StrengthNotDeclared(Vanilla):
    name = "strength_not_declared"
    description = "a strength that is not a hyperparameter"
    strength = {"gamma": (0.1, 10.0)}


class HtmlName(Vanilla):
    name = "<b>bold</b>"
    description = "a name that is markup"


class NoDescription(Vanilla):
    name = "no_description"


class NoLoad(Dataset):
    name = "no_load"
    description = "loads nothing"


class TakesAdult(Dataset):
    name = "adult"
    description = "takes a built-in name"

    def load(self, options, data_root):
        raise AssertionError("never loaded")


class Hostile(Vanilla):
    """Trains as vanilla; its description and a hyperparameter's value are HTML that must stay text."""

    name = "hostile"
    description = '<script>document.title="pwned"</script> a "quoted" & \'single\' description'
    hparams = {"mode": Param("plain", "a choice whose other value is markup",
                             choices=("plain", '<script>document.title="pwned"</script>"\'&'))}
