"""The benchmark matrix as types: what a benchmark config asks for (:class:`BenchmarkConfig`: models ×
datasets × directions × settings × seeds) and one fine-tuning run of it (:class:`Cell`).

Read by the runner (:mod:`kbioxlm.tasks.benchmark`, which parses the YAML into these) and the report
(:mod:`kbioxlm.tasks.report`), which therefore do not import each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import protocols as P


def to_slug(text: str) -> str:
    """``text`` as a file-name part (a model's folder in the results)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str
    tokenizer: str | None = None

    @property
    def slug(self) -> str:
        return to_slug(self.name)


@dataclass
class BenchmarkConfig:
    """A parsed benchmark config (see docs/benchmark.md for the YAML form)."""

    models: list[ModelSpec]
    datasets: list[P.DatasetSpec]
    directions: list[tuple[str, str]] = field(default_factory=lambda: [("en", "zh"), ("zh", "en")])
    settings: list[tuple[str, int]] = field(default_factory=lambda: [("zero-shot", 0)])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    train_seed: int | None = None
    fewshot_mode: str = "add"
    fewshot_directions: list[tuple[str, str]] | None = None
    monolingual_langs: list[str] | None = None
    dev_policy: str = "heldout"
    finetune: dict[str, Any] = field(default_factory=dict)
    finetune_per_task: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_train_examples: int | None = None
    max_dev_examples: int | None = None
    max_test_examples: int | None = None
    source: str = "<config>"


@dataclass(frozen=True)
class Cell:
    """One fine-tuning run of the matrix."""

    model: ModelSpec
    dataset: P.DatasetSpec
    setting: str
    shots: int
    source: str
    target: str
    seed: int

    @property
    def direction(self) -> str:
        return f"{self.source}-{self.target}"

    @property
    def setting_name(self) -> str:
        return P.setting_name(self.setting, self.shots)

    @property
    def id(self) -> str:
        return f"{self.model.name}/{self.dataset.name}/{self.direction}/{self.setting_name}/seed{self.seed}"

    @property
    def folder(self) -> Path:
        return Path(self.model.slug) / self.dataset.name / self.direction / self.setting_name / f"seed{self.seed}"
