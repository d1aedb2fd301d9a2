"""Secrets never reach an action, the model or Slack: a value the configuration reads from the
environment, and the bot's own credentials, are cleaned from tool output before the journal
and the model see it, from the system prompt, and from everything sent to Slack (a Slack
action's post included); a command runs without the bot's credentials in its environment.
"""

from __future__ import annotations

import json

import pytest
from fakes import slack_events as ev

from scenarios.control_support import ask
from storage.models import StepKind

SHOP_TOKEN = "shop-secret-7f3a9c1e"
CONFIG = """
[[agents]]
name = "ops"
default = true
instructions = "You run the shop. Its API answers at https://shop.example/api?key={{ env.SHOP_TOKEN }}."
actions = ["show_token", "env_dump", "slack_reply"]

[[actions]]
name = "show_token"
description = "Print the shop's token (a careless runbook)"
kind = "command"
env = ["SHOP_TOKEN"]
run = 'echo "the token is $SHOP_TOKEN"'
read_only = true

[[actions]]
name = "env_dump"
description = "Print the command's environment"
kind = "command"
run = "env"
read_only = true
"""


@pytest.fixture
def shop_token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SHOP_TOKEN", SHOP_TOKEN)
    return SHOP_TOKEN


async def test_a_secret_never_reaches_the_journal_the_model_or_slack(start_desk, shop_token):
    desk = await start_desk(CONFIG, model=True)
    model = desk.model
    model.call("show_token")
    model.call("env_dump")
    model.call("slack_reply", {"text": f"The token is {SHOP_TOKEN}, and mine is xoxb-test"})
    model.answer(f"Done: {SHOP_TOKEN}")
    ts = await ask(desk, "show me the token")
    run = await desk.only_run()

    # The model: not in the system prompt, not in any tool result (its own words, scripted with
    # the secret here, are echoed back as they were).
    told = json.dumps([m for r in model.requests for m in r["messages"] if m["role"] != "assistant"])
    assert SHOP_TOKEN not in told and "xoxb-test" not in told
    assert "key=[redacted]" in model.messages(0)[0]["content"]
    show, dump = model.tool_results(3)[:2]
    assert show.strip().endswith("the token is [redacted]")
    # The command's environment is minimal: no bot credentials, no database, no config path.
    names = {line.split("=", 1)[0] for line in dump.splitlines()[1:] if "=" in line}
    assert not names & {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "OPENAI_API_KEY", "DATABASE_URL"}
    # The journal.
    for step in await desk.steps(run.id):
        stored = json.dumps([step.output, step.data, step.error, step.arguments])
        if step.kind == StepKind.model or step.name == "slack_reply":
            continue  # the model's own words, scripted with the secret here, kept as they were
        assert SHOP_TOKEN not in stored, step
    # Slack: the Slack action's own post, the status message, the outcome.
    for call in desk.slack.calls:
        assert SHOP_TOKEN not in json.dumps(call.params) and "xoxb-test" not in json.dumps(call.params)
    [reply] = [m for m in desk.slack.thread("C1", ts) if m.text.startswith("The token is")]
    assert reply.text.startswith("The token is [redacted], and mine is [redacted]")
    assert "[redacted]" in desk.slack.messages[run.outcome_ts].text


async def test_an_answer_to_slack_is_cleaned_too(start_desk, shop_token):
    """A slash command's ack goes back in the HTTP response, not through the Web API."""
    desk = await start_desk(CONFIG, model=True)
    delivery = await desk.send.command(ev.slash_command(f"pause {SHOP_TOKEN}"))  # "no agent named ..."
    assert delivery.status == 200
    assert "There is no agent named" in delivery.text
    assert SHOP_TOKEN not in delivery.text and "[redacted]" in delivery.text
