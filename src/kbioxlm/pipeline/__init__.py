"""``kbioxlm pipeline``: the whole method end to end from one YAML config, resumable.

KB imports (→ held-out concepts) → Document/pair conversion → entity/fact/passage(/align) corpora →
(vocabulary reduction) → pretraining stage(s) → export → (retrieval probe) → benchmark of the base
and the pretrained model(s) side by side.
Every step is a documented ``kbioxlm`` command (printed so it can be copied) or one of two small
conversions; finished steps are skipped on re-run.
"""

from .cli import register

__all__ = ["register"]
