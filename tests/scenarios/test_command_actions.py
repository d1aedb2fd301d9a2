"""Runbook commands from the config file run for real, with every parameter shell-quoted."""

from __future__ import annotations

import shlex
from pathlib import Path

from fakes import slack_events as ev

from storage.models import RunStatus


def _config(notes: Path, *, allow_leading_dash: bool = False) -> str:
    target = shlex.quote(str(notes))
    dash = str(allow_leading_dash).lower()
    return f"""
[[agents]]
name = "ops"
default = true
actions = ["append_line"]

[[actions]]
name = "append_line"
description = "Append one line to the team's notes file"
kind = "command"
params = {{ line = {{ type = "string", allow_leading_dash = {dash} }} }}
run = '''printf '%s %s\\n' "$CHATOPS_RUN_ID" {{{{ line }}}} >> {target}'''
undo = '''printf 'undo %s\\n' {{{{ line }}}} >> {target}'''
timeout = 10
"""


async def test_a_command_action_runs_for_real(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(_config(notes))
    await desk.send.event(ev.app_mention('<@UBOT> append_line line="deploy finished"'))

    run = await desk.only_run()
    assert run.status == RunStatus.succeeded
    assert notes.read_text() == f"{run.id} deploy finished\n"
    [step] = [s for s in await desk.steps(run.id) if s.kind == "action"]
    assert step.name == "append_line" and step.status == "succeeded"
    assert step.arguments == {"line": "deploy finished"}
    outcome = desk.slack.posts()[-1]
    assert outcome.ts == run.outcome_ts
    assert "offline planner" in outcome.text and "exit status 0" in outcome.text


async def test_shell_injection_in_a_parameter_is_written_literally(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    # The value follows printf's format, so a leading "-" is harmless here: the operator allows it.
    desk = await start_desk(_config(notes, allow_leading_dash=True), model=True)
    attempts = [
        "x; touch pwned1",
        "$(touch pwned2)",
        "`touch pwned3` && touch pwned4",
        'it\'s | tee pwned5 "quoted" \\ done',
        "--help\ntouch pwned6",
    ]
    for line in attempts:
        desk.model.call("append_line", {"line": line})
    desk.model.answer("Appended every line.")
    await desk.send.event(ev.app_mention("<@UBOT> note these lines"))

    run = await desk.only_run()
    assert run.status == RunStatus.succeeded
    expected = "".join(f"{run.id} {line}\n" for line in attempts)
    assert notes.read_text() == expected
    created = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pwned"))
    assert created == [], f"the shell ran injected commands: {created}"
    assert not list(Path.cwd().glob("pwned*"))
    # Each call's result went back to the model.
    results = desk.model.tool_results(len(attempts))
    assert len(results) == len(attempts)
    assert all(r.startswith("exit status 0") for r in results), results


async def test_a_value_that_would_be_an_option_goes_back_to_the_model_and_nothing_runs(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    show_lines = f"""
[[actions]]
name = "show_lines"
description = "Show the last lines of the notes"
kind = "command"
params = {{ count = "integer" }}
run = "tail -n {{{{ count }}}} {shlex.quote(str(notes))}"
read_only = true
"""
    config = _config(notes).replace('actions = ["append_line"]', 'actions = ["append_line", "show_lines"]')
    desk = await start_desk(config + show_lines, model=True)
    desk.model.call("append_line", {"line": "--version"})
    desk.model.call("show_lines", {"count": -5})
    desk.model.call("append_line", {"line": "a line -- with dashes"})
    desk.model.answer("Done.")
    await desk.send.event(ev.app_mention("<@UBOT> note the version"))

    run = await desk.only_run()
    assert run.status == RunStatus.succeeded, run.error
    first, second, third = (desk.model.tool_results(i)[-1] for i in (1, 2, 3))
    assert first == (
        "error: invalid arguments for append_line: "
        "line: must not start with '-': the command would read it as an option"
    )
    assert second == (
        "error: invalid arguments for show_lines: "
        "count: must not start with '-': the command would read it as an option"
    )
    assert third.startswith("exit status 0")
    assert notes.read_text() == f"{run.id} a line -- with dashes\n"  # only the third call ran
    steps = [s for s in await desk.steps(run.id) if s.kind == "action"]
    assert [(s.name, s.status) for s in steps] == [
        ("append_line", "rejected"),
        ("show_lines", "rejected"),
        ("append_line", "succeeded"),
    ]


async def test_a_failing_command_is_reported_to_the_model_and_in_the_thread(start_desk, tmp_path):
    config = """
[[agents]]
name = "ops"
default = true
actions = ["check_disk"]

[[actions]]
name = "check_disk"
description = "Check a disk"
kind = "command"
params = { disk = "string" }
run = "echo checking {{ disk }}; echo 'disk is on fire' >&2; exit 3"
read_only = true
"""
    desk = await start_desk(config, model=True)
    desk.model.call("check_disk", {"disk": "sda"})
    desk.model.answer("The disk check failed.")
    await desk.send.event(ev.app_mention("<@UBOT> check disk sda"))

    run = await desk.only_run()
    [result] = desk.model.tool_results(1)
    assert result.startswith("error:")
    assert "status 3" in result and "disk is on fire" in result and "checking sda" in result
    assert run.status in (RunStatus.failed, RunStatus.rolled_back)
    assert "check_disk" in (run.error or "")
    outcome = desk.slack.posts()[-1]
    assert outcome.ts == run.outcome_ts and "check_disk" in outcome.shown()
    assert "chatops_undo" not in outcome.action_ids()


async def test_parameters_stay_literal_inside_double_and_single_quotes_too(start_desk, tmp_path):
    notes = shlex.quote(str(tmp_path / "notes.txt"))
    config = f"""
[[agents]]
name = "ops"
default = true
actions = ["note_bare", "note_double", "note_single"]
max_steps = 50

[[actions]]
name = "note_bare"
description = "Note, parameter unquoted in the template"
kind = "command"
params = {{ line = "string" }}
run = '''printf '%s\\n' bare:{{{{ line }}}} >> {notes}'''
read_only = true

[[actions]]
name = "note_double"
description = "Note, parameter inside double quotes"
kind = "command"
params = {{ line = "string" }}
run = '''printf '%s\\n' "double: {{{{ line }}}} (run $CHATOPS_RUN_ID)" >> {notes}'''
read_only = true

[[actions]]
name = "note_single"
description = "Note, parameter inside single quotes"
kind = "command"
params = {{ line = "string" }}
run = '''printf '%s\\n' 'single: {{{{ line }}}}' >> {notes}'''
read_only = true
"""
    desk = await start_desk(config, model=True)
    payloads = [
        "$(touch pwned1)",
        "`touch pwned2`",
        'x"; touch pwned3; echo "',
        "x'; touch pwned4; echo '",
        "${HOME} $CHATOPS_AGENT \\$x",
    ]
    for action in ("note_bare", "note_double", "note_single"):
        desk.model.calls([(action, {"line": line}) for line in payloads])  # parallel tool calls
    desk.model.answer("Noted.")
    await desk.send.event(ev.app_mention("<@UBOT> take notes"))

    run = await desk.only_run(timeout=20)
    assert run.status == RunStatus.succeeded, run.error
    expected = [f"bare:{p}" for p in payloads]
    expected += [f"double: {p} (run {run.id})" for p in payloads]
    expected += [f"single: {p}" for p in payloads]
    assert (tmp_path / "notes.txt").read_text().splitlines() == expected
    assert sorted(p.name for p in tmp_path.glob("pwned*")) == []
