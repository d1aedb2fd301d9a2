"""A run costs few Slack Web API calls: at most its steps + 4, the loading status included
(issue 18's target), with the default settings (loading status on, streamed answers) and the
tests' short edit interval. auth.test (per process) and users.info (per user, cached) are not
a run's calls."""

from __future__ import annotations

from collections import Counter

from fakes import slack_events as ev

from storage.models import RunStatus

NOT_PER_RUN = {"auth.test", "users.info"}


async def _calls_of_one_run(desk, tickets: int) -> tuple[int, Counter[str]]:
    for n in range(tickets):
        desk.model.call("ticket_create", {"title": f"Ticket {n}"})
    desk.model.answer("Done: the tickets are created.")
    await desk.send.event(ev.app_mention(f"<@UBOT> create {tickets} tickets"))
    run = await desk.only_run()
    assert run.status == RunStatus.succeeded
    await desk.settled()
    steps = len(await desk.steps(run.id))
    with desk.slack.lock:
        calls = Counter(c.method for c in desk.slack.calls if c.method not in NOT_PER_RUN)
    return steps, calls


async def test_a_three_step_run_makes_at_most_its_steps_plus_four_calls(start_desk):
    desk = await start_desk(model=True)
    steps, calls = await _calls_of_one_run(desk, 1)
    assert steps == 3
    assert sum(calls.values()) <= steps + 4, sorted(calls.items())


async def test_an_eleven_step_run_makes_at_most_its_steps_plus_four_calls(start_desk):
    desk = await start_desk(model=True)
    steps, calls = await _calls_of_one_run(desk, 5)
    assert steps == 11
    assert sum(calls.values()) <= steps + 4, sorted(calls.items())
