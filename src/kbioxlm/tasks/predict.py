"""``kbioxlm predict``: run a model saved by ``finetune --save-model`` on a file, exactly as ``finetune`` scored it.

The stock Auto classes load a saved model with its labels, but they give the emission argmax (NER)
or the stock head's output; the toolkit's full model adds CRF decoding (NER) and the ``normalized``
head (RE/DC). This command rebuilds that full model from the folder (:func:`load_finetuned`) and
predicts with the same encoding, batching and decision rule as the fine-tuning run (the trainer's
own task adapters and evaluation loop, not a second copy), so on a labelled file it prints the
same F1 ``finetune`` reported for that file.

Input: NER as release CoNLL or NER JSONL (tags optional), RE/DC as JSON lines (``label``
optional). Output in the input's format unless ``--format`` says otherwise: CoNLL with one
``-DOCSTART-<TAB>id`` per sentence and ``token<TAB>pred`` lines (``token<TAB>gold<TAB>pred`` when
the input had tags, conlleval's layout; the last column is always the prediction), or JSONL rows
like ``finetune``'s ``predictions.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..conll import DOCSTART
from ..errors import KbioxlmError
from ..hub import load_error
from ..io import atomic_write, is_jsonl_file, write_jsonl
from .finetune import METRIC_NAMES, MODEL_MARKER, FinetuneConfig, _NERTask, _SeqClsTask, _evaluate
from .readers import read_ner, read_seqcls

log = logging.getLogger(__name__)

FORMATS = ("auto", "conll", "jsonl")
LEGACY_PICKLES = ("ner_head.pt", "seqcls_head.pt")


@dataclass
class Finetuned:
    """A saved fine-tuned model, rebuilt: its settings (``kbioxlm_task.json``), model and tokenizer."""

    info: dict[str, Any]
    model: Any
    tokenizer: Any

    @property
    def task(self) -> str:
        return str(self.info["task"])


def _task_info(folder: Path) -> dict[str, Any]:
    """Settings of a saved model; older save layouts get the defaults they were trained with."""
    defaults = FinetuneConfig(task="ner", model="", train=[])
    base = {
        "max_length": defaults.max_length,
        "eval_batch_size": defaults.eval_batch_size,
        "merge_adjacent_unspaced": defaults.merge_adjacent_unspaced,
        "threshold": defaults.threshold,
        "adapt_norm": False,
    }
    marker = folder / MODEL_MARKER
    if marker.is_file():
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise KbioxlmError(f"{marker}: not valid JSON ({exc})") from exc
        if not isinstance(info, dict) or info.get("task") not in ("ner", "re", "dc"):
            raise KbioxlmError(f"{marker}: not a kbioxlm fine-tuned model marker (no task ner/re/dc)")
        return {**base, **info}
    pickled = [f for f in LEGACY_PICKLES if (folder / f).is_file()]
    if pickled:
        raise KbioxlmError(
            f"{folder}: saved in the old pickled format ({pickled[0]}), which is not loaded (unpickling "
            "can run code); fine-tune again with --save-model"
        )
    if (folder / "ner_head.safetensors").is_file():
        return {**base, "task": "ner", "head": "crf"}
    if (folder / "seqcls_head.json").is_file():
        try:
            multi = bool(json.loads((folder / "seqcls_head.json").read_text(encoding="utf-8"))["multilabel"])
        except (ValueError, KeyError, TypeError) as exc:
            raise KbioxlmError(f"{folder / 'seqcls_head.json'}: unreadable ({exc})") from exc
        return {**base, "task": "dc" if multi else "re", "head": "normalized"}
    config = folder / "config.json"
    if config.is_file():
        try:
            cfg = json.loads(config.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise KbioxlmError(f"{config}: not valid JSON ({exc})") from exc
        if any(str(a).endswith("ForSequenceClassification") for a in cfg.get("architectures") or ()):
            multi = cfg.get("problem_type") == "multi_label_classification"
            return {**base, "task": "dc" if multi else "re", "head": "model"}
    raise KbioxlmError(f"{folder}: not a model saved by 'kbioxlm finetune --save-model' (no {MODEL_MARKER})")


def load_finetuned(path: str | os.PathLike[str]) -> Finetuned:
    """Rebuild the full fine-tuned model (CRF tagger / normalized head / stock classifier) from its folder."""
    # lazy: torch, transformers; `kbioxlm --help` imports this module
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .ner import EncoderCRFTagger
    from .seqcls import NormalizedPoolingClassifier

    folder = Path(path)
    if not folder.is_dir():
        raise KbioxlmError(f"{folder}: no such model folder")
    info = _task_info(folder)
    model: Any  # the CRF tagger, the normalized head or the stock classifier
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if info["task"] == "ner":
            model = EncoderCRFTagger.from_saved(folder)
            info["labels"] = list(model.labels)
        elif info.get("head") == "normalized":
            model = NormalizedPoolingClassifier.from_saved(folder)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(folder)
    except (OSError, ValueError, KeyError) as exc:
        raise load_error(str(folder), exc, "fine-tuned model") from exc
    if not getattr(tokenizer, "is_fast", True):
        raise KbioxlmError(f"{folder}: a fast tokenizer (offset mappings) is required")
    return Finetuned(info, model.eval(), tokenizer)


def run_predict(
    model: str | os.PathLike[str],
    input: str | os.PathLike[str],
    out: str | os.PathLike[str],
    fmt: str = "auto",
    lang: str | None = None,
    batch_size: int | None = None,
    num_threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict every record of ``input`` into ``out`` (atomically); returns the counts and, when
    every record has a gold label, the scores (``f1`` ...) under the fine-tuning metrics."""
    import torch  # lazy: torch; `kbioxlm --help` imports this module

    if fmt not in FORMATS:
        raise KbioxlmError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    src = Path(input)
    if not src.is_file():
        raise KbioxlmError(f"{src}: no such file")
    if Path(out).is_dir():
        raise KbioxlmError(f"{out}: is a folder, expected a file name")
    info = _task_info(Path(model)) if Path(model).is_dir() else None
    if info is None:
        raise KbioxlmError(f"{model}: no such model folder")
    task_name = info["task"]
    # read (and check) the input before the model loads: a bad line costs no model load
    if task_name == "ner":
        records: list[dict[str, Any]] = [dict(r) for r in read_ner(src, lang, labelled=False)]
        in_fmt = "jsonl" if is_jsonl_file(src) else "conll"
    else:
        records = [dict(r) for r in read_seqcls(src, lang, task_name, labelled=False)]
        in_fmt = "jsonl"
    out_fmt = in_fmt if fmt == "auto" else fmt
    if task_name != "ner" and out_fmt == "conll":
        raise KbioxlmError(f"--format conll is for NER; task {task_name} writes JSONL")
    gold_key = "tags" if task_name == "ner" else "label"
    has_gold = [r[gold_key] is not None for r in records]

    saved = load_finetuned(model)
    info = saved.info
    if task_name == "dc":
        width = saved.model.config.num_labels if hasattr(saved.model, "config") else saved.model.classifier.out_features
        bad = next((r for r in records if r["label"] is not None and len(r["label"]) != width), None)
        if bad is not None:
            raise KbioxlmError(f"{src}: record {bad['id']}: {len(bad['label'])} labels, the model has {width}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and num_threads:
        torch.set_num_threads(num_threads)
    cfg = FinetuneConfig(
        task=task_name,
        model=str(model),
        train=[],
        max_length=int(info["max_length"]),
        eval_batch_size=int(batch_size or info["eval_batch_size"]),
        merge_adjacent_unspaced=bool(info["merge_adjacent_unspaced"]),
        threshold=float(info["threshold"]),
        adapt_norm=bool(info["adapt_norm"]),
        head=str(info.get("head") if task_name != "ner" else "model"),
        progress=progress,
    )
    if task_name == "ner":
        task: Any = _NERTask(cfg, saved.tokenizer, [], labels=info["labels"])
        for r in records:  # placeholder gold for unlabelled sentences; never scored (see has_gold)
            if r["tags"] is None:
                r["tags"] = ["O"] * len(r["tokens"])
    else:
        n = saved.model.config.num_labels if hasattr(saved.model, "config") else saved.model.classifier.out_features
        task = _SeqClsTask(cfg, saved.tokenizer, [], num_labels=n)
        for r in records:
            if r["label"] is None:
                r["label"] = [0] * n if task_name == "dc" else 0
    saved.model.to(device)
    encs = task.encode(records)
    preds, scores, secs = _evaluate(task, saved.model, records, encs, cfg.eval_batch_size, device, "predict", progress)
    rows = task.rows(records, preds)
    for row, gold in zip(rows, has_gold):
        if not gold:
            row.pop(gold_key, None)
    if out_fmt == "conll":
        _write_conll(out, rows)
    else:
        write_jsonl(out, rows)
    result: dict[str, Any] = {
        "task": task_name,
        "n": len(records),
        "n_labelled": sum(has_gold),
        "out": str(out),
        "format": out_fmt,
        "seconds": round(secs, 3),
    }
    if all(has_gold):
        result.update({"metric": METRIC_NAMES[task_name], **scores})
    elif any(has_gold):
        log.warning(
            "%d of %d records have gold labels: no scores (score a fully labelled file)", sum(has_gold), len(records)
        )
    return result


def _write_conll(out: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """One ``-DOCSTART-<TAB>id`` per sentence; ``token<TAB>[gold<TAB>]pred`` lines (last column: prediction)."""
    with atomic_write(out) as fh:
        for row in rows:
            fh.write(f"{DOCSTART}\t{row['id']}\n\n")
            gold = row.get("tags")
            for i, (tok, pred) in enumerate(zip(row["tokens"], row["pred"])):
                fh.write(f"{tok}\t{gold[i]}\t{pred}\n" if gold is not None else f"{tok}\t{pred}\n")
            fh.write("\n")


# ------------------------------------------------------------------------------------------ CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``kbioxlm predict`` (kept here so the command's options live with its code)."""
    p.add_argument("--model", required=True, help="folder written by 'kbioxlm finetune --save-model' (OUT/model)")
    p.add_argument(
        "--input",
        required=True,
        help="NER: release CoNLL (token[<TAB>tag] lines) or NER JSONL; RE/DC: JSON lines; gold labels optional",
    )
    p.add_argument("--out", required=True, help="predictions file, written atomically")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="output format; auto = the input's (CoNLL in, CoNLL out; JSONL in, JSONL out)",
    )
    p.add_argument("--lang", help="language of --input (default: from the records or detected from the script)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="examples per forward pass (default: the fine-tuning run's evaluation batch size)",
    )
    p.add_argument("--num-threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="tag / classify a file with a model saved by 'finetune --save-model' (prints F1 on labelled input)",
        description="Run a fine-tuned model (CRF decoding for NER, the task's decision rule for RE/DC) on a file. "
        "When every record of the input has gold labels, also prints the scores (same metric and number as finetune).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    if args.batch_size is not None and args.batch_size < 1:
        raise KbioxlmError("--batch-size must be >= 1")
    res = run_predict(
        args.model,
        args.input,
        args.out,
        args.format,
        args.lang,
        args.batch_size,
        args.num_threads,
        progress=not args.no_progress,
    )
    if "f1" in res:
        print(
            f"{res['task']}: f1={res['f1']:.2f} p={res['precision']:.2f} r={res['recall']:.2f} "
            f"n={res['n']} -> {res['out']}"
        )
    else:
        print(
            f"{res['task']}: predicted {res['n']} records ({res['n_labelled']} with gold labels, not scored) "
            f"-> {res['out']}"
        )
    return 0
