"""Slack's Web API answering 429 (Retry-After) and 500 in the middle of runs: every message and
every action still happens once; an outcome Slack refuses beyond the retries is kept in the
database and delivered later, by whichever process redelivers (here: after a restart).
"""

from __future__ import annotations

from fakes import slack_events as ev
from fakes import wait_until

from storage.models import FINAL_STATUSES, RunStatus, StepKind, StepStatus


async def test_429s_and_500s_across_a_multi_step_run_duplicate_no_message_and_no_action(start_desk):
    desk = await start_desk(model=True)
    slack, model = desk.slack, desk.model
    model.call("slack_reply", {"text": "Starting the rollout."})
    model.call("ticket_create", {"title": "Rollout follow-up"})
    model.answer(
        "Rolled out, and opened a follow-up ticket.\n" + "\n".join(f"- host {n}: done" for n in range(30))
    )
    # chat.postMessage: the status message gets a 500, the action's reply a 429; the outcome (the
    # model's answer, long enough to be streamed) starts with a 429.
    slack.fail("chat.postMessage", status=500)
    slack.fail("chat.postMessage", status=429, after=1, retry_after=0)
    slack.fail("chat.startStream", status=429, retry_after=0)
    # chat.update: the first status edit is rate-limited, the next one fails.
    slack.fail("chat.update", status=429, retry_after=0)
    slack.fail("chat.update", status=500)
    mention = ev.app_mention("<@UBOT> roll out and open a follow-up ticket")
    ts = mention["event"]["ts"]
    await desk.send.event(mention)

    run = await desk.only_run(timeout=20)
    await desk.settled(timeout=15)
    assert run.status == RunStatus.succeeded, run.error
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [500, 200, 429, 200]
    assert [c.status for c in slack.calls_to("chat.startStream")] == [429, 200]
    assert [c.status for c in slack.calls_to("chat.update")][:2] == [429, 500]
    status, reply, outcome = slack.thread("C1", ts)  # nothing posted twice
    assert (status.ts, outcome.ts) == (run.status_ts, run.outcome_ts)
    assert reply.text.startswith("Starting the rollout.")
    assert "Rolled out" in outcome.text
    # The edits that failed are made good by later ones, or (a quick run is edited little: its
    # final edit may be the one refused) by the housekeeping sweep's redeliver().
    await desk.services.presenter.redeliver()
    assert "finished" in status.text
    [ticket] = await desk.tickets()
    assert ticket.title == "Rollout follow-up"
    actions = [s for s in await desk.steps(run.id) if s.kind == StepKind.action]
    assert [(s.name, s.status) for s in actions] == [
        ("slack_reply", StepStatus.succeeded),
        ("ticket_create", StepStatus.succeeded),
    ]
    assert "white_check_mark" in slack.reactions_on("C1", ts)


async def test_an_outcome_rate_limited_beyond_the_retries_is_kept_and_delivered_after_a_restart(start_desk):
    desk = await start_desk()
    slack = desk.slack
    # The status message goes; the outcome is refused with 429 on the call and its three retries.
    slack.fail("chat.postMessage", status=429, times=4, after=1, retry_after=0)
    mention = ev.app_mention("<@UBOT> create a ticket for the rate-limited outcome")
    ts = mention["event"]["ts"]
    await desk.send.event(mention)

    async def given_up():
        runs = await desk.runs()
        if len(runs) != 1 or len(slack.calls_to("chat.postMessage")) < 5:
            return None
        run = runs[0]
        return run if run.status in FINAL_STATUSES and run.outcome_ts is None else None

    run = await wait_until(given_up, 15, message="the outcome post to be given up, and its claim given back")
    assert run.status == RunStatus.succeeded
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [200, 429, 429, 429, 429]
    assert len(slack.thread("C1", ts)) == 1  # the status message only: the outcome is owed
    await desk.stop()

    second = await start_desk()  # a new process on the same database; no scheduler
    assert await second.services.presenter.redeliver() == 1
    run = await second.run(run.id)
    status, outcome = slack.thread("C1", ts)
    assert (status.ts, outcome.ts) == (run.status_ts, run.outcome_ts)
    assert "created ticket #1" in outcome.text and "chatops_undo" in outcome.action_ids()
    assert "white_check_mark" in slack.reactions_on("C1", ts)

    posts = len(slack.calls_to("chat.postMessage"))
    assert await second.services.presenter.redeliver() == 0  # delivered once: nothing is owed now
    assert len(slack.calls_to("chat.postMessage")) == posts
    assert len(slack.thread("C1", ts)) == 2
