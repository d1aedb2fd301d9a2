"""Which actions exist, and which an agent may call."""

from __future__ import annotations

from agents.actions import configured
from agents.actions.base import Action
from agents.actions.chat import CHAT_ACTIONS
from agents.actions.handoff import PREFIX, Handoff, handoffs_of
from agents.actions.tickets import TICKET_ACTIONS
from agents.config import AgentConfig, Config


class Registry:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._actions: dict[str, Action] = {}
        for cls in [*TICKET_ACTIONS, *CHAT_ACTIONS]:
            action = cls()
            self._actions[action.name] = action
        for cfg in config.actions:
            self._actions[cfg.name] = configured.build(cfg)

    def get(self, name: str) -> Action | None:
        action = self._actions.get(name)
        if action is None and name.startswith(PREFIX) and (target := self.config.agent(name[len(PREFIX) :])):
            return Handoff(target, self.config)
        return action

    def for_agent(self, agent: AgentConfig, *, customer: bool = False) -> dict[str, Action]:
        """The agent's actions (and its handoffs); for a customer's request, only those customers
        may reach."""
        actions = {n: self._actions[n] for n in agent.actions if n in self._actions}
        actions.update((h.name, h) for h in handoffs_of(agent, self.config))
        if not customer:
            return actions
        if agent.customer_actions is not None:
            return {n: a for n, a in actions.items() if n in agent.customer_actions or isinstance(a, Handoff)}
        return {n: a for n, a in actions.items() if a.customers}
