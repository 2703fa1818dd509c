"""leaderboard.md: ranking, one table per competition, rendered from the ledgers; concurrent writers;
a crash between the ledger row and the board."""

from __future__ import annotations

import multiprocessing
from dataclasses import asdict, replace

from competition.grading import leaderboard
from competition.grading.leaderboard import Entry, rank_of, read
from competition.grading.ledger import JsonlLedger, Submission
from competition.grading.scoring import sync_leaderboard


def add_entry(path, entry: Entry) -> int:
    """What grading does once a file is scored: the ledger row (with its board entry) of the entry's
    competition under data/ beside the board, then the board rendered from every ledger."""
    root = path.parent / "data" / entry.competition
    root.mkdir(parents=True, exist_ok=True)
    JsonlLedger(root).record(Submission(id=entry.run, participant="you", submitted_at="2026-11-23T12:00:00+00:00",
                                        public=entry.public, private=entry.private, entry=asdict(entry)))
    return rank_of(sync_leaderboard(path, path.parent / "data"), entry)


def _entry(competition="digits", public=0.9, run="r", private=0.8):
    return Entry(competition=competition, public=public, private=private, cv=0.95, run=run, model="fastnet",
                 members="4 folds x 1 seed", pseudo_rounds="1", wall_time="1m 02s", date="2026-11-23")


def test_rows_rank_by_public_score_in_one_table_per_competition(tmp_path):
    path = tmp_path / "leaderboard.md"
    assert add_entry(path, _entry(public=0.90, run="a")) == 1
    assert add_entry(path, _entry(public=0.95, run="b")) == 1
    assert add_entry(path, _entry(public=0.80, run="c")) == 3
    add_entry(path, _entry("mnist-5k", public=0.99, run="d"))
    text = path.read_text()
    assert text.count("## digits") == 1 and text.count("## mnist-5k") == 1
    digits = text.split("## digits")[1].split("## mnist-5k")[0]
    assert digits.index("| 1 | 0.9500") < digits.index("| 2 | 0.9000") < digits.index("| 3 | 0.8000")
    assert [e.run for e in read(path)] == ["b", "a", "c", "d"]


def test_show_filters_one_competition(tmp_path):
    path = tmp_path / "leaderboard.md"
    add_entry(path, _entry("digits"))
    add_entry(path, _entry("mnist-5k"))
    shown = leaderboard.show(path, "mnist-5k")
    assert "## mnist-5k" in shown and "## digits" not in shown
    assert "no scored submissions" in leaderboard.show(tmp_path / "none.md")


def _add_many(args):
    path, worker = args
    for i in range(10):
        add_entry(path, _entry(public=0.5 + worker / 10 + i / 1000, run=f"w{worker}-{i}"))


def test_concurrent_writers_lose_no_row(tmp_path):
    path = tmp_path / "leaderboard.md"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_add_many, [(path, w) for w in range(4)])
    runs = {e.run for e in read(path)}
    assert runs == {f"w{w}-{i}" for w in range(4) for i in range(10)}
    assert not list(tmp_path.glob(".leaderboard.md.*.tmp"))


def test_a_lower_is_better_metric_ranks_the_lowest_first_in_its_own_table(tmp_path):
    path = tmp_path / "leaderboard.md"
    for public, run in ((0.30, "a"), (0.10, "b"), (0.20, "c")):
        rank = add_entry(path, replace(_entry("fruits", public=public, run=run), metric="log-loss"))
    assert rank == 2
    add_entry(path, _entry("fruits", public=0.9, run="acc"))           # same folder, scored by accuracy
    text = path.read_text()
    assert "## fruits (log-loss, lower is better)" in text and "\n## fruits\n" in text
    assert [(e.run, e.metric) for e in read(path)] == [("acc", "accuracy"), ("b", "log-loss"), ("c", "log-loss"),
                                                      ("a", "log-loss")]
