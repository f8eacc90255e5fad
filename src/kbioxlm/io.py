"""JSONL reading with file:line errors, and atomic writes.

Every builder writes through :func:`atomic_write` so a killed job never leaves a half-written
output under the final name; readers report the exact file and line of a bad record.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from .errors import KbioxlmError, where
from .progress import progress


@dataclass
class SkipCounter:
    """Counts records skipped under ``--skip-invalid``, with the first few reasons for the summary."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(message)


def open_text(path: str | os.PathLike[str]) -> IO[str]:
    """Open a UTF-8 text file, turning OS errors into a one-line :class:`KbioxlmError`."""
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise KbioxlmError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def iter_lines(
    path: str | os.PathLike[str], progress_desc: str | None = None, strip: bool = False
) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` of a UTF-8 text file; a decoding error names the file and line.

    Read in binary and decoded line by line: a text-mode reader decodes in chunks, so its error
    would point at the start of the chunk, not at the line holding the bad byte (and text-mode
    ``tell()`` is unusable while iterating, so only a binary read can count bytes for a progress bar).
    A line keeps its line ending (CRLF read as LF, as text mode gives it); with ``strip``, the line
    ending and a UTF-8 BOM at the start of the file are dropped. With ``progress_desc``, a progress
    bar of the bytes read carries that label (large files).
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise KbioxlmError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with (
        fh,
        progress(
            total=os.fstat(fh.fileno()).st_size,
            unit="B",
            unit_scale=True,
            desc=progress_desc or "",
            leave=False,
            enabled=progress_desc is not None,
        ) as bar,
    ):
        lineno = 0
        pending = 0  # bytes read since the bar's last update
        try:
            for raw in fh:
                lineno += 1
                pending += len(raw)
                if pending >= 1 << 22:
                    bar.update(pending)
                    pending = 0
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise KbioxlmError(
                        f"{where(path, lineno)}: not valid UTF-8 ({exc.reason} at byte {exc.start + 1})"
                    ) from exc
                if strip:
                    if lineno == 1 and line.startswith("\ufeff"):
                        line = line[1:]
                    line = line.rstrip("\r\n")
                elif line.endswith("\r\n"):  # as text mode would give it
                    line = line[:-2] + "\n"
                yield lineno, line
        except OSError as exc:  # a read error (a folder, an I/O error) mid-file
            raise KbioxlmError(f"{where(path, lineno + 1)}: cannot read ({exc.strerror or exc})") from exc
        bar.update(pending)


def is_jsonl_file(path: str | os.PathLike[str]) -> bool:
    """A ``.jsonl``/``.json`` name, or a file whose first non-blank character opens a JSON object.

    The one test of every reader that takes JSON lines or a line format (CoNLL, TSV) in the same
    argument, so a JSONL file named ``.txt`` is read as what it is.
    """
    p = Path(path)
    if p.suffix.lower() in (".jsonl", ".json"):
        return True
    for _lineno, line in iter_lines(p):
        s = line.strip()
        if s:
            return s.startswith("{")
    return False


def read_text(path: str | os.PathLike[str]) -> str:
    """A whole UTF-8 file; a bad byte is reported as ``file:line`` (and a missing file in one line)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KbioxlmError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise KbioxlmError(f"{where(path, line)}: not valid UTF-8 ({exc.reason})") from exc


def load_yaml(path: str | os.PathLike[str], what: str = "config") -> tuple[Any, dict[str, int]]:
    """A YAML file and the line of each top-level key; every problem is one ``file[:line]: reason``."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KbioxlmError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise KbioxlmError(f"{where(path, line)}: not valid UTF-8 ({exc.reason})") from exc
    try:
        value = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise KbioxlmError(
            f"{where(path, _yaml_line(text, mark) if mark is not None else None)}: invalid YAML ({reason})"
        ) from exc
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, _value in node.value:
            lines.setdefault(str(key.value), _yaml_line(text, key.start_mark))
    return value, lines


def _yaml_line(text: str, mark: Any) -> int:
    """A YAML mark's line counted in newlines, like every other reader (YAML also counts a lone CR)."""
    index = getattr(mark, "index", None)
    if isinstance(index, int) and 0 <= index <= len(text):
        return text.count("\n", 0, index) + 1
    return int(mark.line) + 1


def iter_jsonl(
    path: str | os.PathLike[str],
    validate: Callable[[dict[str, Any]], None] | None = None,
    skip: SkipCounter | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line.

    ``validate`` raises ``ValueError`` with a reason; the reason is reported as ``file:line: reason``.
    With ``skip`` given, bad lines are counted and skipped instead of aborting.
    """
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
            if validate is not None:
                validate(rec)
        except (ValueError, TypeError) as exc:
            reason = f"{where(path, lineno)}: {_reason(exc)}"
            if skip is None:
                raise KbioxlmError(reason) from exc
            skip.add(reason)
            continue
        yield lineno, rec


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON ({exc.msg} at column {exc.colno})"
    return str(exc)


def dumps(record: dict[str, Any]) -> str:
    """Canonical JSONL line: stable key order as given, UTF-8 kept, no spaces (byte-reproducible)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def current_umask() -> int:
    """The process umask: from ``/proc/self/status`` where there is one (reading it with
    ``os.umask`` means setting it for a moment, which other threads would see)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mkdir_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KbioxlmError(f"{path}: cannot create its folder {path.parent} ({exc.strerror or exc})") from exc
    if not path.parent.is_dir():
        raise KbioxlmError(f"{path}: {path.parent} is not a folder")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and rename it into place only on success.

    The result gets the permissions an ordinary ``open`` would give it (0666 less the umask), not
    ``mkstemp``'s private 0600. A path that cannot be written (under a file, a read-only folder,
    a folder of that name) is a one-line :class:`KbioxlmError`.
    """
    path = Path(path)
    _mkdir_parent(path)
    if path.is_dir():
        raise KbioxlmError(f"{path}: is a folder, expected a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise KbioxlmError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    try:
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
        finally:
            os.close(fd)
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": encoding, "newline": "\n"}
        # Opened by name, so the handle's ``name`` is the temporary file (other processes may
        # write into it: :func:`kbioxlm.corpus.runner.ordered_write`).
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise KbioxlmError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------------------------ output folders
def owned_files(folder: str | os.PathLike[str], marker: str) -> set[str] | None:
    """Names of the files a previous kbioxlm output in ``folder`` wrote (from its ``marker`` JSON,
    key ``files``), the marker included; None when ``folder`` holds no such output."""
    p = Path(folder) / marker
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return set(files) | {marker}


def check_output_dir(out: str | os.PathLike[str], marker: str, overwrite: bool, what: str) -> None:
    """Refuse an output folder that would lose data when replaced.

    Fine: a path that does not exist, an empty folder, or, with ``overwrite``, a previous output of
    the same kbioxlm command (``marker`` lists its files) holding nothing but those files. Anything
    else (a file, a symbolic link, a folder with other files) is a one-line error, and nothing is
    touched.
    """
    out = Path(out)
    if out.is_symlink():
        raise KbioxlmError(f"{out}: is a symbolic link; give the real output folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise KbioxlmError(f"{out}: exists and is not a folder")
    try:
        entries = os.listdir(out)
    except OSError as exc:
        raise KbioxlmError(f"{out}: cannot read ({exc.strerror or exc})") from exc
    if not entries:
        return
    owned = owned_files(out, marker)
    if owned is None:
        raise KbioxlmError(
            f"{out}: folder is not empty and holds no {what}; refusing to replace it (choose another --out or empty it)"
        )
    foreign = sorted(e for e in entries if e not in owned or not (out / e).is_file() or (out / e).is_symlink())
    if foreign:
        raise KbioxlmError(
            f"{out}: holds files the {what} did not write ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''});"
            " refusing to replace it"
        )
    if not overwrite:
        raise KbioxlmError(f"{out}: already holds a {what}; pass --overwrite to replace it")


def check_writable_dir(folder: str | os.PathLike[str], what: str = "--out") -> None:
    """Fail in one line, before any work, when ``folder`` cannot be (created and) written: it is a
    file, lies under a file, or its nearest existing folder refuses writes (a real probe: ``os.access``
    is wrong for root and for read-only file systems). Creates nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise KbioxlmError(f"{folder}: {what} exists and is not a folder")
    probe = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if probe is None:
        return
    if not probe.is_dir():
        raise KbioxlmError(f"{folder}: cannot create {what} ({probe} is a file)")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".kbioxlm-probe-", dir=probe))
    except OSError as exc:
        raise KbioxlmError(f"{folder}: cannot write in {probe} ({exc.strerror or exc})") from exc


def make_temp_dir(out: str | os.PathLike[str]) -> Path:
    """An empty folder beside ``out`` (same file system, so it can be renamed into place), with
    ordinary folder permissions (0777 less the umask) instead of ``mkdtemp``'s 0700."""
    out = Path(out)
    _mkdir_parent(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise KbioxlmError(f"{out}: cannot write in {out.parent} ({exc.strerror or exc})") from exc
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


def ordinary_permissions(folder: str | os.PathLike[str]) -> None:
    """Give the files (0666) and folders (0777) under ``folder`` the umask's permissions: some
    libraries write privately (transformers' ``save_pretrained`` makes ``model.safetensors`` 0600)."""
    mask = current_umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o777 & ~mask)
        for f in files:
            if not os.path.islink(os.path.join(root, f)):
                os.chmod(os.path.join(root, f), 0o666 & ~mask)


def write_marker(folder: str | os.PathLike[str], marker: str, info: dict[str, Any]) -> None:
    """Write ``marker`` (JSON: ``info`` + the list of files in ``folder``), the last file of an output."""
    folder = Path(folder)
    files = sorted(e for e in os.listdir(folder) if e != marker)
    with open(folder / marker, "w", encoding="utf-8") as fh:
        json.dump({**info, "files": files}, fh, ensure_ascii=False, indent=1)
        fh.write("\n")


def replace_dir(
    tmp: str | os.PathLike[str], out: str | os.PathLike[str], marker: str, overwrite: bool, what: str
) -> None:
    """Move the finished folder ``tmp`` to ``out``, replacing only what :func:`check_output_dir` allows.

    The previous output is first renamed aside and removed after the new one is in place, so at
    every moment ``out`` is either the old output or the new one.
    """
    tmp, out = Path(tmp), Path(out)
    check_output_dir(out, marker, overwrite, what)
    ordinary_permissions(tmp)
    old: Path | None = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.rmdir(old)
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError as exc:
        if old is not None:
            os.replace(old, out)
        raise KbioxlmError(f"{out}: cannot write ({exc.strerror or exc})") from exc
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_jsonl(path: str | os.PathLike[str], records: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> int:
    """Atomically write records as JSONL; returns the count."""
    n = 0
    with atomic_write(path) as fh:
        for rec in records:
            fh.write(dumps(rec) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write a pretty JSON document (results, summaries)."""
    with atomic_write(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2, sort_keys=False)
        fh.write("\n")
