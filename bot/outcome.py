"""The outcome reply of a run: what it says, and how it reaches the thread.

The model's answer goes out as a `markdown` block (written by the model in markdown, not
escaped into mrkdwn); what was done, the Undo button and the feedback buttons follow. An
answer from a language model is streamed into the reply (slack_sdk's `chat_stream`:
chat.startStream, appendStream, stopStream), the rest attached when the stream stops. The
answer is whole by then (the planner returns a turn at once), so streaming changes how it
appears, not when: it is fed in as the model wrote it, line by line, and slack_sdk's buffer
decides how many calls that takes. An answer that fits in one piece (STREAM_BUFFER characters)
would appear at once anyway, so it is posted whole, in one call instead of two. Where
streaming fails before anything shows (an older workspace: `unknown_method`), the reply is
posted whole as before; where it breaks halfway, the half-streamed reply is replaced by the
whole one.
"""

from __future__ import annotations

import logging

from bot.render import Message, render
from bot.run_view import OFFLINE, RunView
from bot.surface import STREAM_BUFFER, StreamFailed, Surface

log = logging.getLogger(__name__)


def outcome_message(view: RunView, *, answer_in_blocks: bool = True) -> Message:
    """The outcome reply. `answer_in_blocks` False: without the answer's block (it is streamed)."""
    run = view.run
    header = view.header()
    answer = answer_of(view)
    problem = (run.error or "").strip()
    done = view.done()
    proposed = view.proposed()
    refused = view.not_for_customers()
    sections = [
        header,
        answer,
        "What was done:\n" + "\n".join(done) if done else "",
        "Proposed, not done:\n" + "\n".join(proposed) if proposed else "",
        "Not done, only the team can:\n" + "\n".join(refused) if refused else "",
        problem,
    ]
    text = "\n".join(x for x in sections if x)
    return render(
        "outcome.json.j2",
        text=text,
        header=header,
        answer=answer if answer_in_blocks else "",
        done=done,
        problem=problem,
        proposed=proposed,
        refused=refused,
        undoable=view.undoable(),
        feedback=True,
        run=run,
        footer=view.footer(),
    )


def undo_message(view: RunView) -> Message:
    """The reply saying what an undo reversed."""
    run = view.run
    header = f":leftwards_arrow_with_hook: Undo of run #{run.id} ({run.agent}), asked by <@{run.undone_by}>."
    report = (run.error or "").strip() or "There was nothing to reverse."
    return render(
        "outcome.json.j2",
        text=f"{header}\n{report}",
        header=header,
        answer="",
        done=[],
        proposed=[],
        problem=report,
        undoable=False,
        run=run,
        footer=view.footer(),
    )


def answer_of(view: RunView) -> str:
    answer = (view.run.outcome or "").strip()
    if view.run.planner == OFFLINE and answer and "offline planner" not in answer:
        answer = f"(offline planner) {answer}"
    return answer


def streams(view: RunView) -> bool:
    """Whether the outcome's answer is streamed: a language model's (the offline planner's is
    posted whole), when it is longer than one piece of a stream (STREAM_BUFFER). A shorter one
    would appear at once all the same, in two calls (chat.startStream and stopStream) where a
    post takes one, so it is posted whole."""
    return view.run.planner not in (None, OFFLINE) and len(answer_of(view)) > STREAM_BUFFER


async def deliver(surface: Surface, view: RunView, message: Message, *, stream: bool) -> str:
    """Post the outcome reply, or stream its answer; returns its ts. Raises if Slack refuses
    both (the caller gives its claim back, and the sweep delivers it later)."""
    run = view.run
    if stream:
        try:
            return await surface.stream(
                channel=run.channel_id,
                thread_ts=run.thread_ts,
                markdown=answer_of(view)[:MARKDOWN_LIMIT],
                blocks=outcome_message(view, answer_in_blocks=False).blocks,
                text=message.text,
                recipient_team_id=view.request.team_id or run.team_id,
                recipient_user_id=view.request.user_id,
            )
        except StreamFailed as e:
            log.warning("streaming the outcome of run #%s failed (%s): posting it whole", run.id, e)
            if e.ts is not None:
                await surface.update(
                    channel=run.channel_id, ts=e.ts, text=message.text, blocks=message.blocks
                )
                return e.ts
    return await surface.post(
        channel=run.channel_id, text=message.text, blocks=message.blocks, thread_ts=run.thread_ts
    )


MARKDOWN_LIMIT = 8000
"""Characters of an answer streamed (as the markdown block takes, within a message's limits)."""
