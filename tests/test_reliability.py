"""Killed anywhere, resumed to the same result; stopped cleanly by Ctrl+C or SIGTERM; prepare is all or nothing."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import time
from pathlib import Path

import pytest

from competition.cli import main
from competition.grading.leaderboard import read
from competition.preparing.prepare import prepare
from competition.grading.ledger import JsonlLedger

from conftest import HarnessProcess, silent

RUN = ["run", "--time-limit", "none", "--competition", "digits", "--epochs", "6", "--folds", "2",
       "--pseudo-rounds", "1", "--batch-size", "64"]


def _finish(root: Path, *args: str) -> str:
    """Run the command to its end in this process (the killed runs are the children); its printed output."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["--root", str(root), *args])
    assert status == 0, printed.getvalue()[-3000:]
    return printed.getvalue()


def _kill_when(process: HarnessProcess, root: Path, pattern: str, timeout: float = 300) -> bool:
    """SIGKILL the run as soon as a file matching `pattern` appears under root; False if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if next(root.glob(pattern), None) is not None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    process.wait()
    return False


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> bytes:
    """The submission of an uninterrupted run with the same settings."""
    root = tmp_path_factory.mktemp("uninterrupted")
    _finish(root, *RUN)
    return (root / "submission.csv").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("where, pattern", [
    ("mid-member", "submissions/*/round0/fold0-seed0-fastnet/last.ckpt"),
    ("between rounds", "submissions/*/round1/pseudo_labels.csv"),
    ("mid-member of a pseudo round", "submissions/*/round1/fold1-seed0-fastnet/last.ckpt"),
    ("while writing the report", "submissions/*/report/*.png"),
])
def test_a_run_killed_anywhere_resumes_to_a_byte_identical_submission(tmp_path, start_harness, reference, where,
                                                                       pattern):
    process = start_harness("--root", tmp_path, *RUN)
    assert _kill_when(process, tmp_path, pattern), f"the run ended before {where}"
    [run_dir] = list((tmp_path / "submissions").iterdir())
    assert not (run_dir / "submission.csv").exists() or where == "while writing the report"
    out = _finish(tmp_path, "run", "--resume", run_dir.name)
    assert ("loaded from an earlier run" in out) == (where != "mid-member")
    assert (tmp_path / "submission.csv").read_bytes() == reference
    assert (run_dir / "submission.csv").read_bytes() == reference
    assert len(read(tmp_path / "leaderboard.md")) == 1           # publishing again replaced the row


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["ctrl_c-SIGINT", "SIGTERM"])
def test_a_signal_stops_the_run_with_its_status_and_the_resume_command_and_the_run_resumes(
        tmp_path, start_harness, reference, signum, status):
    process = start_harness("--root", tmp_path, *RUN)
    deadline = time.monotonic() + 300
    while next(tmp_path.glob("submissions/*/round0/fold1-seed0-fastnet/last.ckpt"), None) is None:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.002)
    process.send_signal(signum)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == status, out[-3000:]         # 128 + the signal, as a shell reports it
    [run_dir] = list((tmp_path / "submissions").iterdir())
    assert f"python -m competition run --resume {run_dir.name}" in out
    assert not (tmp_path / "submission.csv").exists()
    _finish(tmp_path, "run", "--resume", run_dir.name)
    assert (tmp_path / "submission.csv").read_bytes() == reference


@pytest.mark.slow
def test_prepare_killed_midway_leaves_no_half_written_competition(tmp_path, start_harness):
    process = start_harness("--root", tmp_path, "prepare", "mnist-5k")
    killed = _kill_when(process, tmp_path, "data/mnist-5k/.prepare-*/public/*")
    public = tmp_path / "data" / "mnist-5k" / "public"
    if killed:      # either nothing was moved into place yet, or all of it was
        assert not public.exists() or {p.name for p in public.iterdir()} >= {
            "train.csv", "test.csv", "train_images.npy", "competition.json"}
    _finish(tmp_path, "prepare", "mnist-5k")
    assert (public / "competition.json").is_file()
    assert not list((tmp_path / "data" / "mnist-5k").glob(".prepare-*"))


@pytest.mark.slow
def test_two_runs_at_once_in_one_workspace_both_finish_with_both_rows(tmp_path, start_harness):
    # one torch thread each: two processes of 2 threads on 2 cores spin against each other (4x slower)
    first = start_harness("--root", tmp_path, *RUN, "--threads", "1")
    # another config, same competition
    second = start_harness("--root", tmp_path, *RUN, "--threads", "1", "--seeds", "2")
    for process in (first, second):
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0, out[-3000:]
    assert len(list((tmp_path / "submissions").iterdir())) == 2
    assert len(read(tmp_path / "leaderboard.md")) == 2


@pytest.mark.slow
def test_two_prepares_at_once_leave_one_good_copy(tmp_path, start_harness):
    processes = [start_harness("--root", tmp_path, "prepare", "digits") for _ in range(2)]
    for process in processes:
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 0, out
    competition = tmp_path / "data" / "digits"
    assert sorted(p.name for p in (competition / "public").iterdir()) == \
        ["competition.json", "labels.npz", "sample_submission.csv", "test.csv", "test_images.npy", "train.csv",
         "train_images.npy"]
    assert not list(competition.glob(".prepare-*"))
    _finish(tmp_path, "score", str(competition / "public" / "sample_submission.csv"), "--competition", "digits")


def _kill_at_the_board() -> None:
    """Die by SIGKILL once the ledger row is written, before the board is."""
    from competition.grading import scoring
    scoring.sync_leaderboard = lambda *args: os.kill(os.getpid(), signal.SIGKILL)


def test_a_kill_between_the_ledger_and_the_board_leaves_them_consistent_at_the_next_read(tmp_path, start_harness):
    root = tmp_path / "ws"
    paths = prepare("digits", root / "data", log=silent)
    score = ["--root", str(root), "score", str(paths.public / "sample_submission.csv"), "--competition", "digits"]
    killed = start_harness(*score, before=_kill_at_the_board)
    assert killed.wait(timeout=300) == -signal.SIGKILL
    assert len(JsonlLedger(paths.root).submissions()) == 1 and read(root / "leaderboard.md") == []     # the crash window
    assert main(["--root", str(root), "leaderboard"]) == 0                                # any later read renders it
    [entry] = read(root / "leaderboard.md")
    assert entry.run == "sample_submission.csv" and entry.public == round(JsonlLedger(paths.root).submissions()[0].public, 4)
    assert main(score) == 0                                                               # and later scores add to it
    assert len(read(root / "leaderboard.md")) == len(JsonlLedger(paths.root).submissions()) == 2
