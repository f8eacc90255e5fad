"""Several target languages with weights (``--target-langs zh:0.5,es:0.25,fr:0.25``) and the
deterministic draws that pick one of them.

Draws come from SplitMix64, which is counter-based: output ``i`` of a stream seeded with ``s`` is
``mix(s + i * 0x9E3779B97F4A7C15)``, so a builder can continue a document's stream (the entity
level: after the draws that chose the switched entities) or open one per document and index it
(the fact level: one output per sentence window) without keeping state, and every draw depends on
the seed and the document only, not on worker count or order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Any

from ..errors import KbioxlmError

MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_LANG = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def splitmix64(seed: int, i: int) -> int:
    """Output ``i`` (``i >= 1``) of the SplitMix64 stream seeded with ``seed`` (a 64-bit integer)."""
    z = (seed + i * _GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def pick_weighted(x: int, cum: Sequence[float]) -> int:
    """The index chosen by the 64-bit draw ``x`` among options with cumulative weights ``cum``
    (increasing, any positive total): the first ``i`` with ``u * cum[-1] < cum[i]``, ``u`` the top
    53 bits of ``x`` as a float in [0, 1)."""
    u = (x >> 11) * (1.0 / (1 << 53)) * cum[-1]
    for i, c in enumerate(cum):
        if u < c:
            return i
    return len(cum) - 1


def cumulative(weights: Sequence[float]) -> tuple[float, ...]:
    return tuple(accumulate(weights))


def parse_target_langs(spec: Any, what: str = "--target-langs") -> tuple[tuple[str, float], ...]:
    """``(lang, weight)`` pairs, in the order given, from ``"zh:0.5,es:0.25"`` (a language without
    ``:weight`` weighs 1), a mapping ``{zh: 0.5, es: 0.25}`` or a list of codes / ``lang:weight``
    strings. Weights are as given (positive, finite); :func:`normalise` scales them to sum 1."""
    if isinstance(spec, str):
        items: list[tuple[str, Any]] = []
        for part in spec.split(","):
            part = part.strip()
            if part:
                lang, sep, w = part.partition(":")
                items.append((lang.strip(), w.strip() if sep else 1))
    elif isinstance(spec, Mapping):
        items = [(str(k), v) for k, v in spec.items()]
    elif isinstance(spec, (list, tuple)) and all(isinstance(x, str) for x in spec):
        return parse_target_langs(",".join(spec), what)
    else:
        raise KbioxlmError(f"{what}: give languages with weights, e.g. zh:0.5,es:0.25,fr:0.25")
    if not items:
        raise KbioxlmError(f"{what}: names no language (e.g. zh:0.5,es:0.25,fr:0.25)")
    out: list[tuple[str, float]] = []
    for lang, w in items:
        if not _LANG.fullmatch(lang):
            raise KbioxlmError(f"{what}: {lang!r} is not a language code (e.g. zh:0.5,es:0.25,fr:0.25)")
        try:
            weight = float(w) if not isinstance(w, bool) else math.nan
        except (TypeError, ValueError):
            weight = math.nan
        if not (math.isfinite(weight) and weight > 0):
            raise KbioxlmError(f"{what}: weight of {lang!r} must be a positive number, got {w!r}")
        if any(lang == seen for seen, _w in out):
            raise KbioxlmError(f"{what}: {lang!r} is listed twice")
        out.append((lang, weight))
    return tuple(out)


def normalise(pairs: Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """The weights of ``pairs`` scaled to sum 1 (order kept)."""
    total = math.fsum(w for _lang, w in pairs)
    return tuple((lang, w / total) for lang, w in pairs)


def format_target_langs(pairs: Sequence[tuple[str, float]]) -> str:
    """``pairs`` as the ``--target-langs`` text (``zh:0.5,es:0.25``; weights to 12 significant digits)."""
    return ",".join(f"{lang}:{w:.12g}" for lang, w in pairs)
