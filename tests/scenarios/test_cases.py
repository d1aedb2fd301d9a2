"""Cases: several agents on one operational loop, with one undo across them.

The seed's loop, with local commands on a working copy in tmp_path: a support agent answers
customers and escalates to ops; ops reproduces, fixes and tests, then hands the deploy to a
deploy agent, which deploys to staging and promotes. A handoff acts through the target and its
outcome returns to the caller; the target reports in a thread of its own channel, linked both
ways; a customer's escalation waits for a team member's Approve in the team's channel; one undo
in any thread of the case reverses every step of every agent, newest first.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fakes import slack_events as ev
from fakes import wait_until
from sqlmodel import col

from bot.loading import THINKING
from scenarios.control_support import ack_text, approval_message, click, ephemerals_to, say, slash
from scenarios.faults_support import TestClock, fresh_database
from storage.clock import now, set_clock
from storage.models import Approval, Run, RunStatus, StepKind, StepStatus

SUPPORT, OPS, DEPLOY = "CSUP", "COPS", "CDEPLOY"
BUGGY = 'def checkout():\n    raise RuntimeError("card declined")\n'
FIXED = 'def checkout():\n    return "ok"\n'


def loop_config(work: Path) -> str:
    """The worked example of the README: three agents, five local commands."""

    return f"""
[[agents]]
name = "support"
description = "answers customers"
channels = ["{SUPPORT}"]
actions = ["slack_reply"]
handoffs = ["ops"]

[[agents]]
name = "ops"
description = "reproduces, fixes and tests"
channels = ["{OPS}"]
default = true
actions = ["reproduce", "fix_checkout", "run_tests"]
handoffs = ["deployer"]

[[agents]]
name = "deployer"
description = "deploys to staging and promotes to production"
channels = ["{DEPLOY}"]
actions = ["deploy_staging", "promote"]

[[actions]]
name = "reproduce"
description = "Run the checkout and show what happens"
kind = "command"
run = "grep -q RuntimeError app/checkout.py && echo 'checkout raises: card declined' || echo 'checkout works'"
read_only = true
cwd = "{work}"

[[actions]]
name = "fix_checkout"
description = "Apply the fix to the checkout"
kind = "command"
run = "cp app/checkout.py app/checkout.py.orig && cp patches/checkout.py app/checkout.py"
undo = "mv app/checkout.py.orig app/checkout.py"
cwd = "{work}"

[[actions]]
name = "run_tests"
description = "Run the tests"
kind = "command"
run = "cmp -s app/checkout.py patches/checkout.py && echo '1 passed'"
read_only = true
cwd = "{work}"

[[actions]]
name = "deploy_staging"
description = "Deploy the app to staging"
kind = "command"
run = "mkdir -p staging && cp app/checkout.py staging/checkout.py"
undo = "rm -f staging/checkout.py"
cwd = "{work}"

[[actions]]
name = "promote"
description = "Promote staging to production"
kind = "command"
run = "cp prod/checkout.py prod/.checkout.prev && cp staging/checkout.py prod/checkout.py"
undo = "mv prod/.checkout.prev prod/checkout.py"
cwd = "{work}"
"""


def working_copy(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    (work / "app").mkdir(parents=True)
    (work / "prod").mkdir()
    (work / "patches").mkdir()
    (work / "app" / "checkout.py").write_text(BUGGY)
    (work / "prod" / "checkout.py").write_text(BUGGY)
    (work / "patches" / "checkout.py").write_text(FIXED)  # the fix ops applies
    return work


def files(work: Path) -> dict[str, str]:
    return {str(p.relative_to(work)): p.read_text() for p in sorted(work.rglob("*")) if p.is_file()}


def script_the_fix(model) -> None:
    """ops reproduces, fixes, tests and hands the deploy over; the deployer deploys and promotes."""
    model.call("reproduce").call("fix_checkout").call("run_tests")
    model.call("transfer_to_deployer", {"brief": "Deploy the checkout fix to staging, then promote it."})
    model.call("deploy_staging").call("promote").answer("Deployed to staging and promoted.")
    model.answer("Fixed the checkout; the deployer deployed and promoted it.")


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'chatops.db'}"
        return
    async with fresh_database() as url:
        yield url


async def _case(desk) -> list[Run]:
    return await desk.runs()


async def test_a_handoff_acts_through_the_target_and_one_undo_reverses_the_case(
    start_desk, tmp_path, database_url
):
    work = working_copy(tmp_path)
    before = files(work)
    desk = await start_desk(loop_config(work), model=True, database_url=database_url)
    script_the_fix(desk.model)
    mention = ev.app_mention("<@UBOT> checkout is failing for everyone: fix it and ship it", channel=OPS)
    ts = mention["event"]["ts"]
    await desk.send.event(mention)

    async def both_done() -> list[Run] | None:
        runs = await desk.runs()
        done = len(runs) == 2 and all(r.status == RunStatus.succeeded and r.outcome_ts for r in runs)
        return runs if done else None

    ops, deployer = await wait_until(both_done, 20, message="the case to finish")
    assert (deployer.case_id, deployer.parent_id, deployer.agent) == (ops.id, ops.id, "deployer")
    assert ops.case == deployer.case == ops.id
    assert files(work)["prod/checkout.py"] == FIXED and files(work)["staging/checkout.py"] == FIXED

    # The handoff's outcome came back to ops as the tool's result.
    [transfer] = [s for s in await desk.steps(ops.id) if s.name == "transfer_to_deployer"]
    assert transfer.status == StepStatus.succeeded
    assert transfer.output.startswith(f"deployer finished (run #{deployer.id}).")
    assert "Its answer: Deployed to staging and promoted." in transfer.output
    # The deployer worked in a thread of its own channel, opened with a link to the origin.
    opener = desk.slack.messages[deployer.thread_ts]
    assert opener.channel == DEPLOY and opener.thread_ts is None
    assert "*ops* handed this to *deployer*" in opener.text and f"/archives/{OPS}/p" in opener.text
    assert ">Deploy the checkout fix to staging, then promote it." in opener.text
    # ... and the origin thread's status linked to it while ops waited.
    edits = [e["text"] for e in desk.slack.messages[ops.status_ts].edits]
    assert any(f"is waiting for *deployer*: <https://slack.com/archives/{DEPLOY}/p" in e for e in edits)

    # One undo in the origin thread: every step of both agents, newest first.
    await say(desk, "undo", thread_ts=ts, channel=OPS)

    async def undone() -> list[Run] | None:
        runs = await desk.runs()
        done = all(r.status == RunStatus.rolled_back and r.undo_ts not in (None, "pending") for r in runs)
        return runs if done else None

    ops, deployer = await wait_until(undone, 20, message="the case to be undone")
    assert files(work) == before
    steps = await desk.steps(ops.id)
    by_id = {s.id: s for s in [*steps, *await desk.steps(deployer.id)]}
    compensated = [by_id[s.compensates].name for s in steps if s.kind == StepKind.compensation]
    assert compensated == ["promote", "deploy_staging", "fix_checkout"]  # newest first, across agents
    assert ops.undone_by == deployer.undone_by == "U1"
    report = desk.slack.messages[ops.undo_ts].text
    assert "*deployer*:" in report and "*ops*:" in report
    assert "ran the undo of promote" in report and "ran the undo of fix_checkout" in report
    assert "ran the undo of promote" in desk.slack.messages[deployer.undo_ts].text


async def test_a_run_waiting_for_its_handoff_keeps_its_loading_status(start_desk, tmp_path):
    """The handoff is the waiting run's step: its thread's status is not cleared for the wait
    (one Slack call less per handoff), and the run's next step shows as usual."""
    work = working_copy(tmp_path)
    desk = await start_desk(loop_config(work), model=True)
    loading = desk.services.presenter.loading
    loading.pace = 0.0  # every status at once, so that a clear would be sent, not coalesced
    model = desk.model
    model.call("transfer_to_deployer", {"brief": "Deploy the checkout fix to staging."})
    model.call("deploy_staging", held=True).answer("Deployed to staging.")  # the deployer's first turn
    model.answer("The deployer deployed it.")
    mention = ev.app_mention("<@UBOT> ship the checkout fix", channel=OPS)
    ts = mention["event"]["ts"]
    await desk.send.event(mention)

    async def ops_waits() -> bool:
        runs = await desk.runs()
        message = desk.slack.messages.get(runs[0].status_ts or "") if runs else None
        return message is not None and any("is waiting for *deployer*" in e["text"] for e in message.edits)

    await wait_until(ops_waits, message="ops to wait for the deployer")
    await loading.idle()  # a status on its way for ops (a clear, before) has landed
    waiting = desk.slack.statuses_in(OPS, ts)
    assert waiting and "" not in waiting, waiting
    model.release()
    await wait_until(lambda: _both_succeeded(desk), 20, message="the case to finish")
    assert "" not in desk.slack.statuses_in(OPS, ts), desk.slack.statuses_in(OPS, ts)
    assert desk.slack.statuses_in(OPS, ts)[-1] == THINKING  # its last turn, after the handoff


async def _both_succeeded(desk) -> list[Run] | None:
    runs = await desk.runs()
    done = len(runs) == 2 and all(r.status == RunStatus.succeeded and r.outcome_ts for r in runs)
    return runs if done else None


async def test_a_customers_escalation_waits_for_a_team_members_approve_in_the_teams_channel(
    start_desk, tmp_path, database_url
):
    work = working_copy(tmp_path)
    desk = await start_desk(loop_config(work), model=True, database_url=database_url)
    desk.slack.add_user("UGUEST", is_restricted=True)
    model = desk.model
    model.call("slack_reply", {"text": "Sorry about that! The team is looking into it now."})
    model.call("transfer_to_ops", {"brief": "Customer reports: checkout fails with 'card declined'. Fix it."})
    script_the_fix(model)
    model.call("slack_reply", {"text": "It's fixed: checkout works again. Thanks for telling us!"})
    model.answer("Told the customer it is fixed.")
    report = ev.channel_message("checkout is broken, my card is declined", channel=SUPPORT, user="UGUEST")
    customer_ts = report["event"]["ts"]
    await desk.send.event(report)

    async def ops_waiting() -> Run | None:
        runs = await desk.runs()
        return runs[1] if len(runs) == 2 and runs[1].status_ts not in (None, "pending") else None

    ops = await wait_until(ops_waiting, 15, message="the escalation to wait for a team member")
    assert ops.channel_id == OPS and ops.status == RunStatus.waiting
    [approval] = await desk.rows(Approval, col(Approval.run_id) == ops.id)
    buttons = await approval_message(desk, OPS, ops.thread_ts)
    assert buttons.channel == OPS  # in the team's channel, never the customer's
    assert "Customer reports: checkout fails with 'card declined'. Fix it." in buttons.text
    assert files(work)["prod/checkout.py"] == BUGGY  # nothing happened yet

    # The customer cannot approve it, even with a forged click.
    await click(desk, "chatops_approve", str(approval.id), message=buttons, user="UGUEST")
    [refusal] = await wait_until(lambda: ephemerals_to(desk, "UGUEST"), message="the refusal")
    assert "guests cannot control agents" in refusal.text
    assert (await desk.run(ops.id)).status == RunStatus.waiting

    await click(desk, "chatops_approve", str(approval.id), message=buttons, user="U1")

    async def resolved() -> list[Run] | None:
        runs = await desk.runs()
        done = len(runs) == 3 and all(r.status == RunStatus.succeeded and r.outcome_ts for r in runs)
        return runs if done else None

    support, ops, deployer = await wait_until(resolved, 25, message="the case to be resolved")
    assert files(work)["prod/checkout.py"] == FIXED
    assert [r.case for r in (support, ops, deployer)] == [support.id] * 3
    # The customer's thread heard only what support wrote, nothing of the team's threads.
    customer_thread = desk.slack.thread(SUPPORT, customer_ts)
    for message in customer_thread:
        assert OPS not in message.text and DEPLOY not in message.text and "deployer" not in message.text
        assert "*ops*" not in message.text
    texts = [m.text for m in customer_thread]
    assert "Sorry about that! The team is looking into it now." in texts
    assert "It's fixed: checkout works again. Thanks for telling us!" in texts
    assert all(m.channel == SUPPORT for m in customer_thread)


async def test_a_denied_escalation_comes_back_to_the_caller_as_denied(start_desk, tmp_path):
    work = working_copy(tmp_path)
    desk = await start_desk(loop_config(work), model=True)
    desk.slack.add_user("UGUEST", is_restricted=True)
    model = desk.model
    model.call("transfer_to_ops", {"brief": "Refund everyone."})
    model.answer("I'm sorry, the team could not do that.")
    await desk.send.event(ev.channel_message("refund everyone please", channel=SUPPORT, user="UGUEST"))

    async def two() -> list[Run] | None:
        runs = await desk.runs()
        return runs if len(runs) == 2 and runs[1].status_ts not in (None, "pending") else None

    _, ops = await wait_until(two, 15, message="the escalation")
    buttons = await approval_message(desk, OPS, ops.thread_ts)
    [approval] = await desk.rows(Approval, col(Approval.run_id) == ops.id)
    await click(desk, "chatops_deny", str(approval.id), message=buttons, user="U1")

    async def ended() -> list[Run] | None:
        runs = await desk.runs()
        return (
            runs
            if all(r.status in (RunStatus.succeeded, RunStatus.failed) and r.outcome_ts for r in runs)
            else None
        )

    support, ops = await wait_until(ended, 15, message="both runs to end")
    assert ops.status == RunStatus.failed and "not approved: denied by <@U1>" in (ops.error or "")
    [transfer] = [s for s in await desk.steps(support.id) if s.name == "transfer_to_ops"]
    assert transfer.output.startswith(f"ops failed (run #{ops.id}).")
    assert "denied by <@U1>" in transfer.output
    assert files(work)["prod/checkout.py"] == BUGGY


async def test_handoffs_do_not_go_round_or_too_deep(start_desk, tmp_path):
    config = """
[control]
max_handoff_depth = 2

[[agents]]
name = "a"
default = true
handoffs = ["b"]

[[agents]]
name = "b"
handoffs = ["a", "c"]

[[agents]]
name = "c"
handoffs = ["d"]

[[agents]]
name = "d"
"""
    desk = await start_desk(config, model=True)
    model = desk.model
    model.call("transfer_to_b", {"brief": "go"})  # a -> b
    model.call("transfer_to_a", {"brief": "back"})  # b -> a: a cycle
    model.call("transfer_to_c", {"brief": "on"})  # b -> c
    model.call("transfer_to_d", {"brief": "deeper"})  # c -> d: too deep
    model.answer("c stops here.").answer("b done.").answer("a done.")
    await desk.send.event(ev.app_mention("<@UBOT> start"))
    await wait_until(lambda: _all_final(desk), 20, message="the case to end")
    results = {
        s.name: s.output
        for r in await desk.runs()
        for s in await desk.steps(r.id)
        if s.name.startswith("transfer")
    }
    assert "a already works on this case (a -> b); handoffs may not go round" in results["transfer_to_a"]
    assert "this case is already 2 handoffs deep (control.max_handoff_depth)" in results["transfer_to_d"]
    assert [r.agent for r in await desk.runs()] == ["a", "b", "c"]


async def _all_final(desk) -> bool:
    runs = await desk.runs()
    return bool(runs) and all(
        r.status in (RunStatus.succeeded, RunStatus.failed, RunStatus.no_action) for r in runs
    )


async def test_status_shows_a_case_as_a_tree_the_watchdog_sees_it_stall_and_the_summary_counts_it(
    start_desk, tmp_path
):
    clock = TestClock(now())
    set_clock(clock)
    work = working_copy(tmp_path)
    config = '[summary]\nchannel = "CSUMMARY"\n\n[alerts]\nchannel = "CALERTS"\nstuck_minutes = 15\n'
    desk = await start_desk(config + loop_config(work), model=True)
    desk.slack.add_user("UGUEST", is_restricted=True)
    desk.model.call("transfer_to_ops", {"brief": "Checkout fails for a customer. Fix it."})
    await desk.send.event(ev.channel_message("checkout is broken", channel=SUPPORT, user="UGUEST"))

    async def escalated() -> Run | None:
        runs = await desk.runs()
        return runs[1] if len(runs) == 2 and runs[1].status_ts not in (None, "pending") else None

    ops = await wait_until(escalated, 15, message="the escalation to wait for a team member")
    text, _ = ack_text(await slash(desk, "status", channel=OPS))
    assert f"• case #{ops.case} (2 runs, support → ops)" in text
    assert f"    ◦ run #{ops.case} (support): waiting" in text
    assert f"        ◦ run #{ops.id} (ops): waiting (a team member approves" in text

    assert "stuck:case" not in " ".join(await desk.services.watchdog.check())
    clock.advance(timedelta(minutes=16))
    holding = await desk.services.watchdog.check()
    assert f"stuck:case:{ops.case}" in holding
    [alert] = [m for m in desk.slack.top_level("CALERTS") if "Case #" in m.text]
    assert f"Case #{ops.case} (support → ops) has made no progress" in alert.text
    assert f"It is at *ops*: run #{ops.id}, waiting" in alert.text

    # Approved and resolved (the model's script for the rest), it is one line of the summary.
    script_the_fix(desk.model)
    desk.model.answer("The team fixed it.")
    buttons = await approval_message(desk, OPS, ops.thread_ts)
    [approval] = await desk.rows(Approval, col(Approval.run_id) == ops.id)
    await click(desk, "chatops_approve", str(approval.id), message=buttons)
    await wait_until(lambda: _all_final(desk), 25, message="the case to end")
    summaries = desk.services.summaries
    await summaries.post(summaries.today())
    [post] = desk.slack.top_level("CSUMMARY")
    assert "*Cases across agents* (1: 1 resolved)" in post.text
    assert f"|case #{ops.case}>: support → ops → deployer: resolved" in post.text
