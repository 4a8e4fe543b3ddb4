"""One call to one model: the shortest path from a prompt to a Completion."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from .aio import run_sync
from .providers import DEFAULT_MODEL, get_provider
from .types import Completion, Message, Request, Settings


def build_request(
    prompt: str | Sequence[Message] | Request,
    *,
    system: str | None = None,
    prefill: str = "",
    settings: Settings | None = None,
    stream: bool = False,
    **setting_values: Any,
) -> Request:
    """A Request from a plain string, a list of Messages, or a Request (returned as is, streamed if asked)."""
    if isinstance(prompt, Request):
        return replace(prompt, stream=True) if stream and not prompt.stream else prompt
    if settings is None:
        settings = Settings.from_dict(setting_values)
    elif setting_values:
        settings = Settings.from_dict({**settings.to_dict(), **setting_values})
    if isinstance(prompt, str):
        msgs: list[Message] = ([Message("system", system)] if system else []) + [Message("user", prompt)]
    else:
        msgs = ([Message("system", system)] if system else []) + [
            m if isinstance(m, Message) else Message(m["role"], m["content"]) for m in prompt
        ]
    return Request(messages=tuple(msgs), settings=settings, prefill=prefill, stream=bool(stream))


async def acomplete(prompt: str | Sequence[Message] | Request, model: str = DEFAULT_MODEL, **kwargs: Any) -> Completion:
    """Ask `model` once and return its Completion (errors are recorded in it, not raised).

    `stream=True` streams an API call so time to first token is measured (otherwise None).
    """
    return await get_provider(model).complete(build_request(prompt, **kwargs))


def complete(prompt: str | Sequence[Message] | Request, model: str = DEFAULT_MODEL, **kwargs: Any) -> Completion:
    """Sync `acomplete`, for scripts and notebook cells (works where an event loop already runs)."""
    return run_sync(acomplete(prompt, model, **kwargs))
