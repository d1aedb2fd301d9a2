"""The approval policy: who may decide (`approvers`, default whoever may control agents), how
many different people must approve (`approvals = 2`: a two-person rule), and whether the
requester may approve their own run's action (`self_approval`). The approval message says who
may decide and how many approvals are still needed; every decision and refusal is audited.
Buttons still act only on their own message, and guests never decide.
"""

from __future__ import annotations

from fakes import wait_until

from scenarios.control_support import (
    GUEST,
    actions_of,
    add_customers,
    approval_message,
    approvals,
    ask,
    audit,
    click,
    config,
    ephemerals_to,
    lines,
    run_in,
)
from storage.models import ApprovalDecision, ApprovalStatus, RunStatus


def _policy(notes, *, control: str = "", deploy: str = "", admins: list[str] | None = None) -> str:
    """The control scenarios' configuration with [control] and the deploy action's extra lines."""
    text = config(notes, admins=admins)
    if control and "[control]\n" in text:
        text = text.replace("[control]\n", f"[control]\n{control}\n", 1)
    elif control:
        text = f"[control]\n{control}\n" + text
    if deploy:
        text = text.replace('risk = "high"\n', f'risk = "high"\n{deploy}\n', 1)
    return text


async def _deploy_waiting(desk, notes, *, user: str = "U1"):
    desk.model.call("deploy", {"service": "api"}).answer("Deployed api.")
    ts = await ask(desk, "deploy api", user=user)
    buttons = await approval_message(desk, "C1", ts)
    [approval] = await approvals(desk)
    await run_in(desk, approval.run_id, RunStatus.waiting, reason="approval")
    assert lines(notes) == []
    return ts, buttons, approval


async def test_self_approval_false_refuses_the_requesters_own_approve(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(_policy(notes, control="self_approval = false"), model=True)
    _, buttons, approval = await _deploy_waiting(desk, notes, user="U1")
    assert "but not <@U1>, who asked for it (self_approval = false)" in buttons.text
    assert approval.self_approval is False

    await click(desk, "chatops_approve", str(approval.id), message=buttons, user="U1")
    [refused] = ephemerals_to(desk, "U1")
    assert "you can't approve" in refused.text and "self_approval = false" in refused.text
    [still] = await approvals(desk)
    assert still.status == ApprovalStatus.pending and lines(notes) == []
    [audited] = await audit(desk, "refused")
    assert (audited.actor, audited.target) == ("U1", f"approval:{approval.id}")
    assert "self_approval" in audited.detail
    assert await actions_of(desk, approval.run_id) == []

    # Someone else approves: it runs.
    await click(desk, "chatops_approve", str(approval.id), message=buttons, user="U2")
    run = await desk.finished(approval.run_id)
    assert run.status == RunStatus.succeeded and lines(notes) == ["deployed api"]


async def test_self_approval_false_still_lets_the_requester_deny(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(_policy(notes, control="self_approval = false"), model=True)
    _, buttons, approval = await _deploy_waiting(desk, notes, user="U1")
    await click(desk, "chatops_deny", str(approval.id), message=buttons, user="U1")
    run = await desk.finished(approval.run_id)
    assert run.status == RunStatus.failed and "denied by <@U1>" in (run.error or "")
    assert lines(notes) == []


async def test_two_approvals_wait_for_a_second_person(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(_policy(notes, deploy="approvals = 2"), model=True)
    desk.slack.add_user("U3", real_name="Linus")
    _, buttons, approval = await _deploy_waiting(desk, notes)
    assert approval.needed == 2
    assert "2 different people must approve; 2 more approvals needed" in buttons.text

    # The first approval is counted and said; the run still waits.
    await click(desk, "chatops_approve", str(approval.id), message=buttons, user="U1")
    assert "(1 of 2); it waits for 1 more approver" in ephemerals_to(desk, "U1")[-1].text
    [waiting] = await approvals(desk)
    assert waiting.status == ApprovalStatus.pending
    assert (await desk.run(approval.run_id)).status == RunStatus.waiting and lines(notes) == []
    assert "approved by <@U1>; 1 more approval needed" in await _text_when(desk, buttons, "1 more approval")
    assert buttons.action_ids() == ["chatops_approve", "chatops_deny"]

    # The same person again does not count twice.
    await click(desk, "chatops_approve", str(approval.id), message=buttons, user="U1")
    assert "you already decided on it" in ephemerals_to(desk, "U1")[-1].text
    assert (await approvals(desk))[0].status == ApprovalStatus.pending

    # A second person: approved, and it runs once.
    await click(desk, "chatops_approve", str(approval.id), message=buttons, user="U2")
    assert "approved by <@U2> (2 of 2)" in ephemerals_to(desk, "U2")[-1].text
    run = await desk.finished(approval.run_id)
    assert run.status == RunStatus.succeeded and lines(notes) == ["deployed api"]
    assert "approved by <@U1> and <@U2>" in buttons.text and buttons.action_ids() == []
    decisions = await desk.rows(ApprovalDecision)
    assert [(d.user_id, d.decision) for d in decisions] == [("U1", "approve"), ("U2", "approve")]
    assert [(e.actor, e.detail) for e in await audit(desk, "approve")] == [
        ("U1", f"run #{approval.run_id}: deploy (1 of 2)"),
        ("U2", f"run #{approval.run_id}: deploy (2 of 2)"),
    ]
    assert len(await audit(desk, "refused")) == 1


async def test_in_a_two_person_rule_one_deny_decides(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(_policy(notes, control="approvals = 2"), model=True)
    _, buttons, approval = await _deploy_waiting(desk, notes)
    await click(desk, "chatops_approve", str(approval.id), message=buttons, user="U1")
    await click(desk, "chatops_deny", str(approval.id), message=buttons, user="U2")
    run = await desk.finished(approval.run_id)
    assert run.status == RunStatus.failed and lines(notes) == []
    assert (await approvals(desk))[0].status == ApprovalStatus.denied


async def test_approvers_decide_even_when_not_admins_and_guests_never(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    deploy = f'approvers = ["U2", "{GUEST}"]'
    desk = await start_desk(_policy(notes, deploy=deploy, admins=["U1"]), model=True)
    add_customers(desk)
    _, buttons, approval = await _deploy_waiting(desk, notes, user="U1")
    assert f"Who may decide: <@U2> or <@{GUEST}>" in buttons.text
    assert approval.approvers == ["U2", GUEST]

    # An admin who is not one of the action's approvers may not decide it; nor may a guest,
    # listed or not.
    await click(desk, "chatops_approve", str(approval.id), message=buttons, user="U1")
    assert f"only <@U2> or <@{GUEST}> can decide deploy" in ephemerals_to(desk, "U1")[-1].text
    await click(desk, "chatops_approve", str(approval.id), message=buttons, user=GUEST)
    assert "guests cannot control agents" in ephemerals_to(desk, GUEST)[-1].text
    assert (await approvals(desk))[0].status == ApprovalStatus.pending and lines(notes) == []

    # The approver, who is no admin, decides.
    await click(desk, "chatops_approve", str(approval.id), message=buttons, user="U2")
    run = await desk.finished(approval.run_id)
    assert run.status == RunStatus.succeeded and lines(notes) == ["deployed api"]
    assert len(await audit(desk, "refused")) == 2


async def _text_when(desk, message, words: str) -> str:
    """The message's text once an edit has put `words` in it."""
    return await wait_until(lambda: message.text if words in message.text else None, message=words)
