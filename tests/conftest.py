"""Shared fixtures: an isolated promptkit home so tests never touch a user's cache."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("pkhome")
    monkeypatch.setenv("PROMPTKIT_HOME", str(home))
    monkeypatch.delenv("PROMPTKIT_CACHE_DIR", raising=False)
    yield
