from __future__ import annotations

import shlex

import pytest

from agents.errors import ActionError
from agents.templating import (
    Target,
    TemplateProblem,
    inspect,
    render_data,
    render_shell,
    render_text,
    render_url,
    url_departure,
    url_problem,
)

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


def test_inspect_reads_variables_env_names_and_attributes_from_the_syntax_tree() -> None:
    uses = inspect(
        "{{ agent.name }} {{ env.TOKEN }} {{ env['OTHER'] }} {% for x in items %}{{ x }}{% endfor %}"
        " {{ '{{ env.NOT_READ }}' }}",
        "text",
    )
    assert uses.variables == {"agent", "env", "items"}  # the loop's `x` is its own
    assert uses.env == {"TOKEN", "OTHER"}  # a string that looks like a template is not read
    assert uses.attributes["agent"] == {"name"}


def test_inspect_reads_a_command_as_it_will_be_rendered() -> None:
    uses = inspect('grep -e "{{ word }}" -- {{ file }} {{ env.DIR }}', "shell")
    assert uses.variables == {"word", "file", "env"} and uses.env == {"DIR"}


@pytest.mark.parametrize(
    ("template", "target", "message"),
    [
        ("{{ a }", "text", "template syntax error on line 1: unexpected '}'"),
        ("ok\n{{ a + }}", "text", "template syntax error on line 2: unexpected 'end of print statement'"),
        ("{{ a | shout }}", "url", "template error on line 1: No filter named 'shout'."),
        ('echo "{{ a }}', "shell", "not a usable command template: its quotes are not balanced"),
        ("{{ env[name] }}", "text", "env can only be read with a fixed name, as env.NAME"),
        ("{{ env }}", "shell", "env can only be read with a fixed name, as env.NAME"),
        ("{{ env.A }}{{ env | length }}", "text", "env can only be read with a fixed name, as env.NAME"),
    ],
)
def test_inspect_refuses_what_cannot_render(template: str, target: Target, message: str) -> None:
    with pytest.raises(TemplateProblem) as info:
        inspect(template, target)
    assert str(info.value) == message


HOST_RULE = (
    "a parameter cannot stand in the URL's host or port; "
    "name the host before the first parameter, e.g. https://host/items/{{ id }}"
)
SCHEME_RULE = "a parameter cannot stand in the URL's scheme or host; start the URL with https://host/"
ABSOLUTE = "must be an absolute URL starting with http:// or https://"


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("https://api.example/orders/{{ id }}", None),
        ("https://api.example?id={{ id }}", None),
        ("https://api.example#{{ id }}", None),
        ("{{ env.API }}/orders/{{ id }}", None),
        ("{{ env.API }}{{ id }}", None),  # the env value ends in a path: the host is complete
        ("https://{{ env.HOST }}/orders/{{ id }}", None),
        ("https://api.example/static", None),
        ("https://{{ id }}.example/orders", HOST_RULE),
        ("https://api.{{ id }}/orders", HOST_RULE),
        ("https://api.example:{{ port }}/orders", HOST_RULE),
        ("https://{{ user }}@api.example/orders", HOST_RULE),
        ("https://{{ env.HOST }}{{ id }}", HOST_RULE),
        ("{{ scheme }}://api.example/orders", SCHEME_RULE),
        ("{{ url }}", SCHEME_RULE),
        ("/orders/{{ id }}", SCHEME_RULE),
        ("/orders", ABSOLUTE),
        ("file:///etc/passwd", ABSOLUTE),
        ("ftp://api.example/{{ id }}", ABSOLUTE),
    ],
)
def test_a_parameter_may_not_stand_in_the_scheme_or_host(template: str, problem: str | None) -> None:
    environ = {"API": "https://api.example/v1", "HOST": "api.example"}
    assert url_problem(template, environ) == problem


DOTS = "a '.' or '..' segment in the URL path would change the path"


@pytest.mark.parametrize(
    ("template", "url", "problem"),
    [
        ("https://h/orders/{{ id }}/refund", "https://h/orders/7/refund", None),
        ("https://h/orders/{{ id }}/refund", "https://h/orders/../refund", DOTS),
        ("https://h/orders/{{ id }}/refund", "https://h/orders/./refund", DOTS),
        ("https://h/orders/{{ id }}", "https://h/orders/%2e%2E", DOTS),
        ("https://h/orders/{{ id }}", "https://h/orders/..%2Fadmin", None),  # one segment, encoded
        ("https://h/orders?id={{ id }}", "https://h/orders?id=..", None),  # the query is no path
        (
            "https://h/orders/{{ id }}",
            "https://h/admin",
            "the URL does not keep the scheme, host and path its template starts with",
        ),
        (
            "https://h/orders?id={{ id }}",
            "https://h/orders/x?id=1",
            "the URL does not keep the scheme, host and path its template starts with",
        ),
        (
            "https://h/orders/{{ id }}",
            "https://evil/orders/1",
            "the URL does not keep the scheme, host and path its template starts with",
        ),
    ],
)
def test_a_rendered_url_keeps_its_templates_prefix(template: str, url: str, problem: str | None) -> None:
    assert url_departure(template, url) == problem
