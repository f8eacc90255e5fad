"""Prompted LLM baselines and the OpenAI-compatible client (DESIGN.md section 7)."""
