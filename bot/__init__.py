"""Speaking Slack (and the local console): intake, chat commands, presenting runs."""
