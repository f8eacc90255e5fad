"""Benchmark report: Markdown tables laid out like the paper's Tables 4-7, and a grouped bar chart.

Input is the list of ``results.jsonl`` records (one per finished cell). Scores are the fine-tuning
metrics in percent (``kbioxlm.tasks.metrics`` reports 0-100, like the paper). Several seeds of one
(model, dataset, direction, setting) become ``mean ± std`` (sample standard deviation, n-1). ``AVG``
is the mean over the datasets of a row/column, shown only when every dataset has a score; its ±
is the std over seeds of the per-seed averages when all datasets ran the same seeds.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io import atomic_write
from .protocols import LANG_LABELS

if TYPE_CHECKING:  # pragma: no cover
    from .benchmark import BenchmarkConfig

Key = tuple[str, str, str, int, str]  # model, dataset, setting, shots, direction
DASH = "–"


def lang_label(lang: str) -> str:
    return LANG_LABELS.get(lang, lang.upper())


def direction_label(direction: str) -> str:
    """``en-zh`` → ``EN-to-CN`` (the paper's wording)."""
    s, t = direction.split("-", 1)
    return f"{lang_label(s)}-to-{lang_label(t)}"


class Scores:
    """Per-seed scores indexed by (model, dataset, setting, shots, direction)."""

    def __init__(self, records: Iterable[dict[str, Any]]) -> None:
        self.by_key: dict[Key, dict[int, float]] = {}
        self.models: list[str] = []
        self.datasets: list[str] = []
        self.labels: dict[str, str] = {}
        self.metrics: dict[str, str] = {}
        for r in records:
            if r.get("f1") is None:
                continue
            key = (r["model"], r["dataset"], r["setting"], int(r.get("shots") or 0), r["direction"])
            self.by_key.setdefault(key, {})[int(r["seed"])] = float(r["f1"])
            if r["model"] not in self.models:
                self.models.append(r["model"])
            if r["dataset"] not in self.datasets:
                self.datasets.append(r["dataset"])
            self.labels.setdefault(r["dataset"], r.get("dataset_label") or r["dataset"])
            if r.get("metric"):
                self.metrics.setdefault(r["dataset"], str(r["metric"]))

    def directions(self, setting: str, shots: int | None = None) -> list[str]:
        out: list[str] = []
        for m, d, s, k, di in self.by_key:
            if s == setting and (shots is None or k == shots) and di not in out:
                out.append(di)
        return out

    def shots(self) -> list[int]:
        return sorted({k for (_, _, s, k, _) in self.by_key if s == "few-shot"})

    def seeds(self, model: str, dataset: str, setting: str, shots: int, direction: str) -> dict[int, float]:
        return self.by_key.get((model, dataset, setting, shots, direction), {})

    def cell(self, model: str, dataset: str, setting: str, shots: int, direction: str) -> tuple[float, float | None, int] | None:
        vals = self.seeds(model, dataset, setting, shots, direction)
        return summarize(list(vals.values())) if vals else None

    def avg(self, model: str, datasets: Sequence[str], setting: str, shots: int, direction: str) -> tuple[float, float | None, int] | None:
        per = [self.seeds(model, d, setting, shots, direction) for d in datasets]
        if not per or any(not p for p in per):
            return None
        means = [statistics.fmean(p.values()) for p in per]
        seed_sets = {frozenset(p) for p in per}
        std = None
        n = min(len(p) for p in per)
        if len(seed_sets) == 1 and n >= 2:
            seeds = sorted(next(iter(seed_sets)))
            std = statistics.stdev(statistics.fmean(p[s] for p in per) for s in seeds)
        return statistics.fmean(means), std, n


def summarize(values: Sequence[float]) -> tuple[float, float | None, int]:
    """(mean, sample std or None for one value, n)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) >= 2 else None), len(values)


def fmt(stat: tuple[float, float | None, int] | None, bold: bool = False) -> str:
    if stat is None:
        return DASH
    mean, std, _ = stat
    text = f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"
    return f"**{text}**" if bold else text


def _row_cells(stats: list[tuple[float, float | None, int] | None]) -> list[str]:
    """Format a row, bolding the best mean like the paper (only when two or more are present)."""
    present = [s[0] for s in stats if s is not None]
    best = max(present) if len(present) >= 2 else None
    return [fmt(s, bold=best is not None and s is not None and s[0] == best) for s in stats]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _order(seen: list[str], preferred: Sequence[str] | None) -> list[str]:
    if not preferred:
        return list(seen)
    return [x for x in preferred if x in seen] + [x for x in seen if x not in preferred]


def zero_shot_table(sc: Scores, models: list[str], datasets: list[str]) -> str | None:
    """Table 4: rows = direction × dataset (+ AVG), columns = models."""
    dirs = sc.directions("zero-shot")
    if not dirs:
        return None
    rows = []
    for di in dirs:
        for d in datasets:
            rows.append([direction_label(di), sc.labels[d]] + _row_cells([sc.cell(m, d, "zero-shot", 0, di) for m in models]))
        rows.append([direction_label(di), "AVG"] + _row_cells([sc.avg(m, datasets, "zero-shot", 0, di) for m in models]))
    return _table(["Direction", "Dataset", *models], rows)


def zero_shot_by_model_table(sc: Scores, models: list[str], datasets: list[str]) -> str | None:
    """Table 7 layout (ablations): per direction, rows = models, columns = datasets (+ AVG)."""
    dirs = sc.directions("zero-shot")
    if not dirs:
        return None
    blocks = []
    for di in dirs:
        rows = [[m] + [fmt(sc.cell(m, d, "zero-shot", 0, di)) for d in datasets]
                + [fmt(sc.avg(m, datasets, "zero-shot", 0, di))] for m in models]
        # bold the best per column like Table 7
        for col in range(1, len(datasets) + 2):
            stats = [sc.cell(m, datasets[col - 1], "zero-shot", 0, di) if col <= len(datasets)
                     else sc.avg(m, datasets, "zero-shot", 0, di) for m in models]
            for r, cell in zip(rows, _row_cells(stats)):
                r[col] = cell
        blocks.append(f"*{direction_label(di)}*\n\n" + _table(["Model", *[sc.labels[d] for d in datasets], "AVG"], rows))
    return "\n\n".join(blocks)


def fewshot_table(sc: Scores, models: list[str], datasets: list[str]) -> str | None:
    """Table 5: per direction, rows = models, columns = (K-shot × datasets + AVG) for each K."""
    ks = sc.shots()
    if not ks:
        return None
    blocks = []
    for di in sc.directions("few-shot"):
        header = ["Model"]
        for k in ks:
            header += [f"{k}-shot {sc.labels[d]}" for d in datasets] + [f"{k}-shot AVG"]
        cols: list[list[tuple[float, float | None, int] | None]] = []
        for k in ks:
            cols += [[sc.cell(m, d, "few-shot", k, di) for m in models] for d in datasets]
            cols.append([sc.avg(m, datasets, "few-shot", k, di) for m in models])
        formatted = [_row_cells(c) for c in cols]
        rows = [[m] + [formatted[c][i] for c in range(len(cols))] for i, m in enumerate(models)]
        blocks.append(f"*{direction_label(di)}*\n\n" + _table(header, rows))
    return "\n\n".join(blocks)


def monolingual_table(sc: Scores, models: list[str], datasets: list[str]) -> str | None:
    """Table 6: rows = (EN-to-EN | CN-to-CN) × models, columns = datasets + AVG."""
    dirs = sc.directions("monolingual")
    if not dirs:
        return None
    rows = []
    for di in dirs:
        cols = [[sc.cell(m, d, "monolingual", 0, di) for m in models] for d in datasets]
        cols.append([sc.avg(m, datasets, "monolingual", 0, di) for m in models])
        formatted = [_row_cells(c) for c in cols]
        rows += [[direction_label(di), m] + [formatted[c][i] for c in range(len(cols))] for i, m in enumerate(models)]
    return _table(["Setting", "Model", *[sc.labels[d] for d in datasets], "AVG"], rows)


def render_markdown(records: Sequence[dict[str, Any]], cfg: BenchmarkConfig | None = None) -> str:
    sc = Scores(records)
    models = _order(sc.models, [m.name for m in cfg.models] if cfg else None)
    datasets = _order(sc.datasets, [d.name for d in cfg.datasets] if cfg else None)
    n_seeds = sorted({len(v) for v in sc.by_key.values()})
    metrics = ", ".join(f"{sc.labels[d]}: {sc.metrics.get(d, 'f1')}" for d in datasets)
    parts = [
        "# Benchmark results",
        "",
        f"{len(records)} finished cell{'' if len(records) == 1 else 's'}. Scores are F1 × 100 ({metrics}); several seeds are shown as "
        f"mean ± sample std (seeds per score: {', '.join(map(str, n_seeds)) or '0'}). "
        f"{DASH} = not run (yet). AVG only when every dataset of the row has a score. Best of a row in bold.",
        "",
    ]
    sections = [
        ("Cross-lingual zero-shot (layout of Table 4)", zero_shot_table(sc, models, datasets)),
        ("Cross-lingual zero-shot per model (layout of Table 7, ablations)", zero_shot_by_model_table(sc, models, datasets)),
        ("Cross-lingual few-shot (layout of Table 5)", fewshot_table(sc, models, datasets)),
        ("Monolingual (layout of Table 6)", monolingual_table(sc, models, datasets)),
    ]
    for title, body in sections:
        if body:
            parts += [f"## {title}", "", body, ""]
    return "\n".join(parts)


def plot(records: Sequence[dict[str, Any]], path: str | os.PathLike[str], cfg: BenchmarkConfig | None = None) -> None:
    """Grouped bars: one panel per (setting, direction), datasets (+ AVG) on x, one bar per model."""
    # The object-oriented API with the Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sc = Scores(records)
    models = _order(sc.models, [m.name for m in cfg.models] if cfg else None)
    datasets = _order(sc.datasets, [d.name for d in cfg.datasets] if cfg else None)
    panels: list[tuple[str, str, int, str]] = []
    for setting in ("zero-shot", "few-shot", "monolingual"):
        ks = sc.shots() if setting == "few-shot" else [0]
        for k in ks:
            for di in sc.directions(setting, k):
                title = f"{_panel_setting(setting, k)} {direction_label(di)}"
                panels.append((title, setting, k, di))
    n = max(1, len(panels))
    fig = Figure(figsize=(max(6.0, 1.6 * (len(datasets) + 1) * max(1, len(models)) / 2), 3.2 * n))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    width = 0.8 / max(1, len(models))
    groups = datasets + ["AVG"]
    for ax, (title, setting, k, di) in zip(axes, panels):
        for j, m in enumerate(models):
            means, errs = [], []
            for d in groups:
                st = sc.avg(m, datasets, setting, k, di) if d == "AVG" else sc.cell(m, d, setting, k, di)
                means.append(st[0] if st else 0.0)
                errs.append((st[1] or 0.0) if st else 0.0)
            xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(groups))]
            ax.bar(xs, means, width, yerr=errs, capsize=2, label=m)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([sc.labels.get(d, d) for d in groups])
        ax.set_ylabel("F1 × 100")
        ax.set_ylim(0, 100)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    if panels:
        axes[0].legend(fontsize="small", ncol=min(4, len(models)))
    else:
        axes[0].text(0.5, 0.5, "no finished cells", ha="center", va="center")
    fig.tight_layout()
    with atomic_write(path, "wb", encoding=None) as fh:
        fig.savefig(fh, format="png", dpi=100, metadata={"Software": None})


def _panel_setting(setting: str, shots: int) -> str:
    return f"{shots}-shot" if setting == "few-shot" else setting


def write_report(out: str | os.PathLike[str], records: Sequence[dict[str, Any]],
                 cfg: BenchmarkConfig | None = None) -> tuple[Path, Path]:
    """Write ``out/results.md`` and ``out/results.png`` atomically; returns their paths."""
    out = Path(out)
    md, png = out / "results.md", out / "results.png"
    with atomic_write(md) as fh:
        fh.write(render_markdown(records, cfg))
    plot(records, png, cfg)
    return md, png
