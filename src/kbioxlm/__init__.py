"""kbioxlm: knowledge-anchored cross-lingual biomedical encoders.

Stages (one package each) talk through the JSONL record schemas in :mod:`kbioxlm.schema`:
``kb`` → ``corpus`` → ``pretrain`` → ``tasks``; ``translate`` and ``llm`` sit beside them (sharing
:mod:`kbioxlm.chat`). The package dependencies are drawn in docs/design.md.
"""

__version__ = "0.1.0"
