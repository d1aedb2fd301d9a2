"""What a failed call to the model server means: an outage to wait out, or a request it refuses.

The two look alike on the wire and call for opposite answers:

- **The server is down or busy**: no answer at all (a refused connection, a timeout), or HTTP
  408, 409, 425, 429, 502, 503 or 504 (busy, rate-limited, or a proxy in front of it that could
  not reach it). The same request succeeds later, so it is tried again here with backoff, and
  once those tries are spent the run waits the outage out (agents/loop.py, `_wait_for_model`).
- **The server refused this request**: any other 4xx (a bad parameter, an unknown model, a
  context too long, a wrong key). Sending it again gets the same answer, so it is sent once, and
  the run fails at once with the server's words.

HTTP 500 (and the other 5xx) says only that the server was up and failed while handling the
request, which is either. OpenAI's passing faults say `"type": "server_error"` and clear on a
retry: they count as an outage. Any other 500 is most often an exception this very request
raised in the server (llama-cpp-python answers every exception of its handler, such as a chat
template choking on a null, with HTTP 500 "internal_server_error" and the exception's text),
and the server raises it again each time. So such a 500 is tried once more, in case it was
passing, and a second one for the same request means the request is what fails: it is not sent
a third time.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import aiohttp
import openai

from agents.errors import ModelError

OUTAGE_STATUSES = frozenset({408, 409, 425, 429, 502, 503, 504})
PASSING_FAULT = "server_error"
"""The error type OpenAI gives its own passing faults (a 500 that a retry clears)."""
CRASHES_BEFORE_REFUSED = 2
"""500s (other than PASSING_FAULT) for one request after which it is not sent again."""
RETRY_FIRST = 0.5  # seconds before the first retry; doubled each time
RETRY_MAX = 8.0
RETRY_AFTER_MAX = 60.0
"""A server's Retry-After longer than this is not slept on here: the run waits instead."""
HINTS = {
    "max_tokens": 'for a reasoning model, set max_tokens_param = "max_completion_tokens" under '
    '[models."{model}"] in the configuration',
    "temperature": 'for a model that takes no temperature, set temperature = false under [models."{model}"] '
    "in the configuration",
}


def is_crash(e: Exception) -> bool:
    """An answer of 5xx that is neither a known outage status nor OpenAI's passing fault."""
    return (
        isinstance(e, openai.APIStatusError)
        and e.status_code >= 500
        and e.status_code not in OUTAGE_STATUSES
        and e.type != PASSING_FAULT
    )


def _refused(e: BaseException) -> bool:
    """The connection was never made (refused, no route, no such host): the SDK's aiohttp
    transport reports it as a connect timeout, whose cause says what it was."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, aiohttp.ClientConnectorError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def judge(e: openai.OpenAIError, *, model: str, crashes: int) -> ModelError:
    """The ModelError for a failed call; `transient` when it is an outage to try again later.

    `crashes`: how many times this request has crashed the server so far, this time included."""
    if isinstance(e, openai.APITimeoutError) and not _refused(e):
        return ModelError("the model did not answer in time", transient=True)
    if isinstance(e, openai.APIConnectionError):
        return ModelError("could not reach the model server", transient=True)
    if not isinstance(e, openai.APIStatusError):
        return ModelError(f"model error: {type(e).__name__}: {brief(e)}")
    code = e.status_code
    if code in OUTAGE_STATUSES or (code >= 500 and not is_crash(e)):
        return ModelError(f"the model server answered HTTP {code}: {brief(e)}", transient=True)
    if code >= 500:
        if crashes < CRASHES_BEFORE_REFUSED:
            return ModelError(f"the model server answered HTTP {code}: {brief(e)}", transient=True)
        return ModelError(
            f"the model server failed on this request {crashes} times (HTTP {code}: {brief(e)}); "
            "it was not sent again"
        )
    hint = next((h for word, h in HINTS.items() if code == 400 and word in str(e)), None)
    suffix = f" ({hint.format(model=model)})" if hint else ""
    return ModelError(f"the model server refused the request (HTTP {code}: {brief(e)}){suffix}")


def retry_delay(attempt: int, headers: Mapping[str, str] | None) -> float:
    """Seconds before try `attempt + 1`: what the server asked for, else backoff with jitter."""
    if headers is not None:
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            try:
                asked = float(headers.get(name, "")) * scale
            except ValueError:
                continue
            if 0 <= asked <= RETRY_AFTER_MAX:
                return asked
    return min(RETRY_FIRST * 2**attempt, RETRY_MAX) * random.uniform(0.75, 1.0)


def brief(e: Exception) -> str:
    text = str(e)
    return text if len(text) < 300 else text[:300] + "…"
