"""``kbioxlm demo``: the whole method end to end on the small data the project ships."""

from .cli import register

__all__ = ["register"]
