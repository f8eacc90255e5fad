"""Benchmark and probe reports say how much their numbers can be trusted: caps, test sizes, bold only
when seeds support a difference, paired-by-seed differences, honest bars."""

from __future__ import annotations

import json
from pathlib import Path

from kbioxlm.tasks.benchmark import config_from_dict
from kbioxlm.tasks.report import BOLD_RULE, figure, render_markdown


def _rec(model: str, ds: str, seed: int, f1: float, direction: str = "en-zh", n_test: int = 30) -> dict:
    return {
        "cell": f"{model}/{ds}/{direction}/zero-shot/seed{seed}",
        "model": model,
        "dataset": ds,
        "dataset_label": ds.upper(),
        "setting": "zero-shot",
        "shots": 0,
        "direction": direction,
        "seed": seed,
        "f1": f1,
        "metric": "f1",
        "n_train": 250,
        "n_dev": 100,
        "n_test": n_test,
    }


def _rows(md: str, title: str) -> list[list[str]]:
    body = md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    return [
        [c.strip() for c in ln.strip("|").split("|")]
        for ln in body.splitlines()
        if ln.startswith("|") and "---" not in ln
    ]


def _cfg(models: list[str], **caps) -> object:
    return config_from_dict(
        {
            "models": [{"name": m, "path": m} for m in models],
            "tasks": [
                {
                    "name": "ade",
                    "type": "ner",
                    "files": {"en": {"train": "a", "test": "b"}, "zh": {"train": "c", "test": "d"}},
                }
            ],
            "seeds": [1],
            **caps,
        }
    )


def test_one_seed_is_never_bold_and_caps_and_sizes_are_stated() -> None:
    recs = [_rec("base", "ade", 1, 50.0), _rec("kb", "ade", 1, 53.33)]
    md = render_markdown(recs, _cfg(["base", "kb"], max_train_examples=250, max_dev_examples=100, max_test_examples=30))
    t4 = _rows(md, "Cross-lingual zero-shot (layout of Table 4)")
    assert t4[1] == ["en→zh", "ADE", "50.00", "53.33"] and "**" not in md
    assert "train 250, dev 100, test 30" in md and BOLD_RULE in md
    assert _rows(md, "Examples per cell")[1] == ["zero-shot en→zh", "250 / 100 / 30"]
    assert "Paired differences" not in md  # one seed: nothing to pair
    assert "test none (all)" in render_markdown(recs, _cfg(["base", "kb"]))


def test_bold_and_paired_differences_follow_the_seeds() -> None:
    # kb beats base on every seed (differences 3, 4, 5): supported; noisy beats base by 1 on average
    # with differences -4, 1, 6 (sd 5): not supported
    base = [50.0, 52.0, 48.0]
    recs = [_rec("base", "ade", s + 1, v) for s, v in enumerate(base)]
    recs += [_rec("kb", "ade", s + 1, v + d) for s, (v, d) in enumerate(zip(base, (3.0, 4.0, 5.0)))]
    md = render_markdown(recs)
    assert _rows(md, "Cross-lingual zero-shot (layout of Table 4)")[1][2:] == ["50.00 ± 2.00", "**54.00 ± 1.73**"]
    paired = _rows(md, "Paired differences against base")
    assert paired[0] == ["Difference", "ADE", "AVG"] and paired[1] == [
        "kb − base",
        "+4.00 ± 1.00 (n=3)",
        "+4.00 ± 1.00 (n=3)",
    ]
    noisy = [r for r in recs if r["model"] == "base"]
    noisy += [_rec("noisy", "ade", s + 1, v + d) for s, (v, d) in enumerate(zip(base, (-4.0, 1.0, 6.0)))]
    md = render_markdown(noisy)
    assert "**" not in md
    assert _rows(md, "Paired differences against base")[1][1] == "+1.00 ± 5.00 (n=3)"


def test_plot_labels_bars_shows_zero_and_draws_error_bars_only_for_several_seeds() -> None:
    one = [_rec("base", "ade", 1, 0.0), _rec("kb", "ade", 1, 12.5)]
    fig = figure(one)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert "0.00" in labels and "12.50" in labels
    zero = [p for p in ax.patches if p.get_height() == 0.0 and p.get_visible()]
    assert zero and ax.get_ylim()[0] < 0  # the zero bar is drawn, above the lower edge of the axes
    assert not ax.containers[2:] and all(type(c).__name__ == "BarContainer" for c in ax.containers)
    assert "en→zh" in ax.get_title() and "CN" not in ax.get_title()
    several = [_rec(m, "ade", s, 10.0 * s + (5 if m == "kb" else 0)) for m in ("base", "kb") for s in (1, 2)]
    ax = figure(several).axes[0]
    assert any(type(c).__name__ == "ErrorbarContainer" for c in ax.containers)


def test_probe_report_uses_the_run_codes_and_labels(tmp_path: Path) -> None:
    from kbioxlm.pipeline.probe_report import render_probe_markdown, write_probe_report

    res = {"term_retrieval": {"n": 40, "en_zh": {"acc1": 0.0, "mrr": 3.0}, "zh_en": {"acc1": 5.0, "mrr": 8.0}}}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "probe.json").write_text(json.dumps(res), encoding="utf-8")
    write_probe_report({"a": tmp_path / "a" / "probe.json"}, tmp_path, ("en", "zh"))
    md = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "en→zh" in md and "n terms" in md and "| 40 |" in md
    assert "1 in 40 = 2.5 points" in render_probe_markdown({"a": res}, ("en", "zh"))
