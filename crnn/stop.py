"""A polite stop for long jobs: the first SIGINT (Ctrl-C) or SIGTERM (`kill`, a scheduler's preemption)
asks the training loop to stop at its next check, validate, save last.pt and write summary.json, so that a
run stopped by hand can be judged and shipped like one that reached its last step. A second signal acts as
it did before (Ctrl-C raises KeyboardInterrupt, SIGTERM ends the process); checkpoints are written
atomically, so even that loses no more than the steps since the last save."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class StopRequest:
    signal_name: str = ""  # the first signal received, "" while none

    @property
    def reason(self) -> str:
        """summary.json's `stopped_early` ("SIGINT received"; "" while none), which exit_status reads."""
        return f"{self.signal_name} received" if self.signal_name else ""


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, the first SIGINT/SIGTERM is noted on the yielded request instead of acting.
    Outside the main thread (where Python cannot set handlers) the request simply never fills."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    # a signal ignored when the job started (a `cmd &` of a script) stays ignored; a handler set in C
    # (getsignal gives None) is left alone
    previous = {s: h for s in SIGNALS if (h := signal.getsignal(s)) not in (signal.SIG_IGN, None)}

    def note(signum: int, _frame) -> None:
        request.signal_name = signal.Signals(signum).name
        for s, handler in previous.items():  # a second signal acts as before
            signal.signal(s, handler)

    for s in previous:
        signal.signal(s, note)
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def exit_status(stopped: str) -> int:
    """128 + the signal's number when `stopped` ("SIGINT received", ...) names one, else 0: the status a
    shell expects of a process that a signal ended, so that `make` and `&&` chains stop there too."""
    name = stopped.split(" ", 1)[0]
    return 128 + signal.Signals[name].value if name in signal.Signals.__members__ else 0


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """For data-loader workers: a process group of their own, so that Ctrl-C at a terminal (SIGINT to its
    foreground group) or torchrun's SIGTERM to a rank's group does not kill them before the main process
    has stopped politely; SIGINT ignored besides, and SIGTERM back to its default, so that the loader can
    still end a worker that does not stop. They also end with their parent (PyTorch's watchdog)."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
