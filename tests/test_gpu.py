"""The GPU path end to end: bf16-mixed members on device-resident data, Ray members sharing one GPU.
Skipped where there is no CUDA device (CI and the development machines have none)."""

from __future__ import annotations

import pytest
import torch

from competition.executors import RayExecutor
from competition.fit import fit
from competition.prepare import prepare
from competition.train import precision_for

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def test_members_train_on_the_gpu_in_bf16_and_score_out_of_fold(tmp_path, tiny_config):
    paths = prepare("digits", tmp_path / "data", log=lambda s: None)
    assert precision_for(tiny_config, torch.device("cuda")) == "bf16-mixed"
    result = fit(tiny_config.replace(epochs=2), paths.public, tmp_path / "run", log=lambda s: None)
    assert result.device == "cuda" and all(m.device == "cuda" for r in result.rounds for m in r.members)
    assert result.final.oof.total == 1437 and result.final.oof.value > 0.3


def test_four_members_share_one_gpu_on_ray(tmp_path, tiny_config):
    ray = pytest.importorskip("ray")
    paths = prepare("digits", tmp_path / "data", log=lambda s: None)
    try:
        executor = RayExecutor(workers=4, gpus_per_member=0.25)
        result = fit(tiny_config.replace(folds=4, epochs=1, pseudo_rounds=0), paths.public, tmp_path / "run",
                     executor, log=lambda s: None)
    finally:
        ray.shutdown()
    assert [m.device for m in result.final.members] == ["cuda"] * 4


def test_data_too_big_for_the_gpu_is_batched_from_pinned_host_memory(tmp_path, tiny_config, monkeypatch, capsys):
    from competition import fit as fit_module, members
    paths = prepare("digits", tmp_path / "data", log=lambda s: None)
    monkeypatch.setattr(members, "placement", lambda images, device: "host")
    monkeypatch.setattr(fit_module, "placement", lambda images, device: "host")
    lines = []
    result = fit(tiny_config.replace(epochs=2, pseudo_rounds=0), paths.public, tmp_path / "run", log=lines.append)
    assert "batched from pinned host memory" in lines[0]
    assert all(m.device == "cuda" for m in result.final.members) and result.final.oof.value > 0.3
