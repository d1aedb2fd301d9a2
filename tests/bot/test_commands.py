"""What words mean: exact control commands, and the near-misses that get a "did you mean".

A near-miss is a short message close to a control phrase (a typo, a polite word around it,
a synonym of the emergency stop); anything longer or about something else is a request.
"""

from __future__ import annotations

import pytest

from bot.commands import Command, near_miss, parse

AGENTS = ["ops", "support"]

NEAR_MISSES = [
    ("pasue all agents", Command("pause", "all")),
    ("pause all agent", Command("pause", "all")),
    ("Pause all agnets!", Command("pause", "all")),
    ("please pause all agents", Command("pause", "all")),
    ("pause all agents please", Command("pause", "all")),
    ("can you pause all agents?", Command("pause", "all")),
    ("<@UBOT> please pause all agents", Command("pause", "all")),
    ("stop", Command("pause", "all")),
    ("STOP!", Command("pause", "all")),
    ("stop all agents", Command("pause", "all")),
    ("stop everything", Command("pause", "all")),
    ("halt", Command("pause", "all")),
    ("please halt all agents", Command("pause", "all")),
    ("emergency stop", Command("pause", "all")),
    ("pasue", Command("pause")),
    ("pause ops", Command("pause", "ops")),
    ("pause agnet ops", Command("pause", "ops")),
    ("resume all agent", Command("resume", "all")),
    ("resmue all", Command("resume", "all")),
    ("please resume", Command("resume")),
    ("resume support", Command("resume", "support")),
    ("stauts", Command("status")),
    ("status?", Command("status")),
    ("undoo", Command("undo")),
    ("please undo", Command("undo")),
    ("undo please", Command("undo")),
]

NOT_NEAR_MISSES = [
    # Real requests that share a word with a control.
    "stop the api service on staging",
    "stop api",
    "halt the deploy of web",
    "pause the nightly backup job for service api",
    "pause api",
    "resume api",
    "please pause the billing cron",
    "undo the last migration on db-1",
    "status of ticket 42",
    "what is the status of the deploy?",
    "restart api on staging",
    "create a ticket for the login bug",
    "stopwatch",
    "statistics for last week",
    # Exact commands are commands, not near-misses.
    "pause all agents",
    "pause all",
    "undo",
    "undo 42",
    "status",
    "resume agent ops",
    # Empty, or nothing like a control.
    "",
    "hello",
    "thanks!",
]


@pytest.mark.parametrize(("text", "meant"), NEAR_MISSES)
def test_a_near_miss_is_read_as_the_command_it_is_close_to(text: str, meant: Command) -> None:
    assert parse(text) is None
    assert near_miss(text, agents=AGENTS) == meant


@pytest.mark.parametrize("text", NOT_NEAR_MISSES)
def test_requests_and_exact_commands_are_not_near_misses(text: str) -> None:
    assert near_miss(text, agents=AGENTS) is None


def test_an_agent_name_counts_only_when_there_is_such_an_agent() -> None:
    assert near_miss("pause ops", agents=AGENTS) == Command("pause", "ops")
    assert near_miss("pause ops", agents=["deployer"]) is None


def test_a_command_phrase_reads_back_as_the_same_command() -> None:
    """A near-miss's button carries the command as words; they parse to the same command."""
    for _, meant in NEAR_MISSES:
        assert parse(meant.words(), slash=True) == meant
