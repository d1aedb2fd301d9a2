from __future__ import annotations

import shlex

import pytest

from agents.errors import ActionError
from agents.templating import render_data, render_shell, render_text, render_url

HOSTILE = [
    "; touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "it's",
    '"; touch pwned; "',
    "a\ntouch pwned",
    "x && touch pwned || true",
    "$HOME *",
    "-rf",
    "",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_render_shell_quotes_every_parameter(value: str) -> None:
    command = render_shell("deploy {{ service }} --note {{ note }}", {"service": value, "note": "two words"})
    assert shlex.split(command) == ["deploy", value, "--note", "two words"]


def test_render_shell_quotes_filtered_values_and_non_strings() -> None:
    command = render_shell(
        "x {{ a | upper }} {{ a | safe }} {{ n }} {{ flag }} {{ missing_ok }}",
        {"a": "$(id)", "n": 42, "flag": True, "missing_ok": None},
    )
    assert shlex.split(command) == ["x", "$(ID)", "$(id)", "42", "true", ""]


def test_render_shell_quotes_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATOPS_TEST_VALUE", "a b; touch pwned")
    command = render_shell("echo {{ env.CHATOPS_TEST_VALUE }}", {})
    assert shlex.split(command) == ["echo", "a b; touch pwned"]


def test_render_url_percent_encodes_parameters() -> None:
    url = render_url("https://api.example/svc/{{ name }}?q={{ q }}", {"name": "a/../b", "q": "x&y=z #1"})
    assert url == "https://api.example/svc/a%2F..%2Fb?q=x%26y%3Dz%20%231"


def test_render_url_passes_environment_values_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATOPS_TEST_BASE", "https://api.example/v1")
    assert render_url("{{ env.CHATOPS_TEST_BASE }}/items/{{ id }}", {"id": "7 8"}) == (
        "https://api.example/v1/items/7%208"
    )
    # A filter makes a plain string again, which is quoted as usual.
    assert render_url("{{ env.CHATOPS_TEST_BASE | lower }}", {}) == "https%3A%2F%2Fapi.example%2Fv1"


def test_render_text_inserts_values_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATOPS_TEST_TOKEN", "s3cr3t")
    assert render_text("Bearer {{ env.CHATOPS_TEST_TOKEN }} for {{ who }}", {"who": "a b"}) == (
        "Bearer s3cr3t for a b"
    )


def test_render_data_keeps_parameter_types_and_structure() -> None:
    body = {"count": "{{ count }}", "flag": "{{flag}}", "label": "n={{ count }}", "tags": ["{{ name }}", 3]}
    rendered = render_data(body, {"count": 3, "flag": False, "name": "web"})
    assert rendered == {"count": 3, "flag": False, "label": "n=3", "tags": ["web", 3]}


def test_template_errors_are_action_errors() -> None:
    with pytest.raises(ActionError, match="template error"):
        render_shell("echo {{ undefined_param }}", {})
    with pytest.raises(ActionError, match="template error"):
        render_text("{{ ''.__class__.__mro__ }}", {})  # the sandbox refuses
