"""A fake Slack Web API for slack_sdk's AsyncWebClient(base_url=...).

It keeps the workspace's messages and reactions, records every call, and can be told
to answer the next calls of a method with 429 (Retry-After) or 500, or to hold them until
released. apps.connections.open (Socket Mode) takes the app-level token and answers with a
URL of fakes.socket_mode's server.

Many workspaces: `add_team` gives a workspace its own bot token and bot identity (auth.test
answers by token, and every call records the token it came with); `install_code` makes a code
that oauth.v2.access (with the app's client id and secret, as HTTP Basic) exchanges for that
workspace's bot token, as Slack does at the end of an install; `revoke` makes Slack refuse a
token from then on.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fakes.loopback import LoopbackServer, Reply

TEAM_ID = "T1"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
APP_TOKEN = "xapp-1-A1-1111-fakeapptoken"
"""The app-level token (connections:write) apps.connections.open takes: Socket Mode's key."""
CLIENT_ID = "1111.2222"
CLIENT_SECRET = "fake-client-secret-0123"
"""The app's OAuth credentials oauth.v2.access takes."""


@dataclass
class Team:
    """A workspace the app can be installed in: its bot's token and identity there."""

    team_id: str
    token: str
    bot_user_id: str
    bot_id: str
    name: str


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int = 200
    """The HTTP status the fake answered."""
    error: str | None = None
    """The `error` of an ok:false answer."""
    token: str = ""
    """The token the call came with (Authorization: Bearer)."""


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    user: str = BOT_USER_ID
    posted_text: str = ""
    """The text as first posted (before any chat.update)."""
    edits: list[dict[str, Any]] = field(default_factory=list)
    """Every chat.update applied, oldest first: {"text", "blocks"}."""
    deleted: bool = False
    token: str = ""
    """The token it was posted with (whose workspace's bot posted it)."""
    streamed: list[str] = field(default_factory=list)
    """For a streamed message: the markdown of each chat.startStream/appendStream/stopStream
    call, in order (its `text` is what they add up to)."""
    streaming: bool = False
    """Started and not stopped yet."""

    def action_ids(self) -> list[str]:
        """The action_id of every interactive element in the blocks (buttons, feedback buttons)."""
        return [
            e.get("action_id")
            for b in self.blocks or []
            if b.get("type") in ("actions", "context_actions")
            for e in b.get("elements", [])
        ]

    def shown(self) -> str:
        """What a person reads: the text and the text of every block."""
        return "\n".join([self.text, *(_block_text(b) for b in self.blocks or [])])

    def block(self, kind: str) -> dict[str, Any] | None:
        """The first block of that type."""
        return next((b for b in self.blocks or [] if b.get("type") == kind), None)


def _block_text(block: dict[str, Any]) -> str:
    text = block.get("text")
    if isinstance(text, dict):
        return str(text.get("text") or "")
    if isinstance(text, str):
        return text
    return "\n".join(
        str(e.get("text") or "") for e in block.get("elements", []) if isinstance(e.get("text"), str)
    )


def _markdown(p: dict[str, Any]) -> str:
    """The markdown a stream call adds: `markdown_text`, and its markdown_text chunks."""
    chunks = p.get("chunks")
    if isinstance(chunks, str):
        chunks = json.loads(chunks)
    added = [str(p.get("markdown_text") or "")]
    added += [str(c.get("text") or "") for c in chunks or [] if c.get("type") == "markdown_text"]
    return "".join(added)


@dataclass
class _Failure:
    status: int
    times: int
    skip: int
    retry_after: int


class FakeSlack(LoopbackServer):
    def __init__(
        self, *, team_id: str = TEAM_ID, bot_user_id: str = BOT_USER_ID, bot_id: str = BOT_ID
    ) -> None:
        super().__init__()
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.users: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.messages: dict[str, Message] = {}
        self.reactions: list[tuple[str, str, str]] = []
        """(channel, ts, name) in the order they were added."""
        self.ephemerals: list[Message] = []
        """Messages only one user sees (chat.postEphemeral); `user` is that user."""
        self.home_views: dict[str, dict[str, Any]] = {}
        """The App Home view last published for each user (views.publish)."""
        self.statuses: list[dict[str, Any]] = []
        """Every loading status set (assistant.threads.setStatus): channel_id, thread_ts, status,
        loading_messages; an empty status clears it."""
        self.suggested: list[dict[str, Any]] = []
        """Every assistant.threads.setSuggestedPrompts: channel_id, thread_ts, title, prompts."""
        self._refusals: dict[str, list[list[Any]]] = {}
        self.app_token = APP_TOKEN
        self.socket_url: Callable[[], str] | None = None
        """Issues a fresh Socket Mode URL for apps.connections.open (fakes.socket_mode sets it)."""
        self.teams: dict[str, Team] = {}
        """Workspaces by bot token (add_team); any other xoxb- token is the default workspace's."""
        self.codes: dict[str, tuple[Team, str]] = {}
        """Install codes oauth.v2.access takes: the workspace, and who installed."""
        self.revoked: set[str] = set()
        self.client_id = CLIENT_ID
        self.client_secret = CLIENT_SECRET
        self._token = ""  # the token of the call being answered (handlers run under the lock)
        self._failures: dict[str, list[_Failure]] = {}
        self._held: dict[str, threading.Event] = {}
        self._ts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    # Set-up ---------------------------------------------------------------------

    def add_user(self, user_id: str, *, team_id: str | None = None, **flags: Any) -> dict[str, Any]:
        """A user users.info knows; flags such as is_restricted=True, is_stranger=True."""
        user = {"id": user_id, "team_id": team_id or self.team_id, "name": user_id.lower(), **flags}
        with self.lock:
            self.users[user_id] = user
        return user

    def add_team(
        self,
        team_id: str,
        *,
        token: str,
        bot_user_id: str = BOT_USER_ID,
        bot_id: str = BOT_ID,
        name: str = "",
    ) -> Team:
        """A workspace of its own, whose bot uses `token` (an xoxb- token)."""
        team = Team(team_id, token, bot_user_id, bot_id, name or f"Team {team_id}")
        with self.lock:
            self.teams[token] = team
        return team

    def install_code(self, code: str, team: Team, *, installer: str = "U1") -> None:
        """Slack's code for an install of the app in `team` by `installer` (oauth.v2.access)."""
        with self.lock:
            self.codes[code] = (team, installer)

    def revoke(self, token: str) -> None:
        """Slack refuses `token` from now on (token_revoked), as after an uninstall."""
        with self.lock:
            self.revoked.add(token)

    def calls_with(self, token: str, method: str | None = None) -> list[Call]:
        """The calls made with `token` (of `method`, when given)."""
        with self.lock:
            return [c for c in self.calls if c.token == token and method in (None, c.method)]

    def fail(
        self, method: str, *, status: int = 429, times: int = 1, after: int = 0, retry_after: int = 1
    ) -> None:
        """Answer `times` calls of `method` with `status`, after letting `after` calls through."""
        with self.lock:
            self._failures.setdefault(method, []).append(_Failure(status, times, after, retry_after))

    def refuse(self, method: str, error: str = "unknown_method", *, times: int | None = None) -> None:
        """Answer calls of `method` with ok:false and `error` (HTTP 200, as Slack does), `times`
        times or (None) always: `unknown_method` is an older workspace without that method."""
        with self.lock:
            self._refusals.setdefault(method, []).append([error, times])

    def hold(self, method: str) -> None:
        """Keep every call of `method` waiting (recorded, unanswered) until `release(method)`."""
        with self.lock:
            self._held[method] = threading.Event()

    def release(self, method: str) -> None:
        with self.lock:
            held = self._held.pop(method, None)
        if held is not None:
            held.set()

    def recover(self, method: str) -> None:
        """Slack is back: no more injected failures for `method`."""
        with self.lock:
            self._failures.pop(method, None)

    # Assertions -----------------------------------------------------------------

    def calls_to(self, method: str, *, ok: bool | None = None) -> list[Call]:
        with self.lock:
            found = [c for c in self.calls if c.method == method]
        if ok is None:
            return found
        return [c for c in found if (c.status == 200 and c.error is None) == ok]

    def posts(self) -> list[Message]:
        """Every message the bot posted, in order."""
        with self.lock:
            return list(self.messages.values())

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The bot's replies in one thread, in the order they were posted."""
        return [m for m in self.posts() if m.channel == channel and m.thread_ts == thread_ts]

    def top_level(self, channel: str) -> list[Message]:
        return [m for m in self.posts() if m.channel == channel and m.thread_ts is None]

    def delete_by_hand(self, ts: str) -> None:
        """A person deletes one of the bot's messages in Slack."""
        with self.lock:
            self.messages[ts].deleted = True

    def statuses_in(self, channel: str, thread_ts: str) -> list[str]:
        """The loading statuses set in one thread, in order ("" for a clear)."""
        with self.lock:
            return [
                s["status"]
                for s in self.statuses
                if (s["channel_id"], s["thread_ts"]) == (channel, thread_ts)
            ]

    def reactions_on(self, channel: str, ts: str) -> list[str]:
        with self.lock:
            return [name for c, t, name in self.reactions if c == channel and t == ts]

    # The Web API ----------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        url = urlsplit(path)
        api = url.path.rsplit("/", 1)[-1]
        params: dict[str, Any] = dict(parse_qsl(url.query, keep_blank_values=True))
        ctype = headers.get("content-type", "")
        if raw and "json" in ctype:
            params.update(json.loads(raw))
        elif raw:
            params.update(parse_qsl(raw.decode(), keep_blank_values=True))
        for key in ("blocks", "attachments"):
            if isinstance(params.get(key), str) and params[key]:
                params[key] = json.loads(params[key])
        authorization = headers.get("authorization", "")
        call = Call(api, params, token=authorization.removeprefix("Bearer "))
        with self.lock:
            self.calls.append(call)
            held = self._held.get(api)
        if held is not None:
            held.wait(timeout=60)  # a test that forgets to release fails on its own timeouts
        with self.lock:
            failure = self._failure(api)
            if failure is not None:
                call.status = failure.status
                call.error = "ratelimited" if failure.status == 429 else "fatal_error"
                extra = {"Retry-After": str(failure.retry_after)} if failure.status == 429 else {}
                return Reply(failure.status, {"ok": False, "error": call.error}, extra)
            if api == "oauth.v2.access":
                refusal = self._client_refusal(authorization, params)
            else:
                refusal = self._refusal(api, authorization) or self._refused(api)
            if refusal is not None:
                body: dict[str, Any] = {"ok": False, "error": refusal}
            else:
                self._token = call.token
                handler = getattr(self, "_" + api.replace(".", "_"), None)
                body = handler(params) if handler else {"ok": False, "error": "unknown_method"}
            if not body.get("ok"):
                call.error = str(body.get("error"))
            return Reply(200, body)

    def _refusal(self, api: str, authorization: str) -> str | None:
        """Slack's answer to the wrong token: apps.connections.open takes only the app-level
        token, every other method only a bot token."""
        token = authorization.removeprefix("Bearer ")
        wanted = "xapp-" if api == "apps.connections.open" else "xoxb-"
        if token.startswith(("xapp-", "xoxb-", "xoxp-")) and not token.startswith(wanted):
            return "not_allowed_token_type"
        if not token.startswith(wanted) or (wanted == "xapp-" and token != self.app_token):
            return "invalid_auth"
        if token in self.revoked:
            return "token_revoked"
        return None

    def _client_refusal(self, authorization: str, params: dict[str, Any]) -> str | None:
        """oauth.v2.access takes the app's client id and secret (HTTP Basic, as slack_sdk sends them)."""
        try:
            given = base64.b64decode(authorization.removeprefix("Basic ")).decode()
        except ValueError:
            return "invalid_client_id"
        client_id, _, secret = given.partition(":")
        if client_id != self.client_id:
            return "invalid_client_id"
        if secret != self.client_secret:
            return "bad_client_secret"
        if str(params.get("code")) not in self.codes:
            return "invalid_code"
        return None

    def _team(self) -> Team:
        """The workspace of the call being answered (by its token)."""
        return self.teams.get(self._token) or Team(
            self.team_id, self._token, self.bot_user_id, self.bot_id, "Team One"
        )

    def _refused(self, api: str) -> str | None:
        rules = self._refusals.get(api) or []
        if not rules:
            return None
        error, times = rules[0]
        if times is not None:
            rules[0][1] = times - 1
            if times - 1 <= 0:
                rules.pop(0)
        return str(error)

    def _failure(self, api: str) -> _Failure | None:
        rules = self._failures.get(api) or []
        if not rules:
            return None
        rule = rules[0]
        if rule.skip > 0:
            rule.skip -= 1
            return None
        rule.times -= 1
        if rule.times <= 0:
            rules.pop(0)
        return rule

    def _next_ts(self) -> str:
        self._ts += 1
        return f"{1700000100 + self._ts // 1_000_000}.{self._ts % 1_000_000:06d}"

    def _apps_connections_open(self, _: dict[str, Any]) -> dict[str, Any]:
        if self.socket_url is None:
            return {"ok": False, "error": "socket_mode_not_enabled"}  # no Socket Mode server started
        return {"ok": True, "url": self.socket_url()}

    def _auth_test(self, _: dict[str, Any]) -> dict[str, Any]:
        team = self._team()
        return {
            "ok": True,
            "url": f"https://{team.team_id.lower()}.slack.com/",
            "team": team.name,
            "user": "chatops",
            "team_id": team.team_id,
            "user_id": team.bot_user_id,
            "bot_id": team.bot_id,
            "is_enterprise_install": False,
        }

    def _oauth_v2_access(self, p: dict[str, Any]) -> dict[str, Any]:
        team, installer = self.codes.pop(str(p["code"]))  # a code is good once
        return {
            "ok": True,
            "app_id": "A1",
            "authed_user": {"id": installer},
            "scope": "app_mentions:read,chat:write,commands",
            "token_type": "bot",
            "access_token": team.token,
            "bot_user_id": team.bot_user_id,
            "team": {"id": team.team_id, "name": team.name},
            "enterprise": None,
            "is_enterprise_install": False,
        }

    def _chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not p.get("text") and not p.get("blocks"):
            return {"ok": False, "error": "no_text"}
        ts = self._next_ts()
        text = str(p.get("text") or "")
        msg = Message(
            p["channel"],
            ts,
            text,
            p.get("blocks"),
            p.get("thread_ts") or None,
            posted_text=text,
            token=self._token,
        )
        self.messages[ts] = msg
        return {
            "ok": True,
            "channel": msg.channel,
            "ts": ts,
            "message": {
                "type": "message",
                "user": self.bot_user_id,
                "bot_id": self.bot_id,
                "text": text,
                "ts": ts,
            },
        }

    def _chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("channel") or not p.get("user"):
            return {
                "ok": False,
                "error": "channel_not_found" if not p.get("channel") else "user_not_in_channel",
            }
        ts = self._next_ts()
        text = str(p.get("text") or "")
        self.ephemerals.append(
            Message(
                p["channel"],
                ts,
                text,
                p.get("blocks"),
                p.get("thread_ts") or None,
                user=p["user"],
                posted_text=text,
                token=self._token,
            )
        )
        return {"ok": True, "message_ts": ts}

    def _chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self.messages.get(str(p.get("ts")))
        if msg is None or msg.deleted or msg.channel != p.get("channel"):
            return {"ok": False, "error": "message_not_found"}
        msg.text = str(p.get("text") or "")
        msg.blocks = p.get("blocks")
        msg.edits.append({"text": msg.text, "blocks": msg.blocks})
        return {"ok": True, "channel": msg.channel, "ts": msg.ts, "text": msg.text}

    def _chat_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self.messages.get(str(p.get("ts")))
        if msg is None or msg.deleted or msg.channel != p.get("channel"):
            return {"ok": False, "error": "message_not_found"}
        msg.deleted = True
        return {"ok": True, "channel": msg.channel, "ts": msg.ts}

    def _reactions_add(self, p: dict[str, Any]) -> dict[str, Any]:
        key = (str(p.get("channel")), str(p.get("timestamp")), str(p.get("name")))
        if key in self.reactions:
            return {"ok": False, "error": "already_reacted"}
        self.reactions.append(key)
        return {"ok": True}

    def _views_publish(self, p: dict[str, Any]) -> dict[str, Any]:
        view = p.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if not p.get("user_id") or not isinstance(view, dict):
            return {"ok": False, "error": "invalid_arguments"}
        self.home_views[str(p["user_id"])] = view
        return {"ok": True, "view": {"id": f"V{len(self.home_views)}", **view}}

    def _assistant_threads_setStatus(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("channel_id") or not p.get("thread_ts") or "status" not in p:
            return {"ok": False, "error": "invalid_arguments"}
        loading = p.get("loading_messages")
        if isinstance(loading, str):
            loading = json.loads(loading)
        if loading is not None and len(loading) > 10:
            return {"ok": False, "error": "invalid_arguments"}
        self.statuses.append(
            {
                "channel_id": p["channel_id"],
                "thread_ts": p["thread_ts"],
                "status": p["status"],
                "loading_messages": loading,
            }
        )
        return {"ok": True}

    def _assistant_threads_setSuggestedPrompts(self, p: dict[str, Any]) -> dict[str, Any]:
        prompts = p.get("prompts")
        if isinstance(prompts, str):
            prompts = json.loads(prompts)
        if not p.get("channel_id") or not isinstance(prompts, list) or not prompts:
            return {"ok": False, "error": "invalid_arguments"}
        if any(not isinstance(x, dict) or not x.get("title") or not x.get("message") for x in prompts):
            return {"ok": False, "error": "invalid_arguments"}
        self.suggested.append(
            {
                "channel_id": p["channel_id"],
                "thread_ts": p.get("thread_ts"),
                "title": p.get("title"),
                "prompts": prompts,
            }
        )
        return {"ok": True}

    def _chat_startStream(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("channel") or not p.get("thread_ts"):
            return {"ok": False, "error": "invalid_arguments"}
        if not str(p["channel"]).startswith("D") and not (
            p.get("recipient_user_id") and p.get("recipient_team_id")
        ):
            # In a channel, Slack needs to know whom the stream is for.
            return {"ok": False, "error": "missing_recipient_user_id"}
        ts = self._next_ts()
        text = _markdown(p)
        msg = Message(
            p["channel"], ts, text, None, p["thread_ts"], posted_text=text, streamed=[text], streaming=True
        )
        self.messages[ts] = msg
        return {"ok": True, "channel": msg.channel, "ts": ts}

    def _streaming(self, p: dict[str, Any]) -> Message | dict[str, Any]:
        msg = self.messages.get(str(p.get("ts")))
        if msg is None or msg.channel != p.get("channel"):
            return {"ok": False, "error": "message_not_found"}
        if not msg.streaming:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        return msg

    def _chat_appendStream(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self._streaming(p)
        if not isinstance(msg, Message):
            return msg
        added = _markdown(p)
        msg.streamed.append(added)
        msg.text += added
        return {"ok": True, "channel": msg.channel, "ts": msg.ts}

    def _chat_stopStream(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self._streaming(p)
        if not isinstance(msg, Message):
            return msg
        added = _markdown(p)
        msg.streamed.append(added)
        msg.text += added
        msg.blocks = p.get("blocks") or None
        msg.streaming = False
        return {"ok": True, "channel": msg.channel, "ts": msg.ts, "message": {"text": msg.text}}

    def _users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(p.get("user")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": user}
