"""Controls mean what they say (issue 12, point 7).

`/agent undo` without a number does not guess: it offers the channel's recent runs, each
with its own Undo button. A near-miss of a control phrase gets a "did you mean" with a
button, not a run. Control words work wherever the bot is mentioned. Refusals read as
sentences, and a customer who asks for a team-only action is told it is not for them.
"""

from __future__ import annotations

from fakes import slack_events as ev
from fakes import wait_until
from fakes.slack_api import Message

from scenarios.control_support import (
    GUEST,
    OPS_CHANNEL,
    SUPPORT_CHANNEL,
    ack_blocks,
    ack_text,
    actions_of,
    add_customers,
    approval_message,
    approvals,
    ask,
    audit,
    buttons,
    click,
    config,
    dm,
    ephemerals_to,
    lines,
    paused_scopes,
    post,
    reply_saying,
    run_for,
    say,
    slash,
    undone,
)
from storage.models import RunStatus, StepStatus


async def _ephemeral(desk, user: str, *words: str) -> Message:
    def find() -> Message | None:
        return next((m for m in ephemerals_to(desk, user) if all(w in m.text for w in words)), None)

    return await wait_until(
        find, message=lambda: f"an ephemeral with {words}: {[m.text for m in ephemerals_to(desk, user)]}"
    )


async def test_agent_undo_without_a_number_offers_the_channels_recent_runs(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes))  # the offline planner runs `append_line line=...`
    runs = []
    for n in range(1, 8):
        ts = await ask(desk, f"append_line line=n{n}")
        runs.append(await run_for(desk, ts))
    elsewhere = await run_for(desk, await ask(desk, "append_line line=elsewhere", channel="C2"))
    await say(desk, "undo", thread_ts=runs[-1].thread_ts)  # the newest is already undone
    await undone(desk, runs[-1].id)
    assert lines(notes) == [f"n{n}" for n in range(1, 7)] + ["elsewhere"]

    delivery = await slash(desk, "undo")
    text, kind = ack_text(delivery)
    blocks = ack_blocks(delivery)

    # Nothing was undone: the answer is a choice, shown only to the asker.
    assert kind != "in_channel"
    assert [(await desk.run(r.id)).undone_by for r in runs[:-1]] == [None] * 6
    assert lines(notes) == [f"n{n}" for n in range(1, 7)] + ["elsewhere"]
    # The last five that can still be undone, newest first, each with its own Undo button.
    offered = list(reversed(runs[1:-1]))
    assert buttons(blocks) == [("chatops_undo", str(r.id)) for r in offered]
    shown = "\n".join(str((b.get("text") or {}).get("text") or "") for b in blocks)
    for r in offered:
        assert f"#{r.id}" in shown and f"line=n{r.id}" in shown and "ops" in shown
        assert r.created_at.strftime("%H:%M") in shown
    assert f"#{elsewhere.id}" not in shown and f"#{runs[0].id}" not in shown
    assert f"#{runs[0].id}" not in text and "undo" in text

    # One click undoes that run, and only that one.
    chosen = offered[2]
    listing = Message("C1", ev.new_ts(), text, blocks, None, user="U1")
    await click(desk, "chatops_undo", str(chosen.id), message=listing, ephemeral=True)
    await _ephemeral(desk, "U1", f"Undoing run #{chosen.id}")
    await undone(desk, chosen.id)
    await desk.settled()
    assert f"n{chosen.id}" not in lines(notes) and len(lines(notes)) == 6
    assert [r.id for r in await desk.runs() if r.undone_by] == sorted([chosen.id, runs[-1].id])

    # The list's buttons act only in the list's channel: another channel's run is refused.
    await click(desk, "chatops_undo", str(elsewhere.id), message=listing, ephemeral=True)
    await _ephemeral(desk, "U1", f"There is no run #{elsewhere.id} here.")
    assert (await desk.run(elsewhere.id)).undone_by is None

    # With a number, it acts as before; in a channel with nothing to undo, it says so.
    text, _ = ack_text(await slash(desk, f"undo {offered[0].id}"))
    assert text.startswith(f"Undoing run #{offered[0].id}")
    text, _ = ack_text(await slash(desk, "undo", channel="C7"))
    assert "no run" in text.lower() and buttons(ack_blocks(await slash(desk, "undo", channel="C7"))) == []


async def test_a_near_miss_offers_the_command_with_a_button_instead_of_a_run(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes))
    add_customers(desk)

    await post(desk, "pasue all agents", channel=OPS_CHANNEL)
    offer = await _ephemeral(desk, "U1", "did you mean `pause all agents`?")
    await dm(desk, "please pause all agents", user="U2")
    await _ephemeral(desk, "U2", "did you mean `pause all agents`?")
    await ask(desk, "stop", channel="C3")
    await _ephemeral(desk, "U1", "did you mean `pause all agents`?")
    slashed, kind = ack_text(await slash(desk, "pause all agent"))
    assert "did you mean `pause all agents`?" in slashed and kind != "in_channel"
    await desk.settled()
    assert await desk.runs() == [] and await paused_scopes(desk) == set()
    assert desk.slack.posts() == []
    [(action_id, value)] = buttons(offer.blocks)

    # The button does it, through the same authorized path: a guest's click is refused.
    await click(desk, action_id, value, message=offer, user=GUEST, ephemeral=True)
    await _ephemeral(desk, GUEST, "you can't pause agents: guests cannot control agents")
    assert await paused_scopes(desk) == set()
    await click(desk, action_id, value, message=offer, ephemeral=True)
    await wait_until(lambda: paused_scopes(desk), message="the pause")
    assert await paused_scopes(desk) == {"*"}
    [announced] = [m for m in desk.slack.posts() if "All agents are paused by <@U1>" in m.text]
    assert announced.channel == OPS_CHANNEL
    await slash(desk, "resume all")

    # A real request is a request; a customer's message always is.
    await post(desk, "stop the api service on staging", channel=OPS_CHANNEL)
    await post(desk, "stop", channel=SUPPORT_CHANNEL, user=GUEST)
    await wait_until(lambda: _count(desk, 2), message="two requests")
    assert sorted(r.agent for r in await desk.runs()) == ["ops", "support"]
    assert not any("did you mean" in m.text for m in ephemerals_to(desk, GUEST))


async def _count(desk, n: int) -> bool:
    return len(await desk.runs()) == n


async def test_control_words_work_where_no_agent_serves_when_the_bot_is_mentioned(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes))

    top = await ask(desk, "pause all agents", channel="C5")
    await reply_saying(desk, "C5", top, "All agents are paused by <@U1>")
    assert await paused_scopes(desk) == {"*"}

    human = await post(desk, "the deploy looks odd", channel="C5")  # a thread the bot never ran in
    mention = ev.app_mention("<@UBOT> resume all", channel="C5", thread_ts=human)
    await desk.send.event(mention)
    await desk.send.event(ev.thread_reply("<@UBOT> resume all", thread_ts=human, channel="C5"))
    await reply_saying(desk, "C5", human, "All agents resumed by <@U1>")
    assert await paused_scopes(desk) == set()
    status_ts = await ask(desk, "status", channel="C5")
    await reply_saying(desk, "C5", status_ts, "*Agents*")
    colon = ev.app_mention("<@UBOT>: status", channel="C5")  # as Slack writes "@chatops: status"
    await desk.send.event(colon)
    await reply_saying(desk, "C5", colon["event"]["ts"], "*Agents*")
    in_thread = ev.app_mention("<@UBOT> pause", channel="C5", thread_ts=human)
    await desk.send.event(in_thread)
    await reply_saying(desk, "C5", human, "*ops*", "paused by <@U1>")  # the default agent
    await desk.settled()
    assert await desk.runs() == []


async def test_refusals_read_as_sentences_for_each_verb(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes))
    add_customers(desk)
    ts = await ask(desk, "deploy service=api")
    buttons_message = await approval_message(desk, "C1", ts)
    [approval] = await approvals(desk)
    done = await run_for(desk, await ask(desk, "append_line line=kept"))

    await click(desk, "chatops_approve", str(approval.id), message=buttons_message, user=GUEST)
    await click(desk, "chatops_deny", str(approval.id), message=buttons_message, user=GUEST)
    outcome = desk.slack.messages[done.outcome_ts]
    await click(desk, "chatops_undo", str(done.id), message=outcome, user=GUEST)
    paused, _ = ack_text(await slash(desk, "pause all", user=GUEST))
    resumed, _ = ack_text(await slash(desk, "resume all", user=GUEST))
    status, _ = ack_text(await slash(desk, "status", user=GUEST))

    texts = [m.text for m in ephemerals_to(desk, GUEST)] + [paused, resumed, status]
    why = "guests cannot control agents"
    assert texts == [
        f"Sorry <@{GUEST}>, you can't approve this action: {why}.",
        f"Sorry <@{GUEST}>, you can't deny this action: {why}.",
        f"Sorry <@{GUEST}>, you can't undo this run: {why}.",
        f"Sorry <@{GUEST}>, you can't pause agents: {why}.",
        f"Sorry <@{GUEST}>, you can't resume agents: {why}.",
        f"Sorry <@{GUEST}>, you can't see the agents' status: {why}.",
    ]
    assert len(await audit(desk, "refused")) == 6


async def test_a_customer_asking_for_a_team_only_action_is_told_it_is_not_for_them(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    add_customers(desk)
    desk.model.call("append_line", {"line": "from a customer"})
    desk.model.answer("I can't do that here; the team will look at it.")
    ts = await post(desk, "please append a line to the notes", channel=SUPPORT_CHANNEL, user=GUEST)
    run = await run_for(desk, ts)

    assert "append_line" not in desk.model.tool_names(0)  # never offered
    [result] = desk.model.tool_results(1)
    assert result == "error: append_line is not available to customers"
    [step] = await actions_of(desk, run.id)
    assert (step.name, step.status) == ("append_line", StepStatus.rejected)
    assert not notes.exists()
    outcome = desk.slack.messages[run.outcome_ts]
    assert outcome.thread_ts == ts and "append_line is not available to customers" in outcome.shown()
    run = await desk.run(run.id)
    assert run.status == RunStatus.no_action and ":white_check_mark:" not in outcome.shown()

    # A tool the agent does not have at all is still "no such tool", for anyone.
    desk.model.call("no_such_action").answer("Sorry.")
    ts = await post(desk, "do something odd", channel=SUPPORT_CHANNEL, user=GUEST)
    other = await run_for(desk, ts)
    assert other.status == RunStatus.no_action  # nothing was done (issue 12.6)
    assert "there is no tool named 'no_such_action'" in desk.model.tool_results(3)[0]
