"""The conversation a run reads: the thread's earlier runs within a token budget, a customer's
view of team members' runs, steering replies where they were read, and the same input again
after a crash."""

from __future__ import annotations

from agent_doubles import ScriptedPlanner, act, answer, call, config_with, make_runtime, queue_run
from sqlmodel import update

from agents import conversation
from agents.conversation import EarlierRun, PastAction
from agents.worker import Worker
from storage.engine import Database
from storage.models import Request, Run, Step, StepKind, StepStatus


def _run(i: int, *, words: int = 10, actions: int = 1) -> EarlierRun:
    return EarlierRun(
        id=i,
        requester="U1",
        request=f"request {i} " + "word " * words,
        status="succeeded",
        undone_by=None,
        answer=f"answer {i} " + "word " * words,
        problem="",
        actions=[
            PastAction("ticket_find", {"query": f"q{i}"}, "succeeded", f"found tickets {i}", "x" * 2000)
            for _ in range(actions)
        ],
        steering=[],
    )


def test_the_whole_thread_fits_when_it_is_short() -> None:
    runs = [_run(1), _run(2)]
    messages = conversation.history(runs, budget=10_000)
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2
    assert messages[1]["content"].startswith("[run #1: done]\n- ticket_find")
    assert "x" * 599 + "…" in messages[1]["content"]  # a tool result is cut even in full
    assert conversation.history(runs, budget=0) == []


def test_the_oldest_runs_are_condensed_first_then_left_out() -> None:
    runs = [_run(i, words=40) for i in range(1, 9)]
    roomy = conversation.estimate_tokens(conversation.history(runs, budget=10**6))
    condensed = conversation.history(runs, budget=roomy * 2 // 3)
    accounts = [m["content"] for m in condensed if m["role"] == "assistant"]
    assert len(accounts) == 8
    assert (
        accounts[0] == "[run #1: done] found tickets 1. Answer: " + ("answer 1 " + "word " * 40)[:199] + "…"
    )
    assert accounts[-1].startswith("[run #8: done]\n- ticket_find")  # the newest stays whole
    assert conversation.estimate_tokens(condensed) <= roomy * 2 // 3

    tight = conversation.history(runs, budget=300)
    assert conversation.estimate_tokens(tight) <= 300
    assert tight[0]["content"].startswith("(Earlier in this thread: ")
    assert "more requests, not shown.)" in tight[0]["content"]
    assert tight[-1]["content"].startswith("[run #8: done]")  # the newest is always there


def test_a_customer_does_not_see_what_team_members_runs_did() -> None:
    from storage.threads import PastRun

    member = Request(
        id=1,
        kind="mention",
        channel_id="C",
        user_id="U1",
        ts="1",
        thread_ts="1",
        text="internal",
        agent="ops",
    )
    member.requester_role = "member"
    run = Run(
        id=1, request_id=1, agent="ops", channel_id="C", thread_ts="1", status="succeeded", outcome="ok"
    )
    step = Step(
        run_id=1,
        seq=2,
        kind=StepKind.action,
        name="ticket_find",
        status=StepStatus.succeeded,
        output="secret rows",
    )
    [seen] = conversation.remember([PastRun(run, member, [step], [])], for_customer=True)
    assert seen.actions == [] and seen.hidden
    text = conversation.history([seen], budget=1000)[1]["content"]
    assert "secret rows" not in text and "not shown here" in text
    [team] = conversation.remember([PastRun(run, member, [step], [])], for_customer=False)
    assert "secret rows" in conversation.history([team], budget=1000)[1]["content"]


def test_a_steering_reply_goes_where_the_run_read_it() -> None:
    model = Step(
        run_id=1,
        seq=1,
        kind=StepKind.model,
        name="m",
        status=StepStatus.succeeded,
        data={"message": {"role": "assistant", "content": None, "tool_calls": []}},
    )
    tool = Step(
        run_id=1,
        seq=2,
        kind=StepKind.action,
        name="a",
        status=StepStatus.succeeded,
        output="done",
        tool_call_id="c1",
    )
    later = Step(
        run_id=1,
        seq=3,
        kind=StepKind.model,
        name="m",
        status=StepStatus.succeeded,
        data={"message": {"role": "assistant", "content": "ok"}},
    )
    steer = Request(
        kind="thread",
        channel_id="C",
        user_id="U2",
        ts="2",
        thread_ts="1",
        text="use staging",
        agent="ops",
        steer_seq=3,
    )
    messages = conversation.rebuild("sys", [], "do it", [model, tool, later], [steer])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "user", "assistant"]
    assert messages[4]["content"] == "(<@U2> adds, while you work:) use staging"


async def test_a_resumed_run_reads_the_same_thread_even_if_it_changed_since(db: Database) -> None:
    first_planner = ScriptedPlanner([act(call("ticket_create", title="one")), answer("Created one.")])
    worker = Worker(make_runtime(db, config_with(), first_planner))
    first = await queue_run(db, text="create one")
    await worker.run_until_idle(timeout=10)
    async with db.read() as session:
        thread = (await session.get(Run, first)).thread_ts  # type: ignore[union-attr]
    second = await queue_run(db, text="and another", thread_ts=thread)
    crashing = ScriptedPlanner([RuntimeError("crash mid-turn"), answer("Done.")])
    rt = make_runtime(db, config_with(), crashing)
    # The crash: the first attempt reads the thread, and dies.
    from agents.loop import RunLoop
    from storage import runs

    async with db.write() as session:
        await runs.claim_runs(session=session, worker_id=rt.worker_id, limit=5, lease=rt.lease)
    try:
        await RunLoop(rt, second).execute()
    except RuntimeError:
        pass
    # Meanwhile the thread changes: the first run is marked undone.
    async with db.write() as session:
        await session.exec(update(Run).where(Run.id == first).values(undone_by="U9"))  # type: ignore[arg-type]
        await session.exec(update(Run).where(Run.id == second).values(lease_expires_at=None))  # type: ignore[arg-type]
        await runs.record_crash(session=session, run_id=second, worker_id=rt.worker_id)
    await Worker(rt).run_until_idle(timeout=10)
    (before, _), (after, _) = crashing.calls
    assert before == after  # exactly the same input, the thread as it was when the run began
    assert "undone" not in after[2]["content"]
