"""A plugin method for the memory-fault test (``tests/test_memory_fault.py``): trains as vanilla, but its first
step fills ``megabytes`` of memory; with ``cgroup`` it first moves its own process into that memory cgroup, whose
small limit makes the kernel kill the trial's worker for memory, as a node's limit or a batch too large for the
machine would."""

import os

import torch

from removal_bench.core.params import Param
from removal_bench.methods.vanilla import Vanilla


class MemoryHog(Vanilla):
    name = "memory_hog"
    description = "vanilla whose worker runs out of memory in a cgroup (tests only)"
    hparams = {**Vanilla.hparams,
               "cgroup": Param("", "a cgroup v1 memory folder whose limit the worker joins ('' none)"),
               "megabytes": Param(0, "what the first step fills, in MB", low=0)}
    trains_as = None

    def update(self, x, y, s):
        if self.hp["megabytes"] and not hasattr(self, "hog"):
            if self.hp["cgroup"]:
                with open(os.path.join(self.hp["cgroup"], "cgroup.procs"), "w") as procs:
                    procs.write(str(os.getpid()))
            self.hog = torch.ones(self.hp["megabytes"] * 1024 * 256, dtype=torch.float32)  # every page written
        return super().update(x, y, s)
