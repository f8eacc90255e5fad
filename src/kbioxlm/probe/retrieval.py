"""Cross-lingual alignment probes: how close an encoder puts a text and its translation.

Two probes, both answered by nearest-neighbour retrieval across languages:

* **term retrieval**: concepts of a knowledge base with a (preferred) name in both languages; each
  name is embedded alone, and each source-language name must find its own concept's target-language
  name among all probed target names (and the reverse direction);
* **sentence retrieval**: parallel sentences, line ``i`` of one side the translation of line ``i``
  of the other.

A text's vector is the mean of its sub-word pieces' hidden vectors (special tokens excluded), taken
for **every** layer (0 = embedding output) from one forward pass, so one run shows where in the
network the two languages meet. Similarity is cosine; scores are accuracy@1 and mean reciprocal
rank, in percent. The top-level numbers of each section are those of the last layer.

torch, numpy and transformers (and :mod:`kbioxlm.pretrain.model`) are imported inside the functions
that use them (marked ``# lazy``): :mod:`kbioxlm.probe` re-exports this module, and ``kbioxlm --help``
imports that package.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import KbioxlmError, where
from ..hub import check_model_name, load_error, load_tokenizer
from ..io import iter_lines, write_json
from ..kb.split import concept_list_lines
from ..kb.store import KnowledgeBase
from ..progress import quiet_transformers

log = logging.getLogger(__name__)

PROBE_FILE = "probe.json"
CHECKPOINT_META = "kbioxlm_model.json"  # marks a kbioxlm training checkpoint (pretrain.model.META_FILE)

PathLike = str | os.PathLike[str]


# ---- retrieval core ------------------------------------------------------------------------------
def retrieval_scores(src_vecs: Any, tgt_vecs: Any, chunk: int = 2048) -> dict[str, float]:
    """Accuracy@1 and MRR (percent) of retrieving row ``i`` of ``tgt_vecs`` for row ``i`` of ``src_vecs``.

    Both are ``(n, dim)`` matrices (numpy or torch) whose row ``i`` are translations of each other;
    every row of ``tgt_vecs`` is a candidate, ranked by cosine similarity. Exact ties (e.g. two
    concepts with the same name) are broken at random in expectation: a correct candidate tied
    with ``t`` others counts ``1/(t+1)`` towards accuracy@1 and the mean of ``1/r`` over the tied
    ranks towards MRR, so a degenerate encoder (all vectors equal) scores chance, not 100.
    """
    import torch  # lazy: torch (see the module docstring)

    src = torch.as_tensor(src_vecs).to(torch.float32)
    tgt = torch.as_tensor(tgt_vecs).to(torch.float32)
    if src.ndim != 2 or src.shape != tgt.shape:
        raise ValueError(
            f"expected two (n, dim) matrices of the same shape, got {tuple(src.shape)} and {tuple(tgt.shape)}"
        )
    n = src.shape[0]
    if n == 0:
        raise ValueError("no rows to retrieve")
    if not (torch.isfinite(src).all() and torch.isfinite(tgt).all()):
        raise ValueError("vectors contain NaN or infinity")
    src = torch.nn.functional.normalize(src, dim=1)
    tgt = torch.nn.functional.normalize(tgt, dim=1)
    hits = 0.0
    rr = 0.0
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        sim = src[a:b] @ tgt.T  # (c, n)
        rows = torch.arange(b - a)
        correct = sim[rows, rows + a].unsqueeze(1)
        greater = (sim > correct).sum(1).to(torch.float64)
        ties = ((sim == correct).sum(1) - 1).to(torch.float64)
        first = greater + 1.0
        # expected 1/rank over ranks first..first+ties = (H(first+ties) - H(first-1)) / (ties+1)
        harmonic = (torch.special.digamma(first + ties + 1.0) - torch.special.digamma(first)) / (ties + 1.0)
        recip = torch.where(ties == 0, 1.0 / first, harmonic)
        top1 = torch.where(greater == 0, 1.0 / (ties + 1.0), torch.zeros_like(first))
        hits += float(top1.sum())
        rr += float(recip.sum())
    return {"acc1": 100.0 * hits / n, "mrr": 100.0 * rr / n}


def layer_section(src_layers: Any, tgt_layers: Any, source_lang: str, target_lang: str) -> dict[str, Any]:
    """Per-layer scores in both directions for ``(layers, n, dim)`` stacks; the section of probe.json
    without its counts. Top-level numbers are the last layer's; ``best_layer`` maximises acc@1
    (ties: higher MRR, then the lower layer)."""
    fwd, bwd = f"{source_lang}_{target_lang}", f"{target_lang}_{source_lang}"
    per_layer: list[dict[str, Any]] = []
    for layer in range(len(src_layers)):
        per_layer.append({
            "layer": layer,
            fwd: _rounded(retrieval_scores(src_layers[layer], tgt_layers[layer])),
            bwd: _rounded(retrieval_scores(tgt_layers[layer], src_layers[layer])),
        })  # fmt: skip
    last = per_layer[-1]
    best = {}
    for d in (fwd, bwd):
        row = max(per_layer, key=lambda r: (r[d]["acc1"], r[d]["mrr"], -r["layer"]))
        best[d] = {"layer": row["layer"], "acc1": row[d]["acc1"]}
    return {fwd: last[fwd], bwd: last[bwd], "layer": last["layer"], "best_layer": best, "per_layer": per_layer}


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in scores.items()}


# ---- inputs --------------------------------------------------------------------------------------
def permuted_sample(n: int, k: int, seed: int) -> list[int]:
    """``k`` of ``range(n)`` (all when ``n <= k``), drawn by a numpy PCG64(seed) permutation; sorted."""
    if n <= k:
        return list(range(n))
    import numpy as np  # lazy: numpy (see the module docstring)

    perm = np.random.Generator(np.random.PCG64(seed)).permutation(n)[:k]
    return sorted(int(i) for i in perm)


def term_pairs(
    kb_path: PathLike, source_lang: str, target_lang: str, concepts: PathLike | Iterable[str] | None = None
) -> tuple[list[str], list[str], list[str], int]:
    """``(ids, source names, target names, n_skipped)`` of the concepts to probe, sorted by id.

    Without ``concepts``: every concept with a name in both languages. With a file (or a list) of
    ids: those ids; an id unknown to the KB is an error (``file:line``), a known one lacking a name in
    either language is skipped and counted.
    """
    with KnowledgeBase(kb_path) as kb:
        kb.require_language(source_lang)
        kb.require_language(target_lang)
        src_names = kb.preferred_names(source_lang)
        tgt_names = kb.preferred_names(target_lang)
        if concepts is None:
            ids = sorted(set(src_names) & set(tgt_names))
            skipped = 0
        else:
            known = kb.concept_ids()
            if isinstance(concepts, (str, os.PathLike)):
                listed = [(where(concepts, lineno), cid) for lineno, cid in concept_list_lines(concepts)]
            else:
                listed = [(f"concept list item {i + 1}", str(cid)) for i, cid in enumerate(concepts)]
            chosen: set[str] = set()
            skipped = 0
            for loc, cid in listed:
                if cid not in known:
                    raise KbioxlmError(f"{loc}: unknown concept id {cid!r} (not in {kb_path})")
                if cid in chosen:
                    continue
                if cid in src_names and cid in tgt_names:
                    chosen.add(cid)
                else:
                    skipped += 1
            if not listed:
                label = concepts if isinstance(concepts, (str, os.PathLike)) else "the concept list"
                raise KbioxlmError(f"{label}: no concept ids listed")
            ids = sorted(chosen)
    return ids, [src_names[c] for c in ids], [tgt_names[c] for c in ids], skipped


def read_parallel(src_file: PathLike, tgt_file: PathLike) -> tuple[list[tuple[str, str]], int]:
    """``(pairs, n_blank)`` of two line-aligned UTF-8 files; pairs with a blank side are left out."""
    src = [line for _, line in iter_lines(src_file, strip=True)]
    tgt = [line for _, line in iter_lines(tgt_file, strip=True)]
    if len(src) != len(tgt):
        raise KbioxlmError(
            f"{src_file} ({len(src)} lines) and {tgt_file} ({len(tgt)} lines): parallel files must have the same number of lines"
        )
    return _keep_nonblank(zip(src, tgt))


def read_parallel_jsonl(path: PathLike, source_lang: str, target_lang: str) -> tuple[list[tuple[str, str]], int]:
    """``(pairs, n_blank)`` from JSON lines ``{"<source_lang>": text, "<target_lang>": text}``."""

    pairs: list[tuple[str, str]] = []
    for lineno, line in iter_lines(path, strip=True):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KbioxlmError(f"{where(path, lineno)}: malformed JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(rec, dict):
            raise KbioxlmError(f"{where(path, lineno)}: expected a JSON object, got {type(rec).__name__}")
        for lang in (source_lang, target_lang):
            if lang not in rec:
                raise KbioxlmError(f"{where(path, lineno)}: missing key {lang!r}")
            if not isinstance(rec[lang], str):
                raise KbioxlmError(f"{where(path, lineno)}: {lang!r} must be a string, got {type(rec[lang]).__name__}")
        pairs.append((rec[source_lang], rec[target_lang]))
    return _keep_nonblank(pairs)


def _keep_nonblank(pairs: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], int]:
    kept: list[tuple[str, str]] = []
    blank = 0
    for s, t in pairs:
        s, t = s.strip(), t.strip()
        if s and t:
            kept.append((s, t))
        else:
            blank += 1
    return kept, blank


def _parallel_pairs(parallel: Any, source_lang: str, target_lang: str) -> tuple[list[tuple[str, str]], str]:
    """Normalise the ``parallel`` argument of :func:`run_probe`: a JSONL path, a ``(src_file,
    tgt_file)`` pair of paths, or a list of ``(source text, target text)`` pairs."""
    if isinstance(parallel, (str, os.PathLike)):
        pairs, blank = read_parallel_jsonl(parallel, source_lang, target_lang)
        label = str(parallel)
    elif (isinstance(parallel, Sequence) and len(parallel) == 2
          and all(isinstance(p, (str, os.PathLike)) for p in parallel)):  # fmt: skip
        pairs, blank = read_parallel(parallel[0], parallel[1])
        label = f"{parallel[0]} / {parallel[1]}"
    else:
        pairs, blank = _keep_nonblank((str(s), str(t)) for s, t in parallel)
        label = "the given sentence pairs"
    if blank:
        log.info("%s: skipped %d pair(s) with a blank side", label, blank)
    if not pairs:
        raise KbioxlmError(f"{label}: no sentence pairs with text on both sides")
    return pairs, label


# ---- model and embeddings ------------------------------------------------------------------------
def load_encoder(model: PathLike, tokenizer: PathLike | None = None) -> tuple[Any, Any]:
    """``(encoder in eval mode, fast tokenizer)`` for a Hugging Face encoder (folder or hub name) or a
    kbioxlm training checkpoint folder (``kbioxlm_model.json``; its ``.encoder`` is used)."""
    # lazy: torch and transformers (see the module docstring)
    from transformers import AutoModel

    from ..pretrain.model import KnowledgeAnchoredModel, input_embedding_weight

    path = Path(model)
    if (path / CHECKPOINT_META).is_file():
        encoder = KnowledgeAnchoredModel.load(path).encoder
    else:
        check_model_name(str(model), "model")
        # e.g. "pooler.* newly initialized": the probe never uses the pooler
        with quiet_transformers():
            try:
                encoder = AutoModel.from_pretrained(str(model))
            except (OSError, ValueError, KeyError) as exc:
                raise load_error(str(model), exc, "model") from exc
    encoder.eval()
    try:
        tok = load_tokenizer(str(tokenizer or model))
    except KbioxlmError as exc:
        if tokenizer is None:
            raise KbioxlmError(f"{exc}; pass --tokenizer") from exc
        raise
    rows = input_embedding_weight(encoder).shape[0]
    if len(tok) > rows:
        raise KbioxlmError(
            f"{tokenizer or model}: tokenizer has {len(tok)} ids but {model} has only {rows} embeddings (wrong --tokenizer?)"
        )
    return encoder, tok


def _position_limit(config: Any) -> int | None:
    limit = getattr(config, "max_position_embeddings", None)
    if not limit:
        return None
    if getattr(config, "model_type", "") in ("xlm-roberta", "roberta", "camembert", "xlm-roberta-xl"):
        limit -= int(getattr(config, "pad_token_id", 1) or 1) + 1  # positions start after the padding index
    return int(limit)


def embed_layers(
    encoder: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 64, max_length: int = 128
) -> Any:
    """``(layers, n, hidden)`` float32 tensor: for each text and each layer's hidden states (0 = the
    embedding output), the mean over the text's non-special, non-padding pieces.

    Texts are sorted by length (longest first) so batches carry little padding; all layers come from
    one forward pass under ``torch.inference_mode()``.
    """
    import torch  # lazy: torch (see the module docstring)

    if not texts:
        raise ValueError("no texts to embed")
    limit = _position_limit(encoder.config)
    if limit is not None and max_length > limit:
        log.info("max_length %d exceeds the model's %d positions; using %d", max_length, limit, limit)
        max_length = limit
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, return_special_tokens_mask=True,
                    return_attention_mask=False, return_token_type_ids=False)  # fmt: skip
    ids: list[list[int]] = enc["input_ids"]
    special: list[list[int]] = enc["special_tokens_mask"]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: torch.Tensor | None = None
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = len(ids[idx[0]])
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            attention = torch.zeros((len(idx), width), dtype=torch.long)
            keep = torch.zeros((len(idx), width), dtype=torch.float32)
            for row, i in enumerate(idx):
                m = len(ids[i])
                input_ids[row, :m] = torch.tensor(ids[i], dtype=torch.long)
                attention[row, :m] = 1
                keep[row, :m] = 1.0 - torch.tensor(special[i], dtype=torch.float32)
            empty = keep.sum(1) == 0  # a text of only special pieces: fall back to all its pieces
            if empty.any():
                keep[empty] = attention[empty].to(torch.float32)
            weights = (keep / keep.sum(1, keepdim=True)).unsqueeze(1)  # (B, 1, T)
            hidden = encoder(input_ids=input_ids, attention_mask=attention, output_hidden_states=True,
                             return_dict=True).hidden_states  # fmt: skip
            if out is None:
                out = torch.empty((len(hidden), len(ids), hidden[0].shape[-1]), dtype=torch.float32)
            where_ = torch.tensor(idx, dtype=torch.long)
            for layer, h in enumerate(hidden):
                out[layer, where_] = torch.bmm(weights, h.to(torch.float32)).squeeze(1)
    assert out is not None
    return out


def _embed_both(encoder: Any, tok: Any, src: list[str], tgt: list[str], what: str, batch_size: int,
                max_length: int) -> tuple[Any, Any]:  # fmt: skip
    import torch  # lazy: torch (see the module docstring)

    t0 = time.monotonic()
    a = embed_layers(encoder, tok, src, batch_size=batch_size, max_length=max_length)
    b = embed_layers(encoder, tok, tgt, batch_size=batch_size, max_length=max_length)
    for stack in (a, b):
        bad = [i for i in range(stack.shape[0]) if not torch.isfinite(stack[i]).all()]
        if bad:
            raise KbioxlmError(f"the model produced NaN/infinite hidden states (layer {bad[0]}) on the {what}")
    log.info("embedded %d %s pairs at %d layers in %.1f s", len(src), what, a.shape[0], time.monotonic() - t0)
    return a, b


# ---- the probe -----------------------------------------------------------------------------------
def run_probe(
    model: PathLike,
    kb: PathLike | None,
    source_lang: str,
    target_lang: str,
    out_dir: PathLike | None = None,
    concepts: PathLike | Iterable[str] | None = None,
    parallel: Any = None,
    max_terms: int = 2000,
    max_sentences: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    max_length: int = 128,
    tokenizer: PathLike | None = None,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Run the term (``kb``) and sentence (``parallel``) probes; returns the probe.json document and
    writes it to ``out_dir/probe.json`` when ``out_dir`` is given.

    ``parallel``: a JSONL path (``{"<source_lang>": ..., "<target_lang>": ...}`` per line), a
    ``(source file, target file)`` pair of line-aligned text files, a list of ``(source, target)``
    text pairs, or None. ``concepts``: a one-id-per-line file or a list of ids (None: all bilingual
    concepts). More items than ``max_terms`` / ``max_sentences`` are sampled by ``seed``.
    """
    t0 = time.monotonic()
    if source_lang == target_lang:
        raise KbioxlmError(f"source and target language are both {source_lang!r}")
    for name, value in (("max_terms", max_terms), ("max_sentences", max_sentences), ("batch_size", batch_size),
                        ("max_length", max_length)):  # fmt: skip
        if value < 1:
            raise KbioxlmError(f"{name} must be >= 1, got {value}")
    if kb is None and parallel is None:
        raise KbioxlmError("nothing to probe: give a knowledge base and/or parallel sentences")

    # Read and check every input before the (slow) model load.
    terms = None
    if kb is not None:
        ids, src_names, tgt_names, skipped = term_pairs(kb, source_lang, target_lang, concepts)
        if len(ids) < 2:
            raise KbioxlmError(f"{kb}: {len(ids)} concept(s) with names in both {source_lang} and {target_lang}; "
                               "term retrieval needs at least 2")  # fmt: skip
        keep = permuted_sample(len(ids), max_terms, seed)
        terms = (
            [src_names[i] for i in keep],
            [tgt_names[i] for i in keep],
            len(ids),
            skipped,
            items_digest((ids[i], src_names[i], tgt_names[i]) for i in keep),
        )
        log.info("term probe: %d of %d bilingual concepts%s", len(keep), len(ids),
                 f" ({skipped} listed without both names skipped)" if skipped else "")  # fmt: skip
    sents = None
    if parallel is not None:
        pairs, _ = _parallel_pairs(parallel, source_lang, target_lang)
        if len(pairs) < 2:
            raise KbioxlmError("sentence retrieval needs at least 2 sentence pairs")
        keep = permuted_sample(len(pairs), max_sentences, seed)
        sents = (
            [pairs[i][0] for i in keep],
            [pairs[i][1] for i in keep],
            len(pairs),
            items_digest(pairs[i] for i in keep),
        )
        log.info("sentence probe: %d of %d sentence pairs", len(keep), len(pairs))

    import torch  # lazy: torch (see the module docstring)

    threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        t_load = time.monotonic()
        encoder, tok = load_encoder(model, tokenizer)
        log.info("loaded %s in %.1f s", model, time.monotonic() - t_load)
        result: dict[str, Any] = {"term_retrieval": None, "sentence_retrieval": None}
        if terms is not None:
            a, b = _embed_both(encoder, tok, terms[0], terms[1], "term", batch_size, max_length)
            result["term_retrieval"] = {"n": len(terms[0]), "n_available": terms[2], "n_skipped": terms[3],
                                        "items_sha256": terms[4], **layer_section(a, b, source_lang, target_lang)}  # fmt: skip
        if sents is not None:
            a, b = _embed_both(encoder, tok, sents[0], sents[1], "sentence", batch_size, max_length)
            result["sentence_retrieval"] = {"n": len(sents[0]), "n_available": sents[2],
                                            "items_sha256": sents[3], **layer_section(a, b, source_lang, target_lang)}  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    result.update({"model": str(model), "source_lang": source_lang, "target_lang": target_lang,
                   "seconds": round(time.monotonic() - t0, 1)})  # fmt: skip
    if out_dir is not None:
        write_json(Path(out_dir) / PROBE_FILE, result)
    return result


def items_digest(items: Iterable[Sequence[str]]) -> str:
    """SHA-256 of the probed items (tab-joined fields, one item per line, in probe order).

    Why: two runs' scores are comparable only when they asked the same questions; a report that puts
    another run's ``probe.json`` beside this run's checks this digest instead of trusting file names."""
    h = hashlib.sha256()
    for item in items:
        h.update("\t".join(item).encode("utf-8") + b"\n")
    return h.hexdigest()


def format_summary(result: dict[str, Any]) -> str:
    """The one stdout line of ``kbioxlm probe``."""
    s, t = result["source_lang"], result["target_lang"]
    fwd, bwd = f"{s}_{t}", f"{t}_{s}"
    arrow_f, arrow_b = f"{s}→{t}", f"{t}→{s}"
    parts = []
    terms = result.get("term_retrieval")
    if terms:
        best = terms["best_layer"]
        parts.append(
            f"terms n={terms['n']} {arrow_f} acc1={terms[fwd]['acc1']:.1f} mrr={terms[fwd]['mrr']:.1f} "
            f"{arrow_b} acc1={terms[bwd]['acc1']:.1f} mrr={terms[bwd]['mrr']:.1f} (last layer {terms['layer']}; "
            f"best {arrow_f} {best[fwd]['acc1']:.1f} @ layer {best[fwd]['layer']}, "
            f"{arrow_b} {best[bwd]['acc1']:.1f} @ layer {best[bwd]['layer']})"
        )
    sents = result.get("sentence_retrieval")
    if sents:
        parts.append(
            f"sentences n={sents['n']} {arrow_f} acc1={sents[fwd]['acc1']:.1f} {arrow_b} acc1={sents[bwd]['acc1']:.1f}"
        )
    parts.append(f"{result['seconds']:.0f} s")
    return "probe: " + " | ".join(parts)
