"""The model behind an agent: OpenAI Chat Completions with tools, or the offline planner."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

from agents.conversation import TurnContext
from agents.errors import ModelError

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

    def message(self) -> dict[str, Any]:
        """The assistant message as the Chat Completions API takes it back."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
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
    """Any OpenAI-compatible server (OpenAI, Azure, vLLM, Ollama) through the `openai` client.

    The client retries timeouts, connection errors, 429 and 5xx with backoff.
    """

    offline = False

    def __init__(self, client: AsyncOpenAI, model: str) -> None:
        self.client = client
        self.model = model
        self.label = model

    async def next_turn(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        context: TurnContext | None = None,
    ) -> Turn:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages}
        if tools:
            kwargs["tools"] = tools
        try:
            # The client's own `post` to the Chat Completions endpoint, with the same retries,
            # timeout, auth and error types as `chat.completions.create`, and the same typed
            # ChatCompletion back. `create` first walks every message and tool through its
            # TypedDict transform, which for this plain JSON changes nothing and cost 1.5 ms of
            # CPU per turn at 8 messages (docs/benchmarks.md, "Where the time goes").
            response = await self.client.post("/chat/completions", body=kwargs, cast_to=ChatCompletion)
        except openai.APIStatusError as e:
            overloaded = e.status_code == 429 or e.status_code >= 500
            raise ModelError(
                f"the model server answered HTTP {e.status_code}: {_brief(e)}", transient=overloaded
            ) from None
        except openai.APITimeoutError:
            raise ModelError("the model did not answer in time", transient=True) from None
        except openai.APIConnectionError:
            raise ModelError("could not reach the model server", transient=True) from None
        except openai.OpenAIError as e:
            raise ModelError(f"model error: {type(e).__name__}: {_brief(e)}") from None
        if not response.choices:
            raise ModelError("the model answered with no choices")
        message = response.choices[0].message
        calls = []
        for c in message.tool_calls or []:
            function = getattr(c, "function", None)  # custom (non-function) tool calls have none
            if function is not None:
                calls.append(ToolCall(id=c.id, name=function.name, arguments=function.arguments or ""))
        usage = response.usage
        return Turn(
            content=message.content,
            tool_calls=calls,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )


def _brief(e: Exception) -> str:
    text = str(e)
    return text if len(text) < 300 else text[:300] + "…"


def make_client(*, api_key: str, base_url: str | None, timeout: float, max_retries: int) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)
