"""Running a plan: print each command, skip finished steps, redo what changed, resume what broke.

Each step leaves a marker ``OUT/.pipeline/<step>.json`` with a *fingerprint*: a hash of its
command line (or conversion settings), of the files it generates right before running, and of
every input path's content (every file, also each file of an input folder, by SHA-256; hashes of
files above 64 MiB are kept in ``OUT/.pipeline/hashes.json`` by size and modification time, so a
large model is read once, and a copy or a fresh checkout of the same bytes is still "the same").
A step is skipped when its marker says ``done``, the fingerprint is the same and its outputs exist.
So:

* re-running the same command skips everything that finished;
* changing a setting of one step, or an input file, redoes that step and — because its outputs
  change — every step that reads them;
* a step that was interrupted (marker ``running``, same fingerprint) is *resumed*: pretraining
  continues from its last checkpoint, a benchmark from its last finished cell; a step whose
  fingerprint changed starts fresh (its ``clean`` paths are removed first, so a stale
  checkpoint or results file is never mixed with the new run);
* ``--force STEP`` redoes a step from scratch; steps that read its outputs follow when the
  outputs came out different.

Why not make/snakemake: the steps are in-process calls of the stage commands (the documented CLI,
:mod:`.stages`) plus two conversions; a 60-line marker scheme keeps the contract (print the exact
command) without another tool.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import KbioxlmError
from ..io import atomic_write, write_json
from ..paths import portable
from .config import load_pipeline_config
from .plan import Step, build_plan, remove_paths
from .stages import run_stage

HASH_LIMIT = 64 << 20  # larger files: their hash is cached by (size, mtime) in HASHES
MARKERS = ".pipeline"
HASHES = "hashes.json"

# Why content and not modification times: the shared data and a base model reach a machine by copy
# or mount, which gives them new times; a fingerprint by time would retrain every stage there.
_hash_cache: dict[str, list[Any]] = {}  # absolute path -> [size, mtime_ns, sha256 hex]


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_fp(p: Path) -> str:
    st = p.stat()
    if st.st_size <= HASH_LIMIT:
        return "sha256:" + _sha256(p)
    key = str(p.resolve())
    hit = _hash_cache.get(key)
    if not (hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns):
        hit = _hash_cache[key] = [st.st_size, st.st_mtime_ns, _sha256(p)]
    return "sha256:" + str(hit[2])


def load_hash_cache(path: Path) -> None:
    """Merge a run's saved hashes of large files (unreadable or odd content: start empty)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(data, dict):
        _hash_cache.update({k: v for k, v in data.items() if isinstance(v, list) and len(v) == 3})


def save_hash_cache(path: Path) -> None:
    if _hash_cache:
        write_json(path, dict(sorted(_hash_cache.items())))


def path_fingerprint(p: Path) -> Any:
    """Content of a file (hash), of a folder (its files' names and hashes), or ``missing``."""
    if p.is_file():
        return _file_fp(p)
    if p.is_dir():
        entries = []
        for f in sorted(p.rglob("*")):
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts):
                entries.append(f"{f.relative_to(p).as_posix()}:{_file_fp(f)}")
        return "dir:" + hashlib.sha256("\n".join(entries).encode()).hexdigest()
    return "missing"


# Flags renamed without a change in meaning (the one --lang/--target-lang vocabulary), spelled in
# fingerprints by their earlier names: renaming a flag is no reason to redo a finished step.
FINGERPRINT_FLAG_NAMES: dict[tuple[str, ...], dict[str, str]] = {
    ("corpus", "passage"): {"--lang": "--lang-a", "--target-lang": "--lang-b"},
    ("kb", "mine-pairs"): {"--lang": "--source-lang"},
    ("probe",): {"--lang": "--source-lang"},
}


def _stable_argv(argv: list[str] | None) -> list[str] | None:
    """``argv`` with renamed flags spelled as in :data:`FINGERPRINT_FLAG_NAMES`."""
    if not argv:
        return argv
    for prefix, names in FINGERPRINT_FLAG_NAMES.items():
        if tuple(argv[: len(prefix)]) == prefix:
            return [names.get(a, a) for a in argv]
    return argv


def step_fingerprint(step: Step, anchor: Path | None = None) -> str:
    """A hash of what a step does and reads. With ``anchor``, absolute paths are spelled relative to it
    (:func:`kbioxlm.paths.portable`): the same files reached from another directory, or through a
    differently spelled config path, give the same fingerprint (and the spelling of older runs, whose
    paths were relative to the repository root, is kept)."""

    def rel(value: Any) -> Any:
        return portable(value, anchor) if anchor is not None else value

    params = json.loads(json.dumps(step.params, default=str))
    if isinstance(params, dict) and isinstance(params.get("kb_recipe"), list):
        params["kb_recipe"] = [_stable_argv(a) for a in params["kb_recipe"]]
    material = {
        "argv": rel(_stable_argv(step.argv)),
        "launcher": step.launcher,
        "params": rel(params),
        "generated": {
            rel(str(k)): hashlib.sha256(rel(v).encode()).hexdigest() for k, v in sorted(step.generated.items())
        },
        "inputs": {rel(str(p)): path_fingerprint(p) for p in step.inputs},
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:20]


def matches(name: str, selectors: Iterable[str]) -> bool:
    """``kb`` selects ``kb.obo.hp`` and ``kb.stats``; ``corpus.fact`` both fact directions; exact names too."""
    return any(name == s or name.startswith(s + ".") for s in selectors)


@dataclass
class Outcome:
    step: str
    status: str  # ran | resumed | skipped | would-run | done
    seconds: float = 0.0
    reason: str = ""


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy (``kb stats --json`` output saved beside the KB)."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.buf = stream, io.StringIO()

    def write(self, s: str) -> int:
        self.stream.write(s)
        return self.buf.write(s)

    def flush(self) -> None:
        self.stream.flush()


class Runner:
    def __init__(
        self,
        steps: list[Step],
        out: Path,
        pipeline_cmd: str,
        *,
        dry_run: bool = False,
        force: Iterable[str] = (),
        stream: Any = None,
        anchor: Path | None = None,
    ) -> None:
        self.steps, self.out, self.pipeline_cmd = steps, out, pipeline_cmd
        self.anchor = anchor
        self.dry_run = dry_run
        self.force = list(force)
        self.stream = stream or sys.stdout
        self.markers = out / MARKERS
        load_hash_cache(self.markers / HASHES)

    def say(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def marker(self, step: Step) -> dict[str, Any] | None:
        p = self.markers / f"{step.name}.json"
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _write_marker(self, step: Step, rec: dict[str, Any]) -> None:
        write_json(self.markers / f"{step.name}.json", rec)

    def run(self, selected: list[Step]) -> list[Outcome]:
        if not self.dry_run:
            self._preflight(selected)
        outcomes: list[Outcome] = []
        pending: set[Path] = set()  # outputs of steps a dry run would execute
        reset: dict[Path, str] = {}  # paths a fresh run removed (its `clean`), by step
        total = len(selected)
        for i, step in enumerate(selected, 1):
            forced = matches(step.name, self.force)
            old = self.marker(step)
            outputs_ok = all(p.exists() for p in step.outputs)
            upstream = [p for p in step.inputs if p in pending]
            wiped = [(p, reset[q]) for p in step.outputs for q in reset if p == q or p.is_relative_to(q)]
            fp = step_fingerprint(step, self.anchor)
            if forced:
                reason, resume = "forced", False
            elif wiped:
                reason, resume = f"{wiped[0][0]} was reset by {wiped[0][1]}", False
            elif upstream:
                reason, resume = f"input {upstream[0]} will change", False
            elif old and old.get("status") == "done" and old.get("fingerprint") == fp and outputs_ok:
                reason, resume = "", None
            elif old and old.get("status") == "running" and old.get("fingerprint") == fp:
                if step.can_resume is None or step.can_resume():
                    reason, resume = "interrupted earlier: resuming", True
                else:
                    reason, resume = "interrupted before its first checkpoint: starting again", False
            elif old is None:
                reason, resume = "not run yet", False
            elif old.get("fingerprint") != fp:
                reason, resume = "settings or inputs changed", False
            else:
                reason, resume = "outputs missing", False
            header = f"[{i}/{total}] {step.name}: {step.title}"
            if resume is None:
                assert old is not None  # only a step recorded as done is skipped
                self.say(f"{header}\n    skipped (done {old.get('finished', '?')}, {old.get('seconds', 0):.0f} s)")
                outcomes.append(Outcome(step.name, "done" if self.dry_run else "skipped", reason="done"))
                continue
            self.say(f"\n{header}  ({reason})")
            if step.note:
                self.say(f"    # {step.note}")
            self.say(f"$ {step.command(self.pipeline_cmd)}")
            if not resume:
                reset.update({p: step.name for p in step.clean})
            if self.dry_run:
                pending.update(step.outputs)
                outcomes.append(Outcome(step.name, "would-run", reason=reason))
                continue
            save_hash_cache(self.markers / HASHES)
            seconds = self._execute(step, fp, resume)
            outcomes.append(Outcome(step.name, "resumed" if resume else "ran", seconds, reason))
            self.say(f"    ({seconds:.1f} s)")
            self._write_timings()
        if not self.dry_run:
            save_hash_cache(self.markers / HASHES)
        return outcomes

    def _preflight(self, selected: list[Step]) -> None:
        """Fail in the first second, not after an hour, when an input no step produces is missing."""
        producer = {p: s.name for s in self.steps for p in (*s.outputs, *s.clean)}
        chosen = {s.name for s in selected}

        def made_by(p: Path) -> str | None:
            for q, name in producer.items():
                if p == q or q.is_relative_to(p) or p.is_relative_to(q):
                    return name
            return None

        missing = []
        for s in selected:
            for p in s.inputs:
                if p.exists():
                    continue
                by = made_by(p)
                if by is None:
                    missing.append(f"{p} (for {s.name})")
                elif by not in chosen:
                    missing.append(f"{p} (for {s.name}; made by step {by}, which is not selected: add it to --only)")
        if missing:
            raise KbioxlmError(
                "missing input(s): "
                + "; ".join(missing[:5])
                + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
            )

    def _execute(self, step: Step, fp: str, resume: bool) -> float:
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        if not resume:
            remove_paths(step.clean)
        self._write_marker(
            step,
            {
                "step": step.name,
                "status": "running",
                "fingerprint": fp,
                "command": step.command(self.pipeline_cmd),
                "started": started,
            },
        )
        t0 = time.perf_counter()
        for path, text in step.generated.items():
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                with atomic_write(path) as fh:
                    fh.write(text)
        if step.prepare is not None:
            step.prepare()
        if step.action is not None:
            summary = step.action()
            self.say("    " + json.dumps({k: v for k, v in summary.items() if k != "files"}, ensure_ascii=False))
        elif step.launcher:
            assert step.argv is not None  # a step without an action is a command line
            rc = subprocess.call([*step.launcher, *step.argv])
            if rc:
                raise KbioxlmError(
                    f"pipeline step {step.name} failed (exit {rc}); fix the cause and run the pipeline again to continue"
                )
        else:
            self._run_stage(step)
        seconds = time.perf_counter() - t0
        missing = [str(p) for p in step.outputs if not p.exists()]
        if missing:
            raise KbioxlmError(f"pipeline step {step.name} finished but did not write {', '.join(missing)}")
        self._write_marker(
            step,
            {
                "step": step.name,
                "status": "done",
                "fingerprint": fp,
                "command": step.command(self.pipeline_cmd),
                "started": started,
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                "seconds": round(seconds, 1),
            },
        )
        return seconds

    def _run_stage(self, step: Step) -> None:
        assert step.argv is not None
        tee = _Tee(sys.stdout) if step.stdout_to else None
        with contextlib.redirect_stdout(tee) if tee else contextlib.nullcontext():
            rc = run_stage(step.argv)
        if rc:
            raise KbioxlmError(
                f"pipeline step {step.name} failed (exit {rc}); fix the cause and run the pipeline again to continue"
            )
        if tee is not None and step.stdout_to is not None:
            with atomic_write(step.stdout_to) as fh:
                fh.write(tee.buf.getvalue())

    def _write_timings(self) -> None:
        """``OUT/timings.json``: seconds per finished step (for the results write-up)."""
        rows = {}
        for s in self.steps:
            m = self.marker(s)
            if m and m.get("status") == "done":
                rows[s.name] = m.get("seconds")
        write_json(
            self.out / "timings.json", {"steps": rows, "total_seconds": round(sum(v or 0 for v in rows.values()), 1)}
        )


def select_steps(steps: list[Step], only: list[str]) -> list[Step]:
    if not only:
        return list(steps)
    names = [s.name for s in steps]
    unknown = [o for o in only if not any(matches(n, [o]) for n in names)]
    if unknown:
        raise KbioxlmError(f"--only: no step matches {', '.join(unknown)} (steps: {', '.join(names)})")
    return [s for s in steps if matches(s.name, only)]


def check_force(steps: list[Step], force: list[str]) -> None:
    names = [s.name for s in steps]
    unknown = [f for f in force if not any(matches(n, [f]) for n in names)]
    if unknown:
        raise KbioxlmError(f"--force: no step matches {', '.join(unknown)} (steps: {', '.join(names)})")


def run_pipeline(
    config: str | Path,
    *,
    out: str | None = None,
    shared: str | None = None,
    seed: int | None = None,
    only: list[str] | None = None,
    force: list[str] | None = None,
    dry_run: bool = False,
    stream: Any = None,
) -> list[Outcome]:
    """Run (or, with ``dry_run``, print) the steps of the pipeline config at ``config``: what
    ``kbioxlm pipeline`` does, as a function for the commands built on it (``kbioxlm demo``).

    ``out``, ``shared`` and ``seed`` replace the config's (:func:`~.config.load_pipeline_config`);
    ``only`` / ``force`` take step names or prefixes. The steps' headers and commands go to
    ``stream`` (default stdout), with a first and a last summary line.
    """
    stream = stream or sys.stdout
    cfg = load_pipeline_config(config, out=out, shared=shared, seed=seed)
    steps = build_plan(cfg)
    force = list(force or [])
    check_force(steps, force)
    selected = select_steps(steps, list(only or []))
    cmd = ["kbioxlm", "pipeline", "--config", str(config)]
    for flag, value in (("--out", out), ("--shared", shared), ("--seed", seed)):
        if value is not None:
            cmd += [flag, str(value)]
    runner = Runner(steps, cfg.out, shlex.join(cmd), dry_run=dry_run, force=force, stream=stream, anchor=cfg.anchor)
    print(
        f"pipeline {cfg.name}: {len(selected)} of {len(steps)} steps, output in {cfg.out}"
        f"{' (dry run: nothing is executed)' if dry_run else ''}",
        file=stream,
        flush=True,
    )
    outcomes = runner.run(selected)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    secs = sum(o.seconds for o in outcomes)
    print(
        "\npipeline: "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + ("" if dry_run else f" in {secs:.0f} s; step timings in {cfg.out / 'timings.json'}"),
        file=stream,
        flush=True,
    )
    return outcomes
