"""Training checkpoints without pickle: tensors in safetensors, everything else in plain JSON.

``accelerate``'s ``save_state`` pickles the optimizer, the scheduler and the RNG states
(``optimizer.bin``, ``scheduler.bin``, ``random_states_*.pkl``) and loads them back with
``torch.load(weights_only=False)``: a checkpoint folder from someone else could run code. This
module writes the same state in formats that cannot:

* ``model.safetensors``: the model's ``state_dict`` (tensors that share storage are stored once
  each, as copies; loading copies the values into the parameters, so tied weights stay tied).
* ``optimizer.safetensors`` + ``optimizer.json``, ``scheduler.json``, ``scaler.json`` (fp16):
  the ``state_dict`` with every tensor moved to the safetensors file and replaced by a reference.
* ``rng_rank<i>.json`` + ``rng_rank<i>.safetensors``: each process's Python, NumPy, torch and
  accelerator RNG states and accelerate's micro-step counter.

Everything round-trips exactly (floats through ``repr``, tensors bit for bit), so a resumed run
is identical to an uninterrupted one (tests/test_pretrain_train.py). A checkpoint in accelerate's
pickle format is refused, never unpickled.

Under DeepSpeed the model and optimizer are sharded by ZeRO and only the engine can write them:
``engine.save_checkpoint`` writes ``<tag>/`` (``pytorch_model/`` as ``accelerate``'s ``save_state``
names it, or DeepSpeed's own ``global_step<N>/``) and a ``latest`` file naming the tag. The
scheduler and RNG states still go to the JSON/safetensors files above, so a DeepSpeed resume reads
no pickle of ours (DeepSpeed's own ``*.pt`` shards are ``torch.load``-ed by DeepSpeed; only resume
from checkpoints you wrote). :func:`checkpoint_layout` tells the two layouts apart, so a checkpoint
is never read by the wrong path (each refusal says how to resume it).
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import KbioxlmError

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer"
SCHEDULER_FILE = "scheduler"
SCALER_FILE = "scaler"
FORMAT = "kbioxlm-train-state"
DEEPSPEED_LATEST = "latest"  # DeepSpeed's file naming the checkpoint tag (sub-folder) to load
DEEPSPEED_TAG = "pytorch_model"  # the tag accelerate's save_state uses (and so do we)
PICKLE_FILES = (
    "pytorch_model.bin",
    "optimizer.bin",
    "scheduler.bin",
    "scaler.pt",
    "random_states_0.pkl",
    "custom_checkpoint_0.pkl",
)


def rng_file(rank: int) -> str:
    return f"rng_rank{rank}"


# ------------------------------------------------------------------------ JSON + tensors
def _encode(obj: Any, prefix: str, tensors: dict[str, Any], seen: set[int]) -> Any:
    """JSON-safe copy of ``obj``; tensors go to ``tensors`` under a path-like key."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu")
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if (ptr is not None and ptr in seen) or not t.is_contiguous():
            t = t.clone().contiguous()  # safetensors stores each tensor on its own storage
        if ptr is not None:
            seen.add(ptr)
        tensors[prefix] = t
        return {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{prefix}.{i}", tensors, seen) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{prefix}.{i}", tensors, seen) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and "__tensor__" not in obj:
            return {k: _encode(v, f"{prefix}.{k}", tensors, seen) for k, v in obj.items()}
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise KbioxlmError(f"checkpoint: cannot store a {type(k).__name__} key safely ({prefix})")
            items.append([k, _encode(v, f"{prefix}.{k}", tensors, seen)])
        return {"__items__": items}
    raise KbioxlmError(f"checkpoint: cannot store a {type(obj).__name__} safely ({prefix})")


def _decode(obj: Any, tensors: dict[str, Any], where: Path) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, where) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        key = obj["__tensor__"]
        if key not in tensors:
            raise KbioxlmError(f"{where}: refers to tensor {key!r}, missing from its .safetensors file")
        return tensors[key]
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors, where) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {k: _decode(v, tensors, where) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors, where) for k, v in obj.items()}


def save_state_files(directory: Path, name: str, state: Any) -> None:
    """``name.json`` (structure and plain values) and ``name.safetensors`` (its tensors)."""
    tensors: dict[str, Any] = {}
    doc = {"format": FORMAT, "state": _encode(state, name, tensors, set())}
    tmp = directory / f".{name}.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, directory / f"{name}.safetensors")
    tmp = directory / f".{name}.json.tmp"
    tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, directory / f"{name}.json")


def load_state_files(directory: Path, name: str, device: Any = "cpu") -> Any:
    jpath, tpath = directory / f"{name}.json", directory / f"{name}.safetensors"
    try:
        doc = json.loads(jpath.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KbioxlmError(f"{jpath}: cannot read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise KbioxlmError(f"{jpath}: malformed JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KbioxlmError(f"{jpath}: not a kbioxlm training-state file")
    try:
        tensors = load_file(str(tpath), device=str(device))
    except (OSError, SafetensorError) as exc:
        raise KbioxlmError(
            f"{tpath}: cannot read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from exc
    return _decode(doc["state"], tensors, jpath)


# ------------------------------------------------------------------------ whole checkpoint
def _device_module(device: Any) -> Any:
    if device.type in ("cpu", "meta"):
        return None
    try:
        return torch.get_device_module(device.type)
    except (AttributeError, RuntimeError):
        return None


def rng_state(accelerator: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "step": int(accelerator.step),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    mod = _device_module(accelerator.device)
    if mod is not None and hasattr(mod, "get_rng_state_all"):
        state["device"] = list(mod.get_rng_state_all())
    elif mod is not None and hasattr(mod, "get_rng_state"):
        state["device_single"] = mod.get_rng_state()
    return state


def set_rng_state(accelerator: Any, state: dict[str, Any]) -> None:
    accelerator.step = int(state["step"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].to("cpu"))
    mod = _device_module(accelerator.device)
    if mod is not None and "device" in state and hasattr(mod, "set_rng_state_all"):
        mod.set_rng_state_all([t.to("cpu") for t in state["device"]])
    elif mod is not None and "device_single" in state and hasattr(mod, "set_rng_state"):
        mod.set_rng_state(state["device_single"].to("cpu"))


def save_training_state(directory: Path, accelerator: Any, model: Any, optimizer: Any, scheduler: Any) -> None:
    """Write model, optimizer, scheduler (and fp16 scaler) from the main process and each
    process's RNG state; the caller writes ``trainer_state.json`` last and synchronises."""
    directory.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        state = accelerator.unwrap_model(model).state_dict()
        tensors: dict[str, Any] = {}
        seen: set[int] = set()
        for k, v in state.items():
            _encode(v, k, tensors, seen)
        tmp = directory / f".{MODEL_FILE}.tmp"
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, directory / MODEL_FILE)
        save_state_files(directory, OPTIMIZER_FILE, optimizer.state_dict())
        save_state_files(directory, SCHEDULER_FILE, scheduler.state_dict())
        if getattr(accelerator, "scaler", None) is not None:
            save_state_files(directory, SCALER_FILE, accelerator.scaler.state_dict())
    save_state_files(directory, rng_file(accelerator.process_index), rng_state(accelerator))


def load_training_state(directory: Path, accelerator: Any, model: Any, optimizer: Any, scheduler: Any) -> None:
    """Restore what :func:`save_training_state` wrote (every process reads the shared files)."""
    directory = Path(directory)
    if not (directory / f"{OPTIMIZER_FILE}.json").is_file():
        old = [f for f in PICKLE_FILES if (directory / f).exists()]
        if old:
            raise KbioxlmError(
                f"{directory}: checkpoint in the old pickle format ({', '.join(old[:2])}); kbioxlm no longer"
                " unpickles files. Start afresh (overwrite_output_dir=true) or resume from a checkpoint written by this version"
            )
        raise KbioxlmError(f"{directory}: incomplete checkpoint (no {OPTIMIZER_FILE}.json)")
    path = directory / MODEL_FILE
    try:
        weights = load_file(str(path), device="cpu")
    except (OSError, SafetensorError) as exc:
        raise KbioxlmError(
            f"{path}: cannot read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from exc
    unwrapped = accelerator.unwrap_model(model)
    try:
        unwrapped.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise KbioxlmError(f"{path}: does not fit this run's model ({str(exc).splitlines()[0]})") from exc
    try:
        optimizer.load_state_dict(load_state_files(directory, OPTIMIZER_FILE))
        scheduler.load_state_dict(load_state_files(directory, SCHEDULER_FILE))
    except (ValueError, KeyError, RuntimeError) as exc:
        raise KbioxlmError(f"{directory}: optimizer or scheduler state does not fit this run ({exc})") from exc
    if getattr(accelerator, "scaler", None) is not None and (directory / f"{SCALER_FILE}.json").is_file():
        accelerator.scaler.load_state_dict(load_state_files(directory, SCALER_FILE))
    name = rng_file(accelerator.process_index)
    if (directory / f"{name}.json").is_file():
        set_rng_state(accelerator, load_state_files(directory, name))


# ------------------------------------------------------------------------ DeepSpeed layout
def deepspeed_tag(directory: Path) -> str | None:
    """The tag of a DeepSpeed checkpoint folder, or None when it is not one.

    A DeepSpeed checkpoint is a ``latest`` file naming a sub-folder, or (without ``latest``) a
    single ``pytorch_model/`` or ``global_step<N>/`` sub-folder holding ``*model_states.pt``.
    Raises :class:`KbioxlmError` for a ``latest`` that names a missing or empty folder (an
    interrupted save).
    """
    directory = Path(directory)
    latest = directory / DEEPSPEED_LATEST
    if latest.is_file():
        try:
            tag = latest.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KbioxlmError(f"{latest}: cannot read the DeepSpeed checkpoint tag ({exc})") from exc
        if not tag or "/" in tag or tag in (".", ".."):
            raise KbioxlmError(f"{latest}: not a DeepSpeed checkpoint tag ({tag!r})")
        if not any((directory / tag).glob("*model_states.pt")):
            raise KbioxlmError(
                f"{directory}: incomplete DeepSpeed checkpoint (`latest` names {tag}/, which holds no *model_states.pt)"
            )
        return tag
    tags = (
        [
            d.name
            for d in directory.iterdir()
            if d.is_dir()
            and (d.name == DEEPSPEED_TAG or d.name.startswith("global_step"))
            and any(d.glob("*model_states.pt"))
        ]
        if directory.is_dir()
        else []
    )
    if len(tags) > 1:
        raise KbioxlmError(
            f"{directory}: several DeepSpeed checkpoints ({', '.join(sorted(tags))}) and no `latest` file naming one"
        )
    return tags[0] if tags else None


def checkpoint_layout(directory: Path) -> str:
    """``deepspeed`` (see :func:`deepspeed_tag`) or ``kbioxlm`` (this module's files; also what an
    old or incomplete checkpoint is refused as by :func:`load_training_state`)."""
    return "deepspeed" if deepspeed_tag(Path(directory)) is not None else "kbioxlm"


def save_deepspeed_state(directory: Path, accelerator: Any, engine: Any, scheduler: Any) -> None:
    """DeepSpeed: the engine writes its (sharded) model and optimizer under ``pytorch_model/`` +
    ``latest`` (every process writes its shard); scheduler and RNG states as in the plain layout."""
    directory.mkdir(parents=True, exist_ok=True)
    engine.save_checkpoint(str(directory), DEEPSPEED_TAG)
    if accelerator.is_main_process:
        save_state_files(directory, SCHEDULER_FILE, scheduler.state_dict())
    save_state_files(directory, rng_file(accelerator.process_index), rng_state(accelerator))


def load_deepspeed_state(directory: Path, accelerator: Any, engine: Any, scheduler: Any) -> None:
    """Restore what :func:`save_deepspeed_state` wrote (or a bare ``global_step<N>`` checkpoint,
    whose scheduler and RNG states, absent, then start afresh with a warning)."""
    directory = Path(directory)
    tag = deepspeed_tag(directory)
    if tag is None:
        raise KbioxlmError(f"{directory}: not a DeepSpeed checkpoint (no `latest` file or {DEEPSPEED_TAG}/ folder)")
    path, _ = engine.load_checkpoint(str(directory), tag)
    if path is None:
        raise KbioxlmError(f"{directory / tag}: DeepSpeed could not load this checkpoint")
    if (directory / f"{SCHEDULER_FILE}.json").is_file():
        scheduler.load_state_dict(load_state_files(directory, SCHEDULER_FILE))
    else:
        logging.getLogger(__name__).warning("%s: no scheduler state; the learning-rate schedule restarts", directory)
    name = rng_file(accelerator.process_index)
    if (directory / f"{name}.json").is_file():
        set_rng_state(accelerator, load_state_files(directory, name))


def check_layout(directory: Path, deepspeed: bool) -> str:
    """The checkpoint's layout, after checking this run can read it (one-line refusal otherwise)."""
    layout = checkpoint_layout(directory)
    if layout == "deepspeed" and not deepspeed:
        raise KbioxlmError(
            f"{directory}: a DeepSpeed checkpoint ({deepspeed_tag(directory)}/ + latest); resume it under DeepSpeed with the same"
            " ZeRO setup (accelerate launch --config_file configs/accelerate-deepspeed-zero2.yaml -m kbioxlm pretrain ...)"
        )
    if layout == "kbioxlm" and deepspeed:
        raise KbioxlmError(
            f"{directory}: written without DeepSpeed (no `latest` file or {DEEPSPEED_TAG}/ folder); resume it without DeepSpeed,"
            " or start afresh (overwrite_output_dir=true)"
        )
    return layout
