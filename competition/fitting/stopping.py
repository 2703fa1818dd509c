"""Stopping a run on SIGINT (Ctrl+C) or SIGTERM (`timeout`, `kill`, Slurm or Kubernetes preemption).

Python's default SIGINT handler raises KeyboardInterrupt in whatever the main thread runs at
that instant. When that is a finalizer (a `__del__`, a weakref callback: file objects closed
by the garbage collector while Lightning writes a checkpoint, say), CPython prints "Exception
ignored in ..." and drops it, and the run goes on as if never interrupted. SIGTERM reaches
Lightning's own handler, whose SIGTERMException is a SystemExit with status 0. And a process
started with SIGINT ignored (a background job of a shell without job control) inherits that:
Python then installs no KeyboardInterrupt at all, and `kill -INT` does nothing.

So while a run trains, these handlers only record the request. The training step, the member
loop, prediction and the round loop call `check()` at their boundaries, which raises
`StopRequested` there; `run` prints the resume command and the CLI exits 128 + the signal's
number, as shells report a process killed by it (130 for SIGINT, 143 for SIGTERM). A second
Ctrl+C raises KeyboardInterrupt at once, for a user who will not wait for the step to end.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested: int | None = None      # the signal number asked for, while stop_on_signals is active


class StopRequested(BaseException):
    """A signal asked the run to stop; raised at the next step or member boundary.

    A BaseException, as KeyboardInterrupt is, so no `except Exception` on the way up eats it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def requested() -> int | None:
    """The signal that asked for a stop, or None."""
    return _requested


def check() -> None:
    """Raise StopRequested if a signal asked for a stop: call it where stopping is safe."""
    if _requested is not None:
        raise StopRequested(_requested)


def _record(signum: int, frame: object) -> None:
    global _requested
    if _requested is not None and signum == signal.SIGINT:
        raise KeyboardInterrupt             # the second Ctrl+C: now, not at the next boundary
    _requested = signum
    print(f"\n{signal.Signals(signum).name}: stopping after the current step "
          f"(Ctrl+C again to stop at once)", file=sys.stderr, flush=True)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Record SIGINT and SIGTERM instead of acting on them, inside the block (main thread only:
    elsewhere, in a Ray worker's thread say, signals stay as they are)."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # a signal ignored on entry stays ignored: a shell without job control starts `cmd &` with
    # SIGINT ignored so that Ctrl+C at the terminal spares it, and Python then raises no
    # KeyboardInterrupt either (this is how an interrupt sent to such a run was lost before)
    previous = {s: signal.getsignal(s) for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    _requested = None
    for s in previous:
        signal.signal(s, _record)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _requested = None
