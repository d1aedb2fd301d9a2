"""Budgets: a run over its token budget (`max_tokens_per_run`) stops at its next step and asks a
human, Continue or Stop, through the same signed endpoint and rules as an approval; an agent
over its daily spend (`max_cost_per_day`, priced from `[prices]`) pauses itself, the watchdog's
alert says why and how to resume, and the summary shows spend against budget.

The scripted model's usage is about a token per four characters of the conversation, so its
first turn already costs more than the small budgets below.
"""

from __future__ import annotations

from fakes import wait_until

from scenarios.control_support import (
    actions_of,
    approval_message,
    approvals,
    ask,
    audit,
    click,
    config,
    ephemerals_to,
    lines,
    paused_scopes,
    run_in,
    say,
)
from storage.models import ApprovalStatus, Control, RunStatus, Spend, StepStatus

ALERTS = "CALERTS"


def _budgeted(notes, **ops: str) -> str:
    """The control scenarios' configuration, with `ops` given these settings (TOML values)."""
    text = config(notes)
    settings = "".join(f"{k} = {v}\n" for k, v in ops.items())
    text = text.replace('autonomy = "auto"\n', f'autonomy = "auto"\n{settings}', 1)
    return (
        f'[alerts]\nchannel = "{ALERTS}"\n\n'
        '[prices]\n"fake-model" = { input = 1000, output = 1000 }   # $0.001 a token\n\n' + text
    )


async def test_a_run_over_its_token_budget_stops_and_asks_continue_or_stop(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(_budgeted(notes, max_tokens_per_run="10"), model=True)
    desk.model.call("append_line", {"line": "one"})
    desk.model.call("append_line", {"line": "two"})
    desk.model.answer("Appended both.")
    ts = await ask(desk, "append one, then two")

    # Its first model turn used more than 10 tokens: the action it chose waits for a person.
    buttons = await approval_message(desk, "C1", ts)
    [ask_more] = await approvals(desk)
    run = await run_in(desk, ask_more.run_id, RunStatus.waiting, reason="over its token budget")
    used = run.prompt_tokens + run.completion_tokens
    assert used > 10
    assert lines(notes) == [] and await actions_of(desk, run.id) == []
    assert (ask_more.action, ask_more.tool_call_id) == ("more tokens", "budget:1")
    assert buttons.action_ids() == ["chatops_approve", "chatops_deny"]
    labels = [e["text"]["text"] for b in buttons.blocks if b["type"] == "actions" for e in b["elements"]]
    assert labels == ["Continue", "Stop"]
    assert f"has used {used:,} of its 10 tokens (max_tokens_per_run)" in buttons.text
    assert f"another 10 tokens (up to {used + 10:,})" in buttons.text
    assert "Who may decide: anyone who may control agents" in buttons.text

    # Continue, through the signed endpoint, on that message: the run goes on with more room.
    await click(desk, "chatops_approve", str(ask_more.id), message=buttons, user="U2")
    assert "continues at the request of <@U2>, with another 10 tokens" in ephemerals_to(desk, "U2")[-1].text
    # The action runs; the next model turn crosses again, and the run asks a second time.
    second = await approval_message(desk, "C1", ts, after=buttons)
    assert lines(notes) == ["one"]
    asks = await approvals(desk)
    assert [(a.tool_call_id, a.status) for a in asks] == [
        ("budget:1", ApprovalStatus.approved),
        ("budget:2", ApprovalStatus.pending),
    ]
    assert "continued by <@U2>" in buttons.text and buttons.action_ids() == []

    # Stop: the run ends as failed and (on_failure = "rollback") its step is reversed.
    await click(desk, "chatops_deny", str(asks[1].id), message=second, user="U1")
    assert "stops at its token budget, at the request of <@U1>" in ephemerals_to(desk, "U1")[-1].text
    ended = await desk.finished(run.id)
    assert ended.status == RunStatus.rolled_back
    assert "stopped at its token budget" in (ended.error or "") and "<@U1> chose Stop" in (ended.error or "")
    assert lines(notes) == []
    assert [s.status for s in await actions_of(desk, run.id)] == [StepStatus.compensated]
    assert len(desk.model.requests) == 2  # the third turn was never asked for
    decided = {(e.action, e.actor, e.target) for e in await audit(desk)}
    assert {("approve", "U2", f"approval:{asks[0].id}"), ("deny", "U1", f"approval:{asks[1].id}")} <= decided


async def test_only_the_asks_own_message_decides_it_and_guests_never_do(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(_budgeted(notes, max_tokens_per_run="10"), model=True)
    desk.slack.add_user("UGUEST", real_name="Guest", is_restricted=True)
    desk.model.call("append_line", {"line": "one"}).answer("Done.")
    ts = await ask(desk, "append one")
    buttons = await approval_message(desk, "C1", ts)
    [ask_more] = await approvals(desk)
    other = await ask(desk, "something else", channel="C2")  # a message that is not the ask's
    elsewhere = await _any_bot_message(desk, "C2", other)

    await click(desk, "chatops_approve", str(ask_more.id), message=elsewhere, user="U1")
    assert "There is no approval" in ephemerals_to(desk, "U1")[-1].text
    await click(desk, "chatops_approve", str(ask_more.id), message=buttons, user="UGUEST")
    assert "guests cannot control agents" in ephemerals_to(desk, "UGUEST")[-1].text
    [still] = await approvals(desk)
    assert still.status == ApprovalStatus.pending and lines(notes) == []
    assert len(await audit(desk, "refused")) == 2


async def _any_bot_message(desk, channel, thread_ts):
    return await wait_until(lambda: next(iter(desk.slack.thread(channel, thread_ts)), None))


async def test_an_agent_over_its_daily_cap_pauses_itself_with_an_alert_until_resumed(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(_budgeted(notes, max_cost_per_day="0.05"), model=True)
    desk.model.call("append_line", {"line": "one"})
    desk.model.answer("Appended.")
    ts = await ask(desk, "append one")

    # The first turn cost more than $0.05: at the next step the agent pauses itself.
    runs = await desk.runs()
    run = await run_in(desk, runs[0].id, RunStatus.waiting, reason="paused")
    assert "max_cost_per_day" in (run.wait_reason or "")
    assert lines(notes) == [] and await actions_of(desk, run.id) == []
    assert await paused_scopes(desk) == {"ops"}
    [flag] = await desk.rows(Control)
    assert (flag.by_user, flag.reason) == ("system", "max_cost_per_day")
    [pause] = await audit(desk, "pause")
    assert pause.actor == "system" and "max_cost_per_day" in pause.detail
    [spent] = await desk.rows(Spend)
    tokens = run.prompt_tokens + run.completion_tokens
    assert (spent.agent, spent.prompt_tokens + spent.completion_tokens) == ("ops", tokens)
    assert abs(spent.cost - tokens / 1000) < 1e-9

    # The watchdog says why and how to resume, once.
    assert "cost_cap:ops" in await desk.services.watchdog.check()
    await desk.services.watchdog.check()
    [alert] = desk.slack.top_level(ALERTS)
    for words in ("*ops* paused itself", f"${spent.cost:,.4f}", "max_cost_per_day", "`resume agent ops`"):
        assert words in alert.text, alert.text

    # A person resumes it: it may spend another cap's worth today, and the run goes on.
    await say(desk, "resume", thread_ts=ts, user="U2")
    finished = await desk.finished(run.id)
    assert finished.status == RunStatus.succeeded and lines(notes) == ["one"]
    resumed = [m.text for m in desk.slack.thread("C1", ts) if "resumed by <@U2>" in m.text]
    assert resumed and "may spend another $0.05 today" in resumed[0], resumed
    assert await paused_scopes(desk) == set()
    assert "cost_cap:ops" not in await desk.services.watchdog.check()
    assert any("Cleared: the agent was resumed" in m.text for m in desk.slack.thread(ALERTS, alert.ts))

    # The summary shows the day's spend against the cap.
    summaries = desk.services.summaries
    text = summaries.render(await summaries.report(summaries.today()), summaries.today()).text
    [line] = [x for x in text.splitlines() if x.startswith("• *ops*: $")]
    assert "of $0.05 a day" in line and "*Spend against budget*" in text


async def test_a_budget_costs_a_step_nothing_when_none_is_set(start_desk, tmp_path):
    """No budget, no spend row and no budget ask: the step boundary does what it always did."""
    notes = tmp_path / "notes.txt"
    desk = await start_desk(_budgeted(notes), model=True)
    desk.model.call("append_line", {"line": "one"}).answer("Done.")
    await ask(desk, "append one")
    run = await desk.only_run()
    assert run.status == RunStatus.succeeded and lines(notes) == ["one"]
    assert await desk.rows(Spend) == [] and await approvals(desk) == []
