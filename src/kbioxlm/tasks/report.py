"""Benchmark report: Markdown tables laid out like the paper's Tables 4-7, and a grouped bar chart.

Input is the list of ``results.jsonl`` records (one per finished cell). Scores are the fine-tuning
metrics in percent (``kbioxlm.tasks.metrics`` reports 0-100, like the paper). Several seeds of one
(model, dataset, direction, setting) become ``mean ± std`` (sample standard deviation, n-1). ``AVG``
is the mean over the datasets of a row/column, shown only when every dataset has a score; its ±
is the std over seeds of the per-seed averages when all datasets ran the same seeds.

Small test sets and one seed make differences of a few points noise, so the report states the caps
and the examples each cell used, bolds a best score only when the seeds support it
(:data:`BOLD_RULE`), and gives every model's paired-by-seed difference against the first compared
model (the ablation write-up's numbers).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write
from ..plotting import label_bars
from .matrix import BenchmarkConfig
from .protocols import LANG_LABELS

Key = tuple[str, str, str, int, str]  # model, dataset, setting, shots, direction
DASH = "–"


def lang_label(lang: str) -> str:
    """The paper's upper-case label of a language (``zh`` → ``CN``); the tables use the codes themselves."""
    return LANG_LABELS.get(lang, lang.upper())


def direction_label(direction: str) -> str:
    """``en-zh`` → ``en→zh``: the language codes of the run, as the command line and configs spell them."""
    s, t = direction.split("-", 1)
    return f"{s}→{t}"


Stat = tuple[float, float | None, int]  # mean, sample sd (None for one value), n


class Scores:
    """Per-seed scores indexed by (model, dataset, setting, shots, direction), and the cells' sizes."""

    def __init__(self, records: Iterable[dict[str, Any]]) -> None:
        self.by_key: dict[Key, dict[int, float]] = {}
        self.sizes: dict[tuple[str, str, int, str], dict[str, set[int]]] = {}  # (dataset, setting, shots, direction)
        self.models: list[str] = []
        self.datasets: list[str] = []
        self.labels: dict[str, str] = {}
        self.metrics: dict[str, str] = {}
        for r in records:
            if r.get("f1") is None:
                continue
            key = (r["model"], r["dataset"], r["setting"], int(r.get("shots") or 0), r["direction"])
            self.by_key.setdefault(key, {})[int(r["seed"])] = float(r["f1"])
            size = self.sizes.setdefault(key[1:], {"n_train": set(), "n_dev": set(), "n_test": set()})
            for k in size:
                if isinstance(r.get(k), int):
                    size[k].add(r[k])
            if r["model"] not in self.models:
                self.models.append(r["model"])
            if r["dataset"] not in self.datasets:
                self.datasets.append(r["dataset"])
            self.labels.setdefault(r["dataset"], r.get("dataset_label") or r["dataset"])
            if r.get("metric"):
                self.metrics.setdefault(r["dataset"], str(r["metric"]))

    def directions(self, setting: str, shots: int | None = None) -> list[str]:
        out: list[str] = []
        for _m, _d, s, k, di in self.by_key:
            if s == setting and (shots is None or k == shots) and di not in out:
                out.append(di)
        return out

    def shots(self) -> list[int]:
        return sorted({k for (_, _, s, k, _) in self.by_key if s == "few-shot"})

    def panels(self) -> list[tuple[str, int, str]]:
        """Every (setting, shots, direction) with scores, in the order of the paper's tables."""
        out = []
        for setting in ("zero-shot", "few-shot", "monolingual"):
            for k in self.shots() if setting == "few-shot" else [0]:
                out += [(setting, k, di) for di in self.directions(setting, k)]
        return out

    def seeds(self, model: str, dataset: str, setting: str, shots: int, direction: str) -> dict[int, float]:
        return self.by_key.get((model, dataset, setting, shots, direction), {})

    def cell(self, model: str, dataset: str, setting: str, shots: int, direction: str) -> Stat | None:
        vals = self.seeds(model, dataset, setting, shots, direction)
        return summarize(list(vals.values())) if vals else None

    def avg_seeds(
        self, model: str, datasets: Sequence[str], setting: str, shots: int, direction: str
    ) -> dict[int, float]:
        """Per seed, the mean over ``datasets`` (only the seeds every dataset ran)."""
        per = [self.seeds(model, d, setting, shots, direction) for d in datasets]
        if not per or any(not p for p in per):
            return {}
        common = set.intersection(*(set(p) for p in per))
        return {s: statistics.fmean(p[s] for p in per) for s in sorted(common)}

    def avg(self, model: str, datasets: Sequence[str], setting: str, shots: int, direction: str) -> Stat | None:
        per = [self.seeds(model, d, setting, shots, direction) for d in datasets]
        if not per or any(not p for p in per):
            return None
        means = [statistics.fmean(p.values()) for p in per]
        seed_sets = {frozenset(p) for p in per}
        std = None
        n = min(len(p) for p in per)
        if len(seed_sets) == 1 and n >= 2:
            std = statistics.stdev(self.avg_seeds(model, datasets, setting, shots, direction).values())
        return statistics.fmean(means), std, n

    def entry(
        self, model: str, dataset: str | None, datasets: Sequence[str], setting: str, shots: int, direction: str
    ) -> tuple[Stat | None, dict[int, float]]:
        """(summary, per-seed scores) of one dataset, or of the AVG over ``datasets`` when ``dataset`` is None."""
        if dataset is None:
            return self.avg(model, datasets, setting, shots, direction), self.avg_seeds(
                model, datasets, setting, shots, direction
            )
        return self.cell(model, dataset, setting, shots, direction), self.seeds(
            model, dataset, setting, shots, direction
        )


def summarize(values: Sequence[float]) -> Stat:
    """(mean, sample std or None for one value, n)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) >= 2 else None), len(values)


def paired_difference(a: dict[int, float], b: dict[int, float]) -> Stat | None:
    """Mean and sample sd over the seeds both ran of ``a[seed] - b[seed]`` (None below two shared seeds)."""
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None
    return summarize([a[s] - b[s] for s in common])


def supported(a: dict[int, float], b: dict[int, float]) -> bool:
    """``a`` is better than ``b`` by the report's rule: >= 2 shared seeds, mean paired difference > its sd."""
    d = paired_difference(a, b)
    return d is not None and d[1] is not None and d[0] > d[1]


BOLD_RULE = (
    "Bold: the best mean of a row (Table 4 layout) or column (the other layouts), only when it ran on at "
    "least 2 seeds shared with every other model there and, against each of them, the mean of the paired "
    "(same-seed) differences exceeds their sample sd; with one seed nothing is bold."
)


def fmt(stat: Stat | None, bold: bool = False) -> str:
    if stat is None:
        return DASH
    mean, std, _ = stat
    text = f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"
    return f"**{text}**" if bold else text


def _row_cells(entries: list[tuple[Stat | None, dict[int, float]]]) -> list[str]:
    """Format scores that compete (one per model), bolding the best only when the seeds support it."""
    present = [i for i, (st, _) in enumerate(entries) if st is not None]
    best: int | None = None
    if len(present) >= 2:
        top = max(entries[i][0][0] for i in present)  # type: ignore[index]
        winners = [i for i in present if entries[i][0][0] == top]  # type: ignore[index]
        if len(winners) == 1 and all(
            supported(entries[winners[0]][1], entries[j][1]) for j in present if j != winners[0]
        ):
            best = winners[0]
    return [fmt(st, bold=i == best) for i, (st, _) in enumerate(entries)]


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
        for d in [*datasets, None]:
            cells = _row_cells([sc.entry(m, d, datasets, "zero-shot", 0, di) for m in models])
            rows.append([direction_label(di), sc.labels[d] if d else "AVG", *cells])
    return _table(["Direction", "Dataset", *models], rows)


def _by_model_block(
    sc: Scores, models: list[str], datasets: list[str], setting: str, shots: int, di: str
) -> list[list[str]]:
    """Rows = models, columns = datasets + AVG; the best of each column in bold (when supported)."""
    cols = [_row_cells([sc.entry(m, d, datasets, setting, shots, di) for m in models]) for d in [*datasets, None]]
    return [[m, *(c[i] for c in cols)] for i, m in enumerate(models)]


def zero_shot_by_model_table(sc: Scores, models: list[str], datasets: list[str]) -> str | None:
    """Table 7 layout (ablations): per direction, rows = models, columns = datasets (+ AVG)."""
    dirs = sc.directions("zero-shot")
    if not dirs:
        return None
    header = ["Model", *[sc.labels[d] for d in datasets], "AVG"]
    return "\n\n".join(
        f"*{direction_label(di)}*\n\n" + _table(header, _by_model_block(sc, models, datasets, "zero-shot", 0, di))
        for di in dirs
    )


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
        parts = [_by_model_block(sc, models, datasets, "few-shot", k, di) for k in ks]
        rows = [[m] + [c for part in parts for c in part[i][1:]] for i, m in enumerate(models)]
        blocks.append(f"*{direction_label(di)}*\n\n" + _table(header, rows))
    return "\n\n".join(blocks)


def monolingual_table(sc: Scores, models: list[str], datasets: list[str]) -> str | None:
    """Table 6: rows = (en→en | zh→zh) × models, columns = datasets + AVG."""
    dirs = sc.directions("monolingual")
    if not dirs:
        return None
    rows = []
    for di in dirs:
        rows += [[direction_label(di), *r] for r in _by_model_block(sc, models, datasets, "monolingual", 0, di)]
    return _table(["Setting", "Model", *[sc.labels[d] for d in datasets], "AVG"], rows)


def _signed(stat: Stat | None) -> str:
    if stat is None:
        return DASH
    mean, sd, n = stat
    return f"{mean:+.2f} ± {sd or 0.0:.2f} (n={n})"


def paired_table(sc: Scores, models: list[str], datasets: list[str]) -> str | None:
    """Per (setting, direction): each model minus the first compared model, seed by seed (mean ± sd)."""
    if len(models) < 2 or not any(len(v) >= 2 for v in sc.by_key.values()):
        return None
    ref = models[0]
    blocks = []
    for setting, k, di in sc.panels():
        rows = []
        for m in models[1:]:
            cells = [
                _signed(
                    paired_difference(
                        sc.entry(m, d, datasets, setting, k, di)[1], sc.entry(ref, d, datasets, setting, k, di)[1]
                    )
                )
                for d in [*datasets, None]
            ]
            rows.append([f"{m} − {ref}", *cells])
        title = f"*{_panel_setting(setting, k)} {direction_label(di)}*"
        blocks.append(title + "\n\n" + _table(["Difference", *[sc.labels[d] for d in datasets], "AVG"], rows))
    return "\n\n".join(blocks)


def _count_range(values: set[int]) -> str:
    if not values:
        return DASH
    lo, hi = min(values), max(values)
    return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"


def sizes_table(sc: Scores, datasets: list[str]) -> str | None:
    """Examples each cell used (train / dev / test), per (setting, direction) and dataset."""
    rows = []
    for setting, k, di in sc.panels():
        cells = []
        for d in datasets:
            size = sc.sizes.get((d, setting, k, di))
            cells.append(
                DASH if size is None else " / ".join(_count_range(size[x]) for x in ("n_train", "n_dev", "n_test"))
            )
        rows.append([f"{_panel_setting(setting, k)} {direction_label(di)}", *cells])
    return _table(["Cells", *[sc.labels[d] for d in datasets]], rows) if rows else None


def caps_line(cfg: BenchmarkConfig | None) -> str:
    """The example caps of the config (``max_*_examples``), stated with the tables they shape."""
    if cfg is None:
        return "Caps on the examples per cell: not recorded (report written without the config)."

    def cap(v: int | None, what: str) -> str:
        return f"{what} {'none (all)' if v is None else f'{v:,}'}"

    return (
        "Caps on the examples per cell (max_train_examples / max_dev_examples / max_test_examples): "
        + ", ".join(
            (cap(cfg.max_train_examples, "train"), cap(cfg.max_dev_examples, "dev"), cap(cfg.max_test_examples, "test"))
        )
        + "."
    )


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
        f"mean ± sample sd over seeds (seeds per score: {', '.join(map(str, n_seeds)) or '0'}). "
        f"{DASH} = not run (yet). AVG only when every dataset of the row has a score. Directions are "
        "source→target language codes.",
        "",
        caps_line(cfg),
        "",
        BOLD_RULE,
        "",
    ]
    sections = [
        ("Cross-lingual zero-shot (layout of Table 4)", zero_shot_table(sc, models, datasets)),
        (
            "Cross-lingual zero-shot per model (layout of Table 7, ablations)",
            zero_shot_by_model_table(sc, models, datasets),
        ),
        ("Cross-lingual few-shot (layout of Table 5)", fewshot_table(sc, models, datasets)),
        ("Monolingual (layout of Table 6)", monolingual_table(sc, models, datasets)),
    ]
    for title, body in sections:
        if body:
            parts += [f"## {title}", "", body, ""]
    paired = paired_table(sc, models, datasets)
    if paired:
        parts += [
            f"## Paired differences against {models[0]}",
            "",
            f"Each model's score minus {models[0]}'s on the same seed (same data, same sampling), then mean ± "
            f"sample sd over the seeds both ran (n); {DASH} = fewer than 2 shared seeds. A difference whose mean "
            "does not exceed its sd is within the seed-to-seed noise.",
            "",
            paired,
            "",
        ]
    sizes = sizes_table(sc, datasets)
    if sizes:
        parts += [
            "## Examples per cell",
            "",
            "train / dev / test examples each cell used (a range when models or seeds "
            "differ); scores on a few dozen test examples move by several points per example.",
            "",
            sizes,
            "",
        ]
    return "\n".join(parts)


def plot(records: Sequence[dict[str, Any]], path: str | os.PathLike[str], cfg: BenchmarkConfig | None = None) -> None:
    """Write :func:`figure` as a PNG (atomically)."""
    fig = figure(records, cfg)
    with atomic_write(path, "wb", encoding=None) as fh:
        fig.savefig(fh, format="png", dpi=100, metadata={"Software": None})


def figure(records: Sequence[dict[str, Any]], cfg: BenchmarkConfig | None = None) -> Any:
    """Grouped bars: one panel per (setting, direction), datasets (+ AVG) on x, one bar per model.

    Every bar carries its value; a 0.00 score is drawn as a visible outlined bar at zero (a missing
    score is labelled ``n/a``, not drawn as 0); error bars (± sample sd) only where two or more seeds ran.
    """
    # The object-oriented API with the Agg canvas: no pyplot global state, no display needed.
    # lazy: matplotlib, only for the chart
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sc = Scores(records)
    models = _order(sc.models, [m.name for m in cfg.models] if cfg else None)
    datasets = _order(sc.datasets, [d.name for d in cfg.datasets] if cfg else None)
    panels = [(f"{_panel_setting(setting, k)} {direction_label(di)}", setting, k, di) for setting, k, di in sc.panels()]
    n = max(1, len(panels))
    fig = Figure(figsize=(max(6.0, 1.6 * (len(datasets) + 1) * max(1, len(models)) / 2), 3.4 * n))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    width = 0.8 / max(1, len(models))
    groups: list[str | None] = [*datasets, None]
    for ax, (title, setting, k, di) in zip(axes, panels):
        top = 0.0
        for j, m in enumerate(models):
            stats = [sc.entry(m, d, datasets, setting, k, di)[0] for d in groups]
            xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(groups))]
            heights = [st[0] if st else 0.0 for st in stats]
            bars = ax.bar(xs, heights, width, label=m, edgecolor="black", linewidth=0.6)
            for bar, st in zip(bars, stats):
                if st is None:
                    bar.set_visible(False)
            label_bars(
                ax,
                bars,
                [fmt(st).split(" ")[0] if st else "n/a" for st in stats],
                fontsize="x-small",
                rotation=90 if len(models) > 3 else 0,
            )
            err = [(x, st[0], st[1]) for x, st in zip(xs, stats) if st is not None and st[1] is not None]
            if err:
                ax.errorbar(
                    [e[0] for e in err],
                    [e[1] for e in err],
                    yerr=[e[2] for e in err],
                    fmt="none",
                    ecolor="black",
                    capsize=2,
                    linewidth=0.8,
                )
            top = max([top, *(st[0] + (st[1] or 0.0) for st in stats if st)])
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([sc.labels.get(d, d) if d else "AVG" for d in groups])
        ax.set_ylabel("F1 × 100")
        ax.set_ylim(-3.0, max(100.0, top * 1.12))
        n_seeds = sorted({len(sc.seeds(m, d, setting, k, di)) for m in models for d in datasets} - {0})
        seeds = "/".join(map(str, n_seeds)) or "0"
        ax.set_title(
            f"{title} ({seeds} seed{'s' if n_seeds != [1] else ''}"
            f"{'; bars ± sample sd' if any(x >= 2 for x in n_seeds) else ''})"
        )
        ax.grid(axis="y", alpha=0.3)
    if panels:
        axes[0].legend(fontsize="small", ncol=min(4, len(models)))
    else:
        axes[0].text(0.5, 0.5, "no finished cells", ha="center", va="center")
    fig.tight_layout()
    return fig


def _panel_setting(setting: str, shots: int) -> str:
    return f"{shots}-shot" if setting == "few-shot" else setting


def write_report(
    out: str | os.PathLike[str], records: Sequence[dict[str, Any]], cfg: BenchmarkConfig | None = None
) -> tuple[Path, Path]:
    """Write ``out/results.md`` and ``out/results.png`` atomically; returns their paths."""
    out = Path(out)
    md, png = out / "results.md", out / "results.png"
    with atomic_write(md) as fh:
        fh.write(render_markdown(records, cfg))
    plot(records, png, cfg)
    return md, png
