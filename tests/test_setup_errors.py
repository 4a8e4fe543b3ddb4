"""Setup problems are said on the terminal before any call, naming what, where and what to do.

A broken cache, a row that is not text, an --out that cannot take the results, a grid too
large to build, a missing key, an endpoint where nothing listens, a broken models file:
each found before anything is paid for (or, for a failing endpoint, said plainly at the
end). Keys in use are removed from everything written, whatever their shape or variable.
Runs go through the CLI with the real OpenAI SDK against a loopback server.
"""
from __future__ import annotations

import json
import os
import pickle
import socket
from pathlib import Path

import pytest

from fakeservers import FakeServer
from promptkit.cache import DiskCache, SqliteCache, cell_key
from promptkit.catalog import CATALOG_PATH
from promptkit.cli import main
from promptkit.config import cache_dir
from promptkit.errors import ExperimentError
from promptkit.experiment import Experiment
from promptkit.providers import clear_providers, get_provider
from promptkit.runner import run
from promptkit.templates import Template
from promptkit.types import Message, Request, Row

TIER = 'name: tier\nturns:\n  - role: user\n    content: "Notes: {{notes}}"\n'
MODEL = "openai:gpt-4o-mini"
N_ROWS = 3


def row(i: int, notes: str | None = None) -> str:
    return json.dumps({"id": f"a{i}", "split": "test", "input": {"notes": notes or f"account {i}"},
                       "target": "Commit"})


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder with tier.yaml, rows.jsonl and exp.yaml (one OpenAI model over 3 rows); cwd is it."""
    monkeypatch.chdir(tmp_path)
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PROMPTKIT_MODELS_FILE", "PROMPTKIT_MAX_CELLS"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "tier.yaml").write_text(TIER)
    (tmp_path / "rows.jsonl").write_text("\n".join(row(i) for i in range(N_ROWS)) + "\n")
    write_exp(tmp_path)
    clear_providers()
    yield tmp_path
    clear_providers()


def write_exp(folder: Path, extra: str = "", models: str = MODEL) -> None:
    (folder / "exp.yaml").write_text(f"name: setup\nprompts: [{{template: tier.yaml}}]\nmodels: [{models}]\n"
                                     f"dataset: rows.jsonl\n{extra}")


@pytest.fixture
def server(monkeypatch):
    with FakeServer() as srv:
        for k, v in srv.env("openai", key="sk-fake-setup-key-123").items():
            monkeypatch.setenv(k, v)
        yield srv


def cli(*args: str) -> int:
    clear_providers()
    return main(["run", "exp.yaml", "--no-progress", *args])


# ---- a broken cache is said at the start; a damaged SQLite file is moved aside and replaced ----------------

def test_a_cache_of_random_bytes_is_moved_aside_and_a_new_one_keeps_this_runs_answers(work, server, capsys):
    db = cache_dir() / "cache.sqlite3"
    db.parent.mkdir(parents=True)
    db.write_bytes(os.urandom(64 * 1024))
    assert cli("--out", "out") == 0
    err = capsys.readouterr().err
    aside = [p for p in db.parent.iterdir() if p.name.startswith("cache.sqlite3.damaged-")]
    assert len(aside) == 1 and aside[0].stat().st_size == 64 * 1024  # kept for inspection
    assert (f"promptkit: the answer cache {db} was damaged (not an SQLite database); moved it to {aside[0]} "
            "(kept for inspection) and started a new one") in err
    assert len(server.calls) == N_ROWS
    assert cli("--out", "out") == 0  # the new cache answers the re-run: nothing is paid twice
    assert len(server.calls) == N_ROWS and "damaged" not in capsys.readouterr().err


def test_a_truncated_cache_file_is_moved_aside(work, server, capsys):
    assert cli("--out", "out") == 0 and len(server.calls) == N_ROWS
    db = cache_dir() / "cache.sqlite3"
    for i in range(300):  # enough answers that the file spans many pages
        from promptkit.cache import SqliteCache
        from promptkit.types import Completion
        SqliteCache(db).put(f"{i:064x}", Completion(text="filler " * 50))
    data = db.read_bytes()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert cli("--out", "out") == 0
    err = capsys.readouterr().err
    assert f"the answer cache {db} was damaged (" in err and "moved it to" in err
    assert len(server.calls) == 2 * N_ROWS  # its answers were lost with the damage: asked again, once


def test_a_cache_path_that_is_a_file_is_said_before_any_call(work, server, capsys, monkeypatch):
    blocker = work / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("PROMPTKIT_CACHE_DIR", str(blocker))
    assert cli("--out", "out") == 0  # the run still answers every cell
    err = capsys.readouterr().err
    assert (f"promptkit: cannot write the answer cache {blocker / 'cache.sqlite3'}: {blocker} is a file, not a folder. "
            "This run's answers will not be kept, so running again pays for them again; make it writable, or point "
            "PROMPTKIT_CACHE_DIR (or cache_backend=) at a folder you can write, or run with cache='off'") in err
    assert len(server.calls) == N_ROWS


def read_only_folder(tmp_path: Path) -> Path:
    """A folder that refuses writes: chmod 555 for a normal user; as root (which ignores permission bits), sysfs."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    return Path("/sys/kernel")  # refuses new files even to root


def test_a_read_only_cache_folder_is_said_before_any_call(tmp_path, capsys):
    """Found by trying to write, not from permission bits, which root (and immutable folders) make meaningless."""
    folder = read_only_folder(tmp_path)
    assert SqliteCache(folder / "cache.sqlite3").check() == [
        f"cannot write the answer cache {folder}/cache.sqlite3: cannot write in {folder} (PermissionError: "
        f"Permission denied). This run's answers will not be kept, so running again pays for them again; make it "
        f"writable, or point PROMPTKIT_CACHE_DIR (or cache_backend=) at a folder you can write, or run with "
        f"cache='off'"]
    assert DiskCache(folder / "answers").check()[0].startswith(
        f"cannot write the answer cache {folder}/answers: cannot write in {folder} (PermissionError")
    t = Template(name="t", turns=[{"role": "user", "content": "{{q}}"}])
    e = Experiment(variants=[t], models=["echo:x"], rows=[Row(id="a", input={"q": "hi"})])
    res = run(e, cache_backend=folder / "answers", progress=False)
    assert res.meta["cache_problems"] and res.results[0].completion.ok
    assert f"promptkit: cannot write the answer cache {folder}/answers" in capsys.readouterr().err


def test_the_unreadable_store_the_runner_was_given_is_replaced_not_silently_missed(tmp_path):
    path = tmp_path / "broken.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    t = Template(name="t", turns=[{"role": "user", "content": "{{q}}"}])
    e = Experiment(variants=[t], models=["echo:x"], rows=[Row(id="a", input={"q": "hi"})])
    first = run(e, cache_backend=path, progress=False)
    assert "damaged" in first.meta["cache_problems"][0] and "cache_write_errors" not in first.meta
    again = run(e, cache_backend=path, progress=False)
    assert again.meta["counts"]["cache_hits"] == 1


# ---- bad rows, --out and grid size: refused before the first call ---------------------------------------------

def test_a_row_with_a_lone_surrogate_is_reported_with_file_line_and_field_before_any_call(work, server, capsys):
    (work / "rows.jsonl").write_text(row(0) + "\n" + row(1, "cut \ud83d here") + "\n")
    assert cli("--out", "out") == 2
    err = capsys.readouterr().err
    assert err == ("promptkit: exp.yaml, line 4, field 'dataset.path': rows.jsonl line 2: field 'input.notes': "
                   "contains a lone surrogate \\ud83d at character 4 (half of an emoji or a broken escape), which is "
                   "not text: fix or remove it\n")
    assert server.calls == [] and not (work / "out").exists()


def test_a_row_built_in_python_with_a_lone_surrogate_names_the_row_and_field():
    t = Template(name="t", turns=[{"role": "user", "content": "{{q}}"}])
    e = Experiment(variants=[t], models=["echo:x"], rows=[Row(id="ok", input={"q": "fine"}),
                                                          Row(id="bad", input={"q": "cut \ud83d here"})])
    with pytest.raises(ExperimentError) as err:
        run(e, progress=False)
    assert str(err.value) == ("row 'bad', field 'input.q': contains a lone surrogate \\ud83d at character 4 (half of "
                              "an emoji or a broken escape), which is not text: fix or remove it; nothing was run")


def test_out_naming_an_existing_file_is_refused_before_any_call(work, server, capsys):
    (work / "taken").write_text("not a folder")
    assert cli("--out", "taken") == 2
    assert capsys.readouterr().err == (
        "promptkit: --out taken: is a file; give a folder for results.csv, results.jsonl, report.html "
        "(or remove the file)\n")
    assert server.calls == []
    assert cli("--out", "taken/inside") == 2
    assert "taken is a file, so the folder cannot be made" in capsys.readouterr().err and server.calls == []


def test_a_grid_past_the_limit_is_refused_before_it_is_built(work, server, capsys, monkeypatch):
    write_exp(work, "repeats: 100000000\n")
    assert cli("--out", "out") == 2
    assert capsys.readouterr().err == (
        "promptkit: exp.yaml: the grid has 300,000,000 cells (3 prompt-row pair(s) x 1 model(s) x 1 setting(s) "
        "x 100000000 repeat(s)), more than the limit of 1,000,000; nothing was run. Lower repeats, rows or the "
        "sweep, or raise the limit with the environment variable PROMPTKIT_MAX_CELLS=300000000\n")
    write_exp(work, "repeats: 2\n")
    monkeypatch.setenv("PROMPTKIT_MAX_CELLS", "5")
    assert cli("--out", "out") == 2 and "the grid has 6 cells" in capsys.readouterr().err
    monkeypatch.setenv("PROMPTKIT_MAX_CELLS", "6")
    assert cli("--out", "out") == 0 and len(server.calls) == 6
    assert server.calls


# ---- the cache key follows the endpoint the SDK variables choose --------------------------------------------

@pytest.mark.parametrize("vendor,model", [("openai", MODEL), ("anthropic", "anthropic:claude-haiku-4-5")])
def test_the_same_spec_at_another_base_url_is_another_cell(vendor, model, monkeypatch, tmp_path):
    t = Template(name="t", turns=[{"role": "user", "content": "{{q}}"}])
    e = Experiment(variants=[t], models=[model], rows=[Row(id=f"r{i}", input={"q": f"q{i}"}) for i in range(4)])
    with FakeServer() as one, FakeServer() as two:
        keys = []
        for srv in (one, two, one):
            for k, v in srv.env(vendor).items():
                monkeypatch.setenv(k, v)
            clear_providers()
            res = run(e, cache_backend=tmp_path / "c.sqlite3", progress=False)
            keys.append({r.cell.key for r in res.results})
        assert len(one.calls) == 4 and len(two.calls) == 4  # the second server was asked; the first answered once
        assert keys[0] == keys[2] and not keys[0] & keys[1]
    req = Request(messages=(Message("user", "q"),))
    monkeypatch.setenv(f"{vendor.upper()}_BASE_URL", "http://gateway.example/v1/")
    slash = cell_key(model, req)
    monkeypatch.setenv(f"{vendor.upper()}_BASE_URL", "http://gateway.example/v1")
    assert cell_key(model, req) == slash  # a trailing slash is the same server


# ---- keys in use are redacted whatever their variable or shape ----------------------------------------------

GATEWAY_KEY = "gw-Q7hL2mN9pXv4TsW8yZb3"  # no sk- prefix, and its variable is not *_API_KEY


@pytest.mark.parametrize("key_env", ["LLM_GATEWAY_KEY", "GATEWAY_CREDENTIAL"])
def test_a_key_from_a_custom_variable_echoed_by_a_401_reaches_no_output(key_env, work, monkeypatch, capfd):
    models = CATALOG_PATH.read_text(encoding="utf-8").replace(
        "    key_env: OPENAI_API_KEY\n", f"    key_env: {key_env}\n", 1)
    assert key_env in models
    (work / "models.yaml").write_text(models)
    monkeypatch.setenv("PROMPTKIT_MODELS_FILE", str(work / "models.yaml"))
    monkeypatch.setenv(key_env, GATEWAY_KEY)
    with FakeServer(api_key="the-right-gateway-key") as srv:  # answers 401 quoting the key it was sent
        monkeypatch.setenv("OPENAI_BASE_URL", srv.openai_base_url)
        assert cli("--out", "out") == 0
        sent = {c.headers.get("authorization") for c in srv.calls}
    assert sent == {f"Bearer {GATEWAY_KEY}"}  # the key really went out, so its absence below means something
    captured = capfd.readouterr()
    texts = {"stdout": captured.out, "stderr": captured.err}
    for name in ("results.csv", "results.jsonl", "report.html"):
        texts[name] = (work / "out" / name).read_text(encoding="utf-8")
    assert "Incorrect API key provided: [REDACTED]" in texts["results.jsonl"]
    assert "failed with 'auth'" in texts["stderr"] and f"refused the key from {key_env}" in texts["stderr"]
    leaked = [where for where, text in texts.items() if GATEWAY_KEY in text or GATEWAY_KEY[3:15] in text]
    assert leaked == []
    provider = get_provider(MODEL)
    dumps = [repr(provider), repr(vars(provider)), repr(vars(provider.endpoint)), str(pickle.dumps(provider))]
    assert not [d for d in dumps if GATEWAY_KEY in d]
    assert pickle.loads(pickle.dumps(provider)).endpoint.api_key == GATEWAY_KEY  # read again from its variable


def test_the_anthropic_key_is_not_in_instance_state(monkeypatch):
    key = "plain-anthropic-key-without-shape-77"
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    clear_providers()
    p = get_provider("anthropic:claude-haiku-4-5")
    assert key not in repr(vars(p)) and key not in repr(p) and key.encode() not in pickle.dumps(p)
    clear_providers()


# ---- a missing key, an endpoint with nothing listening, a broken models file ---------------------------------

def test_a_missing_key_is_said_on_the_terminal(work, capsys):
    assert cli("--out", "out") == 0
    err = capsys.readouterr().err
    assert ("promptkit: openai:gpt-4o-mini cannot be called, so its cells are marked error_kind 'config': "
            "openai needs an API key: set the environment variable OPENAI_API_KEY in your shell, or add a line for "
            "OPENAI_API_KEY to a .env file in the folder you start from") in err


def test_nothing_listening_at_the_base_url_is_said_with_the_url_and_the_variable(work, monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-unreachable-1")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    write_exp(work, "run: {max_attempts: 1}\n")
    assert cli("--out", "out") == 0
    err = capsys.readouterr().err
    assert (f"promptkit: {N_ROWS} cell(s) of openai:gpt-4o-mini failed with 'connection': APIConnectionError: "
            f"Connection error. (no complete answer from http://127.0.0.1:{port}/v1; if nothing listens there, "
            f"start the server or set OPENAI_BASE_URL)") in err


def test_a_broken_models_file_names_file_line_and_column(work, monkeypatch, capsys):
    bad = work / "models.yaml"
    bad.write_text("providers:\n  openai:\n    key_env: [OPENAI_API_KEY\n")
    monkeypatch.setenv("PROMPTKIT_MODELS_FILE", str(bad))
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"promptkit: {bad}, line 4, column 1: not valid YAML: ")
    assert "PROMPTKIT_MODELS_FILE names this file: fix it or unset the variable" in err


def test_a_missing_optional_package_says_what_needs_it_and_how_to_install_it(monkeypatch):
    import sys

    from promptkit.cluster import _distributed
    from promptkit.errors import MissingPackageError, require

    assert require("json", "never said") is json
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(MissingPackageError, match=r"^cluster= needs Dask distributed: pip install 'promptkit\[cluster\]'"):
        _distributed()
    with pytest.raises(ImportError):  # still an ImportError for code that catches that
        require("no_such_module_here", "install it")
