"""The model's answer in the outcome: a `markdown` block (not escaped mrkdwn); with a language
model it is streamed into the reply (chat.startStream, appendStream, stopStream), and the Undo
and feedback buttons come with the stream's end. Where Slack has no streaming (an older
workspace), or the stream breaks, the outcome is posted whole as before.
"""

from __future__ import annotations

from fakes import slack_events as ev
from fakes import wait_until
from slack_sdk.models.blocks import Block

from storage.models import RunStatus

ANSWER = "\n".join(
    [
        "## Rollout of `api` 1.4.2",
        "",
        *(
            f"- step {n}: **done**, checked <https://status.example.com|the status page> & logs"
            for n in range(8)
        ),
        "",
        "Say *undo* to take it back.",
    ]
)


async def _ask(desk, text: str) -> str:
    mention = ev.app_mention(f"<@UBOT> {text}")
    await desk.send.event(mention)
    return mention["event"]["ts"]


def _parsed(blocks: list[dict]) -> list[dict]:
    """The blocks as slack_sdk's Block Kit models read them back (unknown types would be dropped)."""
    return [b.to_dict() for b in Block.parse_all(blocks)]


async def test_the_offline_planners_answer_is_posted_in_a_markdown_block_with_feedback_buttons(start_desk):
    desk = await start_desk()
    ts = await _ask(desk, "create a ticket for the &lt;printer&gt; &amp; the scanner")  # as Slack sends it
    run = await desk.only_run()
    outcome = desk.slack.messages[run.outcome_ts]
    assert desk.slack.calls_to("chat.startStream") == []  # the offline planner's answer is posted whole
    assert outcome.thread_ts == ts

    markdown = outcome.block("markdown")
    assert markdown is not None and markdown["text"] == (run.outcome or "").strip()
    assert "<printer> & the scanner" in markdown["text"]  # as written, not escaped into mrkdwn
    [feedback] = outcome.block("context_actions")["elements"]
    assert feedback["type"] == "feedback_buttons" and feedback["action_id"] == "chatops_feedback"
    assert (feedback["positive_button"]["value"], feedback["negative_button"]["value"]) == (
        f"good:{run.id}",
        f"bad:{run.id}",
    )
    assert "chatops_undo" in outcome.action_ids()
    assert _parsed(outcome.blocks) == outcome.blocks  # valid Block Kit, as slack_sdk models it


async def test_a_models_answer_streams_into_the_outcome_and_its_buttons_come_when_it_stops(start_desk):
    desk = await start_desk(model=True)
    slack, model = desk.slack, desk.model
    model.call("ticket_create", {"title": "Roll out api 1.4.2"})
    model.answer(ANSWER)
    ts = await _ask(desk, "roll out api 1.4.2")

    run = await desk.only_run()
    assert run.status == RunStatus.succeeded
    [start] = slack.calls_to("chat.startStream")
    appends = slack.calls_to("chat.appendStream")
    [stop] = slack.calls_to("chat.stopStream")
    assert appends, "an answer this long is streamed in several pieces"
    assert (start.params["channel"], start.params["thread_ts"]) == ("C1", ts)
    assert (start.params["recipient_user_id"], start.params["recipient_team_id"]) == ("U1", "T1")
    assert "blocks" not in start.params and all("blocks" not in a.params for a in appends)

    outcome = slack.messages[run.outcome_ts]  # the stream is the outcome reply
    assert not outcome.streaming and outcome.thread_ts == ts
    assert outcome.text == ANSWER and len(outcome.streamed) == 2 + len(appends)
    assert [m.ts for m in slack.thread("C1", ts)] == [run.status_ts, run.outcome_ts]
    assert {c.params["ts"] for c in [*appends, stop]} == {outcome.ts}
    assert stop.params["blocks"] == outcome.blocks
    assert outcome.action_ids() == ["chatops_undo", "chatops_feedback"]  # attached at the stop
    assert outcome.block("markdown") is None  # the answer is the streamed text, not a block
    assert "created ticket #1" in outcome.shown() and "finished" in outcome.shown()
    assert _parsed(outcome.blocks) == outcome.blocks

    # Its Undo works: the streamed reply is the run's outcome message.
    click = ev.block_action("chatops_undo", str(run.id), message_ts=outcome.ts, thread_ts=ts)
    assert (await desk.send.interaction(click)).status == 200
    await wait_until(lambda: _undone(desk, run.id), message="the undo")
    assert await desk.tickets() == []


async def _undone(desk, run_id: int) -> bool:
    run = await desk.run(run_id)
    return run.status == RunStatus.rolled_back and run.undo_ts not in (None, "pending")


async def test_where_slack_has_no_streaming_the_outcome_is_posted_whole_and_streaming_is_not_tried_again(
    start_desk,
):
    desk = await start_desk(model=True)
    slack, model = desk.slack, desk.model
    slack.refuse("chat.startStream", "unknown_method")  # an older workspace
    model.answer("First: **nothing to do**.\n" + ANSWER)  # long enough to be streamed
    model.answer("Second: **still nothing**.\n" + ANSWER)
    for n, text in enumerate(["look at the first thing", "look at the second thing"]):
        ts = await _ask(desk, text)
        run = await desk.finished((await wait_until(lambda ts=ts: _run_in(desk, ts))).id)
        outcome = slack.messages[run.outcome_ts]
        assert outcome.block("markdown")["text"] == (run.outcome or "")
        assert outcome.text.startswith(":white_check_mark:") or "did nothing" in outcome.text
        assert "chatops_feedback" in outcome.action_ids()
        assert len(slack.calls_to("chat.startStream")) == 1, n  # refused once, not asked again
    assert len(slack.calls_to("chat.stopStream")) == 0


async def _run_in(desk, ts: str):
    return next((r for r in await desk.runs() if r.thread_ts == ts), None)


async def test_a_stream_that_breaks_halfway_is_replaced_by_the_whole_outcome(start_desk):
    desk = await start_desk(model=True)
    slack, model = desk.slack, desk.model
    model.call("ticket_create", {"title": "Half streamed"})
    model.answer(ANSWER)
    slack.fail("chat.stopStream", status=500, times=3)  # the call and its two retries
    ts = await _ask(desk, "do the half streamed thing")

    run = await desk.only_run()
    outcome = slack.messages[run.outcome_ts]
    assert len(slack.calls_to("chat.startStream")) == 1 and len(slack.calls_to("chat.stopStream")) == 3
    assert [m.ts for m in slack.thread("C1", ts)] == [run.status_ts, run.outcome_ts]  # no second reply
    [edit] = outcome.edits  # the half-streamed reply, made whole
    assert outcome.block("markdown")["text"] == ANSWER
    assert outcome.action_ids() == ["chatops_undo", "chatops_feedback"]
    assert "created ticket #1" in edit["text"]
