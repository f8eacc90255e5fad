"""Cross-lingual alignment probes (``kbioxlm probe``): term and sentence retrieval, per layer.

Import-light: torch, numpy and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

from .retrieval import PROBE_FILE, embed_layers, format_summary, load_encoder, retrieval_scores, run_probe

__all__ = ["PROBE_FILE", "embed_layers", "format_summary", "load_encoder", "retrieval_scores", "run_probe"]
