"""Deciding and acting: configuration, actions, the model, the agent loop, workers.

`agents` imports `storage` but never Slack: progress leaves through `agents.ports`.
"""
