"""The Action contract: pydantic arguments, `run`, `compensate`, risk and resource."""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from agents.ports import Chat
from storage.engine import Database


@dataclass(frozen=True)
class Requester:
    """Who asked, and where the run reports (never sent to the model as such)."""

    team_id: str
    channel_id: str
    user_id: str
    thread_ts: str


@dataclass
class ActionContext:
    """Dependencies an action runs with: the typed run context."""

    run_id: int
    agent: str
    requester: Requester
    db: Database
    chat: Chat
    idempotency_key: str
    """Stable for this step across retries and crash-resumes."""
    author_note: str = ""
    """Appended to text the action writes for people ("offline planner" label), or empty."""
    workspace: str = ""
    """The workspace whose rows the action reads and writes (the ticket tracker): the run's
    team when the app is installed in many, "" (every workspace) with one."""


@dataclass
class ActionResult:
    output: str
    """What the model reads as the tool result."""
    summary: str
    """One line for people: 'created ticket #12 "Login bug"'."""
    undo: dict[str, Any] | None = None
    """What `compensate` needs to reverse this; None when there is nothing to reverse."""
    data: dict[str, Any] = field(default_factory=dict)


class Action(ABC):
    """A typed operation. Subclasses set the class attributes and implement run/compensate."""

    name: str
    description: str
    args_model: type[BaseModel]
    risk: str = "low"
    reversible: bool = True
    read_only: bool = False
    idempotent: bool = False
    """Safe to run again with the same idempotency key when a crash hid its result."""
    autonomy: str | None = None
    """At least this strict (auto, approve, propose) for every agent."""
    customers: bool = False
    """May run on a customer's request (guests and users of other workspaces)."""
    family: ClassVar[str] = "builtin"

    def resource(self, args: BaseModel, ctx: ActionContext) -> str | None:
        """The resource this call touches (for locking), e.g. 'ticket:12'."""
        return None

    @abstractmethod
    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult: ...

    async def compensate(self, ctx: ActionContext, undo: dict[str, Any]) -> str:
        """Reverse a completed run; returns what was done. Must be idempotent."""
        raise NotImplementedError(f"{self.name} cannot be reversed")

    def tool(self) -> dict[str, Any]:
        """The OpenAI tool definition: name, description, JSON schema of the arguments."""
        schema = _SCHEMAS.get(self.args_model)
        if schema is None:  # pydantic builds a schema anew each time: ~0.1 ms, per tool per run
            schema = _SCHEMAS[self.args_model] = _clean_schema(self.args_model.model_json_schema())
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": schema},
        }


_SCHEMAS: weakref.WeakKeyDictionary[type[BaseModel], dict[str, Any]] = weakref.WeakKeyDictionary()
"""Each arguments model's cleaned schema (shared by every call of `tool`: read, never changed)."""

SCHEMA_MAX_LENGTH = 256
"""The longest `maxLength` a tool schema states. Grammar-constrained servers (llama.cpp and
its kin) turn a schema into a grammar, where `maxLength: 20000` becomes 20000 nested rules and
the server runs out of memory or crashes. A longer limit is said in words instead; the
arguments model (`Action.args_model`) still enforces it when the call arrives, and a value
over it goes back to the model as an invalid argument."""


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's titles (models read descriptions, and titles cost tokens), and keep
    length limits modest (SCHEMA_MAX_LENGTH)."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: strip(v) for k, v in node.items() if k != "title" or not isinstance(v, str)}
            limit = out.get("maxLength")
            if isinstance(limit, int) and limit > SCHEMA_MAX_LENGTH:
                del out["maxLength"]
                said = f"At most {limit} characters."
                before = str(out.get("description") or "").rstrip(".")
                out["description"] = f"{before}. {said}" if before else said
            return out
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    result: dict[str, Any] = strip(schema)
    result.setdefault("properties", {})
    return result
