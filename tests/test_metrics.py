"""Golden values for the task metrics, computed by hand (all scores are percentages)."""

from __future__ import annotations

import pytest

from kbioxlm.errors import KbioxlmError
from kbioxlm.tasks.metrics import binary_scores, multilabel_scores, ner_scores


def test_ner_scores_hand_computed() -> None:
    # gold entities: ADE(0-1), Drug(3), Drug(1-2) = 3; predicted: ADE(0-1), Drug(1) = 2; 1 correct.
    gold = [["B-ADE", "I-ADE", "O", "B-Drug"], ["O", "B-Drug", "I-Drug"]]
    pred = [["B-ADE", "I-ADE", "O", "O"], ["O", "B-Drug", "O"]]
    s = ner_scores(gold, pred)
    assert s["precision"] == pytest.approx(50.0)
    assert s["recall"] == pytest.approx(100 / 3)
    assert s["f1"] == pytest.approx(40.0)
    assert s["per_type"]["ADE"] == pytest.approx({"f1": 100.0, "precision": 100.0, "recall": 100.0, "support": 1})
    assert s["per_type"]["Drug"] == pytest.approx({"f1": 0.0, "precision": 0.0, "recall": 0.0, "support": 2})


def test_ner_default_vs_strict_mode() -> None:
    # The release's "I-ADE right after B-Drug": default mode reads it as an ADE entity, strict IOB2 drops it.
    gold = [["B-Drug", "I-ADE", "O", "B-ADE"]]
    pred = [["B-Drug", "B-ADE", "O", "B-ADE"]]
    s = ner_scores(gold, pred)
    assert s["f1"] == pytest.approx(100.0)  # gold {Drug0, ADE1, ADE3} == pred
    # strict: gold {Drug0, ADE3}, pred {Drug0, ADE1, ADE3} -> P 2/3, R 1, F1 0.8
    assert s["strict_f1"] == pytest.approx(80.0)


def test_ner_scores_length_mismatch() -> None:
    with pytest.raises(KbioxlmError, match="sentence 0"):
        ner_scores([["O", "B-X"]], [["O"]])
    with pytest.raises(KbioxlmError):
        ner_scores([["O"]], [])


def test_binary_scores_positive_class() -> None:
    s = binary_scores([1, 0, 1, 1, 0], [1, 1, 0, 1, 0])  # tp 2, fp 1, fn 1
    assert s["precision"] == pytest.approx(200 / 3)
    assert s["recall"] == pytest.approx(200 / 3)
    assert s["f1"] == pytest.approx(200 / 3)
    assert s["accuracy"] == pytest.approx(60.0)
    # F1 of the positive class ignores true negatives entirely
    assert binary_scores([0, 0, 0], [0, 0, 0])["f1"] == 0.0
    assert binary_scores([0, 1], [0, 0], positive=0)["f1"] == pytest.approx(100 * 2 / 3)


def test_multilabel_micro_and_macro() -> None:
    gold = [[1, 0, 1], [0, 1, 0]]
    pred = [[1, 1, 0], [0, 1, 0]]
    s = multilabel_scores(gold, pred)  # cells: tp 2, fp 1, fn 1
    assert s["f1"] == pytest.approx(200 / 3)
    assert s["per_label"] == pytest.approx([100.0, 200 / 3, 0.0])
    assert s["macro_f1"] == pytest.approx((100 + 200 / 3 + 0) / 3)


def test_multilabel_rejects_ragged_rows() -> None:
    with pytest.raises(KbioxlmError, match="row 1"):
        multilabel_scores([[1, 0], [0, 1]], [[1, 0], [0]])
