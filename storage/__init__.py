"""Durable state: requests, runs, the step journal, tickets, controls.

`storage` imports neither `agents` nor `bot`; it never raises Slack or HTTP errors.
"""
