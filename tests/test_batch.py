"""Batch mode against loopback fakes of OpenAI Files + Batches and Anthropic Message Batches, with the real SDKs:
same answers as synchronous calls at half the price, resumable after a kill, expired cells resubmitted alone,
no cell billed twice."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

import promptkit.batch as pkbatch
from fakebatch import FakeBatchServer
from procs import killed_when
from promptkit.cache import SqliteCache
from promptkit.cli import main as cli_main
from promptkit.errors import ExperimentError
from promptkit.experiment import Experiment
from promptkit.graders import contains
from promptkit.providers import clear_providers, get_provider
from promptkit.runner import run
from promptkit.templates import Template
from promptkit.types import Row, Settings

OPENAI_KEY = "sk-fake-batch-openai-0123456789"
ANTHROPIC_KEY = "sk-ant-fake-batch-0123456789"
MODELS = ("openai:gpt-4o-mini", "anthropic:claude-haiku-4-5")


def grid(n_rows: int, n_variants: int = 5, models=MODELS) -> Experiment:
    variants = [Template(name=f"v{i}", system="Be brief." if i % 2 else "",
                         turns=[{"role": "user", "content": f"{{{{notes}}}}: variant {i} renewal risk please"}])
                for i in range(n_variants)]
    rows = [Row(id=f"r{i}", input={"notes": f"account {i} usage down {i % 7}0%"}, target=f"account {i}")
            for i in range(n_rows)]
    return Experiment(variants=variants, models=list(models), rows=rows, settings=Settings(max_tokens=6),
                      graders=[contains()], name="batchgrid")


@pytest.fixture
def srv(monkeypatch):
    with FakeBatchServer(api_key=None) as s:
        for k, v in {**s.env("openai", key=OPENAI_KEY), **s.env("anthropic", key=ANTHROPIC_KEY)}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("PROMPTKIT_BATCH_POLL_S", "0.05")
        clear_providers()
        yield s
    clear_providers()


def rows_by_key(res):
    return {r.cell.key: r for r in res.results}


def secrets_absent(*paths: Path) -> None:
    for root in paths:
        for p in [root] if root.is_file() else root.rglob("*"):
            if p.is_file():
                blob = p.read_bytes()
                assert OPENAI_KEY.encode() not in blob and ANTHROPIC_KEY.encode() not in blob, p


def test_a_1000_cell_batch_run_matches_the_synchronous_run_at_half_the_price(srv, tmp_path):
    exp = grid(100)  # 5 variants x 100 rows x 2 models
    assert exp.n_cells == 1000
    sync = run(exp, cache_backend=tmp_path / "sync.sqlite3", progress=False, concurrency=8)
    n_sync_calls = len(srv.calls)
    assert n_sync_calls == 1000 and srv.batch_creates == 0

    res = run(exp, cache_backend=tmp_path / "b" / "cache.sqlite3", progress=False, batch=True)
    assert len(srv.calls) == n_sync_calls, "batch mode made synchronous calls"
    assert srv.batch_creates == 2 and srv.uploads == 1  # one batch per model; one JSONL file for OpenAI
    assert {b.vendor for b in srv.batches.values()} == {"openai", "anthropic"}
    assert len(srv.billed) == 1000 and set(srv.billed.values()) == {1}

    a, b = rows_by_key(sync), rows_by_key(res)
    assert a.keys() == b.keys()
    for key, ra in a.items():
        rb = b[key]
        ca, cb = ra.completion, rb.completion
        assert cb.ok, cb.error
        assert (cb.text, cb.input_tokens, cb.output_tokens, cb.finish_reason, cb.provider, cb.model) == (
            ca.text, ca.input_tokens, ca.output_tokens, ca.finish_reason, ca.provider, ca.model)
        assert {g: (x.score, x.passed) for g, x in rb.grades.items()} == {
            g: (x.score, x.passed) for g, x in ra.grades.items()}
        assert cb.cost_usd == pytest.approx(ca.cost_usd * 0.5)
    assert [r.cell.key for r in res.results] == [r.cell.key for r in sync.results]  # grid order, not arrival order
    assert res.meta["spent_usd"] == pytest.approx(sync.meta["spent_usd"] * 0.5)
    assert res.meta["batch"]["submitted"] == 1000
    assert len(SqliteCache(tmp_path / "b" / "cache.sqlite3")) == 1000

    again = run(exp, cache_backend=tmp_path / "b" / "cache.sqlite3", progress=False, batch=True)
    assert srv.batch_creates == 2 and again.meta["counts"]["cache_hits"] == 1000
    secrets_absent(tmp_path / "b")


def test_results_are_routed_by_custom_id_and_errored_lines_become_error_cells(srv, tmp_path):
    srv.errored = lambda call: "account 3 " in call.last_user
    exp = grid(10, n_variants=2)
    res = run(exp, cache_backend=tmp_path / "c.sqlite3", progress=False, batch=True)
    for r in res.results:
        c = r.completion
        if "account 3 " in r.cell.request.messages[-1].content:
            assert c.error_kind == "bad_request" and "invalid" in c.error and not r.grades
        else:
            assert c.ok and r.grades and c.cost_usd is not None
    bad = sum(1 for r in res.results if not r.completion.ok)
    assert bad == 4  # 1 row x 2 variants x 2 models
    # errors are not cached: a re-run submits only those cells
    srv.errored = None
    before = srv.batch_creates
    res2 = run(exp, cache_backend=tmp_path / "c.sqlite3", progress=False, batch=True)
    assert all(r.completion.ok for r in res2.results)
    new = list(srv.batches.values())[before:]
    assert sum(len(b.requests) for b in new) == 4


def test_answers_follow_their_custom_id_whatever_the_order(srv, tmp_path):
    exp = grid(30, n_variants=1, models=MODELS[:1])
    res = run(exp, cache_backend=tmp_path / "c.sqlite3", progress=False, batch=True)
    (b,) = srv.batches.values()
    order = [json.loads(ln)["custom_id"] for ln in srv.files[b.output_file_id].splitlines()]
    assert order != [cid for cid, _ in b.requests]  # the fake shuffles
    for r in res.results:  # the echo model answers the prompt's first 6 tokens: the row's own
        assert r.completion.text == f"account {r.cell.row_id[1:]} usage down {int(r.cell.row_id[1:]) % 7}0%: variant"


def test_an_expired_batch_resubmits_only_its_unfinished_cells(srv, tmp_path):
    srv.expire = {0}
    srv.expire_done = 0.4
    exp = grid(50, n_variants=1, models=MODELS[:1])
    res = run(exp, cache_backend=tmp_path / "c.sqlite3", progress=False, batch=True)
    assert all(r.completion.ok for r in res.results)
    first, second = srv.batches.values()
    assert first.ended == "expired" and second.ended == "completed"
    sent, resent = {cid for cid, _ in first.requests}, {cid for cid, _ in second.requests}
    assert resent < sent and len(sent - resent) == 20  # 40% answered before expiry; only the other 30 again
    assert first.counts["succeeded"] == 20 and first.counts["expired"] == 30
    assert set(srv.billed.values()) == {1} and len(srv.billed) == 50


def test_anthropic_expiry_and_splitting_at_the_request_limit(srv, tmp_path, monkeypatch):
    monkeypatch.setitem(pkbatch.LIMITS, "anthropic", (12, 10**9))
    srv.max_requests = 12
    srv.expire = {1}
    exp = grid(30, n_variants=1, models=MODELS[1:])
    res = run(exp, cache_backend=tmp_path / "c.sqlite3", progress=False, batch=True)
    assert all(r.completion.ok for r in res.results), [r.completion.error for r in res.results if not r.completion.ok]
    sizes = [len(b.requests) for b in srv.batches.values()]
    assert sizes[:3] == [12, 12, 6] and sizes[3] == 6  # batch 1 expired half-done: its 6 unfinished, once
    assert set(srv.billed.values()) == {1} and len(srv.billed) == 30


def test_openai_splits_at_the_byte_limit(srv, tmp_path, monkeypatch):
    line = next(pkbatch.openai_batch_lines(get_provider(MODELS[0]),
                                           grid(1, 1, MODELS[:1]).expand()))
    monkeypatch.setitem(pkbatch.LIMITS, "openai", (50_000, len(line) * 4 + 10))
    srv.max_bytes = len(line) * 4 + 10
    res = run(grid(10, n_variants=1, models=MODELS[:1]), cache_backend=tmp_path / "c.sqlite3", progress=False,
              batch=True)
    assert all(r.completion.ok for r in res.results)
    assert [len(b.requests) for b in srv.batches.values()] == [4, 4, 2]
    assert srv.uploads == 3


SCRIPT = '''
import sys
sys.path.insert(0, {tests!r})
from test_batch import grid
from promptkit.runner import run
run(grid(40, n_variants=2), cache_backend=sys.argv[1], progress=False, batch=True)
print("finished")
'''


def test_killed_after_submission_a_rerun_submits_nothing_and_collects(srv, tmp_path):
    script = tmp_path / "go.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)), encoding="utf-8")
    cache = tmp_path / "cache" / "cache.sqlite3"
    ledger = tmp_path / "cache" / "batches"
    srv.hold()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    def both_submitted() -> bool:
        states = [json.loads(p.read_text())["state"] for p in ledger.glob("*.json")] if ledger.exists() else []
        return states.count("submitted") == 2

    _, out, err = killed_when([sys.executable, str(script), str(cache)], env, both_submitted,
                              settle=0.2, poll=0.05)  # settled: it is polling now
    assert b"finished" not in out and b"run the same experiment again later" in err
    assert srv.batch_creates == 2 and srv.uploads == 1
    srv.release()
    res = run(grid(40, n_variants=2), cache_backend=cache, progress=False, batch=True)
    assert srv.batch_creates == 2 and srv.uploads == 1, "the re-run submitted again"
    assert all(r.completion.ok for r in res.results) and len(res.results) == 160
    assert res.meta["batch"] == {"submitted": 0, "batches_adopted": 2, "ledger": str(ledger)}
    assert len(srv.billed) == 160 and set(srv.billed.values()) == {1}
    secrets_absent(tmp_path / "cache")


def test_killed_between_recording_and_submitting_is_found_by_metadata(srv, tmp_path):
    """An OpenAI batch the vendor accepted but the ledger never recorded is found again, not resubmitted."""
    exp = grid(6, n_variants=1, models=MODELS[:1])
    cache = tmp_path / "c.sqlite3"
    srv.hold()
    real = pkbatch._submit

    async def dies_after_vendor_accepts(provider, entry, cells):
        await real(provider, entry, cells)
        raise KeyboardInterrupt  # as if killed before the id reached the ledger

    pkbatch._submit = dies_after_vendor_accepts
    try:
        with pytest.raises(KeyboardInterrupt):
            run(exp, cache_backend=cache, progress=False, batch=True)
    finally:
        pkbatch._submit = real
    (entry,) = pkbatch.ledger_for(SqliteCache(cache)).entries()
    assert entry["state"] == "preparing" and entry["batch_id"] is None
    srv.release()
    res = run(exp, cache_backend=cache, progress=False, batch=True)
    assert all(r.completion.ok for r in res.results)
    assert srv.batch_creates == 1 and set(srv.billed.values()) == {1}


def test_promptkit_batches_lists_status_and_counts_and_yaml_batch_option(srv, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROMPTKIT_CACHE_DIR", str(tmp_path / "pkcache"))
    yml = tmp_path / "exp.yaml"
    yml.write_text(
        "name: ybatch\nprompts:\n  - template: {name: t, turns: [{role: user, content: 'Say {{x}}'}]}\n"
        "models: [openai:gpt-4o-mini]\nrows:\n" + "".join(f"  - {{id: r{i}, input: {{x: w{i}}}}}\n" for i in range(5))
        + "settings: {max_tokens: 4}\nrun: {batch: true}\n", encoding="utf-8")
    assert cli_main(["run", str(yml), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert srv.batch_creates == 1 and len(srv.calls) == 0
    capsys.readouterr()
    assert cli_main(["batches"]) == 0
    out = capsys.readouterr().out
    assert "batch_fake0000" in out and "openai:gpt-4o-mini" in out and "collected" in out and "5" in out
    srv.hold()
    yml.write_text(yml.read_text().replace("Say", "Repeat"), encoding="utf-8")
    import threading

    t = threading.Thread(target=cli_main, args=(["run", str(yml), "--out", str(tmp_path / "out2"), "--no-progress"],))
    t.start()
    try:
        deadline = time.monotonic() + 30
        ledger = pkbatch.ledger_for(SqliteCache(tmp_path / "pkcache" / "cache.sqlite3"))
        while [e["state"] for e in ledger.entries()] != ["collected", "submitted"] and time.monotonic() < deadline:
            time.sleep(0.05)
        capsys.readouterr()
        assert cli_main(["batches"]) == 0
        out = capsys.readouterr().out
        assert "batch_fake0001" in out and "in_progress" in out
    finally:
        srv.release()
        t.join(timeout=30)
    secrets_absent(tmp_path / "pkcache", tmp_path / "out")


def test_batch_refuses_cache_off_and_leaves_other_models_synchronous(srv, tmp_path):
    with pytest.raises(ExperimentError, match="batch mode needs the cache"):
        run(grid(2, 1), cache="off", batch=True, progress=False)
    exp = grid(3, 1, models=(MODELS[0], "echo:x"))
    res = run(exp, cache_backend=tmp_path / "c.sqlite3", progress=False, batch=True)
    assert all(r.completion.ok for r in res.results)
    assert srv.batch_creates == 1 and len(next(iter(srv.batches.values())).requests) == 3


def test_the_jsonl_writer_sends_what_the_synchronous_call_sends_and_its_output_reads_back(srv, tmp_path):
    """One writer for the OpenAI Batch API and `vllm run-batch`: the body of each line is the synchronous request."""
    import openai

    exp = grid(6, n_variants=2, models=MODELS[:1])
    sync = run(exp, cache="off", progress=False)
    sent = {json.dumps(c.body, sort_keys=True) for c in srv.calls}
    path = tmp_path / "in.jsonl"
    assert pkbatch.write_openai_batch(exp, path) == 12
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert {ln["custom_id"] for ln in lines} == {r.cell.key for r in sync.results}
    assert {json.dumps(ln["body"], sort_keys=True) for ln in lines} == sent
    assert {ln["url"] for ln in lines} == {"/v1/chat/completions"} and {ln["method"] for ln in lines} == {"POST"}

    client = openai.OpenAI(base_url=srv.openai_base_url, api_key=OPENAI_KEY)  # as a user would, by hand
    up = client.files.create(file=path.open("rb"), purpose="batch")
    b = client.batches.create(input_file_id=up.id, endpoint="/v1/chat/completions", completion_window="24h")
    while b.status not in ("completed", "failed", "expired"):
        b = client.batches.retrieve(b.id)
    out = tmp_path / "out.jsonl"
    out.write_bytes(client.files.content(b.output_file_id).content + b'{"custom_id": "0ff", "response": null}\n')
    cache = tmp_path / "c.sqlite3"
    assert pkbatch.read_openai_batch(exp, out, MODELS[0], cache) == {"stored": 12, "errors": 0, "unknown": 1}
    res = run(exp, cache_backend=cache, progress=False)
    assert res.meta["counts"]["cache_hits"] == 12
    assert [r.completion.text for r in res.results] == [r.completion.text for r in sync.results]
    with pytest.raises(ExperimentError, match="needs model="):
        pkbatch.write_openai_batch(grid(1, 1), tmp_path / "x.jsonl")


def test_a_batch_cancelled_at_the_vendor_is_submitted_again_for_its_unfinished_cells(srv, tmp_path):
    import threading

    import anthropic

    srv.hold()
    exp = grid(8, n_variants=1, models=MODELS[1:])
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("res", run(exp, cache_backend=tmp_path / "c.sqlite3",
                                                                   progress=False, batch=True)))
    t.start()
    try:
        deadline = time.monotonic() + 30
        while srv.batch_creates < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        client = anthropic.Anthropic(base_url=srv.anthropic_base_url, api_key=ANTHROPIC_KEY)
        client.messages.batches.cancel(next(iter(srv.batches)))
        while srv.batch_creates < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        srv.release()
        t.join(timeout=60)
    first, second = srv.batches.values()
    assert first.ended == "cancelled" and first.counts["canceled"] == 8
    assert {c for c, _ in second.requests} == {c for c, _ in first.requests}
    assert all(r.completion.ok for r in box["res"].results) and set(srv.billed.values()) == {1}


def test_a_batch_the_vendor_lost_is_submitted_again_and_a_refused_key_ends_the_wait(srv, tmp_path, monkeypatch):
    def submit_then_stop(exp, cache):
        real = pkbatch.BatchPart._say_waiting

        def stop(self):
            real(self)
            raise KeyboardInterrupt  # the user stops waiting once the batch is recorded

        with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
            m.setattr(pkbatch.BatchPart, "_say_waiting", stop)
            run(exp, cache_backend=cache, progress=False, batch=True)

    srv.hold()
    exp = grid(5, n_variants=1, models=MODELS[:1])
    cache = tmp_path / "c.sqlite3"
    submit_then_stop(exp, cache)
    srv.batches.clear()  # the vendor forgot it (another account, deleted)
    srv.release()
    res = run(exp, cache_backend=cache, progress=False, batch=True)
    assert all(r.completion.ok for r in res.results) and srv.batch_creates == 2
    states = sorted(e["state"] for e in pkbatch.ledger_for(SqliteCache(cache)).entries())
    assert states == ["collected", "lost"]

    srv.hold()
    exp2 = grid(3, n_variants=2, models=MODELS[:1])  # v0 cells are answered already; v1 cells are new
    submit_then_stop(exp2, cache)
    srv.api_key = "sk-the-right-one"  # the key in use is now refused
    res = run(exp2, cache_backend=cache, progress=False, batch=True)
    new = [r.completion for r in res.results if r.cell.variant == "v1"]
    assert {c.error_kind for c in new} == {"auth"} and len(new) == 3
    assert all(r.completion.ok for r in res.results if r.cell.variant == "v0")
    assert "stays recorded" in new[0].error and OPENAI_KEY not in new[0].error
    assert srv.batch_creates == 3


def test_a_budget_is_checked_before_submitting_at_the_batch_price(srv, tmp_path):
    from promptkit.catalog import catalog
    from promptkit.limits import estimate_tokens

    exp = grid(10, n_variants=1, models=MODELS[:1])
    cells = exp.expand()
    per_cell = [catalog().cost("openai", "gpt-4o-mini", *estimate_tokens(c.request)) * 0.5 for c in cells]
    cap = sum(per_cell[:4]) + per_cell[4] / 2  # room for four cells at the batch price, not five
    res = run(exp, cache_backend=tmp_path / "c.sqlite3", progress=False, batch=True, budget_usd=cap)
    (b,) = srv.batches.values()
    assert len(b.requests) == 4
    kinds = [r.completion.error_kind for r in res.results]
    assert kinds.count(None) == 4 and kinds.count("budget") == 6
    assert res.meta["stopped_for_budget"] and res.meta["spent_usd"] <= cap


def test_a_folder_cache_keeps_its_ledger_beside_it_and_refused_settings_are_not_sent(srv, tmp_path, capsys):
    exp = grid(3, n_variants=1, models=MODELS)
    hot = Experiment(variants=exp.variants, models=[MODELS[1]], rows=exp.rows, settings=Settings(temperature=1.5),
                     name="hot")
    res = run(exp, cache_backend=tmp_path / "answers", progress=False, batch=True)
    assert all(r.completion.ok for r in res.results)
    ledger = tmp_path / "answers.batches"
    assert len(list(ledger.glob("*.json"))) == 2 and not (tmp_path / "answers" / "batches").exists()
    assert cli_main(["batches", "--offline", "--cache", str(tmp_path / "answers")]) == 0
    assert capsys.readouterr().out.count("collected") == 2
    hot_res = run(hot, cache_backend=tmp_path / "answers", progress=False, batch=True)
    assert {r.completion.error_kind for r in hot_res.results} == {"bad_request"}
    assert "Anthropic accepts 0 to 1" in hot_res.results[0].completion.error and srv.batch_creates == 2


@pytest.mark.parametrize("body, ok", [
    ({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Commit"}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 9, "completion_tokens": 1}}, True),
    ({"choices": []}, False),
    ({"id": "x", "object": "chat.completion"}, False),
    ("Commit", False),
])
def test_an_openai_batch_line_is_read_like_a_plain_reply(body, ok, monkeypatch):
    """A batch output line's body goes through the provider's reading of a plain call's JSON."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    from promptkit.batch_format import openai_result
    from promptkit.providers import parse_spec
    from promptkit.providers.openai import OpenAIProvider
    from promptkit.types import Cell, Message, Request

    cell = Cell(key="a" * 64, variant="v", model="openai:gpt-4o-mini", settings=Settings(), row_id="r", repeat=0,
                request=Request(messages=(Message(role="user", content="q"),)))
    comp = openai_result(OpenAIProvider(parse_spec("openai:gpt-4o-mini")), cell,  # built here, not kept for others
                         {"custom_id": cell.key, "response": {"status_code": 200, "body": body}})
    if ok:
        assert comp.ok and (comp.text, comp.input_tokens, comp.output_tokens) == ("Commit", 9, 1)
    else:
        assert comp.error_kind == "malformed" and comp.error.startswith(
            "the batch result is not a chat completion: the reply is not a chat completion (")
