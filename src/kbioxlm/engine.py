"""The training engine that pretraining and fine-tuning share, on :class:`accelerate.Accelerator`.

Both trainers (:mod:`kbioxlm.pretrain.trainer`, :mod:`kbioxlm.tasks.finetune`) build an
``Accelerator`` (CPU unless a GPU is there, ``mixed_precision`` no or bf16, gloo/NCCL processes
under ``accelerate launch`` / ``torchrun``), ``prepare`` the model and optimizer with it, and take
every optimisation step through :func:`micro_step`. What stays theirs is the data schedule (each
shards its own batches over the processes) and what they do between steps.

Kept free of other kbioxlm imports, so any stage can use it without an import cycle. It imports
torch and accelerate: a module that ``kbioxlm --help`` loads reaches it only inside a function.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import gather_object


def reset_accelerate_state() -> None:
    """Let a second run in the same process choose other settings (bf16, accumulation).

    accelerate keeps its state in process-wide singletons; a new ``Accelerator`` with a different
    ``mixed_precision`` raises otherwise. Only for single-process use: under a launcher the process
    group belongs to this one run.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def micro_step(
    accelerator: Any,
    model: Any,
    optimizer: Any,
    host_batch: dict[str, Any],
    max_grad_norm: float | None,
    loss_fn: Callable[[Any], Any] | None = None,
) -> tuple[Any, Any]:
    """One micro-batch of the training loop: forward under autocast, backward, and, when the
    accumulation window closes, gradient clipping and the optimizer step (accelerate skips the
    step inside the window). Returns the model output and the gradient norm (``None`` inside the
    window). ``loss_fn(output)`` is the loss to back-propagate (default ``output.loss``).

    The one step of both trainers, and of ``benchmarks/gpu_pretrain.py``, which times this very step."""
    batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in host_batch.items()}
    grad_norm = None
    with accelerator.accumulate(model):
        with accelerator.autocast():
            out = model(**batch)
        accelerator.backward(out.loss if loss_fn is None else loss_fn(out))
        if accelerator.sync_gradients and max_grad_norm:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), float(max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return out, grad_norm


def weight_digest(model: Any) -> str:
    """SHA-256 over every parameter's bytes, in name order (identical weights <=> identical digest)."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def gather_objects(accelerator: Any, obj: Any) -> list[Any]:
    """One picklable object per process, in rank order (a list of one when not distributed)."""
    if accelerator.num_processes == 1:
        return [obj]
    return list(gather_object([obj]))


def broadcast_buffers(accelerator: Any, model: Any) -> None:
    """Give every process the main process's buffers (BatchNorm running statistics).

    DDP averages gradients, so parameters stay equal, but a buffer a forward pass updates (the
    ``normalized`` head's running mean and variance) keeps each process's own batches until DDP's
    next forward overwrites it from rank 0. Called before evaluating and saving, so all processes
    hold, score and save one model."""
    if accelerator.num_processes == 1:
        return
    for buf in model.buffers():
        torch.distributed.broadcast(buf.data, src=0)
