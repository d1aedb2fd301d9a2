"""Actions declared in the configuration file: shell commands and HTTP calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from asyncio.subprocess import Process
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, BaseModel, Field, create_model
from pydantic_core import PydanticCustomError

from agents import shell
from agents.actions.base import Action, ActionContext, ActionResult
from agents.config import BASE_ENVIRONMENT, CommandActionConfig, HttpActionConfig, HttpRequestSpec, ParamSpec
from agents.errors import ActionError, ActionTimeoutError
from agents.templating import inspect, render_data, render_shell, render_text, render_url, url_departure

OUTPUT_HEAD = 8_000  # bytes of command output kept from the start ...
OUTPUT_TAIL = 8_000  # ... and from the end; the middle of huge output is dropped
MODEL_OUTPUT = 4_000  # characters of output the model reads

_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}


Check = Callable[[Any], Any]


def args_model_for(
    name: str, specs: dict[str, ParamSpec], checks: Mapping[str, Check] | None = None
) -> type[BaseModel]:
    """A pydantic model (and so a JSON schema) from the `params` table.

    `checks` adds a validator to some parameters: a value it refuses goes back to the
    model as an invalid argument, before anything is journaled or run.
    """
    fields: dict[str, Any] = {}
    for pname, spec in specs.items():
        typ: Any = _TYPES[spec.type]
        if spec.enum:
            typ = Literal[tuple(spec.enum)]
        if checks and pname in checks:
            typ = Annotated[typ, AfterValidator(checks[pname])]
        kwargs: dict[str, Any] = {"description": spec.description or None}
        if spec.pattern and spec.type == "string":
            kwargs["pattern"] = spec.pattern
        if spec.type == "string" and not spec.enum:
            kwargs["max_length"] = 4096
        if spec.required and spec.default is None:
            fields[pname] = (typ, Field(..., **kwargs))
        else:
            fields[pname] = (typ | None, Field(default=spec.default, **kwargs))
    model: type[BaseModel] = create_model(f"{name}_args", **fields)
    return model


class ConfiguredAction(Action):
    family = "config"

    def __init__(self, cfg: CommandActionConfig | HttpActionConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.description = cfg.description
        self.args_model = args_model_for(cfg.name, cfg.param_specs(), self._checks())
        self.risk = cfg.risk
        self.reversible = cfg.is_reversible()
        self.read_only = cfg.read_only
        self.idempotent = cfg.idempotent or cfg.read_only
        self.autonomy = cfg.autonomy
        self.customers = cfg.customers

    def _checks(self) -> dict[str, Check]:
        """Validators for parameters whose value could change what the action does."""
        return {}

    def resource(self, args: BaseModel, ctx: ActionContext) -> str | None:
        if not self.cfg.resource:
            return None
        return render_text(self.cfg.resource, args.model_dump())

    def _undo_data(
        self, params: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        if self.cfg.undo is None:
            return None
        return {"params": params, **(extra or {})}


class CommandAction(ConfiguredAction):
    """Runs `run` through /bin/sh with each parameter shell-quoted; non-zero exit fails."""

    cfg: CommandActionConfig

    def _checks(self) -> dict[str, Check]:
        # An enum's values are the operator's own words; any other value could be an option.
        specs = self.cfg.param_specs().items()
        return {p: _not_an_option for p, spec in specs if not spec.allow_leading_dash and not spec.enum}

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        params = args.model_dump()
        command = render_shell(self.cfg.run, params)
        output = await self._execute(command, ctx)
        shown = output if output.strip() else "(no output)"
        return ActionResult(
            output=_truncate(f"exit status 0\n{shown}", MODEL_OUTPUT),
            summary=f"ran {self.name}",
            undo=self._undo_data(params),
            data={"command": command},
        )

    async def compensate(self, ctx: ActionContext, undo: dict[str, Any]) -> str:
        assert self.cfg.undo is not None
        command = render_shell(self.cfg.undo, undo["params"])
        await self._execute(command, ctx)
        return f"ran the undo of {self.name}"

    async def _execute(self, command: str, ctx: ActionContext) -> str:
        proc = await _start(command, cwd=self.cfg.cwd, env=self._environment(ctx), action=self.name)
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancellation that
            # arrives as the command ends, and a stopping worker would go on to the next step.
            async with asyncio.timeout(self.cfg.timeout):
                output = await _read_capped(proc)
        except TimeoutError:
            _kill_group(proc)
            await proc.wait()
            raise ActionTimeoutError(self.name, self.cfg.timeout) from None
        except asyncio.CancelledError:
            await _stop(proc)  # the worker is stopping: leave no process behind, and stop too
            raise
        if proc.returncode != 0:
            tail = _truncate(output.strip(), 1500, keep="tail") or "(no output)"
            raise ActionError(f"{self.name} exited with status {proc.returncode}: {tail}")
        return output

    def _environment(self, ctx: ActionContext) -> dict[str, str]:
        """Only what a command needs: never the bot's own credentials (SLACK_*, OPENAI_*, ...)."""
        env = {k: os.environ[k] for k in (*BASE_ENVIRONMENT, *self.cfg.env) if k in os.environ}
        env.update(
            CHATOPS_RUN_ID=str(ctx.run_id),
            CHATOPS_AGENT=ctx.agent,
            CHATOPS_IDEMPOTENCY_KEY=ctx.idempotency_key,
        )
        return env


async def _start(command: str, *, cwd: str | None, env: dict[str, str], action: str) -> Process:
    """Start `/bin/sh -c command` in its own process group, and never lose the process.

    A cancellation can land after the fork but before `create_subprocess_exec` returns;
    the caller would never learn the pid and the command would run on. So the start runs
    in its own task, shielded: on cancellation it is waited for, and what it started is
    killed and reaped before the cancellation goes on.
    """
    start = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own process group, so a timeout kills children too
        )
    )
    try:
        return await asyncio.shield(start)
    except asyncio.CancelledError:
        await _outlast(start)
        if not start.cancelled() and start.exception() is None:
            await _stop(start.result())
        raise
    except OSError as e:  # no /bin/sh, a missing or forbidden cwd
        raise ActionError(f"{action} could not start: {e}") from None


async def _stop(proc: Process) -> None:
    """Kill the command's process group and wait until it is reaped.

    Only for a caller that is handling a cancellation and re-raises it afterwards: a
    further cancellation meanwhile is absorbed, so that nothing is left running.
    """
    _kill_group(proc)
    await _outlast(asyncio.ensure_future(proc.wait()))


async def _outlast(future: asyncio.Future[Any]) -> None:
    """Wait until `future` is done, absorbing cancellations (see `_stop`)."""
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([future])  # unlike wait_for, never cancels what it waits for


async def _read_capped(proc: Process) -> str:
    """Read all output, keeping the head and tail so huge output cannot exhaust memory."""
    assert proc.stdout is not None
    head = bytearray()
    tail = bytearray()
    total = 0
    while chunk := await proc.stdout.read(65536):
        total += len(chunk)
        room = OUTPUT_HEAD - len(head)
        if room > 0:
            head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            tail += chunk
            del tail[:-OUTPUT_TAIL]
    await proc.wait()
    text = head.decode("utf-8", "replace")
    if total > OUTPUT_HEAD + OUTPUT_TAIL:
        dropped = total - OUTPUT_HEAD - len(tail)
        text += f"\n… [{dropped} bytes of output omitted] …\n"
    return text + tail.decode("utf-8", "replace")


def _kill_group(proc: Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class HttpAction(ConfiguredAction):
    """An HTTP call; URL parameters are percent-encoded, non-2xx fails."""

    cfg: HttpActionConfig

    def _checks(self) -> dict[str, Check]:
        urls = [self.cfg.url] + ([self.cfg.undo.url] if self.cfg.undo else [])
        in_url = set().union(*(inspect(u, "url").variables for u in urls))
        return {p: _not_a_dot_segment for p in self.cfg.params if p in in_url}

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        params = args.model_dump()
        spec = HttpRequestSpec(
            method=self.cfg.method, url=self.cfg.url, body=self.cfg.body, headers=self.cfg.headers
        )
        status, text, parsed = await self._send(spec, params, ctx)
        return ActionResult(
            output=_truncate(f"HTTP {status}\n{text}", MODEL_OUTPUT),
            summary=f"called {self.name} (HTTP {status})",
            undo=self._undo_data(params, {"response": parsed}),
            data={"status": status},
        )

    async def compensate(self, ctx: ActionContext, undo: dict[str, Any]) -> str:
        assert self.cfg.undo is not None
        params = {**undo["params"], "response": undo.get("response")}
        status, _, _ = await self._send(self.cfg.undo, params, ctx)
        return f"called the undo of {self.name} (HTTP {status})"

    async def _send(
        self, spec: HttpRequestSpec, params: dict[str, Any], ctx: ActionContext
    ) -> tuple[int, str, Any]:
        url = render_url(spec.url, params)
        if departure := url_departure(spec.url, url):
            raise ActionError(f"{self.name}: refused: {departure}")
        headers = {k: render_text(v, params) for k, v in spec.headers.items()}
        headers.setdefault("Idempotency-Key", ctx.idempotency_key)
        kwargs: dict[str, Any] = {"headers": headers}
        if isinstance(spec.body, dict):
            kwargs["json"] = render_data(spec.body, params)
        elif isinstance(spec.body, str):
            kwargs["content"] = render_text(spec.body, params).encode()
        try:
            async with httpx.AsyncClient(timeout=self.cfg.timeout) as client:
                response = await client.request(spec.method, url, **kwargs)
        except httpx.TimeoutException:
            raise ActionTimeoutError(self.name, self.cfg.timeout) from None
        except httpx.HTTPError as e:
            raise ActionError(f"{self.name}: {type(e).__name__}: {e}", transient=True) from None
        text = response.text
        if not response.is_success:
            raise ActionError(
                f"{self.name}: HTTP {response.status_code}: {_truncate(text, 1000)}",
                transient=response.status_code >= 500 or response.status_code == 429,
            )
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return response.status_code, text, parsed


def _not_an_option(value: Any) -> Any:
    if shell.text(value).startswith("-"):
        raise PydanticCustomError(
            "leading_dash", "must not start with '-': the command would read it as an option"
        )
    return value


def _not_a_dot_segment(value: Any) -> Any:
    if shell.text(value) in (".", ".."):
        raise PydanticCustomError("dot_segment", "cannot be '.' or '..': it is part of the URL")
    return value


def _truncate(text: str, limit: int, keep: str = "head") -> str:
    if len(text) <= limit:
        return text
    if keep == "tail":
        return "…" + text[-limit:]
    return text[:limit] + f"\n… [{len(text) - limit} more characters]"


def build(cfg: CommandActionConfig | HttpActionConfig) -> Action:
    return CommandAction(cfg) if isinstance(cfg, CommandActionConfig) else HttpAction(cfg)
