"""Translation of labelled datasets with entity-anchored markers (docs/design.md, "Translation and LLM
baselines")."""
