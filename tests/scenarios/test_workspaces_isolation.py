"""Two workspaces installed through OAuth never see each other's runs (issue 16, item 6).

T1 and T2 install the app through the desk's own /slack/install and /slack/oauth_redirect,
each with its own bot token. Both use a channel with the same id (C1), so that only the
workspace tells their runs apart. A run is posted with its own workspace's token; `status`,
the Home tab, `undo <n>`, buttons (forged with the other workspace's run and approval ids)
and `pause` act on their own workspace only; each workspace's summary counts its own runs in
its own channel; an alert about a workspace's runs goes to its channel only.
"""

from __future__ import annotations

from typing import Any

from fakes import slack_events as ev
from fakes import wait_until

from scenarios.control_support import (
    ack_text,
    approval_message,
    approvals,
    ask,
    audit,
    click,
    config,
    ephemerals_to,
    home_text,
    lines,
    reply_saying,
    run_for,
    run_in,
    slash,
)
from scenarios.workspaces_support import OAUTH, install
from storage.models import Alert, ApprovalStatus, Control, RunStatus

T1_TOKEN, T2_TOKEN = "xoxb-t1-workspace-token", "xoxb-t2-workspace-token"
CHANNEL = "C1"
"""A channel id both workspaces have: only the team tells their runs apart."""
TEAMS = """
[teams.T1]
summary_channel = "C1SUM"
alerts_channel = "C1ALR"

[teams.T2]
summary_channel = "C2SUM"
alerts_channel = "C2ALR"
"""


async def two_workspaces(start_desk: Any, fake_slack: Any, notes: Any, *, head: str = "") -> Any:
    """A desk with the app installed in T1 (installed by U1) and T2 (by U21), each its own token."""
    desk = await start_desk(head + config(notes) + TEAMS, **OAUTH)
    t1 = fake_slack.add_team("T1", token=T1_TOKEN)
    t2 = fake_slack.add_team("T2", token=T2_TOKEN, bot_user_id="UBOT2", bot_id="BBOT2")
    fake_slack.add_user("U21", team_id="T2", real_name="Tove")
    fake_slack.add_user("U22", team_id="T2", real_name="Jan")
    await install(desk, t1, installer="U1")
    await install(desk, t2, installer="U21")
    return desk


async def ask_t2(desk: Any, text: str, *, channel: str = CHANNEL, user: str = "U21") -> str:
    """A mention of T2's bot in T2; returns the message's ts."""
    mention = ev.app_mention(f"<@UBOT2> {text}", channel=channel, user=user, team_id="T2")
    assert (await desk.send.event(mention)).status == 200
    return str(mention["event"]["ts"])


async def slash_t2(desk: Any, text: str, *, channel: str = CHANNEL, user: str = "U21") -> str:
    delivery = await desk.send.command(ev.slash_command(text, channel=channel, user=user, team_id="T2"))
    assert delivery.status == 200, delivery.text
    return ack_text(delivery)[0]


def tokens_in(desk: Any, channel: str, thread_ts: str) -> set[str]:
    """The tokens of the bot's messages in a thread."""
    return {m.token for m in desk.slack.thread(channel, thread_ts)}


async def test_each_workspace_is_answered_with_its_own_token_and_sees_only_its_runs(
    start_desk, fake_slack, tmp_path
):
    desk = await two_workspaces(start_desk, fake_slack, tmp_path / "notes.txt")

    ts1 = await ask(desk, "append_line line=one", channel=CHANNEL, user="U1")
    ts2 = await ask_t2(desk, "append_line line=two")
    one, two = await run_for(desk, ts1), await run_for(desk, ts2)
    assert (one.team_id, two.team_id) == ("T1", "T2")
    assert one.status == two.status == RunStatus.succeeded
    assert tokens_in(desk, CHANNEL, ts1) == {T1_TOKEN} and tokens_in(desk, CHANNEL, ts2) == {T2_TOKEN}
    reactions = fake_slack.calls_to("reactions.add")
    assert {c.token for c in reactions if c.params["timestamp"] == ts1} == {T1_TOKEN}
    assert {c.token for c in reactions if c.params["timestamp"] == ts2} == {T2_TOKEN}
    # Who asked is asked of their own workspace (users.info with its token).
    assert {c.token for c in fake_slack.calls_to("users.info") if c.params["user"] == "U21"} == {T2_TOKEN}

    # T1 has a run waiting for approval; T2 asks what is going on in its own C1.
    deploy_ts = await ask(desk, "deploy service=api", channel=CHANNEL, user="U1")
    await approval_message(desk, CHANNEL, deploy_ts)
    waiting = await run_for(desk, deploy_ts, finished=False)
    t2_status = await slash_t2(desk, "status")
    t1_status = ack_text(await slash(desk, "status", channel=CHANNEL))[0]
    assert f"run #{waiting.id}" in t1_status and "deploy" in t1_status, t1_status
    assert f"run #{waiting.id}" not in t2_status and "deploy" not in t2_status, t2_status
    assert "*Runs in flight*: none" in t2_status and "*Approvals waiting*: none" in t2_status

    # The Home tab of a T2 user: T2's runs only, published with T2's token.
    desk.slack.home_views.pop("U21", None)
    home = ev.envelope(
        {"type": "app_home_opened", "user": "U21", "channel": "DU21", "tab": "home"}, team_id="T2"
    )
    assert (await desk.send.event(home)).status == 200
    view = await wait_until(lambda: desk.slack.home_views.get("U21"), message="U21's Home tab")
    assert f"run #{waiting.id}" not in home_text(view)
    assert {c.token for c in fake_slack.calls_to("views.publish")} == {T2_TOKEN}


async def test_a_workspace_cannot_reach_the_runs_or_approvals_of_another(start_desk, fake_slack, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await two_workspaces(start_desk, fake_slack, notes)
    ts1 = await ask(desk, "append_line line=kept", channel=CHANNEL, user="U1")
    done = await run_for(desk, ts1)
    deploy_ts = await ask(desk, "deploy service=api", channel=CHANNEL, user="U1")
    buttons = await approval_message(desk, CHANNEL, deploy_ts)
    [approval] = await approvals(desk)
    outcome = fake_slack.messages[done.outcome_ts or ""]

    # By number, from T2's own C1: refused as if no such run existed.
    assert await slash_t2(desk, f"undo {done.id}") == f"There is no run #{done.id} here."
    assert await slash_t2(desk, "undo 999") == "There is no run #999 here."
    # Buttons forged in T2 with T1's messages, run and approval ids.
    for action_id, value, message in (
        ("chatops_undo", str(done.id), outcome),
        ("chatops_approve", str(approval.id), buttons),
        ("chatops_deny", str(approval.id), buttons),
    ):
        await click(desk, action_id, value, message=message, user="U21", team_id="T2")
    answers = [m for m in ephemerals_to(desk, "U21")]
    assert [m.text for m in answers] == [
        f"There is no run #{done.id} here.",
        f"There is no approval #{approval.id} here.",
        f"There is no approval #{approval.id} here.",
    ]
    assert {m.token for m in answers} == {T2_TOKEN}

    assert (await desk.run(done.id)).undone_by is None
    assert [a.status for a in await approvals(desk)] == [ApprovalStatus.pending]
    assert lines(notes) == ["kept"]
    refused = await audit(desk, "refused")
    assert [(e.team_id, e.target) for e in refused] == [
        ("T2", f"run:{done.id}"),
        ("T2", "run:999"),
        ("T2", f"run:{done.id}"),
        ("T2", f"approval:{approval.id}"),
        ("T2", f"approval:{approval.id}"),
    ]

    # T1's own people still decide T1's approval, on its own message.
    await click(desk, "chatops_approve", str(approval.id), message=buttons, user="U1")
    assert (await desk.finished(approval.run_id)).status == RunStatus.succeeded
    assert lines(notes) == ["kept", "deployed api"]


async def test_a_pause_in_one_workspace_does_not_pause_the_other(start_desk, fake_slack, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await two_workspaces(start_desk, fake_slack, notes)
    pause = ev.app_mention("<@UBOT2> pause all agents", channel=CHANNEL, user="U21", team_id="T2")
    assert (await desk.send.event(pause)).status == 200
    said = await reply_saying(desk, CHANNEL, pause["event"]["ts"], "All agents are paused by <@U21>")
    assert said.token == T2_TOKEN
    assert [(c.team_id, c.scope, c.paused) for c in await desk.rows(Control)] == [("T2", "*", True)]

    ts1 = await ask(desk, "append_line line=t1", channel=CHANNEL, user="U1")
    ts2 = await ask_t2(desk, "append_line line=t2")
    assert (await run_for(desk, ts1)).status == RunStatus.succeeded
    held = await run_for(desk, ts2, finished=False)
    await run_in(desk, held.id, RunStatus.queued, RunStatus.waiting)
    assert lines(notes) == ["t1"]
    t1_status = ack_text(await slash(desk, "status", channel=CHANNEL))[0]
    assert "PAUSED" not in t1_status and "*ops*: active" in t1_status, t1_status
    assert "ALL AGENTS PAUSED by <@U21>" in await slash_t2(desk, "status")

    # T1 cannot lift T2's pause; T2 can.
    assert "were not paused" in ack_text(await slash(desk, "resume all", channel=CHANNEL))[0]
    assert (await desk.run(held.id)).status in (RunStatus.queued, RunStatus.waiting)
    assert "resumed by <@U21>" in await slash_t2(desk, "resume all")
    assert (await desk.finished(held.id)).status == RunStatus.succeeded
    assert lines(notes) == ["t1", "t2"]


async def test_each_workspace_gets_its_own_summary_of_its_own_runs(start_desk, fake_slack, tmp_path):
    desk = await two_workspaces(start_desk, fake_slack, tmp_path / "notes.txt")
    for n in range(2):
        await run_for(desk, await ask(desk, f"append_line line=t1-{n}", channel=CHANNEL, user="U1"))
    await run_for(desk, await ask_t2(desk, "break_things target=t2"))

    summaries = desk.services.summaries
    result = await summaries.post_every(summaries.today())
    assert "T1: posted" in result and "T2: posted" in result, result
    [one] = fake_slack.top_level("C1SUM")
    [two] = fake_slack.top_level("C2SUM")
    assert (one.token, two.token) == (T1_TOKEN, T2_TOKEN)
    assert "*2* runs: 2 succeeded" in one.text and "*Failures*" not in one.text, one.text
    assert "*1* run: 0 succeeded" in two.text and "*Failures* (1)" in two.text, two.text
    assert "<https://slack.com/archives/C1/p" in two.text  # its failed run, linked
    # `/agent summary` in T2 posts T2's summary where it was asked.
    text = await slash_t2(desk, "summary")
    assert "posted the summary" in text
    [asked] = fake_slack.top_level(CHANNEL)
    assert asked.token == T2_TOKEN and "*1* run" in asked.text


async def test_an_alert_about_a_workspaces_runs_goes_to_its_own_channel_only(
    start_desk, fake_slack, tmp_path
):
    head = "[alerts]\nmin_runs = 1\nfailure_rate = 0.5\n"
    notes = tmp_path / "notes.txt"
    desk = await two_workspaces(start_desk, fake_slack, notes, head=head)
    failed = await run_for(desk, await ask(desk, "break_things target=db", channel=CHANNEL, user="U1"))
    assert failed.status in (RunStatus.failed, RunStatus.rolled_back)
    assert (await run_for(desk, await ask_t2(desk, "append_line line=fine"))).status == RunStatus.succeeded

    held = await desk.services.watchdog.check()
    assert held == ["T1:failure_rate:ops"]
    [alert] = fake_slack.top_level("C1ALR")
    assert alert.token == T1_TOKEN and "Agent *ops*: 1 of its last 1 runs failed" in alert.text
    assert fake_slack.top_level("C2ALR") == []
    [row] = await desk.rows(Alert)
    assert (row.team_id, row.key, row.channel_id) == ("T1", "failure_rate:ops", "C1ALR")
    # The circuit breaker paused ops in T1 only: T2's runs go on.
    assert [(c.team_id, c.scope) for c in await desk.rows(Control)] == [("T1", "ops")]
    assert (await run_for(desk, await ask_t2(desk, "append_line line=still"))).status == RunStatus.succeeded
    paused = await run_for(desk, await ask(desk, "append_line line=held", channel=CHANNEL), finished=False)
    await run_in(desk, paused.id, RunStatus.queued, RunStatus.waiting)
    assert lines(notes) == ["fine", "still"]


async def test_each_workspace_has_its_own_ticket_tracker(start_desk, fake_slack, tmp_path):
    desk = await two_workspaces(start_desk, fake_slack, tmp_path / "notes.txt")
    made = await run_for(desk, await ask(desk, "create a ticket for the vpn outage", channel=CHANNEL))
    assert made.status == RunStatus.succeeded
    [ticket] = await desk.tickets()
    assert ticket.team_id == "T1"

    found = await run_for(desk, await ask_t2(desk, "ticket_find query=vpn"))
    assert "no tickets match" in (found.outcome or ""), found.outcome
    seen = await run_for(desk, await ask(desk, "ticket_find query=vpn", channel=CHANNEL))
    assert f"#{ticket.id} [open, normal] the vpn outage" in (seen.outcome or ""), seen.outcome
