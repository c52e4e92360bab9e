"""crnn.stop in this process: the first signal is noted, not acted on; what was there before comes back."""

import os
import signal

from crnn.stop import exit_status, stop_on_signals


def test_the_first_signal_is_noted_and_the_second_acts_as_before():
    before = signal.getsignal(signal.SIGTERM)
    caught = []
    signal.signal(signal.SIGTERM, lambda s, f: caught.append(s))
    try:
        with stop_on_signals() as asked:
            os.kill(os.getpid(), signal.SIGTERM)
            assert asked.signal_name == "SIGTERM" and caught == []
            os.kill(os.getpid(), signal.SIGTERM)  # the handler from before the block has it again
            assert caught == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is not None and caught == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_signal_ignored_before_stays_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `cmd &` in a script starts it
    try:
        with stop_on_signals() as asked:
            os.kill(os.getpid(), signal.SIGINT)
            assert asked.signal_name == ""
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_the_exit_status_says_which_signal_stopped_the_run():
    assert exit_status("SIGINT received") == 130
    assert exit_status("SIGTERM received") == 143
    assert exit_status("train.max_minutes=5 spent") == 0
    assert exit_status("") == 0
