"""Translation of labelled datasets with entity-anchored markers (DESIGN.md section 7)."""
