"""The generated catalogue (removal_bench.running.catalogue) agrees with the registries it stands in for.

`bench list` and the name and option checks of `bench run`, `bench sweep` and `bench data fetch` answer from
the catalogue so as not to import torch; the registries remain the truth. These tests fail when the
committed data file is stale (a method, option, default or recipe changed without
`python -m removal_bench.running.catalogue`), and when the catalogue's check of a request says anything other
than what planning the same request with the registries says.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from removal_bench.core.errors import UserError
from removal_bench.running import catalogue
from removal_bench.running.runner import RunRequest, plan


def test_the_committed_catalogue_is_what_the_registries_give():
    assert catalogue.DATA_FILE.read_text() == catalogue.generate(), (
        "bench/running/catalogue_data.py is stale: run `python -m removal_bench.running.catalogue` and commit it")


def test_the_catalogue_holds_the_registries_params_equal():
    import removal_bench.datasets as datasets
    import removal_bench.methods as methods

    found_methods, found_datasets = catalogue.registries(live=False)  # the catalogue's own entries
    assert set(found_methods) == set(methods.REGISTRY) and set(found_datasets) == set(datasets.REGISTRY)
    for name, cls in methods.REGISTRY.items():
        assert found_methods[name].params == cls.hparams, name
    for name, cls in datasets.REGISTRY.items():
        assert found_datasets[name].params == cls.options, name
        assert found_datasets[name].needs_data == cls.needs_data(), name


BAD = [
    {"methods": ["nope"]},
    {"methods": ["irene,nope"]},
    {"datasets": ["nope"]},
    {"datasets": ["colored_digits:rho=abc"]},
    {"datasets": ["colored_digits:rho=1.5"]},
    {"datasets": ["colored_digits:shade=1"]},
    {"datasets": ["colored_digits:rho"]},
    {"datasets": ["synthetic,"]},
    {"experiment": " "},
    {"seeds": 0},
    {"executor": "serial", "address": "127.0.0.1:6379"},
    {"recipe": "fast"},
    {"cpus_per_trial": float("nan")},
]


@pytest.mark.parametrize("changes", BAD, ids=lambda changes: repr(changes))
def test_a_bad_request_gets_the_same_line_from_the_catalogue_as_from_planning(changes):
    request = RunRequest(**{"methods": ["vanilla"], "datasets": ["synthetic"], **changes})
    with pytest.raises(UserError) as planned:
        plan(request)
    with pytest.raises(UserError) as checked:
        catalogue.check_request(request)
    assert str(checked.value) == str(planned.value)


def test_a_good_request_passes_and_an_import_path_is_left_to_the_plugins():
    catalogue.check_request(RunRequest(methods=["irene,grl"], datasets=["colored_digits:rho=0.99", "adult:private=sex"]))
    catalogue.check_request(RunRequest(methods=["all"]))
    # an import path is not the catalogue's to judge (the plugin is loaded when the command plans)
    catalogue.check_request(RunRequest(methods=["no_such_module:Method"], datasets=["synthetic"]))
    catalogue.check_request(RunRequest(datasets=["no_such_module:Data:rho=2"]))
    # the parsed arguments work as the request does (the command line checks them before building one)
    arguments = SimpleNamespace(**{**RunRequest().__dict__, "methods": ["nope"]})
    with pytest.raises(UserError, match="unknown method 'nope'"):
        catalogue.check_request(arguments)
