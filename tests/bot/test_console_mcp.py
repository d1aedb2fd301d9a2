"""The README's MCP example, played as it says: its chatops.toml, the example server it ships
(examples/mcp/widgets.py, started by chatops over stdio with `python` from its own PATH), the
offline planner, the local console. Nothing here needs a network or a credential."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from bot.console import Console
from bot.console.terminal import PipedLines
from bot.settings import Settings

ROOT = Path(__file__).parents[2]


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### MCP servers") :]
    example = section[section.index("```toml\n") + len("```toml\n") :]
    return example[: example.index("```")]


async def test_the_readme_mcp_example_creates_undoes_and_asks_before_a_destructive_tool(
    tmp_path: Path,
) -> None:
    config = readme_example()
    assert 'command = ["python", "examples/mcp/widgets.py"]' in config
    (tmp_path / "chatops.toml").write_text(
        config.replace("examples/mcp/widgets.py", str(ROOT / "examples/mcp/widgets.py"))
    )
    settings = Settings(
        chatops_config=str(tmp_path / "chatops.toml"), chatops_edit_interval=0.0, chatops_poll_seconds=0.05
    )
    script = "\n".join(
        [
            "widgets__create_widget name=gear size=3",
            "/click 3 undo",  # the Undo button of the outcome, message (3)
            "widgets__create_widget name=cog",
            "widgets__delete_widget name=cog",
        ]
    )
    out = io.StringIO()

    await Console(settings, out=out).run(lines=PipedLines(io.StringIO(script)))

    output = out.getvalue()
    assert "✅ called widgets__create_widget(name='gear', size=3)" in output
    assert "Reversed: called delete_widget on widgets." in output
    assert re.search(
        r"wants to run \*widgets__delete_widget\* and waits for a human, because its risk is high", output
    )
    assert json.loads((tmp_path / "widgets.json").read_text()) == {
        "cog": {"size": 1}
    }  # gear undone, cog kept
