"""Executors: in-process and Ray give the same members; failures are reported, not hidden."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from competition.fitting import executors
from competition.cli import main
from competition.errors import HarnessError
from competition.fitting.executors import InProcess, MemberFailedError, RayExecutor, make_executor
from competition.fitting.fit import fit
from competition.fitting.members import plan_members, train_member

from conftest import silent

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for this module's tests (2 CPUs), shut down after them."""
    # the workers import this test module's helper functions by name
    tests = str(Path(__file__).parent)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}})
    yield
    ray.shutdown()


def _square(x: int, offset: int = 0) -> int:
    return x * x + offset


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


def test_in_process_maps_in_order_with_shared_inputs_and_reports_each_result():
    seen = []
    assert InProcess().map(_square, [1, 2, 3], on_result=lambda i, r: seen.append((i, r)), offset=1) == [2, 5, 10]
    assert seen == [(1, 2), (2, 5), (3, 10)]


def test_ray_maps_in_order_and_puts_shared_inputs_once(local_ray):
    seen = []
    executor = RayExecutor(workers=2)
    assert executor.map(_square, list(range(6)), on_result=lambda i, r: seen.append(i), offset=10) == \
        [10, 11, 14, 19, 26, 35]
    assert sorted(seen) == list(range(6)) and "2 at once" in executor.name


def test_a_member_that_raises_stops_the_map_with_its_error_and_traceback(local_ray):
    with pytest.raises(MemberFailedError, match=r"(?s)3 failed on its Ray worker.*three is not allowed"):
        RayExecutor(workers=2).map(_fail_on_three, [1, 2, 3, 4])


def test_without_ray_the_workers_flag_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray -> ImportError
    with pytest.raises(HarnessError, match=r'pip install -e "\.\[ray\]"'):
        make_executor(workers=2)
    assert isinstance(make_executor(), InProcess)


@pytest.mark.slow
def test_local_ray_and_in_process_give_the_same_members_and_submission(local_ray, tmp_path, tiny_config,
                                                                         restore_threads, prepared_digits):
    paths = prepared_digits
    cfg = tiny_config.replace(threads=1, epochs=2)
    here = fit(cfg, paths.public, tmp_path / "in-process", InProcess(), log=silent)
    there = fit(cfg, paths.public, tmp_path / "ray", RayExecutor(workers=2), log=silent)
    assert len(here.rounds) == len(there.rounds) and here.chosen == there.chosen
    for a, b in zip(here.rounds, there.rounds):
        assert torch.equal(a.member_test_logits, b.member_test_logits)
        assert torch.equal(a.oof_logits.nan_to_num(), b.oof_logits.nan_to_num())
    assert (here.probabilities.argmax(1) == there.probabilities.argmax(1)).all()


@pytest.mark.slow
def test_a_failing_member_leaves_the_finished_ones_on_disk_for_resume(local_ray, tmp_path, tiny_config,
                                                                      resolve_for, prepared_digits):
    paths = prepared_digits
    cfg = resolve_for(tiny_config.replace(epochs=1, threads=1), paths)
    good, bad = plan_members(cfg, 0, paths.public, tmp_path / "run")
    bad = type(bad)(**{**bad.__dict__, "pseudo_labels": str(tmp_path / "missing.csv")})
    with pytest.raises(MemberFailedError, match="missing.csv"):
        RayExecutor(workers=1).map(train_member, [good, bad])
    assert (Path(good.out_dir) / "result.json").is_file() and not (Path(bad.out_dir) / "result.json").exists()


def test_a_bad_executor_setting_is_a_one_line_error(workspace, capsys):
    assert main(["--root", str(workspace.root), "run", "--time-limit", "none",
                 "--competition", "digits", "--workers", "0"]) == 1
    assert "--workers 0: give at least 1" in capsys.readouterr().err


def test_the_install_command_the_ray_error_names_installs_ray():
    import re
    import tomllib
    extra = re.fullmatch(r'pip install -e "\.\[(\w+)\]"', executors.RAY_INSTALL).group(1)
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert any(req.startswith("ray") for req in project["optional-dependencies"][extra])
