"""Reading, splitting and mixing pretraining records (docs/design.md, "Records"
and "Pretraining").

The paper trains on "an equal proportion of monolingual data and the three-level bilingual
corpora" (section 3.1.4). Records of all four kinds are read into per-task pools; a seeded
schedule draws, for every position of an epoch, a task by the configured proportions and the next
record of that task. The schedule is a pure function of ``(seed, epoch)``, so a data position
``(epoch, index)`` is all a checkpoint needs to resume on exactly the same batches, for any number
of processes: every process builds the same schedule and takes its own slice of each global batch.

Records are held in memory (the paper's knowledge corpora are tens of thousands of records; the
monolingual part of a full-scale run should be sharded into several files and runs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import KbioxlmError
from ..io import SkipCounter, iter_jsonl
from ..schema import validate_pretrain_record
from . import PRETRAIN_TASKS
from .collator import record_task

log = logging.getLogger(__name__)

# Default mixing: monolingual : knowledge = 1 : 1 (paper 3.1.4), knowledge split evenly over levels.
DEFAULT_MIX: dict[str, float] = {"mlm": 0.5, "entity": 1 / 6, "fact": 1 / 6, "passage": 1 / 6}


@dataclass(frozen=True)
class TrainFile:
    """A record file and an optional forced task (``path#mlm`` reads entity records as Documents)."""

    path: str
    as_task: str | None = None


def resolve_path(path: str) -> str:
    """``resource:REL`` names a file shipped under ``kbioxlm/resources``; other paths are as given."""
    if path.startswith("resource:"):
        return str(resources.files("kbioxlm.resources").joinpath(path[len("resource:") :]))
    return path


def parse_train_files(spec: str | Sequence[str] | None) -> list[TrainFile]:
    """Comma-separated string or list -> :class:`TrainFile` list; ``path#mlm`` forces monolingual use."""
    if spec is None or spec == "" or spec == []:
        return []
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    out = []
    for item in items:
        if not item:
            continue
        path, _, task = item.partition("#")
        if task and task != "mlm":
            raise KbioxlmError(f"{item}: only '#mlm' may follow a file name (reads its records as monolingual text)")
        out.append(TrainFile(resolve_path(path), task or None))
    return out


def _as_document(rec: dict[str, Any]) -> dict[str, Any]:
    """An entity/fact record used as monolingual text keeps its entity spans for entity masking."""
    doc = {"id": rec["id"], "lang": rec["lang"], "text": rec["text"]}
    if rec.get("entities"):
        doc["entities"] = rec["entities"]
    return doc


def load_pretrain_records(
    files: Sequence[TrainFile], skip: SkipCounter | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Read and validate every file; returns records per task in file order.

    A bad record raises :class:`KbioxlmError` with ``file:line`` (or is counted in ``skip``).
    """
    pools: dict[str, list[dict[str, Any]]] = {t: [] for t in PRETRAIN_TASKS}
    for tf in files:
        if not Path(tf.path).is_file():
            raise KbioxlmError(f"{tf.path}: no such record file")
        n = 0
        for _, rec in iter_jsonl(tf.path, validate_pretrain_record, skip):
            if tf.as_task == "mlm":
                if record_task(rec) == "passage":
                    raise KbioxlmError(f"{tf.path}: passage records cannot be read as monolingual text (#mlm)")
                rec = _as_document(rec)
            pools[record_task(rec)].append(rec)
            n += 1
        if n == 0:
            raise KbioxlmError(f"{tf.path}: no records")
        log.info("read %d records from %s", n, tf.path)
    return pools


def split_eval_records(
    pools: dict[str, list[dict[str, Any]]], fraction: float, max_per_task: int, seed: int
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """Seeded held-out split per task: ``fraction`` of the records, at most ``max_per_task``.

    Tasks with fewer than 2 records keep everything for training. Order inside both parts is the
    file order, so the split depends only on the seed and the record counts.
    """
    train: dict[str, list[dict[str, Any]]] = {}
    held: dict[str, list[dict[str, Any]]] = {}
    for t_id, task in enumerate(PRETRAIN_TASKS):
        recs = pools.get(task, [])
        n = len(recs)
        k = min(max_per_task, int(round(n * fraction))) if n >= 2 else 0
        if fraction > 0 and n >= 2:
            k = max(1, k)
        pick = set(np.random.default_rng([seed, 7919, t_id]).permutation(n)[:k].tolist())
        held[task] = [r for i, r in enumerate(recs) if i in pick]
        train[task] = [r for i, r in enumerate(recs) if i not in pick]
    return train, held


def normalise_mix(mix: dict[str, float] | None, available: dict[str, int]) -> dict[str, float]:
    """Proportions over the tasks that have training records (missing tasks drop out, rest rescale)."""
    mix = dict(DEFAULT_MIX if mix is None else mix)
    for k in mix:
        if k not in PRETRAIN_TASKS:
            raise KbioxlmError(f"mix: unknown task {k!r} (tasks: {', '.join(PRETRAIN_TASKS)})")
        if float(mix[k]) < 0:
            raise KbioxlmError(f"mix: proportion of {k!r} must be >= 0")
    usable = {
        t: float(mix.get(t, 0.0)) for t in PRETRAIN_TASKS if available.get(t, 0) > 0 and float(mix.get(t, 0.0)) > 0
    }
    dropped = [t for t in PRETRAIN_TASKS if float(mix.get(t, 0.0)) > 0 and available.get(t, 0) == 0]
    if dropped:
        log.warning("no training records for %s; their share of the mix goes to the other tasks", ", ".join(dropped))
    total = sum(usable.values())
    if total <= 0:
        raise KbioxlmError("no training records for any task with a positive mix proportion")
    return {t: v / total for t, v in usable.items()}


@dataclass
class DataPosition:
    """Where the next global batch starts: epoch number and index into that epoch's schedule."""

    epoch: int = 0
    index: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}


class MixedSchedule:
    """Deterministic mixed-task order of training records, resumable at any ``DataPosition``.

    Epoch ``e``'s schedule: ``epoch_size`` draws of a task (``numpy`` generator seeded with
    ``[seed, e]``, probabilities = the mix); the k-th draw of a task takes the k-th record of that
    task's seeded permutations (chained when a task is drawn more often than it has records).
    Global batches never straddle epochs (a short tail is dropped, as ``drop_last`` would).
    """

    def __init__(
        self,
        pools: dict[str, list[dict[str, Any]]],
        mix: dict[str, float],
        seed: int,
        epoch_size: int | None = None,
        length_bucketing: int = 0,
    ) -> None:
        self.pools = pools
        # Length bucketing: the records of every `length_bucketing` consecutive global batches are
        # sorted by length and re-cut into batches, which are then visited in a seeded random
        # order. Padding to the longest record of a batch then wastes little (the mixed schedule
        # puts 20-token names beside 500-token documents). Still a pure function of
        # (seed, epoch, position): exact resume is unaffected.
        self.length_bucketing = int(length_bucketing or 0)
        self.mix = mix
        self.seed = seed
        self.tasks = [t for t in PRETRAIN_TASKS if t in mix]
        self.probs = np.array([mix[t] for t in self.tasks], dtype=np.float64)
        self.probs = self.probs / self.probs.sum()
        self.epoch_size = int(epoch_size) if epoch_size else sum(len(pools[t]) for t in self.tasks)
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(task_index, record_index)`` arrays for one epoch (cached for the current epoch)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1], self._cache[2]
        rng = np.random.default_rng([self.seed, 104729, epoch])
        task_idx = rng.choice(len(self.tasks), size=self.epoch_size, p=self.probs)
        rec_idx = np.zeros(self.epoch_size, dtype=np.int64)
        for j, task in enumerate(self.tasks):
            where = np.nonzero(task_idx == j)[0]
            n = len(self.pools[task])
            reps = -(-len(where) // n) if len(where) else 0
            stream = np.concatenate([rng.permutation(n) for _ in range(reps)]) if reps else np.zeros(0, dtype=np.int64)
            rec_idx[where] = stream[: len(where)]
        self._cache = (epoch, task_idx, rec_idx)
        return task_idx, rec_idx

    def global_batches(
        self, start: DataPosition, global_batch: int
    ) -> Iterator[tuple[list[dict[str, Any]], DataPosition]]:
        """Yield ``(records of one global batch, position after it)`` forever from ``start``."""
        if global_batch > self.epoch_size:
            # Tiny data: let an epoch cover at least a few global batches (records repeat).
            self.epoch_size = global_batch * 4
            self._cache = None
        pos = DataPosition(start.epoch, start.index)
        while True:
            if pos.index + global_batch > self.epoch_size:
                pos = DataPosition(pos.epoch + 1, 0)
            task_idx, rec_idx = self.order(pos.epoch)
            if self.length_bucketing > 1:
                recs = self._bucketed_batch(pos, global_batch, task_idx, rec_idx)
            else:
                sl = slice(pos.index, pos.index + global_batch)
                recs = [self.pools[self.tasks[t]][r] for t, r in zip(task_idx[sl].tolist(), rec_idx[sl].tolist())]
            pos = DataPosition(pos.epoch, pos.index + global_batch)
            yield recs, pos

    def _bucketed_batch(
        self, pos: DataPosition, global_batch: int, task_idx: np.ndarray, rec_idx: np.ndarray
    ) -> list[dict[str, Any]]:
        """The global batch at ``pos`` under length bucketing (see ``__init__``).

        Chunks of ``length_bucketing`` batches start at multiples of ``length_bucketing *
        global_batch`` in the epoch (the last one holds the full batches left); a chunk's batches
        are the same records as without bucketing, only regrouped, so the task mix is unchanged.
        """
        k = self.length_bucketing
        chunk = pos.index // (k * global_batch)
        lo = chunk * k * global_batch
        n_batches = min(k, (self.epoch_size - lo) // global_batch)
        sl = slice(lo, lo + n_batches * global_batch)
        recs = [self.pools[self.tasks[t]][r] for t, r in zip(task_idx[sl].tolist(), rec_idx[sl].tolist())]
        order = sorted(range(len(recs)), key=lambda i: (record_length(recs[i]), i))
        visit = np.random.default_rng([self.seed, 15485863, pos.epoch, chunk]).permutation(n_batches)
        j = int(visit[(pos.index - lo) // global_batch])
        return [recs[i] for i in order[j * global_batch : (j + 1) * global_batch]]


def record_length(rec: dict[str, Any]) -> int:
    """Characters a record puts into the encoder (a cheap stand-in for its token count)."""
    task = record_task(rec)
    if task == "passage":
        return len(rec["text_a"]) + len(rec["text_b"])
    if task == "align":
        return 0
    return len(rec["text"])


class CollatedBatches:
    """This process's collated micro-batches, in schedule order, each with the state to resume after it.

    Iterating yields ``(batch, position after it, collator state after it, global batch size)``.
    Run in-process or in one :class:`torch.utils.data.DataLoader` worker (``dataloader_num_workers:
    1``): collation then overlaps the accelerator's work, and the trainer checkpoints the state
    that came with the last batch it *used*, not the worker's (which runs ahead), so a resume is as
    exact as in-process collation. With ``mask_seeding="batch"`` the collator's generator is reseeded
    for every global batch from ``(seed, rank, epoch, index)``: batches no longer depend on each
    other, so several workers can share the work (worker ``w`` of ``n`` collates batches
    ``w, w + n, ...``; the DataLoader returns them round-robin, i.e. in order).
    """

    def __init__(
        self,
        schedule: MixedSchedule,
        collator: Any,
        start: DataPosition,
        global_batch: int,
        rank: int,
        per_device: int,
        mask_seeding: str = "stream",
        seed: int = 0,
    ) -> None:
        self.schedule = schedule
        self.collator = collator
        self.start = start
        self.global_batch = global_batch
        self.rank = rank
        self.per_device = per_device
        self.mask_seeding = mask_seeding
        self.seed = seed

    def __iter__(self) -> Iterator[tuple[dict[str, Any], dict[str, int], dict[str, Any], int]]:
        worker, n_workers = 0, 1
        try:
            import torch.utils.data  # lazy: torch; `kbioxlm pretrain --help` loads this module (through the trainer)

            info = torch.utils.data.get_worker_info()
            if info is not None:
                worker, n_workers = info.id, info.num_workers
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        if n_workers > 1 and self.mask_seeding != "batch":
            raise KbioxlmError("several data workers need mask_seeding=batch (one mask stream cannot be split)")
        for i, (recs, pos) in enumerate(self.schedule.global_batches(self.start, self.global_batch)):
            if i % n_workers != worker:
                continue
            if self.mask_seeding == "batch":
                before = DataPosition(pos.epoch, pos.index - self.global_batch)
                self.collator.rng = np.random.Generator(
                    np.random.PCG64([self.seed, self.rank, before.epoch, before.index])
                )
            batch = self.collator(rank_slice(recs, self.rank, self.per_device))
            yield batch, pos.to_dict(), self.collator.state_dict(), len(recs)


def rank_slice(batch: Sequence[dict[str, Any]], rank: int, per_device: int) -> list[dict[str, Any]]:
    """This process's share of a global batch (contiguous blocks, as DistributedSampler-free DDP)."""
    return list(batch[rank * per_device : (rank + 1) * per_device])


def eval_batches(
    held: dict[str, list[dict[str, Any]]], batch_size: int, rank: int = 0, world: int = 1
) -> Iterator[list[dict[str, Any]]]:
    """Held-out records of each task in fixed order, strided over processes, in batches."""
    for task in PRETRAIN_TASKS:
        recs = held.get(task, [])[rank::world]
        for i in range(0, len(recs), batch_size):
            yield recs[i : i + batch_size]
