"""Installing the app in a workspace through OAuth (issue 16, item 6).

With SLACK_CLIENT_ID and SLACK_CLIENT_SECRET instead of a bot token, the desk serves bolt's
OAuth flow: GET /slack/install redirects to Slack's authorize page with a state (and the
state's cookie), GET /slack/oauth_redirect exchanges Slack's code at oauth.v2.access and keeps
the installation in the desk's own database. A missing, wrong or replayed state, or a code
Slack does not know, installs nothing.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from fakes import slack_events as ev
from fakes.slack_api import CLIENT_ID

from scenarios.control_support import audit, run_for
from scenarios.workspaces_support import OAUTH, bot_tokens, get, install, start_install
from storage.installations import BOTS, INSTALLATIONS, OAUTH_STATES
from storage.models import RunStatus

TOKEN = "xoxb-t2-first-token"


async def _rows(desk, table) -> list[dict]:
    async with desk.db.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(table.select())).mappings()]


async def test_install_redirects_to_slack_and_the_redirect_keeps_the_installation(start_desk, fake_slack):
    desk = await start_desk(
        **OAUTH,
        slack_redirect_uri="https://desk.example/slack/oauth_redirect",
        slack_scopes="chat:write,commands",
    )
    visit = await get(desk, "/slack/install")
    assert visit.status == 302
    query = parse_qs(urlsplit(visit.headers["Location"]).query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["scope"] == ["chat:write,commands"]
    assert query["redirect_uri"] == ["https://desk.example/slack/oauth_redirect"]
    [state] = query["state"]
    assert [r["state"] for r in await _rows(desk, OAUTH_STATES)] == [state]

    team = fake_slack.add_team("T2", token=TOKEN, bot_user_id="UBOT2", bot_id="BBOT2", name="Two")
    fake_slack.add_user("U21", team_id="T2")
    fake_slack.install_code("code-a", team, installer="U21")
    done = await get(
        desk, f"/slack/oauth_redirect?code=code-a&state={state}", cookie=f"slack-app-oauth-state={state}"
    )
    assert done.status == 200 and "Thank you" in done.text, done.text
    [exchange] = fake_slack.calls_to("oauth.v2.access")
    assert exchange.params["code"] == "code-a"
    assert exchange.params["redirect_uri"] == "https://desk.example/slack/oauth_redirect"
    assert await _rows(desk, OAUTH_STATES) == []  # a state is good once
    [installed] = await _rows(desk, INSTALLATIONS)
    assert (installed["team_id"], installed["team_name"], installed["user_id"]) == ("T2", "Two", "U21")
    assert (installed["bot_token"], installed["bot_id"], installed["bot_user_id"]) == (
        TOKEN,
        "BBOT2",
        "UBOT2",
    )
    [bot] = await _rows(desk, BOTS)
    assert (bot["client_id"], bot["team_id"], bot["bot_token"]) == (CLIENT_ID, "T2", TOKEN)
    [event] = await audit(desk, "install")
    assert (event.team_id, event.actor, event.target) == ("T2", "U21", "team:T2")

    # The installed workspace is served, with its own token.
    mention = ev.app_mention(
        "<@UBOT2> create a ticket for the printer", channel="C2", user="U21", team_id="T2"
    )
    assert (await desk.send.event(mention)).status == 200
    run = await run_for(desk, str(mention["event"]["ts"]))
    assert (run.team_id, run.status) == ("T2", RunStatus.succeeded)
    assert {m.token for m in fake_slack.thread("C2", str(mention["event"]["ts"]))} == {TOKEN}
    # It has no [teams."T2"] summary_channel: asked for, its summary says it gets no daily one.
    asked = await desk.send.command(ev.slash_command("summary", channel="C2", user="U21", team_id="T2"))
    text = asked.json()["text"]
    assert "posted the summary" in text and 'no daily summary: [teams."T2"] summary_channel' in text, text
    assert "T2: no summary channel" in await desk.services.summaries.post_every()


async def test_a_wrong_missing_or_replayed_state_installs_nothing(start_desk, fake_slack):
    desk = await start_desk(**OAUTH)
    team = fake_slack.add_team("T2", token=TOKEN)
    for code in ("c1", "c2", "c3", "c4", "c5"):
        fake_slack.install_code(code, team)
    state, cookie = await start_install(desk)

    no_cookie = await get(desk, f"/slack/oauth_redirect?code=c1&state={state}")
    other_browser = await get(desk, f"/slack/oauth_redirect?code=c2&state={state}", cookie=cookie + "x")
    made_up = await get(
        desk, "/slack/oauth_redirect?code=c3&state=made-up", cookie="slack-app-oauth-state=made-up"
    )
    assert (no_cookie.status, other_browser.status, made_up.status) == (400, 400, 401)
    assert fake_slack.calls_to("oauth.v2.access") == [] and await bot_tokens(desk) == {}

    assert (await get(desk, f"/slack/oauth_redirect?code=c4&state={state}", cookie=cookie)).status == 200
    replayed = await get(desk, f"/slack/oauth_redirect?code=c5&state={state}", cookie=cookie)
    assert replayed.status == 401
    assert len(fake_slack.calls_to("oauth.v2.access")) == 1 and await bot_tokens(desk) == {"T2": TOKEN}


async def test_a_code_slack_refuses_installs_nothing(start_desk, fake_slack):
    desk = await start_desk(**OAUTH)
    state, cookie = await start_install(desk)
    refused = await get(desk, f"/slack/oauth_redirect?code=unknown&state={state}", cookie=cookie)
    assert refused.status == 401
    [exchange] = fake_slack.calls_to("oauth.v2.access")
    assert exchange.error == "invalid_code"
    assert await bot_tokens(desk) == {} and await audit(desk, "install") == []


async def test_installing_again_takes_the_new_token(start_desk, fake_slack):
    desk = await start_desk(**OAUTH)
    await install(desk, fake_slack.add_team("T2", token=TOKEN))
    assert await bot_tokens(desk) == {"T2": TOKEN}
    await install(desk, fake_slack.add_team("T2", token="xoxb-t2-second-token"))
    assert await bot_tokens(desk) == {"T2": "xoxb-t2-second-token"}
    mention = ev.app_mention("<@UBOT> create a ticket for the fax", channel="C2", team_id="T2")
    assert (await desk.send.event(mention)).status == 200
    await run_for(desk, str(mention["event"]["ts"]))
    assert {m.token for m in fake_slack.posts()} == {"xoxb-t2-second-token"}


async def test_a_workspace_without_an_installation_is_acked_and_dropped(start_desk, fake_slack):
    desk = await start_desk(**OAUTH)
    mention = ev.app_mention("<@UBOT> create a ticket for the fax", channel="C9", team_id="T9")
    delivery = await desk.send.event(mention)
    assert delivery.status == 200
    assert await desk.requests() == [] and await desk.runs() == []
    assert fake_slack.posts() == [] and fake_slack.calls_to("chat.postMessage") == []
