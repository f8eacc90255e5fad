"""Continued pretraining with knowledge-anchored objectives (docs/design.md,
"Pretraining").

Modules: :mod:`.vocab` (token counting, reduced output vocabulary, full vocabulary trimming),
:mod:`.model` (encoder + MLM head over a reduced vocabulary + passage-pair head),
:mod:`.export` (plain Hugging Face checkpoint with the full vocabulary restored), and the
collator/trainer written beside them.

This ``__init__`` stays import-light (no torch) so the CLI and data-only tools can import
:data:`PRETRAIN_TASKS` cheaply.
"""

from __future__ import annotations

PRETRAIN_TASKS: tuple[str, ...] = ("mlm", "entity", "fact", "passage", "align")
"""Pretraining tasks; a row's task id is the index into this tuple.

``mlm``: monolingual text (whole-word / whole-entity masking); ``entity``: code-switched entity
records; ``fact``: fact records (relation span masked); ``passage``: passage pairs (pair head; the
MLM tokens of passage rows are counted under ``mlm``); ``align``: a concept's names in two
languages (contrastive synonym alignment, symmetric InfoNCE over mean-pooled names; not in the
paper, see docs/pretrain.md).
"""

TASK_IDS: dict[str, int] = {name: i for i, name in enumerate(PRETRAIN_TASKS)}

__all__ = ["PRETRAIN_TASKS", "TASK_IDS"]
