"""A control acts only where it is asked (issue 11, point 1).

A run or an approval named by number (`/agent undo 42`, `undo 42`, a button's value) is acted
on only in its own team and channel (in a DM: a run the same user asked for), and a button
only on its own message. Anything else is refused with a reply only the asker sees and an
audit row, in words that never tell whether the number exists elsewhere. `status` and the
Home tab show only what the asker may see; a replayed slash command is refused.
"""

from __future__ import annotations

import dataclasses

from fakes import slack_events as ev
from fakes import wait_until

from scenarios.control_support import (
    OPS_CHANNEL,
    ack_text,
    approval_message,
    approvals,
    ask,
    audit,
    click,
    config,
    dm,
    ephemerals_to,
    home_text,
    lines,
    open_home,
    paused_scopes,
    run_for,
    run_in,
    slash,
    undone,
)
from storage.models import ApprovalStatus, RunStatus

# The offline planner (no model) runs `<action> key=value` as written.


async def _appended(desk, line: str, *, channel: str = "C1", user: str = "U1"):
    ts = await ask(desk, f"append_line line={line}", channel=channel, user=user)
    run = await run_for(desk, ts)
    assert run.status == RunStatus.succeeded, run.error
    return run, ts


async def _refused_quietly(desk, run_id: int) -> None:
    run = await desk.run(run_id)
    assert run.undone_by is None and run.status == RunStatus.succeeded


async def test_undo_by_number_acts_only_in_the_runs_own_channel(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes))
    run, _ = await _appended(desk, "kept")
    posts_before = len(desk.slack.posts())

    # `/agent undo <n>` from another channel: refused, only to the asker, in the same words
    # as for a number that does not exist at all.
    foreign, kind = ack_text(await slash(desk, f"undo {run.id}", channel="C9"))
    missing, _ = ack_text(await slash(desk, "undo 999", channel="C9"))
    assert foreign == f"There is no run #{run.id} here." and kind != "in_channel"
    assert missing == "There is no run #999 here."
    # `undo <n>` typed in another channel (a mention, and a served channel's top level).
    await ask(desk, f"undo {run.id}", channel="C2")
    desk.slack.add_user("U3", real_name="Linus")
    await desk.send.event(ev.channel_message(f"undo {run.id}", channel=OPS_CHANNEL, user="U3"))
    [typed] = ephemerals_to(desk, "U1")
    [served] = await _ephemerals(desk, "U3")
    assert typed.text == served.text == f"There is no run #{run.id} here."
    assert (typed.channel, served.channel) == ("C2", OPS_CHANNEL)

    await desk.settled()
    await _refused_quietly(desk, run.id)
    assert lines(notes) == ["kept"]
    assert len(desk.slack.posts()) == posts_before  # nothing public
    refused = await audit(desk, "refused")
    assert len(refused) == 4
    assert {e.target for e in refused} == {f"run:{run.id}", "run:999"}
    assert all("undo" in e.detail and "not" in e.detail for e in refused), [e.detail for e in refused]
    assert await audit(desk, "undo") == []

    # In its own channel, the same command works.
    text, _ = ack_text(await slash(desk, f"undo {run.id}", channel="C1"))
    assert text.startswith(f"Undoing run #{run.id}")
    await undone(desk, run.id)
    assert lines(notes) == []


async def _ephemerals(desk, user):
    return await wait_until(lambda: ephemerals_to(desk, user), message=f"an ephemeral message to {user}")


async def test_in_a_dm_a_number_reaches_only_the_users_own_runs(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes))
    mine, _ = await _appended(desk, "mine", user="U1")
    theirs, _ = await _appended(desk, "theirs", user="U2")

    text, _ = ack_text(await slash(desk, f"undo {theirs.id}", channel="D1", user="U1"))
    assert text == f"There is no run #{theirs.id} here."
    await dm(desk, f"undo {theirs.id}", user="U1")
    [typed] = await _ephemerals(desk, "U1")
    assert typed.text == f"There is no run #{theirs.id} here." and typed.channel == "D1"
    await desk.settled()
    await _refused_quietly(desk, theirs.id)
    assert len(await audit(desk, "refused")) == 2

    text, _ = ack_text(await slash(desk, f"undo {mine.id}", channel="D1", user="U1"))
    assert text.startswith(f"Undoing run #{mine.id}")  # asked for in C1, undone from the DM
    await undone(desk, mine.id)
    assert lines(notes) == ["theirs"]


async def test_the_undo_button_acts_only_on_the_run_of_its_own_message(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes))
    first, _ = await _appended(desk, "first")
    second, _ = await _appended(desk, "second")
    first_outcome = desk.slack.messages[first.outcome_ts]

    # Another run's number on this message; this run's number from another channel.
    await click(desk, "chatops_undo", str(second.id), message=first_outcome)
    await click(desk, "chatops_undo", str(first.id), message=dataclasses.replace(first_outcome, channel="C2"))
    answers = [m.text for m in ephemerals_to(desk, "U1")]
    assert answers == [f"There is no run #{second.id} here.", f"There is no run #{first.id} here."]
    await desk.settled()
    await _refused_quietly(desk, first.id)
    await _refused_quietly(desk, second.id)
    assert lines(notes) == ["first", "second"]
    assert len(await audit(desk, "refused")) == 2

    # Its own run, on its own message: undone.
    await click(desk, "chatops_undo", str(first.id), message=first_outcome)
    await undone(desk, first.id)
    assert lines(notes) == ["second"]


async def test_approve_and_deny_act_only_on_the_approval_of_their_own_message(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes))
    api_ts = await ask(desk, "deploy service=api")
    api_buttons = await approval_message(desk, "C1", api_ts)
    web_ts = await ask(desk, "deploy service=web", channel="C2")
    web_buttons = await approval_message(desk, "C2", web_ts)
    api, web = sorted(await approvals(desk), key=lambda a: a.id)
    assert (api.arguments, web.arguments) == ({"service": "api"}, {"service": "web"})

    await click(desk, "chatops_approve", str(web.id), message=api_buttons)
    await click(desk, "chatops_deny", str(api.id), message=web_buttons)
    await click(desk, "chatops_approve", str(api.id), message=dataclasses.replace(api_buttons, channel="C2"))
    answers = [m.text for m in ephemerals_to(desk, "U1")]
    assert answers == [
        f"There is no approval #{web.id} here.",
        f"There is no approval #{api.id} here.",
        f"There is no approval #{api.id} here.",
    ]
    assert all(a.status == ApprovalStatus.pending for a in await approvals(desk))
    assert lines(notes) == []
    refused = await audit(desk, "refused")
    assert [e.target for e in refused] == [f"approval:{web.id}", f"approval:{api.id}", f"approval:{api.id}"]
    assert await audit(desk, "approve") == [] and await audit(desk, "deny") == []

    await click(desk, "chatops_approve", str(web.id), message=web_buttons)
    run = await desk.finished(web.run_id)
    assert run.status == RunStatus.succeeded and lines(notes) == ["deployed web"]
    assert (await desk.run(api.run_id)).status == RunStatus.waiting


async def test_status_and_the_home_tab_show_only_what_the_asker_may_see(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes))
    api_ts = await ask(desk, "deploy service=api", user="U1")
    await approval_message(desk, "C1", api_ts)
    web_ts = await ask(desk, "deploy service=web", channel="C2", user="U2")
    await approval_message(desk, "C2", web_ts)
    api, web = sorted(await approvals(desk), key=lambda a: a.id)
    await run_in(desk, web.run_id, RunStatus.waiting, reason="approval")
    await slash(desk, "pause support", channel="C2", user="U2")

    def shows(text: str, approval) -> bool:
        return f"run #{approval.run_id} (ops)" in text and f"run #{approval.run_id}: deploy" in text

    in_c1, _ = ack_text(await slash(desk, "status", channel="C1", user="U2"))
    in_c2, _ = ack_text(await slash(desk, "status", channel="C2", user="U1"))
    elsewhere, _ = ack_text(await slash(desk, "status", channel="C3"))
    dm_u1, _ = ack_text(await slash(desk, "status", channel="D1", user="U1"))
    dm_u2, _ = ack_text(await slash(desk, "status", channel="D2", user="U2"))
    home_u2 = home_text(await open_home(desk, "U2"))
    home_u1 = home_text(await open_home(desk, "U1"))

    assert shows(in_c1, api) and not shows(in_c1, web), in_c1
    assert shows(in_c2, web) and not shows(in_c2, api), in_c2
    assert not shows(elsewhere, api) and not shows(elsewhere, web), elsewhere
    assert "*Runs in flight*: none" in elsewhere and "*Approvals waiting*: none" in elsewhere
    assert shows(dm_u1, api) and not shows(dm_u1, web), dm_u1
    assert shows(dm_u2, web) and not shows(dm_u2, api), dm_u2
    assert shows(home_u1, api) and not shows(home_u1, web), home_u1
    assert shows(home_u2, web) and not shows(home_u2, api), home_u2
    # The agents' pause states are global: every view shows them.
    for text in (in_c1, in_c2, elsewhere, dm_u1, dm_u2, home_u1, home_u2):
        assert "*support*: paused by <@U2>" in text and "*ops*: active" in text, text
    assert "*ops*: active; 1 run in flight" in in_c1
    assert "*ops*: active; 0 runs in flight" in elsewhere


async def test_a_replayed_control_command_is_refused(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes))
    pause = ev.slash_command("pause all", trigger_id="1234.5678.replayed")
    first = await desk.send.command(pause)
    assert "All agents are paused by <@U1>" in ack_text(first)[0]
    await slash(desk, "resume all")
    assert await paused_scopes(desk) == set()

    replay = await desk.send.command(pause)  # the same signed body, sent again
    text, kind = ack_text(replay)
    assert replay.status == 200 and kind != "in_channel"
    assert "already received" in text and "paused by" not in text, text
    assert await paused_scopes(desk) == set()
    [refused] = await audit(desk, "refused")
    assert refused.actor == "U1" and "replay" in refused.detail
    assert len(await audit(desk, "pause")) == 1
