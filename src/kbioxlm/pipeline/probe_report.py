"""``probe.report``: every model's ``probe.json`` side by side (JSON, Markdown table, bar chart).

Each ``kbioxlm probe --out OUT/probe/<model>`` writes ``probe.json``; its direction keys are built
from the run's language codes (``en_zh``, ``zh_en``)::

    {"term_retrieval": {"n": N, "en_zh": {"acc1": x, "mrr": y}, "zh_en": {...}, "layer": L,
                        "best_layer": {"en_zh": {"layer": i, "acc1": x}, "zh_en": {...}}, "per_layer": [...]},
     "sentence_retrieval": null | {"n": M, "en_zh": {"acc1": x, "mrr": y}, "zh_en": {...}, ...}, ...}

This module writes ``OUT/probe/results.json`` (``{"models": {name: probe.json}, "labels": ...,
"languages": [a, b]}``), ``results.md`` (one row per model) and ``results.png`` (grouped bars of
term acc@1 per direction). Scores are percentages, as ``kbioxlm probe`` writes them (one decimal,
like its summary line). Missing fields show as ``–``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import KbioxlmError
from ..io import atomic_write, write_json
from ..plotting import label_bars
from ..tasks.report import DASH


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)
    return d


def _num(x: Any) -> str:
    """A score in percent (one decimal)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return DASH
    return f"{x:.1f}"


def _count(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return DASH
    return f"{int(x):,}"


def _sample(section: Any) -> str:
    """``n`` (``of n_available`` when the probe sampled): how many items a score is out of, and the cap."""
    n, avail = _get(section, "n"), _get(section, "n_available")
    if _count(n) == DASH:
        return DASH
    return _count(n) + (f" of {_count(avail)}" if _count(avail) != DASH and avail != n else "")


def _resolution(models: Mapping[str, Mapping[str, Any]]) -> str:
    """What one item is worth: a score out of n moves by 100/n points per correct item."""
    ns = sorted(
        {
            int(n)
            for res in models.values()
            for sec in ("term_retrieval", "sentence_retrieval")
            if isinstance(n := _get(res.get(sec), "n"), int) and not isinstance(n, bool) and n > 0
        }
    )
    if not ns:
        return ""
    return (
        "One retrieved item more or less moves an acc@1 by 100/n points ("
        + ", ".join(f"1 in {n:,} = {100 / n:.3g} points" for n in ns)
        + "). Each model was probed once, on one seeded sample: differences of a few items are within that noise, "
        "and nothing is marked as better."
    )


def _best(best: Any) -> str:
    if not isinstance(best, Mapping) or best.get("acc1") is None:
        return DASH
    layer = best.get("layer")
    return _num(best.get("acc1")) + ("" if layer is None else f" (layer {layer})")


def read_probe_results(results: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, path in results.items():
        if not path.is_file():
            raise KbioxlmError(f"{path}: missing; run the probe.{name} step first")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise KbioxlmError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise KbioxlmError(f"{path}: expected a JSON object")
        out[name] = data
    return out


def add_compared(per_lang: dict[str, dict[str, dict[str, Any]]], compare: Mapping[str, Path], lang: str) -> list[str]:
    """Put other runs' probe results (``probe.compare``: label → ``probe.json``) beside this run's.

    Each must probe ``lang`` <-> one of ``per_lang``'s languages and carry the same term
    ``items_sha256`` as this run's probes of that pair: scores on other questions are not comparable,
    so a mismatch (or a file from before the digest) is an error, not a footnote. Returns the labels."""
    added = []
    for label, path in compare.items():
        if not path.is_file():
            raise KbioxlmError(f"{path}: missing; probe.compare {label!r} needs the other run's probe first")
        data = read_probe_results({label: path})[label]
        x = data.get("target_lang")
        if data.get("source_lang") != lang or x not in per_lang:
            raise KbioxlmError(
                f"{path}: probe.compare {label!r} probes {data.get('source_lang')}<->{x}; this run probes "
                + ", ".join(f"{lang}<->{y}" for y in per_lang)
            )
        got = _get(data.get("term_retrieval"), "items_sha256")
        want = {_get(r.get("term_retrieval"), "items_sha256") for r in per_lang[x].values()}
        if got is None or got not in want:
            why = (
                "it has no items_sha256 (probed by an older kbioxlm: run its probe again)"
                if got is None
                else "its items_sha256 differs: another held-out split, KB or sample"
            )
            raise KbioxlmError(
                f"{path}: probe.compare {label!r} did not probe the same {lang}<->{x} terms as this run; {why}"
            )
        per_lang[x][label] = data
        added.append(label)
    return added


def render_probe_markdown(
    models: Mapping[str, Mapping[str, Any]], langs: Sequence[str], labels: Mapping[str, str] | None = None
) -> str:
    a, b = langs[0], langs[1]
    ab, ba = f"{a}_{b}", f"{b}_{a}"
    arrow_ab, arrow_ba = f"{a}→{b}", f"{b}→{a}"
    labels = labels or {}
    header = [
        "Model",
        f"term acc@1 {arrow_ab}",
        f"term acc@1 {arrow_ba}",
        f"term MRR {arrow_ab}",
        f"term MRR {arrow_ba}",
        f"best layer {arrow_ab} (acc@1)",
        f"best layer {arrow_ba} (acc@1)",
        f"sentence acc@1 {arrow_ab}",
        f"sentence acc@1 {arrow_ba}",
        "n terms",
        "n sentences",
    ]
    # n terms / n sentences: the sample a score is out of ("of N" when the probe's cap sampled from N)
    rows = []
    layers = []
    for name, res in models.items():
        term, sent = res.get("term_retrieval"), res.get("sentence_retrieval")
        rows.append(
            [
                labels.get(name, name),
                _num(_get(term, ab, "acc1")),
                _num(_get(term, ba, "acc1")),
                _num(_get(term, ab, "mrr")),
                _num(_get(term, ba, "mrr")),
                _best(_get(term, "best_layer", ab)),
                _best(_get(term, "best_layer", ba)),
                _num(_get(sent, ab, "acc1")),
                _num(_get(sent, ba, "acc1")),
                _sample(term),
                _sample(sent),
            ]
        )
        if _get(term, "layer") is not None:
            layers.append(f"{labels.get(name, name)}: {_get(term, 'layer')}")
    lines = [
        "# Retrieval probe",
        "",
        f"Nearest-neighbour retrieval of {a}/{b} term translations (KB concept names) and, with parallel text, of "
        f"sentence translations, on frozen encoder embeddings (`kbioxlm probe`); acc@1 and MRR in percent, "
        f"from the model's last layer; best layer = the layer with the highest acc@1. "
        f'{DASH} = not measured. n = the items a score is out of ("of N": a sample of N, capped by --max-terms / '
        f"--max-sentences).",
        "",
        _resolution(models),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]
    if layers:
        lines += [f"Last layer (the term and sentence columns): {'; '.join(layers)}.", ""]
    return "\n".join(lines)


def plot_probe(
    models: Mapping[str, Mapping[str, Any]], langs: Sequence[str], path: Path, labels: Mapping[str, str] | None = None
) -> None:
    """Grouped bars: one group per model, one bar per direction (term acc@1), values on the bars."""
    # lazy: matplotlib, only for the chart
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    a, b = langs[0], langs[1]
    labels = labels or {}
    names = list(models)
    fig = Figure(figsize=(max(5.0, 1.4 * len(names) + 2), 3.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.38
    values: list[float] = []
    for j, (key, text) in enumerate(((f"{a}_{b}", f"{a}→{b}"), (f"{b}_{a}", f"{b}→{a}"))):
        vals = []
        for n in names:
            v = _get(models[n].get("term_retrieval"), key, "acc1")
            vals.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0)
        values += vals
        xs = [i + (j - 0.5) * width for i in range(len(names))]
        present = [isinstance(_get(models[n].get("term_retrieval"), key, "acc1"), (int, float)) for n in names]
        bars = ax.bar(xs, vals, width, label=text, edgecolor="black", linewidth=0.6)  # outlined: a 0.0 bar shows
        for bar, ok in zip(bars, present):
            bar.set_visible(ok)
        label_bars(ax, bars, [f"{v:.1f}" if ok else "n/a" for v, ok in zip(vals, present)])
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{labels.get(n, n)}\n(n={_count(_get(models[n].get('term_retrieval'), 'n'))})" for n in names])
    ax.set_ylim(-3.0, max(100.0, *values) * 1.08 if values else 100.0)
    ax.set_ylabel("term retrieval acc@1 (%)")
    ax.set_title(f"Term retrieval {a}↔{b}, last layer (acc@1, %)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_write(path, "wb", encoding=None) as fh:
        fig.savefig(fh, format="png", dpi=100, metadata={"Software": None})


def write_probe_report(
    results: Mapping[str, Path],
    root: Path,
    langs: Sequence[str],
    labels: Mapping[str, str] | None = None,
    compare: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """Read every ``probe.json`` (and ``compare``'s, other runs' models checked by :func:`add_compared`);
    write ``root/results.{json,md,png}``; return a short summary."""
    models = read_probe_results(results)
    if compare:
        per_lang = {langs[1]: models}
        add_compared(per_lang, compare, langs[0])
        models = per_lang[langs[1]]
    write_json(root / "results.json", {"models": models, "labels": dict(labels or {}), "languages": list(langs[:2])})
    with atomic_write(root / "results.md") as fh:
        fh.write(render_probe_markdown(models, langs, labels))
    plot_probe(models, langs, root / "results.png", labels)
    return {"models": len(models), "results": str(root / "results.md")}


def plot_multi_probe(
    per_lang: Mapping[str, Mapping[str, Mapping[str, Any]]],
    models: Sequence[str],
    lang: str,
    path: Path,
    labels: Mapping[str, str],
) -> None:
    """Grouped bars: one group per direction (``lang``→X, X→``lang`` for every X), one bar per model;
    a model not probed on a language has no bar there (and "n/a" on it)."""
    # lazy: matplotlib, only for the chart
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    dirs = [(x, f"{a}_{b}", f"{a}→{b}") for x in per_lang for a, b in ((lang, x), (x, lang))]
    fig = Figure(figsize=(max(6.0, 0.5 * len(dirs) * len(models) + 2.5), 3.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / max(1, len(models))
    handles = []
    for j, m in enumerate(models):
        vals, present = [], []
        for x, key, _ in dirs:
            v = _get(per_lang[x].get(m, {}).get("term_retrieval"), key, "acc1")
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            vals.append(float(v) if ok else 0.0)
            present.append(ok)
        xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(dirs))]
        bars = ax.bar(xs, vals, width, edgecolor="black", linewidth=0.6, color=f"C{j}")
        for bar, ok in zip(bars, present):
            bar.set_visible(ok)
        label_bars(ax, bars, [f"{v:.0f}" if ok else "n/a" for v, ok in zip(vals, present)], fontsize="x-small")
        # a legend entry of its own: the bars' first patch may be hidden (model not probed there)
        handles.append(Patch(facecolor=f"C{j}", edgecolor="black", linewidth=0.6, label=labels.get(m, m)))
    ax.set_xticks(range(len(dirs)))
    ax.set_xticklabels([text for _, _, text in dirs])
    ax.set_ylim(0.0, 118.0)  # room for the legend row above the bars
    ax.set_ylabel("term retrieval acc@1 (%)")
    ax.set_title(f"Held-out term retrieval {lang}↔X, last layer")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=handles, fontsize="small", loc="upper left", ncols=len(handles))
    fig.tight_layout()
    with atomic_write(path, "wb", encoding=None) as fh:
        fig.savefig(fh, format="png", dpi=100, metadata={"Software": None})


def write_multi_probe_report(
    results: Mapping[str, Mapping[str, Path]],
    root: Path,
    lang: str,
    labels: Mapping[str, str] | None = None,
    compare: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """``probe.langs`` (several languages X): every model's term acc@1 ``lang``→X and X→``lang`` for
    every X in one table and one chart. ``results``: X → model → ``probe.json`` (each X also has its
    own full report under ``root/X``); ``compare``: other runs' models (:func:`add_compared`). Writes
    ``root/results.{json,md,png}``."""
    labels = labels or {}
    per_lang = {x: read_probe_results(res) for x, res in results.items()}
    add_compared(per_lang, compare or {}, lang)
    models = list(dict.fromkeys(m for res in per_lang.values() for m in res))
    write_json(
        root / "results.json",
        {
            "languages": [lang, *per_lang],
            "labels": dict(labels),
            "models": {m: {x: res[m] for x, res in per_lang.items() if m in res} for m in models},
        },
    )
    header = ["Model"] + [f"{a}→{b}" for x in per_lang for a, b in ((lang, x), (x, lang))]
    rows = [
        [labels.get(m, m)]
        + [
            _num(_get(per_lang[x].get(m, {}).get("term_retrieval"), key, "acc1"))
            for x in per_lang
            for key in (f"{lang}_{x}", f"{x}_{lang}")
        ]
        for m in models
    ]
    ns = "; ".join(
        f"{x}: "
        + ", ".join(
            f"{labels.get(m, m)} {_sample(per_lang[x][m].get('term_retrieval'))}" for m in models if m in per_lang[x]
        )
        for x in per_lang
    )
    lines = [
        "# Retrieval probe, several languages",
        "",
        f"Term retrieval acc@1 (percent, last layer) between {lang} and each language, on the same held-out "
        f"concepts where they have names in both (`kbioxlm probe`; {DASH} = not measured). The full report of each "
        f"language (MRR, best layer, sentences) is in its folder: "
        + ", ".join(f"`{x}/results.md`" for x in per_lang)
        + ".",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        f"n terms per language and model: {ns}.",
        "",
    ]
    if compare:
        lines += [
            "From other runs (same held-out questions, checked by digest): "
            + "; ".join(f"{label}: `{os.path.relpath(path, root)}`" for label, path in compare.items())
            + ".",
            "",
        ]
    lines += ["![term retrieval per direction and model](results.png)", ""]
    with atomic_write(root / "results.md") as fh:
        fh.write("\n".join(lines))
    plot_multi_probe(per_lang, models, lang, root / "results.png", labels)
    return {"models": len(models), "languages": len(per_lang), "results": str(root / "results.md")}
