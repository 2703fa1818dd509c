"""Grade a submission file and record it: what `score` does for a file and `run` for its submission.

The day's limit is checked before the answers are read (a refused submission learns nothing);
then the file is validated and scored on the Public and Private rows with the competition's
metric; the ledger (`scored.jsonl`, what the rules count and `select` reveals from) gets its row
with its leaderboard entry, and the leaderboard is then rendered from every ledger (so a crash in
between leaves a board the next rebuild completes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from ..prepared import load_test_ids, read_prepared
from .grader import Score, score_submission
from .leaderboard import Entry, rank_of, rebuild
from ..workspace import CompetitionPaths
from .ledger import LOCAL, JsonlLedger, Submission, finite
from .rules import check_local_limit, read_rules


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
    check_local_limit(paths.root, read_prepared(paths.public).name)


def grade_and_record(submission: Path, paths: CompetitionPaths, row: Row, leaderboard: Path | None) -> Graded:
    """Check the limit, score `submission`, write the ledger row, add the leaderboard entry
    (unless `leaderboard` is None). Raises SubmissionLimitError or InvalidSubmissionError."""
    info, rules = read_prepared(paths.public), read_rules(paths.root)
    check_local_limit(paths.root, info.name, rules)
    _, score = score_submission(Path(submission), paths.solution, info.submission, load_test_ids(paths.public),
                                info.metric)
    entry = None if leaderboard is None else Entry(
        competition=info.name, public=score.public.value, private=score.private.value, cv=row.cv, run=row.run,
        model=row.model, members=row.members, pseudo_rounds=row.pseudo_rounds, wall_time=row.wall_time,
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d"), metric=info.metric)
    JsonlLedger(paths.root).record(Submission(
        id=row.submission_id, participant=LOCAL, submitted_at=datetime.now(timezone.utc).isoformat(),
        file_name=Path(submission).name, entry=None if entry is None else asdict(entry),
        **{f"{part}{suffix}": finite(getattr(getattr(score, part), attr)) for part in ("public", "private")
           for suffix, attr in (("", "value"), ("_low", "low"), ("_high", "high"))}), replace=row.is_run)
    rank = None
    if leaderboard is not None:
        shown = replace(entry, private=None) if rules.hides_private else entry
        rank = rank_of(sync_leaderboard(leaderboard, paths.root.parent), shown)
    return Graded(score=score, sealed=rules.hides_private, rank=rank)


def ledger_entries(data_dir: Path) -> list[Entry]:
    """The board entry of every scored submission in every competition's ledger under `data_dir`,
    in ledger order, the private score hidden while its competition is sealed."""
    entries = []
    for root in sorted(p for p in Path(data_dir).iterdir() if (p / "scored.jsonl").is_file()):
        hides = read_rules(root).hides_private
        for submission in JsonlLedger(root).submissions():
            if submission.entry is not None:
                entry = Entry(**submission.entry)
                entries.append(replace(entry, private=None) if hides else entry)
    return entries


def sync_leaderboard(leaderboard: Path, data_dir: Path) -> list:
    """Render `leaderboard` from the ledgers under `data_dir` (idempotent); its entries."""
    return rebuild(leaderboard, lambda: ledger_entries(data_dir) if Path(data_dir).is_dir() else [])
