"""Knowledge base: a bilingual concept/name/relation store in SQLite, its importers and matcher."""

from .store import KnowledgeBase

__all__ = ["KnowledgeBase"]
