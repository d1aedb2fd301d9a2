"""A high-risk or irreversible action waits for a human's Approve or Deny in the thread.

Only people who may control agents can decide: guests, users of other workspaces and
(when control.admins is set) non-admins are refused with a message only they see, and
their click changes nothing. Approvals survive a restart; nobody deciding in time fails
the run.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from scenarios.control_support import (
    GUEST,
    OUTSIDER,
    STRANGER,
    ack_text,
    actions_of,
    add_customers,
    approval_message,
    approvals,
    ask,
    audit,
    click,
    compensations_of,
    config,
    ephemerals_to,
    lines,
    run_in,
    slash,
)
from storage.clock import set_clock
from storage.models import ApprovalStatus, RunStatus, StepStatus


async def _waiting_for_deploy(desk, notes, *, user: str = "U1"):
    """A run that asked to deploy api (risk high) and waits; returns (thread ts, message, approval)."""
    ts = await ask(desk, "deploy api", user=user)
    buttons = await approval_message(desk, "C1", ts)
    [approval] = await approvals(desk)
    await run_in(desk, approval.run_id, RunStatus.waiting, reason="approval")
    assert lines(notes) == []
    return ts, buttons, approval


async def test_a_high_risk_action_does_nothing_until_an_allowed_user_approves(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    add_customers(desk)
    desk.model.call("deploy", {"service": "api"}).answer("Deployed api.")
    ts, buttons, approval = await _waiting_for_deploy(desk, notes)

    assert (approval.action, approval.status, approval.arguments) == ("deploy", "pending", {"service": "api"})
    assert "risk is high" in approval.reason
    assert buttons.action_ids() == ["chatops_approve", "chatops_deny"]
    assert buttons.thread_ts == ts and "deploy" in buttons.text and "api" in buttons.text
    assert await actions_of(desk, approval.run_id) == []
    assert len(desk.model.requests) == 1

    # Clicks by people who may not control agents: refused, only to them; nothing changes.
    refused = [
        (GUEST, {}, "guests cannot control agents"),
        (STRANGER, {}, "other workspaces"),
        (OUTSIDER, {}, "other workspaces"),  # users.info says another team
        ("U2", {"user_team": "T2"}, "other workspaces"),  # the payload says another team
    ]
    thread_before = [m.ts for m in desk.slack.thread("C1", ts)]
    for user, extra, why in refused:
        for action_id in ("chatops_approve", "chatops_deny"):
            await click(desk, action_id, str(approval.id), message=buttons, user=user, **extra)
        answers = ephemerals_to(desk, user)
        assert len(answers) == 2, (user, [m.text for m in answers])
        assert all(f"<@{user}>" in m.text and why in m.text for m in answers), [m.text for m in answers]
        assert "can't approve" in answers[0].text and "can't deny" in answers[1].text
    [still] = await approvals(desk)
    assert still.status == ApprovalStatus.pending and still.decided_by is None
    assert (await desk.run(approval.run_id)).status == RunStatus.waiting
    assert lines(notes) == [] and await actions_of(desk, approval.run_id) == []
    assert buttons.action_ids() == ["chatops_approve", "chatops_deny"]
    assert [m.ts for m in desk.slack.thread("C1", ts)] == thread_before  # nothing public
    assert len(await audit(desk, "refused")) == 2 * len(refused)
    assert await audit(desk, "approve") == []

    # A full member approves: the action runs, once.
    await click(desk, "chatops_approve", str(approval.id), message=buttons, user="U2")
    assert "approved by <@U2>" in ephemerals_to(desk, "U2")[-1].text
    run = await desk.finished(approval.run_id)
    assert run.status == RunStatus.succeeded
    assert lines(notes) == ["deployed api"]
    [decided] = await approvals(desk)
    assert (decided.status, decided.decided_by) == (ApprovalStatus.approved, "U2")
    assert buttons.action_ids() == [] and "approved by <@U2>" in buttons.text

    # A late click on the old message: already decided, nothing more happens.
    await click(desk, "chatops_deny", str(approval.id), message=buttons, user="U1")
    assert "Already decided" in ephemerals_to(desk, "U1")[-1].text
    await desk.settled()
    assert (await desk.run(approval.run_id)).status == RunStatus.succeeded
    assert lines(notes) == ["deployed api"]


async def test_an_irreversible_action_asks_first_too(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    desk.model.call("wipe_cache").answer("Wiped.")
    ts = await ask(desk, "wipe the cache")
    buttons = await approval_message(desk, "C1", ts)
    [approval] = await approvals(desk)
    assert approval.action == "wipe_cache" and "cannot be undone" in approval.reason
    assert lines(notes) == []

    await click(desk, "chatops_approve", str(approval.id), message=buttons)
    run = await desk.finished(approval.run_id)
    assert run.status == RunStatus.succeeded and lines(notes) == ["wiped"]


async def test_two_approvals_at_once_run_the_action_once(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    desk.model.call("deploy", {"service": "api"}).answer("Deployed.")
    _, buttons, approval = await _waiting_for_deploy(desk, notes)

    await asyncio.gather(
        click(desk, "chatops_approve", str(approval.id), message=buttons, user="U1"),
        click(desk, "chatops_approve", str(approval.id), message=buttons, user="U2"),
    )
    answers = [m.text for m in ephemerals_to(desk, "U1") + ephemerals_to(desk, "U2")]
    assert sum("approved by" in t for t in answers) == 1, answers
    assert sum("Already decided" in t for t in answers) == 1, answers
    run = await desk.finished(approval.run_id)
    assert run.status == RunStatus.succeeded
    assert lines(notes) == ["deployed api"]
    assert len(await audit(desk, "approve")) == 1


async def test_deny_fails_the_run_and_rolls_back_its_earlier_steps(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    desk.model.call("append_line", {"line": "pre-deploy check done"})
    desk.model.call("ticket_create", {"title": "Deploy api"})
    desk.model.call("deploy", {"service": "api"})
    ts = await ask(desk, "check, file a ticket, then deploy api")
    buttons = await approval_message(desk, "C1", ts)
    [approval] = await approvals(desk)
    assert lines(notes) == ["pre-deploy check done"] and len(await desk.tickets()) == 1

    await click(desk, "chatops_deny", str(approval.id), message=buttons, user="U2")
    assert "denied by <@U2>" in ephemerals_to(desk, "U2")[-1].text
    run = await desk.finished(approval.run_id)

    assert run.status in (RunStatus.failed, RunStatus.rolled_back)
    assert run.status == RunStatus.rolled_back  # the earlier steps were reversed
    assert lines(notes) == [] and await desk.tickets() == []
    actions = await actions_of(desk, run.id)
    assert [(s.name, s.status) for s in actions] == [
        ("append_line", StepStatus.compensated),
        ("ticket_create", StepStatus.compensated),
        ("deploy", StepStatus.rejected),
    ]
    assert "denied by <@U2>" in (actions[-1].error or "")
    assert len(await compensations_of(desk, run.id)) == 2
    assert len(desk.model.requests) == 3 and desk.model.overrun == 0  # not asked again after the denial
    assert buttons.action_ids() == [] and "denied by <@U2>" in buttons.text
    outcome = desk.slack.messages[run.outcome_ts]
    assert outcome.thread_ts == ts
    assert "deploy" in outcome.text and "denied by <@U2>" in outcome.text and "Reversed:" in outcome.text


async def test_with_admins_set_only_an_admin_may_approve(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes, admins=["U1"]), model=True)
    desk.model.call("deploy", {"service": "api"}).answer("Deployed.")
    _, buttons, approval = await _waiting_for_deploy(desk, notes, user="U2")  # a member may ask

    await click(desk, "chatops_approve", str(approval.id), message=buttons, user="U2")
    [refusal] = ephemerals_to(desk, "U2")
    assert "can't approve" in refusal.text and "admins" in refusal.text
    [still] = await approvals(desk)
    assert still.status == ApprovalStatus.pending
    assert lines(notes) == []
    text, _ = ack_text(await slash(desk, "pause all", user="U2"))
    assert "can't pause" in text and "admins" in text

    await click(desk, "chatops_approve", str(approval.id), message=buttons, user="U1")
    run = await desk.finished(approval.run_id)
    assert run.status == RunStatus.succeeded and lines(notes) == ["deployed api"]


async def test_a_pending_approval_survives_a_restart(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    desk.model.call("deploy", {"service": "api"}).answer("Deployed after the restart.")
    ts, buttons, approval = await _waiting_for_deploy(desk, notes)
    await desk.stop()

    desk = await start_desk(config(notes), model=True)  # same database, new process
    status, _ = ack_text(await slash(desk, "status"))
    assert f"run #{approval.run_id}: deploy" in status
    assert lines(notes) == []
    await click(desk, "chatops_approve", str(approval.id), message=buttons)
    run = await desk.finished(approval.run_id)
    assert run.status == RunStatus.succeeded
    assert lines(notes) == ["deployed api"]
    assert "Deployed after the restart." in desk.slack.messages[run.outcome_ts].text
    assert len([m for m in desk.slack.thread("C1", ts) if "chatops_approve" in (m.action_ids() or [])]) == 0


@pytest.fixture
def moved_clock():
    """Move the stored clock forward by hand (restored by the clean_environment fixture)."""

    def move(by: timedelta) -> None:
        set_clock(lambda: datetime.now(UTC) + by)

    return move


async def test_an_approval_nobody_gives_in_time_expires_and_fails_the_run(start_desk, tmp_path, moved_clock):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes, approval_timeout_hours=1), model=True)
    desk.model.call("append_line", {"line": "prepared"})
    desk.model.call("deploy", {"service": "api"})
    ts = await ask(desk, "prepare and deploy api")
    buttons = await approval_message(desk, "C1", ts)
    [approval] = await approvals(desk)
    controls = desk.services.controls
    assert await controls.expire_approvals() == 0  # not due yet

    moved_clock(timedelta(hours=1, minutes=1))
    assert await controls.expire_approvals() == 1
    run = await desk.finished(approval.run_id)

    assert run.status == RunStatus.rolled_back
    assert "nobody approved it in time" in (run.error or "")
    assert lines(notes) == []  # deploy never ran; the earlier line was reversed
    [expired] = await approvals(desk)
    assert expired.status == ApprovalStatus.expired
    assert buttons.action_ids() == [] and "expired" in buttons.text
    assert "nobody approved it in time" in desk.slack.messages[run.outcome_ts].text

    await click(desk, "chatops_approve", str(approval.id), message=buttons)
    assert "Already decided" in ephemerals_to(desk, "U1")[-1].text
    await desk.settled()
    assert (await desk.run(run.id)).status == RunStatus.rolled_back
    assert lines(notes) == []
