"""Ctrl-C stops a run within a second wherever it runs, keeps what finished, and errors show only themselves.

Each test sends a real SIGINT to this process, as a terminal or Jupyter's stop button does.
"""
from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import traceback

import pytest

import promptkit as pk
from promptkit.errors import SettingsError
from promptkit.types import Request
from promptkit.cache import MemoryCache
from promptkit.errors import ExperimentError
from promptkit.experiment import Experiment
from promptkit.providers import Provider, clear_providers, register
from promptkit.runner import run
from promptkit.templates import Template
from promptkit.types import Completion, Row

QUICK = 4  # cells that answer at once; every other cell hangs until cancelled
HANG_S = 3.0


class HangingProvider(Provider):
    """`hang:<model>`: answers 'q0'..'q3' at once, hangs on the rest; records what was cancelled."""

    name = "hang"
    started: list[str] = []
    cancelled: list[str] = []

    async def _complete(self, request: Request) -> Completion:
        text = request.messages[-1].content
        HangingProvider.started.append(text)
        if int(text[1:]) < QUICK:
            return Completion(text="ok " + text, input_tokens=1, output_tokens=1)
        try:
            await asyncio.sleep(HANG_S)
        except asyncio.CancelledError:
            HangingProvider.cancelled.append(text)
            raise
        return Completion(text="late " + text, input_tokens=1, output_tokens=1)


@pytest.fixture(autouse=True)
def fresh():
    register("hang", HangingProvider)  # for this test only: conftest removes providers a test registers
    HangingProvider.started, HangingProvider.cancelled = [], []
    clear_providers()
    yield
    clear_providers()


def grid(n: int = 24) -> Experiment:
    t = Template(name="t", turns=[{"role": "user", "content": "{{q}}"}])
    return Experiment(variants=[t], models=["hang:m"], rows=[Row(id=f"r{i}", input={"q": f"q{i}"}) for i in range(n)])


def ctrl_c_after(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_ctrl_c_under_asyncio_run_stops_within_a_second_and_keeps_finished_answers():
    """A script's `asyncio.run(main())` whose main calls the sync `pk.run`: asyncio's own SIGINT
    handler only cancels main's task, which never yields while pk.run blocks, so the calls went on."""
    store = MemoryCache()

    async def main():
        return run(grid(), cache_backend=store, progress=False, concurrency=8)

    timer = ctrl_c_after(0.5)
    t0 = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            asyncio.run(main())
    finally:
        timer.cancel()
    stopped_after = time.perf_counter() - t0 - 0.5
    assert stopped_after < 1.0, f"took {stopped_after:.2f} s after Ctrl-C to stop"
    assert len(store) == QUICK  # the finished answers are kept
    # the quick cells freed their slots for 4 more; then 8 hung in flight and no call began after the interrupt
    assert len(HangingProvider.started) == QUICK + 8
    assert sorted(HangingProvider.cancelled) == sorted(HangingProvider.started[QUICK:])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # asyncio.run's handler was put back


def test_a_sigint_handler_left_behind_by_other_code_does_not_swallow_ctrl_c():
    """The cause of the order-dependent suite failure (issue 16 item 12): an event loop that added a
    SIGINT handler and never removed it (nbclient does so per notebook and removes it only once the
    kernel started) leaves asyncio's no-op handler installed process-wide, so SIGINT no longer raises."""
    leftover = asyncio.new_event_loop()
    leftover.add_signal_handler(signal.SIGINT, lambda: None)
    assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    loop = asyncio.new_event_loop()  # like ipykernel's loop

    async def notebook_cell():
        return run(grid(), cache_backend=MemoryCache(), progress=False, concurrency=8)

    timer = ctrl_c_after(0.5)
    t0 = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(notebook_cell())
        assert time.perf_counter() - t0 < 1.5
        assert len(HangingProvider.cancelled) == 8 and len(HangingProvider.started) == QUICK + 8
    finally:
        timer.cancel()
        loop.close()
        leftover.close()  # removes its handler: SIGINT raises again
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _chain(exc: BaseException) -> list[BaseException]:
    out = []
    while exc is not None:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def test_errors_from_run_and_complete_in_a_script_carry_no_event_loop_noise():
    with pytest.raises(ExperimentError) as run_err:
        run(grid(2), concurrency=0, progress=False)
    with pytest.raises(SettingsError) as complete_err:
        pk.complete("q", "echo:x", max_tokens=0)
    for info in (run_err, complete_err):
        text = "".join(traceback.format_exception(info.value))
        assert "no running event loop" not in text, text
        assert len(_chain(info.value)) == 1
