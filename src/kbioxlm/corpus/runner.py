"""Shared machinery of the corpus builders: per-document seeds, an order-preserving bounded
worker pool whose workers write the outputs (:func:`ordered_write`), chunking, stale temporary
files, and the end-of-run summary."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

import msgspec

from ..errors import KbioxlmError
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


def _pool_context() -> Any:
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


# ---- chunk outputs written by the workers -------------------------------------------------------
# Why the workers write: a build's output is ~15 times its input (token lists), so a parent that
# receives every chunk's bytes through a pipe and writes them spends as much CPU as a third worker
# (unpickling plus write of hundreds of MB) and caps two workers at ~1.5x. Instead each worker
# reserves its chunk's place in every output file in chunk order (a shared offset per file, under
# one lock) and writes it there with ``pwrite``: the parent only hands out chunks and sums counts.
_SINK: _ChunkSink | None = None


class _Shared(NamedTuple):
    """What the workers of one :func:`ordered_write` share (guarded by ``cond``)."""

    cond: Any  # multiprocessing Condition
    next_seq: Any  # Value: the chunk whose byte ranges are reserved next
    offsets: Any  # Array: the next free byte of each file
    written: Any  # Value: chunks on disk
    failed: Any  # Value: 0, else the errno (or -1) of a worker's failed write


class _ChunkSink:
    """A worker's writer: a thread that reserves each built chunk's byte range in chunk order and
    writes it there, so the worker goes on with its next chunk while an earlier one is still missing."""

    def __init__(self, paths: list[str], shared: _Shared) -> None:
        self.paths = paths
        self.cond, self.next_seq, self.offsets, self.written, self.failed = shared
        self.todo: queue.SimpleQueue[tuple[int, list[bytes]]] = queue.SimpleQueue()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        fds: list[int] = []
        while True:
            seq, parts = self.todo.get()
            try:
                if not fds:  # here, not in the pool's initializer: a pool respawns a worker whose initializer fails
                    fds = [os.open(p, os.O_WRONLY) for p in self.paths]
                with self.cond:
                    self.cond.wait_for(lambda seq=seq: self.next_seq.value == seq or self.failed.value)
                    if self.failed.value:
                        return
                    starts = list(self.offsets[:])
                    for i, part in enumerate(parts):
                        self.offsets[i] += len(part)
                    self.next_seq.value = seq + 1
                    self.cond.notify_all()
                for fd, part, start in zip(fds, parts, starts):
                    view = memoryview(part)
                    while view:
                        n = os.pwrite(fd, view, start)
                        view, start = view[n:], start + n
                with self.cond:
                    self.written.value += 1
                    self.cond.notify_all()
            except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
                with self.cond:
                    self.failed.value = getattr(exc, "errno", None) or -1
                    self.cond.notify_all()
                return


def _init_writer(
    paths: list[str], shared: _Shared, initializer: Callable[..., None], initargs: tuple[Any, ...]
) -> None:
    global _SINK
    initializer(*initargs)
    _SINK = _ChunkSink(paths, shared)


def _build_and_write(fn: Callable[[T], tuple[list[bytes], R]], seq: int, chunk: T) -> R:
    assert _SINK is not None
    parts, result = fn(chunk)
    _SINK.todo.put((seq, parts))
    return result


def ordered_write(
    fn: Callable[[T], tuple[list[bytes], R]],
    chunks: Iterable[T],
    files: list[IO[bytes]],
    num_workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
) -> Iterator[R]:
    """Run ``fn`` on each chunk over ``num_workers`` processes; ``fn`` returns one ``bytes`` per file
    of ``files`` and a small result. The bytes are written to the files in chunk order (so the
    output is the same for any worker count) and the results are yielded in chunk order.

    With one worker everything runs in this process and the bytes go through ``files``; with more,
    each worker writes its chunks itself at their places in the files (opened by name: ``files``
    are binary handles on regular files, such as :func:`kbioxlm.io.atomic_write` yields) and the
    generator ends only once every chunk is on disk. At most ``2 * num_workers`` chunks are in
    flight, so memory stays bounded however long the input (``Pool.imap`` would read it all ahead).
    A pass that writes nothing passes no ``files`` and ``fn`` returns no bytes.
    """
    if num_workers <= 1:
        initializer(*initargs)
        for c in chunks:
            parts, result = fn(c)
            for fh, part in zip(files, parts):
                if part:
                    fh.write(part)
            yield result
        return
    for fh in files:
        fh.flush()
    ctx = _pool_context()
    shared = _Shared(
        ctx.Condition(),
        ctx.Value("q", 0, lock=False),
        ctx.Array("q", [fh.tell() for fh in files], lock=False),
        ctx.Value("q", 0, lock=False),
        ctx.Value("q", 0, lock=False),
    )
    paths = [str(fh.name) for fh in files]
    n = 0
    with ctx.Pool(num_workers, initializer=_init_writer, initargs=(paths, shared, initializer, initargs)) as pool:
        pending: deque = deque()
        for c in chunks:
            pending.append(pool.apply_async(_build_and_write, (fn, n, c)))
            n += 1
            if len(pending) >= 2 * num_workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
        with shared.cond:
            shared.cond.wait_for(lambda: shared.written.value == n or shared.failed.value)
        if shared.failed.value:
            code = shared.failed.value
            raise KbioxlmError(
                f"{', '.join(paths)}: cannot write ({os.strerror(code) if code > 0 else 'a worker failed'})"
            )
    for fh in files:
        fh.seek(0, os.SEEK_END)  # after the workers' pwrites, so a later write appends


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
