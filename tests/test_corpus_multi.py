"""Several target languages: one KB with names in several languages, entity- and fact-level switching
into weighted target languages (``--target-langs zh:0.5,es:0.25,fr:0.25``), multi-language align
records, ``kb stats --tokenizer`` coverage, and the pipeline's ``corpus.target_langs`` /
``probe.langs``.

The draws are deterministic per seed and document (independent of worker count and order); a single
target language, however it is spelled, writes the bytes ``--target-lang`` always wrote; a switched
entity's language is drawn among the target languages its concept has a name in, by the weights
renormalised over those (tested against that expectation, with the binomial spread, on synthetic
and on real HPO builds); a language the KB has no names in is one error line naming it.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, shared_path
from test_corpus_build import make_docs, make_kb, read

from kbioxlm.cli import main
from kbioxlm.corpus.targets import format_target_langs, normalise, parse_target_langs, pick_weighted, splitmix64
from kbioxlm.errors import KbioxlmError
from kbioxlm.kb.store import KnowledgeBase
from kbioxlm.schema import validate_entity_record, validate_fact_record

WEIGHTS = "zh:0.5,es:0.25,fr:0.25"


def _add_languages(kb_path: Path, names: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """ES names for every concept but each 4th, FR names for each 3rd (most concepts have none)."""
    extra = {
        "es": {c: f"es-{c}" for i, c in enumerate(sorted(names["en"])) if i % 4 != 3},
        "fr": {c: f"fr {c}" for i, c in enumerate(sorted(names["en"])) if i % 3 == 0},
    }
    with KnowledgeBase(kb_path) as kb:
        kb.add_names((c, lang, t, 1, "t") for lang, m in extra.items() for c, t in m.items())
        kb.set_relation_names([("is_a", "es", "es un"), ("is_a", "fr", "est un")])
        kb.commit()
    return {**names, **extra}


@pytest.fixture()
def multi_kb(tmp_path: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    kb = tmp_path / "kb.sqlite"
    return kb, _add_languages(kb, make_kb(kb))


def _build(kb: Path, inp: Path, out: Path, *extra: str, fmt: str = "jsonl") -> int:
    return main(
        [
            "corpus",
            "build",
            "--kb",
            str(kb),
            "--input",
            str(inp),
            "--input-format",
            fmt,
            "--lang",
            "en",
            "--entity-out",
            str(out / "entity.jsonl"),
            "--fact-out",
            str(out / "fact.jsonl"),
            "--window",
            "3",
            "--no-progress",
            *extra,
        ]
    )


def _outputs(out: Path) -> dict[str, bytes]:
    return {lv: (out / f"{lv}.jsonl").read_bytes() for lv in ("entity", "fact")}


def _lang_spread(
    recs: list[dict], names: dict[str, dict[str, str]], weights: dict[str, float]
) -> dict[str, tuple[int, float, float]]:
    """Per target language: (switches into it, expected switches, their variance) when each switched
    entity draws among the languages its concept has a name in, weights renormalised over them."""
    obs: Counter = Counter()
    exp: Counter = Counter()
    var: Counter = Counter()
    for rec in recs:
        for e in rec["entities"]:
            if not e["switched"]:
                continue
            have = {lang: w for lang, w in weights.items() if e["concept"] in names[lang]}
            total = sum(have.values())
            for lang, w in have.items():
                exp[lang] += w / total
                var[lang] += (w / total) * (1 - w / total)
            obs[e["lang"]] += 1
    return {lang: (obs[lang], exp[lang], var[lang]) for lang in weights}


def _check_switches(recs: list[dict], names: dict[str, dict[str, str]], weights: dict[str, float]) -> int:
    """Every switched entity reads its concept's name in a target language it has a name in."""
    n = 0
    for rec in recs:
        validate_entity_record(rec)
        for e in rec["entities"]:
            if e["switched"]:
                n += 1
                assert e["lang"] in weights and rec["text"][e["start"] : e["end"]] == names[e["lang"]][e["concept"]]
    return n


# ---- parsing and drawing -------------------------------------------------------------------------
def test_target_lang_lists_parse_normalise_and_format() -> None:
    assert parse_target_langs("zh:0.5, es:0.25,fr:0.25") == (("zh", 0.5), ("es", 0.25), ("fr", 0.25))
    assert parse_target_langs("zh,es") == (("zh", 1.0), ("es", 1.0))
    assert parse_target_langs({"zh": 2, "es": 1}) == parse_target_langs(["zh:2", "es"]) == (("zh", 2.0), ("es", 1.0))
    assert normalise(parse_target_langs("zh:2,es:1,fr:1")) == (("zh", 0.5), ("es", 0.25), ("fr", 0.25))
    pairs = normalise(parse_target_langs("zh:1,es:1,fr:1"))
    back = normalise(parse_target_langs(format_target_langs(pairs)))
    assert [x for x, _w in back] == ["zh", "es", "fr"] and [w for _x, w in back] == pytest.approx([1 / 3] * 3)
    for bad, msg in (
        ("", "names no language"),
        ("zh:0", "positive"),
        ("zh:-1", "positive"),
        ("zh:x", "positive"),
        ("zh:nan", "positive"),
        ("zh,zh", "twice"),
        ("z h", "not a language"),
        (3, "give languages"),
    ):
        with pytest.raises(KbioxlmError, match=msg):
            parse_target_langs(bad)


def test_weighted_draws_follow_the_weights() -> None:
    cum = (0.5, 0.75, 1.0)
    counts = Counter(pick_weighted(splitmix64(12345, i), cum) for i in range(1, 40001))
    for i, p in enumerate((0.5, 0.25, 0.25)):
        assert abs(counts[i] - 40000 * p) < 4 * math.sqrt(40000 * p * (1 - p))
    assert pick_weighted(0, cum) == 0 and pick_weighted((1 << 64) - 1, cum) == 2
    assert pick_weighted((1 << 64) - 1, (3.0,)) == 0


# ---- entity and fact builds ----------------------------------------------------------------------
def test_single_target_is_unchanged_however_spelled(tmp_path: Path, multi_kb) -> None:
    kb, names = multi_kb
    make_docs(tmp_path / "in.jsonl", names, 120, langs=("en", "zh"))
    outs = {}
    for tag, flag in {
        "lang": ["--target-lang", "zh"],
        "list": ["--target-langs", "zh"],
        "w": ["--target-langs", "zh:3"],
    }.items():
        (tmp_path / tag).mkdir()
        assert _build(kb, tmp_path / "in.jsonl", tmp_path / tag, *flag, "--seed", "5") == 0
        outs[tag] = _outputs(tmp_path / tag)
    assert outs["lang"] == outs["list"] == outs["w"]
    assert outs["lang"]["entity"].count(b'"switched":true') > 50 and b'"lang":"es"' not in outs["lang"]["entity"]


def test_multi_target_switching_is_deterministic_and_follows_the_rule(tmp_path: Path, multi_kb, capsys) -> None:
    kb, names = multi_kb
    make_docs(tmp_path / "in.jsonl", names, 700, seed=3)  # three chunks of 256 documents
    outs = {}
    for tag, extra in {"w1": [], "w2": ["--num-workers", "2"], "again": [], "s2": ["--seed", "2"]}.items():
        (tmp_path / tag).mkdir()
        assert _build(kb, tmp_path / "in.jsonl", tmp_path / tag, "--target-langs", WEIGHTS, *extra) == 0
        outs[tag] = _outputs(tmp_path / tag)
        if tag == "w1":
            printed = capsys.readouterr().out
    assert outs["w1"] == outs["w2"] == outs["again"]
    assert outs["w1"]["entity"] != outs["s2"]["entity"]
    # Order does not matter: each document's draws depend on the seed and its id only.
    lines = (tmp_path / "in.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    random.Random(1).shuffle(lines)
    (tmp_path / "shuffled.jsonl").write_text("".join(lines), encoding="utf-8")
    (tmp_path / "sh").mkdir()
    assert _build(kb, tmp_path / "shuffled.jsonl", tmp_path / "sh", "--target-langs", WEIGHTS) == 0
    for lv in ("entity", "fact"):
        assert sorted(_outputs(tmp_path / "sh")[lv].splitlines()) == sorted(outs["w1"][lv].splitlines())

    weights = dict(normalise(parse_target_langs(WEIGHTS)))
    recs = read(tmp_path / "w1" / "entity.jsonl")
    n = _check_switches(recs, names, weights)
    spread = _lang_spread(recs, names, weights)
    assert n > 1000 and sum(o for o, _e, _v in spread.values()) == n
    for lang, (o, e, v) in spread.items():
        assert abs(o - e) < 4 * math.sqrt(v), (lang, o, e, v)
        assert f"en->{lang}={o}" in printed  # per-language switch counts in the summary
    # the rule: a concept without a name in a language is never switched into it (redrawn among its languages)
    no_fr = {c for c in names["en"] if c not in names["fr"]}
    switched = [e for r in recs for e in r["entities"] if e["switched"]]
    assert any(e["concept"] in no_fr for e in switched) and not any(
        e["concept"] in no_fr and e["lang"] == "fr" for e in switched
    )
    only_zh = {c for c in names["zh"] if c not in names["es"] and c not in names["fr"]}
    assert only_zh and all(e["lang"] == "zh" for e in switched if e["concept"] in only_zh)

    facts = read(tmp_path / "w1" / "fact.jsonl")
    per_lang: Counter = Counter()
    for rec in facts:
        validate_fact_record(rec)
        langs = {r["lang"] for r in rec["relations"]}
        assert len(langs) == 1  # one language per window
        lang = langs.pop()
        per_lang[lang] += len(rec["relations"])
        for r in rec["relations"]:
            for end in ("head", "tail"):
                ent = rec["entities"][r[end]]
                assert ent["lang"] == lang and rec["text"][ent["start"] : ent["end"]] == names[lang][ent["concept"]]
    assert set(per_lang) == set(weights), per_lang
    assert "fact_langs[" + " ".join(f"{k}={v}" for k, v in sorted(per_lang.items())) + "]" in printed


def test_documents_of_target_languages_switch_back_balanced(tmp_path: Path, multi_kb, capsys) -> None:
    kb, names = multi_kb
    make_docs(tmp_path / "in.jsonl", names, 120, langs=("en", "en", "zh"))
    assert (
        main(
            [
                "corpus",
                "entity",
                "--kb",
                str(kb),
                "--input",
                str(tmp_path / "in.jsonl"),
                "--lang",
                "en",
                "--target-langs",
                WEIGHTS,
                "--out",
                str(tmp_path / "e.jsonl"),
                "--no-progress",
            ]
        )
        == 0
    )
    per: Counter = Counter()
    for rec in read(tmp_path / "e.jsonl"):
        for e in rec["entities"]:
            if e["switched"]:
                per[rec["lang"]] += 1
                assert (e["lang"] == "en") == (rec["lang"] == "zh")
    assert per["en"] == per["zh"] > 0  # one budget for both document languages


def test_a_language_missing_from_the_kb_is_one_error_line(tmp_path: Path, multi_kb, capsys) -> None:
    kb, names = multi_kb
    make_docs(tmp_path / "in.jsonl", names, 5)
    assert (
        main(
            [
                "corpus",
                "entity",
                "--kb",
                str(kb),
                "--input",
                str(tmp_path / "in.jsonl"),
                "--lang",
                "en",
                "--target-langs",
                "zh:0.5,it:0.5",
                "--out",
                str(tmp_path / "e.jsonl"),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no names in language 'it'" in err and not (tmp_path / "e.jsonl").exists()
    assert (
        main(
            [
                "corpus",
                "align",
                "--kb",
                str(kb),
                "--lang",
                "en",
                "--target-langs",
                "zh,it",
                "--out",
                str(tmp_path / "a.jsonl"),
            ]
        )
        == 2
    )
    assert "no names in language 'it'" in capsys.readouterr().err
    for flag in (["--target-langs", "zh,en"], ["--target-langs", "zh:0"]):
        assert (
            main(
                [
                    "corpus",
                    "fact",
                    "--kb",
                    str(kb),
                    "--input",
                    str(tmp_path / "in.jsonl"),
                    "--lang",
                    "en",
                    *flag,
                    "--out",
                    str(tmp_path / "f.jsonl"),
                    "--no-progress",
                ]
            )
            == 2
        )
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):  # --target-lang and --target-langs exclude each other
        main(
            [
                "corpus",
                "entity",
                "--kb",
                str(kb),
                "--input",
                "x",
                "--lang",
                "en",
                "--target-lang",
                "zh",
                "--target-langs",
                "es",
                "--out",
                "y",
            ]
        )


def test_align_records_for_several_languages(tmp_path: Path, multi_kb) -> None:
    kb, names = multi_kb
    one = {}
    for tag, flag in {"lang": ["--target-lang", "es"], "list": ["--target-langs", "es"]}.items():
        assert (
            main(
                [
                    "corpus",
                    "align",
                    "--kb",
                    str(kb),
                    "--lang",
                    "en",
                    *flag,
                    "--out",
                    str(tmp_path / f"{tag}.jsonl"),
                    "--seed",
                    "3",
                ]
            )
            == 0
        )
        one[tag] = (tmp_path / f"{tag}.jsonl").read_bytes()
    assert one["lang"] == one["list"]
    assert (
        main(
            [
                "corpus",
                "align",
                "--kb",
                str(kb),
                "--lang",
                "en",
                "--target-langs",
                "zh,es,fr",
                "--out",
                str(tmp_path / "multi.jsonl"),
                "--seed",
                "3",
            ]
        )
        == 0
    )
    recs = read(tmp_path / "multi.jsonl")
    pairs = Counter()
    for rec in recs:
        (x,) = set(rec["names"]) - {"en"}
        assert set(rec["names"]) == {"en", x} and rec["names"][x][0] == names[x][rec["concept"]]
        pairs[x] += 1
    assert pairs == {x: sum(c in names[x] for c in names["en"]) for x in ("zh", "es", "fr")}
    assert [r["names"] for r in recs if "es" in r["names"]] != [
        r["names"] for r in read(tmp_path / "lang.jsonl")
    ]  # interleaved


# ---- real HPO: one KB with five languages, weighted switching ----------------------------------------
@pytest.fixture(scope="module")
def hpo_multi_kb(tmp_path_factory) -> Path:
    hpo = shared_path("data", "kb", "hpo")
    path = tmp_path_factory.mktemp("hpo-multi") / "kb.sqlite"
    assert (
        main(
            [
                "kb",
                "import",
                "obo",
                "--obo",
                str(hpo / "hp.obo"),
                "--translations",
                *(str(hpo / f"hp-{x}.babelon.tsv") for x in ("zh", "es", "fr", "de")),
                "--accept-candidate",
                "--kb",
                str(path),
            ]
        )
        == 0
    )
    return path


def test_real_hpo_multilingual_kb_and_weighted_switching(tmp_path: Path, hpo_multi_kb: Path, capsys) -> None:
    kb = hpo_multi_kb
    with KnowledgeBase(kb) as k:
        stats = k.stats()
        names = {lang: k.preferred_names(lang) for lang in ("en", "zh", "es", "fr", "de")}
    assert {lang: n > 3000 for lang, n in stats["names"].items()} == dict.fromkeys(("de", "en", "es", "fr", "zh"), True)
    pqal = shared_path("data", "corpora", "en", "ori_pqal.json")
    for tag, extra in {"w1": [], "w2": ["--num-workers", "2"]}.items():
        (tmp_path / tag).mkdir()
        assert (
            _build(
                kb,
                pqal,
                tmp_path / tag,
                "--target-langs",
                WEIGHTS,
                "--stop-list",
                "default",
                "--seed",
                "13",
                *extra,
                fmt="pubmedqa",
            )
            == 0
        )
    assert _outputs(tmp_path / "w1") == _outputs(tmp_path / "w2")
    weights = dict(normalise(parse_target_langs(WEIGHTS)))
    recs = read(tmp_path / "w1" / "entity.jsonl")
    n = _check_switches(recs, names, weights)
    spread = _lang_spread(recs, names, weights)
    assert n > 2000, n
    for lang, (o, e, v) in spread.items():
        assert abs(o - e) < 4 * math.sqrt(v), (lang, o, e, v)
    # most switched concepts have all three names: the shares are near the weights themselves
    for lang, w in weights.items():
        assert abs(spread[lang][0] / n - w) < 0.05, (lang, spread[lang][0] / n)
    facts = read(tmp_path / "w1" / "fact.jsonl")
    assert facts and {r["lang"] for rec in facts for r in rec["relations"]} <= set(weights)


# ---- kb stats --tokenizer ------------------------------------------------------------------------
def test_kb_stats_prints_the_unknown_piece_rate_per_language(tmp_path: Path, xlmr_tokenizer_path: Path, capsys) -> None:
    kb = tmp_path / "kb.sqlite"
    with KnowledgeBase(kb, create=True) as k:
        k.add_concepts([("C1", None, "t"), ("C2", None, "t")])
        k.add_names(
            [
                ("C1", "en", "epiphysis", 1, "t"),
                ("C1", "zh", "骺", 1, "t"),
                ("C2", "zh", "骺板早闭", 1, "t"),
                ("C2", "es", "cierre prematuro", 1, "t"),
                ("C2", "en", "premature closure", 1, "t"),
            ]
        )
        k.commit()
    assert main(["kb", "stats", "--kb", str(kb), "--json", "--tokenizer", str(xlmr_tokenizer_path)]) == 0
    cov = json.loads(capsys.readouterr().out)["tokenizer"]
    assert cov["unk_token"] == "<unk>"
    langs = cov["languages"]
    assert langs["en"]["unk_pieces"] == langs["es"]["unk_pieces"] == 0 and langs["en"]["names"] == 2
    assert langs["zh"]["unk_pieces"] == 2 and langs["zh"]["names_with_unk"] == 2
    assert langs["zh"]["unk_rate"] == round(2 / langs["zh"]["pieces"], 6)
    assert main(["kb", "stats", "--kb", str(kb), "--tokenizer", str(xlmr_tokenizer_path)]) == 0
    text = capsys.readouterr().out
    assert "unknown pieces (<unk>)" in text and any(
        line.split()[:1] == ["zh"] and "%" in line for line in text.splitlines()
    )
    assert main(["kb", "stats", "--kb", str(kb), "--tokenizer", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_kb_stats_on_the_real_hpo_names(hpo_multi_kb: Path, xlmr_tokenizer_path: Path, capsys) -> None:
    assert main(["kb", "stats", "--kb", str(hpo_multi_kb), "--json", "--tokenizer", str(xlmr_tokenizer_path)]) == 0
    langs = json.loads(capsys.readouterr().out)["tokenizer"]["languages"]
    assert set(langs) == {"de", "en", "es", "fr", "zh"}
    assert all(langs[x]["unk_rate"] < 0.001 for x in ("de", "en", "es", "fr"))
    assert 0 < langs["zh"]["unk_rate"] < 0.05  # rare anatomical characters (骺, 桡, 跖, ...) are unknown to XLM-R


# ---- pipeline: corpus.target_langs and probe.langs -------------------------------------------------
def _pipeline(tmp_path: Path, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": "multi",
        "out": str(tmp_path / "run"),
        "seed": 7,
        "languages": ["en", "zh", "es", "fr"],
        "base_model": {"name": "tiny", "path": str(tmp_path / "model")},
        "kb": {"tsv": [{"concepts": str(tmp_path / "c.tsv")}]},
        "holdout": {"fraction": 0.1, "langs": ["en", "es"]},
        "documents": {"en": [str(tmp_path / "en.jsonl")]},
        "corpus": {"levels": ["entity", "fact", "align"], "target_langs": {"zh": 2, "es": 1, "fr": 1}},
        "pretrain": [{"name": "multi", "config": "pre.yaml", "model": "base", "train": ["align", "entity"]}],
        "probe": {"models": ["base", "multi"], "langs": ["zh", "es", "fr"]},
    }
    cfg.update(over)
    return cfg


def _plan(tmp_path: Path, cfg: dict[str, Any]):  # type: ignore[no-untyped-def]
    from kbioxlm.pipeline.config import load_pipeline_config
    from kbioxlm.pipeline.plan import build_plan

    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return {s.name: s for s in build_plan(load_pipeline_config(path))}


def test_pipeline_target_langs_and_probe_langs(tmp_path: Path) -> None:
    steps = _plan(tmp_path, _pipeline(tmp_path))
    run = tmp_path / "run"
    ent = steps["corpus.entity.en-zh+es+fr"]
    assert ent.argv[ent.argv.index("--target-langs") + 1] == "zh:2,es:1,fr:1" and "--target-lang" not in ent.argv
    assert ent.outputs == [run / "corpus" / "entity.en-zh+es+fr.jsonl"]
    assert (
        steps["corpus.fact.en-zh+es+fr"].argv[steps["corpus.fact.en-zh+es+fr"].argv.index("--target-langs") + 1]
        == "zh:2,es:1,fr:1"
    )
    al = steps["corpus.align.en-zh+es+fr"]
    assert al.argv[al.argv.index("--target-langs") + 1] == "zh,es,fr"
    assert "zh+es+fr.jsonl" in steps["pretrain.multi"].argv[5]
    assert steps["kb.stats"].argv[-2:] == ["--tokenizer", str(tmp_path / "model")]
    for x in ("zh", "es", "fr"):
        for m in ("base", "multi"):
            st = steps[f"probe.{x}.{m}"]
            assert st.argv[st.argv.index("--target-lang") + 1] == x and st.outputs == [
                run / "probe" / x / m / "probe.json"
            ]
        assert steps[f"probe.{x}.report"].outputs[1] == run / "probe" / x / "results.md"
    rep = steps["probe.report"]
    assert len(rep.inputs) == 6 and rep.outputs == [run / "probe" / f"results.{e}" for e in ("json", "md", "png")]
    # the same weights as a string; documents in a target language switch back in one balanced run
    steps = _plan(
        tmp_path,
        _pipeline(
            tmp_path,
            documents={"en": [str(tmp_path / "en.jsonl")], "zh": [str(tmp_path / "zh.jsonl")]},
            corpus={"levels": ["entity", "fact", "align"], "target_langs": "zh:2,es:1,fr:1"},
        ),
    )
    assert steps["docs.en+zh"].params == {"langs": ["en", "zh"]}
    assert steps["corpus.entity.en-zh+es+fr"].argv[5] == str(run / "docs" / "en+zh.jsonl")
    assert steps["corpus.fact.zh-en"].argv[steps["corpus.fact.zh-en"].argv.index("--target-lang") + 1] == "en"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"corpus": {"target_langs": {"zh": 1, "it": 1}}}, r"corpus.target_langs: it must be languages"),
        ({"corpus": {"target_langs": {"zh": 0}}}, r"corpus.target_langs: weight of 'zh' must be a positive number"),
        (
            {"corpus": {"target_langs": "zh", "directions": ["en-zh"]}},
            r"either corpus.directions or corpus.target_langs",
        ),
        ({"probe": {"langs": ["zh", "it"]}}, r"probe.langs must list languages"),
        (
            {"documents": {"en": ["x"], "de": ["y"]}, "languages": ["en", "zh", "es", "fr", "de"]},
            r"documents in de have no direction",
        ),
    ],
)
def test_pipeline_multi_keys_are_validated(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(KbioxlmError, match=message):
        _plan(tmp_path, _pipeline(tmp_path, **change))


def test_shipped_multi_config_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KBIOXLM_SHARED", raising=False)
    steps = _plan_file(ROOT / "configs" / "e2e-multi-small-cpu.yaml")
    assert "corpus.entity.en-zh+es+fr+de" in steps and "probe.de.multi" in steps and "probe.report" in steps
    split = steps["kb.split"].argv
    assert split[split.index("--langs") + 1] == "en,es"  # the EN-ES run's held-out concepts
    # the EN-ES run's recipe and budget
    assert (
        steps["pretrain.multi"].argv[9:]
        == _plan_file(ROOT / "configs" / "e2e-en-es-small-cpu.yaml")["pretrain.align"].argv[9:]
    )


def _plan_file(path: Path) -> dict[str, Any]:
    from kbioxlm.pipeline.config import load_pipeline_config
    from kbioxlm.pipeline.plan import build_plan

    return {s.name: s for s in build_plan(load_pipeline_config(path))}


def test_probe_reports_per_language_and_in_one_table(tmp_path: Path, capsys) -> None:
    cfg = _pipeline(tmp_path)
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    root = tmp_path / "run" / "probe"
    for i, x in enumerate(("zh", "es", "fr")):
        for j, m in enumerate(("base", "multi")):
            acc = 10.0 * (i + 1) + j
            term = {
                "n": 100 + i,
                "n_available": 100 + i,
                f"en_{x}": {"acc1": acc, "mrr": acc},
                f"{x}_en": {"acc1": acc / 2, "mrr": acc},
                "layer": 12,
                "best_layer": {},
                "per_layer": [],
            }
            (root / x / m).mkdir(parents=True)
            (root / x / m / "probe.json").write_text(
                json.dumps({"term_retrieval": term, "sentence_retrieval": None}), encoding="utf-8"
            )
    assert (
        main(
            [
                "pipeline",
                "--config",
                str(path),
                "--only",
                "probe.zh.report,probe.es.report,probe.fr.report,probe.report",
            ]
        )
        == 0
    )
    assert "4 ran" in capsys.readouterr().out
    assert "| tiny | 10.0 | 5.0 |" in (root / "zh" / "results.md").read_text(encoding="utf-8")
    md = (root / "results.md").read_text(encoding="utf-8")
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in md.splitlines() if ln.startswith("|")]
    assert rows[0] == ["Model", "en→zh", "zh→en", "en→es", "es→en", "en→fr", "fr→en"]
    assert rows[2] == ["tiny", "10.0", "5.0", "20.0", "10.0", "30.0", "15.0"]
    assert rows[3] == ["multi", "11.0", "5.5", "21.0", "10.5", "31.0", "15.5"]
    results = json.loads((root / "results.json").read_text(encoding="utf-8"))
    assert results["languages"] == ["en", "zh", "es", "fr"] and set(results["models"]["multi"]) == {"zh", "es", "fr"}
