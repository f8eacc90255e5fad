"""Corpus stage: entity code-switching, fact appending and passage pairing (docs/design.md,
"Corpus semantics").

Builders stream documents, run over ``--num-workers`` processes in input order, derive each
document's randomness from ``--seed`` and its id, and write through ``io.atomic_write``.
"""
