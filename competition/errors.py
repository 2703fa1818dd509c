"""One base class for every fault a user can fix: the CLI prints these as one line and exits 1.

Anything else is a bug in the harness and keeps its traceback.
"""

from __future__ import annotations


class HarnessError(Exception):
    """A user-facing error; the message names the file, row, field or value at fault."""


class ConfigError(HarnessError, ValueError):
    """A run setting outside its allowed values; the message names the field and what is allowed."""


class DataSourceError(HarnessError):
    """A data file that cannot be read or does not have the expected form."""


class InvalidSubmissionError(HarnessError, ValueError):
    """A submission file that cannot be scored; the message says where and why."""


class RunStateError(HarnessError):
    """A run folder that cannot be resumed or reported (missing, or made from other data)."""


class WriteError(HarnessError):
    """A file that could not be written (full disk, read-only folder); the previous one is kept."""


class SubmissionLimitError(HarnessError):
    """A competition's rules refuse this submission (daily limit, final selection); `retry_at`: when
    the day's limit lets the next one in (HTTP 429 with Retry-After), None where waiting does not help."""

    def __init__(self, message: str, retry_at=None) -> None:
        super().__init__(message)
        self.retry_at = retry_at
