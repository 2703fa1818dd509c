"""Threads sized by the CPUs this process may use, not by the machine's count."""

from __future__ import annotations

import pytest
import torch

from competition.cpus import torch_threads, usable_cpus
from competition.fitting.fit import fit


@pytest.mark.skipif(torch.cuda.is_available(), reason="members train on the GPU there")
def test_a_cap_on_usable_cpus_caps_the_threads_a_member_trains_on(monkeypatch, tmp_path, tiny_config, prepared_digits,
                                                                 restore_threads):
    """A container's CPU quota is invisible to torch's default count; joblib reads it (and its
    LOKY_MAX_CPU_COUNT cap, used here to stand in for a quota of one CPU)."""
    torch.set_num_threads(2)
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "1")
    assert usable_cpus() == 1 and torch_threads(None) == 1 and torch_threads(3) == 3     # --threads wins
    lines: list[str] = []
    fit(tiny_config.replace(epochs=1, pseudo_rounds=0), prepared_digits.public, tmp_path / "run", log=lines.append)
    assert lines[0].endswith("in-process, 1 thread(s) (1 CPU(s) usable)")
    assert torch.get_num_threads() == 1
