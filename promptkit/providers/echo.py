"""A tiny in-process provider for fast tests and offline demos of the runner.

`echo:<anything>` answers with the last user message, cut to max_tokens words.
It needs no model and no network, so runner tests can run thousands of cells in
a second. It is not a model: never use it to measure a prompt.
"""
from __future__ import annotations

import asyncio

from ..types import Completion, Request
from .base import Provider


class EchoProvider(Provider):
    name = "echo"

    async def _complete(self, request: Request) -> Completion:
        await asyncio.sleep(0)
        user = [m.content for m in request.messages if m.role == "user"][-1]
        words = (request.prefill + user).split()
        out = words[: request.settings.max_tokens]
        n_in = sum(len(m.content.split()) for m in request.messages)
        return Completion(
            text=" ".join(out), input_tokens=n_in, output_tokens=len(out),
            finish_reason="length" if len(words) > len(out) else "stop", ttft_s=0.0,
        )
