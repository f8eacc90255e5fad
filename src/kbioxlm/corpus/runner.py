"""Shared machinery of the corpus builders: per-document seeds, an order-preserving bounded
worker pool, chunking, stale temporary files, and the end-of-run summary."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, TypeVar

from ..io import dumps

T = TypeVar("T")
R = TypeVar("R")


def doc_seed(seed: int, task: str, doc_id: object) -> int:
    """A 64-bit seed for one document: independent of worker count, order and ``PYTHONHASHSEED``."""
    digest = hashlib.blake2b(f"{seed}\x1f{task}\x1f{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def chunked(items: Iterable[T], max_items: int = 256, max_chars: int = 1 << 20, size: Callable[[T], int] = lambda _x: 1) -> Iterator[list[T]]:
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
        parts = [f"{k}={v}" for k, v in d.items() if k not in ("switches",)]
        if "switches" in d:
            sw = " ".join(f"{k}={v}" for k, v in d["switches"].items()) or "none"
            parts.append(f"switches[{sw}]")
        print(f"corpus {self.task}: " + " ".join(parts) + f" -> {out}", file=stream)
        for ex in self.skip_examples:
            print(f"  skipped: {ex}", file=stream)
        return d


# ---- fast serialisation ---------------------------------------------------------------------
_ENTITY = '{"start":%d,"end":%d,"concept":%s,"lang":%s,"switched":%s}'
_RELATION = '{"start":%d,"end":%d,"rel":%s,"lang":%s,"head":%d,"tail":%d}'
_json_str_cache: dict[str, str] = {}
# The same cache, shared with the compiled fact writer (speedups.fact_line), which fills it too.
json_literals = _json_str_cache


def js(value: str) -> str:
    """JSON string literal of ``value`` (cached: concept ids and languages repeat a lot)."""
    out = _json_str_cache.get(value)
    if out is None:
        out = json.dumps(value, ensure_ascii=False)
        if len(_json_str_cache) < 1 << 20:
            _json_str_cache[value] = out
    return out


_js = js
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def record_prefix(doc_id: Any, lang: str) -> str:
    """``{"id":..,"lang":..`` of an Entity/Fact line (what ``io.dumps`` writes for them)."""
    ident = encode_basestring(doc_id) if doc_id.__class__ is str else _encode(doc_id)
    return '{"id":' + ident + ',"lang":' + js(lang)


def dumps_record(rec: dict[str, Any]) -> str:
    """Exactly ``io.dumps(rec)`` for Entity and Fact records, about 3x faster.

    Why: with a match every few characters, encoding the span objects through the generic JSON
    encoder was a fifth of the whole entity build; the span objects have a fixed shape.
    """
    head = {k: v for k, v in rec.items() if k not in ("entities", "relations")}
    parts = [dumps(head)[:-1]]
    if "entities" in rec:
        parts.append(',"entities":[')
        parts.append(",".join([
            _ENTITY % (e["start"], e["end"], _js(e["concept"]), _js(e["lang"]), "true" if e["switched"] else "false")
            for e in rec["entities"]
        ]))
        parts.append("]")
    if "relations" in rec:
        parts.append(',"relations":[')
        parts.append(",".join([
            _RELATION % (r["start"], r["end"], _js(r["rel"]), _js(r["lang"]), r["head"], r["tail"])
            for r in rec["relations"]
        ]))
        parts.append("]")
    parts.append("}")
    return "".join(parts)
