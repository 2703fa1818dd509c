"""A hosted competition's state, for many participants: SQLite in the workspace, no HTTP here.

`serve` (server.py) puts this behind HTTP; `invite` calls it directly. One database per
competition, `data/NAME/server.sqlite` in WAL mode, the uploaded files beside it in
`data/NAME/uploads/`. Tokens are random and only their SHA-256 is stored.

A submission's life: the upload is written to `uploads/`; one `BEGIN IMMEDIATE` transaction
counts the participant's UTC day and, under the limit, adds a `pending` row (so two requests
racing for the last slot cannot both get it); the grader runs outside the lock; a scored file
turns its row `scored`, a rejected one deletes its row and file (a rejection does not count).
Only then does the participant get an answer, so every 2xx is a committed `scored` row. A
server killed in between leaves `pending` rows, which `recover` grades at the next start.

Private scores live in the database from the first grade and leave it, for participants, only
after the organiser reveals them: every submission a participant is shown is built by `view`,
which leaves the private columns out while sealed, and `private_board` refuses until the reveal.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..prepared import load_test_ids, read_prepared
from ..errors import DataSourceError, HarnessError, InvalidSubmissionError
from ..grading.grader import Grader, Score
from ..workspace import CompetitionPaths
from ..grading.rules import MAX_SELECTED, ranks, read_rules, shake_up_view
from ..grading.submission import max_submission_bytes

DATABASE = "server.sqlite"
UPLOADS = "uploads"
KAGGLE_DAILY_LIMIT = 5
NAME_LENGTH = 40
NOTE_LENGTH = 500
NAME_PUNCTUATION = " _.-@"

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS participants (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('participant', 'organiser')),
    token_hash TEXT UNIQUE,                 -- NULL once revoked
    invited_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: a rejected upload's id stays unused
    participant_id INTEGER NOT NULL REFERENCES participants (id),
    submitted_at TEXT NOT NULL,             -- ISO time, UTC
    day TEXT NOT NULL,                      -- its UTC day, what the daily limit counts
    file_name TEXT NOT NULL,                -- as uploaded, for people
    stored TEXT NOT NULL,                   -- the file under uploads/
    note TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN ('pending', 'scored', 'disqualified')),
    public REAL, public_low REAL, public_high REAL,
    private REAL, private_low REAL, private_high REAL,
    selected INTEGER NOT NULL DEFAULT 0,
    disqualified_reason TEXT
);
CREATE INDEX IF NOT EXISTS submissions_by_day ON submissions (participant_id, day);
"""


class AuthError(HarnessError):
    """A missing, unknown or revoked token (HTTP 401)."""


class ForbiddenError(HarnessError):
    """A known token asking for what its role may not do (HTTP 403)."""


class NotFoundError(HarnessError):
    """No such submission among the caller's own (HTTP 404: another's is not found either)."""


class BadRequestError(HarnessError):
    """A malformed field of a request (HTTP 400)."""


class LimitError(HarnessError):
    """The day's submissions are used up (HTTP 429); `retry_at` is when the next is possible."""

    def __init__(self, message: str, retry_at: datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class ClosedError(HarnessError):
    """The private leaderboard is revealed: the competition takes no more submissions or picks (HTTP 409)."""


@dataclass(frozen=True, kw_only=True)
class Caller:
    id: int
    name: str
    role: str                       # participant | organiser

    @property
    def is_organiser(self) -> bool:
        return self.role == "organiser"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    # hex, not URL-safe base64: one of those in 64 starts with "-", which `submit --token TOKEN` then
    # reads as an option (a CI run of the live-server test hit it)
    return secrets.token_hex(24)


def check_name(name: str) -> str:
    """A participant name: 1-40 letters, digits and ` _.-@`, not starting or ending with a space."""
    if not 1 <= len(name) <= NAME_LENGTH or name != name.strip() or \
            not all(c.isalnum() or c in NAME_PUNCTUATION for c in name):
        raise BadRequestError(f"participant name {name[:60]!r}: use 1-{NAME_LENGTH} letters, digits and "
                              f"{NAME_PUNCTUATION.strip()!r} or spaces inside")
    return name


def check_note(note: str) -> str:
    if len(note) > NOTE_LENGTH:
        raise BadRequestError(f"note: {len(note):,} characters, at most {NOTE_LENGTH}")
    if any(unicodedata.category(c) == "Cc" for c in note):
        raise BadRequestError("note: control characters (newlines, tabs, NUL) are not allowed")
    return note


def check_file_name(name: str) -> str:
    """The uploaded file's own name, shown back to people: a plain name, never a path."""
    if not name or len(name) > 200 or "/" in name or "\\" in name or name in (".", "..") or \
            any(unicodedata.category(c) == "Cc" for c in name):
        raise BadRequestError(f"file name {name[:80]!r}: give a plain file name (no folders, no control "
                              "characters, at most 200 characters)")
    return name


class Host:
    """One hosted competition: its database, uploads and grader."""

    def __init__(self, root: Path, grader: Grader, *, name: str, daily_limit: int = KAGGLE_DAILY_LIMIT,
                 max_selected: int = MAX_SELECTED, clock: Callable[[], datetime] = utc_now) -> None:
        self.root, self.grader, self.name = Path(root), grader, name
        self.daily_limit, self.max_selected, self.clock = daily_limit, max_selected, clock
        self.database, self.uploads = self.root / DATABASE, self.root / UPLOADS
        self.uploads.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(SCHEMA)

    # ------------------------------------------------------------ the database
    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode: each write names its transaction (`transaction`)."""
        db = sqlite3.connect(self.database, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA busy_timeout = 30000")
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: the write lock is taken before the first read, so a count read inside
        stays true until the commit."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def setting(self, key: str) -> str | None:
        with self.connect() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["value"]

    @property
    def revealed(self) -> bool:
        return self.setting("revealed_at") is not None

    # ------------------------------------------------------------ people and tokens
    def ensure_organiser(self, new: bool = False) -> str | None:
        """At first start (or with `new`, replacing a lost one): make the organiser's token and return
        it, to be printed once; None when one exists already."""
        token = new_token()
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM participants WHERE role = 'organiser'").fetchone():
                if not new:
                    return None
                db.execute("UPDATE participants SET token_hash = ? WHERE role = 'organiser'", (hash_token(token),))
                return token
            db.execute("INSERT INTO participants (name, role, token_hash, invited_at) VALUES (?, 'organiser', ?, ?)",
                       ("organiser", hash_token(token), self.clock().isoformat()))
        return token

    def invite(self, name: str) -> str:
        """A new token for `name` (a new participant, or a new token replacing an earlier one)."""
        check_name(name)
        token = new_token()
        with self.transaction() as db:
            row = db.execute("SELECT role FROM participants WHERE name = ?", (name,)).fetchone()
            if row is not None and row["role"] == "organiser":
                raise BadRequestError(f"{name!r} is the organiser's name; pick another")
            if row is None:
                db.execute("INSERT INTO participants (name, role, token_hash, invited_at) "
                           "VALUES (?, 'participant', ?, ?)", (name, hash_token(token), self.clock().isoformat()))
            else:
                db.execute("UPDATE participants SET token_hash = ?, revoked_at = NULL WHERE name = ?",
                           (hash_token(token), name))
        return token

    def revoke(self, name: str) -> None:
        with self.transaction() as db:
            done = db.execute("UPDATE participants SET token_hash = NULL, revoked_at = ? "
                              "WHERE name = ? AND role = 'participant'", (self.clock().isoformat(), name)).rowcount
        if not done:
            raise NotFoundError(f"{self.name}: no participant {name!r}")

    def caller(self, token: str | None) -> Caller:
        if not token:
            raise AuthError("no token: send the header 'Authorization: Bearer TOKEN' (from `invite`)")
        with self.connect() as db:
            row = db.execute("SELECT id, name, role FROM participants WHERE token_hash = ?",
                             (hash_token(token),)).fetchone()
        if row is None:
            raise AuthError("unknown or revoked token")
        return Caller(id=row["id"], name=row["name"], role=row["role"])

    # ------------------------------------------------------------ submissions
    def day_count(self, db: sqlite3.Connection, caller: Caller, day: str) -> int:
        return db.execute("SELECT count(*) FROM submissions WHERE participant_id = ? AND day = ?",
                          (caller.id, day)).fetchone()[0]

    def check_open(self, caller: Caller) -> None:
        """Refuse (cheaply, before an upload is read) what `submit` would refuse anyway."""
        if caller.is_organiser:
            raise ForbiddenError("the organiser does not submit; invite a participant for that")
        if self.revealed:
            raise ClosedError(f"{self.name} has ended: the private leaderboard is revealed")
        now = self.clock()
        with self.connect() as db:
            self._check_limit(db, caller, now)

    def _check_limit(self, db: sqlite3.Connection, caller: Caller, now: datetime) -> None:
        used = self.day_count(db, caller, now.date().isoformat())
        if used >= self.daily_limit:
            reopens = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), timezone.utc)
            hours, minutes = divmod(int((reopens - now).total_seconds()) // 60, 60)
            raise LimitError(f"the daily limit of {self.daily_limit} scored submissions is used ({used} today, "
                             f"UTC); the next is possible at {reopens:%Y-%m-%d %H:%M} UTC, in {hours}h "
                             f"{minutes:02d}m", reopens)

    def incoming_path(self) -> Path:
        """Where an upload is written while it arrives (a name no stored file has)."""
        return self.uploads / f"incoming-{secrets.token_hex(8)}.part"

    def submit(self, caller: Caller, upload: Path, *, file_name: str, note: str = "") -> dict:
        """Count, record and grade an uploaded file (already under uploads/); the participant's view
        of the scored row. Refusals leave nothing behind: the upload is deleted, no row is kept."""
        try:
            check_file_name(file_name)
            check_note(note)
            self.check_open(caller)
            now = self.clock()
            with self.transaction() as db:
                self._check_limit(db, caller, now)
                if self.revealed:
                    raise ClosedError(f"{self.name} has ended: the private leaderboard is revealed")
                sid = db.execute("INSERT INTO submissions (participant_id, submitted_at, day, file_name, stored, "
                                 "note, status) VALUES (?, ?, ?, ?, '', ?, 'pending')",
                                 (caller.id, now.isoformat(), now.date().isoformat(), file_name, note)).lastrowid
                stored = self.uploads / f"{sid}.csv"
                os.replace(upload, stored)
                db.execute("UPDATE submissions SET stored = ? WHERE id = ?", (stored.name, sid))
        except BaseException:
            Path(upload).unlink(missing_ok=True)
            raise
        self._grade_pending(sid, stored, shown_as=file_name)
        return self.submission(caller, sid)

    def _grade_pending(self, sid: int, stored: Path, shown_as: str) -> None:
        try:
            _, score = self.grader.grade(stored)
        except InvalidSubmissionError as e:
            with self.transaction() as db:
                db.execute("DELETE FROM submissions WHERE id = ?", (sid,))
            stored.unlink(missing_ok=True)
            raise InvalidSubmissionError(str(e).replace(str(stored), shown_as)) from None
        # anything else (a bug, the server stopping) leaves the row pending: `recover` grades it at the next start
        with self.transaction() as db:
            db.execute("UPDATE submissions SET status = 'scored', " + SCORE_COLUMNS + " WHERE id = ?",
                       (*score_values(score), sid))

    def recover(self) -> dict[str, int]:
        """At start: grade the rows a killed server left pending, and delete uploads no row names
        (half-received files). Counts of each."""
        with self.connect() as db:
            pending = db.execute("SELECT id, stored, file_name FROM submissions WHERE status = 'pending'").fetchall()
            named = {r["stored"] for r in db.execute("SELECT stored FROM submissions")}
        graded = dropped = 0
        for row in pending:
            stored = self.uploads / row["stored"]
            if not row["stored"] or not stored.is_file():
                with self.transaction() as db:
                    db.execute("DELETE FROM submissions WHERE id = ?", (row["id"],))
                dropped += 1
                continue
            try:
                self._grade_pending(row["id"], stored, row["file_name"])
                graded += 1
            except InvalidSubmissionError:
                dropped += 1
        orphans = [p for p in self.uploads.iterdir() if p.name not in named]
        for path in orphans:
            path.unlink(missing_ok=True)
        return {"graded": graded, "dropped": dropped, "orphan_files": len(orphans)}

    def submission(self, caller: Caller, sid: int) -> dict:
        """One of the caller's own submissions (the organiser: any); another's is not found."""
        with self.connect() as db:
            row = db.execute(SUBMISSION_QUERY + " WHERE s.id = ?", (sid,)).fetchone()
        if row is None or not (caller.is_organiser or row["participant_id"] == caller.id):
            raise NotFoundError(f"no submission {sid} of yours")
        return self.view(row, caller, self.revealed)

    def history(self, caller: Caller) -> list[dict]:
        """The caller's own submissions, oldest first (the organiser: everyone's)."""
        with self.connect() as db:
            if caller.is_organiser:
                rows = db.execute(SUBMISSION_QUERY + " ORDER BY s.id").fetchall()
            else:
                rows = db.execute(SUBMISSION_QUERY + " WHERE s.participant_id = ? ORDER BY s.id",
                                  (caller.id,)).fetchall()
        revealed = self.revealed
        return [self.view(r, caller, revealed) for r in rows]

    @staticmethod
    def view(row: sqlite3.Row, caller: Caller, revealed: bool) -> dict:
        """A submission as the caller may see it: private score only for the organiser or once revealed."""
        shown = {"id": row["id"], "participant": row["participant"], "submitted_at": row["submitted_at"],
                 "file_name": row["file_name"], "note": row["note"], "status": row["status"],
                 "public": _estimate(row, "public"), "selected": bool(row["selected"]),
                 "disqualified_reason": row["disqualified_reason"]}
        if caller.is_organiser or revealed:
            shown["private"] = _estimate(row, "private")
        return shown

    def select(self, caller: Caller, ids: list[int]) -> list[int]:
        """Make `ids` (the caller's own scored submissions) the final picks, replacing earlier picks."""
        if caller.is_organiser:
            raise ForbiddenError("the organiser has no submissions to pick")
        ids = list(dict.fromkeys(ids))
        if not 1 <= len(ids) <= self.max_selected:
            raise BadRequestError(f"pick 1 to {self.max_selected} submissions, not {len(ids)}")
        with self.transaction() as db:
            if self.revealed:
                raise ClosedError(f"{self.name} has ended: final picks are closed")
            for sid in ids:
                row = db.execute("SELECT status FROM submissions WHERE id = ? AND participant_id = ?",
                                 (sid, caller.id)).fetchone()
                if row is None:
                    raise NotFoundError(f"no submission {sid} of yours")
                if row["status"] != "scored":
                    raise BadRequestError(f"submission {sid} is {row['status']}, not scored: it cannot be picked")
            db.execute("UPDATE submissions SET selected = 0 WHERE participant_id = ?", (caller.id,))
            db.executemany("UPDATE submissions SET selected = 1 WHERE id = ?", [(sid,) for sid in ids])
        return ids

    # ------------------------------------------------------------ the organiser
    def require_organiser(self, caller: Caller) -> None:
        if not caller.is_organiser:
            raise ForbiddenError("only the organiser may do this")

    def reveal(self, caller: Caller) -> None:
        self.require_organiser(caller)
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO settings (key, value) VALUES ('revealed_at', ?)",
                       (self.clock().isoformat(),))

    def disqualify(self, caller: Caller, sid: int, reason: str) -> dict:
        self.require_organiser(caller)
        check_note(reason)
        with self.transaction() as db:
            if not db.execute("UPDATE submissions SET status = 'disqualified', selected = 0, disqualified_reason = ? "
                              "WHERE id = ? AND status != 'pending'", (reason or "disqualified", sid)).rowcount:
                raise NotFoundError(f"no scored submission {sid}")
        return self.submission(caller, sid)

    def rescore(self, caller: Caller) -> int:
        """Grade every stored submission again (after the answer file was corrected); how many changed."""
        self.require_organiser(caller)
        with self.connect() as db:
            rows = db.execute("SELECT id, stored, public, private FROM submissions "
                              "WHERE status != 'pending'").fetchall()
        try:            # every file graded before any row changes: a rescore is all or nothing
            values = [score_values(self.grader.grade(self.uploads / row["stored"])[1]) for row in rows]
        except InvalidSubmissionError as e:
            raise BadRequestError(f"rescore stopped, nothing changed: {e}") from None
        with self.transaction() as db:
            db.executemany("UPDATE submissions SET " + SCORE_COLUMNS + " WHERE id = ?",
                           [(*v, row["id"]) for v, row in zip(values, rows)])
        return sum((v[0], v[3]) != (row["public"], row["private"]) for v, row in zip(values, rows))

    # ------------------------------------------------------------ leaderboards
    def best_rows(self) -> list[dict]:
        """Each participant's best scored submission by public score (ties: the earliest) and the
        private score Kaggle ranks them by: the best of their final picks, or of their best
        `max_selected` public scores where they picked none. In order of first submission."""
        with self.connect() as db:
            rows = db.execute(SUBMISSION_QUERY + " WHERE s.status = 'scored' ORDER BY s.id").fetchall()
        by_participant: dict[str, list[sqlite3.Row]] = {}
        for row in rows:
            by_participant.setdefault(row["participant"], []).append(row)
        higher = self.grader.metric.higher_is_better
        best = []
        for name, subs in by_participant.items():
            public_rank = ranks([s["public"] for s in subs], higher)
            order = sorted(range(len(subs)), key=lambda i: public_rank[i])
            top = subs[order[0]]
            picks = [s for s in subs if s["selected"]] or [subs[i] for i in order[:self.max_selected]]
            private = [s["private"] for s in picks]
            best.append({"run": name, "public": top["public"], "public_low": top["public_low"],
                         "public_high": top["public_high"], "entries": len(subs),
                         "last": subs[-1]["submitted_at"], "submission": top["id"], "first": subs[0]["id"],
                         "private": private[ranks(private, higher).index(1)],
                         "picked": [s["id"] for s in picks], "auto_picked": not any(s["selected"] for s in subs)})
        return sorted(best, key=lambda r: r["first"])

    def public_board(self) -> list[dict]:
        """Participants ranked by their best public score; ties: the earlier best submission first."""
        rows = sorted(self.best_rows(), key=lambda r: r["submission"])
        order = ranks([r["public"] for r in rows], self.grader.metric.higher_is_better)
        board = [{"rank": rank, "participant": r["run"], "public": r["public"], "public_low": r["public_low"],
                  "public_high": r["public_high"], "entries": r["entries"], "last": r["last"]}
                 for rank, r in zip(order, rows)]
        return sorted(board, key=lambda r: (r["rank"] is None, r["rank"] or 0))

    def private_board(self) -> list[dict]:
        """Once revealed: participants by private score, with public rank and shake-up (`select`'s view)."""
        if not self.revealed:
            raise ForbiddenError("the private leaderboard is sealed until the organiser reveals it")
        rows = sorted(self.best_rows(), key=lambda r: r["submission"])
        view = shake_up_view(rows, self.grader.metric.higher_is_better)
        return [{"participant": v["run"], **{k: x for k, x in v.items() if k not in ("run", "final")}} for v in view]


def open_host(paths: CompetitionPaths, *, daily_limit: int | None = None,
              clock: Callable[[], datetime] = utc_now) -> Host:
    """The hosted competition of a prepared one: its grader and daily limit (the flag's, else the
    limit `prepare --daily-limit` set, else Kaggle's 5)."""
    if not paths.has_answers():
        raise DataSourceError(f"{paths.solution}: no answers for {paths.root.name}, so nothing can be scored")
    info = read_prepared(paths.public)
    grader = Grader.read(paths.solution, info.submission, load_test_ids(paths.public), info.metric)
    limit = daily_limit or read_rules(paths.root).daily_limit or KAGGLE_DAILY_LIMIT
    return Host(paths.root, grader, name=info.name, daily_limit=limit, clock=clock)


def upload_limit(host: Host) -> int:
    """The largest upload taken: the grader's own limit for the competition's rows and form."""
    return max_submission_bytes(len(host.grader.ids), host.grader.form)


SCORE_COLUMNS = ("public = ?, public_low = ?, public_high = ?, private = ?, private_low = ?, private_high = ?")
SUBMISSION_QUERY = ("SELECT s.*, p.name AS participant FROM submissions s JOIN participants p "
                    "ON p.id = s.participant_id")


def score_values(score: Score) -> tuple[float, ...]:
    return (score.public.value, score.public.low, score.public.high,
            score.private.value, score.private.low, score.private.high)


def _estimate(row: sqlite3.Row, part: str) -> dict | None:
    if row[part] is None:
        return None
    return {"value": row[part], "low": row[f"{part}_low"], "high": row[f"{part}_high"]}
