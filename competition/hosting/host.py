"""A hosted competition's state, for many participants: SQLite in the workspace, no HTTP here.

`serve` (server.py) puts this behind HTTP; `invite` calls it directly. One database per
competition, `data/NAME/server.sqlite` in WAL mode, the uploaded files beside it in
`data/NAME/uploads/`. Tokens and session ids are random and only their SHA-256 is stored.

A submission's life: the upload is written to `uploads/`; one `BEGIN IMMEDIATE` transaction checks
the deadline and counts the participant's UTC day and, under the limit, adds a `pending` row (so two
requests racing for the last slot cannot both get it); the row is graded on a bounded pool of
worker threads (`Grading`), never on the request's: a scored file turns its row `scored`; a file
the grader rejects (the participant's fault) deletes its row and file and counts toward the
participant's rejection rate, not the day's limit; anything else the grader raises (a bug) turns
the row `failed`, with its reason, counted nowhere. The pending rows are the queue: a server killed
in between leaves them, and `recover` hands them to the pool at the next start; no stored row can
stop the server from starting.

Private scores live in the database from the first grade and leave it, for participants, only
after the organiser reveals them: every submission a participant is shown is built by `view`,
which leaves the private columns out while sealed, and `private_board` refuses until the reveal.
The rules (the daily limit, final picks, ranking, the shake-up) are grading/rules.py's, over the
same `Submission` records a local workspace's ledger holds.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import sqlite3
import threading
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..cpus import usable_cpus
from ..errors import DataSourceError, HarnessError, InvalidSubmissionError, SubmissionLimitError
from ..grading.grader import Grader, Score
from ..grading.ledger import Submission, finite
from ..grading.rules import (MAX_SELECTED, best_per_participant, check_daily_limit, check_picks, ranks, read_rules,
                             shake_up_view, used_today)
from ..grading.submission import max_submission_bytes
from ..prepared import load_test_ids, read_prepared
from ..workspace import CompetitionPaths

DATABASE = "server.sqlite"
UPLOADS = "uploads"
KAGGLE_DAILY_LIMIT = 5
NAME_LENGTH = 40
NOTE_LENGTH = 500
NAME_PUNCTUATION = " _.-@"
SESSION_DAYS = 7                    # a login lasts this long, or until logout or the participant's revocation
REJECTIONS_PER_WINDOW = 10          # rejected uploads a participant may send in `REJECTION_WINDOW`...
REJECTION_WINDOW = timedelta(minutes=10)    # ...before the next is refused unread (429): they count nowhere else
MAX_ID = 2 ** 63 - 1                # SQLite's largest integer: a larger id names no submission
SCHEMA_VERSION = 2

SUBMISSIONS_TABLE = """
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: a rejected upload's id stays unused
    participant_id INTEGER NOT NULL REFERENCES participants (id),
    submitted_at TEXT NOT NULL,             -- ISO time, UTC
    day TEXT NOT NULL,                      -- its UTC day, what the daily limit counts
    file_name TEXT NOT NULL,                -- as uploaded, for people
    stored TEXT NOT NULL,                   -- the file under uploads/
    note TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN ('pending', 'scored', 'failed', 'disqualified')),
    public REAL, public_low REAL, public_high REAL,
    private REAL, private_low REAL, private_high REAL,
    selected INTEGER NOT NULL DEFAULT 0,
    reason TEXT                             -- why it failed or was disqualified
);
CREATE INDEX IF NOT EXISTS submissions_by_day ON submissions (participant_id, day);
"""
SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS participants (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    name_key TEXT,                          -- NFKC + casefold: `Alice` and `alice` are one name
    role TEXT NOT NULL CHECK (role IN ('participant', 'organiser')),
    token_hash TEXT UNIQUE,                 -- NULL once revoked
    invited_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS participants_by_key ON participants (name_key);
""" + SUBMISSIONS_TABLE + """
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    participant_id INTEGER NOT NULL REFERENCES participants (id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejections (participant_id INTEGER NOT NULL, at TEXT NOT NULL);
"""
# A database of version 1 (before sessions): no `failed` status, `disqualified_reason` for `reason`,
# no name_key. Its submissions table is rebuilt (SQLite cannot change a CHECK), its rows kept.
MIGRATE_SUBMISSIONS_FROM_1 = """
BEGIN IMMEDIATE;
ALTER TABLE submissions RENAME TO submissions_v1;
DROP INDEX IF EXISTS submissions_by_day;
""" + SUBMISSIONS_TABLE + """
INSERT INTO submissions (id, participant_id, submitted_at, day, file_name, stored, note, status, public, public_low,
                         public_high, private, private_low, private_high, selected, reason)
    SELECT id, participant_id, submitted_at, day, file_name, stored, note, status, public, public_low, public_high,
           private, private_low, private_high, selected, disqualified_reason FROM submissions_v1;
DROP TABLE submissions_v1;
COMMIT;
"""


class AuthError(HarnessError):
    """A missing, unknown or revoked token, or an ended session (HTTP 401)."""


class ForbiddenError(HarnessError):
    """A known caller asking for what its role may not do, or a form posted from another site (HTTP 403)."""


class NotFoundError(HarnessError):
    """No such submission among the caller's own (HTTP 404: another's is not found either)."""


class BadRequestError(HarnessError):
    """A malformed field of a request (HTTP 400)."""


LimitError = SubmissionLimitError       # HTTP 429, with Retry-After when the day's limit reopens


class ClosedError(HarnessError):
    """The competition has ended (its deadline passed, or the private board is revealed): HTTP 409."""


class StorageError(HarnessError):
    """Too little free disk to take an upload (HTTP 507)."""


class GradingError(HarnessError):
    """The grader broke on a stored file (the server's fault): the row is `failed` and counts nowhere (HTTP 500)."""


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


def name_key(name: str) -> str:
    """What makes two names one: compatibility-normalised (NFKC) and case-folded, so `Alice`, `alice`
    and a full-width `ａｌｉｃｅ` are the same participant."""
    return unicodedata.normalize("NFKC", name).casefold()


def check_name(name: str) -> str:
    """A participant name: 1-40 letters, digits and ` _.-@`, not starting or ending with a space, of
    one script: a name mixing Latin with Cyrillic or Greek letters (`аlice`, its `а` Cyrillic) is refused."""
    if not 1 <= len(name) <= NAME_LENGTH or name != name.strip() or \
            not all(c.isalnum() or c in NAME_PUNCTUATION for c in name):
        raise BadRequestError(f"participant name {name[:60]!r}: use 1-{NAME_LENGTH} letters, digits and "
                              f"{NAME_PUNCTUATION.strip()!r} or spaces inside")
    scripts = {unicodedata.name(c, "?").split()[0] for c in unicodedata.normalize("NFKC", name) if c.isalpha()}
    if len(scripts & {"LATIN", "CYRILLIC", "GREEK"}) > 1:
        raise BadRequestError(f"participant name {name[:60]!r} mixes {', '.join(sorted(scripts))} letters: a "
                              f"lookalike of another name; use one script")
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


def submission_id(text: str | int) -> int:
    """An id from a request: 1 to 18 ASCII digits naming at most SQLite's largest integer (a larger
    one, `²` or `-1` names no submission)."""
    text = str(text)
    if not re.fullmatch(r"[0-9]{1,19}", text) or not 1 <= int(text) <= MAX_ID:
        raise NotFoundError(f"no submission {text[:40]!r}")
    return int(text)


def parse_deadline(text: str) -> datetime:
    """`2026-12-31T23:59Z`, `2026-12-31 23:59+01:00`, `2026-12-31` (the day's start, UTC) -> UTC."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequestError(f"--ends {text!r}: give a time such as 2026-12-31T23:59Z") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


class Grading:
    """Grading off the request threads: a bounded pool (one worker a usable CPU) whose queue is the
    database's pending rows. `grade(sid)` returns a future the request awaits without holding a thread."""

    def __init__(self, host: "Host", workers: int | None = None) -> None:
        self.host = host
        self.pool = ThreadPoolExecutor(max_workers=workers or usable_cpus(), thread_name_prefix="grading")

    def grade(self, sid: int) -> Future:
        return self.pool.submit(self.host.grade, sid)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=False)


class Host:
    """One hosted competition: its database, uploads and grader."""

    def __init__(self, root: Path, grader: Grader, *, name: str, daily_limit: int = KAGGLE_DAILY_LIMIT,
                 max_selected: int = MAX_SELECTED, clock: Callable[[], datetime] = utc_now) -> None:
        self.root, self.grader, self.name = Path(root), grader, name
        self.daily_limit, self.max_selected, self.clock = daily_limit, max_selected, clock
        self.database, self.uploads = self.root / DATABASE, self.root / UPLOADS
        self.uploads.mkdir(parents=True, exist_ok=True)
        self._migrate()
        self._grading: Grading | None = None
        self._grading_lock = threading.Lock()

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

    def _migrate(self) -> None:
        """Make or bring the database to `SCHEMA_VERSION`, keeping every row."""
        with self.connect() as db:
            db.execute("PRAGMA journal_mode = WAL")

            def columns(table: str) -> set[str]:
                return {r["name"] for r in db.execute(f"SELECT name FROM pragma_table_info('{table}')")}
            if "disqualified_reason" in columns("submissions"):
                db.executescript(MIGRATE_SUBMISSIONS_FROM_1)
            if columns("participants") and "name_key" not in columns("participants"):
                db.execute("ALTER TABLE participants ADD COLUMN name_key TEXT")
            db.executescript(SCHEMA)
            for row in db.execute("SELECT id, name FROM participants WHERE name_key IS NULL").fetchall():
                try:
                    db.execute("UPDATE participants SET name_key = ? WHERE id = ?", (name_key(row["name"]), row["id"]))
                except sqlite3.IntegrityError:      # two old names equal but for case: both kept as they were
                    pass
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def setting(self, key: str) -> str | None:
        with self.connect() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["value"]

    def set_setting(self, key: str, value: str | None) -> None:
        with self.transaction() as db:
            if value is None:
                db.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))

    @property
    def revealed(self) -> bool:
        return self.setting("revealed_at") is not None

    @property
    def ends_at(self) -> datetime | None:
        value = self.setting("ends_at")
        return None if value is None else datetime.fromisoformat(value)

    def set_deadline(self, ends_at: datetime | None) -> None:
        """After `ends_at` uploads are refused (409, naming the time) and the pages say it ended."""
        self.set_setting("ends_at", None if ends_at is None else ends_at.astimezone(timezone.utc).isoformat())

    @property
    def ended(self) -> bool:
        ends = self.ends_at
        return ends is not None and self.clock() >= ends

    # ------------------------------------------------------------ people, tokens, sessions
    def ensure_organiser(self, new: bool = False) -> str | None:
        """At first start (or with `new`, replacing a lost one): make the organiser's token and return
        it; None when one exists already."""
        token = new_token()
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM participants WHERE role = 'organiser'").fetchone():
                if not new:
                    return None
                organiser = db.execute("SELECT id FROM participants WHERE role = 'organiser'").fetchone()["id"]
                db.execute("UPDATE participants SET token_hash = ? WHERE id = ?", (hash_token(token), organiser))
                db.execute("DELETE FROM sessions WHERE participant_id = ?", (organiser,))
                return token
            db.execute("INSERT INTO participants (name, name_key, role, token_hash, invited_at) "
                       "VALUES (?, ?, 'organiser', ?, ?)",
                       ("organiser", name_key("organiser"), hash_token(token), self.clock().isoformat()))
        return token

    def invite(self, name: str) -> str:
        """A new token for `name` (a new participant, or a new token replacing an earlier one). A name
        that is another's but for case or a lookalike compatibility form is refused."""
        check_name(name)
        token, key = new_token(), name_key(name)
        with self.transaction() as db:
            row = db.execute("SELECT id, name, role FROM participants WHERE name_key = ?", (key,)).fetchone()
            if row is not None and row["role"] == "organiser":
                raise BadRequestError(f"{name!r} is the organiser's name; pick another")
            if row is not None and row["name"] != name:
                raise BadRequestError(f"participant name {name!r}: {row['name']!r} is taken, and names equal but "
                                      f"for case or form are one name")
            if row is None:
                db.execute("INSERT INTO participants (name, name_key, role, token_hash, invited_at) "
                           "VALUES (?, ?, 'participant', ?, ?)", (name, key, hash_token(token), self.clock().isoformat()))
            else:
                db.execute("UPDATE participants SET token_hash = ?, revoked_at = NULL WHERE id = ?",
                           (hash_token(token), row["id"]))
                db.execute("DELETE FROM sessions WHERE participant_id = ?", (row["id"],))
        return token

    def revoke(self, name: str) -> None:
        """End a participant's token and every session it opened; their submissions stay."""
        with self.transaction() as db:
            row = db.execute("SELECT id FROM participants WHERE name = ? AND role = 'participant'", (name,)).fetchone()
            if row is None:
                raise NotFoundError(f"{self.name}: no participant {name!r}")
            db.execute("UPDATE participants SET token_hash = NULL, revoked_at = ? WHERE id = ?",
                       (self.clock().isoformat(), row["id"]))
            db.execute("DELETE FROM sessions WHERE participant_id = ?", (row["id"],))

    def caller(self, token: str | None) -> Caller:
        if not token:
            raise AuthError("no token: send the header 'Authorization: Bearer TOKEN' (from `invite`)")
        with self.connect() as db:
            row = db.execute("SELECT id, name, role FROM participants WHERE token_hash = ?",
                             (hash_token(token),)).fetchone()
        if row is None:
            raise AuthError("unknown or revoked token")
        return Caller(id=row["id"], name=row["name"], role=row["role"])

    def open_session(self, token: str) -> str:
        """Log in with a token: a new random session id (the browser's cookie holds it, never the token)."""
        caller = self.caller(token)
        session, now = secrets.token_urlsafe(32), self.clock()
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE expires_at < ?", (now.isoformat(),))
            db.execute("INSERT INTO sessions (id_hash, participant_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                       (hash_token(session), caller.id, now.isoformat(),
                        (now + timedelta(days=SESSION_DAYS)).isoformat()))
        return session

    def session_caller(self, session: str | None) -> Caller:
        if not session:
            raise AuthError("not logged in")
        with self.connect() as db:
            row = db.execute("SELECT p.id, p.name, p.role, s.expires_at FROM sessions s JOIN participants p "
                             "ON p.id = s.participant_id WHERE s.id_hash = ? AND p.token_hash IS NOT NULL",
                             (hash_token(session),)).fetchone()
        if row is None or datetime.fromisoformat(row["expires_at"]) <= self.clock():
            raise AuthError("the session has ended: log in again")
        return Caller(id=row["id"], name=row["name"], role=row["role"])

    def end_session(self, session: str | None) -> None:
        if session:
            with self.transaction() as db:
                db.execute("DELETE FROM sessions WHERE id_hash = ?", (hash_token(session),))

    def participants(self, caller: Caller) -> list[dict]:
        """The organiser's list: every participant with their counts."""
        self.require_organiser(caller)
        today = self.clock().date().isoformat()
        with self.connect() as db:
            rows = db.execute(
                "SELECT p.id, p.name, p.invited_at, p.revoked_at, count(s.id) AS submissions, "
                "sum(s.status = 'scored') AS scored, sum(s.day = ? AND s.status != 'failed') AS today, "
                "max(s.submitted_at) AS last FROM participants p LEFT JOIN submissions s ON s.participant_id = p.id "
                "WHERE p.role = 'participant' GROUP BY p.id ORDER BY p.id", (today,)).fetchall()
        return [{"name": r["name"], "invited_at": r["invited_at"], "revoked": r["revoked_at"] is not None,
                 "submissions": r["submissions"], "scored": r["scored"] or 0, "today": r["today"] or 0,
                 "last": r["last"]} for r in rows]

    # ------------------------------------------------------------ submissions
    def records(self, db: sqlite3.Connection, where: str = "", args: tuple = ()) -> list[Submission]:
        rows = db.execute(SUBMISSION_QUERY + where + " ORDER BY s.id", args).fetchall()
        return [as_record(r) for r in rows]

    def check_open(self, caller: Caller) -> None:
        """Refuse (cheaply, before an upload is read) what `accept` would refuse anyway."""
        if caller.is_organiser:
            raise ForbiddenError("the organiser does not submit; invite a participant for that")
        if self.revealed:
            raise ClosedError(f"{self.name} has ended: the private leaderboard is revealed")
        if self.ended:
            raise ClosedError(f"{self.name} ended at {self.ends_at:%Y-%m-%d %H:%M} UTC: no more submissions")
        now = self.clock()
        with self.connect() as db:
            check_daily_limit(self.records(db, " WHERE s.participant_id = ?", (caller.id,)), caller.name,
                              self.daily_limit, now, self.name)
            since = (now - REJECTION_WINDOW).isoformat()
            rejected = db.execute("SELECT count(*), min(at) FROM rejections WHERE participant_id = ? AND at > ?",
                                  (caller.id, since)).fetchone()
        if rejected[0] >= REJECTIONS_PER_WINDOW:
            retry = datetime.fromisoformat(rejected[1]) + REJECTION_WINDOW
            raise LimitError(f"{rejected[0]} rejected uploads in the last {REJECTION_WINDOW.seconds // 60} minutes: "
                             f"check your files against the sample submission; the next upload is read at "
                             f"{retry:%H:%M:%S} UTC", retry_at=retry)

    def check_disk(self, needed: int) -> None:
        free = shutil.disk_usage(self.uploads).free
        if free < 2 * needed + 16 * 2 ** 20:
            raise StorageError(f"the server has {free:,} bytes of disk free, too little to take an upload; "
                               f"tell the organiser")

    def incoming_path(self) -> Path:
        """Where an upload is written while it arrives (a name no stored file has)."""
        return self.uploads / f"incoming-{secrets.token_hex(8)}.part"

    def accept(self, caller: Caller, upload: Path, *, file_name: str, note: str = "") -> int:
        """Count and record an uploaded file (already under uploads/) as a pending row; its id. Refusals
        leave nothing behind: the upload is deleted, no row is kept."""
        try:
            check_file_name(file_name)
            check_note(note)
            self.check_open(caller)
            now = self.clock()
            with self.transaction() as db:
                check_daily_limit(self.records(db, " WHERE s.participant_id = ?", (caller.id,)), caller.name,
                                  self.daily_limit, now, self.name)
                if self.revealed or self.ended:
                    raise ClosedError(f"{self.name} has ended")
                sid = db.execute("INSERT INTO submissions (participant_id, submitted_at, day, file_name, stored, "
                                 "note, status) VALUES (?, ?, ?, ?, '', ?, 'pending')",
                                 (caller.id, now.isoformat(), now.date().isoformat(), file_name, note)).lastrowid
                stored = self.uploads / f"{sid}.csv"
                os.replace(upload, stored)
                db.execute("UPDATE submissions SET stored = ? WHERE id = ?", (stored.name, sid))
        except BaseException:
            Path(upload).unlink(missing_ok=True)
            raise
        return sid

    def submit(self, caller: Caller, upload: Path, *, file_name: str, note: str = "") -> dict:
        """`accept`, then grade on the pool and wait: the participant's view of the scored row."""
        sid = self.accept(caller, upload, file_name=file_name, note=note)
        self.grading.grade(sid).result()
        return self.submission(caller, sid)

    @property
    def grading(self) -> Grading:
        with self._grading_lock:
            if self._grading is None:
                self._grading = Grading(self)
            return self._grading

    def close(self) -> None:
        if self._grading is not None:
            self._grading.close()

    def grade(self, sid: int) -> None:
        """Grade a pending row: scored; rejected (InvalidSubmissionError, the participant's fault:
        row and file deleted, the rejection counted for the rate limit); or failed (anything else:
        the reason kept, counted nowhere, raised as GradingError)."""
        with self.connect() as db:
            row = db.execute("SELECT participant_id, stored, file_name FROM submissions WHERE id = ? "
                             "AND status = 'pending'", (sid,)).fetchone()
        if row is None:
            return
        stored = self.uploads / row["stored"]
        try:
            _, score = self.grader.grade(stored)
        except InvalidSubmissionError as e:
            with self.transaction() as db:
                db.execute("DELETE FROM submissions WHERE id = ?", (sid,))
                db.execute("INSERT INTO rejections (participant_id, at) VALUES (?, ?)",
                           (row["participant_id"], self.clock().isoformat()))
            stored.unlink(missing_ok=True)
            raise InvalidSubmissionError(str(e).replace(str(stored), row["file_name"])) from None
        except Exception as e:      # a bug, not the participant's fault: the row says so and counts nowhere
            reason = f"grading failed: {type(e).__name__}: {str(e)[:300]}"
            with self.transaction() as db:
                db.execute("UPDATE submissions SET status = 'failed', reason = ? WHERE id = ?", (reason, sid))
            raise GradingError(f"{row['file_name']}: {reason}; it does not count toward your limit") from e
        with self.transaction() as db:
            db.execute("UPDATE submissions SET status = 'scored', " + SCORE_COLUMNS + " WHERE id = ?",
                       (*score_values(score), sid))

    def recover(self) -> dict[str, int]:
        """At start: delete half-received uploads (no row names them) and rows whose file is gone, and
        grade the pending rows a stopped server left, each to scored, rejected or failed: no stored
        row stops the server from starting. Counts of each."""
        with self.connect() as db:
            pending = db.execute("SELECT id, stored FROM submissions WHERE status = 'pending'").fetchall()
            named = {r["stored"] for r in db.execute("SELECT stored FROM submissions")}
        orphans = [p for p in self.uploads.iterdir() if p.name not in named]
        for path in orphans:
            path.unlink(missing_ok=True)
        counts = {"graded": 0, "dropped": 0, "failed": 0, "orphan_files": len(orphans)}
        for row in pending:
            if not row["stored"] or not (self.uploads / row["stored"]).is_file():
                with self.transaction() as db:
                    db.execute("DELETE FROM submissions WHERE id = ?", (row["id"],))
                counts["dropped"] += 1
                continue
            try:
                self.grade(row["id"])
                counts["graded"] += 1
            except InvalidSubmissionError:
                counts["dropped"] += 1
            except GradingError:
                counts["failed"] += 1
        return counts

    def submission(self, caller: Caller, sid: int) -> dict:
        """One of the caller's own submissions (the organiser: any); another's is not found."""
        sid = submission_id(sid)
        with self.connect() as db:
            row = db.execute(SUBMISSION_QUERY + " WHERE s.id = ?", (sid,)).fetchone()
        if row is None or not (caller.is_organiser or row["participant_id"] == caller.id):
            raise NotFoundError(f"no submission {sid} of yours")
        return self.view(as_record(row), caller, self.revealed)

    def history(self, caller: Caller) -> list[dict]:
        """The caller's own submissions, oldest first (the organiser: everyone's)."""
        with self.connect() as db:
            records = self.records(db) if caller.is_organiser else \
                self.records(db, " WHERE s.participant_id = ?", (caller.id,))
        revealed = self.revealed
        return [self.view(r, caller, revealed) for r in records]

    def used_today(self, caller: Caller) -> int:
        with self.connect() as db:
            return used_today(self.records(db, " WHERE s.participant_id = ?", (caller.id,)), caller.name, self.clock())

    @staticmethod
    def view(record: Submission, caller: Caller, revealed: bool) -> dict:
        """A submission as the caller may see it: private score only for the organiser or once revealed."""
        shown = {"id": int(record.id), "participant": record.participant, "submitted_at": record.submitted_at,
                 "file_name": record.file_name, "note": record.note, "status": record.status,
                 "public": record.estimate("public"), "selected": record.selected,
                 "reason": record.reason or None}
        if caller.is_organiser or revealed:
            shown["private"] = record.estimate("private")
        return shown

    def select(self, caller: Caller, ids: list[int]) -> list[int]:
        """Make `ids` (the caller's own scored submissions) the final picks, replacing earlier picks."""
        if caller.is_organiser:
            raise ForbiddenError("the organiser has no submissions to pick")
        ids = [submission_id(i) for i in ids]
        with self.transaction() as db:
            if self.revealed or self.ended:
                raise ClosedError(f"{self.name} has ended: final picks are closed")
            own = self.records(db, " WHERE s.participant_id = ?", (caller.id,))
            known = {r.id for r in own}
            missing = [i for i in ids if str(i) not in known]
            if missing:
                raise NotFoundError(f"no submission {missing[0]} of yours")
            try:
                picked = check_picks(own, caller.name, [str(i) for i in ids], self.max_selected, self.name)
            except SubmissionLimitError as e:
                raise BadRequestError(str(e).removeprefix(f"{self.name}: ")) from None
            db.execute("UPDATE submissions SET selected = 0 WHERE participant_id = ?", (caller.id,))
            db.executemany("UPDATE submissions SET selected = 1 WHERE id = ?", [(int(sid),) for sid in picked])
        return [int(sid) for sid in picked]

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
        sid = submission_id(sid)
        check_note(reason)
        with self.transaction() as db:
            if not db.execute("UPDATE submissions SET status = 'disqualified', selected = 0, reason = ? "
                              "WHERE id = ? AND status = 'scored'", (reason or "disqualified", sid)).rowcount:
                raise NotFoundError(f"no scored submission {sid}")
        return self.submission(caller, sid)

    def rescore(self, caller: Caller) -> int:
        """Grade every scored or disqualified file again (after the answer file was corrected); how many changed."""
        self.require_organiser(caller)
        with self.connect() as db:
            rows = db.execute("SELECT id, stored, public, private FROM submissions "
                              "WHERE status IN ('scored', 'disqualified')").fetchall()
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
        with self.connect() as db:
            records = self.records(db, " WHERE s.status = 'scored'")
        return best_per_participant(records, self.grader.metric.higher_is_better, self.max_selected)

    def public_board(self) -> list[dict]:
        """Participants ranked by their best public score; ties: the earlier best submission first; a
        score undefined on the public split (none) last, unranked."""
        rows = sorted(self.best_rows(), key=lambda r: int(r["submission"]))
        order = ranks([r["public"] for r in rows], self.grader.metric.higher_is_better)
        board = [{"rank": rank, "participant": r["run"], "public": r["public"], "public_low": r["public_low"],
                  "public_high": r["public_high"], "entries": r["entries"], "last": r["last"]}
                 for rank, r in zip(order, rows)]
        return sorted(board, key=lambda r: (r["rank"] is None, r["rank"] or 0))

    def private_board(self) -> list[dict]:
        """Once revealed: participants by private score, with public rank and shake-up (`select`'s view)."""
        if not self.revealed:
            raise ForbiddenError("the private leaderboard is sealed until the organiser reveals it")
        rows = sorted(self.best_rows(), key=lambda r: int(r["submission"]))
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


def score_values(score: Score) -> tuple[float | None, ...]:
    """A score's six columns; NaN (a metric undefined on a split) stored as NULL."""
    return tuple(finite(v) for v in (score.public.value, score.public.low, score.public.high,
                                     score.private.value, score.private.low, score.private.high))


def as_record(row: sqlite3.Row) -> Submission:
    return Submission(id=str(row["id"]), participant=row["participant"], submitted_at=row["submitted_at"],
                      status=row["status"], public=row["public"], public_low=row["public_low"],
                      public_high=row["public_high"], private=row["private"], private_low=row["private_low"],
                      private_high=row["private_high"], selected=bool(row["selected"]), file_name=row["file_name"],
                      note=row["note"], reason=row["reason"] or "")
