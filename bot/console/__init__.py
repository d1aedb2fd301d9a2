"""The local console workspace: try everything in a terminal, no Slack needed.

Messages typed here become Slack-shaped deliveries dispatched through the same bolt
app, intake, runtime and presenter as real Slack; the console only plays the Slack
workspace (channels, threads, people, message numbers) and shows it:
`workspace` (what exists), `view` (how a message reads), `surface` (the Web API the
desk calls), `payloads` (what Slack would deliver), `terminal` (prompt and screen),
`repl` (the console).
"""

from __future__ import annotations

from bot.console.repl import Console
from bot.console.surface import ConsoleSurface

__all__ = ["Console", "ConsoleSurface"]
