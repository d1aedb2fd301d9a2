"""What a tool call's result becomes: the text the model reads, and the value an undo sees.

A result carries content blocks (text for the model; images, audio and resources, which
are named but not pasted), optionally structured content (JSON matching the tool's output
schema), and `isError`. Servers often repeat the structured content as a text block; it
is shown once.
"""

from __future__ import annotations

import json
from typing import Any

from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
)

OUTPUT_LIMIT = 4_000
"""Characters of a result the model reads (like a configured action's output)."""


def text_of(result: CallToolResult) -> str:
    """Everything the result says, as text."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, (ImageContent, AudioContent)):
            size = len(block.data) * 3 // 4  # base64
            parts.append(f"[{block.type}: {block.mime_type}, {size} bytes, not shown]")
        elif isinstance(block, ResourceLink):
            parts.append(f"[resource link: {block.uri}]")
        elif isinstance(block, EmbeddedResource):
            res = block.resource
            if isinstance(res, BlobResourceContents):
                parts.append(f"[resource {res.uri}: {res.mime_type or 'binary'}, not shown]")
            else:
                parts.append(res.text)
        else:
            parts.append(f"[{getattr(block, 'type', 'content')}: not shown]")
    structured = result.structured_content
    if structured is not None and not _repeated(parts, structured):
        shown = structured["result"] if _wrapped(structured) else structured
        parts.append(json.dumps(shown, ensure_ascii=False, default=str))
    return "\n".join(parts) or "(no output)"


def value_of(result: CallToolResult) -> Any:
    """The result as an undo template sees it (`result`): the structured content, else the
    text parsed as JSON when it is JSON, else the text."""
    if result.structured_content is not None:
        return result.structured_content
    texts = [b.text for b in result.content if isinstance(b, TextContent)]
    text = "\n".join(texts)
    parsed = _parsed(text)
    return text if parsed is None else parsed


def cut(text: str, limit: int = OUTPUT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… [{len(text) - limit} more characters]"


def _repeated(parts: list[str], structured: Any) -> bool:
    """Whether the text blocks already say what the structured content says. Servers send
    both; a plain value is wrapped as {"result": value}, a list's items are one block each."""
    if not parts:
        return False
    meant = [structured, structured["result"]] if _wrapped(structured) else [structured]
    joined = "\n".join(parts)
    items = [p if _parsed(p) is None else _parsed(p) for p in parts]
    said = [joined, _parsed(joined), parts, items]
    return any(m == s for m in meant for s in said if s is not None)


def _wrapped(structured: Any) -> bool:
    """{"result": value}: how a tool's plain return value travels as structured content."""
    return isinstance(structured, dict) and set(structured) == {"result"}


def _parsed(text: str) -> Any:
    """The text as JSON, or None when it is not JSON (or is JSON's null)."""
    try:
        return json.loads(text)
    except ValueError:
        return None
