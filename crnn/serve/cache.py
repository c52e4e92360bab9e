"""The server's result cache: least recently used answers, bounded in bytes, not entries.

An answer with previews carries two base64 PNGs of the upload (up to 40 MP), so a cache bounded by its
number of entries could grow to gigabytes. Each answer is stored as its compact JSON bytes, and the bound
counts those bytes plus a fixed per-entry overhead (key, LRU bookkeeping), so what the limit says is close
to what the process holds. Shared by the request threads; every access takes one lock.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass

from cachetools import LRUCache

ENTRY_OVERHEAD = 256  # bytes per entry beyond its JSON: the key string, the bytes object, LRU links


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int
    max_bytes: int


class ResultCache:
    """Answers by the SHA-256 of the upload and the options that shaped them; `max_bytes` 0 turns it off."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._lru: LRUCache[str, bytes] = LRUCache(maxsize=max(1, self.max_bytes), getsizeof=_entry_size)
        self._lock = threading.Lock()
        self._hits = self._misses = 0

    @staticmethod
    def key(data: bytes, options: dict) -> str:
        """The upload's SHA-256 extended with the options (mode, preview, clean-up) that change the answer."""
        h = hashlib.sha256(data)
        h.update(repr(sorted(options.items())).encode())
        return h.hexdigest()

    def get(self, key: str) -> dict | None:
        """A copy of the cached answer (callers may change it), or None; counts a hit or a miss."""
        with self._lock:
            raw = self._lru.get(key)
            if raw is None:
                self._misses += 1
                return None
            self._hits += 1
        return json.loads(raw)

    def put(self, key: str, answer: dict) -> bool:
        """Store an answer, evicting the least recently used ones; False when it alone exceeds the limit."""
        raw = json.dumps(answer, separators=(",", ":"), ensure_ascii=False).encode()
        if _entry_size(raw) > self.max_bytes:
            return False
        with self._lock:
            self._lru[key] = raw
        return True

    def stats(self) -> CacheStats:
        """Counters and sizes read together, under the lock."""
        with self._lock:
            return CacheStats(
                self._hits, self._misses, len(self._lru), int(self._lru.currsize), self.max_bytes
            )


def _entry_size(raw: bytes) -> int:
    return len(raw) + ENTRY_OVERHEAD
