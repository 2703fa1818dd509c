"""The CPUs this process may use: what torch's threads, Ray's slots and prepare's decoders are sized by.

`os.cpu_count()` counts the machine's CPUs and torch's default thread count its cores; neither
knows the process's affinity mask or a container's CPU quota (cgroups: `docker run --cpus 2`, a
Kubernetes CPU limit). Threads beyond what the process may use wait on each other for a core
(two threads given one core's worth trained several times slower than one). joblib's `cpu_count` (joblib ships with scikit-learn) reads all three, and
`LOKY_MAX_CPU_COUNT` caps it by hand.
"""

from __future__ import annotations


def usable_cpus() -> int:
    """The CPUs this process may use: the machine's, its affinity mask and any cgroup quota, the least."""
    import joblib       # here, not above: prepare, score and the CLI's help import this module too
    return joblib.cpu_count()


def torch_threads(requested: int | None) -> int:
    """torch's CPU threads for a member: as requested (`--threads`), else torch's own count capped at
    the usable CPUs."""
    import torch
    return requested or min(torch.get_num_threads(), usable_cpus())
