"""The corpus builders' worker machinery: chunk outputs written by the workers, in chunk order."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kbioxlm.corpus.runner import ordered_write
from kbioxlm.errors import KbioxlmError
from kbioxlm.io import atomic_write

_FAIL_AT: int | None = None


def _init(fail_at: int | None) -> None:
    global _FAIL_AT
    _FAIL_AT = fail_at


def _render(chunk: tuple[int, int]) -> tuple[list[bytes], int]:
    """Two outputs per chunk, of sizes that vary a lot (empty included), so chunks finish out of order."""
    index, size = chunk
    if index == _FAIL_AT:
        raise ValueError(f"chunk {index} is bad")
    a = b"".join(b"%d:%d\n" % (index, i) for i in range(size))
    b = b"" if index % 3 == 0 else (b"<%d>" % index) * (size % 7 + 1) + b"\n"
    return [a, b], index


def _chunks(n: int) -> list[tuple[int, int]]:
    rnd = random.Random(5)
    return [(i, rnd.choice((0, 1, 5, 300, 20000))) for i in range(n)]


def _write(tmp_path: Path, tag: str, workers: int, fail_at: int | None = None) -> tuple[list[int], bytes, bytes]:
    outs = (tmp_path / f"{tag}.a", tmp_path / f"{tag}.b")
    with atomic_write(outs[0], "wb") as fa, atomic_write(outs[1], "wb") as fb:
        fa.write(b"header\n")  # what the caller wrote before the workers start stays first
        results = list(ordered_write(_render, _chunks(60), [fa, fb], workers, _init, (fail_at,)))
        fa.write(b"footer\n")  # and a write after them goes to the end
    return results, outs[0].read_bytes(), outs[1].read_bytes()


def test_worker_written_outputs_equal_the_in_process_ones(tmp_path: Path) -> None:
    one = _write(tmp_path, "w1", 1)
    assert one[0] == list(range(60))  # results come back in chunk order
    expected_a = b"header\n" + b"".join(_render(c)[0][0] for c in _chunks(60)) + b"footer\n"
    assert one[1] == expected_a
    for workers in (2, 3):
        assert _write(tmp_path, f"w{workers}", workers) == one


def test_a_failing_chunk_raises_and_leaves_no_output(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk 17 is bad"):
        _write(tmp_path, "bad", 2, fail_at=17)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither output nor temporary files


def test_a_worker_that_cannot_write_is_an_error(tmp_path: Path) -> None:
    """A temporary file the workers cannot open (it vanished) fails the build with one line."""

    class Gone:
        name = str(tmp_path / "missing" / "x.tmp")

        def flush(self) -> None:
            return None

        def tell(self) -> int:
            return 0

    with pytest.raises((KbioxlmError, FileNotFoundError)):
        list(ordered_write(_render, _chunks(4), [Gone()], 2, _init, (None,)))  # type: ignore[list-item]
