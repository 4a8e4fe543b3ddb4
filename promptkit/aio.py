"""Sync at the edge: run a coroutine from a script or from a Jupyter cell whose loop already runs."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import threading
from typing import Any, Coroutine, Iterator, TypeVar

T = TypeVar("T")


def loop_running() -> bool:
    """Whether an event loop runs in this thread (asked outside any `except`, so no error is chained)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion and return its result, whether or not an event loop is running here."""
    if not loop_running():
        return asyncio.run(coro)
    # A loop already runs in this thread (Jupyter, an async app): run on a fresh loop in a worker thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="promptkit-sync") as pool:
        return pool.submit(asyncio.run, coro).result()


@contextlib.contextmanager
def ctrl_c_raises() -> Iterator[None]:
    """While a blocking wait runs in the main thread, make Ctrl-C raise KeyboardInterrupt there.

    Under `asyncio.run` the outer loop's SIGINT handler only cancels its main task, which
    a thread blocked in a sync call never sees; a handler left behind by other code (an
    event loop's `add_signal_handler` that was never removed) swallows the signal. Either
    way the calls would go on. A SIGINT that the process was started ignoring stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGINT)
    except (ValueError, OSError):  # pragma: no cover - no signals on this platform
        yield
        return
    if previous in (signal.SIG_IGN, signal.default_int_handler) or previous is None:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous)
