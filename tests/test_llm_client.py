"""The OpenAI-compatible client: retries with back-off on 429/5xx/connection errors, Retry-After, env."""

from __future__ import annotations

import socket

import pytest
from openai_stub import OpenAIStub

from kbioxlm.chat.client import ChatClient, LLMError, _retry_after

MSG = [{"role": "user", "content": "hello"}]


def _client(url: str, **kw: object) -> tuple[ChatClient, list[float]]:
    c = ChatClient(base_url=url, model="m", **kw)  # type: ignore[arg-type]
    waits: list[float] = []
    c._sleep = waits.append  # record back-off instead of sleeping
    return c, waits


def test_retries_429_and_500_honouring_retry_after() -> None:
    with OpenAIStub(lambda b: "hi " + b["messages"][-1]["content"]) as stub:
        stub.errors = [(429, {"Retry-After": "7"}), (500, {}), (503, {})]
        c, waits = _client(stub.base_url, backoff=0.5, max_retries=5)
        assert c.chat(MSG) == "hi hello"
        assert stub.n_requests == 4
        assert waits == [7.0, 1.0, 2.0]  # Retry-After, then 0.5 * 2**attempt
        assert stub.requests[0]["model"] == "m" and stub.requests[0]["temperature"] == 0.0


def test_gives_up_after_max_retries_and_does_not_retry_4xx() -> None:
    with OpenAIStub() as stub:
        stub.errors = [(500, {})] * 3
        c, waits = _client(stub.base_url, backoff=1.0, max_backoff=1.5, max_retries=2)
        with pytest.raises(LLMError, match="failed after 3 attempts"):
            c.chat(MSG)
        assert stub.n_requests == 3 and waits == [1.0, 1.5]  # capped at max_backoff
        stub.errors = [(400, {})]
        with pytest.raises(LLMError, match="HTTP 400"):
            c.chat(MSG)
        assert stub.n_requests == 4  # no retry on a client error


def test_connection_errors_are_retried() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    c, waits = _client(f"http://127.0.0.1:{port}/v1", max_retries=2, backoff=0.1, timeout=2.0)
    with pytest.raises(LLMError, match="ConnectError"):
        c.chat(MSG)
    assert len(waits) == 2


def test_chat_many_keeps_order_and_reports_failures() -> None:
    def answer(body: dict) -> str:
        t = body["messages"][-1]["content"]
        if t == "boom":
            raise RuntimeError("scripted")
        return t.upper()

    with OpenAIStub(answer) as stub:
        c, _ = _client(stub.base_url, concurrency=3, max_retries=1, backoff=0.0)
        seen: list[int] = []
        out = c.chat_many(
            [[{"role": "user", "content": t}] for t in ["a", "boom", "c", "d"]], on_result=lambda i, r: seen.append(i)
        )
    assert out[0] == "A" and out[2] == "C" and out[3] == "D"
    assert isinstance(out[1], LLMError)
    assert sorted(seen) == [0, 1, 2, 3]


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1/")
    monkeypatch.setenv("KBIOXLM_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    c = ChatClient()
    assert c.url == "http://127.0.0.1:1/v1/chat/completions" and c.model == "env-model"
    assert c._http.headers["Authorization"] == "Bearer sk-test"
    assert _retry_after("3") == 3.0 and _retry_after("garbage") is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
