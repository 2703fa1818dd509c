"""leaderboard.md: one table per competition, ranked by its public score as Kaggle shows it.

Each table is scored by its competition's metric (accuracy unless its heading names another,
e.g. `## cifar10-folder (log-loss, lower is better)`), and ranked in that metric's direction.

The record is each competition's ledger (`data/NAME/scored.jsonl`, written first); the Markdown
file is rendered from the ledgers (`rebuild`), under an exclusive lock on a lock file beside it,
as a rewritten temporary file renamed into place: concurrent scorers lose no row, a reader never
sees half a file, and a crash between the ledger row and the board leaves a board that the next
rebuild (any later score, run or `leaderboard` command) completes. Rows of boards written before
the ledgers held board entries are kept as they are.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from .metrics import get_metric
from ..workspace import atomic_write_text, file_lock

TITLE = "# Leaderboard"
INTRO = ("Every scored submission, ranked by its public score as Kaggle shows it, with the private "
         "score beside it (the private split decides); scores are accuracy unless a table's heading names "
         "its competition's metric. CV is the run's own out-of-fold score over "
         "the labelled images (or its holdout's, where Members says 1 holdout): the score a user can trust "
         "without the answers. Written by `python -m competition run` and `python -m competition score`; "
         "a run's row links to its report, and its folder's config.json holds everything needed to run it again.")
COLUMNS = ("Rank", "Public", "Private", "CV", "Run", "Model", "Members", "Pseudo rounds", "Wall time", "Date")
ALIGN = ("---:", "---:", "---:", "---:", "---", "---", "---", "---:", "---:", "---")
OLD_COLUMNS = 9         # files written before the CV column: no CV cell


@dataclass(frozen=True, kw_only=True)
class Entry:
    competition: str
    public: float
    private: float | None   # None while the competition is sealed
    cv: float | None    # out-of-fold (or holdout) accuracy; None for a submission scored alone
    run: str            # run id, or a Markdown link to the run's report
    model: str
    members: str        # e.g. "4 folds x 1 seed"
    pseudo_rounds: str
    wall_time: str
    date: str
    metric: str = "accuracy"

    def cells(self, rank: int) -> list[str]:
        cv = "-" if self.cv is None else f"{self.cv:.4f}"
        private = "sealed" if self.private is None else f"{self.private:.4f}"
        return [str(rank), f"{self.public:.4f}", private, cv, self.run, self.model, self.members,
                self.pseudo_rounds, self.wall_time, self.date]


def parse(text: str) -> list[Entry]:
    """Read back the entries of a leaderboard.md written by `render`."""
    entries, competition, metric = [], None, "accuracy"
    for line in text.splitlines():
        heading = re.match(r"^## (\S+)(?: \((\S+), (?:higher|lower) is better\))?\s*$", line)
        if heading:
            competition, metric = heading.group(1), heading.group(2) or "accuracy"
            continue
        if competition is None or not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) not in (len(COLUMNS), OLD_COLUMNS) or cells[0] in ("Rank", "---:"):
            continue
        if len(cells) == OLD_COLUMNS:
            cells.insert(3, "-")
        cv = None if cells[3] == "-" else float(cells[3])
        private = None if cells[2] == "sealed" else float(cells[2])
        run, model, members, pseudo_rounds, wall_time, date = cells[4:]
        entries.append(Entry(competition=competition, public=float(cells[1]), private=private, cv=cv, run=run,
                             model=model, members=members, pseudo_rounds=pseudo_rounds, wall_time=wall_time,
                             date=date, metric=metric))
    return entries


def ranked(entries: list[Entry]) -> list[Entry]:
    """Best public score first (highest, or lowest for a lower-is-better metric such as log-loss);
    ties keep the earlier submission first (as Kaggle does)."""
    return sorted(entries, key=lambda e: e.public if not get_metric(e.metric).higher_is_better else -e.public)


def heading(entries: list[Entry]) -> str:
    name, metric = entries[0].competition, get_metric(entries[0].metric)
    return f"## {name}" if metric.name == "accuracy" else f"## {name} ({metric.name}, {metric.direction})"


def render(entries: list[Entry]) -> str:
    lines = [TITLE, "", INTRO, ""]
    # one table per competition and metric: a folder prepared again with another metric starts a new table
    for competition, metric in sorted({(e.competition, e.metric) for e in entries}):
        rows = ranked([e for e in entries if (e.competition, e.metric) == (competition, metric)])
        lines += [heading(rows), "", "| " + " | ".join(COLUMNS) + " |", "|" + "|".join(ALIGN) + "|"]
        lines += ["| " + " | ".join(e.cells(rank)) + " |" for rank, e in enumerate(rows, start=1)]
        lines.append("")
    return "\n".join(lines)


def lock_of(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def read(path: Path) -> list[Entry]:
    path = Path(path)
    return parse(path.read_text()) if path.is_file() else []


def rebuild(path: Path, ledger_entries: Callable[[], list[Entry]]) -> list[Entry]:
    """Render the board from the ledgers' entries (read under the lock), keeping the rows of runs
    no ledger entry names (boards of earlier versions); returns every entry, in board order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(lock_of(path)):
        entries = ledger_entries()
        recorded = {(e.competition, e.run) for e in entries}
        entries += [e for e in read(path) if (e.competition, e.run) not in recorded]
        text = render(entries)
        if not path.is_file() or path.read_text() != text:
            atomic_write_text(path, text)
    return entries


def rank_of(entries: list[Entry], entry: Entry) -> int:
    """`entry`'s rank within its competition's table (the last of equal entries: the newest)."""
    table = ranked([e for e in entries if (e.competition, e.metric) == (entry.competition, entry.metric)])
    return len(table) - table[::-1].index(entry)


def reveal(path: Path, competition: str, private_by_run: dict[str, float]) -> None:
    """Fill in the sealed private scores of one competition's rows (matched by run id)."""
    path = Path(path)
    with file_lock(lock_of(path)):
        entries = []
        for e in read(path):
            match = [score for run, score in private_by_run.items() if run in e.run]
            if e.competition == competition and e.private is None and match:
                e = replace(e, private=match[0])
            entries.append(e)
        atomic_write_text(path, render(entries))


def show(path: Path, competition: str | None = None) -> str:
    """The leaderboard as text, optionally one competition's table only."""
    entries = read(path)
    if competition is not None:
        entries = [e for e in entries if e.competition == competition]
    if not entries:
        return f"{path}: no scored submissions" + (f" for {competition}" if competition else "")
    return render(entries)


