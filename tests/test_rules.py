"""Kaggle's rules, opt-in: the daily limit, a sealed private score revealed by `select`; implausible scores."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from competition.errors import SubmissionLimitError
from competition.grading.grader import accuracy_of
from competition.grading.leaderboard import read
from competition.publish import implausible
from competition.grading.ledger import JsonlLedger, Submission
from competition.grading.rules import Rules, check_local_limit

from conftest import cli
from competition.record import RunRecord


def _submission(workspace, tmp_path, name, right_share):
    """A digits submission that is right on the first `right_share` of the rows."""
    solution = pd.read_csv(workspace.competition("digits").solution)
    labels = solution["Label"].to_numpy().copy()
    wrong = np.arange(len(labels)) >= int(right_share * len(labels))
    labels[wrong] = (labels[wrong] + 1) % 10
    path = tmp_path / name
    pd.DataFrame({"ImageId": solution["ImageId"], "Label": labels}).to_csv(path, index=False)
    return path


def test_the_daily_limit_refuses_the_next_submission_with_when_it_reopens(workspace, tmp_path, capsys):
    assert cli(workspace, "prepare", "digits", "--daily-limit", "2") == 0
    assert "at most 2 scored submissions a UTC day" in capsys.readouterr().out
    for i in range(2):
        assert cli(workspace, "score", str(_submission(workspace, tmp_path, f"s{i}.csv", 0.5)),
                    "--competition", "digits") == 0
    capsys.readouterr()
    assert cli(workspace, "score", str(_submission(workspace, tmp_path, "s2.csv", 0.9)),
                "--competition", "digits") == 1
    out, err = capsys.readouterr()
    assert "daily limit of 2 scored submission(s) is used up" in err and "00:00 UTC" in err
    assert "accuracy" not in out                                  # refused before anything was scored
    assert len(read(workspace.leaderboard)) == 2                  # nothing was added


def test_the_limit_counts_only_the_current_utc_day(tmp_path):
    rules, ledger = Rules(daily_limit=1), JsonlLedger(tmp_path)

    def scored_at(run: str, when: datetime) -> None:
        ledger.record(Submission(id=run, participant="you", submitted_at=when.isoformat(), public=0.5, private=0.5))
    scored_at("yesterday", datetime(2026, 11, 22, 23, 59, tzinfo=timezone.utc))
    check_local_limit(tmp_path, "x", rules, datetime(2026, 11, 23, 0, 1, tzinfo=timezone.utc))
    scored_at("today", datetime(2026, 11, 23, 0, 2, tzinfo=timezone.utc))
    with pytest.raises(SubmissionLimitError, match=r"next is possible at 2026-11-24 00:00 UTC, in 23h 57m"):
        check_local_limit(tmp_path, "x", rules, datetime(2026, 11, 23, 0, 3, tzinfo=timezone.utc))


def test_a_sealed_competition_from_first_submission_to_the_private_reveal(workspace, tmp_path, capsys):
    assert cli(workspace, "prepare", "digits", "--sealed") == 0
    files = {"a.csv": 0.95, "b.csv": 0.80, "c.csv": 0.60}
    for name, share in files.items():
        assert cli(workspace, "score", str(_submission(workspace, tmp_path, name, share)), "--competition",
                    "digits") == 0
    board = workspace.leaderboard.read_text()
    assert "sealed" in board and all(e.private is None for e in read(workspace.leaderboard))
    out = capsys.readouterr().out
    assert "private accuracy: sealed until" in out and "confusion matrix" not in out
    assert "private accuracy: 0." not in out

    assert cli(workspace, "select", "digits", "a.csv", "b.csv", "c.csv") == 1
    assert "pick 1 to 2 final submissions, not 3" in capsys.readouterr().err
    assert cli(workspace, "select", "digits", "nosuch.csv") == 1
    assert "nosuch.csv is not a scored submission" in capsys.readouterr().err

    assert cli(workspace, "select", "digits", "b.csv", "c.csv") == 0
    out = capsys.readouterr().out
    assert "private leaderboard of digits" in out and "<- final" in out and "shake-up" in out
    assert "final score:" in out and "(b.csv, the better of the final picks)" in out
    revealed = read(workspace.leaderboard)
    assert all(e.private is not None for e in revealed) and "sealed" not in workspace.leaderboard.read_text()
    assert cli(workspace, "select", "digits", "a.csv") == 1
    assert "already picked" in capsys.readouterr().err


def test_a_score_above_the_best_on_record_is_flagged_as_leakage():
    class Score:
        metric = "accuracy"
        public = accuracy_of(np.ones(1000, bool))
        private = accuracy_of(np.r_[np.ones(990, bool), np.zeros(10, bool)])
    [warning] = implausible("mnist-5k", Score)
    assert "public accuracy 1.0000 is above 0.9980" in warning and "leaked labels" in warning
    assert implausible("mnist-5k", Score, sealed=True) == [warning]
    assert implausible("digits", Score) == []                    # no record for digits


@pytest.mark.slow
def test_a_sealed_run_keeps_the_private_score_out_of_summary_metrics_leaderboard_and_report(workspace, capsys):
    import json
    assert cli(workspace, "prepare", "digits", "--sealed") == 0
    assert cli(workspace, "run", "--time-limit", "none", "--competition", "digits", "--epochs", "1", "--folds", "2",
                "--pseudo-rounds", "0") == 0
    out = capsys.readouterr().out
    assert "private sealed" in out and "\nprivate 0." not in out
    run_dir = next(workspace.submissions.iterdir())
    record = RunRecord.read(run_dir)
    assert record.sealed and all(s.private is None for s in record.scores.values()) and record.submission is None
    assert "This competition is sealed" in (run_dir / "report.html").read_text()
    [entry] = read(workspace.leaderboard)
    assert entry.private is None
    assert cli(workspace, "select", "digits", run_dir.name) == 0
    assert read(workspace.leaderboard)[0].private is not None
