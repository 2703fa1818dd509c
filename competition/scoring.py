"""Grade a submission file and record it: what `score` does for a file and `run` for its submission.

The day's limit is checked before the answers are read (a refused submission learns nothing);
then the file is validated and scored on the Public and Private rows with the competition's
metric; the ledger (`scored.jsonl`, what the rules count and `select` reveals from) gets its row,
and the leaderboard its entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .data import load_test_ids
from .grading import Score, score_submission
from .leaderboard import Entry, add_entry
from .prepare import CompetitionPaths
from .rules import check_daily_limit, read_rules, record_scored


@dataclass(frozen=True, kw_only=True)
class Row:
    """What a leaderboard entry says beside the scores."""
    submission_id: str              # a run id (its row replaces an earlier one of the same run) or a file name
    run: str                        # what the Run cell shows: the id, or a Markdown link to the run's report
    model: str = "-"
    members: str = "-"
    pseudo_rounds: str = "-"
    wall_time: str = "-"
    cv: float | None = None         # the run's out-of-fold score; None for a file scored alone
    is_run: bool = False


@dataclass(frozen=True, kw_only=True)
class Graded:
    score: Score
    sealed: bool                    # private scores hidden until `select`
    rank: int | None                # on the leaderboard; None when no entry was added


def check_limit(paths: CompetitionPaths) -> None:
    """Raise SubmissionLimitError when the competition's day's limit is used up."""
    check_daily_limit(paths.root, paths.read().name, read_rules(paths.root))


def grade_and_record(submission: Path, paths: CompetitionPaths, row: Row, leaderboard: Path | None) -> Graded:
    """Check the limit, score `submission`, write the ledger row, add the leaderboard entry
    (unless `leaderboard` is None). Raises SubmissionLimitError or InvalidSubmissionError."""
    info, rules = paths.read(), read_rules(paths.root)
    check_daily_limit(paths.root, info.name, rules)
    _, score = score_submission(Path(submission), paths.solution, info.submission, load_test_ids(paths.public),
                                info.metric)
    record_scored(paths.root, row.submission_id, score.public.value, score.private.value, replace=row.is_run)
    rank = None
    if leaderboard is not None:
        rank = add_entry(leaderboard, Entry(
            competition=info.name, public=score.public.value,
            private=None if rules.hides_private else score.private.value, cv=row.cv, run=row.run,
            model=row.model, members=row.members, pseudo_rounds=row.pseudo_rounds, wall_time=row.wall_time,
            date=datetime.now(timezone.utc).strftime("%Y-%m-%d"), metric=info.metric))
    return Graded(score=score, sealed=rules.hides_private, rank=rank)
