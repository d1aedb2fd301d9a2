"""A scripted OpenAI-compatible server: POST /v1/chat/completions answers one turn per request.

A test queues the turns the "model" will take (an answer, or tool calls with raw argument
strings, malformed ones included), and asserts on the requests it received: the messages
(tool results included) and the tools offered. A request with no turn left is answered
with HTTP 400 and counted in `overrun`, so a run that asks more than the script expects
fails visibly instead of hanging.

By default it takes any well-formed request. Two opt-in behaviours are those of real servers
that the plain fake would let pass:
- `strict=True`: a small local server (llama.cpp's, llama-cpp-python's). Tools offered without
  `tool_choice` are left out of the prompt, so a scripted call comes back as text, the way a
  model that never saw the tools writes it; an assistant message whose content is null, or a
  tool schema with a `maxLength` over GRAMMAR_LIMIT, crashes the request (HTTP 500
  internal_server_error, each time it is sent); tool calls left without their results are
  refused (HTTP 400); a request without an output limit is recorded in `problems`.
- `reasoning=True`: one of OpenAI's reasoning models: `max_tokens` and `temperature` are
  refused (HTTP 400, in OpenAI's words).
A request a behaviour refuses does not use up a scripted turn: sent again, it is refused again.
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
GRAMMAR_LIMIT = 1000
"""The longest `maxLength` a strict server turns into a grammar without running out of memory."""


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
    error_type: str = "server_error"
    """The error's `type` with `status` (OpenAI says "server_error" for its passing faults)."""
    finish_reason: str | None = None
    """Instead of "stop" / "tool_calls": "length" for an answer cut at the output limit."""
    refusal: str | None = None
    """`message.refusal` (the content is then null)."""
    call_ids: list[str | None] | None = None
    """The tool calls' ids, when not the fake's own unique ones (None: no id at all)."""


class FakeModel(LoopbackServer):
    def __init__(self, *, model: str = "fake-model", strict: bool = False, reasoning: bool = False) -> None:
        super().__init__()
        self.model = model
        self.strict = strict
        """Behave as a small local server does (the module's docstring)."""
        self.reasoning = reasoning
        """Behave as OpenAI's reasoning models do: refuse `max_tokens` and `temperature`."""
        self.problems: list[str] = []
        """What a strict server choked on or quietly ignored, one line per request and problem."""
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
        self,
        calls: list[tuple[str, str | dict[str, Any]]],
        *,
        delay: float = 0.0,
        held: bool = False,
        ids: list[str | None] | None = None,
    ) -> FakeModel:
        """Several tool calls in one turn. `ids`: the calls' ids as a careless server gives them
        (the same for all, or None for none) instead of unique ones."""
        raw = [(n, a if isinstance(a, str) else json.dumps(a)) for n, a in calls]
        return self._add(ScriptedTurn(tool_calls=raw, delay=delay, call_ids=ids), held)

    def cut(self, content: str = "", *, call: tuple[str, str] | None = None) -> FakeModel:
        """An answer cut off at the output limit (`finish_reason` "length"): text, or a call
        whose raw arguments stop mid-way."""
        return self._add(
            ScriptedTurn(content=content or None, tool_calls=[call] if call else [], finish_reason="length"),
            False,
        )

    def refuse(self, refusal: str) -> FakeModel:
        """A refusal: `message.refusal` set, content null."""
        return self._add(ScriptedTurn(refusal=refusal), False)

    def empty(self) -> FakeModel:
        """An answer with nothing in it: content null and no tool calls."""
        return self._add(ScriptedTurn(), False)

    def _add(self, turn: ScriptedTurn, held: bool) -> FakeModel:
        if held:
            turn.gate = threading.Event()
        with self.lock:
            self.script.append(turn)
        return self

    def fail(self, status: int = 500, *, times: int = 1, error_type: str = "server_error") -> FakeModel:
        """`times` turns answered with an HTTP error (saying: retry after 10 ms). `error_type`:
        "server_error" is OpenAI's passing fault; "internal_server_error" is what
        llama-cpp-python says of an exception a request raised."""
        with self.lock:
            for _ in range(times):
                self.script.append(ScriptedTurn(status=status, error_type=error_type))
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
            number = len(self.requests)
        refused = self._refused(body, number)
        if refused is not None:
            return refused
        with self.lock:
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
            error = {"error": {"message": f"scripted HTTP {turn.status}", "type": turn.error_type}}
            return Reply(turn.status, error, {"retry-after-ms": "10"})  # the client retries quickly
        if self.strict and body.get("tools") and body.get("tool_choice") is None:
            self._problem(number, "tools offered without tool_choice: left out of the prompt")
            turn = _without_tools(turn)
        return Reply(200, self._completion(body, turn))

    # Real servers' behaviours -------------------------------------------------------

    def _refused(self, body: dict[str, Any], number: int) -> Reply | None:
        """The answer of a server that cannot take this request, or None when it can."""
        if self.reasoning:
            for param, message in (
                (
                    "max_tokens",
                    "Unsupported parameter: 'max_tokens' is not supported with this model. "
                    "Use 'max_completion_tokens' instead.",
                ),
                ("temperature", "Unsupported parameter: 'temperature' is not supported with this model."),
            ):
                if param in body:
                    return _error(400, message, "invalid_request_error", param=param)
        if not self.strict:
            return None
        if "max_tokens" not in body and "max_completion_tokens" not in body:
            self._problem(number, "no max_tokens: the model may write up to its whole context")
        messages = body.get("messages") or []
        for m in messages:
            if m.get("role") == "assistant" and m.get("content") is None:
                # What a chat template does with it (llama-cpp-python: HTTP 500, each time).
                self._problem(number, "an assistant message with null content")
                return _error(
                    500, 'can only concatenate str (not "NoneType") to str', "internal_server_error"
                )
        for tool in body.get("tools") or []:
            limit = _longest_max_length(tool)
            if limit > GRAMMAR_LIMIT:
                self._problem(number, f"maxLength {limit} in the tool schema")
                return _error(
                    500,
                    f"failed to build the grammar: repetition of {limit} is too large",
                    "internal_server_error",
                )
        unanswered = _unanswered_calls(messages)
        if unanswered:
            self._problem(number, f"tool calls without results: {unanswered}")
            return _error(
                400,
                "An assistant message with 'tool_calls' must be followed by tool messages responding "
                f"to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                f"{', '.join(unanswered)}",
                "invalid_request_error",
                param="messages",
            )
        return None

    def _problem(self, number: int, problem: str) -> None:
        with self.lock:
            self.problems.append(f"request {number}: {problem}")

    def _completion(self, body: dict[str, Any], turn: ScriptedTurn) -> dict[str, Any]:
        n = next(self._ids)
        message: dict[str, Any] = {"role": "assistant", "content": turn.content, "refusal": turn.refusal}
        if turn.tool_calls:
            ids = turn.call_ids or [f"call_{n}_{i}" for i in range(len(turn.tool_calls))]
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
                for call_id, (name, args) in zip(ids, turn.tool_calls, strict=True)
            ]
        finish = turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop")
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
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }


def _error(status: int, message: str, error_type: str, *, param: str | None = None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": error_type, "param": param, "code": None}})


def _without_tools(turn: ScriptedTurn) -> ScriptedTurn:
    """What a model that was never shown the tools answers instead of calling one: the call as text."""
    if not turn.tool_calls:
        return turn
    text = "\n".join(json.dumps({"name": name, "arguments": args}) for name, args in turn.tool_calls)
    return ScriptedTurn(content=text)


def _longest_max_length(node: Any) -> int:
    if isinstance(node, dict):
        own = node.get("maxLength")
        inner = max((_longest_max_length(v) for v in node.values()), default=0)
        return max(own if isinstance(own, int) else 0, inner)
    if isinstance(node, list):
        return max((_longest_max_length(v) for v in node), default=0)
    return 0


def _unanswered_calls(messages: list[dict[str, Any]]) -> list[str]:
    """Ids of tool calls not answered by the tool messages right after their assistant message."""
    missing: list[str] = []
    for i, m in enumerate(messages):
        if m.get("role") != "assistant" or not m.get("tool_calls"):
            continue
        answered = set()
        for later in messages[i + 1 :]:
            if later.get("role") != "tool":
                break
            answered.add(later.get("tool_call_id"))
        missing += [str(c.get("id")) for c in m["tool_calls"] if c.get("id") not in answered]
    return missing
