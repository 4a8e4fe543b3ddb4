"""Shared fixtures: an isolated promptkit home so tests never touch a user's cache.

Joined local models are the exception: they are verified, read-only and large (0.5-1.1 GB), so
every test shares the user's models folder instead of joining them again per test.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass
class ExecutedChapter:
    """A chapter papermill ran at its CI parameters: the parameters and the executed notebook."""

    params: dict
    nb: Any

    def printed(self, streams: tuple[str, ...] = ("stdout",), sep: str = "") -> str:
        """What the code cells printed on `streams`, joined by `sep`."""
        return sep.join("".join(o.get("text", "")) for c in self.nb.cells if c.cell_type == "code"
                        for o in c.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") in streams)


@pytest.fixture(scope="session")
def execute_chapter(notebook_cache, tmp_path_factory):
    """Run a built chapter at its CI parameters on the session's answer cache: execute_chapter(stem, extra=code
    appended as a last cell, out=where the chapter is written). A chapter runs once per session: a later plain
    request (test_notebooks.py after the curriculum tests) is the same run without the appended cell, whose
    outputs cannot change the chapter's own cells."""
    import nbformat
    import papermill as pm

    from test_notebooks import CI_PARAMETERS, ROOT

    runs: dict[tuple[str, str | None], ExecutedChapter] = {}

    def run(stem: str, *, extra: str | None = None, out: Path | None = None, timeout: int = 900) -> ExecutedChapter:
        done = runs.get((stem, extra))
        if done is None and extra is None:
            done = next((_without_last_cell(r) for (s, x), r in runs.items() if s == stem), None)
        if done is None:
            src, work = ROOT / "notebooks" / f"{stem}.ipynb", tmp_path_factory.mktemp(stem)
            if extra:
                nb = nbformat.read(src, as_version=4)
                nb.cells.append(nbformat.v4.new_code_cell(extra))
                src = work / f"{stem}.ipynb"
                nbformat.write(nb, src)
            params = CI_PARAMETERS.get(stem, {})
            executed = work / f"{stem}.out.ipynb"
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("PROMPTKIT_CACHE_DIR", str(notebook_cache))
                pm.execute_notebook(str(src), str(executed), parameters=params, cwd=str(ROOT / "notebooks"),
                                    kernel_name="python3", progress_bar=False, execution_timeout=timeout)
            done = runs[(stem, extra)] = ExecutedChapter(params, nbformat.read(executed, as_version=4))
        if out is not None:
            nbformat.write(done.nb, out)
        return done

    return run


def _without_last_cell(run: ExecutedChapter) -> ExecutedChapter:
    import copy

    nb = copy.deepcopy(run.nb)
    del nb.cells[-1]
    return ExecutedChapter(run.params, nb)


class ExerciseBar:
    """Issue 14's bar for one exercise on the real model it names: the starter fails, the reference is checked
    (the caller asserts it passes, or holds it as a visible gap). Checks share the session's answer cache, so a
    request another check already made (a comparison goal's reference, the same rows again) is not paid twice."""

    @staticmethod
    def rules(ex) -> None:
        import promptkit as pk

        assert ex.rows >= min(24, len(pk.load_dataset(ex.dataset).split(ex.split).rows))
        assert ex.lower_bound or ex.above_chance, "a goal on a point value lets a lucky row or two pass"

    @staticmethod
    def starter(ex_id: str):
        from promptkit.exercises import check, get_exercise

        start = check(ex_id, get_exercise(ex_id).starter(), progress=False)
        assert not start.passed and start.hint and any(not met for _, met in start.goals), str(start)
        return start

    @staticmethod
    def reference(ex_id: str, allowed: tuple[str, ...] = ()):
        """The reference answer checked on the model it names, which must be the exercise's (or one of `allowed`)."""
        from promptkit.exercises import check, get_exercise, solution

        ex, sol = get_exercise(ex_id), solution(ex_id)
        model = sol.meta.get("model", ex.model)
        assert model in (ex.model, *allowed), "the reference must pass on a model the exercise names or allows"
        return check(ex_id, sol, settings=sol.meta.get("settings"), model=model, progress=False)

    def __call__(self, ex_id: str):
        """rules, starter, reference: returns (exercise, starter's check, reference's check)."""
        from promptkit.exercises import get_exercise

        ex = get_exercise(ex_id)
        self.rules(ex)
        return ex, self.starter(ex_id), self.reference(ex_id)


@pytest.fixture
def chapter_cache(notebook_cache, monkeypatch) -> Path:
    """This test's calls go through the session's answer cache: what the chapters and earlier checks answered."""
    monkeypatch.setenv("PROMPTKIT_CACHE_DIR", str(notebook_cache))
    return notebook_cache


@pytest.fixture
def exercise_bar(chapter_cache) -> ExerciseBar:
    return ExerciseBar()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("pkhome")
    monkeypatch.setenv("PROMPTKIT_HOME", str(home))
    monkeypatch.delenv("PROMPTKIT_CACHE_DIR", raising=False)
    if not os.environ.get("PROMPTKIT_MODELS_DIR"):
        monkeypatch.setenv("PROMPTKIT_MODELS_DIR", SHARED_MODELS_DIR)
    yield


# Variables that decide how many threads llama.cpp (and numpy's BLAS) use in this process and in every kernel,
# dashboard and worker it starts: one left behind made every later model test run on one thread (issue 15).
THREAD_ENV = ("PROMPTKIT_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OMP_THREAD_LIMIT", "MKL_NUM_THREADS",
              "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")
_THREAD_ENV_AT_START = {k: os.environ.get(k) for k in THREAD_ENV}
_LAST_MODULE = {"name": ""}  # the module of the last test that started


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A test may change the thread variables for itself (monkeypatch) or its module (a module fixture), never for
    the modules after it: before the first test of each module (the previous module's fixtures are torn down by
    then, this module's not set up yet) they are as the session started, or that test fails naming them."""
    module = getattr(item.module, "__name__", "")
    if module == _LAST_MODULE["name"]:
        return
    before, _LAST_MODULE["name"] = _LAST_MODULE["name"], module
    now = {k: os.environ.get(k) for k in THREAD_ENV}
    if now != _THREAD_ENV_AT_START:
        left = {k: v for k, v in now.items() if v != _THREAD_ENV_AT_START[k]}
        for k, v in _THREAD_ENV_AT_START.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        pytest.fail(f"the tests of {before} left {left} in os.environ (restored now)")


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
