"""A workspace that removes the app stops there (issue 16, item 6).

app_uninstalled, and tokens_revoked with the bot's token: the workspace's installation leaves
the store, its queued, waiting and running runs are cancelled (a running one at its next step
boundary) with a reason saying so, no further Slack call is made with its token, and it is
audited. The other workspace is not touched. Installing the app again works as the first time.
"""

from __future__ import annotations

from typing import Any

from fakes import slack_events as ev
from fakes import wait_until

from scenarios.control_support import approval_message, approvals, ask, audit, config, lines, run_for, run_in
from scenarios.workspaces_support import OAUTH, bot_tokens, install
from storage.models import ApprovalStatus, RunStatus

T1_TOKEN, T2_TOKEN = "xoxb-t1-workspace-token", "xoxb-t2-workspace-token"
REMOVED = "the app was removed from this workspace"


async def _desk(start_desk: Any, fake_slack: Any, notes: Any, **kwargs: Any) -> Any:
    desk = await start_desk(config(notes), **OAUTH, **kwargs)
    fake_slack.add_user("U21", team_id="T2")
    await install(desk, fake_slack.add_team("T1", token=T1_TOKEN), installer="U1")
    await install(desk, fake_slack.add_team("T2", token=T2_TOKEN, bot_user_id="UBOT2"), installer="U21")
    return desk


async def _ask_t2(desk: Any, text: str, *, channel: str = "C2") -> str:
    mention = ev.app_mention(f"<@UBOT2> {text}", channel=channel, user="U21", team_id="T2")
    assert (await desk.send.event(mention)).status == 200
    return str(mention["event"]["ts"])


async def _shown(desk: Any, run_id: int | None, words: str) -> None:
    """Wait until the run's status message in Slack says `words` (the presenter caught up)."""

    async def says() -> bool:
        run = await desk.run(run_id)
        message = desk.slack.messages.get(run.status_ts or "")
        return message is not None and words in message.text

    await wait_until(says, message=f"run #{run_id}'s status message to say {words!r}")


async def _idle(desk: Any) -> None:
    """The presenter has shown everything it was told (nothing in flight towards Slack)."""
    presenter = desk.services.presenter
    await wait_until(
        lambda: not presenter._pending and not presenter._background, message="the presenter idle"
    )


async def test_app_uninstalled_stops_a_running_run_at_its_next_step_and_nothing_more_is_sent(
    start_desk, fake_slack, tmp_path
):
    notes = tmp_path / "notes.txt"
    desk = await _desk(start_desk, fake_slack, notes, model=True)
    model = desk.model
    model.call("append_line", {"line": "first"}).call("append_line", {"line": "second"}, held=True)
    model.answer("never read")
    ts = await _ask_t2(desk, "append two lines")
    run = await run_for(desk, ts, finished=False)
    await wait_until(lambda: len(model.requests) == 2, message="the run to ask the model again")
    assert lines(notes) == ["first"]
    await _shown(desk, run.id, ":white_check_mark:")  # the step it took
    sent = len(fake_slack.calls_with(T2_TOKEN))

    removed = ev.envelope({"type": "app_uninstalled"}, team_id="T2")
    assert (await desk.send.event(removed)).status == 200
    cancelled = await desk.run(run.id)
    assert (cancelled.status, cancelled.error) == (RunStatus.cancelled, REMOVED)
    assert await bot_tokens(desk) == {"T1": T1_TOKEN}
    fake_slack.revoke(T2_TOKEN)  # as Slack does once the app is gone

    model.release()  # the model answers the step the run was taking: it stops there
    await wait_until(lambda: not desk.services.worker.tasks, message="the worker to let the run go")
    await _idle(desk)
    assert lines(notes) == ["first"]  # the next step never ran
    assert (await desk.run(run.id)).status == RunStatus.cancelled
    assert len(fake_slack.calls_with(T2_TOKEN)) == sent  # no call with its token was even tried
    [event] = await audit(desk, "uninstall")
    assert (event.team_id, event.actor, event.target) == ("T2", "system", "team:T2")
    assert f"#{run.id}" in event.detail and event.detail.startswith("app_uninstalled: 1 run cancelled")

    # A mention from the removed workspace is acked and dropped; the other works on.
    assert (
        await desk.send.event(ev.app_mention("<@UBOT2> hello", channel="C2", user="U21", team_id="T2"))
    ).status == 200
    model.answer("T1 is fine")
    t1 = await run_for(desk, await ask(desk, "are you there?", channel="C1"))
    assert t1.status == RunStatus.no_action or t1.status == RunStatus.succeeded
    assert [r.team_id for r in await desk.runs()] == ["T2", "T1"]
    assert len(fake_slack.calls_with(T2_TOKEN)) == sent


async def test_tokens_revoked_cancels_waiting_and_queued_runs_and_installing_again_works(
    start_desk, fake_slack, tmp_path
):
    notes = tmp_path / "notes.txt"
    desk = await _desk(start_desk, fake_slack, notes)
    t1_ts = await ask(desk, "deploy service=t1", channel="C1")
    t1_buttons = await approval_message(desk, "C1", t1_ts)
    t2_ts = await _ask_t2(desk, "deploy service=t2")
    await approval_message(desk, "C2", t2_ts)
    t2_run = await run_for(desk, t2_ts, finished=False)
    await run_in(desk, t2_run.id, RunStatus.waiting, reason="approval")
    pause = await _ask_t2(desk, "pause all agents", channel="C3")
    await wait_until(lambda: fake_slack.thread("C3", pause), message="the pause to be said")
    behind_ts = await _ask_t2(desk, "append_line line=behind", channel="C3")
    behind = await run_for(desk, behind_ts, finished=False)
    await run_in(desk, behind.id, RunStatus.waiting, reason="paused")
    await _shown(desk, behind.id, "paused")
    await _shown(desk, t2_run.id, "waiting")
    sent = len(fake_slack.calls_with(T2_TOKEN))

    # Revoking people's tokens only leaves the bot working.
    users_only = {"type": "tokens_revoked", "tokens": {"oauth": ["U21"], "bot": []}}
    assert (await desk.send.event(ev.envelope(users_only, team_id="T2"))).status == 200
    assert (await desk.run(t2_run.id)).status == RunStatus.waiting
    bots = {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["UBOT2"]}}
    assert (await desk.send.event(ev.envelope(bots, team_id="T2"))).status == 200
    fake_slack.revoke(T2_TOKEN)

    for cancelled in (await desk.run(t2_run.id), await desk.run(behind.id)):
        assert cancelled.status == RunStatus.cancelled
        assert cancelled.error == "the app's access to this workspace was revoked"
    statuses = {a.run_id: a.status for a in await approvals(desk)}
    assert statuses[t2_run.id] == ApprovalStatus.withdrawn
    assert await bot_tokens(desk) == {"T1": T1_TOKEN}
    await desk.services.presenter.redeliver()  # housekeeping finds nothing to deliver there
    await _idle(desk)
    assert len(fake_slack.calls_with(T2_TOKEN)) == sent
    assert lines(notes) == []

    # T1 is untouched: its approval still counts.
    from scenarios.control_support import click

    [t1_approval] = [a for a in await approvals(desk) if a.run_id != t2_run.id]
    await click(desk, "chatops_approve", str(t1_approval.id), message=t1_buttons)
    assert (await desk.finished(t1_approval.run_id)).status == RunStatus.succeeded
    assert lines(notes) == ["deployed t1"]

    # Installed again (a new token): served again (its pause, kept through it, lifted first).
    await install(
        desk, fake_slack.add_team("T2", token="xoxb-t2-again", bot_user_id="UBOT2"), installer="U21"
    )
    resume = await _ask_t2(desk, "resume all", channel="C3")
    await wait_until(lambda: fake_slack.thread("C3", resume), message="the resume to be said")
    again = await run_for(desk, await _ask_t2(desk, "append_line line=again"))
    assert again.status == RunStatus.succeeded and lines(notes) == ["deployed t1", "again"]
    assert {m.token for m in fake_slack.thread("C2", again.thread_ts)} == {"xoxb-t2-again"}
