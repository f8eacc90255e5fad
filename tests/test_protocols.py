"""Evaluation protocols: file choice per language, few-shot sampling, held-out dev sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import shared_path
from kbioxlm.errors import KbioxlmError
from kbioxlm.tasks import protocols as P


def _sent_records(lang: str, n: int) -> list[dict]:
    return [{"id": f"{lang}{i}", "lang": lang, "text": f"{lang} sentence {i}", "label": i % 2} for i in range(n)]


def _abstract_records(lang: str, n_docs: int, per_doc: int) -> list[dict]:
    return [
        {"id": f"{1000 + d}_s{s}", "lang": lang, "text": f"doc {d} sentence {s}", "label": [d % 2, 1]}
        for d in range(n_docs)
        for s in range(per_doc)
    ]


def _write_seqcls(path: Path, recs: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps({"id": r["id"], "sentence": r["text"], "label": r["label"]}) + "\n" for r in recs),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def tiny_gad(tmp_path: Path) -> P.DatasetSpec:
    files = {}
    for lang, n in (("en", 40), ("zh", 30)):
        recs = _sent_records(lang, n)
        files[lang] = {
            "train": str(_write_seqcls(tmp_path / lang / "train.json", recs)),
            "dev": str(_write_seqcls(tmp_path / lang / "dev.json", _sent_records(lang + "dev", 6))),
            "test": str(_write_seqcls(tmp_path / lang / "test.json", _sent_records(lang + "test", 5))),
        }
    return P.user_dataset({"name": "gadlike", "type": "re", "files": files})


# ------------------------------------------------------------------------------------------ sampling


def test_fewshot_sampling_is_deterministic_nested_and_seed_dependent():
    recs = _sent_records("zh", 60)
    a, ids_a = P.sample_fewshot(recs, 10, seed=1, dataset="gad", lang="zh")
    b, ids_b = P.sample_fewshot(recs, 10, seed=1, dataset="gad", lang="zh")
    assert ids_a == ids_b and a == b and len(a) == 10
    _, ids_100 = P.sample_fewshot(recs, 40, seed=1, dataset="gad", lang="zh")
    assert ids_100[:10] == ids_a  # K=10 is the prefix of the larger sample for the same seed
    _, ids_c = P.sample_fewshot(recs, 10, seed=2, dataset="gad", lang="zh")
    assert ids_c != ids_a
    assert len(set(ids_a)) == 10 and set(ids_a) <= {r["id"] for r in recs}
    with pytest.raises(KbioxlmError, match="only 60"):
        P.sample_fewshot(recs, 61, seed=1)


def test_fewshot_unit_sentence_vs_abstract():
    recs = _abstract_records("zh", n_docs=12, per_doc=3)
    sents, sent_ids = P.sample_fewshot(recs, 4, seed=3, unit="sentence")
    assert len(sents) == 4 and sent_ids == [r["id"] for r in sents]
    docs, doc_ids = P.sample_fewshot(recs, 4, seed=3, unit="abstract")
    assert len(doc_ids) == 4 and len(docs) == 12  # whole abstracts: every sentence of 4 documents
    assert {r["id"].split("_")[0] for r in docs} == set(doc_ids)
    # a record-level HoC row (one abstract per row, id = PMID) is its own unit
    rows = [{"id": str(900 + i), "text": "abstract", "label": [1, 0]} for i in range(8)]
    got, ids = P.sample_fewshot(rows, 3, seed=0, unit="abstract")
    assert len(got) == 3 and ids == [r["id"] for r in got]


def test_heldout_split_is_disjoint_fixed_and_unit_aware():
    recs = _abstract_records("en", n_docs=20, per_doc=2)
    train, dev, ids = P.split_heldout(recs, "abstract", dataset="x", lang="en")
    assert len(ids) == 2 and len(dev) == 4 and len(train) == 36
    assert not {r["id"] for r in train} & {r["id"] for r in dev}
    assert P.split_heldout(recs, "abstract", dataset="x", lang="en")[2] == ids  # fixed seed


# -------------------------------------------------------------------------------------- cell data


def test_zero_shot_uses_source_train_and_dev_and_target_test(tiny_gad):
    d = P.build_cell_data(tiny_gad, "zero-shot", "en", "zh")
    assert {r["lang"] for r in d.train} == {"en"} and len(d.train) == 40
    assert {r["id"] for r in d.dev} == {f"endev{i}" for i in range(6)}  # SOURCE dev
    assert {r["id"] for r in d.test} == {f"zhtest{i}" for i in range(5)}
    assert d.sampled_ids == {}


def test_monolingual_stays_in_one_language(tiny_gad):
    d = P.build_cell_data(tiny_gad, "monolingual", "zh", "zh")
    assert {r["id"][:2] for r in d.train + d.dev + d.test} == {"zh"}
    with pytest.raises(KbioxlmError):
        P.build_cell_data(tiny_gad, "monolingual", "en", "zh")


def test_fewshot_add_vs_alone(tiny_gad):
    add = P.build_cell_data(tiny_gad, "few-shot", "en", "zh", shots=5, sampling_seed=7, fewshot_mode="add")
    alone = P.build_cell_data(tiny_gad, "few-shot", "en", "zh", shots=5, sampling_seed=7, fewshot_mode="alone")
    fs = add.sampled_ids["fewshot"]
    assert fs["ids"] == alone.sampled_ids["fewshot"]["ids"] and len(fs["ids"]) == 5 and fs["lang"] == "zh"
    assert len(add.train) == 45 and [r["id"] for r in add.train[40:]] == fs["ids"]
    assert [r["id"] for r in alone.train] == fs["ids"] and {r["lang"] for r in alone.train} == {"zh"}
    assert add.dev == alone.dev and {r["lang"] for r in add.dev} == {"en"}  # select on the source dev
    # max_train_examples caps the source part only; the K target examples are always all there
    capped = P.build_cell_data(tiny_gad, "few-shot", "en", "zh", shots=5, sampling_seed=7, max_train_examples=8)
    assert len(capped.train) == 13 and [r["id"] for r in capped.train[8:]] == fs["ids"]


def test_dev_overlapping_test_is_replaced_by_heldout(tmp_path, tiny_gad):
    spec = P.DatasetSpec(name="adelike", task="re", files=tiny_gad.files, dev_overlaps_test=True)
    held = P.build_cell_data(spec, "zero-shot", "en", "zh")
    assert "heldout_dev" in held.sampled_ids and len(held.dev) == 4 and len(held.train) == 36
    assert not {r["id"] for r in held.dev} & {r["id"] for r in held.train}
    assert {r["id"] for r in held.dev} <= {f"en{i}" for i in range(40)}
    release = P.build_cell_data(spec, "zero-shot", "en", "zh", dev_policy="release")
    assert len(release.dev) == 6 and len(release.train) == 40
    # a dataset without a dev file always holds one out
    nodev = P.user_dataset(
        {
            "name": "nodev",
            "type": "re",
            "files": {
                "en": {"train": tiny_gad.files["en"]["train"], "test": tiny_gad.files["en"]["test"]},
                "zh": {"train": tiny_gad.files["zh"]["train"], "test": tiny_gad.files["zh"]["test"]},
            },
        }
    )
    assert len(P.build_cell_data(nodev, "zero-shot", "en", "zh", dev_policy="release").dev) == 4


def test_parse_direction_and_setting():
    assert P.parse_direction("en-zh") == ("en", "zh")
    assert P.parse_direction("eng_to_zh") == ("en", "zh")
    assert P.parse_direction("zh_en") == ("zh", "en")
    assert P.parse_setting("few-shot-100") == ("few-shot", 100)
    assert P.parse_setting("zero-shot") == ("zero-shot", 0)
    for bad in ("en", "en-en"):
        with pytest.raises(KbioxlmError):
            P.parse_direction(bad)
    for bad in ("few-shot-0", "fewshot", "cross"):
        with pytest.raises(KbioxlmError):
            P.parse_setting(bad)


# -------------------------------------------------------------------------- the real release layout


def test_release_registry_maps_files_to_their_real_language():
    """``eng_to_zh/test.txt`` is Chinese, ``zh_to_eng/test.txt`` English (SOURCE.md): checked on the text."""
    root = shared_path("data", "kbioxlm-release")
    from kbioxlm.tasks.readers import detect_lang

    reg = P.release_datasets(root)
    assert reg["ade"].files["zh"]["test"] == root / "ner/ade/eng_to_zh/test.txt"
    assert reg["ade"].files["en"]["test"] == root / "ner/ade/zh_to_eng/test.txt"
    reader = P.CachedReader()
    for name, spec in reg.items():
        for lang, splits in spec.files.items():
            for split, path in splits.items():
                recs = reader(path, lang, spec.task)
                sample = recs[:: max(1, len(recs) // 25)]
                texts = ["".join(r["tokens"]) if "tokens" in r else r["text"] for r in sample]
                langs = {detect_lang(t) for t in texts}
                assert langs == {lang}, (name, lang, split, path, langs)
    # few-shot en->zh on HoC samples whole Chinese abstracts from the ZH train file
    d = P.build_cell_data(reg["hoc"], "few-shot", "en", "zh", shots=10, sampling_seed=1, reader=reader)
    assert d.sampled_ids["fewshot"]["from"].endswith("HoC_hf_zh_en/train.json") and len(d.train) == 1295 + 10
