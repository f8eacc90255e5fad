"""OpenAI-compatible chat-completions client, shared by translation and the LLM baselines.

Works with any server speaking ``POST {base}/chat/completions`` (OpenAI, vLLM ``vllm serve``,
Ollama ``http://localhost:11434/v1``, llama.cpp server, LM Studio). Settings come from options,
else the environment: ``KBIOXLM_BASE_URL``/``OPENAI_BASE_URL``, ``KBIOXLM_API_KEY``/
``OPENAI_API_KEY`` (optional: local servers need none), ``KBIOXLM_MODEL``.

Transient failures — HTTP 429, 5xx, connection errors, timeouts — are retried with exponential
back-off (``backoff * 2**attempt``, capped), honouring a ``Retry-After`` header when the server
sends one. Concurrency is a thread pool (requests are I/O bound). httpx rather than the ``openai``
package: one small maintained dependency, explicit control over retries and timeouts, and no
assumptions about which server is on the other end.
"""

from __future__ import annotations

import email.utils
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import KbioxlmError

log = logging.getLogger(__name__)
# httpx logs every request at INFO; thousands of lines per dataset drown the progress bar.
logging.getLogger("httpx").setLevel(logging.WARNING)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

Message = dict[str, str]


class LLMError(KbioxlmError):
    """A request that failed for good (non-retryable status, or retries exhausted)."""


def env_first(*names: str) -> str | None:
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return None


@dataclass
class ChatClient:
    """A chat-completions client with retries and a concurrency limit.

    ``base_url`` ends before ``/chat/completions`` (e.g. ``http://localhost:8000/v1``).
    """

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    timeout: float = 120.0
    max_retries: int = 6
    backoff: float = 1.0
    max_backoff: float = 60.0
    concurrency: int = 4
    temperature: float = 0.0
    max_tokens: int | None = 1024
    extra: dict[str, Any] = field(default_factory=dict)
    n_requests: int = 0  # HTTP requests sent, retries included (for summaries)

    def __post_init__(self) -> None:
        self.base_url = self.base_url or env_first("KBIOXLM_BASE_URL", "OPENAI_BASE_URL")
        self.model = self.model or env_first("KBIOXLM_MODEL")
        self.api_key = self.api_key or env_first("KBIOXLM_API_KEY", "OPENAI_API_KEY")
        if not self.base_url:
            raise KbioxlmError("no endpoint: pass --base-url or set KBIOXLM_BASE_URL / OPENAI_BASE_URL")
        if not self.model:
            raise KbioxlmError("no model: pass --model or set KBIOXLM_MODEL")
        if self.concurrency < 1:
            raise KbioxlmError(f"concurrency must be >= 1, got {self.concurrency}")
        self.base_url = self.base_url.rstrip("/")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self._http = httpx.Client(headers=headers, timeout=self.timeout, limits=limits)
        self._sleep: Callable[[float], None] = time.sleep
        self._count_lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- one request --------------------------------------------------------------------
    def chat(self, messages: Sequence[Message], **params: Any) -> str:
        """The assistant's reply text for ``messages`` (retrying transient failures)."""
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "temperature": self.temperature}
        if self.max_tokens:
            body["max_tokens"] = self.max_tokens
        body.update(self.extra)
        body.update(params)
        last = ""
        for attempt in range(self.max_retries + 1):
            delay: float | None = None
            try:
                with self._count_lock:
                    self.n_requests += 1
                resp = self._http.post(self.url, json=body)
            except httpx.TransportError as exc:  # connect/read errors, timeouts
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 200:
                    try:
                        return _content(resp, self.url)
                    except _TruncatedBody as exc:  # cut off in transit or by the server: retried like a 5xx
                        last = str(exc)
                        if attempt == self.max_retries:
                            break
                        wait = min(self.max_backoff, self.backoff * (2**attempt))
                        log.warning("%s: %s; retry %d/%d in %.1fs", self.url, last, attempt + 1, self.max_retries, wait)
                        self._sleep(wait)
                        continue
                last = f"HTTP {resp.status_code}: {resp.text[:200]!r}"
                if resp.status_code not in RETRY_STATUS:
                    raise LLMError(f"{self.url}: {last}")
                delay = _retry_after(resp.headers.get("Retry-After"))
            if attempt == self.max_retries:
                break
            wait = min(self.max_backoff, delay if delay is not None else self.backoff * (2**attempt))
            log.warning("%s: %s; retry %d/%d in %.1fs", self.url, last, attempt + 1, self.max_retries, wait)
            self._sleep(wait)
        raise LLMError(f"{self.url}: failed after {self.max_retries + 1} attempts ({last})")

    # ---- many requests ------------------------------------------------------------------
    def chat_many(
        self,
        conversations: Sequence[Sequence[Message]],
        on_result: Callable[[int, str | BaseException], None] | None = None,
        **params: Any,
    ) -> list[str | BaseException]:
        """Run conversations on ``concurrency`` threads; results (or the exception) in input order.

        ``on_result(index, result)`` is called in the calling thread as each one finishes — the
        caller commits it to its cache there, so a kill loses only requests still in flight.
        """
        out: list[str | BaseException] = [""] * len(conversations)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futs = {pool.submit(self.chat, conv, **params): i for i, conv in enumerate(conversations)}
            for fut in as_completed(futs):
                i = futs[fut]
                try:
                    res: str | BaseException = fut.result()
                except LLMError as exc:
                    res = exc
                out[i] = res
                if on_result is not None:
                    on_result(i, res)
        return out


class _TruncatedBody(Exception):
    """A 200 answer whose body is not complete JSON."""


def _content(resp: httpx.Response, url: str) -> str:
    try:
        data = resp.json()
    except ValueError as exc:
        raise _TruncatedBody(f"HTTP 200 with a truncated or invalid JSON body ({resp.text[-80:]!r})") from exc
    try:
        msg = data["choices"][0]["message"]
        content = msg.get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise LLMError(f"{url}: response is not a chat completion ({resp.text[:200]!r})") from exc
    if not isinstance(content, str):
        raise LLMError(f"{url}: response content is not text ({resp.text[:200]!r})")
    return content


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
