"""Task metrics, all reported as PERCENTAGES (0-100) like the paper's tables.

* NER: seqeval entity-level scores. The headline ``f1``/``precision``/``recall`` use seqeval's
  default (conlleval-compatible) mode, which reads a stray ``I-X`` as the start of a new entity,
  as the paper's numbers do; ``strict_f1`` uses ``mode="strict", scheme=IOB2``, under which such a
  stray tag starts no entity at all. seqeval is used rather than our own span code so the numbers
  match what the field reports.
* RE (GAD): precision/recall/F1 of the positive class.
* DC (HoC): BLURB-style micro-F1 over every (abstract x label) cell, plus the macro-F1 over labels.

Undefined ratios (0/0) are 0, like scikit-learn's ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import KbioxlmError


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return 100 * p, 100 * r, 100 * f


def ner_scores(gold_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity scores over sentences of BIO tags (lists must align sentence by sentence, tag by tag)."""
    # lazy: seqeval imports scikit-learn (~1 s), only for NER scores
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    if len(gold_tags) != len(pred_tags):
        raise KbioxlmError(f"ner_scores: {len(gold_tags)} gold sentences but {len(pred_tags)} predicted")
    gold = [list(s) for s in gold_tags]
    pred = [list(s) for s in pred_tags]
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise KbioxlmError(f"ner_scores: sentence {i} has {len(g)} gold tags but {len(p)} predicted")
    out: dict[str, Any] = {
        "f1": 100 * f1_score(gold, pred, zero_division=0),
        "precision": 100 * precision_score(gold, pred, zero_division=0),
        "recall": 100 * recall_score(gold, pred, zero_division=0),
        "strict_f1": 100 * f1_score(gold, pred, mode="strict", scheme=IOB2, zero_division=0),
    }
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    out["per_type"] = {
        name: {
            "f1": 100 * vals["f1-score"],
            "precision": 100 * vals["precision"],
            "recall": 100 * vals["recall"],
            "support": int(vals["support"]),
        }
        for name, vals in sorted(report.items())
        if not name.endswith(" avg")
    }
    return out


def binary_scores(gold: Sequence[int], pred: Sequence[int], positive: int = 1) -> dict[str, Any]:
    """Precision/recall/F1 of the ``positive`` class (the GAD convention), plus accuracy."""
    if len(gold) != len(pred):
        raise KbioxlmError(f"binary_scores: {len(gold)} gold labels but {len(pred)} predicted")
    tp = sum(1 for g, p in zip(gold, pred) if g == positive and p == positive)
    fp = sum(1 for g, p in zip(gold, pred) if g != positive and p == positive)
    fn = sum(1 for g, p in zip(gold, pred) if g == positive and p != positive)
    p, r, f = _prf(tp, fp, fn)
    acc = 100 * sum(1 for g, q in zip(gold, pred) if g == q) / len(gold) if gold else 0.0
    return {"f1": f, "precision": p, "recall": r, "accuracy": acc}


def multilabel_scores(gold: Sequence[Sequence[int]], pred: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Micro-F1 over all (document x label) cells (headline ``f1``), macro-F1 over labels, per-label F1."""
    if len(gold) != len(pred):
        raise KbioxlmError(f"multilabel_scores: {len(gold)} gold rows but {len(pred)} predicted")
    if not gold:
        return {"f1": 0.0, "precision": 0.0, "recall": 0.0, "macro_f1": 0.0, "per_label": []}
    width = len(gold[0])
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != width or len(p) != width:
            raise KbioxlmError(f"multilabel_scores: row {i} does not have {width} labels")
    counts = [[0, 0, 0] for _ in range(width)]  # tp, fp, fn per label
    for g, p in zip(gold, pred):
        for j in range(width):
            if g[j] and p[j]:
                counts[j][0] += 1
            elif p[j]:
                counts[j][1] += 1
            elif g[j]:
                counts[j][2] += 1
    tp, fp, fn = (sum(c[k] for c in counts) for k in range(3))
    precision, recall, f = _prf(tp, fp, fn)
    per_label = [_prf(*c)[2] for c in counts]
    return {
        "f1": f,
        "precision": precision,
        "recall": recall,
        "macro_f1": sum(per_label) / width,
        "per_label": per_label,
    }
