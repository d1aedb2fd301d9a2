"""Command actions run for real through /bin/sh, in a temporary directory."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from agent_doubles import RecordingChat
from pydantic import ValidationError

from agents.actions.base import ActionContext, Requester
from agents.actions.configured import OUTPUT_HEAD, OUTPUT_TAIL, CommandAction, build
from agents.config import CommandActionConfig, parse_config
from agents.errors import ActionError, ActionTimeoutError, ConfigError
from storage.engine import Database


def _action(tmp_path: Path, **fields: Any) -> CommandAction:
    spec: dict[str, Any] = {
        "name": "cmd",
        "description": "a command",
        "kind": "command",
        "cwd": str(tmp_path),
    }
    spec.update(fields)
    action = build(CommandActionConfig.model_validate(spec))
    assert isinstance(action, CommandAction)
    return action


def _ctx(db: Database, key: str = "chatops-7-call-1") -> ActionContext:
    return ActionContext(
        run_id=7,
        agent="ops",
        requester=Requester("T1", "C1", "U1", "1690000000.000001"),
        db=db,
        chat=RecordingChat(),
        idempotency_key=key,
    )


def _gone(pid: int) -> bool:
    """True when the process no longer runs (reaped, or a zombie nobody waited for)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _text(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("chatops.db"))


async def _wait_for_file(path: Path) -> str:
    for _ in range(200):
        if text := _text(path):
            return text
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


HOSTILE = [
    "; touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "'; touch pwned; '",
    '"; touch pwned; "',
    "line one\ntouch pwned\n",
    "x && touch pwned || touch pwned",
    "| touch pwned",
    "$HOME ~ * ?",
    "\\'\\\"",
]


@pytest.mark.parametrize("value", HOSTILE)
async def test_parameters_never_become_shell_syntax(tmp_path: Path, db: Database, value: str) -> None:
    action = _action(tmp_path, params={"value": "string"}, run="printf '%s' {{ value }} > received.txt")
    args = action.args_model.model_validate({"value": value})

    await action.run(_ctx(db), args)

    assert not (tmp_path / "pwned").exists()
    assert (tmp_path / "received.txt").read_text() == value  # the literal value reached the command
    assert _files(tmp_path) == ["received.txt"]


async def test_success_output_and_undo_data(tmp_path: Path, db: Database) -> None:
    action = _action(
        tmp_path,
        params={"label": "string"},
        run="printf 'do %s\\n' {{ label }} >> log; echo did it",
        undo="printf 'undo %s\\n' {{ label }} >> log",
    )
    result = await action.run(_ctx(db), action.args_model.model_validate({"label": "a b"}))

    assert result.output == "exit status 0\ndid it\n"
    assert result.undo == {"params": {"label": "a b"}}
    assert result.data["command"] == "printf 'do %s\\n' 'a b' >> log; echo did it"

    done = await action.compensate(_ctx(db), result.undo)
    assert "undo" in done
    assert (tmp_path / "log").read_text() == "do a b\nundo a b\n"


async def test_no_undo_means_no_undo_data(tmp_path: Path, db: Database) -> None:
    action = _action(tmp_path, run="true")
    result = await action.run(_ctx(db), action.args_model.model_validate({}))
    assert result.undo is None
    assert result.output == "exit status 0\n(no output)"
    assert not action.reversible


async def test_idempotency_key_and_run_are_in_the_environment(tmp_path: Path, db: Database) -> None:
    action = _action(
        tmp_path, run='printf "%s %s %s" "$CHATOPS_IDEMPOTENCY_KEY" "$CHATOPS_RUN_ID" "$CHATOPS_AGENT"'
    )
    result = await action.run(_ctx(db, key="chatops-7-call-9"), action.args_model.model_validate({}))
    assert result.output == "exit status 0\nchatops-7-call-9 7 ops"


async def test_a_command_gets_a_minimal_environment_and_never_the_bots_credentials(
    tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-fake-bot-token")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "fake-signing-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-openai-key")
    monkeypatch.setenv("DATABASE_URL", "postgresql://chatops:secret@db/chatops")
    monkeypatch.setenv("SOMETHING_ELSE", "x")
    monkeypatch.setenv("KUBECONFIG", "/etc/kube/config")
    monkeypatch.setenv("HOME", "/home/ops")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("TZ", "Europe/Paris")
    action = _action(tmp_path, run="env", env=["KUBECONFIG"])

    result = await action.run(_ctx(db, key="chatops-7-call-2"), action.args_model.model_validate({}))

    seen = dict(line.split("=", 1) for line in result.output.splitlines()[1:])
    seen.pop("PWD", None)  # the shell's own
    assert seen == {
        "PATH": os.environ["PATH"],
        "HOME": "/home/ops",
        "LANG": "C.UTF-8",
        "TZ": "Europe/Paris",
        "KUBECONFIG": "/etc/kube/config",
        "CHATOPS_RUN_ID": "7",
        "CHATOPS_AGENT": "ops",
        "CHATOPS_IDEMPOTENCY_KEY": "chatops-7-call-2",
    }
    assert "fake" not in result.output and "secret" not in result.output


async def test_unset_base_variables_are_not_invented(
    tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HOME", "LANG", "TZ"):
        monkeypatch.delenv(name, raising=False)
    action = _action(tmp_path, run="env")
    result = await action.run(_ctx(db), action.args_model.model_validate({}))
    names = {line.split("=", 1)[0] for line in result.output.splitlines()[1:]} - {"PWD"}
    assert names == {"PATH", "CHATOPS_RUN_ID", "CHATOPS_AGENT", "CHATOPS_IDEMPOTENCY_KEY"}


async def test_a_command_that_cannot_start_is_an_action_error(tmp_path: Path, db: Database) -> None:
    action = _action(tmp_path / "gone", run="true")
    with pytest.raises(ActionError) as info:
        await action.run(_ctx(db), action.args_model.model_validate({}))
    assert str(info.value).startswith("cmd could not start: [Errno 2] No such file or directory")
    assert not info.value.transient


async def test_nonzero_exit_is_an_action_error_with_status_and_output_tail(
    tmp_path: Path, db: Database
) -> None:
    action = _action(tmp_path, run="seq 1 5000; echo 'disk is full' >&2; exit 3")
    with pytest.raises(ActionError) as info:
        await action.run(_ctx(db), action.args_model.model_validate({}))
    message = str(info.value)
    assert message.startswith("cmd exited with status 3: ")
    assert message.endswith("4999\n5000\ndisk is full")  # the tail, stderr included
    assert "\n1\n2\n" not in message  # the head of long output is dropped
    assert len(message) < 1600
    assert not info.value.transient


async def test_timeout_kills_the_whole_process_group(tmp_path: Path, db: Database) -> None:
    action = _action(tmp_path, run="sleep 30 & echo $! > child.pid; wait", timeout=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ActionTimeoutError) as info:
        await action.run(_ctx(db), action.args_model.model_validate({}))
    assert loop.time() - started < 5
    assert info.value.action == "cmd" and info.value.timeout == 0.5
    assert info.value.transient
    assert str(info.value) == "cmd timed out after 0.5s"

    child = int((tmp_path / "child.pid").read_text())
    for _ in range(100):
        if _gone(child):
            break
        await asyncio.sleep(0.02)
    assert _gone(child), "the child `sleep` outlived the timeout"


async def test_cancelling_a_command_propagates_and_kills_the_process_group(
    tmp_path: Path, db: Database
) -> None:
    """A worker that stops (or lost its lease) cancels the run's task: that is not a timeout.

    The cancellation must reach the caller, so the step stays an intent and the run resumes later,
    instead of being journaled as a failed, timed-out action while the loop carries on.
    """
    action = _action(tmp_path, run="sleep 30 & echo $! > child.pid; wait", timeout=60)
    task = asyncio.create_task(action.run(_ctx(db), action.args_model.model_validate({})))
    child = int(await _wait_for_file(tmp_path / "child.pid"))

    task.cancel()
    outcome: BaseException | None = None
    try:
        await task
    except BaseException as e:  # what the cancelled task ended with is the point of the test
        outcome = e
    for _ in range(100):
        if _gone(child):
            break
        await asyncio.sleep(0.02)
    assert _gone(child)
    assert isinstance(outcome, asyncio.CancelledError), f"cancellation became {outcome!r}"


async def test_a_cancellation_during_the_start_of_a_command_leaves_no_process(
    tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancellation lands while `create_subprocess_exec` has forked but not yet returned.

    The start is held open at that point (the child exists, the call has not returned) until
    the task has been cancelled: without protection the caller never learns the pid, and the
    command's whole process group runs on.
    """
    real_start = asyncio.create_subprocess_exec
    spawned: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def slow_start(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        proc = await real_start(*args, **kwargs)
        spawned.set_result(proc.pid)
        await release.wait()  # still "starting" when the cancellation arrives
        return proc

    monkeypatch.setattr(asyncio, "create_subprocess_exec", slow_start)
    action = _action(tmp_path, run="sleep 30 & echo $! > child.pid; wait", timeout=60)
    task = asyncio.create_task(action.run(_ctx(db), action.args_model.model_validate({})))
    leader = await spawned
    child = int(await _wait_for_file(tmp_path / "child.pid"))

    task.cancel()  # delivered at once: the task waits inside the start
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert _gone(leader), "the shell outlived the cancellation"
    for _ in range(100):
        if _gone(child):
            break
        await asyncio.sleep(0.02)
    assert _gone(child), "the command's child outlived the cancellation"


async def test_huge_output_is_truncated_and_stays_small(tmp_path: Path, db: Database) -> None:
    size = 50_000_000
    action = _action(tmp_path, run=f"yes | head -c {size}", timeout=30)

    text = await action._execute(f"yes | head -c {size}", _ctx(db))
    assert len(text) < OUTPUT_HEAD + OUTPUT_TAIL + 200
    assert f"[{size - OUTPUT_HEAD - OUTPUT_TAIL} bytes of output omitted]" in text
    assert text.startswith("y\ny\n") and text.endswith("y\ny\n")

    result = await action.run(_ctx(db), action.args_model.model_validate({}))
    assert len(result.output) < 4_200
    assert "more characters" in result.output


async def test_huge_output_of_a_failing_command_keeps_the_error_small(tmp_path: Path, db: Database) -> None:
    action = _action(tmp_path, run="yes | head -c 20000000; echo 'the real error'; exit 1", timeout=30)
    with pytest.raises(ActionError) as info:
        await action.run(_ctx(db), action.args_model.model_validate({}))
    assert str(info.value).endswith("the real error")
    assert len(str(info.value)) < 1600


async def test_undo_is_rendered_with_quoted_parameters(tmp_path: Path, db: Database) -> None:
    action = _action(
        tmp_path,
        params={"service": "string"},
        run="true",
        undo="printf '%s' {{ service }} > undone.txt",
    )
    result = await action.run(_ctx(db), action.args_model.model_validate({"service": "$(touch pwned)"}))
    assert result.undo is not None
    await action.compensate(_ctx(db), result.undo)
    assert (tmp_path / "undone.txt").read_text() == "$(touch pwned)"
    assert not (tmp_path / "pwned").exists()


async def test_failing_undo_raises_action_error(tmp_path: Path, db: Database) -> None:
    action = _action(tmp_path, run="true", undo="exit 9")
    result = await action.run(_ctx(db), action.args_model.model_validate({}))
    assert result.undo is not None
    with pytest.raises(ActionError, match="status 9"):
        await action.compensate(_ctx(db), result.undo)


def test_arguments_model_follows_params(tmp_path: Path) -> None:
    action = _action(
        tmp_path,
        run="true",
        params={
            "service": {"type": "string", "pattern": "^[a-z]+$"},
            "count": "integer",
            "stage": {"type": "string", "enum": ["prod", "staging"]},
            "force": {"type": "boolean", "required": False},
        },
    )
    ok = action.args_model.model_validate({"service": "web", "count": 2, "stage": "prod"})
    assert ok.model_dump() == {"service": "web", "count": 2, "stage": "prod", "force": None}
    for bad in (
        {"service": "Web!", "count": 2, "stage": "prod"},
        {"service": "web", "count": "two", "stage": "prod"},
        {"service": "web", "count": 2, "stage": "dev"},
        {"count": 2, "stage": "prod"},
    ):
        with pytest.raises(ValueError):
            action.args_model.model_validate(bad)
    schema = action.tool()["function"]["parameters"]
    assert set(schema["required"]) == {"service", "count", "stage"}
    assert os.environ.get("CHATOPS_IDEMPOTENCY_KEY") is None  # never leaks into this process


OPTION = "must not start with '-': the command would read it as an option"


@pytest.mark.parametrize(
    ("params", "value"),
    [
        ({"file": "string"}, "-rf"),
        ({"file": "string"}, "--output=/etc/passwd"),
        ({"file": "string"}, "-"),
        ({"file": "integer"}, -5),
        ({"file": "number"}, -0.5),
        ({"file": {"type": "string", "required": False}}, "-x"),
    ],
)
def test_a_value_starting_with_a_dash_is_refused_as_an_argument(
    tmp_path: Path, params: dict[str, Any], value: Any
) -> None:
    action = _action(tmp_path, params=params, run="rm -- {{ file }}")
    with pytest.raises(ValidationError) as info:
        action.args_model.model_validate({"file": value})
    [error] = info.value.errors()
    assert (error["loc"], error["msg"]) == (("file",), OPTION)


def test_values_that_are_not_options_and_explicit_permission_pass(tmp_path: Path) -> None:
    action = _action(
        tmp_path,
        run="grep -e {{ word }} -- {{ file }} | head -n {{ count }}",
        params={
            "word": {"type": "string", "allow_leading_dash": True},
            "file": "string",
            "count": "integer",
            "mode": {"type": "string", "enum": ["-v", "-q"], "required": False},
            "note": {"type": "string", "required": False},
        },
    )
    args = action.args_model.model_validate({"word": "-v", "file": "a-b -c", "count": 0, "mode": "-q"})
    assert args.model_dump() == {"word": "-v", "file": "a-b -c", "count": 0, "mode": "-q", "note": None}


async def test_a_refused_value_never_reaches_the_command(tmp_path: Path, db: Database) -> None:
    """`touch {{ name }}` with `--no-create` would create nothing and succeed: it is refused first."""
    action = _action(tmp_path, params={"name": "string"}, run="touch {{ name }}")
    with pytest.raises(ValidationError):
        action.args_model.model_validate({"name": "--no-create"})
    await action.run(_ctx(db), action.args_model.model_validate({"name": "x-y"}))
    assert _files(tmp_path) == ["x-y"]


VALUE = "a \"b\" 'c' $(touch pwned) `touch pwned2` \\ $HOME"
QUOTING_CONTEXTS = [
    ("printf '%s' \"{{ value }}\" > out.txt", VALUE),
    ("printf '%s' '{{ value }}' > out.txt", VALUE),
    ("printf '%s' x{{ value }}x > out.txt", f"x{VALUE}x"),
    ("printf '%s' \"$(printf '%s' {{ value }})\" > out.txt", VALUE),
    ("cat > out.txt <<EOF\n{{ value }}\nEOF", VALUE + "\n"),
    ("cat > out.txt <<'EOF'\n{{ value }}\nEOF", None),  # a literal body: inert, shown quoted
]


@pytest.mark.parametrize(
    ("template", "expected"),
    QUOTING_CONTEXTS,
    ids=["double-quotes", "single-quotes", "bare-word", "inside-substitution", "heredoc", "quoted-heredoc"],
)
async def test_a_parameter_is_inert_wherever_the_template_puts_it(
    tmp_path: Path, db: Database, template: str, expected: str | None
) -> None:
    """Operators write `"{{ msg }}"`, `'{{ msg }}'` or heredocs out of habit: the value must stay data.

    Either the configuration refuses such a template, or the value reaches the command literally.
    """
    raw = {
        "agents": [{"name": "ops", "actions": ["cmd"]}],
        "actions": [
            {
                "name": "cmd",
                "description": "d",
                "kind": "command",
                "cwd": str(tmp_path),
                "params": {"value": "string"},
                "run": template,
            }
        ],
    }
    try:
        config = parse_config(raw)
    except ConfigError:
        return  # refused at load time: fine
    action = build(config.actions[0])

    await action.run(_ctx(db), action.args_model.model_validate({"value": VALUE}))

    assert "pwned" not in _files(tmp_path) and "pwned2" not in _files(tmp_path), (
        "the value ran as shell syntax"
    )
    if expected is not None:
        assert (tmp_path / "out.txt").read_text() == expected


def test_templates_with_unbalanced_quotes_are_refused() -> None:
    raw = {
        "agents": [{"name": "ops", "actions": ["cmd"]}],
        "actions": [{"name": "cmd", "description": "d", "kind": "command", "run": 'echo "{{ x }}'}],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, source="ops.toml")
    [(entry, field, message)] = info.value.problems
    assert (entry, field) == ("actions[0] (cmd)", "run")
    assert message.startswith("not a usable command template")
