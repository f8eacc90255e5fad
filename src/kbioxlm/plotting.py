"""Bar-chart conventions shared by the benchmark, probe and demo charts.

Every bar carries its value, and a bar of height 0 is still drawn: a thick stroke in the bar's colour
on the zero line. A zero score is a result (the model learned nothing there), not a missing bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def label_bars(ax: Any, bars: Any, labels: Sequence[str], **kw: Any) -> None:
    """Write ``labels`` above ``bars`` and make every visible zero-height bar a visible stroke at 0."""
    ax.bar_label(bars, labels=list(labels), padding=2, **({"fontsize": "small"} | kw))
    for bar in bars:
        if bar.get_visible() and bar.get_height() == 0:
            x = bar.get_x()
            ax.hlines(0.0, x, x + bar.get_width(), colors=[bar.get_facecolor()], linewidth=4, zorder=3)
