"""Passage-level pairs (paper section 3.1.4) from aligned article pairs.

Each aligned article pair (one text per language) is cut into passages of at most ``max_chars``
(whole sentences packed greedily). Every passage is the anchor of one record; its label is the
possible one of ``positive``/``random``/``context`` used least so far in the block (ties broken by
the seeded generator), so the three classes get about a third each:

* ``positive``: the passage and the aligned passage of the other language (same index for
  line-aligned input, same relative position for articles);
* ``random``: the passage and a passage of the other language from another article of the block;
* ``context``: the passage and the next passage of the same article in the same language, or
  with ``context_lang="cross"`` the passage that follows its aligned passage in the *other*
  language. Then every pair is cross-lingual, so the label cannot be read off the scripts (with
  same-language context pairs the script alone tells ``context`` apart: 67% accuracy for free).

Articles are processed in blocks of ``block_size`` (bounded memory; random partners come from the
same block); a label impossible for an anchor (no next passage, a one-article block) is not
drawn for it, and the summary reports the final counts.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any


from ..errors import KbioxlmError, where
from ..io import SkipCounter, atomic_write, dumps
from ..progress import progress as progress_bar
from ..schema import PASSAGE_LABELS, check_lang, is_unspaced
from .readers import iter_documents, iter_text_lines
from .runner import Summary, chunked, doc_seed, ordered_write, remove_stale_temporaries
from .sentences import split_sentences

Article = tuple[str, list[str], str, list[str], str, bool]  # id, passages a, lang a, passages b, lang b, aligned

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LETTER = re.compile(r"[^\W\d_]")


def cjk_share(text: str) -> float:
    """Share of CJK/kana characters among the letters of (the start of) ``text``."""
    sample = text[:2000]
    letters = len(_LETTER.findall(sample))
    return len(_CJK.findall(sample)) / letters if letters else 0.0


_CJK_SPACE = re.compile(r"(?<=[\u3000-\u9fff\uff00-\uffef]) +| +(?=[\u3000-\u9fff\uff00-\uffef])")


def desegment(text: str) -> str:
    """Remove the word-segmentation spaces of segmented Chinese (ParaMed's ZH side)."""
    return _CJK_SPACE.sub("", text)


_MOSES = [(" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), ("&apos;", "'"), ("&quot;", '"'), ("&amp;", "&")]


def undo_moses_escapes(text: str) -> str:
    """Undo the Moses escapes and joiners of ParaMed's EN side (light: spacing around words stays)."""
    for a, b in _MOSES:
        text = text.replace(a, b)
    return text


def cut_passages(text: str, max_chars: int) -> list[str]:
    """Whole sentences packed greedily into passages of at most ``max_chars`` characters."""
    out: list[str] = []
    cur_s = cur_e = -1
    for s, e in split_sentences(text):
        while e - s > max_chars:  # an over-long sentence is cut, at a space when there is one
            cut = text.rfind(" ", s + 1, s + max_chars + 1)
            cut = cut if cut > s else s + max_chars
            if cur_s >= 0:
                out.append(text[cur_s:cur_e])
                cur_s = -1
            out.append(text[s:cut].strip())
            s = cut
            while s < e and text[s].isspace():
                s += 1
        if s >= e:
            continue
        if cur_s >= 0 and e - cur_s <= max_chars:
            cur_e = e
        else:
            if cur_s >= 0:
                out.append(text[cur_s:cur_e])
            cur_s, cur_e = s, e
    if cur_s >= 0:
        out.append(text[cur_s:cur_e])
    return [p for p in out if p]


# ---- sources --------------------------------------------------------------------------------
def iter_pairs(path: str, max_chars: int, lang_a: str, lang_b: str, skip: SkipCounter | None) -> Iterator[Article]:
    """``{"sent1", "sent2"[, "label"]}`` lines (the release's ``pair_data.json``); sides by script."""
    unspaced_langs = [x for x in (lang_a, lang_b) if is_unspaced(x)]
    if len(unspaced_langs) != 1:
        raise KbioxlmError(
            "--pairs tells the sides apart by script: one of --lang-a/--lang-b must be unspaced (zh, ja)"
        )
    unspaced = unspaced_langs[0]
    spaced = lang_b if unspaced == lang_a else lang_a
    for lineno, line in _lines(path):
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
            texts = []
            for k in ("sent1", "sent2"):
                if k not in rec:
                    raise ValueError(f"missing field {k!r}")
                if not isinstance(rec[k], str):
                    raise ValueError(f"field {k!r} must be str, got {type(rec[k]).__name__}")
                if not rec[k].strip():
                    raise ValueError(f"empty {k}")
                texts.append(rec[k])
            # The side with the larger share of CJK letters is the unspaced language (a Chinese
            # article may quote English terms, sentences even, so no fixed threshold).
            shares = [cjk_share(t) for t in texts]
            if shares[0] == shares[1]:
                raise ValueError(
                    f"cannot tell the sides apart by script; a pair needs one {lang_a} and one {lang_b} text"
                )
            langs = [unspaced, spaced] if shares[0] > shares[1] else [spaced, unspaced]
            if langs[0] != lang_a:
                texts.reverse()
        except json.JSONDecodeError as exc:
            _fail(skip, f"{where(path, lineno)}: malformed JSON ({exc.msg} at column {exc.colno})")
            continue
        except ValueError as exc:
            _fail(skip, f"{where(path, lineno)}: {exc}")
            continue
        rid = str(rec.get("id", f"{Path(path).name}:{lineno}"))
        yield rid, cut_passages(texts[0], max_chars), lang_a, cut_passages(texts[1], max_chars), lang_b, False


def iter_articles(
    path_a: str, path_b: str, max_chars: int, lang_a: str, lang_b: str, text_field: str, skip: SkipCounter | None
) -> Iterator[Article]:
    """Two JSONL files of ``{"id", "text"}`` joined on ``id`` (side B is indexed in memory)."""
    side_b: dict[str, str] = {}
    for _line, doc in iter_documents(path_b, "jsonl", lang_b, text_field, skip):
        side_b[str(doc["id"])] = doc["text"]
    for line, doc in iter_documents(path_a, "jsonl", lang_a, text_field, skip):
        key = str(doc["id"])
        if key not in side_b:
            _fail(skip, f"{where(path_a, line)}: id {key!r} has no article in {path_b}")
            continue
        yield key, cut_passages(doc["text"], max_chars), lang_a, cut_passages(side_b[key], max_chars), lang_b, False


def iter_parallel(
    path_a: str, path_b: str, max_chars: int, lang_a: str, lang_b: str, per_article: int
) -> Iterator[Article]:
    """Line-aligned files (ParaMed): consecutive lines grouped into aligned passages, ``per_article``
    passages forming one article (so ``context`` pairs exist)."""
    fix = {lang: (desegment if is_unspaced(lang) else undo_moses_escapes) for lang in (lang_a, lang_b)}

    def passages() -> Iterator[tuple[int, str, str]]:
        cur_a: list[str] = []
        cur_b: list[str] = []
        first = 0
        for a, b in itertools.zip_longest(_lines(path_a, keep_blank=True), _lines(path_b, keep_blank=True)):
            if a is None or b is None:
                raise KbioxlmError(
                    f"{path_a} and {path_b} have different numbers of lines (line-aligned input expected)"
                )
            ta, tb = fix[lang_a](a[1].strip()), fix[lang_b](b[1].strip())
            if not ta or not tb:
                continue
            if cur_a and (len(_join([*cur_a, ta], lang_a)) > max_chars or len(_join([*cur_b, tb], lang_b)) > max_chars):
                yield first, _join(cur_a, lang_a)[:max_chars], _join(cur_b, lang_b)[:max_chars]
                cur_a, cur_b = [], []
            if not cur_a:
                first = a[0]
            cur_a.append(ta)
            cur_b.append(tb)
        if cur_a:
            yield first, _join(cur_a, lang_a)[:max_chars], _join(cur_b, lang_b)[:max_chars]

    name = Path(path_a).name
    for group in chunked(passages(), max_items=per_article, max_chars=1 << 62):
        yield f"{name}:{group[0][0]}", [g[1] for g in group], lang_a, [g[2] for g in group], lang_b, True


def _join(parts: list[str], lang: str) -> str:
    return ("" if is_unspaced(lang) else " ").join(parts)


def _lines(path: str, keep_blank: bool = False) -> Iterator[tuple[int, str]]:
    for lineno, line in iter_text_lines(path):
        if keep_blank or line.strip():
            yield lineno, line


def _fail(skip: SkipCounter | None, msg: str) -> None:
    if skip is None:
        raise KbioxlmError(msg)
    skip.add(msg)


# ---- pairing --------------------------------------------------------------------------------
def _aligned_index(j: int, n_from: int, n_to: int, exact: bool) -> int:
    if exact or n_from <= 1:
        return min(j, n_to - 1)
    return round(j * (n_to - 1) / (n_from - 1))


def pair_block(block: tuple[int, int, list[Article], bool]) -> tuple[list[bytes], dict[str, Any]]:
    """Records for one block of articles (a pure function of the block and the seed): the block's
    JSONL (UTF-8 bytes, the one output of :func:`kbioxlm.corpus.runner.ordered_write`) and its counts."""
    seed, bi, arts, cross = block
    arts = [a for a in arts if a[1] and a[3]]
    rng = random.Random(doc_seed(seed, "passage", f"{bi}:{arts[0][0] if arts else ''}"))
    lines: list[str] = []
    stats: dict[str, Any] = {"articles": len(arts), "records": 0, "chars": 0}
    counts = {label: 0 for label in PASSAGE_LABELS}
    for ai, (aid, pa, la, pb, lb, exact) in enumerate(arts):
        stats["chars"] += sum(map(len, pa)) + sum(map(len, pb))
        for side, mine, lmine, theirs, ltheirs in (("a", pa, la, pb, lb), ("b", pb, lb, pa, la)):
            for j, text in enumerate(mine):
                # The possible label used least so far in this block (ties broken by the seeded
                # generator): keeps the three classes near a third each even though the last
                # passage of an article has no "context" partner.
                k = _aligned_index(j, len(mine), len(theirs), exact)
                has_next = k + 1 < len(theirs) if cross else j + 1 < len(mine)
                feasible = [
                    x for x in PASSAGE_LABELS if (x != "context" or has_next) and (x != "random" or len(arts) > 1)
                ]
                least = min(counts[x] for x in feasible)
                ties = [x for x in feasible if counts[x] == least]
                label = ties[rng.randrange(len(ties))] if len(ties) > 1 else ties[0]
                counts[label] += 1
                if label == "context":
                    partner, lp = (theirs[k + 1], ltheirs) if cross else (mine[j + 1], lmine)
                elif label == "random":
                    other = rng.randrange(len(arts) - 1)
                    other += other >= ai
                    o = arts[other]
                    pool = o[3] if side == "a" else o[1]
                    partner, lp = pool[rng.randrange(len(pool))], ltheirs
                else:
                    partner, lp = theirs[k], ltheirs
                rec = {
                    "id": f"{aid}:{side}{j}",
                    "task": "passage",
                    "text_a": text,
                    "lang_a": lmine,
                    "text_b": partner,
                    "lang_b": lp,
                    "label": label,
                }
                lines.append(dumps(rec))
                stats[label] = stats.get(label, 0) + 1
                stats["records"] += 1
    return [("\n".join(lines) + "\n").encode("utf-8") if lines else b""], stats


def run_passage(
    out: str,
    pairs: str | None = None,
    articles: tuple[str, str] | None = None,
    parallel: tuple[str, str] | None = None,
    lang_a: str = "en",
    lang_b: str = "zh",
    seed: int = 0,
    max_chars: int = 512,
    num_workers: int = 1,
    skip_invalid: bool = False,
    block_size: int = 64,
    passages_per_article: int = 4,
    text_field: str = "text",
    progress: bool | None = None,
    context_lang: str = "same",
) -> dict[str, Any]:
    """Build Passage records from one kind of aligned source; returns (and prints) the summary."""
    if sum(x is not None for x in (pairs, articles, parallel)) != 1:
        raise KbioxlmError("give exactly one source: --pairs, --articles-a/--articles-b or --parallel-a/--parallel-b")
    for lang, flag in ((lang_a, "--lang-a"), (lang_b, "--lang-b")):
        try:
            check_lang(lang, flag)
        except ValueError as exc:
            raise KbioxlmError(str(exc)) from None
    if lang_a == lang_b:
        raise KbioxlmError(f"--lang-a and --lang-b are both {lang_a!r}")
    if context_lang not in ("same", "cross"):
        raise KbioxlmError(f"--context-lang must be same or cross, got {context_lang!r}")
    if max_chars < 16:
        raise KbioxlmError(f"--max-chars must be at least 16, got {max_chars}")
    skip = SkipCounter() if skip_invalid else None

    def source() -> Iterator[Article]:
        if pairs is not None:
            return iter_pairs(pairs, max_chars, lang_a, lang_b, skip)
        if articles is not None:
            return iter_articles(articles[0], articles[1], max_chars, lang_a, lang_b, text_field, skip)
        assert parallel is not None
        return iter_parallel(parallel[0], parallel[1], max_chars, lang_a, lang_b, passages_per_article)

    # Validate the whole input first so a bad line fails before anything is written.
    n_articles = sum(1 for _ in source())
    if skip is not None:
        skip = SkipCounter()  # counted again while building
    remove_stale_temporaries(out)
    summary = Summary("passage")
    blocks = (
        (seed, bi, arts, context_lang == "cross")
        for bi, arts in enumerate(chunked(source(), max_items=block_size, max_chars=1 << 62))
    )
    bar = progress_bar(total=n_articles, unit="article", desc="corpus passage", enabled=progress is not False)
    with atomic_write(out, "wb") as fh:
        for stats in ordered_write(pair_block, blocks, [fh], num_workers, _noop, ()):
            summary.merge(stats)
            bar.update(stats["articles"])
    bar.close()
    summary.add("skipped", skip.count if skip else 0)
    summary.skip_examples = skip.examples if skip else []
    return summary.print(Path(out))


def _noop() -> None:
    return None
