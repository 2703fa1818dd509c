"""The GPU path end to end: bf16-mixed members on device-resident data, Ray members sharing one GPU.
Skipped where there is no CUDA device (CI and the development machines have none)."""

from __future__ import annotations

import pytest
import torch

from competition.fitting.data import DeviceBatches, to_placement
from competition.fitting.executors import RayExecutor
from competition.fitting.fit import fit
from competition.fitting.device import precision_for

from conftest import silent

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def test_members_train_on_the_gpu_in_bf16_and_score_out_of_fold(tmp_path, tiny_config, prepared_digits):
    paths = prepared_digits
    assert precision_for(tiny_config, torch.device("cuda")) == "bf16-mixed"
    result = fit(tiny_config.replace(epochs=2), paths.public, tmp_path / "run", log=silent)
    assert result.device == "cuda" and all(m.device == "cuda" for r in result.rounds for m in r.members)
    assert result.final.oof.total == 1437 and result.final.oof.value > 0.3


def test_four_members_share_one_gpu_on_ray(tmp_path, tiny_config, prepared_digits):
    ray = pytest.importorskip("ray")
    paths = prepared_digits
    try:
        executor = RayExecutor(workers=4, gpus_per_member=0.25)
        result = fit(tiny_config.replace(folds=4, epochs=1, pseudo_rounds=0), paths.public, tmp_path / "run",
                     executor, log=silent)
    finally:
        ray.shutdown()
    assert [m.device for m in result.final.members] == ["cuda"] * 4


def test_data_too_big_for_the_gpu_is_batched_from_pinned_host_memory(tmp_path, tiny_config, monkeypatch, capsys,
                                                                      prepared_digits):
    from competition.fitting import fit as fit_module
    from competition.fitting import members
    paths = prepared_digits
    monkeypatch.setattr(members, "placement", lambda images, device: "host")
    monkeypatch.setattr(fit_module, "placement", lambda images, device: "host")
    lines = []
    result = fit(tiny_config.replace(epochs=2, pseudo_rounds=0), paths.public, tmp_path / "run", log=lines.append)
    assert "batched from pinned host memory" in lines[0]
    assert all(m.device == "cuda" for m in result.final.members) and result.final.oof.value > 0.3


def test_batches_from_pinned_host_memory_match_device_resident_ones():
    """Data too big for the GPU is batched from pinned host memory: the same batches, copied over."""
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1)
    labels = torch.arange(40)
    gpu = torch.device("cuda")
    resident = list(DeviceBatches(images.to(gpu), labels.to(gpu), 8, shuffle=True, seed=3))
    host = to_placement(images, gpu, "host")
    assert host.is_pinned() and host.device.type == "cpu"
    from_host = list(DeviceBatches(host, labels, 8, shuffle=True, seed=3, device=gpu))
    assert all(b[0].device.type == "cuda" for b in from_host)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(resident, from_host))
