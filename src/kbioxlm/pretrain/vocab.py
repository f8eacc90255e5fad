"""Which vocabulary ids the pretraining needs, and trimming a checkpoint down to them.

Two levels (docs/design.md, "Pretraining"; paper appendix A.1):

* **Reduced output vocabulary** (``vocab reduce``): count token ids over the training corpora
  and keep those seen (plus every special token). The model slices its LM-head rows to that
  set; inputs keep the full vocabulary. The paper keeps 37,030 of XLM-R's 250,002 for EN+ZH.
* **Full trim** (``vocab trim``): also cut the input embeddings and the tokenizer, so the
  embedding matrix, its gradient and its optimizer state shrink (the big memory win at
  250k × 768). Trimming a SentencePiece-Unigram tokenizer is only safe if every piece that the
  full tokenizer could choose for the covered text is kept. So the trim keeps the *character
  closure*: every piece written only in characters of a covered set (the characters of the kept
  pieces, plus Latin-1 and CJK by default), in the original order with the original scores, and
  the lowest-scoring piece (Unigram's ``<unk>`` penalty is the minimum score − 10). Unigram picks
  the best-scoring segmentation of each word; for a word written in covered characters, every
  candidate piece is kept with its score, so the segmentation is the same.
  The same argument is spelled out for ``multilingual-e5-small-zhen`` in ../shared/models.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import KbioxlmError
from ..hub import check_model_name, load_error
from ..io import atomic_write, check_output_dir, iter_jsonl, make_temp_dir, read_text, replace_dir, write_marker
from ..progress import progress as progress_bar

log = logging.getLogger(__name__)

DEFAULT_TEXT_FIELDS: tuple[str, ...] = ("text", "text_a", "text_b")
"""Text-bearing fields of the corpus records: Document/Entity/Fact ``text``; Passage ``text_a``/``text_b``."""

KEPT_FORMAT = "kbioxlm-kept-ids"
SPIECE_SPACE = "\u2581"

# Character ranges always covered by a trim (on top of the characters of the kept pieces), so that
# any English or Chinese text, not only the counted corpus, tokenizes exactly as before.
CHARSETS: dict[str, tuple[tuple[int, int], ...]] = {
    "latin1": ((0x0000, 0x00FF),),
    "cjk": (
        (0x3000, 0x303F),  # CJK symbols and punctuation
        (0x3400, 0x4DBF),  # extension A
        (0x4E00, 0x9FFF),  # unified ideographs
        (0xF900, 0xFAFF),  # compatibility ideographs
        (0xFE10, 0xFE1F),  # vertical forms
        (0xFE30, 0xFE6F),  # compatibility + small forms
        (0xFF00, 0xFFEF),  # half/full-width forms
    ),
    "greek": ((0x0370, 0x03FF),),  # α, β, κ, ω … are everyday letters in biomedical text
    "symbols": (
        (0x2000, 0x209F),  # general punctuation, super/subscripts
        (0x20A0, 0x20CF),  # currency
        (0x2100, 0x22FF),  # letterlike, number forms, arrows, math operators
        (0x2460, 0x26FF),  # enclosed alphanumerics, box drawing, shapes, misc symbols
    ),
}
DEFAULT_CHARSETS: tuple[str, ...] = ("latin1", "greek", "cjk", "symbols")


# ------------------------------------------------------------------ counting


def iter_texts(
    files: Iterable[str | os.PathLike[str]], text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS
) -> Iterator[str]:
    """Every non-empty text field of every JSONL record, file by file (file:line errors)."""
    for path in files:
        for lineno, rec in iter_jsonl(path):
            found = False
            for field in text_fields:
                value = rec.get(field)
                if value is None:
                    continue
                if not isinstance(value, str):
                    raise KbioxlmError(f"{path}:{lineno}: field {field!r} must be a string")
                found = True
                if value:
                    yield value
            if not found:
                raise KbioxlmError(f"{path}:{lineno}: no text field ({', '.join(text_fields)})")


def count_token_frequencies(
    tokenizer: Any,
    files: Iterable[str | os.PathLike[str]],
    text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
    batch_size: int = 1000,
    progress: bool = True,
) -> Counter[int]:
    """Token-id frequencies over JSONL corpora, tokenized in batches by the fast (Rust) tokenizer.

    Special tokens are not added (they are always kept anyway); literal ``</s>`` in fact records
    is counted as the special id it tokenizes to.
    """
    size = len(tokenizer)
    totals = np.zeros(size, dtype=np.int64)
    batch: list[str] = []

    def flush() -> None:
        enc = tokenizer(batch, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
        flat = np.fromiter((i for seq in enc for i in seq), dtype=np.int64)
        if flat.size:
            totals[:] += np.bincount(flat, minlength=size)[:size]
        batch.clear()

    with progress_bar(desc="counting tokens", unit="texts", enabled=progress) as bar:
        for text in iter_texts(files, text_fields):
            batch.append(text)
            if len(batch) >= batch_size:
                bar.update(len(batch))
                flush()
        if batch:
            bar.update(len(batch))
            flush()
    nz = np.nonzero(totals)[0]
    return Counter({int(i): int(totals[i]) for i in nz})


def _pieces_and_scores(tokenizer: Any) -> list[tuple[str, float]] | None:
    """The Unigram (piece, score) list of a fast tokenizer, or None for other models."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is None:
        return None
    model = json.loads(backend.to_str()).get("model", {})
    if model.get("type") != "Unigram":
        return None
    return [(p, float(s)) for p, s in model["vocab"]]


def select_kept_ids(
    counts: Counter[int] | dict[int, int],
    tokenizer: Any,
    min_count: int = 1,
    max_size: int | None = None,
    min_size: int | None = None,
) -> list[int]:
    """Sorted ids to keep in the output vocabulary: all special ids + ids seen ``min_count`` times.

    ``max_size`` keeps the most frequent (ties by id, so the result is deterministic).
    ``min_size`` pads with unseen pieces in the tokenizer's own frequency order (the Unigram
    score is a log-probability), preferring pieces written in characters already seen, so a small
    corpus still gets a head the size the paper used (37,030).
    """
    specials = sorted({int(i) for i in tokenizer.all_special_ids})
    seen = sorted((i for i, c in counts.items() if c >= min_count and i not in specials), key=lambda i: (-counts[i], i))
    if max_size is not None:
        if max_size < len(specials):
            raise KbioxlmError(f"max_size {max_size} is smaller than the {len(specials)} special tokens")
        seen = seen[: max_size - len(specials)]
    kept = set(specials) | set(seen)
    if min_size is not None and len(kept) < min_size:
        pieces = _pieces_and_scores(tokenizer)
        if pieces is None:
            raise KbioxlmError("min_size needs a Unigram (SentencePiece) tokenizer to rank unseen pieces")
        chars = {ch for i in seen if i < len(pieces) for ch in pieces[i][0].replace(SPIECE_SPACE, "")}
        candidates = [i for i in range(len(pieces)) if i not in kept and i not in tokenizer.all_special_ids]
        # in-script pieces first, then by score (higher = more frequent), then id
        candidates.sort(key=lambda i: (not set(pieces[i][0].replace(SPIECE_SPACE, "")) <= chars, -pieces[i][1], i))
        kept.update(candidates[: min_size - len(kept)])
    return sorted(kept)


def write_kept_ids(
    path: str | os.PathLike[str],
    tokenizer_name: str,
    kept_ids: Sequence[int],
    counts: Counter[int] | dict[int, int],
    vocab_size: int,
    files: Sequence[str] = (),
    min_count: int = 1,
) -> None:
    """Atomically write the ``vocab reduce`` JSON: tokenizer, sorted kept ids, counts of seen ids."""
    doc = {
        "format": KEPT_FORMAT,
        "tokenizer": tokenizer_name,
        "vocab_size": vocab_size,
        "num_kept": len(kept_ids),
        "min_count": min_count,
        "files": list(files),
        "kept_ids": sorted(int(i) for i in kept_ids),
        "counts": {str(i): int(c) for i, c in sorted(counts.items())},
    }
    with atomic_write(path) as fh:
        json.dump(doc, fh, ensure_ascii=False, separators=(",", ":"))
        fh.write("\n")


def load_kept_ids(path: str | os.PathLike[str], vocab_size: int | None = None) -> list[int]:
    """Read ``kept_ids`` from a ``vocab reduce`` JSON (or a plain JSON list of ids)."""
    try:
        data = json.loads(read_text(path))  # unreadable or non-UTF-8: a one-line error with the line
    except ValueError as exc:
        raise KbioxlmError(f"{path}: malformed JSON ({exc})") from exc
    ids = data.get("kept_ids") if isinstance(data, dict) else data
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise KbioxlmError(f"{path}: expected a non-empty list of integer ids under 'kept_ids'")
    if isinstance(data, dict) and vocab_size is not None and data.get("vocab_size") not in (None, vocab_size):
        raise KbioxlmError(f"{path}: counted with a {data['vocab_size']}-id tokenizer, the model has {vocab_size} ids")
    bad = [i for i in ids if i < 0 or (vocab_size is not None and i >= vocab_size)]
    if bad:
        raise KbioxlmError(f"{path}: id {bad[0]} is outside the vocabulary")
    return sorted(set(ids))


# ------------------------------------------------------------------ trimming


def _in_charsets(ch: str, charsets: Sequence[str]) -> bool:
    o = ord(ch)
    return any(lo <= o <= hi for name in charsets for lo, hi in CHARSETS[name])


def plan_trim(
    tokenizer_json: dict[str, Any], kept_ids: Iterable[int], charsets: Sequence[str] = DEFAULT_CHARSETS
) -> list[int]:
    """Original ids a trimmed vocabulary keeps (sorted): kept ids, specials, the character
    closure over the kept pieces' characters + ``charsets``, and the lowest-scoring piece."""
    model = tokenizer_json.get("model", {})
    if model.get("type") != "Unigram":
        raise KbioxlmError(f"vocab trim supports SentencePiece-Unigram tokenizers, not {model.get('type')}")
    for name in charsets:
        if name not in CHARSETS:
            raise KbioxlmError(f"unknown charset {name!r}; choose from {', '.join(CHARSETS)}")
    pieces = model["vocab"]
    n = len(pieces)
    keep = {int(i) for i in kept_ids}
    if any(i < 0 or i >= n for i in keep):
        raise KbioxlmError(f"kept ids fall outside the tokenizer's {n} pieces")
    added = {int(t["id"]) for t in tokenizer_json.get("added_tokens", [])}
    if model.get("unk_id") is not None:
        added.add(int(model["unk_id"]))
    # added/special tokens are matched as whole strings before normalisation: their characters
    # say nothing about the text, so they do not widen the closure
    chars = {ch for i in keep - added for ch in pieces[i][0].replace(SPIECE_SPACE, "")}
    keep |= added
    for i, (piece, _score) in enumerate(pieces):
        body = piece.replace(SPIECE_SPACE, "")
        if not body or all(ch in chars or _in_charsets(ch, charsets) for ch in body):
            keep.add(i)
    lowest = min(range(n), key=lambda i: (pieces[i][1], i))
    keep.add(lowest)
    return sorted(keep)


def trim_tokenizer_json(tokenizer_json: dict[str, Any], keep: Sequence[int]) -> dict[str, Any]:
    """A tokenizer.json with only the pieces ``keep`` (sorted original ids), renumbered 0..n-1,
    scores preserved; added tokens, unk id and post-processor ids remapped."""
    remap = {old: new for new, old in enumerate(keep)}
    out = copy.deepcopy(tokenizer_json)
    model = out["model"]
    model["vocab"] = [tokenizer_json["model"]["vocab"][i] for i in keep]
    if model.get("unk_id") is not None:
        model["unk_id"] = remap[int(model["unk_id"])]
    for tok in out.get("added_tokens", []):
        tok["id"] = remap[int(tok["id"])]
    _remap_post_processor(out.get("post_processor"), remap)
    return out


SPECIAL_TOKEN_ID_ATTRS = (
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "sep_token_id",
    "cls_token_id",
    "mask_token_id",
    "unk_token_id",
)


def remap_special_token_ids(config: Any, new_id: dict[int, int]) -> None:
    """Renumber the special-token ids a model config holds after its vocabulary changed (trimmed
    here, restored by :mod:`kbioxlm.pretrain.export`); an id ``new_id`` lacks stays as it was."""
    for attr in SPECIAL_TOKEN_ID_ATTRS:
        value = getattr(config, attr, None)
        if isinstance(value, int) and value in new_id:
            setattr(config, attr, new_id[value])


def _remap_post_processor(pp: Any, remap: dict[int, int]) -> None:
    if not isinstance(pp, dict):
        return
    if pp.get("type") == "Sequence":
        for sub in pp.get("processors", []):
            _remap_post_processor(sub, remap)
        return
    for key in ("sep", "cls"):  # RobertaProcessing / BertProcessing: [token, id]
        if isinstance(pp.get(key), list) and len(pp[key]) == 2:
            pp[key][1] = remap[int(pp[key][1])]
    for spec in (pp.get("special_tokens") or {}).values():  # TemplateProcessing
        spec["ids"] = [remap[int(i)] for i in spec.get("ids", [])]


def _trim_tokenizer_config(cfg: dict[str, Any], remap: dict[int, int]) -> dict[str, Any]:
    out = dict(cfg)
    decoder = cfg.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        out["added_tokens_decoder"] = {str(remap[int(k)]): v for k, v in decoder.items() if int(k) in remap}
    return out


def trim_embedding_model(model: Any, keep: Sequence[int]) -> None:
    """Cut a Hugging Face model's input embeddings (and LM head if any) to rows ``keep``, in place."""
    # lazy: torch, only for trimming (`vocab reduce` and the trainer use this module without it)
    import torch

    from .model import lm_head_parts

    index = torch.tensor(list(keep), dtype=torch.long)
    remap = {old: new for new, old in enumerate(keep)}
    emb = model.get_input_embeddings()
    parts = lm_head_parts(model) if hasattr(model, "base_model_prefix") else None
    tied = parts is not None and parts.decoder.weight is emb.weight
    config = model.config
    pad = getattr(config, "pad_token_id", None)
    new_emb = torch.nn.Embedding(
        len(keep), emb.weight.shape[1], padding_idx=remap.get(pad) if pad is not None else None
    )
    with torch.no_grad():
        new_emb.weight.copy_(emb.weight[index])
    new_emb.to(emb.weight.dtype)
    model.set_input_embeddings(new_emb)
    if parts is not None:
        dec = parts.decoder
        new_dec = torch.nn.Linear(dec.in_features, len(keep), bias=dec.bias is not None)
        with torch.no_grad():
            new_dec.weight.copy_(emb.weight[index] if tied else dec.weight[index])
            bias = parts.bias[index].clone()
            if new_dec.bias is not None:
                new_dec.bias.copy_(bias)
        new_dec.to(dec.weight.dtype)
        model.set_output_embeddings(new_dec)
        owner = model.lm_head if parts.prefix == "lm_head." else model.cls.predictions
        owner.bias = torch.nn.Parameter(bias)
        if tied:
            new_dec.weight = new_emb.weight
        if new_dec.bias is not None and getattr(config, "tie_word_embeddings", False):
            new_dec.bias = owner.bias
    config.vocab_size = len(keep)
    remap_special_token_ids(config, remap)


TRIM_MARKER = "kbioxlm_trim.json"
TRIM_WHAT = "kbioxlm vocab trim output"


def trim_checkpoint(
    model_path: str | os.PathLike[str],
    tokenizer_path: str | os.PathLike[str],
    kept_ids: Iterable[int],
    out_dir: str | os.PathLike[str],
    charsets: Sequence[str] = DEFAULT_CHARSETS,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write a self-consistent trimmed checkpoint: model, tokenizer and ``vocab_map.json``.

    The output is assembled in a temporary folder beside ``out_dir`` and renamed into place, so
    an interrupted trim leaves nothing under the final name. ``out_dir`` may be absent or empty;
    a previous trim there is replaced only with ``overwrite``; any other content is refused.
    Returns a summary.
    """
    # lazy: torch and transformers, only for trimming (as in trim_embedding_model)
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

    from .model import VOCAB_MAP_FILE, _supports_masked_lm

    check_output_dir(out_dir, TRIM_MARKER, overwrite, TRIM_WHAT)
    tok_dir = Path(tokenizer_path)
    tok_file = tok_dir / "tokenizer.json" if tok_dir.is_dir() else tok_dir
    if not tok_file.is_file():
        raise KbioxlmError(f"{tokenizer_path}: no tokenizer.json (vocab trim needs a fast tokenizer file)")
    try:
        tok_json = json.loads(read_text(tok_file))
    except ValueError as exc:
        raise KbioxlmError(f"{tok_file}: malformed JSON ({exc})") from exc
    keep = plan_trim(tok_json, kept_ids, charsets)
    n_full = len(tok_json["model"]["vocab"])
    check_model_name(str(model_path), "model")
    try:
        config = AutoConfig.from_pretrained(str(model_path))
    except (OSError, ValueError) as exc:
        raise load_error(str(model_path), exc, "model config") from exc
    if config.vocab_size != n_full:
        raise KbioxlmError(f"{model_path}: model has {config.vocab_size} ids but {tok_file} has {n_full} pieces")
    loader = AutoModelForMaskedLM if _supports_masked_lm(config) else AutoModel
    model = loader.from_pretrained(str(model_path))
    trim_embedding_model(model, keep)

    out = Path(out_dir)
    tmp = make_temp_dir(out)  # 0777 less the umask: the result is an ordinary folder
    try:
        model.save_pretrained(tmp)
        remap = {old: new for new, old in enumerate(keep)}
        (tmp / "tokenizer.json").write_text(
            json.dumps(trim_tokenizer_json(tok_json, keep), ensure_ascii=False), encoding="utf-8"
        )
        src_dir = tok_file.parent
        cfg_file = src_dir / "tokenizer_config.json"
        if cfg_file.is_file():
            cfg = _trim_tokenizer_config(json.loads(cfg_file.read_text(encoding="utf-8")), remap)
            (tmp / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")
        if (src_dir / "special_tokens_map.json").is_file():
            shutil.copyfile(src_dir / "special_tokens_map.json", tmp / "special_tokens_map.json")
        (tmp / VOCAB_MAP_FILE).write_text(json.dumps(keep, separators=(",", ":")), encoding="utf-8")
        summary = {
            "source_model": str(model_path),
            "source_tokenizer": str(tokenizer_path),
            "original_vocab_size": n_full,
            "trimmed_vocab_size": len(keep),
            "charsets": list(charsets),
        }
        write_marker(tmp, TRIM_MARKER, summary)  # last: lists the files this trim wrote
        replace_dir(tmp, out, TRIM_MARKER, overwrite, TRIM_WHAT)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
