"""Shared fixtures: an isolated promptkit home so tests never touch a user's cache.

Joined local models are the exception: they are verified, read-only and large (0.5-1.1 GB), so
every test shares the user's models folder instead of joining them again per test.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from promptkit.config import models_dir

SHARED_MODELS_DIR = str(models_dir())
NOTEBOOK_CACHE = Path(__file__).resolve().parents[1] / "test-artifacts" / "cache"


@pytest.fixture(scope="session")
def notebook_cache() -> Path:
    """The tour's answer cache for this session, emptied once: the dashboard's chapter pages, papermill and
    (in `make test`) nbval run the chapters with the same small parameters, so only the first pays for calls."""
    import shutil

    shutil.rmtree(NOTEBOOK_CACHE, ignore_errors=True)
    NOTEBOOK_CACHE.mkdir(parents=True)
    return NOTEBOOK_CACHE


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("pkhome")
    monkeypatch.setenv("PROMPTKIT_HOME", str(home))
    monkeypatch.delenv("PROMPTKIT_CACHE_DIR", raising=False)
    if not os.environ.get("PROMPTKIT_MODELS_DIR"):
        monkeypatch.setenv("PROMPTKIT_MODELS_DIR", SHARED_MODELS_DIR)
    yield


@pytest.fixture(autouse=True)
def _sigint_restored(request):
    """Ctrl-C tests send a real SIGINT: a handler some code left behind (an event loop's add_signal_handler
    never removed) would swallow it in every later test, so put the default back and name who left it."""
    import signal
    import warnings

    yield
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        warnings.warn(f"{request.node.nodeid} left a SIGINT handler behind; restored the default", stacklevel=1)
        signal.signal(signal.SIGINT, signal.default_int_handler)
