"""Shared machinery of the corpus builders: per-document seeds, an order-preserving bounded
worker pool, chunking, stale temporary files, and the end-of-run summary."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ..schema import EntityRecord, FactRecord

T = TypeVar("T")
R = TypeVar("R")


def doc_seed(seed: int, task: str, doc_id: object) -> int:
    """A 64-bit seed for one document: independent of worker count, order and ``PYTHONHASHSEED``."""
    digest = hashlib.blake2b(f"{seed}\x1f{task}\x1f{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def chunked(
    items: Iterable[T], max_items: int = 256, max_chars: int = 1 << 20, size: Callable[[T], int] = lambda _x: 1
) -> Iterator[list[T]]:
    """Group ``items`` into lists of at most ``max_items`` items / about ``max_chars`` of ``size``."""
    buf: list[T] = []
    total = 0
    for it in items:
        buf.append(it)
        total += size(it)
        if len(buf) >= max_items or total >= max_chars:
            yield buf
            buf, total = [], 0
    if buf:
        yield buf


def ordered_map(
    fn: Callable[[T], R],
    chunks: Iterable[T],
    num_workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
) -> Iterator[R]:
    """``map(fn, chunks)`` over ``num_workers`` processes, results in input order.

    At most ``2 * num_workers`` chunks are in flight, so memory stays bounded however long the input
    (``Pool.imap`` would read the whole input ahead). With one worker everything runs in-process.
    """
    initializer(*initargs)
    if num_workers <= 1:
        for c in chunks:
            yield fn(c)
        return
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    with ctx.Pool(num_workers, initializer=initializer, initargs=initargs) as pool:
        pending: deque = deque()
        for c in chunks:
            pending.append(pool.apply_async(fn, (c,)))
            if len(pending) >= 2 * num_workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def remove_stale_temporaries(out: str | Path) -> int:
    """Delete temporary files a killed earlier run left beside ``out`` (see ``io.atomic_write``)."""
    out = Path(out)
    n = 0
    if out.parent.exists():
        for p in out.parent.glob(f".{out.name}.*.tmp"):
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
    return n


class Summary:
    """Counts collected during a build and printed as one block at the end."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.t0 = time.perf_counter()
        self.counts: dict[str, int] = {}
        self.switches: dict[str, int] = {}
        self.skip_examples: list[str] = []
        self.extra: dict[str, Any] = {}

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def merge(self, stats: dict[str, Any]) -> None:
        for k, v in stats.items():
            if k == "switches":
                for d, n in v.items():
                    self.switches[d] = self.switches.get(d, 0) + n
            elif isinstance(v, dict):  # other counts per key (fact_langs)
                group = self.extra.setdefault(k, {})
                for d, n in v.items():
                    group[d] = group.get(d, 0) + n
            else:
                self.add(k, v)

    def as_dict(self) -> dict[str, Any]:
        secs = time.perf_counter() - self.t0
        d: dict[str, Any] = dict(self.counts)
        if self.switches or self.task == "entity":
            d["switches"] = dict(sorted(self.switches.items()))
        d.update(self.extra)
        d["seconds"] = round(secs, 3)
        chars = self.counts.get("chars", 0)
        d["chars_per_s"] = round(chars / secs) if secs > 0 else 0
        return d

    def print(self, out: Path, stream: Any = None) -> dict[str, Any]:
        d = self.as_dict()
        stream = stream or sys.stdout
        parts = [f"{k}={v}" for k, v in d.items() if not isinstance(v, dict)]
        for key, group in d.items():
            if isinstance(group, dict):
                inner = " ".join(f"{k}={v}" for k, v in sorted(group.items())) or "none"
                parts.append(f"{key}[{inner}]")
        print(f"corpus {self.task}: " + " ".join(parts) + f" -> {out}", file=stream)
        for ex in self.skip_examples:
            print(f"  skipped: {ex}", file=stream)
        return d


# ---- serialisation -------------------------------------------------------------------------
_ENCODER = msgspec.json.Encoder()


def encode_record(record: EntityRecord | FactRecord) -> bytes:
    """One record as a UTF-8 JSON line without newline: the bytes of ``io.dumps(record)`` (keys
    in insertion order, no spaces, non-ASCII kept; tested), written by msgspec.

    Why msgspec, not ``json.dumps``: with a match every few characters an Entity record holds tens
    of span objects, which msgspec encodes several times faster; it also escapes exactly like
    ``json.dumps(ensure_ascii=False)`` (orjson does too) and, unlike orjson, takes integer ids
    beyond 64 bits and raises ``UnicodeEncodeError`` for a lone surrogate, as the stdlib does.
    """
    return _ENCODER.encode(record)
