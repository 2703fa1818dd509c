"""SIGINT and SIGTERM are recorded, not raised at a random instruction; the run stops at a boundary."""

from __future__ import annotations

import os
import signal

import pytest

from competition.fitting import stopping
from competition.fitting.executors import InProcess


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_inside_the_block_is_recorded_and_raised_only_at_check(signum, status):
    with stopping.stop_on_signals():
        os.kill(os.getpid(), signum)        # delivered before os.kill returns, on the main thread
        assert stopping.requested() == signum
        with pytest.raises(stopping.StopRequested) as stopped:
            stopping.check()
    assert stopped.value.exit_status == status


def test_the_previous_handlers_come_back_after_the_block():
    before = {s: signal.getsignal(s) for s in stopping.SIGNALS}
    with stopping.stop_on_signals():
        assert all(signal.getsignal(s) is not before[s] for s in stopping.SIGNALS)
    assert {s: signal.getsignal(s) for s in stopping.SIGNALS} == before
    assert stopping.requested() is None
    stopping.check()                        # nothing asked: no stop


def test_a_signal_ignored_on_entry_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stopping.stop_on_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert stopping.requested() is None
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_second_ctrl_c_interrupts_at_once():
    with stopping.stop_on_signals():
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_the_in_process_executor_starts_no_member_after_a_stop_request():
    started = []

    def member(item: int) -> int:
        started.append(item)
        if item == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return item

    with stopping.stop_on_signals(), pytest.raises(stopping.StopRequested):
        InProcess().map(member, [0, 1, 2, 3])
    assert started == [0, 1]
