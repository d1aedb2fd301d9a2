"""A scripted OpenAI-compatible server: POST /v1/chat/completions answers one turn per request.

A test queues the turns the "model" will take (an answer, or tool calls with raw argument
strings, malformed ones included), and asserts on the requests it received: the messages
(tool results included) and the tools offered. A request with no turn left is answered
with HTTP 400 and counted in `overrun`, so a run that asks more than the script expects
fails visibly instead of hanging.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fakes.loopback import LoopbackServer, Reply

HOLD_LIMIT = 20.0  # seconds a held request waits at most, so a forgotten release() cannot hang a test


@dataclass
class ScriptedTurn:
    content: str | None = None
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    """(name, raw arguments string)."""
    delay: float = 0.0
    """Seconds to think before answering (on the fake's own thread)."""
    status: int | None = None
    """Answer this HTTP error instead of a completion."""
    gate: threading.Event | None = None
    """When set, the turn waits for `release()` before answering."""


class FakeModel(LoopbackServer):
    def __init__(self, *, model: str = "fake-model") -> None:
        super().__init__()
        self.model = model
        self.script: deque[ScriptedTurn] = deque()
        self.requests: list[dict[str, Any]] = []
        """Every request body received, failed ones included, in order."""
        self.overrun = 0
        self._ids = itertools.count(1)
        self._released = threading.Event()
        self._released.set()
        self._answering: list[ScriptedTurn] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # The script -----------------------------------------------------------------

    def answer(self, content: str, *, delay: float = 0.0, held: bool = False) -> FakeModel:
        """A final answer (no tool calls). `held`: wait for `release()` before answering."""
        return self._add(ScriptedTurn(content=content, delay=delay), held)

    def call(
        self, name: str, arguments: str | dict[str, Any] = "{}", *, delay: float = 0.0, held: bool = False
    ) -> FakeModel:
        """One tool call; a dict is JSON-encoded, a string is sent exactly as given."""
        return self.calls([(name, arguments)], delay=delay, held=held)

    def calls(
        self, calls: list[tuple[str, str | dict[str, Any]]], *, delay: float = 0.0, held: bool = False
    ) -> FakeModel:
        """Several tool calls in one turn."""
        raw = [(n, a if isinstance(a, str) else json.dumps(a)) for n, a in calls]
        return self._add(ScriptedTurn(tool_calls=raw, delay=delay), held)

    def _add(self, turn: ScriptedTurn, held: bool) -> FakeModel:
        if held:
            turn.gate = threading.Event()
        with self.lock:
            self.script.append(turn)
        return self

    def fail(self, status: int = 500, *, times: int = 1) -> FakeModel:
        """`times` turns answered with an HTTP error (saying: retry after 10 ms)."""
        with self.lock:
            for _ in range(times):
                self.script.append(ScriptedTurn(status=status))
        return self

    def hold(self) -> None:
        """Keep every request waiting (the model is "thinking") until `release()`."""
        self._released.clear()

    def release(self) -> None:
        """Let held requests and held turns answer."""
        self._released.set()
        with self.lock:
            turns = [*self.script, *self._answering]
        for turn in turns:
            if turn.gate is not None:
                turn.gate.set()

    def stop(self) -> None:
        self.release()
        super().stop()

    # Assertions -----------------------------------------------------------------

    @property
    def remaining(self) -> int:
        with self.lock:
            return len(self.script)

    def messages(self, index: int) -> list[dict[str, Any]]:
        """The messages of the `index`-th request."""
        with self.lock:
            return list(self.requests[index]["messages"])

    def tool_results(self, index: int) -> list[str]:
        """The tool results the `index`-th request carried, in order."""
        return [str(m.get("content")) for m in self.messages(index) if m.get("role") == "tool"]

    def tool_names(self, index: int) -> list[str]:
        with self.lock:
            return [t["function"]["name"] for t in self.requests[index].get("tools") or []]

    # The API --------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        if method != "POST" or urlsplit(path).path.rstrip("/") != "/v1/chat/completions":
            return Reply(404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}})
        if not headers.get("authorization", "").startswith("Bearer "):
            return Reply(401, {"error": {"message": "missing api key", "type": "invalid_request_error"}})
        body = json.loads(raw)
        with self.lock:
            self.requests.append(body)
            turn = self.script.popleft() if self.script else None
            if turn is None:
                self.overrun += 1
            else:
                self._answering.append(turn)
        if turn is None:
            message = "fake model: the script has no turn left for this request"
            return Reply(400, {"error": {"message": message, "type": "invalid_request_error"}})
        self._released.wait(timeout=HOLD_LIMIT)
        if turn.gate is not None:
            turn.gate.wait(timeout=HOLD_LIMIT)
        with self.lock:
            self._answering.remove(turn)
        if turn.delay:
            time.sleep(turn.delay)
        if turn.status is not None:
            error = {"error": {"message": f"scripted HTTP {turn.status}", "type": "server_error"}}
            return Reply(turn.status, error, {"retry-after-ms": "10"})  # the client retries quickly
        return Reply(200, self._completion(body, turn))

    def _completion(self, body: dict[str, Any], turn: ScriptedTurn) -> dict[str, Any]:
        n = next(self._ids)
        message: dict[str, Any] = {"role": "assistant", "content": turn.content, "refusal": None}
        if turn.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{n}_{i}", "type": "function", "function": {"name": name, "arguments": args}}
                for i, (name, args) in enumerate(turn.tool_calls)
            ]
        prompt = sum(len(str(m.get("content") or "")) for m in body.get("messages", [])) // 4 + 1
        completion = len(turn.content or "") // 4 + 5 * len(turn.tool_calls) + 1
        return {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if turn.tool_calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
