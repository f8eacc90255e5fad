"""Translation backends: an OpenAI-compatible chat endpoint, a local HF seq2seq model, a KB dictionary.

Each backend translates a list of texts of one *kind* (``"ner"``: with ``<n>`` markers;
``"text"``: plain text with ``@GENE$``-style placeholders) and reports each result through
``on_result(index, text_or_exception)`` as soon as it is ready, so the caller can commit it to
the cache immediately (a killed job keeps everything already answered).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..chat.client import ChatClient
from ..chat.templates import lang_name, load_template
from ..errors import KbioxlmError
from ..hub import check_model_name, load_error
from ..kb.matcher import Matcher
from ..kb.store import KnowledgeBase
from ..progress import progress

log = logging.getLogger(__name__)

OnResult = Callable[[int, "str | BaseException"], None]


class Backend(Protocol):
    name: str
    model: str
    code_switch: bool  # output keeps source-language words on purpose (no residue/ratio checks)

    def version(self, kind: str) -> str: ...

    def translate_many(
        self, texts: Sequence[str], kind: str, source_lang: str, target_lang: str, on_result: OnResult
    ) -> None: ...


# --------------------------------------------------------------------------------------------
class OpenAIBackend:
    """Chat-completions translation with the prompt templates ``translate_ner``/``translate_text``."""

    name = "openai"
    code_switch = False

    def __init__(self, client: ChatClient, prompt_dir: str | None = None) -> None:
        self.client = client
        self.model = str(client.model)
        self.templates = {
            "ner": load_template("translate_ner", prompt_dir),
            "text": load_template("translate_text", prompt_dir),
        }

    def version(self, kind: str) -> str:
        return self.templates[kind].version

    def translate_many(
        self, texts: Sequence[str], kind: str, source_lang: str, target_lang: str, on_result: OnResult
    ) -> None:
        tpl = self.templates[kind]
        convs = [
            tpl.render(source_language=lang_name(source_lang), target_language=lang_name(target_lang), text=t)
            for t in texts
        ]
        self.client.chat_many(convs, on_result=lambda i, r: on_result(i, _strip_reply(r)))


def _strip_reply(reply: str | BaseException) -> str | BaseException:
    """Remove wrappers chat models add around a translation (code fences, a 'Translation:' label)."""
    if isinstance(reply, BaseException):
        return reply
    text = reply.strip()
    m = re.fullmatch(r"```[\w-]*\n?(.*?)\n?```", text, flags=re.S)
    if m:
        text = m.group(1).strip()
    text = re.sub(r"^(?:translation|译文|翻译)\s*[:：]\s*", "", text, flags=re.I)
    return text


# --------------------------------------------------------------------------------------------
class HFBackend:
    """A local Hugging Face seq2seq model (Marian, T5, NLLB, mBART…) by hub name or path.

    ``prefix`` is prepended to each input (T5 style, e.g. ``"translate English to Chinese: "``);
    ``forced_bos_token`` selects the target language of NLLB/mBART-style models.
    """

    name = "hf"
    code_switch = False

    def __init__(
        self,
        model: str,
        batch_size: int = 16,
        max_new_tokens: int = 256,
        prefix: str = "",
        forced_bos_token: str | None = None,
        device: str | None = None,
        num_beams: int = 1,
        progress: bool = True,
    ) -> None:
        try:  # lazy: torch and transformers, only for this backend
            import torch
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - torch/transformers are dependencies
            raise KbioxlmError(f"hf backend needs torch and transformers ({exc})") from exc
        self.model = model
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.prefix = prefix
        self.num_beams = num_beams
        self.progress = progress
        check_model_name(model, "model")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.net = AutoModelForSeq2SeqLM.from_pretrained(model)
        except (OSError, ValueError) as exc:
            raise load_error(model, exc, "seq2seq model") from exc
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.net.to(self.device).eval()
        self.forced_bos_token_id = self.tokenizer.convert_tokens_to_ids(forced_bos_token) if forced_bos_token else None
        self._torch = torch

    def version(self, kind: str) -> str:
        return f"hf-v1|{self.prefix}|{self.forced_bos_token_id}|{self.max_new_tokens}|{self.num_beams}"

    def translate_many(
        self, texts: Sequence[str], kind: str, source_lang: str, target_lang: str, on_result: OnResult
    ) -> None:
        for start in progress(
            range(0, len(texts), self.batch_size), desc="hf translate", unit="batch", leave=False, enabled=self.progress
        ):
            batch = [self.prefix + t for t in texts[start : start + self.batch_size]]
            try:
                enc = self.tokenizer(batch, return_tensors="pt", padding=True, truncation=True).to(self.device)
                kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams}
                if self.forced_bos_token_id is not None:
                    kwargs["forced_bos_token_id"] = self.forced_bos_token_id
                with self._torch.inference_mode():
                    out = self.net.generate(**enc, **kwargs)
                decoded = self.tokenizer.batch_decode(out, skip_special_tokens=True)
            except (RuntimeError, ValueError, IndexError) as exc:
                for i in range(len(batch)):
                    on_result(start + i, exc)
                continue
            for i, text in enumerate(decoded):
                on_result(start + i, text.strip())


# --------------------------------------------------------------------------------------------
class KBBackend:
    """Offline dictionary substitution from ``kb.sqlite``: entity names only, for code-switching.

    ``ner``: the text inside each ``<n>…</n>`` is looked up as a source-language name — first in
    the mined ``pair`` table (most frequent aligned name), then in ``name`` → concept → preferred
    target-language name — and replaced; everything outside the markers stays as it is. An entity
    without a target name is left unchanged (the pipeline reports ``kb_no_entry``).
    ``text``: KB names found in the text (longest-leftmost, word boundaries for spaced scripts)
    are replaced; placeholders are never touched.
    """

    name = "kb"
    code_switch = True

    def __init__(self, kb_path: str, allow_partial: bool = False) -> None:
        self.allow_partial = allow_partial
        self.kb = KnowledgeBase(kb_path)
        self.model = str(kb_path)
        self._memo: dict[tuple[str, str, str], str | None] = {}
        self._matchers: dict[str, Matcher] = {}  # per source language

    def version(self, kind: str) -> str:
        # The KB's content is part of the answer: a changed KB (re-import) must not hit old cache rows.
        c = self.kb.conn
        n = c.execute("SELECT count(*), coalesce(sum(length(text)), 0) FROM name").fetchone()
        p = c.execute("SELECT count(*), coalesce(sum(count), 0) FROM pair").fetchone()
        return f"kb-v1|{n[0]}:{n[1]}|{p[0]}:{p[1]}"

    def lookup(self, text: str, source_lang: str, target_lang: str) -> str | None:
        """Target-language name for a source-language entity name, or None."""
        key = (text, source_lang, target_lang)
        if key in self._memo:
            return self._memo[key]
        c = self.kb.conn
        found: str | None = None
        variants = list(dict.fromkeys([text, text.lower(), text.capitalize(), text.upper()]))
        for v in variants:
            row = (
                c.execute(
                    "SELECT text_b FROM pair WHERE lang_a = ? AND text_a = ? AND lang_b = ? ORDER BY count DESC, text_b LIMIT 1",
                    (source_lang, v, target_lang),
                ).fetchone()
                or c.execute(
                    "SELECT text_a FROM pair WHERE lang_b = ? AND text_b = ? AND lang_a = ? ORDER BY count DESC, text_a LIMIT 1",
                    (source_lang, v, target_lang),
                ).fetchone()
            )
            if row:
                found = row[0]
                break
            row = c.execute(
                "SELECT t.text FROM name s JOIN name t ON t.concept_id = s.concept_id "
                "WHERE s.lang = ? AND s.text = ? AND t.lang = ? "
                "ORDER BY t.is_preferred DESC, length(t.text), t.text, s.concept_id LIMIT 1",
                (source_lang, v, target_lang),
            ).fetchone()
            if row:
                found = row[0]
                break
        self._memo[key] = found
        return found

    def _substitute_markers(self, text: str, source_lang: str, target_lang: str) -> str:
        out: list[str] = []
        cur = 0
        pattern = re.compile(r"<(\d+)>(.*?)</\1>", flags=re.S)
        for m in pattern.finditer(text):
            out.append(text[cur : m.start()])
            name = self.lookup(m.group(2), source_lang, target_lang)
            out.append(f"<{m.group(1)}>{name if name is not None else m.group(2)}</{m.group(1)}>")
            cur = m.end()
        out.append(text[cur:])
        return _respace("".join(out), target_lang)

    def _substitute_text(self, text: str, source_lang: str, target_lang: str) -> str:
        """Replace every KB name found in running text (the corpus builders' matcher: longest-leftmost,
        whole words) by its target-language name; placeholders such as ``@GENE$`` are left alone."""
        matcher = self._matchers.get(source_lang)
        if matcher is None:
            matcher = self._matchers[source_lang] = Matcher.from_kb(self.kb, source_lang)
        out: list[str] = []
        cur = 0
        for s, e, _key in matcher.find_spans(text):
            name = self.lookup(text[s:e], source_lang, target_lang)
            if name is None or "@" in text[max(0, s - 1) : e + 1]:
                continue
            out.append(text[cur:s])
            out.append(name)
            cur = e
        out.append(text[cur:])
        return _respace("".join(out), target_lang)

    def translate_many(
        self, texts: Sequence[str], kind: str, source_lang: str, target_lang: str, on_result: OnResult
    ) -> None:
        for i, t in enumerate(texts):
            try:
                if kind == "ner":
                    on_result(i, self._substitute_markers(t, source_lang, target_lang))
                else:
                    on_result(i, self._substitute_text(t, source_lang, target_lang))
            except Exception as exc:  # noqa: BLE001 - reported per item as backend_error
                on_result(i, exc)


def _respace(text: str, target_lang: str) -> str:
    """Keep code-switched text tidy: collapse runs of spaces (tags are kept as they are)."""
    del target_lang
    return re.sub(r"[ \t]{2,}", " ", text)
