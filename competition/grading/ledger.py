"""The one record of a scored submission, and the ledger of a local workspace that keeps them.

Every board, rule and page reads `Submission` records. Two stores hold them: `JsonlLedger`, a local
workspace's `data/NAME/scored.jsonl` (what `run` and `score` append to, `select` reveals from and
leaderboard.md is rendered from), and the SQLite database of `serve` (hosting/host.py), which
returns the same records. The rules over them (rules.py) exist once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Literal

from ..workspace import atomic_write_text, file_lock

# pending: received and counted, not yet graded; failed: the grader broke on it (a bug, never the
# participant's fault: not counted, reason kept); disqualified: by the organiser, reason kept
Status = Literal["pending", "scored", "failed", "disqualified"]
COUNTED = ("pending", "scored", "disqualified")      # what a daily limit counts
LOCAL = "you"               # the one participant of a local workspace


@dataclass(frozen=True, kw_only=True)
class Submission:
    """One submission and its scores (None until graded, or where the metric is undefined on a split)."""
    id: str                             # a run id, a file's name (local), the upload's number (hosted)
    participant: str
    submitted_at: str                   # ISO time, UTC
    status: Status = "scored"
    public: float | None = None
    public_low: float | None = None
    public_high: float | None = None
    private: float | None = None
    private_low: float | None = None
    private_high: float | None = None
    selected: bool = False              # a final pick
    file_name: str = ""
    note: str = ""
    reason: str = ""                    # why it failed or was disqualified
    entry: dict | None = None           # a local run's leaderboard row (model, members, CV, ...)

    @property
    def day(self) -> str:
        """Its UTC day, what a daily limit counts."""
        return datetime.fromisoformat(self.submitted_at).date().isoformat()

    @property
    def counted(self) -> bool:
        return self.status in COUNTED

    @property
    def scored(self) -> bool:
        return self.status == "scored"

    def estimate(self, part: str) -> dict | None:
        """{"value", "low", "high"} of the public or private score; None where there is none."""
        value = getattr(self, part)
        if value is None:
            return None
        return {"value": value, "low": getattr(self, f"{part}_low"), "high": getattr(self, f"{part}_high")}

    @classmethod
    def from_row(cls, row: dict) -> "Submission":
        """A ledger line, also one written before this record (`time`, `run` and bare scores)."""
        if "time" in row:
            row = {"id": row["run"], "participant": LOCAL, "submitted_at": row["time"], "public": row["public"],
                   "private": row["private"], "entry": row.get("entry")}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in known})


def finite(value: float | None) -> float | None:
    """A score as a ledger keeps it: NaN (a metric undefined on a split) is no score."""
    return None if value is None or value != value else float(value)


class JsonlLedger:
    """A local workspace's ledger of one competition: one JSON line a submission, rewritten whole
    under a lock and renamed into place (two scorers lose no row, a reader never sees half a line)."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / "scored.jsonl"

    def submissions(self) -> list[Submission]:
        if not self.path.is_file():
            return []
        return [Submission.from_row(json.loads(line)) for line in self.path.read_text().splitlines() if line.strip()]

    def record(self, submission: Submission, replace: bool = False) -> None:
        """Append `submission`; with `replace`, in place of an earlier one of the same id (a run
        publishing again after a resume counts once)."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            kept = [s for s in self.submissions() if not (replace and s.id == submission.id)]
            atomic_write_text(self.path, "".join(json.dumps(asdict(s)) + "\n" for s in kept + [submission]))
