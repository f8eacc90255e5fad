"""Training checkpoint → plain Hugging Face checkpoint (``kbioxlm export``).

The result loads with ``AutoModel`` and ``AutoModelForMaskedLM`` and needs nothing from kbioxlm:

* The MLM head is written under the architecture's own names (``lm_head.dense/layer_norm/
  decoder/bias`` for XLM-R/RoBERTa, ``cls.predictions.transform.dense/LayerNorm`` +
  ``cls.predictions.decoder/bias`` for BERT), with ``tie_word_embeddings=false`` because the
  trained decoder no longer equals the input embeddings.
* **Full output vocabulary restored.** Kept rows are the trained decoder rows/bias. Rows outside
  the kept set come from the *original* checkpoint's LM head (``--full-vocab-from``, else the
  ``base_model`` recorded at training time) with its original bias, so the exported model still
  predicts them as the base model did; when no original head is available they are the trained
  input embeddings (the usual tied-decoder initialisation) with zero bias.
* **Undoing ``vocab trim``.** When the checkpoint's encoder was trimmed (``vocab_map.json``) and
  ``--full-vocab-from`` names the untrimmed original, the input embeddings and head are scattered
  back into the original vocabulary (rows not in the trimmed model keep their original values)
  and the original tokenizer is shipped. With only a tokenizer there, missing rows get the mean
  trained embedding and the lowest bias (documented in docs/pretrain-model.md).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev
from typing import Any

import torch
from huggingface_hub import ModelCardData
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer

from ..errors import KbioxlmError, where
from ..io import check_output_dir, iter_jsonl, make_temp_dir, read_text, replace_dir, write_marker
from ..modelcard import TAGS, base_license, card_base_model, render, table
from .data import parse_train_files
from .vocab import remap_special_token_ids
from .model import (
    VOCAB_MAP_FILE,
    KnowledgeAnchoredModel,
    _supports_masked_lm,
    input_embedding_weight,
    lm_head_parts,
    read_meta,
)

log = logging.getLogger(__name__)

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "sentencepiece.bpe.model",
    "vocab.txt",
    "added_tokens.json",
)
SETTINGS_FILES = ("kbioxlm_config.json", "training_args.json")
EXPORT_MARKER = "kbioxlm_export.json"
"""Written last into every export: the summary and the list of files the export wrote. Only a
folder holding it (and nothing else than those files) may be replaced, and only with ``overwrite``."""
EXPORT_WHAT = "kbioxlm export"


@dataclass
class Original:
    """Rows of the original (pre-training) checkpoint used to fill in the full vocabulary."""

    vocab_size: int
    embeddings: torch.Tensor | None
    decoder: torch.Tensor | None
    bias: torch.Tensor | None
    source: str


def _load_original(name: str) -> Original | None:
    """Embeddings / LM head rows of ``name`` (a model), or only its size (a tokenizer); None if unloadable."""
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError):
        config = None
    if config is not None:
        try:
            if _supports_masked_lm(config):
                mlm, info = AutoModelForMaskedLM.from_pretrained(name, output_loading_info=True)
                parts = lm_head_parts(mlm)
                emb = mlm.get_input_embeddings().weight.detach().float()
                missing = set(info.get("missing_keys", ()))
                if parts is not None and not any(k.startswith(parts.prefix) for k in missing):
                    return Original(
                        emb.shape[0], emb, parts.decoder.weight.detach().float(), parts.bias.detach().float(), name
                    )
                return Original(emb.shape[0], emb, None, None, name)
            enc = AutoModel.from_pretrained(name)
            emb = enc.get_input_embeddings().weight.detach().float()
            return Original(emb.shape[0], emb, None, None, name)
        except (OSError, ValueError) as exc:
            log.warning("%s: cannot load the original weights (%s)", name, str(exc).splitlines()[0])
            return None
    try:
        tok = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError):
        return None
    return Original(len(tok), None, None, None, name)


def _find_settings(ckpt: Path) -> dict[str, Any]:
    """Training settings for the model card, from the checkpoint folder or the run folder above it
    (``RUN/final``, ``RUN/checkpoints/checkpoint-N``)."""
    settings: dict[str, Any] = {}
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    for folder in dict.fromkeys((run, ckpt.parent, ckpt)):  # checkpoint-specific values win
        for name in SETTINGS_FILES:
            path = folder / name
            if path.is_file():
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                except ValueError:
                    log.warning("%s: unreadable, ignored for the model card", path)
                    continue
                if isinstance(data, dict):
                    settings.update(data)
        state = folder / "trainer_state.json"
        if state.is_file():
            try:
                settings.setdefault("global_step", json.loads(state.read_text(encoding="utf-8")).get("global_step"))
            except ValueError:
                pass
    return settings


def _tokenizer_source(ckpt: Path, explicit: str | None, meta: dict[str, Any], settings: dict[str, Any]) -> str | None:
    if explicit:
        return explicit
    candidates = [str(ckpt), str(ckpt.parent)]
    for key in ("tokenizer", "model"):
        if isinstance(settings.get(key), str):
            candidates.append(settings[key])
    if meta.get("base_model"):
        candidates.append(str(meta["base_model"]))
    for cand in candidates:
        p = Path(cand)
        if p.is_dir() and any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
            return cand
    return None


def _ship_tokenizer(source: str, out: Path) -> None:
    src = Path(source)
    if src.is_dir():
        copied = [f for f in TOKENIZER_FILES if (src / f).is_file()]
        for f in copied:
            shutil.copyfile(src / f, out / f)
        if copied:
            return
    try:
        AutoTokenizer.from_pretrained(source).save_pretrained(out)
    except (OSError, ValueError) as exc:
        raise KbioxlmError(f"{source}: cannot load tokenizer ({str(exc).splitlines()[0]})") from exc


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    full_vocab_from: str | None = None,
    tokenizer: str | None = None,
    overwrite: bool = False,
    probe: str | os.PathLike[str] | None = None,
    benchmark: str | os.PathLike[str] | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
) -> dict[str, Any]:
    """Write a plain Hugging Face MLM checkpoint + tokenizer + model card; returns a summary.

    ``out_dir`` may be absent or empty; a previous export there is replaced only with
    ``overwrite``; any other content is refused before anything is read or written.
    ``probe`` (probe.json) and ``benchmark`` (a benchmark's results.jsonl) add their tables to the
    card; ``base_model`` (a hub id) replaces the recorded base in the card's metadata (the hub
    refuses a local path there); ``datasets``: hub dataset ids for the card's metadata.
    """
    check_output_dir(out_dir, EXPORT_MARKER, overwrite, EXPORT_WHAT)
    probe_data = read_probe(probe) if probe else None
    bench_rows = read_benchmark(benchmark) if benchmark else None
    ckpt = Path(checkpoint)
    meta = read_meta(ckpt)
    model = KnowledgeAnchoredModel.load(ckpt).eval()
    settings = _find_settings(ckpt)
    encoder = model.encoder
    config = encoder.config.__class__.from_dict(encoder.config.to_dict())
    v_in = model.full_vocab_size
    hidden = config.hidden_size
    vocab_map = model.vocab_map

    source = full_vocab_from or meta.get("base_model")
    original = _load_original(str(source)) if source else None
    if original is None and full_vocab_from:
        raise KbioxlmError(f"{full_vocab_from}: cannot load it as a model or tokenizer")
    untrim = bool(full_vocab_from) and vocab_map is not None and original is not None and original.vocab_size != v_in
    if untrim:
        assert vocab_map is not None and original is not None  # implied by `untrim`
        if max(vocab_map) >= original.vocab_size:
            raise KbioxlmError(
                f"{full_vocab_from}: has {original.vocab_size} ids but the checkpoint's vocab_map refers to id {max(vocab_map)}"
            )
    same_vocab = original is not None and original.vocab_size == v_in and original.embeddings is not None

    emb_trained = input_embedding_weight(encoder).detach().float()
    with torch.no_grad():
        # 1. head over the encoder's own vocabulary (v_in rows)
        # (`same_vocab` and `untrim` imply `original`; decoder and bias are loaded together)
        if same_vocab and original is not None and original.decoder is not None and original.bias is not None:
            dec, bias, rows_from = original.decoder.clone(), original.bias.clone(), f"LM head of {original.source}"
        elif untrim and original is not None and original.decoder is not None and original.bias is not None:
            idx = torch.tensor(vocab_map)
            dec, bias, rows_from = (
                original.decoder[idx].clone(),
                original.bias[idx].clone(),
                f"LM head of {original.source}",
            )
        else:
            dec, bias, rows_from = emb_trained.clone(), torch.zeros(v_in), "trained input embeddings, bias 0"
        kept = torch.tensor(model.kept_ids) if model.kept_ids is not None else torch.arange(v_in)
        dec[kept] = model.mlm_head.decoder.weight.detach().float()
        bias[kept] = model.mlm_head.decoder.bias.detach().float()
        emb = emb_trained
        # 2. undo a vocabulary trim
        if untrim:
            assert vocab_map is not None and original is not None  # implied by `untrim`
            idx = torch.tensor(vocab_map)
            n = original.vocab_size
            if original.embeddings is not None:
                emb_full = original.embeddings.clone()
            else:
                emb_full = emb_trained.mean(0, keepdim=True).expand(n, hidden).clone()
            emb_full[idx] = emb_trained
            if original.decoder is not None and original.bias is not None:
                dec_full, bias_full = original.decoder.clone(), original.bias.clone()
            elif original.embeddings is not None:
                dec_full, bias_full = original.embeddings.clone(), torch.zeros(n)
            else:  # tokenizer only: unseen rows can be predicted but rank last
                dec_full, bias_full = emb_full.clone(), torch.full((n,), float(bias.min()))
            dec_full[idx] = dec
            bias_full[idx] = bias
            emb, dec, bias = emb_full, dec_full, bias_full
            remap_special_token_ids(config, dict(enumerate(vocab_map)))
    final_vocab = emb.shape[0]
    config.vocab_size = final_vocab
    config.tie_word_embeddings = False

    state = {k: v for k, v in encoder.state_dict().items()}
    emb_key = next(k for k, v in encoder.named_parameters() if v is input_embedding_weight(encoder))
    state[emb_key] = emb.to(input_embedding_weight(encoder).dtype)

    has_mlm = _supports_masked_lm(config)
    if has_mlm:
        hf = AutoModelForMaskedLM.from_config(config)
        base = getattr(hf, hf.base_model_prefix)
        parts = lm_head_parts(hf)
        if parts is None:
            raise KbioxlmError(f"{type(hf).__name__}: unknown LM head layout, cannot export the MLM head")
    else:
        log.warning("%s has no masked-LM class: exporting the encoder only", config.model_type)
        hf = base = AutoModel.from_config(config)
        parts = None
    load_encoder_state(base, state)
    if parts is not None:
        with torch.no_grad():
            parts.dense.load_state_dict(model.mlm_head.dense.state_dict())
            parts.layer_norm.load_state_dict(model.mlm_head.layer_norm.state_dict())
            parts.decoder.weight.copy_(dec)
            parts.decoder.bias.copy_(bias)
            parts.bias.copy_(bias)
    config.architectures = [type(hf).__name__]
    hf.config.architectures = config.architectures

    out = Path(out_dir)
    tmp = make_temp_dir(out)
    try:
        hf.save_pretrained(tmp)
        tok_src = tokenizer or (full_vocab_from if untrim else None) or _tokenizer_source(ckpt, None, meta, settings)
        if tok_src:
            _ship_tokenizer(tok_src, tmp)
        else:
            log.warning("no tokenizer found for %s; pass --tokenizer", ckpt)
        if vocab_map is not None and not untrim:
            shutil.copyfile(ckpt / VOCAB_MAP_FILE, tmp / VOCAB_MAP_FILE)
        summary = {
            "architecture": type(hf).__name__,
            "vocab_size": final_vocab,
            "kept_ids": len(model.kept_ids) if model.kept_ids is not None else None,
            "rows_outside_kept_from": rows_from if model.kept_ids is not None else None,
            "untrimmed_from": original.source if untrim and original is not None else None,
            "tokenizer": tok_src,
            "base_model": meta.get("base_model"),
            "checkpoint": str(ckpt),
        }
        (tmp / "README.md").write_text(
            _model_card(summary, meta, settings, ckpt, probe_data, bench_rows, base_model, datasets), encoding="utf-8"
        )
        write_marker(tmp, EXPORT_MARKER, {"format": "kbioxlm-export", **summary})
        replace_dir(tmp, out, EXPORT_MARKER, overwrite, EXPORT_WHAT)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def load_encoder_state(base: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load an encoder's weights into the base model of a stock task class, pooler optional.

    Shared by the export and the fine-tuned model savers: the stock ``*ForMaskedLM`` /
    ``*ForTokenClassification`` bases have no pooler while an ``AutoModel`` encoder may have one
    (and e5 has none), so only pooler keys may differ; anything else means the weights do not fit.
    """
    result = base.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if "pooler" not in k]
    unexpected = [k for k in result.unexpected_keys if "pooler" not in k]
    if missing or unexpected:
        raise KbioxlmError(
            f"encoder weights do not fit the exported architecture (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


LANG_KEYS = ("lang", "lang_a", "lang_b", "source_lang", "target_lang")
LANG_SCAN_LINES = 500  # per training file: the corpus files are one language (pair) each


def _run_languages(files: list[str]) -> list[str]:
    """Languages of the training records (their ``lang``/``lang_a``/``lang_b`` fields), from the
    first lines of each training file; the run's config does not list them."""
    langs: set[str] = set()
    for f in files:
        try:
            with open(f, encoding="utf-8") as fh:
                for i, line in enumerate(fh):
                    if i >= LANG_SCAN_LINES:
                        break
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(rec, dict):
                        langs.update(v for k in LANG_KEYS if isinstance(v := rec.get(k), str) and v)
        except (OSError, UnicodeDecodeError):
            log.warning("%s: unreadable, its languages are not in the model card", f)
    return sorted(langs)


def find_eval_log(ckpt: Path) -> Path | None:
    """``eval.jsonl`` of the run the checkpoint belongs to (``RUN/final``, ``RUN/checkpoints/checkpoint-N``)."""
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    for folder in (ckpt, run):
        if (folder / "eval.jsonl").is_file():
            return folder / "eval.jsonl"
    return None


def _eval_rows(path: Path, step: int | None) -> list[dict[str, Any]]:
    """The first held-out evaluation and the one at the checkpoint's step (else the last before it)."""
    rows = [r for _, r in iter_jsonl(path) if isinstance(r, dict) and isinstance(r.get("step"), int)]
    if not rows:
        return []
    upto = [r for r in rows if step is None or r["step"] <= step] or rows[:1]
    picked = [rows[0]] if rows[0] is not upto[-1] else []
    return picked + [upto[-1]]


def read_probe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A ``kbioxlm probe`` result (probe.json), checked before any export work."""
    try:
        data = json.loads(read_text(path))
    except ValueError as exc:
        raise KbioxlmError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("term_retrieval"), dict):
        raise KbioxlmError(f"{path}: not a probe.json (no 'term_retrieval'; written by 'kbioxlm probe')")
    return data


def read_benchmark(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a benchmark's ``results.jsonl`` (one per finished cell), checked before any export work."""
    rows = []
    for lineno, rec in iter_jsonl(path):
        if not isinstance(rec, dict) or not isinstance(rec.get("f1"), (int, float)) or "dataset" not in rec:
            raise KbioxlmError(
                f"{where(path, lineno)}: not a benchmark result row (needs 'dataset' and a numeric 'f1')"
            )
        rows.append(rec)
    if not rows:
        raise KbioxlmError(f"{path}: no benchmark result rows")
    return rows


def _probe_lines(probe: dict[str, Any]) -> list[str]:
    rows = []
    for kind in ("term_retrieval", "sentence_retrieval"):
        part = probe.get(kind)
        if not isinstance(part, dict):
            continue
        for key, val in part.items():
            if isinstance(val, dict) and "acc1" in val and "_" in key:
                src, tgt = key.split("_", 1)
                rows.append(
                    [
                        kind.replace("_", " "),
                        f"{src}→{tgt}",
                        part.get("n"),
                        part.get("layer"),
                        val["acc1"],
                        val.get("mrr"),
                    ]
                )
    lines = ["", "## Alignment probe (`kbioxlm probe`, percent)", ""]
    return lines + table(["probe", "direction", "n", "layer", "accuracy@1", "MRR"], rows)


def _benchmark_lines(rows: list[dict[str, Any]]) -> list[str]:
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        key = (
            r.get("model", ""),
            r.get("dataset_label") or r["dataset"],
            r.get("direction", ""),
            r.get("setting", ""),
            r.get("shots") or 0,
            r.get("metric", ""),
        )
        groups.setdefault(key, []).append(float(r["f1"]))
    out = []
    for (model, ds, direction, setting, shots, metric), f1 in sorted(
        groups.items(), key=lambda kv: [str(x) for x in kv[0]]
    ):
        sd = f" ± {stdev(f1):.2f}" if len(f1) > 1 else ""
        out.append(
            [
                model,
                ds,
                direction,
                setting + (f" ({shots}-shot)" if shots else ""),
                metric,
                f"{mean(f1):.2f}{sd}",
                len(f1),
            ]
        )
    lines = ["", "## Downstream benchmark (`kbioxlm benchmark`, F1 × 100, mean ± sd over seeds)", ""]
    return lines + table(["model", "dataset", "direction", "setting", "metric", "F1", "seeds"], out)


def _model_card(
    summary: dict[str, Any],
    meta: dict[str, Any],
    settings: dict[str, Any],
    ckpt: Path,
    probe: dict[str, Any] | None = None,
    benchmark: list[dict[str, Any]] | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
) -> str:
    """The export's model card: ``ModelCardData`` metadata (languages, base licence, base model,
    datasets, ``fill-mask``) and the numbers the run measured (held-out pretraining metrics from
    eval.jsonl; probe and benchmark tables when given), so the card says what the model does."""
    files = [str(f.path) for f in parse_train_files(settings.get("train_files") or settings.get("files"))]
    steps = settings.get("global_step") or settings.get("max_steps")
    base = summary["base_model"]
    data = ModelCardData(
        language=_run_languages(files) or None,
        license=base_license(base),
        base_model=base_model or card_base_model(base),
        datasets=list(datasets) if datasets else None,
        pipeline_tag="fill-mask",
        library_name="transformers",
        tags=[*TAGS, "fill-mask"],
    )
    lines = [
        "# KBioXLM-style continued-pretraining checkpoint",
        "",
        "Exported by `kbioxlm export` (knowledge-anchored pretraining: entity, fact and passage",
        "objectives, Geng et al. 2023). Loads with `AutoModel` and `AutoModelForMaskedLM`.",
        "",
        f"- **Base model:** `{base or 'random initialisation'}`",
        f"- **Architecture:** `{summary['architecture']}`, {summary['vocab_size']} vocabulary ids",
        f"- **Training steps:** {steps if steps is not None else 'unknown'}",
    ]
    if files:
        lines.append("- **Training data:** " + ", ".join(f"`{Path(f).name}`" for f in files))
    if summary["kept_ids"] is not None:
        lines.append(
            f"- **Reduced output vocabulary during training:** {summary['kept_ids']} ids; the other rows of the"
            f" LM head come from the {summary['rows_outside_kept_from']} (not trained)."
        )
    if summary["untrimmed_from"]:
        lines.append(
            f"- **Vocabulary:** trimmed for training, restored to the full vocabulary of `{summary['untrimmed_from']}`."
        )
    weights = meta.get("loss_weights")
    if weights:
        lines.append("- **Loss weights:** " + ", ".join(f"{k}={v:g}" for k, v in weights.items()))
    log_path = find_eval_log(ckpt)
    evals = _eval_rows(log_path, steps if isinstance(steps, int) else None) if log_path else []
    if evals:
        keys = [k for k in evals[-1] if k != "step"]
        lines += [
            "",
            "## Held-out pretraining metrics (`eval.jsonl`)",
            "",
            "Accuracies (0–1) on the held-out records of each objective; `n_*` = positions scored.",
            "",
        ]
        lines += table(["step", *keys], ([r.get("step"), *(r.get(k) for k in keys)] for r in evals))
    if probe is not None:
        lines += _probe_lines(probe)
    if benchmark:
        lines += _benchmark_lines(benchmark)
    shown = {
        k: v
        for k, v in settings.items()
        if isinstance(v, (str, int, float, bool))
        and k not in ("train_files",)
        and not (isinstance(v, str) and ("/" in v or os.sep in v))
    }  # no local paths in a published card
    if shown:
        lines += ["", "## Settings", "", "| key | value |", "|---|---|"]
        lines += [f"| {k} | `{v}` |" for k, v in sorted(shown.items())]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        'fill = pipeline("fill-mask", model="THIS_FOLDER_OR_HUB_ID")',
        "```",
        "",
    ]
    return render(data, "\n".join(lines))
