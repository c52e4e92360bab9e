"""Micro-batching: the lines of concurrent requests go through the model together.

Request handlers run in threads; each hands its preprocessed lines to `submit` and blocks. One thread takes
the first waiting request, gathers more for at most `max_wait_ms` or until `max_batch` lines are waiting,
runs them as one call and hands each request its share. Worth it where the model is called often with few
lines each (single-line requests at high concurrency); at concurrency 1 it only adds the wait, so it is off
by default and measured by `make bench-serve`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatcherStats:
    calls: int = 0  # model calls made
    items: int = 0  # lines that went through them
    largest: int = 0


class MicroBatcher(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], Sequence[R]], max_batch: int = 32, max_wait_ms: float = 2.0):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must not be negative, got {max_wait_ms}")
        self.run = run
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.stats = BatcherStats()
        self._queue: queue.Queue[tuple[list[T], Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="micro-batcher", daemon=True)
        self._thread.start()

    def submit(self, items: list[T]) -> list[R]:
        """Results for `items`, in order, once the batch they joined has run (its error is raised here)."""
        if not items:
            return []
        if not self._thread.is_alive():
            raise RuntimeError("micro-batcher is closed")
        fut: Future = Future()
        self._queue.put((list(items), fut))
        return fut.result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
        while True:  # nobody is left waiting forever on a request that came after the close
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job[1].set_exception(RuntimeError("micro-batcher is closed"))

    def _gather(self, first: tuple[list[T], Future]) -> tuple[list[tuple[list[T], Future]], bool]:
        jobs, n = [first], len(first[0])
        deadline = time.perf_counter() + self.max_wait
        while n < self.max_batch:
            left = deadline - time.perf_counter()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            n += len(job[0])
        return jobs, False

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, closing = self._gather(first)
            flat = [x for items, _ in jobs for x in items]
            try:
                out = list(self.run(flat))
                if len(out) != len(flat):
                    raise RuntimeError(f"batch of {len(flat)} gave {len(out)} results")
            except Exception as e:  # every waiting request gets the error; the thread lives on
                for _, fut in jobs:
                    fut.set_exception(e)
            else:
                self.stats.calls += 1
                self.stats.items += len(flat)
                self.stats.largest = max(self.stats.largest, len(flat))
                i = 0
                for items, fut in jobs:
                    fut.set_result(out[i : i + len(items)])
                    i += len(items)
            if closing:
                return
