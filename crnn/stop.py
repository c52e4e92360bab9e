"""A polite stop for long jobs: the first SIGINT (Ctrl-C) or SIGTERM (`kill`, a scheduler's preemption)
asks the training loop to stop at its next check, validate, save last.pt and write summary.json, so that a
run stopped by hand can be judged and shipped like one that reached its last step. A second signal acts as
it did before (Ctrl-C raises KeyboardInterrupt, SIGTERM ends the process); checkpoints are written
atomically, so even that loses no more than the steps since the last save."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class StopRequest:
    signal_name: str = ""  # the first signal received, "" while none


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, the first SIGINT/SIGTERM is noted on the yielded request instead of acting.
    Outside the main thread (where Python cannot set handlers) the request simply never fills."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}

    def note(signum: int, _frame) -> None:
        request.signal_name = signal.Signals(signum).name
        for s, handler in previous.items():  # a second signal acts as before
            signal.signal(s, handler)

    for s in SIGNALS:
        signal.signal(s, note)
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """For data-loader workers: Ctrl-C reaches the whole process group, and a worker killed by it would
    end the loop with 'worker exited unexpectedly' before the main process could stop politely. Workers
    still end with their parent (PyTorch's watchdog) or when the loader is closed."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
