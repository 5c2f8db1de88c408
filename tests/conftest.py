import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# Two cores here: one torch thread per test process keeps timings sane next to Ray workers.
torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "adult" / "adult.data").exists():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def bench_command() -> list[str]:
    """The installed console script, run as a subprocess (as a user would)."""
    script = Path(sys.executable).with_name("bench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bench.cli"]


def quiet_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env["PYTHONWARNINGS"] = "ignore"
    return env
