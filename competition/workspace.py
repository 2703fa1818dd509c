"""The workspace layer every stage shares: where things live, how files are written, one lock, one
duration format.

- `Workspace`: a user's competitions (data/NAME/), runs (submissions/RUN/) and leaderboard.md;
  `CompetitionPaths`: one prepared competition (public/ for the entrant, private/ for the grader).
- `atomic_write_text` / `atomic_write_bytes`: a temporary file beside the target, flushed to the
  disk (fsync), renamed into place, and the folder's entry synced: a kill or a power cut leaves the
  old file or the new one, never half of one.
- `file_lock`: one exclusive lock across processes (the `filelock` package: Unix and Windows).
- `parse_duration` / `format_duration`: `90s`, `3m`, `1h30m` and back.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import ConfigError, WriteError

TRAIN_IMAGES, TEST_IMAGES, LABELS = "train_images.npy", "test_images.npy", "labels.npz"


@dataclass(frozen=True)
class CompetitionPaths:
    """Where a prepared competition lives. Only `public` is ever handed to training code."""
    root: Path

    @property
    def public(self) -> Path:
        return self.root / "public"

    @property
    def private(self) -> Path:
        return self.root / "private"

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def solution(self) -> Path:
        return self.private / "solution.csv"

    @property
    def metadata(self) -> Path:
        return self.public / "competition.json"

    @property
    def train_images(self) -> Path:
        return self.public / TRAIN_IMAGES

    @property
    def test_images(self) -> Path:
        return self.public / TEST_IMAGES

    @property
    def labels(self) -> Path:
        return self.public / LABELS

    def has_answers(self) -> bool:
        return self.solution.is_file()

    @property
    def lock(self) -> Path:
        """The lock one prepare of the competition holds at a time."""
        return self.root / ".prepare.lock"




@dataclass(frozen=True)
class Workspace:
    """Where a user's competitions, runs and leaderboard live (the repository root by default)."""
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def submissions(self) -> Path:
        return self.root / "submissions"

    @property
    def leaderboard(self) -> Path:
        return self.root / "leaderboard.md"

    def competition(self, name: str) -> CompetitionPaths:
        return CompetitionPaths(self.data / name)




# ---------------------------------------------------------------- writing files


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX: fsync the directory; Windows has no such call)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync it, rename it into place, fsync the folder. A
    full disk or a folder that cannot be written leaves any previous file untouched and says which file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise WriteError(f"{path}: cannot write here ({e.strerror})") from e
    try:
        os.chmod(tmp, 0o644)    # mkstemp's 0600 would make results unreadable to other users
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _sync_folder(path.parent)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        kept = "the previous file is unchanged" if path.exists() else "nothing was written"
        raise WriteError(f"{path}: cannot write ({e.strerror}); {kept}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` of UTF-8 text, written as given (no newline translation)."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on the file `path` (made if missing) across processes, released if the
    holder dies: one prepare of a competition at a time, one writer of a ledger or a board."""
    from filelock import FileLock      # installed with torch; imported here so `--help` stays light
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"{path.parent}: cannot make the folder here ({e.strerror})") from e
    with FileLock(str(path)):
        yield


# ---------------------------------------------------------------- durations


def parse_duration(text: str) -> float | None:
    """`90s`, `3m`, `1h`, `1h30m`, `2.5m` -> seconds; `none` -> None (no limit)."""
    if text == "none":
        return None
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text.strip())
    if not text.strip() or parts is None or not any(parts.groups()):
        raise ConfigError(f"time_limit = {text!r}: give a duration such as 90s, 3m, 1h or 1h30m, or auto or none")
    hours, minutes, seconds = (float(g or 0) for g in parts.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError(f"time_limit = {text!r}: a time limit must be positive")
    return total


def format_duration(seconds: float) -> str:
    """Seconds as people read them, in the form `parse_duration` reads: 45s, 2m05s, 1h02m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
