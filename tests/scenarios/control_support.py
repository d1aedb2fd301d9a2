"""Shared set-up for the human-control scenarios (issue 3): undo, pause, approvals, customers.

The configuration gives every kind of action a control test needs, each leaving a trace
that a test can read back: command actions write lines to a notes file in tmp_path
(`append_line`'s undo removes its line again), the built-in actions make tickets and
thread replies. Helpers send what a person does in Slack (words in a thread, a click on a
button) through the signed /slack/events endpoint, and wait for what the desk answers.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from fakes import slack_events as ev
from fakes import wait_until
from fakes.slack_api import TEAM_ID, Message
from fakes.slack_events import Delivery
from sqlmodel import col

from storage.models import FINAL_STATUSES, Approval, AuditEvent, Control, Run, Step, StepKind
from storage.runs import PENDING

OPS_CHANNEL = "COPS"
"""A channel the ops agent serves: every top-level message there is a request (or a command)."""
SUPPORT_CHANNEL = "CSUP"
"""The customer-support channel the support agent serves."""

GUEST = "UGUEST"
"""A guest of the workspace (is_restricted): a customer."""
STRANGER = "UEXT"
"""A user of another workspace (Slack Connect): a customer."""
OUTSIDER = "UOTHER"
"""A user whose users.info says another team, without the is_stranger flag."""

_ACTIONS = r"""
[[actions]]
name = "append_line"
description = "Append one line to the team's notes file"
kind = "command"
params = { line = "string" }
run = '''printf '%s\n' {{ line }} >> NOTES'''
undo = '''grep -vxF -e {{ line }} NOTES > NOTES.tmp; mv NOTES.tmp NOTES'''
timeout = 10

[[actions]]
name = "deploy"
description = "Deploy a service (high risk)"
kind = "command"
params = { service = "string" }
run = '''printf 'deployed %s\n' {{ service }} >> NOTES'''
undo = '''grep -vxF -e "deployed {{ service }}" NOTES > NOTES.tmp; mv NOTES.tmp NOTES'''
risk = "high"
timeout = 10

[[actions]]
name = "wipe_cache"
description = "Wipe the cache (it has no undo, so it cannot be undone)"
kind = "command"
run = '''printf 'wiped\n' >> NOTES'''
timeout = 10

[[actions]]
name = "break_things"
description = "An action that always fails"
kind = "command"
params = { target = "string" }
run = '''echo "breaking {{ target }}"; echo 'it broke' >&2; exit 3'''
undo = '''printf 'undo of a failed action ran\n' >> NOTES'''
timeout = 10

[[actions]]
name = "check_status"
description = "Look at the system (read-only)"
kind = "command"
run = '''echo all good'''
read_only = true
timeout = 10
"""

OPS_ACTIONS = [
    "append_line",
    "deploy",
    "wipe_cache",
    "break_things",
    "check_status",
    "ticket_create",
    "ticket_find",
    "slack_reply",
]


def config(
    notes: Path,
    *,
    admins: list[str] | None = None,
    approval_timeout_hours: float | None = None,
    on_failure: str = "rollback",
    autonomy: str = "auto",
    max_steps: int = 30,
) -> str:
    """Two agents: ops (default, serves COPS, every action) and support (serves CSUP, for
    customers: ticket_create and slack_reply are customer-safe, append_line is team-only)."""
    control = []
    if admins is not None:
        control.append("admins = [" + ", ".join(f'"{a}"' for a in admins) + "]")
    if approval_timeout_hours is not None:
        control.append(f"approval_timeout_hours = {approval_timeout_hours}")
    head = "[control]\n" + "\n".join(control) + "\n" if control else ""
    ops_actions = ", ".join(f'"{a}"' for a in OPS_ACTIONS)
    agents = f"""
[[agents]]
name = "ops"
default = true
channels = ["{OPS_CHANNEL}"]
actions = [{ops_actions}]
max_steps = {max_steps}
on_failure = "{on_failure}"
autonomy = "{autonomy}"

[[agents]]
name = "support"
channels = ["{SUPPORT_CHANNEL}"]
actions = ["ticket_create", "slack_reply", "append_line"]
"""
    return head + agents + _ACTIONS.replace("NOTES", shlex.quote(str(notes)))


def add_customers(desk: Any) -> None:
    """Users who are not full members of the workspace, as users.info describes them."""
    desk.slack.add_user(GUEST, real_name="Guest", is_restricted=True)
    desk.slack.add_user(STRANGER, team_id="T2", real_name="Stranger", is_stranger=True)
    desk.slack.add_user(OUTSIDER, team_id="T9", real_name="Outsider")


def lines(path: Path) -> list[str]:
    """The notes file's lines ([] when nothing was ever written)."""
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


# What a person does --------------------------------------------------------------


async def ask(desk: Any, text: str, *, channel: str = "C1", user: str = "U1") -> str:
    """Mention the bot with a request; returns the message's ts (the run's thread)."""
    mention = ev.app_mention(f"<@UBOT> {text}", channel=channel, user=user)
    assert (await desk.send.event(mention)).status == 200
    return str(mention["event"]["ts"])


async def post(desk: Any, text: str, *, channel: str, user: str = "U1") -> str:
    """A top-level message in a channel (no mention); returns its ts."""
    message = ev.channel_message(text, channel=channel, user=user)
    assert (await desk.send.event(message)).status == 200
    return str(message["event"]["ts"])


async def say(desk: Any, text: str, *, thread_ts: str, channel: str = "C1", user: str = "U1") -> str:
    """Words typed in a thread; returns the reply's ts."""
    reply = ev.thread_reply(text, thread_ts=thread_ts, channel=channel, user=user)
    assert (await desk.send.event(reply)).status == 200
    return str(reply["event"]["ts"])


async def slash(
    desk: Any, text: str, *, channel: str = "C1", user: str = "U1", trigger_id: str | None = None
) -> Delivery:
    command = ev.slash_command(text, channel=channel, user=user, trigger_id=trigger_id)
    delivery = await desk.send.command(command)
    assert delivery.status == 200, delivery.text
    return delivery


async def dm(desk: Any, text: str, *, user: str = "U1", channel: str = "D1") -> str:
    """A direct message to the bot; returns its ts."""
    message = ev.dm(text, user=user, channel=channel)
    assert (await desk.send.event(message)).status == 200
    return str(message["event"]["ts"])


async def open_home(desk: Any, user: str = "U1") -> dict[str, Any]:
    """The user opens the app's Home tab; returns the view published for them."""
    desk.slack.home_views.pop(user, None)
    event = {"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": "home"}
    assert (await desk.send.event(ev.envelope(event))).status == 200
    return await wait_until(lambda: desk.slack.home_views.get(user), message=f"{user}'s Home tab")


def home_text(view: dict[str, Any]) -> str:
    return "\n".join(str((b.get("text") or {}).get("text") or "") for b in view.get("blocks") or [])


def ack_blocks(delivery: Delivery) -> list[dict[str, Any]]:
    """The blocks of a slash command's ack ([] when it has none)."""
    try:
        body = delivery.json()
    except ValueError:
        return []
    return list(body.get("blocks") or []) if isinstance(body, dict) else []


def buttons(blocks: list[dict[str, Any]] | None) -> list[tuple[str, str]]:
    """(action_id, value) of every button in `blocks`, in order."""
    return [
        (e["action_id"], str(e.get("value") or ""))
        for b in blocks or []
        if b.get("type") == "actions"
        for e in b.get("elements", [])
        if e.get("type") == "button"
    ]


def ack_text(delivery: Delivery) -> tuple[str, str | None]:
    """What a slash command's ack says, and its response_type (None: plain text, ephemeral)."""
    try:
        body = delivery.json()
    except ValueError:
        return delivery.text, None
    if isinstance(body, dict):
        return str(body.get("text") or ""), body.get("response_type")
    return delivery.text, None


async def click(
    desk: Any,
    action_id: str,
    value: str,
    *,
    message: Message,
    user: str = "U1",
    team_id: str = TEAM_ID,
    user_team: str | None = None,
    ephemeral: bool = False,
) -> Delivery:
    """A click on a button of one of the bot's messages (`ephemeral`: of a message only the
    clicker sees, for which Slack sends no `message`)."""
    payload = ev.block_action(
        action_id,
        value,
        user=user,
        channel=message.channel,
        message_ts=message.ts,
        thread_ts=message.thread_ts,
        team_id=team_id,
    )
    if user_team is not None:
        payload["user"]["team_id"] = user_team
    if ephemeral:
        payload["container"]["is_ephemeral"] = True
        del payload["message"]
    delivery = await desk.send.interaction(payload)
    assert delivery.status == 200, delivery.text
    return delivery


# What the desk answers ------------------------------------------------------------


def bot_replies(desk: Any, channel: str, thread_ts: str) -> list[str]:
    return [m.text for m in desk.slack.thread(channel, thread_ts)]


async def reply_saying(desk: Any, channel: str, thread_ts: str, *words: str) -> Message:
    """Wait for the bot's message in the thread whose text has every one of `words`."""

    def find() -> Message | None:
        return next(
            (m for m in desk.slack.thread(channel, thread_ts) if all(w in m.text for w in words)), None
        )

    return await wait_until(
        find,
        message=lambda: (
            f"a reply with {words} in {channel}/{thread_ts}: {bot_replies(desk, channel, thread_ts)}"
        ),
    )


def ephemerals_to(desk: Any, user: str) -> list[Message]:
    with desk.slack.lock:
        return [m for m in desk.slack.ephemerals if m.user == user]


async def approval_message(
    desk: Any, channel: str, thread_ts: str, *, after: Message | None = None
) -> Message:
    """The pending Approve/Deny message in a thread (posted after `after`, if given: the
    buttons of a message just clicked stay until its edit lands)."""

    def find() -> Message | None:
        return next(
            (
                m
                for m in desk.slack.thread(channel, thread_ts)
                if "chatops_approve" in m.action_ids() and (after is None or float(m.ts) > float(after.ts))
            ),
            None,
        )

    return await wait_until(
        find, message=lambda: f"Approve/Deny buttons in the thread: {bot_replies(desk, channel, thread_ts)}"
    )


async def run_for(desk: Any, thread_ts: str, *, finished: bool = True) -> Run:
    """The run that reports in thread `thread_ts` (finished and reported, unless told not to wait)."""

    async def find() -> Run | None:
        return next((r for r in await desk.runs() if r.thread_ts == thread_ts), None)

    run = await wait_until(find, message=f"a run in thread {thread_ts}")
    return await desk.finished(run.id) if finished else run


async def first_run(desk: Any) -> Run:
    runs = await wait_until(desk.runs, message="a run to be queued")
    return runs[0]


async def run_in(desk: Any, run_id: int | None, *statuses: str, reason: str = "") -> Run:
    """Wait until the run has one of `statuses` (and a wait_reason starting with `reason`)."""

    async def check() -> Run | None:
        run = await desk.run(run_id)
        if run.status in statuses and (run.wait_reason or "").startswith(reason):
            return run
        return None

    async def describe() -> str:
        run = await desk.run(run_id)
        return f"run #{run_id} in {statuses} ({reason!r}); it is {run.status} ({run.wait_reason!r})"

    try:
        return await wait_until(check, message=f"run #{run_id} to be in {statuses}")
    except AssertionError:
        raise AssertionError(await describe()) from None


async def undone(desk: Any, run_id: int | None, timeout: float = 10.0) -> Run:
    """Wait until the run's undo is complete and its report is posted in the thread."""

    async def done() -> Run | None:
        run = await desk.run(run_id)
        return run if run.status in FINAL_STATUSES and run.undo_ts not in (None, PENDING) else None

    try:
        return await wait_until(done, timeout, message=f"run #{run_id} to be undone and reported")
    except AssertionError:
        raise AssertionError(
            f"run #{run_id} was not undone and reported: {await desk.run(run_id)!r}"
        ) from None


async def actions_of(desk: Any, run_id: int | None) -> list[Step]:
    assert run_id is not None
    return [s for s in await desk.steps(run_id) if s.kind == StepKind.action]


async def compensations_of(desk: Any, run_id: int | None) -> list[Step]:
    assert run_id is not None
    return [s for s in await desk.steps(run_id) if s.kind == StepKind.compensation]


async def approvals(desk: Any) -> list[Approval]:
    return await desk.rows(Approval)


async def paused_scopes(desk: Any) -> set[str]:
    return {c.scope for c in await desk.rows(Control, col(Control.paused))}


async def audit(desk: Any, action: str | None = None) -> list[AuditEvent]:
    if action is None:
        return await desk.rows(AuditEvent)
    return await desk.rows(AuditEvent, col(AuditEvent.action) == action)
