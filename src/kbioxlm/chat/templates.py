"""Prompt templates stored as text files (``src/kbioxlm/chat/prompts/*.txt``, overridable by a directory).

Format: a ``[system]`` section and a ``[user]`` section; ``{{name}}`` is replaced by a value.
Double braces rather than ``str.format``/``string.Template`` because prompts legitimately contain
``{``, ``}`` (JSON examples) and ``$`` (``@GENE$``). The prompt *version* is the file name plus a
hash of its content, so the answer cache never serves an answer produced by an older prompt.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import KbioxlmError
from ..io import read_text

LANG_NAMES = {
    "en": "English",
    "zh": "Simplified Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "ru": "Russian",
    "ar": "Arabic",
}

_VAR_RE = re.compile(r"\{\{(\w+)\}\}")


def lang_name(code: str) -> str:
    return LANG_NAMES.get(code.split("-")[0].lower(), code)


@dataclass(frozen=True)
class Template:
    name: str
    system: str
    user: str
    version: str

    def render(self, **values: str) -> list[dict[str, str]]:
        """``[system, user]`` chat messages with the values filled in."""
        msgs = []
        if self.system.strip():
            msgs.append({"role": "system", "content": _fill(self.system, values, self.name)})
        msgs.append({"role": "user", "content": _fill(self.user, values, self.name)})
        return msgs

    def render_user(self, **values: str) -> str:
        return _fill(self.user, values, self.name)

    def render_system(self, **values: str) -> str:
        return _fill(self.system, values, self.name)


def _fill(text: str, values: dict[str, str], name: str) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise KbioxlmError(f"prompt template {name}: no value for {{{{{key}}}}}")
        return str(values[key])

    return _VAR_RE.sub(sub, text).strip()


def load_template(name: str, prompt_dir: str | os.PathLike[str] | None = None) -> Template:
    """Load ``<name>.txt`` from ``prompt_dir`` if it has one, else the packaged default."""
    text: str
    if prompt_dir is not None and (Path(prompt_dir) / f"{name}.txt").exists():
        path = Path(prompt_dir) / f"{name}.txt"
        text = read_text(path)  # a bad byte is file:line
        where = str(path)
    else:
        try:
            text = resources.files("kbioxlm.chat").joinpath("prompts", f"{name}.txt").read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise KbioxlmError(f"no prompt template {name!r}") from exc
        where = f"kbioxlm/chat/prompts/{name}.txt"
    sections: dict[str, list[str]] = {}
    cur: str | None = None
    for line in text.splitlines():
        m = re.fullmatch(r"\[(system|user)\]\s*", line)
        if m:
            cur = m.group(1)
            sections[cur] = []
        elif cur is not None:
            sections[cur].append(line)
    if "user" not in sections:
        raise KbioxlmError(f"{where}: prompt template needs a [user] section")
    version = f"{name}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"
    return Template(name, "\n".join(sections.get("system", [])), "\n".join(sections["user"]), version)
