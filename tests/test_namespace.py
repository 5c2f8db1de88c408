"""One import namespace: the project installs beside Hugging Face's ``datasets`` and shares a process with it.

A fresh virtual environment gets the project as a real wheel (built from a copy of its files, so nothing
here leans on the repository being on ``sys.path``); the packages it needs, Hugging Face's ``datasets``
among them, are the ones pip installed into the project's ``.venv`` from the lock (a ``.pth`` file lends
them). Everything then runs from a folder outside the repository, as a user's notebook or script would.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import installed_venv, site_packages

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    # (Hugging Face's datasets is not imported here: run from the repository's root, `import datasets` finds our
    # folder first, which is exactly why the checks below run from another folder)
    return installed_venv(tmp_path_factory.mktemp("namespace"))


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    environment["RAY_USAGE_STATS_ENABLED"] = "0"
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment)


def test_the_wheel_installs_only_our_namespace(venv):
    record = next(site_packages(venv / "bin" / "python").glob("removal_bench-*.dist-info")) / "RECORD"
    tops = {line.split(",")[0].split("/")[0] for line in record.read_text().splitlines()}
    tops = {t for t in tops if not t.endswith(".dist-info") and not t.startswith("..")}
    assert tops == {"removal_bench"}, tops


def test_hugging_face_datasets_and_ours_share_a_process(venv, tmp_path):
    script = textwrap.dedent("""
        import importlib.util, json, sys
        import datasets  # Hugging Face's
        import removal_bench.datasets as ours
        import removal_bench.methods as methods
        from removal_bench.running.trial import make_config, run_trial

        assert hasattr(datasets, "load_dataset"), datasets.__file__
        assert "removal_bench" not in datasets.__file__
        hf = datasets.Dataset.from_dict({"x": [1, 2, 3]})  # Hugging Face's own API works beside ours
        metrics = run_trial(make_config("vanilla", "synthetic", {"n_train": 200, "n_eval": 200}, seed=0, epochs=1, threads=1))
        print(json.dumps({
            "hf": datasets.__file__, "ours": ours.__file__, "registry": sorted(ours.REGISTRY),
            "methods": sorted(methods.REGISTRY), "hf_rows": hf.num_rows, "accuracy": metrics["accuracy"],
            "top_level": {name: importlib.util.find_spec(name) is not None for name in ("bench", "methods")},
            "datasets_base": importlib.util.find_spec("datasets.base") is not None,
        }))
    """)
    completed = _run([str(venv / "bin" / "python"), "-c", script], cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    site = str(site_packages(venv / "bin" / "python"))
    assert found["ours"].startswith(site) and str(ROOT) not in found["ours"]  # the installed copy, not the repository
    assert "synthetic" in found["registry"] and "irene" in found["methods"]
    assert found["hf_rows"] == 3
    assert 0.0 <= found["accuracy"] <= 1.0
    assert found["top_level"] == {"bench": False, "methods": False}  # we take no generic top-level name
    assert found["datasets_base"] is False  # Hugging Face's package no longer grows our datasets/base.py


def test_bench_list_and_a_one_epoch_run_from_outside_the_repository(venv, tmp_path):
    bench = str(venv / "bin" / "bench")
    listing = _run([bench, "list"], cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr[-3000:]
    assert "irene" in listing.stdout and "synthetic" in listing.stdout
    run = _run([bench, "run", "--methods", "vanilla,irene", "--datasets", "synthetic:n_train=300:n_eval=300",
                "--seeds", "1", "--epochs", "1", "--cpus-per-trial", "1", "--results-dir", "out", "--quiet"],
               cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "out" / "synthetic.md").is_file() and (tmp_path / "mlflow.db").is_file()
    table = (tmp_path / "out" / "synthetic.csv").read_text()
    assert "vanilla" in table and "irene" in table
