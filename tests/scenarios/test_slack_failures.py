"""Slack's Web API rate-limits or fails now and then; the outcome still reaches the thread, once."""

from __future__ import annotations

from fakes import slack_events as ev
from fakes import wait_until

from storage.models import RunStatus


async def test_a_rate_limited_outcome_post_is_retried_after_retry_after(start_desk):
    desk = await start_desk()
    slack = desk.slack
    # The status message goes through; the outcome reply is rate-limited once.
    slack.fail("chat.postMessage", status=429, after=1, retry_after=1)
    mention = ev.app_mention("<@UBOT> create a ticket for the rate limit")
    await desk.send.event(mention)

    run = await desk.only_run(timeout=15)
    assert run.status == RunStatus.succeeded
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [200, 429, 200]
    status, outcome = slack.thread("C1", mention["event"]["ts"])  # delivered once, not twice
    assert (status.ts, outcome.ts) == (run.status_ts, run.outcome_ts)
    assert "created ticket #1" in outcome.text and "chatops_undo" in outcome.action_ids()


async def test_a_server_error_on_the_first_post_does_not_duplicate_the_status_message(start_desk):
    desk = await start_desk()
    slack = desk.slack
    slack.fail("chat.postMessage", status=500)
    mention = ev.app_mention("<@UBOT> create a ticket for the flaky API")
    await desk.send.event(mention)

    run = await desk.only_run(timeout=15)
    await desk.settled()
    assert run.status == RunStatus.succeeded
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [500, 200, 200]
    status, outcome = slack.thread("C1", mention["event"]["ts"])
    assert (status.ts, outcome.ts) == (run.status_ts, run.outcome_ts)
    assert "finished" in status.text


async def test_a_rate_limited_status_edit_still_ends_showing_the_final_state(start_desk):
    desk = await start_desk()
    slack = desk.slack
    slack.fail("chat.update", status=429, retry_after=1)
    mention = ev.app_mention("<@UBOT> create a ticket for the slow edits")
    await desk.send.event(mention)

    run = await desk.only_run(timeout=15)
    await desk.settled(timeout=15)
    status = slack.thread("C1", mention["event"]["ts"])[0]
    assert 429 in [c.status for c in slack.calls_to("chat.update")]
    assert "finished" in status.text and "created ticket #1" in status.text
    assert run.status == RunStatus.succeeded


async def test_a_status_message_deleted_by_a_person_does_not_stop_the_outcome(start_desk):
    desk = await start_desk(model=True)
    slack, model = desk.slack, desk.model
    model.call("ticket_create", {"title": "Orphan"}, held=True)
    model.answer("Done anyway.")
    mention = ev.app_mention("<@UBOT> create a ticket even if the status goes away")
    ts = mention["event"]["ts"]
    await desk.send.event(mention)
    status = (await wait_until(lambda: slack.thread("C1", ts)))[0]
    await wait_until(lambda: len(model.requests) == 1)
    slack.delete_by_hand(status.ts)

    model.release()
    run = await desk.only_run()
    assert run.status == RunStatus.succeeded
    assert "message_not_found" in {c.error for c in slack.calls_to("chat.update")}
    outcome = slack.thread("C1", ts)[-1]
    assert outcome.ts == run.outcome_ts and "Done anyway." in outcome.text


async def test_a_final_status_edit_refused_beyond_the_retries_is_made_later(start_desk):
    desk = await start_desk()
    slack = desk.slack
    mention = ev.app_mention("<@UBOT> create a ticket for the stale status")
    slack.fail("chat.update", status=500, times=100)  # every edit fails, retries included
    await desk.send.event(mention)
    run = await desk.only_run(timeout=15)
    await desk.settled(timeout=15)
    status = slack.thread("C1", mention["event"]["ts"])[0]
    assert "finished" not in status.text  # the edits never landed

    slack.recover("chat.update")
    await desk.services.presenter.redeliver()
    status = slack.thread("C1", mention["event"]["ts"])[0]
    assert "finished" in status.text and "created ticket #1" in status.text
    assert run.status == RunStatus.succeeded
