import pytest

from removal_bench.core.errors import UserError
from removal_bench.core.params import Choice, LogUniform, Param, resolve, sample


def test_resolve_parses_strings_and_keeps_defaults():
    declared = {"gamma": Param(0.2), "steps": Param(3), "ramp": Param(True), "kind": Param("a", choices=("a", "b"))}
    values = resolve("m", declared, {"gamma": "1.5", "ramp": "false", "kind": "b"})
    assert values == {"gamma": 1.5, "steps": 3, "ramp": False, "kind": "b"}


@pytest.mark.parametrize("given, fragment", [
    ({"nope": "1"}, "has no option 'nope'"),
    ({"gamma": "abc"}, "expected a float"),
    ({"steps": "2.5"}, "expected a int"),
    ({"gamma": "-1"}, "below the minimum"),
    ({"kind": "c"}, "not one of"),
])
def test_resolve_rejects_bad_values_with_a_clear_message(given, fragment):
    declared = {"gamma": Param(0.2, low=0.0), "steps": Param(3), "kind": Param("a", choices=("a", "b"))}
    with pytest.raises(UserError, match=fragment):
        resolve("m", declared, given)


def test_sampling_is_reproducible_and_independent_of_other_parameters():
    declared = {"gamma": Param(0.2, space=LogUniform(0.01, 10)), "lr": Param(0.1, space=LogUniform(1e-3, 1))}
    first = [sample(declared, "irene", 7, i) for i in range(5)]
    assert first == [sample(declared, "irene", 7, i) for i in range(5)]
    extended = dict(declared, extra=Param("x", space=Choice(("x", "y"))))
    again = [sample(extended, "irene", 7, i) for i in range(5)]
    assert [d["gamma"] for d in again] == [d["gamma"] for d in first]
    assert [d["lr"] for d in again] == [d["lr"] for d in first]
    assert len({d["gamma"] for d in first}) == 5
    assert sample(declared, "irene", 8, 0) != first[0]
