"""Budgets: a run's model tokens (`max_tokens_per_run`) and an agent's daily spend
(`max_cost_per_day`, US dollars priced from `[prices]`).

Both are checked at the step boundary, in `gate.stop`'s transaction, and only for an agent that
has one (`Budget.of` is None otherwise, and the step pays nothing):

- A run that has used its tokens stops before its next step and asks a human, like an
  approval (durable, on its own message, audited): Continue gives it as many tokens again,
  Stop ends it as failed (rolled back per its agent's `on_failure`). Tokens are counted after
  each model turn, so the turn that crosses the budget finishes; nothing after it starts.
- An agent whose runs have spent its daily cap is paused (the ordinary pause flag, set by
  "system" with the reason `CAP_REASON`); the watchdog's alert says why and how to resume,
  and a person's resume lets it spend another cap's worth that day (`storage.spend.allow_more`).
  The day's spend is a running total kept with each model turn (`storage.spend`), read as
  one row: no step sums the day's runs.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from agents import gate
from agents.config import AgentConfig, ApprovalPolicy, Config, Price
from storage import approvals, audit, controls, spend
from storage.clock import now
from storage.models import ApprovalStatus, WaitKind
from storage.runs import Wait

log = logging.getLogger(__name__)

CAP_REASON = "max_cost_per_day"
"""The reason of a pause the daily cap set (Control.reason): the watchdog alerts on it, and a
person's resume grants the day more room (bot.controls)."""
MORE_TOKENS = "more tokens"
"""What a run's ask for more tokens is called where approvals are listed (Approval.action)."""

_unpriced: set[str] = set()  # models already warned about, so the log says it once


class OverBudget(gate.Denied):
    """A person chose Stop when the run reached its token budget (or nobody chose in time)."""

    def __init__(self, used: int, allowed: int, why: str) -> None:
        super().__init__(MORE_TOKENS, why)
        self.args = (
            f"stopped at its token budget ({used:,} of {allowed:,} tokens, max_tokens_per_run): {why}",
        )


class Budget:
    """One run's budgets, kept by its worker while it works the run (the run's tokens are
    known from its row when the worker takes it, then counted here turn by turn)."""

    def __init__(
        self,
        *,
        agent: AgentConfig,
        channel_id: str,
        tokens: int,
        price: Price | None,
        timezone: str,
        approval_hours: float,
        policy: ApprovalPolicy,
        prices: dict[str, Price],
    ) -> None:
        self.agent = agent.name
        self.max_tokens = agent.max_tokens_per_run
        self.cap = agent.max_cost_per_day
        self.channel_id = channel_id
        self.tokens = tokens
        """Tokens the run has used so far (prompt and completion)."""
        self.allowed = self.max_tokens or 0
        """Tokens allowed before it asks; grows with each Continue (read back from its asks)."""
        self.price = price
        self.prices = prices
        self.tz = ZoneInfo(timezone)
        self.approval_hours = approval_hours
        self.policy = policy

    @classmethod
    def of(
        cls, config: Config, agent: AgentConfig, *, channel_id: str, tokens: int, model: str, offline: bool
    ) -> Budget | None:
        """The run's budget, or None when its agent has neither limit (the common case: then
        the step boundary does no work for budgets at all)."""
        if agent.max_tokens_per_run is None and agent.max_cost_per_day is None:
            return None
        price = Price(input=0, output=0) if offline else config.prices.get(model)
        if agent.max_cost_per_day is not None and price is None and model not in _unpriced:
            _unpriced.add(model)
            log.warning(
                "agent %s has max_cost_per_day but its model %r has no price in [prices]: "
                "its spend counts as nothing, so the cap never stops it",
                agent.name,
                model,
            )
        return cls(
            agent=agent,
            channel_id=channel_id,
            tokens=tokens,
            price=price,
            timezone=config.summary.timezone,
            approval_hours=config.control.approval_timeout_hours,
            policy=config.approval_policy(),
            prices=config.prices,
        )

    # At the step boundary ----------------------------------------------------------------

    async def stop(self, *, session: AsyncSession, run_id: int, worker_id: str) -> gate.Interrupted | None:
        """Why the run may not take its next step for budget reasons, or None. Called by
        `gate.stop` in the step's transaction; a run it stops already waits when it returns."""
        return await self._tokens(session, run_id, worker_id) or await self._daily(session, run_id, worker_id)

    async def _tokens(self, session: AsyncSession, run_id: int, worker_id: str) -> gate.Interrupted | None:
        if self.max_tokens is None or self.tokens < self.allowed:
            return None  # below what it was last known to be allowed: no query
        asks = await approvals.budget_approvals(session=session, run_id=run_id)
        granted = [a for a in asks if a.status == ApprovalStatus.approved]
        self.allowed = self.max_tokens
        for grant in granted:  # each Continue: another budget's worth from where the run stopped
            self.allowed = max(self.allowed, _term(grant.arguments, "used")) + _term(grant.arguments, "more")
        if self.tokens < self.allowed:
            return None
        key = approvals.budget_key(len(granted) + 1)
        ask = next((a for a in asks if a.tool_call_id == key), None)
        if ask is None:
            ask = await approvals.request_approval(
                session=session,
                run_id=run_id,
                tool_call_id=key,
                action=MORE_TOKENS,
                arguments={"used": self.tokens, "allowed": self.allowed, "more": self.max_tokens},
                reason=f"it has used {self.tokens:,} of its {self.allowed:,} tokens (max_tokens_per_run)",
                channel_id=self.channel_id,
                expires_at=now() + timedelta(hours=self.approval_hours),
                needed=self.policy.needed,
                approvers=list(self.policy.approvers),
                self_approval=self.policy.self_approval,
            )
        assert ask.id is not None
        if ask.status == ApprovalStatus.pending:
            waiting = gate.AwaitingApproval(ask.id, MORE_TOKENS)
            reason = (
                f"over its token budget: {self.tokens:,} of {self.allowed:,} tokens used "
                "(max_tokens_per_run); waits for Continue or Stop"
            )
            await gate.wait(
                session=session,
                run_id=run_id,
                worker_id=worker_id,
                wait=Wait(WaitKind.approval, str(ask.id), reason),
            )
            return waiting
        why = {
            ApprovalStatus.denied: f"<@{ask.decided_by}> chose Stop",
            ApprovalStatus.expired: "nobody chose Continue in time",
        }.get(ApprovalStatus(ask.status), f"the ask was {ask.status}")
        return OverBudget(self.tokens, self.allowed, why)

    async def _daily(self, session: AsyncSession, run_id: int, worker_id: str) -> gate.Interrupted | None:
        if self.cap is None:
            return None
        day = self.day()
        row = await spend.of_day(session=session, agent=self.agent, day=day)
        if row is None:
            await self._open(session, day)
            row = await spend.of_day(session=session, agent=self.agent, day=day)
            assert row is not None
        limit = self.cap + row.extra
        if row.cost < limit:
            return None
        detail = f"spent ${row.cost:,.4f} on {day}, its max_cost_per_day is ${limit:,.2f}"
        if await controls.set_paused(
            session=session, scope=self.agent, paused=True, by_user="system", reason=CAP_REASON
        ):
            await audit.record(
                session=session, actor="system", action="pause", target=f"agent:{self.agent}", detail=detail
            )
            log.warning("agent %s paused itself: %s", self.agent, detail)
        paused = gate.Paused(self.agent)
        await gate.wait(
            session=session,
            run_id=run_id,
            worker_id=worker_id,
            wait=Wait(WaitKind.paused, self.agent, f"{paused}: it {detail}"),
        )
        return paused

    # After a model turn ---------------------------------------------------------------------

    async def spent(self, *, session: AsyncSession, prompt_tokens: int, completion_tokens: int) -> None:
        """Count a model turn, in the transaction that journals it."""
        self.tokens += prompt_tokens + completion_tokens
        if self.cap is None:
            return
        day = self.day()
        dollars = cost(self.price, prompt_tokens, completion_tokens)
        added = await spend.add(
            session=session,
            agent=self.agent,
            day=day,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=dollars,
        )
        # Not open yet: opening it from the journal counts this turn (journaled in this
        # transaction). Opened by another transaction meanwhile: that one could not see this
        # turn, so it is added.
        if not added and not await self._open(session, day):
            await spend.add(
                session=session,
                agent=self.agent,
                day=day,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost=dollars,
            )

    async def _open(self, session: AsyncSession, day: str) -> bool:
        """Open the agent's running total for `day` from the journal: once a day (the first
        turn or check of the day, or the first after a cap was set mid-day)."""
        local = datetime.combine(datetime.fromisoformat(day).date(), time(0), tzinfo=self.tz)
        rows = await spend.model_tokens(  # the journal's times are UTC
            session=session,
            start=local.astimezone(UTC),
            end=(local + timedelta(days=1)).astimezone(UTC),
            agent=self.agent,
        )
        return await spend.open_day(
            session=session,
            agent=self.agent,
            day=day,
            prompt_tokens=sum(r[2] for r in rows),
            completion_tokens=sum(r[3] for r in rows),
            cost=sum(cost(self.prices.get(model), pt, ct) for _, model, pt, ct in rows),
        )

    def day(self) -> str:
        return today(self.tz)


def _term(arguments: dict[str, Any] | None, name: str) -> int:
    return int((arguments or {}).get(name) or 0)


def today(tz: ZoneInfo) -> str:
    """Today in the summary's time zone (`tz`): the day a daily cap counts, YYYY-MM-DD."""
    return now().astimezone(tz).date().isoformat()


def cost(price: Price | None, prompt_tokens: int, completion_tokens: int) -> float:
    """US dollars for these tokens at `price` (per million); 0 without a price."""
    if price is None:
        return 0.0
    return (prompt_tokens * price.input + completion_tokens * price.output) / 1_000_000
