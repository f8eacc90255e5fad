"""Progress output that suits where it goes, and quiet model loading.

:func:`progress` is the one progress bar of the toolkit (pretraining, fine-tuning, corpus
builders): a live ``tqdm`` bar when stderr is a terminal; anywhere else (a CI log, a file, a
notebook's captured output) a plain line every few seconds — ``pretrain: 120/300 (40%), 11.8 it/s,
eta 15 s, loss=3.102`` — and never a carriage return. ``KBIOXLM_PROGRESS=plain|tty|off`` overrides
the choice and ``KBIOXLM_PROGRESS_INTERVAL`` (seconds, default 5) sets the plain lines' spacing
(while nothing advances, one line a minute).

:func:`quiet_transformers` silences what ``transformers`` prints while loading or saving a model
(its load report of UNEXPECTED / MISSING keys, "Loading weights" and "Writing model shards" bars).
Those reports are expected when the toolkit loads an encoder without the heads it does not use, or
adds a fresh head; the caller says what starts fresh in its own words instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

DEFAULT_INTERVAL_S = 5.0
HEARTBEAT_S = 60.0  # a line at least this often while nothing advances


def is_terminal(stream: Any = None) -> bool:
    """Whether ``stream`` (default: the current ``sys.stderr``) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _mode(stream: Any) -> str:
    forced = os.environ.get("KBIOXLM_PROGRESS", "").strip().lower()
    if forced in ("plain", "tty", "off"):
        return forced
    return "tty" if is_terminal(stream) else "plain"


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("KBIOXLM_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | float | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    enabled: bool = True,
    leave: bool = True,
    interval: float | None = None,
    stream: Any = None,
    **tqdm_kwargs: Any,
) -> Any:
    """A progress bar with tqdm's interface (``update``, ``set_postfix``, ``close``, iteration, ``with``).

    ``enabled=False`` shows nothing. On a terminal (stderr by default) this is ``tqdm(...)`` with
    the given arguments; elsewhere a :class:`PlainProgress` writing one line every ``interval``
    seconds (default 5, ``KBIOXLM_PROGRESS_INTERVAL``) and a last line on ``close`` when it wrote any.
    """
    mode = _mode(stream) if enabled else "off"
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if mode == "tty":
        from tqdm.auto import tqdm  # lazy: only a terminal gets a tqdm bar; loaded by `kbioxlm --help`

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave,
                    file=stream, **tqdm_kwargs)  # fmt: skip
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                         interval=_interval() if interval is None else interval, stream=stream,
                         disable=mode == "off")  # fmt: skip


class PlainProgress:
    """tqdm's interface, written as plain lines (no ``\\r``) at most every ``interval`` seconds."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: int | float | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, interval: float = DEFAULT_INTERVAL_S, stream: Any = None,
                 disable: bool = False) -> None:  # fmt: skip
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n: int | float = initial
        self.interval = interval
        self.stream = stream
        self.disable = disable
        self.postfix = ""
        self._start_n = initial
        self._t0 = self._last = time.monotonic()
        self._last_n: int | float = initial
        self._written = False
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress bar wraps no iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int | float = 1) -> None:
        self.n += n
        if self.disable:
            return
        now = time.monotonic()
        waited = now - self._last
        # every `interval` seconds while it advances; once a minute while it stands still
        if waited >= self.interval and (self.n != self._last_n or waited >= max(HEARTBEAT_S, self.interval)):
            self._write(now)

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    @staticmethod
    def write(s: str, file: Any = None, end: str = "\n") -> None:
        """Print a message (tqdm's ``write``: on a terminal it keeps the bar below the message)."""
        print(s, file=sys.stdout if file is None else file, end=end, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable and self._written:
            self._write(time.monotonic())

    def line(self, now: float | None = None) -> str:
        """The progress line as it would be written now."""
        now = time.monotonic() if now is None else now
        elapsed = now - self._t0
        done = self.n - self._start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{_num(self.n)}/{_num(self.total)}" if self.total else _num(self.n)]
        if self.total:
            parts[0] += f" ({100.0 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.1f} {self.unit}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.1f} s/{self.unit}")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"eta {_duration((self.total - self.n) / rate)}")
        else:
            parts.append(f"{_duration(elapsed)}")
        if self.postfix:
            parts.append(self.postfix)
        return (f"{self.desc}: " if self.desc else "") + ", ".join(parts)

    def _write(self, now: float) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        print(self.line(now), file=stream, flush=True)
        self._last = now
        self._last_n = self.n
        self._written = True


def _num(x: int | float | None) -> str:
    if x is None:
        return "?"
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def _duration(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s"
    m, s = divmod(int(s + 0.5), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence ``transformers``' load reports, warnings and weight-loading/saving progress bars
    inside the block (errors still show); the previous settings come back afterwards."""
    try:
        from transformers.utils import logging as hf_logging  # lazy: transformers; loaded by `kbioxlm --help`
    except ImportError:  # pragma: no cover - transformers is a dependency
        yield
        return
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
