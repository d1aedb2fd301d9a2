"""Loopback fakes of what sits across the network (Slack, the model server), and the helpers
that drive them. Nothing in chatops is faked: the code under test talks real HTTP to these.
"""

from fakes.model import FakeModel
from fakes.ports import free_port
from fakes.slack_api import FakeSlack
from fakes.slack_events import SlackSender
from fakes.waiting import wait_until

__all__ = ["FakeModel", "FakeSlack", "SlackSender", "free_port", "wait_until"]
