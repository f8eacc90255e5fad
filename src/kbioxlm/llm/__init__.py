"""Prompted LLM baselines (docs/design.md, "Translation and LLM baselines"); the client, cache and
prompt templates they share with translation are in :mod:`kbioxlm.chat`."""
