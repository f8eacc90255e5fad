"""A small OpenAI-compatible chat-completions server for tests (127.0.0.1, ephemeral port).

Scriptable: ``responder(body) -> str`` produces the assistant text from the request body;
``errors`` is a queue of ``(status, headers)`` answered before normal responses (429/500 tests);
``delay`` slows every answer (for kill-mid-run tests). Every request body is recorded.
Runs in a thread of the test process (``with OpenAIStub(...) as stub``); a subprocess under
test (``python -m kbioxlm ...``) talks to it over 127.0.0.1 like to any server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], str]


def last_user(body: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


class OpenAIStub:
    def __init__(self, responder: Responder | None = None, delay: float = 0.0) -> None:
        self.responder: Responder = responder or last_user
        self.delay = delay
        self.errors: list[tuple[int, dict[str, str]]] = []
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                with stub.lock:
                    stub.requests.append(body)
                    err = stub.errors.pop(0) if stub.errors else None
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": "not found"}})
                if err is not None:
                    status, headers = err
                    return self._send(status, {"error": {"message": f"scripted {status}"}}, headers)
                if stub.delay:
                    time.sleep(stub.delay)
                try:
                    content = stub.responder(body)
                except Exception as exc:  # noqa: BLE001 - a broken responder is a 500
                    return self._send(500, {"error": {"message": repr(exc)}})
                self._send(
                    200,
                    {
                        "id": "stub",
                        "object": "chat.completion",
                        "model": body.get("model"),
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                        ],
                    },
                )

            def _send(self, status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def n_requests(self) -> int:
        with self.lock:
            return len(self.requests)

    def __enter__(self) -> OpenAIStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def fake_zh(body: dict[str, Any]) -> str:
    """A deterministic 'translation' into CJK characters that keeps the <n> markers and placeholders."""
    import re

    text = last_user(body)
    out = []
    for piece in re.split(r"(</?\d+>|@[A-Z]+\$)", text):
        if re.fullmatch(r"</?\d+>|@[A-Z]+\$", piece):
            out.append(piece)
        else:
            out.append("".join(chr(0x4E00 + (sum(map(ord, w)) % 2000)) for w in piece.split()))
    return "".join(out) + "。"


def stage_main(argv: list[str]) -> int:
    """``kbioxlm translate`` / ``kbioxlm llm-eval`` through the real ``kbioxlm`` entry point."""
    from kbioxlm.cli import main

    return main(argv)


if __name__ == "__main__":  # `python tests/openai_stub.py translate ...` (the kill/resume test)
    import sys

    sys.exit(stage_main(sys.argv[1:]))
