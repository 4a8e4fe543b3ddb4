"""Secrets: with canary API keys set, nothing promptkit writes, logs, raises or shows contains them.

One test does what a practitioner does in a day (a grid through both vendor SDKs
with server errors and 401s that quote the key back, the disk cache, CSV, JSONL
and HTML exports, the CLI, a notebook executed by papermill with the keys in the
kernel's environment) with every logger at DEBUG, then searches every file
written, every log record, stdout/stderr and every exception text and repr.
"""
from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest

import promptkit as pk
from promptkit.graders import label_match
from fakeservers import FakeServer, Fault
from promptkit.cache import DiskCache
from promptkit.cli import main
from promptkit.config import data_home
from promptkit import errors
from promptkit.errors import PromptkitError, SettingsError, redact, register_secret
from promptkit.experiment import Experiment
from promptkit.limits import RetryPolicy
from promptkit.providers import clear_providers, get_provider
from promptkit.results import Results
from promptkit.runner import run
from promptkit.templates import Template
from promptkit.types import Grade, Row, Settings

CANARY_OPENAI = "sk-canary-oa-9f8e7d6c5b4a39281706"
CANARY_ANTHROPIC = "sk-ant-canary-5e4d3c2b1a09f8e7d6c5"
CANARIES = (CANARY_OPENAI, CANARY_ANTHROPIC)
# pieces a partial redaction could leave behind
FRAGMENTS = CANARIES + ("9f8e7d6c5b4a3928", "5e4d3c2b1a09f8e7")
LOGGERS = ("promptkit", "openai", "anthropic", "httpx", "httpcore", "httpx2", "httpcore2")  # the SDKs use httpx2
VENDOR_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN",
              "PROMPTKIT_TIMEOUT_S", "OPENAI_LOG", "ANTHROPIC_LOG")


def leaks(text: str) -> list[str]:
    return [f for f in FRAGMENTS if f in text]


class KeyDumpingGrader:
    """A buggy grader that puts the request headers in its exception (as a careless script would)."""

    name = "dumps_headers"

    def __call__(self, completion, target) -> Grade:
        raise RuntimeError(f"could not grade; request headers were {{'Authorization': 'Bearer {CANARY_OPENAI}', "
                           f"'x-api-key': '{CANARY_ANTHROPIC}'}}")


NOTEBOOK_CELLS = [
    ("parameters", "OPENAI_B = ''\nANTHROPIC_B = ''"),
    (None, "import logging, os\nimport promptkit as pk\n"
           "logging.basicConfig(level=logging.DEBUG, force=True)\n"
           f"for name in {LOGGERS!r}:\n    logging.getLogger(name).setLevel(logging.DEBUG)\n"
           "print('keys set:', len(os.environ['OPENAI_API_KEY']) > 0, len(os.environ['ANTHROPIC_API_KEY']) > 0)"),
    (None, "c = pk.complete('Is this account at risk?', OPENAI_B, max_tokens=8)\nprint(c)\nprint(c.error)\nc"),
    (None, "c2 = pk.complete('Renewal email, please', ANTHROPIC_B, max_tokens=8)\nprint(repr(c2))\nc2"),
    (None, "from promptkit.errors import PromptkitError\ntry:\n    raise PromptkitError('a message quoting ' + os.environ['OPENAI_API_KEY'])\n"
           "except PromptkitError as exc:\n    print('caught:', exc)"),
]


def run_notebook(folder: Path, openai_b: str, anthropic_b: str) -> Path:
    import nbformat
    import papermill as pm

    nb = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    for tag, src in NOTEBOOK_CELLS:
        cell = nbformat.v4.new_code_cell(src)
        if tag:
            cell.metadata["tags"] = [tag]
        nb.cells.append(cell)
    src, out = folder / "failing_call.ipynb", folder / "failing_call.out.ipynb"
    nbformat.write(nb, src)
    pm.execute_notebook(str(src), str(out), parameters={"OPENAI_B": openai_b, "ANTHROPIC_B": anthropic_b},
                        cwd=str(folder), kernel_name="python3", progress_bar=False, execution_timeout=300)
    return out


@pytest.fixture
def canary_env(monkeypatch):
    for var in VENDOR_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_OPENAI)
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY_ANTHROPIC)
    clear_providers()
    yield
    clear_providers()


@pytest.mark.notebook
def test_canary_keys_appear_in_no_file_log_output_exception_or_repr(canary_env, tmp_path, monkeypatch, caplog, capfd):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    texts: dict[str, str] = {}  # everything produced in memory, by where it came from
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with FakeServer(faults=[Fault("server", when=lambda c: "account 3" in c.last_user)]) as ok_srv, \
            FakeServer(api_key="sk-the-right-key-000") as strict_srv:
        # the SDKs' own variables point at a server that fails sometimes; @url specs at one that answers 401
        monkeypatch.setenv("OPENAI_BASE_URL", ok_srv.openai_base_url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", ok_srv.anthropic_base_url)
        openai_b = f"openai:gpt-4o-mini@{strict_srv.openai_base_url}"
        anthropic_b = f"anthropic:claude-haiku-4-5@{strict_srv.anthropic_base_url}"
        models = ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5", openai_b, anthropic_b]
        variants = [Template(name=f"v{i}", turns=[{"role": "user", "content": f"v{i} tier for {{{{notes}}}}"}])
                    for i in range(2)]
        rows = [Row(id=f"r{i}", input={"notes": f"account {i}"}, target="Commit") for i in range(4)]
        e = Experiment(variants=variants, models=models, rows=rows, settings=Settings(max_tokens=16),
                       graders=[label_match(["Commit", "Likely", "At-Risk"]), KeyDumpingGrader()])
        res = run(e, cache_backend=work / "cache", retry=RetryPolicy(max_attempts=2, base_s=0.01), timeout_s=10,
                  progress=True)
        kinds = {r.completion.error_kind for r in res.results}
        assert {None, "auth", "server"} <= kinds, kinds  # answers, 401s and 500s all happened
        assert len(DiskCache(work / "cache")) > 0

        res.to_csv(work / "results.csv")
        res.to_jsonl(work / "results.jsonl")
        res.to_html(work / "report.html")
        back = Results.from_jsonl(work / "results.jsonl")
        texts["results"] = "\n".join([
            repr(res), res._repr_html_(), res.df.to_string(), res.df.to_csv(), repr(res.meta), repr(back.meta),
            str(res.summary()), *(repr(r) for r in res.results), *(repr(r) for r in back.results),
        ])
        texts["errors"] = "\n".join(r.completion.error or "" for r in res.results)
        texts["grades"] = "\n".join(g.reason for r in res.results for g in r.grades.values())
        assert "Incorrect API key provided: [REDACTED]" in texts["errors"]

        # single calls, the CLI, provider objects and exceptions
        single = [pk.complete("q", m, max_tokens=4) for m in (openai_b, anthropic_b)]
        assert all(c.error_kind == "auth" for c in single)
        texts["single"] = "\n".join(repr(c) + str(c.to_dict()) for c in single)
        texts["providers"] = "\n".join(repr(get_provider(m)) for m in models)
        assert main(["complete", "q", "-m", openai_b, "-n", "4"]) == 1
        assert main(["models"]) == 0
        caught = []
        for make in (lambda: PromptkitError(f"bad key {CANARY_OPENAI}"),
                     lambda: SettingsError(f"headers: {{'x-api-key': '{CANARY_ANTHROPIC}'}}")):
            try:
                raise make()
            except PromptkitError as exc:
                caught.append("".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.args))
        texts["exceptions"] = "\n".join(caught)

        nb_out = run_notebook(work, openai_b, anthropic_b)
        nb_text = nb_out.read_text(encoding="utf-8")
        assert "Incorrect API key provided: [REDACTED]" in nb_text and "keys set: True True" in nb_text
        assert "caught: a message quoting [REDACTED]" in nb_text

        # the keys really were sent: otherwise "nowhere" would prove nothing
        sent = [c.headers.get("authorization", "") + c.headers.get("x-api-key", "") for c in strict_srv.calls]
        assert any(CANARY_OPENAI in s for s in sent) and any(CANARY_ANTHROPIC in s for s in sent)
        assert len(strict_srv.calls) >= 2 * 8 + 2 + 1 + 2  # grid, single calls, CLI, notebook

    captured = capfd.readouterr()
    texts["stdout"], texts["stderr"] = captured.out, captured.err
    texts["log"] = caplog.text + "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    emitted = {r.name.split(".")[0] for r in caplog.records}
    assert {"openai", "anthropic"} <= emitted and emitted & {"httpx", "httpx2"} and emitted & {"httpcore", "httpcore2"}
    assert "401" in texts["log"] and "stopped" not in texts["stderr"]

    found = {where: leaks(text) for where, text in texts.items() if leaks(text)}
    written = [p for folder in (tmp_path, data_home()) for p in folder.rglob("*") if p.is_file()]
    assert {"results.csv", "results.jsonl", "report.html", "failing_call.out.ipynb"} <= {p.name for p in written}
    for p in written:
        hits = leaks(p.read_bytes().decode("utf-8", "replace"))
        if hits:
            found[str(p)] = hits
    assert not found, f"a canary key leaked: {found}"


# ---- redact on realistic dumps of requests ----------------------------------------------------------

KEY = "q7Rk2LmN9pXv4TsW8yZb"  # not in the environment, no sk- prefix: only the header name gives it away
DUMPS = [
    f"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Bearer {KEY}\r\n"
    "Content-Type: application/json\r\n\r\n",
    f"{{'host': 'api.anthropic.com', 'x-api-key': '{KEY}', 'anthropic-version': '2023-06-01'}}",
    f'{{"Authorization": "Bearer {KEY}", "Accept": "application/json"}}',
    f"[(b'authorization', b'Bearer {KEY}'), (b'x-api-key', b'{KEY}')]",
    f"curl https://api.openai.com/v1/models -H 'Authorization: Bearer {KEY}'",
    f"Proxy-Authorization: Basic {KEY}==",
    f"AsyncOpenAI(api_key='{KEY}', base_url='http://127.0.0.1:8000/v1')",
    f'{{"api_key": "{KEY}", "model": "gpt-4o-mini"}}',
    f"ANTHROPIC_AUTH_TOKEN={KEY}",
    f"x-goog-api-key: {KEY}",
    f"GET https://example.com/v1/models?key={KEY}&alt=json",
    f"401: token rejected (Bearer {KEY})",
]


def test_vendor_key_shapes_are_removed_even_when_unlabelled():
    text = "tried sk-proj-Ab12Cd34Ef56Gh78 then sk-ant-api03-Zy98Xw76Vu54 in a notebook cell"
    assert redact(text) == "tried [REDACTED] then [REDACTED] in a notebook cell"


@pytest.mark.parametrize("dump", DUMPS)
def test_redact_removes_credentials_from_request_dumps(dump):
    out = redact(dump)
    assert KEY not in out and KEY[:8] not in out and "[REDACTED]" in out
    assert redact(out) == out  # stable


def test_redact_keeps_what_is_not_a_secret(monkeypatch):
    for var in VENDOR_ENV:
        monkeypatch.delenv(var, raising=False)
    plain = [
        "Completion(text='Commit', input_tokens=12, output_tokens=1, max_tokens=5, budget_tokens: 100)",
        "openai needs an API key: set the environment variable OPENAI_API_KEY in your shell",
        "export OPENAI_API_KEY=... or a line OPENAI_API_KEY=... in a .env file",
        "Content-Type: application/json\r\nHost: api.openai.com",
        "{'token': 'Commit', 'logprob': -0.1}",
        "the bearer of the news",
    ]
    for text in plain:
        assert redact(text) == text


def test_keys_from_the_environment_are_removed_wherever_they_appear(monkeypatch):
    monkeypatch.setenv("MYVENDOR_API_KEY", "plainword-without-any-shape-42")
    assert redact("the server said: plainword-without-any-shape-42 is wrong") == "the server said: [REDACTED] is wrong"
    assert "plainword" not in str(PromptkitError("quoted plainword-without-any-shape-42"))


def test_the_remembered_secrets_follow_the_environment(monkeypatch):
    """secret_values is computed once per environment: a key set, changed or removed later is seen at once."""
    monkeypatch.delenv("MYVENDOR_API_KEY", raising=False)
    assert redact("first-value-of-a-key") == "first-value-of-a-key"  # remembered without the variable
    monkeypatch.setenv("MYVENDOR_API_KEY", "first-value-of-a-key")
    assert redact("said first-value-of-a-key") == "said [REDACTED]"
    monkeypatch.setenv("MYVENDOR_API_KEY", "second-value-of-a-key")
    assert redact("first-value-of-a-key, second-value-of-a-key") == "first-value-of-a-key, [REDACTED]"
    monkeypatch.setattr(errors, "_IN_USE", set(errors._IN_USE))  # the test's key is forgotten after it
    register_secret("a-key-sent-but-in-no-variable")
    assert redact("sent a-key-sent-but-in-no-variable") == "sent [REDACTED]"
