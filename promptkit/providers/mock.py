"""A scripted provider for fast tests of the runner, lessons and widgets: queue replies, read the requests.

`mock:<name>` answers each call with the next queued reply and records the request it was given, like
simonw/llm's MockModel and inspect_ai's mockllm. It is not a model: use it where a test is about promptkit's
logic, never to measure a prompt. Providers are built once per spec, so `mock_provider("mock:x")` is the
same object the runner calls; `clear_providers()` starts a fresh one.

    m = mock_provider("mock:tiers")
    m.enqueue("Commit", "At-Risk")        # or a Completion (tokens, errors), or a function of the Request
    pk.complete("...", "mock:tiers").text  # "Commit"
    m.requests[0].messages[-1].content     # what the runner sent
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable, Union

from ..errors import PromptkitError
from ..types import Completion, Request
from .base import Provider

Reply = Union[str, Completion, Callable[[Request], Union[str, Completion]]]


class MockProvider(Provider):
    name = "mock"

    def __init__(self, spec) -> None:  # noqa: ANN001 - a ModelSpec, as for every provider
        super().__init__(spec)
        self.replies: deque[Reply] = deque()
        self.requests: list[Request] = []
        self.default: Reply | None = None

    def enqueue(self, *replies: Reply) -> "MockProvider":
        """Queue replies, answered in order; each a text, a Completion, or a function of the Request."""
        self.replies.extend(replies)
        return self

    def always(self, reply: Reply | None) -> "MockProvider":
        """Answer with `reply` whenever the queue is empty (None: an empty queue is an error again)."""
        self.default = reply
        return self

    async def _complete(self, request: Request) -> Completion:
        await asyncio.sleep(0)
        self.requests.append(request)
        if self.replies:
            reply = self.replies.popleft()
        elif self.default is not None:
            reply = self.default
        else:
            raise PromptkitError(f"{self.spec}: no reply queued for call {len(self.requests)}; "
                                 f"queue one with mock_provider({str(self.spec)!r}).enqueue(...)")
        if callable(reply):
            reply = reply(request)
        if isinstance(reply, Completion):
            return reply
        n_in = sum(len(m.content.split()) for m in request.messages)
        return Completion(text=reply, input_tokens=n_in, output_tokens=len(reply.split()), finish_reason="stop",
                          ttft_s=0.0)


def mock_provider(spec: str = "mock:test") -> MockProvider:
    """The MockProvider the runner will call for `spec` (built on first use, then the same one)."""
    from . import get_provider

    prov = get_provider(spec)
    if not isinstance(prov, MockProvider):
        raise PromptkitError(f"{spec!r} is not a mock: spec; write it as mock:<name>")
    return prov


__all__ = ["MockProvider", "mock_provider"]
