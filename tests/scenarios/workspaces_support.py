"""Set-up for the many-workspaces scenarios: a desk started with the app's OAuth credentials
instead of a bot token, and installs through its real /slack/install and /slack/oauth_redirect.

`install` plays what a workspace admin and Slack do: open the install link (the desk redirects
to Slack's authorize page with a state, and sets the state cookie), approve, come back to the
redirect URL with Slack's code and the state (the desk exchanges the code at the fake
oauth.v2.access and keeps the installation).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from fakes.slack_api import CLIENT_ID, CLIENT_SECRET, Team

from storage import installations

OAUTH = {"slack_bot_token": None, "slack_client_id": CLIENT_ID, "slack_client_secret": CLIENT_SECRET}
"""start_desk's Settings for many workspaces: the app's credentials, no bot token."""

_codes = itertools.count(1)


@dataclass
class Visit:
    """What the desk answered a browser."""

    status: int
    headers: dict[str, str]
    cookies: dict[str, str]
    text: str


async def get(desk: Any, path: str, *, cookie: str | None = None) -> Visit:
    """A browser's GET on the desk, redirects not followed."""
    headers = {"Cookie": cookie} if cookie else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(desk.url + path, headers=headers, allow_redirects=False) as response:
            jar = SimpleCookie()
            for value in response.headers.getall("Set-Cookie", []):
                jar.load(value)
            return Visit(
                response.status,
                dict(response.headers),
                {k: m.value for k, m in jar.items()},
                await response.text(),
            )


async def start_install(desk: Any) -> tuple[str, str]:
    """Open the install link: (the state Slack will send back, the cookie the browser keeps)."""
    visit = await get(desk, "/slack/install")
    assert visit.status == 302, visit
    authorize = urlsplit(visit.headers["Location"])
    assert (
        f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == "https://slack.com/oauth/v2/authorize"
    )
    query = parse_qs(authorize.query)
    [state] = query["state"]
    assert visit.cookies["slack-app-oauth-state"] == state
    return state, f"slack-app-oauth-state={state}"


async def install(desk: Any, team: Team, *, installer: str = "U1") -> Visit:
    """Install the app in `team` through the desk's OAuth flow; returns the redirect's answer."""
    state, cookie = await start_install(desk)
    code = f"code-{next(_codes)}"
    desk.slack.install_code(code, team, installer=installer)
    visit = await get(desk, f"/slack/oauth_redirect?code={code}&state={state}", cookie=cookie)
    assert visit.status == 200, visit
    return visit


async def bot_tokens(desk: Any) -> dict[str, str]:
    """The bot token the desk keeps for each workspace (slack-sdk's slack_bots table)."""
    async with desk.db.read() as session:
        teams = await installations.installed_teams(session=session, client_id=CLIENT_ID)
        return {
            t: await installations.bot_token(session=session, client_id=CLIENT_ID, team_id=t) or ""
            for t in teams
        }
