"""Evaluations (`chatops eval`): cases run in a dry run by the real loop and planner on a
throwaway database, scored by the calls they made. The shipped set for the built-in actions
passes with the offline planner; a case that calls what it must not, or misses what it
should, fails and says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.config import default_config
from agents.dryrun import NOT_RUN, DryDesk, without_budgets
from agents.errors import ConfigError
from agents.evals import evaluate, load_suite
from agents.offline import OfflinePlanner
from agents.redaction import Redactor

BUILTIN = Path(__file__).parents[2] / "evals" / "builtin.toml"


async def _run(path: Path):
    config = without_budgets(default_config())
    planner = OfflinePlanner()
    async with DryDesk.open(config, lambda agent: planner, Redactor()) as desk:
        return await evaluate(load_suite(path, config), desk)


async def test_the_shipped_cases_pass_with_the_offline_planner() -> None:
    scored = await _run(BUILTIN)
    assert len(scored) >= 10
    failed = [
        (s.case.name, s.made, s.avoided, s.outcome.calls, s.outcome.error) for s in scored if not s.passed
    ]
    assert failed == []
    # Every call was answered by the dry run: not run, or the case's given result.
    results = {c.action: c.note for s in scored for c in s.outcome.calls}
    assert results["ticket_create"] == NOT_RUN and results["ticket_find"] == "given"
    found = next(s for s in scored if s.case.name == "look tickets up without changing any")
    assert found.outcome.answer.endswith("#3 (open) login fails on Safari")


async def test_a_case_fails_on_a_forbidden_call_or_a_missing_one(tmp_path: Path) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(
        """
[[cases]]
name = "closing is forbidden here"
request = "close ticket 3"
forbid = [{ action = "ticket_close", args = { ticket_id = "3" } }]

[[cases]]
name = "expects a comment"
request = "create a ticket for x"
expect = ["ticket_comment", { action = "ticket_create", args = { title = "x" } }]
""",
        encoding="utf-8",
    )
    forbidden, missing = await _run(cases)
    assert not forbidden.passed and forbidden.avoided == [False] and forbidden.checks == (0, 1)
    assert not missing.passed and missing.made == [False, True] and missing.checks == (1, 2)


def test_a_bad_case_file_is_reported_like_the_configuration(tmp_path: Path) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(
        '[[cases]]\nname = "x"\nrequest = "y"\nexpekt = ["a"]\nagent = "nobody"\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError) as info:
        load_suite(cases, default_config())
    assert "expekt" in str(info.value) and str(cases) in str(info.value)
    cases.write_text('[[cases]]\nname = "x"\nrequest = "y"\nagent = "nobody"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cases\[0\] \(x\): agent: no agent named 'nobody'"):
        load_suite(cases, default_config())


def _chatops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_", "CHATOPS_"))}
    env.pop("DATABASE_URL", None)
    script = Path(sys.executable).with_name("chatops")
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_chatops_eval_prints_a_score_table_and_writes_no_database(tmp_path: Path) -> None:
    result = _chatops("eval", str(BUILTIN), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "with the offline planner (no OPENAI_API_KEY)" in out
    assert "| case " in out and "| file a ticket " in out
    cases = sum(1 for line in out.splitlines() if line.startswith("| ") and "| pass " in line)
    assert f"score: {cases}/{cases} cases passed" in out
    assert list(tmp_path.iterdir()) == []  # no chatops.db: the real database is not even opened

    failing = tmp_path / "failing.toml"
    failing.write_text('[[cases]]\nname = "wrong"\nrequest = "hello"\nexpect = ["ticket_create"]\n')
    result = _chatops("eval", str(failing), cwd=tmp_path)
    assert result.returncode == 1
    assert (
        "FAIL wrong: expected ticket_create()" in result.stdout and "score: 0/1 cases passed" in result.stdout
    )
