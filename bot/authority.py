"""Who may control agents, and the refusals (audited) of those who may not.

Decided here, in code, never by the model: guests, users of other workspaces and (when
`control.admins` is set) non-admins may not; a control delivered a second time (a replayed
slash command or click) is not done again; a run or approval that does not belong where it
was asked for (`bot.places`) is refused without saying whether it exists elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from agents.config import Config
from bot.control_messages import Reply, refusal
from bot.surface import OneSurface, Surface, Surfaces, UserInfo, UserLookupFailed
from storage import audit, requests, roles
from storage.clock import now
from storage.engine import Database
from storage.models import Approval

log = logging.getLogger(__name__)

DECISIONS = ("approve", "deny")
"""Verbs an approval's own policy authorizes (`Authority.decision_refusal`), not control.admins."""
USER_LOOKUP_SECONDS = 2.0  # users.info must not hold the ack past Slack's 3 s


UNVERIFIED = "I could not verify who you are in this workspace (Slack did not answer)"


KNOWN_USERS = 10_000
"""Users whose role a process keeps in memory (until each expires); the rest are read."""


@dataclass(frozen=True)
class Known:
    """What Slack last said of a user (a row of `user_roles`)."""

    refusal: str | None
    checked_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Standing:
    """A user's standing in the team: a full member, not one (and why), or not known now."""

    member: bool | None
    """None: Slack could not say, and it never said before."""
    reason: str | None = None
    """Why the user is not a member (or not known)."""

    @property
    def role(self) -> str:
        """What a request of theirs may reach: "member", "customer", or "unverified" (re-checked
        when its run starts; reaches only what customers may until then)."""
        return {True: "member", False: "customer", None: "unverified"}[self.member]


class Authority:
    def __init__(
        self, db: Database, config: Config, surface: Surface, *, surfaces: Surfaces | None = None
    ) -> None:
        self.db = db
        self.config = config
        self.surface = surface
        self.surfaces = surfaces or OneSurface(surface)
        """Who a user is is asked of their own workspace (users.info with its token)."""
        self.fresh_for = timedelta(minutes=config.control.role_cache_minutes)
        self._known: dict[tuple[str, str], Known] = {}
        """(team, user) -> what Slack last said, as the database keeps it (see `_keep`)."""

    async def refusal(
        self, user_id: str, *, team_id: str, user_team: str | None = None, verb: str | None = None
    ) -> str | None:
        """Why this user may not control agents, or None when they may.

        The emergency stop works when Slack does not: `pause` (and only pause) is accepted
        from a user of this team whom Slack cannot verify right now, and audited as such.
        """
        standing = await self.standing(user_id, team_id=team_id, user_team=user_team)
        if standing.member is None and verb == "pause":
            async with self.db.write() as session:
                await audit.record(
                    session=session,
                    team_id=self.surfaces.owner(team_id),
                    actor=user_id,
                    action="unverified",
                    target="pause",
                    detail="accepted: Slack could not say who this is, and a pause is always allowed",
                )
            log.warning("pause from %s accepted unverified: users.info failed", user_id)
            return None
        reason = standing.reason
        # Who may decide an approval is its own policy's question (`decision_refusal`): its
        # approvers may decide without being admins. Guests and strangers never may (above).
        if verb in DECISIONS:
            return reason
        if reason is None and self.config.control.admins and user_id not in self.config.control.admins:
            reason = "only the agents' admins (control.admins) can control agents"
        return reason

    def decision_refusal(
        self, user_id: str, approval: Approval, *, requester: str, approve: bool, decided: list[str]
    ) -> str | None:
        """Why this full member of the team may not decide this approval, or None: its approval
        policy (kept with it when it was asked for) says who may, whether the requester may
        approve their own run's action, and that each approver counts once.

        `decided`: who decided on it already.
        """
        approvers = approval.approvers or []
        admins = self.config.control.admins
        if approvers and user_id not in approvers:
            return f"only {_names(approvers)} can decide {approval.action} (its approvers)"
        if not approvers and admins and user_id not in admins:
            return "only the agents' admins (control.admins) can control agents"
        if approve and not approval.self_approval and user_id == requester:
            return (
                "you asked for this run, and its actions need someone else's approval (self_approval = false)"
            )
        if user_id in decided:
            return f"you already decided on it; {approval.needed} different people must approve it"
        return None

    async def not_a_member(self, user_id: str, *, team_id: str, user_team: str | None = None) -> str | None:
        """Why this user is not (or is not known to be) a full member of the workspace, or None."""
        return (await self.standing(user_id, team_id=team_id, user_team=user_team)).reason

    async def role_of(self, user_id: str, *, team_id: str, user_team: str | None = None) -> str:
        """ "member", "customer" or "unverified": what a request from this user may reach."""
        return (await self.standing(user_id, team_id=team_id, user_team=user_team)).role

    async def verify(self, *, team_id: str, user_id: str) -> str | None:
        """agents.ports.Roles: "member" or "customer" now; None while Slack still cannot say."""
        standing = await self.standing(user_id, team_id=team_id)
        return None if standing.member is None else standing.role

    async def standing(self, user_id: str, *, team_id: str, user_team: str | None = None) -> Standing:
        """What Slack says of the user: the database's answer while fresh, then Slack's (kept
        for `control.role_cache_minutes`), and when Slack cannot say, the last known answer."""
        if user_team and team_id and user_team != team_id:
            return Standing(False, "people from other workspaces cannot control agents here")
        key = (team_id, user_id)
        known = self._known.get(key)
        if known is None or known.expires_at <= now():
            async with self.db.read() as session:  # another process may have asked Slack since
                row = await roles.known_role(session=session, team_id=team_id, user_id=user_id)
            known = None
            if row is not None:
                known = self._keep(key, Known(row.refusal, row.checked_at, row.expires_at))
        if known is not None and known.expires_at > now():
            return Standing(known.refusal is None, known.refusal)
        try:
            async with asyncio.timeout(USER_LOOKUP_SECONDS):
                info = await self.surfaces.for_team(team_id).user(user_id)
        except (TimeoutError, UserLookupFailed):
            if known is not None:
                log.warning(
                    "users.info for %s failed: using what Slack said at %s", user_id, known.checked_at
                )
                return Standing(known.refusal is None, known.refusal)
            return Standing(None, UNVERIFIED)
        reason = _refusal(info, team_id=team_id)
        async with self.db.write() as session:
            said = await roles.remember_role(
                session=session, team_id=team_id, user_id=user_id, refusal=reason, ttl=self.fresh_for
            )
        self._keep(key, Known(reason, *said))
        return Standing(reason is None, reason)

    def _keep(self, key: tuple[str, str], known: Known) -> Known:
        """Keep what the database or Slack said of a user in the process, until it expires:
        a request's ack needs no read for a user asked about a minute ago. Bounded: the
        oldest entries go first."""
        self._known.pop(key, None)
        self._known[key] = known
        while len(self._known) > KNOWN_USERS:
            del self._known[next(iter(self._known))]
        return known

    async def refused(
        self, user_id: str, verb: str, reason: str, *, target: str | None = None, team_id: str = ""
    ) -> Reply:
        """Refuse a person who may not control agents, or not decide this approval (`target`)
        (audited); only they see why."""
        async with self.db.write() as session:
            await audit.record(
                session=session,
                team_id=self.surfaces.owner(team_id),
                actor=user_id,
                action="refused",
                target=target or verb,
                detail=f"{verb}: {reason}" if target else reason,
            )
        log.info("refused %s from %s: %s", verb, user_id, reason)
        return Reply(refusal(user_id, verb, reason), private=True)

    async def first_time(
        self, user_id: str, verb: str, delivery: str | None, *, team_id: str = ""
    ) -> Reply | None:
        """None the first time a delivery (a slash command's or a click's trigger_id) is seen;
        a refusal (audited) when it is seen again: a replayed control is not done twice."""
        if not delivery:
            return None
        async with self.db.write(urgent=True) as session:
            if await requests.record_delivery(session=session, key=delivery, kind="control"):
                return None
            await audit.record(
                session=session,
                team_id=self.surfaces.owner(team_id),
                actor=user_id,
                action="refused",
                target=verb,
                detail=f"replayed {delivery}",
            )
        log.warning("refused a replayed %s from %s (%s)", verb, user_id, delivery)
        return Reply("This request was already received; it is not done twice.", private=True)


async def not_here(
    session: AsyncSession, user_id: str, verb: str, kind: str, number: int, why: str, *, team_id: str = ""
) -> Reply:
    """Refuse a run or approval that does not belong where it was asked for, in words that do
    not tell whether it exists elsewhere (the audit row, in the caller's transaction, says why;
    `team_id`: the workspace it was asked in, as its rows are kept)."""
    await audit.record(
        session=session,
        team_id=team_id,
        actor=user_id,
        action="refused",
        target=f"{kind}:{number}",
        detail=f"{verb}: {why}",
    )
    log.info("refused %s of %s #%s from %s: %s", verb, kind, number, user_id, why)
    return Reply(f"There is no {kind} #{number} here.", private=True)


def _names(users: list[str]) -> str:
    names = [f"<@{u}>" for u in users]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" or {names[-1]}"


def _refusal(info: UserInfo | None, *, team_id: str) -> str | None:
    if info is None:
        return "Slack does not know you in this workspace"
    if info.is_restricted or info.is_ultra_restricted:
        return "guests cannot control agents"
    if info.is_stranger or (team_id and info.team_id and info.team_id != team_id):
        return "people from other workspaces cannot control agents here"
    if info.is_bot or info.deleted:
        return "only people can control agents"
    return None
