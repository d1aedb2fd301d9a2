"""Which actions exist, and which an agent may call."""

from __future__ import annotations

from agents.actions import configured
from agents.actions.base import Action
from agents.actions.chat import CHAT_ACTIONS
from agents.actions.handoff import PREFIX, Handoff, handoffs_of
from agents.actions.tickets import TICKET_ACTIONS
from agents.config import AgentConfig, Config
from agents.mcp import McpManager


class Registry:
    def __init__(self, config: Config, *, mcp: McpManager | None = None) -> None:
        self.config = config
        self._actions: dict[str, Action] = {}
        for cls in [*TICKET_ACTIONS, *CHAT_ACTIONS]:
            action = cls()
            self._actions[action.name] = action
        for cfg in config.actions:
            self._actions[cfg.name] = configured.build(cfg)
        self.mcp = mcp
        """The MCP servers whose tools are actions too (`<server>__<tool>`)."""

    def get(self, name: str) -> Action | None:
        action = self._actions.get(name)
        if action is None and name.startswith(PREFIX) and (target := self.config.agent(name[len(PREFIX) :])):
            return Handoff(target, self.config)
        if action is None and self.mcp is not None:
            action = self.mcp.action(name)
        return action

    def for_agent(self, agent: AgentConfig, *, customer: bool = False) -> dict[str, Action]:
        """The agent's actions (its MCP servers' tools and its handoffs included); for a
        customer's request, only those customers may reach."""
        actions = {n: self._actions[n] for n in agent.actions if n in self._actions}
        if self.mcp is not None:
            for server in agent.mcp_servers:
                actions.update(self.mcp.actions(server))
        actions.update((h.name, h) for h in handoffs_of(agent, self.config))
        if not customer:
            return actions
        if agent.customer_actions is not None:
            return {n: a for n, a in actions.items() if n in agent.customer_actions or isinstance(a, Handoff)}
        return {n: a for n, a in actions.items() if a.customers}

    async def ready(self, agent: AgentConfig) -> None:
        """Wait until the agent's MCP servers have listed their tools, or failed to (bounded by
        each server's connect_timeout): a run that starts while they connect gets their tools."""
        if self.mcp is not None and agent.mcp_servers:
            await self.mcp.ready(agent.mcp_servers)
