"""Slack actions (through the Chat port): reply in the thread, post to a channel."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from agents.actions.base import Action, ActionContext, ActionResult


class ReplyArgs(BaseModel):
    text: str = Field(min_length=1, max_length=3000, description="Message text (Slack mrkdwn)")


class SlackReply(Action):
    name = "slack_reply"
    description = "Reply in the request's Slack thread."
    args_model = ReplyArgs
    customers = True

    def resource(self, args: BaseModel, ctx: ActionContext) -> str | None:
        return None

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        assert isinstance(args, ReplyArgs)
        r = ctx.requester
        ts = await ctx.chat.post_text(
            channel=r.channel_id, text=args.text + ctx.author_note, thread_ts=r.thread_ts
        )
        return ActionResult(
            output=f"replied in the thread (ts {ts})",
            summary="replied in the thread",
            undo={"channel": r.channel_id, "ts": ts},
        )

    async def compensate(self, ctx: ActionContext, undo: dict[str, Any]) -> str:
        await ctx.chat.delete_message(channel=undo["channel"], ts=undo["ts"])
        return "deleted the reply"


class PostArgs(BaseModel):
    channel: str = Field(min_length=1, max_length=80, description="Channel id, e.g. C012AB3CD")
    text: str = Field(min_length=1, max_length=3000, description="Message text (Slack mrkdwn)")


class SlackPost(Action):
    name = "slack_post"
    description = "Post a message to a Slack channel."
    args_model = PostArgs
    risk = "medium"

    def resource(self, args: BaseModel, ctx: ActionContext) -> str | None:
        return None

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        assert isinstance(args, PostArgs)
        channel = args.channel.removeprefix("<#").split("|")[0].rstrip(">")
        ts = await ctx.chat.post_text(channel=channel, text=args.text + ctx.author_note)
        return ActionResult(
            output=f"posted to <#{channel}> (ts {ts})",
            summary=f"posted to <#{channel}>",
            undo={"channel": channel, "ts": ts},
        )

    async def compensate(self, ctx: ActionContext, undo: dict[str, Any]) -> str:
        await ctx.chat.delete_message(channel=undo["channel"], ts=undo["ts"])
        return f"deleted the message in <#{undo['channel']}>"


CHAT_ACTIONS: list[type[Action]] = [SlackReply, SlackPost]
