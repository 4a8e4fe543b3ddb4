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


@pytest.fixture
def server():
    """A started loopback FakeServer speaking the OpenAI and Anthropic APIs (tests/fakeservers.py)."""
    from fakeservers import FakeServer

    with FakeServer() as srv:
        yield srv


@pytest.fixture
def point_sdk(server, monkeypatch):
    """Point a vendor's real SDK at `server` through its environment variables only: point_sdk("openai", key)."""
    def point(vendor: str, key: str):
        for k, v in server.env(vendor, key=key).items():
            monkeypatch.setenv(k, v)
        return server

    return point


@pytest.fixture
def vendor_env_cleared(monkeypatch):
    """Unset a vendor's variables and forget built providers, so a developer's own keys never leak into a test."""
    from promptkit.providers import clear_providers

    def clear(env_vars):
        for var in env_vars:
            monkeypatch.delenv(var, raising=False)
        clear_providers()

    yield clear
    clear_providers()


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def _registered_providers_restored():
    """A provider a test (or its fixture) registers is gone after it, so no test sees another's `fake:` or
    `canned:`, and no shard worker of a later test imports that test's module to find it."""
    from promptkit import providers

    before, builtin = dict(providers._REGISTERED), dict(providers._BUILTIN)
    yield
    if providers._REGISTERED != before or providers._BUILTIN != builtin:
        providers._REGISTERED.clear()
        providers._REGISTERED.update(before)
        providers._BUILTIN.clear()
        providers._BUILTIN.update(builtin)
        providers.clear_providers()


@pytest.fixture(params=["openai", "anthropic"])
def vendor(request, vendor_env_cleared):
    """Each vendor in turn (fakeservers.VENDORS), with every SDK variable unset first; a one-vendor test module
    overrides it with its own vendor."""
    from fakeservers import SDK_ENV_VARS, VENDORS

    vendor_env_cleared(sorted({v for names in SDK_ENV_VARS.values() for v in names}))
    return VENDORS[request.param]


@pytest.fixture
def pointed(vendor, point_sdk):
    """The vendor's base-URL and key variables point its SDK at the fake server, with its canary key: nothing else
    is configured."""
    return point_sdk(vendor.name, vendor.canary)
