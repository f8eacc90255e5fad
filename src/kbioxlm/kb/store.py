"""The embedded knowledge base (``kb.sqlite``), schema in docs/design.md, "Knowledge base".

SQLite because it is in the standard library, needs no server, and a KB of millions of names is a
single file users can copy. Importers replace everything of their ``source`` on re-import, which
makes every import idempotent.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import KbioxlmError

SCHEMA = """
CREATE TABLE IF NOT EXISTS concept(id TEXT PRIMARY KEY, type TEXT, source TEXT);
CREATE TABLE IF NOT EXISTS name(
    concept_id TEXT NOT NULL, lang TEXT NOT NULL, text TEXT NOT NULL,
    is_preferred INTEGER NOT NULL DEFAULT 0, source TEXT,
    UNIQUE(concept_id, lang, text, source));
CREATE TABLE IF NOT EXISTS relation(
    head_id TEXT NOT NULL, rel TEXT NOT NULL, tail_id TEXT NOT NULL, source TEXT,
    UNIQUE(head_id, rel, tail_id, source));
CREATE TABLE IF NOT EXISTS relation_name(rel TEXT NOT NULL, lang TEXT NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY(rel, lang));
CREATE TABLE IF NOT EXISTS pair(
    concept_id TEXT NOT NULL, type TEXT, lang_a TEXT NOT NULL, text_a TEXT NOT NULL,
    lang_b TEXT NOT NULL, text_b TEXT NOT NULL, count INTEGER NOT NULL, source TEXT,
    UNIQUE(lang_a, text_a, lang_b, text_b, type, source));
CREATE TABLE IF NOT EXISTS xref(
    concept_id TEXT NOT NULL, db TEXT NOT NULL, xref_id TEXT NOT NULL, source TEXT,
    UNIQUE(concept_id, db, xref_id, source));
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE INDEX IF NOT EXISTS name_lang_text ON name(lang, text);
CREATE INDEX IF NOT EXISTS name_concept ON name(concept_id, lang);
CREATE INDEX IF NOT EXISTS relation_head_tail ON relation(head_id, tail_id);
CREATE INDEX IF NOT EXISTS xref_db_id ON xref(db, xref_id);
"""


class KnowledgeBase:
    """A connection to ``kb.sqlite`` with the few queries the pipeline needs.

    Use as a context manager; writes happen in one transaction per importer call.
    """

    def __init__(self, path: str | os.PathLike[str], create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise KbioxlmError(f"{self.path}: knowledge base not found (build it with `kbioxlm kb import ...`)")
        if self.path.is_dir():
            raise KbioxlmError(f"{self.path}: is a folder, expected a knowledge base file")
        if create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise KbioxlmError(
                    f"{self.path}: cannot create its folder {self.path.parent} ({exc.strerror or exc})"
                ) from exc
            if not self.path.exists() and not os.access(self.path.parent, os.W_OK | os.X_OK):
                raise KbioxlmError(f"{self.path}: cannot write in {self.path.parent} (permission denied)")
        try:
            self.conn = sqlite3.connect(self.path)
            self.conn.executescript(SCHEMA)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.OperationalError as exc:
            what = "cannot create it" if create and not self.path.exists() else "cannot open it"
            raise KbioxlmError(f"{self.path}: {what} ({exc})") from exc
        except sqlite3.DatabaseError as exc:
            raise KbioxlmError(f"{self.path}: not a kbioxlm knowledge base ({exc})") from exc

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # ---- writing -------------------------------------------------------------------------
    def delete_source(self, source: str) -> None:
        """Remove everything an importer wrote under ``source`` (re-import replaces it)."""
        c = self.conn
        c.execute("DELETE FROM name WHERE source = ?", (source,))
        c.execute("DELETE FROM relation WHERE source = ?", (source,))
        c.execute("DELETE FROM pair WHERE source = ?", (source,))
        c.execute("DELETE FROM xref WHERE source = ?", (source,))
        c.execute("DELETE FROM meta WHERE key = ?", (f"source:{source}",))
        c.execute("DELETE FROM concept WHERE source = ?", (source,))

    def add_concepts(self, rows: Iterable[tuple[str, str | None, str]]) -> None:
        """Rows of ``(id, type, source)``; an existing id keeps its first source."""
        self.conn.executemany("INSERT OR IGNORE INTO concept(id, type, source) VALUES (?, ?, ?)", rows)

    def add_names(self, rows: Iterable[tuple[str, str, str, int, str]]) -> None:
        """Rows of ``(concept_id, lang, text, is_preferred, source)``."""
        self.conn.executemany(
            "INSERT OR IGNORE INTO name(concept_id, lang, text, is_preferred, source) VALUES (?, ?, ?, ?, ?)", rows
        )

    def add_relations(self, rows: Iterable[tuple[str, str, str, str]]) -> None:
        """Rows of ``(head_id, rel, tail_id, source)``."""
        self.conn.executemany("INSERT OR IGNORE INTO relation(head_id, rel, tail_id, source) VALUES (?, ?, ?, ?)", rows)

    def upsert_names(self, rows: Iterable[tuple[str, str, str, int, str]]) -> None:
        """Like :meth:`add_names`, but a repeated name becomes preferred if any of its rows is.

        UMLS lists the same string once per source vocabulary, and only one of those atoms is the
        preferred one; a plain INSERT OR IGNORE would keep whichever came first.
        """
        self.conn.executemany(
            "INSERT INTO name(concept_id, lang, text, is_preferred, source) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(concept_id, lang, text, source) DO UPDATE SET "
            "is_preferred = max(is_preferred, excluded.is_preferred)",
            rows,
        )

    def add_xrefs(self, rows: Iterable[tuple[str, str, str, str]]) -> None:
        """Rows of ``(concept_id, db, xref_id, source)``: identity links to other terminologies
        (e.g. HPO term → UMLS CUI). Kept apart from ``relation`` so facts stay facts."""
        self.conn.executemany("INSERT OR IGNORE INTO xref(concept_id, db, xref_id, source) VALUES (?, ?, ?, ?)", rows)

    def add_pairs(self, rows: Iterable[tuple[str, str, str, str, str, str, int, str]]) -> None:
        """Rows of ``(concept_id, type, lang_a, text_a, lang_b, text_b, count, source)``."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO pair(concept_id, type, lang_a, text_a, lang_b, text_b, count, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def add_default_relation_names(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Rows of ``(rel, lang, text)`` that never override a name already set (user extensions win)."""
        self.conn.executemany("INSERT OR IGNORE INTO relation_name(rel, lang, text) VALUES (?, ?, ?)", rows)

    def set_relation_names(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Rows of ``(rel, lang, text)``; later rows override earlier ones (user extensions win)."""
        self.conn.executemany("INSERT OR REPLACE INTO relation_name(rel, lang, text) VALUES (?, ?, ?)", rows)

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def commit(self) -> None:
        self.conn.commit()

    # ---- reading -------------------------------------------------------------------------
    def languages(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT lang FROM name ORDER BY lang")]

    def require_language(self, lang: str) -> None:
        """Fail early, naming the KB, when a build asks for a language the KB has no names in."""
        if not self.conn.execute("SELECT 1 FROM name WHERE lang = ? LIMIT 1", (lang,)).fetchone():
            have = ", ".join(self.languages()) or "none"
            raise KbioxlmError(f"{self.path}: knowledge base has no names in language {lang!r} (has: {have})")

    def iter_names(self, lang: str) -> Iterator[tuple[str, str, int]]:
        """``(text, concept_id, is_preferred)`` for every name in ``lang``, in a stable order."""
        yield from self.conn.execute(
            "SELECT text, concept_id, is_preferred FROM name WHERE lang = ? ORDER BY text, concept_id", (lang,)
        )

    def preferred_names(self, lang: str) -> dict[str, str]:
        """concept id → one name in ``lang``: the preferred one if any, else the shortest, ties by text."""
        out: dict[str, str] = {}
        for cid, text in self.conn.execute(
            "SELECT concept_id, text FROM name WHERE lang = ? "
            "ORDER BY concept_id, is_preferred DESC, length(text), text",
            (lang,),
        ):
            out.setdefault(cid, text)
        return out

    def names_of(self, concept_ids: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
        """concept id → its names ``(lang, text)`` in every language (sorted), for the given ids
        (those without names, or not in the KB, are absent). Used to hold concepts out of corpora."""
        ids = sorted(set(concept_ids))
        out: dict[str, list[tuple[str, str]]] = {}
        for i in range(0, len(ids), 500):  # SQLite limits the number of parameters of one query
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for cid, lang, text in self.conn.execute(
                f"SELECT DISTINCT concept_id, lang, text FROM name WHERE concept_id IN ({marks}) "  # noqa: S608
                "ORDER BY concept_id, lang, text",
                chunk,
            ):
                out.setdefault(cid, []).append((lang, text))
        return out

    def iter_relations(self) -> Iterator[tuple[str, str, str]]:
        """``(head_id, rel, tail_id)`` in a stable order."""
        yield from self.conn.execute(
            "SELECT DISTINCT head_id, rel, tail_id FROM relation ORDER BY head_id, tail_id, rel"
        )

    def relation_names(self, lang: str) -> dict[str, str]:
        return dict(self.conn.execute("SELECT rel, text FROM relation_name WHERE lang = ?", (lang,)))

    def xrefs(self, db: str) -> dict[str, list[str]]:
        """concept id → its cross-references into ``db`` (e.g. ``"UMLS"`` → CUIs), sorted."""
        out: dict[str, list[str]] = {}
        for cid, xid in self.conn.execute(
            "SELECT DISTINCT concept_id, xref_id FROM xref WHERE db = ? ORDER BY concept_id, xref_id", (db,)
        ):
            out.setdefault(cid, []).append(xid)
        return out

    def concept_ids(self) -> set[str]:
        """Every concept id in the KB (used to check that imported relations have both ends)."""
        return {r[0] for r in self.conn.execute("SELECT id FROM concept")}

    def iter_pairs(self, source: str | None = None) -> Iterator[tuple[str, str, str, str, str, str, int]]:
        """``(concept_id, type, lang_a, text_a, lang_b, text_b, count)`` mined pairs, most frequent first."""
        sql = "SELECT concept_id, type, lang_a, text_a, lang_b, text_b, count FROM pair"
        args: tuple[str, ...] = ()
        if source is not None:
            sql += " WHERE source = ?"
            args = (source,)
        yield from self.conn.execute(sql + " ORDER BY count DESC, type, text_a, text_b", args)

    def source_stats(self) -> list[tuple[str, int, int, int]]:
        """``(source, concepts, names, relations)`` per import source, for the readable ``kb stats``."""
        c = self.conn
        counts: dict[str, list[int]] = {}
        for i, table in enumerate(("concept", "name", "relation")):
            for src, n in c.execute(f"SELECT source, count(*) FROM {table} GROUP BY source"):  # noqa: S608
                counts.setdefault(src or "", [0, 0, 0])[i] = n
        return [(s, *v) for s, v in sorted(counts.items())]  # type: ignore[misc]

    def stats(self) -> dict[str, object]:
        """The ``kb stats --json`` document (docs/design.md, "CLI contract")."""
        c = self.conn
        return {
            "concepts": c.execute("SELECT count(*) FROM concept").fetchone()[0],
            "names": dict(c.execute("SELECT lang, count(*) FROM name GROUP BY lang ORDER BY lang")),
            "relations": c.execute("SELECT count(*) FROM relation").fetchone()[0],
        }
