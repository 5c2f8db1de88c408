"""What this machine computes with: the CPU, the ISA torch's kernels dispatch to, native bf16, the math library.

Two uses:

- :func:`native_bf16` decides the image encoders' fast CPU path (recipe field ``precision``, see
  :mod:`removal_bench.core.recipes`): bf16 autocast pays only where the core has bf16 dot products
  (``avx512_bf16`` or AMX's ``amx_bf16``); elsewhere (an older Xeon, most AMD before Zen 4, ARM without
  the flags) the trial stays fp32 and says so.
- :func:`fingerprint` is what a trial records beside its figures (tags ``fingerprint.*``): two trials
  may be expected to give bit-identical figures only when these and the package versions match
  (``bench verify``; training diverges across CPUs by about one seed's spread).

Reads ``/proc/cpuinfo`` on Linux (no import of torch needed for the flags); elsewhere the flags are
unknown and native bf16 is taken as absent.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # the first present names the path


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; ("", {}) where there is none."""
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def native_bf16() -> str | None:
    """The CPU flag that gives native bf16 arithmetic (``amx_bf16`` or ``avx512_bf16``), or None.

    ``BENCH_CPU_BF16=0`` reports None whatever the CPU has (to measure the fallback on a bf16 CPU);
    ``BENCH_CPU_BF16=1`` reports ``forced`` (bf16 autocast on a CPU without it: emulated, slow, for tests).
    """
    forced = os.environ.get("BENCH_CPU_BF16", "").strip()
    if forced == "0":
        return None
    if forced == "1":
        return "forced"
    flags = cpu_info()[1]
    return next((flag for flag in BF16_FLAGS if flag in flags), None)


def math_library() -> str:
    """torch's CPU math as its build reports it: BLAS, oneDNN version, MKL version, in one short line."""
    import re

    import torch

    config = torch.__config__.show()
    parts = []
    blas = re.search(r"BLAS_INFO=([^,\s]+)", config)
    if blas:
        parts.append(f"blas {blas.group(1)}")
    onednn = re.search(r"MKL-DNN (v[\d.]+)", config)
    parts.append(f"onednn {onednn.group(1)}" if onednn and torch.backends.mkldnn.is_available() else "onednn off")
    mkl = re.search(r"Math Kernel Library Version ([\w.-]+)", config)
    if mkl:
        parts.append(f"mkl {mkl.group(1)}")
    return "; ".join(parts)


def fingerprint(threads: int | None = None) -> dict[str, str]:
    """The trial's hardware fingerprint, as string tags: CPU model, ISA torch dispatches to, threads, math library."""
    import torch

    model, _ = cpu_info()
    return {
        "fingerprint.cpu": model,
        "fingerprint.isa": torch.backends.cpu.get_cpu_capability(),
        "fingerprint.bf16": native_bf16() or "none",
        "fingerprint.threads": str(threads if threads is not None else torch.get_num_threads()),
        "fingerprint.math": math_library(),
        "fingerprint.machine": platform.machine(),
    }
