"""The model behind an agent: OpenAI Chat Completions with tools, or the offline planner."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import openai
from openai import AsyncOpenAI, DefaultAioHttpClient
from openai.types.chat import ChatCompletion

from agents.conversation import TurnContext
from agents.errors import ModelError
from agents.model_errors import is_crash, judge, retry_delay

log = logging.getLogger(__name__)


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str
    """Raw JSON text, exactly as the model wrote it (it may be malformed)."""
    turn: int = 0
    """The journal seq of the model turn that made this call."""
    index: int = 0
    """Its place among that turn's calls."""

    @property
    def key(self) -> str:
        """Identifies the call within its run, whatever ids the model server hands out
        (some reuse ids across turns): approvals, receipts and idempotency keys use it."""
        return f"{self.turn}.{self.index}"


@dataclass
class Turn:
    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    understood: bool = True
    """False when the planner says it could not make out the request (the offline planner's
    help text): a run that ends there did nothing."""
    finish_reason: str | None = None
    """Why the model stopped ("stop", "tool_calls", "length"...), when the server says."""

    def message(self) -> dict[str, Any]:
        """The assistant message as the Chat Completions API takes it back."""
        # "" and not null beside tool calls: some servers' chat templates fail on a null (HTTP 500).
        msg: dict[str, Any] = {"role": "assistant", "content": self.content or ""}
        if self.tool_calls:
            msg["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return msg

    @classmethod
    def from_message(cls, msg: dict[str, Any]) -> Turn:
        calls = [
            ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"]["arguments"])
            for c in msg.get("tool_calls") or []
        ]
        return cls(content=msg.get("content"), tool_calls=calls)


class Planner(Protocol):
    label: str
    """How replies name the planner: the model's name, or "offline planner"."""
    offline: bool

    async def next_turn(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        context: TurnContext | None = None,
    ) -> Turn:
        """The next turn. `context`: who asks and the thread as data, for planners that read it (the
        offline planner); never sent to a model."""
        ...


class OpenAIPlanner:
    """Any OpenAI-compatible server (OpenAI, Azure, vLLM, Ollama, llama.cpp) through the `openai`
    client, asked in the plainest form every such server takes.

    Failed calls are judged and retried here, not by the client (agents/model_errors.py).
    """

    offline = False

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        *,
        max_output_tokens: int = 1024,
        max_tokens_param: str = "max_tokens",
        temperature: float | None = None,
        retries: int = 0,
    ) -> None:
        self.client = client
        self.model = model
        self.label = model
        self.max_output_tokens = max_output_tokens
        self.max_tokens_param = max_tokens_param
        """"max_tokens", or "max_completion_tokens" for OpenAI's reasoning models (which refuse the other)."""
        self.temperature = temperature
        """None: none is sent (reasoning models refuse one)."""
        self.retries = retries

    async def next_turn(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        context: TurnContext | None = None,
    ) -> Turn:
        """The model's next turn. A turn cut off at the output limit, or an empty one, is not
        passed on as it is: the model is told what happened and asked once more."""
        turn, finish = await self._ask(messages, tools)
        note = _retry_note(turn, finish, self.max_output_tokens)
        if note is None:
            return turn
        again, finish = await self._ask([*messages, {"role": "user", "content": note}], tools)
        again.prompt_tokens += turn.prompt_tokens
        again.completion_tokens += turn.completion_tokens
        if finish == "length":
            raise ModelError(
                f"the model's answer was cut off twice at its output limit ({self.max_output_tokens} "
                "tokens, the agent's max_output_tokens) before it was complete"
            )
        if _empty(again, finish):
            again.understood = False  # nothing to act on: a run that did nothing else says so
        return again

    async def _ask(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> tuple[Turn, str]:
        """One completion: the turn as the model gave it, and why it stopped."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": _sendable(messages),
            self.max_tokens_param: self.max_output_tokens,
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if tools:
            body["tools"] = tools
            # Said outright: some servers leave the tools out of the prompt without it.
            body["tool_choice"] = "auto"
        response = await self._post(body)
        if not response.choices:
            raise ModelError("the model answered with no choices")
        choice = response.choices[0]
        message = choice.message
        finish = str(choice.finish_reason or "")
        calls = [] if finish == "length" else _calls(message.tool_calls or [])  # a cut call is no call
        refusal = getattr(message, "refusal", None)
        usage = response.usage
        turn = Turn(
            content=message.content if message.content or not refusal else str(refusal),
            tool_calls=calls,
            prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
            completion_tokens=(usage.completion_tokens or 0) if usage else 0,
            finish_reason=finish or None,
        )
        return turn, finish

    async def _post(self, body: dict[str, Any]) -> ChatCompletion:
        """POST /chat/completions, tried again while the server is down or busy."""
        crashes = 0
        for attempt in range(self.retries + 1):
            try:
                # The client's own `post` to the Chat Completions endpoint, with the same timeout,
                # auth and error types as `chat.completions.create`, and the same typed
                # ChatCompletion back. `create` first walks every message and tool through its
                # TypedDict transform, which for this plain JSON changes nothing and cost 1.5 ms of
                # CPU per turn at 8 messages (docs/benchmarks.md, "Where the time goes").
                return await self.client.post("/chat/completions", body=body, cast_to=ChatCompletion)
            except openai.OpenAIError as e:
                crashes += is_crash(e)
                error = judge(e, model=self.model, crashes=crashes)
                if not error.transient or attempt == self.retries:
                    raise error from None
                headers = e.response.headers if isinstance(e, openai.APIStatusError) else None
                delay = retry_delay(attempt, headers)
                log.info("model call failed (%s); trying again in %.1fs", error, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")


def _sendable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with "" for a null assistant content (turns journaled before it was "")."""
    if not any(_null_assistant(m) for m in messages):
        return messages
    return [{**m, "content": ""} if _null_assistant(m) else m for m in messages]


def _null_assistant(message: dict[str, Any]) -> bool:
    return message.get("role") == "assistant" and message.get("content") is None


def _calls(raw: list[Any]) -> list[ToolCall]:
    """The function calls of a message, each with its own id (some servers send none, or
    one for all the calls of a turn) and its arguments as text (some send a JSON object)."""
    calls: list[ToolCall] = []
    seen: set[str] = set()
    for c in raw:
        function = getattr(c, "function", None)  # custom (non-function) tool calls have none
        if function is None:
            continue
        call_id = getattr(c, "id", None)
        if not isinstance(call_id, str) or not call_id or call_id in seen:
            call_id = f"call_{uuid.uuid4().hex[:24]}"
        seen.add(call_id)
        arguments = function.arguments
        if not isinstance(arguments, str):
            arguments = "" if arguments is None else json.dumps(arguments)
        calls.append(ToolCall(id=call_id, name=str(function.name or ""), arguments=arguments))
    return calls


def _empty(turn: Turn, finish: str) -> bool:
    return finish != "length" and not turn.tool_calls and not (turn.content or "").strip()


def _retry_note(turn: Turn, finish: str, limit: int) -> str | None:
    """What the model is told when its turn cannot be used as it is, or None when it can."""
    if finish == "length":
        return (
            f"(chatops) Your last answer was cut off at the output limit of {limit} tokens before "
            "it was complete, so it was discarded and none of it was done. Answer again, shorter: "
            "call one tool at a time with brief arguments, or reply in a few sentences."
        )
    if _empty(turn, finish):
        return "(chatops) Your last answer was empty. Call one of your tools, or reply in words."
    return None


def make_client(*, api_key: str, base_url: str | None, timeout: float) -> AsyncOpenAI:
    """The client, without retries of its own: OpenAIPlanner decides what is worth trying again.

    On the SDK's aiohttp transport (`DefaultAioHttpClient`): its default HTTP stack walks its
    whole connection pool for every request and every release, which cost a fifth of a run's
    CPU with hundreds of runs at once (docs/benchmarks.md, issue 18).
    """
    return AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        max_retries=0,
        http_client=DefaultAioHttpClient(timeout=timeout),
    )
