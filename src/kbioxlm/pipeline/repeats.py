"""One pipeline config repeated over seeds: each seed a whole run into its own folder, side by side.

Why: a measurement needs repeats (mean ± sd over seeds, docs/design.md), and on a small machine
independent runs fill the cores better than one run on all of them. Each seed's run is
:func:`~.runner.run_pipeline` with that seed, in a worker process of its own (``spawn``: a fresh
interpreter, so torch's threads and the toolkit's logging start clean), so a repeat is resumable
like any run and can be redone by hand with the command it prints. The parent reports each finished
step from the runs' markers (``OUT/.pipeline/<step>.json``): the workers' own output goes to a log.

Where each seed's run goes: with ``--out D``, ``D/seed-S``; without, the config's ``out``, which then
has to name ``${seed}`` (e.g. ``out: runs/ablation/seed-${seed}``) so the runs do not share a folder.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import KbioxlmError
from .config import load_pipeline_config
from .runner import MARKERS, run_pipeline

POLL_SECONDS = 2.0  # how often the parent reads the runs' markers


def repeat_outs(
    config: str | Path, seeds: list[int], out: str | None = None, shared: str | None = None
) -> dict[int, Path]:
    """Each seed's output folder: ``out/seed-S`` with ``out``, else the config's ``out`` for that seed
    (an error when two seeds would share one: the config's ``out`` must name ``${seed}``)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise KbioxlmError(f"--seeds must list distinct seeds, got {seeds}")
    outs = {
        s: load_pipeline_config(config, out=str(Path(out) / f"seed-{s}") if out else None, shared=shared, seed=s).out
        for s in seeds
    }
    if len(set(outs.values())) != len(outs):
        raise KbioxlmError(
            f"{config}: the seeds' runs would share the output folder {next(iter(outs.values()))}; "
            "give --out (each seed goes to OUT/seed-S) or name ${seed} in the config's out"
        )
    return outs


def log_handlers(fh: Any) -> list[logging.Handler]:
    """``kbioxlm`` log records to ``fh`` (INFO and up, with time and process), warnings also to stderr."""
    to_file = logging.StreamHandler(fh)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    to_err = logging.StreamHandler(sys.stderr)
    to_err.setLevel(logging.WARNING)
    to_err.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    return [to_file, to_err]


def _init_worker(log_path: str | None, threads: int | None) -> None:
    """A run's process: its prints, log records and Python warnings go to the log (the toolkit's
    warnings also to stderr), transformers is quiet, and progress is the parent's to report.
    ``log_path`` ``None``: each run opens ``<its out>/pipeline.log`` (:func:`_run_one`)."""
    os.environ["KBIOXLM_PROGRESS"] = "off"
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read when torch starts, in this process
    logging.captureWarnings(True)
    if log_path is not None:
        _log_to(log_path)
    # lazy: transformers, in the run processes only (its load reports and bars are the log's noise)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _log_to(path: str) -> None:
    """This process's prints and ``kbioxlm`` log records go to ``path`` from now on (the log file of
    an earlier run in this worker is closed)."""
    if sys.stdout is not sys.__stdout__ and not sys.stdout.closed:
        sys.stdout.close()
    fh = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives until the next run's log
    sys.stdout = fh
    pkg = logging.getLogger("kbioxlm")
    for h in pkg.handlers[:]:
        pkg.removeHandler(h)
    for h in log_handlers(fh):
        pkg.addHandler(h)
    pkg.setLevel(logging.INFO)
    pkg.propagate = False
    warn_log = logging.getLogger("py.warnings")
    for h in warn_log.handlers[:]:
        warn_log.removeHandler(h)
    warn_log.addHandler(log_handlers(fh)[0])
    warn_log.propagate = False


def _run_one(job: dict[str, Any]) -> float:
    """One seed's run (in a worker); returns its seconds."""
    t = time.perf_counter()
    if job["own_log"]:
        Path(job["out"]).mkdir(parents=True, exist_ok=True)
        _log_to(str(Path(job["out"]) / "pipeline.log"))
    run_pipeline(job["config"], out=job["out"], shared=job["shared"], seed=job["seed"], only=job["only"],
                 force=job["force"])  # fmt: skip
    return time.perf_counter() - t


def run_repeats(
    config: str | Path,
    seeds: list[int],
    *,
    out: str | None = None,
    shared: str | None = None,
    jobs: int = 1,
    only: list[str] | None = None,
    force: list[str] | None = None,
    log: str | Path | None = None,
    threads: int | None = None,
    report: Callable[[str, float], None] | None = None,
    watch: Callable[[], None] | None = None,
    min_seconds: float = 0.0,
) -> dict[int, Path]:
    """Run ``config`` once per seed, ``jobs`` runs at a time; returns each seed's output folder.

    The runs' output goes to ``log`` (one file for all), else to ``<out>/pipeline.log`` of each run.
    ``report(name, seconds)`` gets a line per finished step that took at least ``min_seconds``
    (``seed S: <step>``) and per finished run (``seed S: done``); default: printed. ``watch`` is
    called every :data:`POLL_SECONDS` (a caller's progress bar). ``threads``: torch threads per run
    (default: the cores shared out among the runs at a time). An error in one run stops the others.
    """
    outs = repeat_outs(config, seeds, out, shared)
    jobs = max(1, min(jobs, len(seeds)))
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    say = report or (lambda name, secs: print(f"{name:<30}{secs:7.1f} s", flush=True))
    started = time.time()
    reported: set[tuple[int, str]] = set()

    def poll() -> None:
        fresh = []  # steps finished by these runs (a step an earlier run finished is skipped, not reported)
        for seed, folder in outs.items():
            for marker in (folder / MARKERS).glob("*.json"):
                if (seed, marker.stem) in reported or marker.stat().st_mtime < started:
                    continue
                try:
                    rec = json.loads(marker.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue  # being written
                if rec.get("status") == "done":
                    reported.add((seed, marker.stem))
                    fresh.append((marker.stat().st_mtime, seed, marker.stem, float(rec.get("seconds", 0.0))))
        for _t, seed, step, secs in sorted(fresh):
            if secs >= min_seconds:
                say(f"seed {seed}: {step}", secs)
        if watch is not None:
            watch()

    pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_init_worker, initargs=(str(log) if log else None, threads))  # fmt: skip
    try:
        pending = {
            pool.submit(_run_one, {"config": str(config), "out": str(folder), "shared": shared, "seed": seed,
                                   "only": only, "force": force, "own_log": log is None}): seed
            for seed, folder in outs.items()
        }  # fmt: skip
        while pending:
            done, _ = cf.wait(pending, timeout=POLL_SECONDS, return_when=cf.FIRST_COMPLETED)
            poll()
            for fut in done:
                seed = pending.pop(fut)
                say(f"seed {seed}: done", fut.result())
    except BaseException:  # an error or Ctrl-C: stop the running runs too, not only the queued ones
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return outs
