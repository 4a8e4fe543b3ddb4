"""Bring your own workload (issue 17): what porting a third-party eval needed, each as a behaviour.

Single-brace templates, grading the reply after a prefill, Python's regex defaults, per-row
patterns and must-not checks, prompts paired with their own rows, errors in pass rates.
Runs on the in-package `echo:` provider (it answers with the prefill + the user turn).
"""
from __future__ import annotations

import re
import warnings

import pytest

import promptkit as pk
from promptkit.errors import SettingsError
from promptkit import graders as G
from promptkit.errors import ExperimentError, GraderError, TemplateError
from promptkit.experiment import Experiment, experiment_from_dict
from promptkit.templates import Template
from promptkit.types import Completion, Message, Request, Row

EMAILS = [Row("a", {"email": "Refund my order"}, "refund"), Row("b", {"email": "Where is my parcel"}, "shipping")]


def C(text: str, **kw) -> Completion:
    return Completion(text=text, provider="test", model="hand", **kw)


# --------------------------------------------------------------------------- 1. {var} templates


def test_single_brace_slot_matching_a_row_field_stops_the_run_before_any_call():
    t = Template("sort", turns="Sort this email: {email}")
    exp = Experiment([t], ["echo:x"], EMAILS)
    with pytest.raises(ExperimentError) as e:
        pk.run(exp, cache="off", progress=False)
    msg = str(e.value)
    assert "{email} is left in the prompt" in msg and "row 'a'" in msg and "prompt 'sort'" in msg
    assert "{{email}}" in msg and "placeholders='single'" in msg and "nothing was run" in msg


def test_a_brace_that_names_no_row_field_is_left_alone():
    t = Template("json", turns='Answer as {"label": ...} or {label}: {{email}}')
    cells = Experiment([t], ["echo:x"], EMAILS).expand()
    assert len({c.key for c in cells}) == 2
    quoting = [Row("q", {"email": "My template says {email} where the address goes"})]  # a value, not a slot
    assert len(Experiment([t], ["echo:x"], quoting).expand()) == 1


def test_single_placeholders_render_python_format_style():
    t = Template("sort", system="You sort {{kind}} emails.", turns="Email: {email}\nAnswer as {{\"label\": ...}}",
                 prefill="{topic}", placeholders="single")
    assert t.variables == {"email", "topic"}
    req = t.render({"email": "Refund my order", "topic": "Topic:"})
    assert req.messages[0].content == "You sort {kind} emails."
    assert req.messages[1].content == 'Email: Refund my order\nAnswer as {"label": ...}'
    assert req.prefill == "Topic:"
    with pytest.raises(TemplateError, match="missing variable 'email'"):
        t.render({"topic": "x"})
    assert t.as_double().render({"email": "e", "topic": "p"}) == req.__class__(
        messages=(Message("system", "You sort {kind} emails."), Message("user", 'Email: e\nAnswer as {"label": ...}')),
        prefill="p")
    with pytest.raises(TemplateError, match="'placeholders' must be 'double'"):
        Template("x", turns="hi", placeholders="curly")


def test_single_placeholders_from_yaml_prompt_and_template_file(tmp_path):
    data = {"prompts": [{"template": {"name": "sort", "turns": [{"role": "user", "content": "Sort: {email}"}]},
                         "placeholders": "single"}],
            "models": ["echo:x"], "rows": [{"id": r.id, "input": r.input, "target": r.target} for r in EMAILS]}
    exp = experiment_from_dict(data)
    assert [c.request.messages[-1].content for c in exp.expand()] == ["Sort: Refund my order", "Sort: Where is my parcel"]
    saved = Template("sort", turns="Sort: {email}", placeholders="single").save(tmp_path / "sort.yaml")
    assert "placeholders: single" in saved.read_text()
    assert pk.load_template(saved).render(EMAILS[0]).messages[-1].content == "Sort: Refund my order"


class IgnoresInput:
    """A prompt variant that never uses its row: every row gets the same prompt."""

    name = "fixed"

    def to_request(self, variables, settings):
        return Request(messages=(Message("user", "Say hi"),), settings=settings)


def test_rows_that_differ_but_render_the_same_warn_and_fail_when_strict():
    with pytest.warns(UserWarning, match=r"rows 'a' and 'b' differ in \['email'\] but give prompt 'fixed' the same text"):
        Experiment([IgnoresInput()], ["echo:x"], EMAILS).expand()
    with pytest.raises(ExperimentError, match="share one call"):
        Experiment([IgnoresInput()], ["echo:x"], EMAILS, strict=True).expand()
    same = [Row("a", {"email": "x"}), Row("b", {"email": "x"})]  # identical inputs: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Experiment([IgnoresInput()], ["echo:x"], same).expand()


def test_strict_experiment_rejects_row_fields_the_prompt_never_uses():
    rows = [Row("a", {"email": "x", "sender": "ann"})]
    t = Template("sort", turns="Sort: {{email}}")
    assert len(Experiment([t], ["echo:x"], rows).expand()) == 1
    with pytest.raises(ExperimentError, match=r"unused variable \['sender'\]"):
        Experiment([t], ["echo:x"], rows, strict=True).expand()
    with pytest.raises(ExperimentError, match="field 'strict': must be true or false"):
        experiment_from_dict({"prompts": [{"template": {"name": "s", "turns": "hi {{email}}"}}], "models": ["echo:x"],
                              "rows": [{"id": "a", "input": {"email": "x"}}], "strict": "yes"})


# --------------------------------------------------------------------------- 2. reply vs text


def test_completion_keeps_text_and_reply_and_graders_choose():
    c = C("Answer: Yes, renew", prefill="Answer:")
    assert c.text == "Answer: Yes, renew" and c.reply == " Yes, renew"
    assert G.contains("Answer")(c).passed  # default: the whole text, prefill included
    g = G.contains("Answer", on="reply")
    assert not g(c).passed and g.on == "reply"
    assert G.label_match(["Yes", "No"]).on_reply()(C("Yes? No", prefill="Yes?"), "No").passed
    assert (G.regex(r"^ Yes") & G.equals(" Yes, renew")).on_reply()(c).passed
    with pytest.raises(GraderError, match="on must be 'text'"):
        G.regex("x", on="answer")


def test_prefill_used_follows_anthropic_stripping_the_prefill():
    from promptkit.types import prefill_used

    req = Request(messages=(Message("user", "q"),), prefill="Answer: ")
    assert prefill_used(req, C("Answer: yes")) == "Answer: "
    assert prefill_used(req, C("Answer:yes")) == "Answer:"


def test_runner_records_the_prefill_so_yaml_graders_can_grade_the_reply_alone(tmp_path):
    data = {
        "prompts": [{"template": {"name": "p", "turns": "{{email}}", "prefill": "Sorry "}}],
        "models": ["echo:x"], "rows": [{"id": "a", "input": {"email": "we cannot help"}}],
        "graders": [{"name": "contains", "text": "sorry"}, {"name": "regex", "pattern": "sorry", "on": "reply"}],
    }
    res = pk.run(experiment_from_dict(data), cache="off", progress=False)
    r = res.results[0]
    assert r.completion.text == "Sorry we cannot help" and r.completion.reply == "we cannot help"
    assert r.grades["contains"].passed and not r.grades["regex"].passed


def test_cli_run_grades_the_reply_when_the_yaml_says_so(tmp_path):
    from promptkit.cli import main

    (tmp_path / "exp.yaml").write_text(
        "name: reply\nprompts:\n  - template: {name: p, turns: '{{email}}', prefill: 'Sorry '}\n"
        "models: [echo:x]\nrows:\n  - {id: a, input: {email: we cannot help}}\n"
        "graders:\n  - {name: regex, pattern: Sorry, on: reply}\n  - {name: regex, pattern: Sorry, as: whole}\n",
        encoding="utf-8")
    code = main(["run", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "out"), "--cache", "off", "--no-progress"])
    assert code == 0
    (r,) = pk.Results.from_jsonl(tmp_path / "out" / "results.jsonl").results
    assert r.completion.reply == "we cannot help"
    assert r.grades["regex"].passed is False and r.grades["whole"].passed is True


# --------------------------------------------------------------------------- 3. Python's defaults


def test_regex_is_case_sensitive_and_strips_nothing_like_python():
    assert not G.regex("yes")(C("Yes")).passed
    assert "case-sensitive" in G.regex("yes")(C("Yes")).reason
    assert G.regex("yes", flags=re.IGNORECASE)(C("Yes")).passed
    assert "IGNORECASE" in G.regex("yes", flags=re.IGNORECASE)(C("Yes")).reason
    assert not G.regex("Michael Jordan", fullmatch=True)(C(" Michael Jordan")).passed
    assert G.regex("Michael Jordan", fullmatch=True)(C("Michael Jordan")).passed


def test_equals_is_python_equality_unless_told_otherwise():
    assert not G.equals("Michael Jordan")(C(" Michael Jordan")).passed
    assert not G.equals("Michael Jordan")(C("michael jordan")).passed
    assert G.equals("Michael Jordan", strip=True, case_sensitive=False)(C(" michael jordan\n")).passed
    assert G.equals()(C("42"), "42").passed and "as written" in G.equals()(C("42"), "42").reason
    assert "ignoring case and spacing" in G.contains("x")(C("X")).reason


# --------------------------------------------------------------------------- 4. per-row targets, negation, lines


def test_regex_reads_each_rows_pattern_from_its_target():
    g = G.regex()
    assert g(C("Tier: Commit"), r"\bCommit\b").passed
    assert not g(C("Tier: Commit"), r"\bLikely\b").passed
    with pytest.raises(GraderError, match="row's target must be a regex string"):
        g(C("x"), None)
    with pytest.raises(GraderError, match="invalid pattern"):
        g(C("x"), "(unclosed")


def test_negation_passes_when_the_grader_fails_and_never_passes_a_failed_call():
    must_not = ~G.regex("(?i)sorry")
    assert must_not(C("Here is your refund")).passed
    no = must_not(C("Sorry, no"))
    assert not no.passed and no.score == 0.0 and "not regex" in no.reason
    failed = Completion(error_kind="timeout", error="slow")
    assert not must_not(failed).passed and not must_not(failed).parsed
    assert not G.not_(G.json_match())(C("no json here")).passed  # unreadable stays failing
    from promptkit.graders.registry import grader_from_spec
    yaml_g = grader_from_spec({"name": "contains", "text": "sorry", "negate": True})
    assert yaml_g(C("fine")).passed and not yaml_g(C("sorry")).passed and yaml_g.name == "not_contains"


def test_line_count():
    two = G.line_count(2)
    assert two(C("a\nb")).passed and two(C("a\n\nb\n")).passed
    assert not two(C("a\nb\nc")).passed and "3 non-blank lines, not 2" in two(C("a\nb\nc")).reason
    assert not G.line_count(2, blank=True)(C("a\n\nb")).passed
    assert G.line_count(max_lines=1)(C("one line")).passed
    with pytest.raises(GraderError, match="needs lines"):
        G.line_count()


# --------------------------------------------------------------------------- 5. paired rows, combined results


def _exercises():
    greet = Template("greet", turns="Greet {name}", placeholders="single")
    sort = Template("sort", turns="Sort: {email}", placeholders="single")
    rows = [Row("g1", {"name": "Ann"}, "Ann", meta={"variant": "greet"}),
            Row("s1", {"email": "Refund"}, "Refund", meta={"variant": "sort"}),
            Row("s2", {"email": "Parcel"}, "Parcel", meta={"variant": "sort"})]
    return greet, sort, rows


def test_row_pairing_runs_each_row_on_its_own_prompt_only():
    greet, sort, rows = _exercises()
    with pytest.raises(ExperimentError, match="row 'g1' cannot fill prompt 'sort'"):
        Experiment([greet, sort], ["echo:x"], rows).expand()  # crossed, a row cannot fill the other prompt
    exp = Experiment([greet, sort], ["echo:x"], rows, pairing="row", graders=[G.contains()])
    assert exp.n_cells == 3 and exp.describe()["pairing"] == "row"
    cells = exp.expand()
    assert [(c.variant, c.row_id) for c in cells] == [("greet", "g1"), ("sort", "s1"), ("sort", "s2")]
    res = pk.run(exp, cache="off", progress=False)
    assert res.summary().set_index("variant")["n"].to_dict() == {"greet": 1, "sort": 2}
    assert all(r.grades["contains"].passed for r in res)


def test_zip_pairing_and_bad_pairings_name_the_row():
    greet, sort, rows = _exercises()
    exp = Experiment([greet, sort], ["echo:x"], [rows[0], rows[1]], pairing="zip")
    assert [(c.variant, c.row_id) for c in exp.expand()] == [("greet", "g1"), ("sort", "s1")]
    with pytest.raises(ExperimentError, match="'zip' pairs prompt i with row i, but there are 2 prompts and 3 rows"):
        Experiment([greet, sort], ["echo:x"], rows, pairing="zip")
    lost = Row("x", {"email": "?"}, meta={"variant": "nope"})
    with pytest.raises(ExperimentError, match=r"one of \['greet', 'sort'\]; row 'x' names 'nope'"):
        Experiment([greet, sort], ["echo:x"], [lost], pairing="row")
    with pytest.raises(ExperimentError, match="must be 'cross', 'row' or 'zip'"):
        Experiment([greet], ["echo:x"], rows[:1], pairing="pairs")


def test_yaml_rows_name_their_prompt():
    data = {"prompts": [{"template": {"name": "greet", "turns": "Greet {name}"}, "placeholders": "single"},
                        {"template": {"name": "sort", "turns": "Sort: {email}"}, "placeholders": "single"}],
            "models": ["echo:x"], "pairing": "row",
            "rows": [{"id": "g1", "input": {"name": "Ann"}, "variant": "greet"},
                     {"id": "s1", "input": {"email": "Refund"}, "variant": "sort"}]}
    cells = experiment_from_dict(data).expand()
    assert [c.request.messages[-1].content for c in cells] == ["Greet Ann", "Sort: Refund"]


def test_results_from_several_runs_combine_into_one():
    from promptkit.cli import summary_text

    greet, sort, rows = _exercises()
    a = pk.run(Experiment([greet], ["echo:x"], rows[:1], graders=[G.contains()], name="a"), cache="off", progress=False)
    b = pk.run(Experiment([sort], ["echo:x"], rows[1:], graders=[G.contains()], name="b"), cache="off", progress=False)
    both = pk.Results.concat([a, b])
    assert len(both) == 3 and (a + b).results == both.results
    assert both.meta["counts"]["cells"] == 3 and both.meta["experiment"]["variants"] == ["greet", "sort"]
    assert [p["experiment"]["name"] for p in both.meta["parts"]] == ["a", "b"]
    assert both.summary()["pass_rate"].tolist() == [1.0, 1.0]
    assert summary_text(both).startswith("a+b: 3 cells")
    with pytest.raises(ExperimentError, match="non-empty list of Results"):
        pk.Results.concat([])


# --------------------------------------------------------------------------- 6. errors in pass rates


def _with_one_error():
    from promptkit.types import Cell, CellResult, Grade, Settings

    out = []
    for i in range(4):
        req = Request(messages=(Message("user", f"q{i}"),))
        cell = Cell(key=f"k{i}", variant="v", model="echo:x", settings=Settings(), row_id=str(i), repeat=0,
                    request=req, target="x", settings_label="default")
        if i == 3:
            out.append(CellResult(cell, Completion(error_kind="timeout", error="slow")))
        else:
            out.append(CellResult(cell, C("x"), {"g": Grade(float(i < 2), i < 2, "")}))
    meta = {"experiment": {"name": "e", "settings_labels": ["default"]}, "wall_s": 0.1, "spent_usd": 0.0,
            "counts": {"cells": 4, "calls": 4, "cache_hits": 0, "retries": 0, "errors": 1,
                       "errors_by_kind": {"timeout": 1}}}
    return pk.Results(out, meta)


def test_an_error_cell_counts_as_a_failure_in_the_pass_rate():
    s = _with_one_error().summary().iloc[0]
    assert s["n"] == 4 and s["errors"] == 1 and s["passed"] == 2
    assert s["pass_rate"] == pytest.approx(2 / 4)  # not 2/3: the failed call did not pass
    assert s["scored"] == 3 and s["score"] == pytest.approx(2 / 3)
    assert "error cell as a failure" in _with_one_error().summary().attrs["pass_rate"]


# --------------------------------------------------------------------------- 8. CLI summary, timeouts


def test_cli_summary_shows_passes_with_errors_and_no_nan_interval_for_one_row():
    from promptkit.cli import summary_text

    text = summary_text(_with_one_error())
    assert "nan" not in text and "2/4" in text and "count as failures" in text
    one = pk.run(Experiment([Template("t", turns="hi {{x}}")], ["echo:x"], [Row("r", {"x": "a"}, "a")],
                            graders=[G.contains()]), cache="off", progress=False)
    text = summary_text(one)
    assert "nan" not in text and "1.00 [no CI: n=1]" in text


class Slow(pk.providers.Provider):
    name = "slowapi"

    async def _complete(self, request):
        import asyncio

        await asyncio.sleep(0.5)
        return Completion(text="late")


def test_default_timeout_names_itself_and_spares_local_models(monkeypatch):
    from promptkit import runner
    from promptkit.providers import register

    register("slowapi", Slow)
    monkeypatch.setitem(runner.RUN_DEFAULTS, "timeout_s", 0.05)
    exp = Experiment([Template("t", turns="Say {{x}}")], ["slowapi:m"], [Row("r", {"x": "hi"})])
    c = pk.run(exp, cache="off", progress=False, max_attempts=1).results[0].completion
    assert c.error_kind == "timeout" and "timeout_s=0.05, the default for API calls" in c.error
    c = pk.run(exp, cache="off", progress=False, max_attempts=1, timeout_s=0.1).results[0].completion
    assert "timeout_s=0.1, as set" in c.error


@pytest.mark.local_model
def test_local_model_calls_have_no_default_timeout(monkeypatch):
    from promptkit import runner

    monkeypatch.setitem(runner.RUN_DEFAULTS, "timeout_s", 0.01)  # far shorter than any real generation
    exp = Experiment([Template("t", turns="Count to ten: {{x}}")], ["local:smollm2"], [Row("r", {"x": "1, 2,"})],
                     settings=pk.Settings(max_tokens=12))
    res = pk.run(exp, cache="off", progress=False, max_attempts=1)
    assert res.results[0].completion.ok and res.results[0].completion.output_tokens > 0
    assert res.meta["limits"]["timeout_s_local"] is None
    timed = pk.run(exp, cache="off", progress=False, max_attempts=1, timeout_s=0.01).results[0].completion
    assert timed.error_kind == "timeout" and "as set" in timed.error


# --------------------------------------------------------------------------- 7. the context window


def test_n_ctx_is_a_validated_setting_keyed_for_local_models_only(tmp_path, monkeypatch):
    from promptkit.cache import cell_key
    from promptkit.catalog import CATALOG_PATH

    with pytest.raises(SettingsError, match="Settings.n_ctx must be a whole number of tokens of at least 64"):
        pk.Settings(n_ctx=10)
    req = Template("t", turns="hi").render()
    wide = Template("t", turns="hi").render(settings=pk.Settings(n_ctx=8192))
    same = Template("t", turns="hi").render(settings=pk.Settings(n_ctx=4096))  # smollm2's default window
    assert cell_key("local:smollm2", req) != cell_key("local:smollm2", wide)
    assert cell_key("local:smollm2", req) == cell_key("local:smollm2", same)
    assert cell_key("openai:gpt-4o-mini", req) == cell_key("openai:gpt-4o-mini", wide)  # API models ignore it
    # another models file that gives smollm2 a wider default window: another key
    import yaml

    data = yaml.safe_load(CATALOG_PATH.read_text(encoding="utf-8"))
    assert data["local"]["smollm2"]["n_ctx"] == 4096
    data["local"]["smollm2"]["n_ctx"] = 8192
    other = tmp_path / "models.yaml"
    other.write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.setenv("PROMPTKIT_MODELS_FILE", str(other))
    assert cell_key("local:smollm2", req) == cell_key("local:smollm2", wide)
    monkeypatch.delenv("PROMPTKIT_MODELS_FILE")
    assert cell_key("local:smollm2", req) != cell_key("local:smollm2", wide)


@pytest.mark.local_model
def test_n_ctx_lets_a_long_prompt_fit_and_a_narrower_window_is_not_answered_from_the_wider_runs_cache(tmp_path):
    notes = " ".join(f"Call {i}: the champion asked about seats." for i in range(390))  # ~4.3k tokens
    t = Template("tier", turns="Notes: {{notes}}\nOne word: Commit or At-Risk?")
    rows = [Row("long", {"notes": notes})]

    def once(**settings):
        exp = Experiment([t], ["local:smollm2"], rows, settings=pk.Settings(max_tokens=2, **settings))
        return pk.run(exp, cache_backend=tmp_path / "cache", progress=False).results[0].completion

    wide = once(n_ctx=8192)
    assert wide.ok and wide.input_tokens > 4096
    narrow = once()  # the default window: must not be served the 8k run's cached answer
    assert narrow.error_kind == "context_length" and not narrow.cached
    assert f"the prompt is {narrow.input_tokens} tokens but local:smollm2 runs with a context window of n_ctx=4096" \
        in narrow.error
    m = re.search(r"the model supports 8192: raise it with Settings\(n_ctx=8192\) \(YAML settings: n_ctx: 8192, "
                  r"about (\d+) MB more memory\)", narrow.error)
    assert m and 50 < int(m.group(1)) < 200, narrow.error  # SmolLM2's KV cache: ~23 MB per 1k tokens
    assert once(n_ctx=8192).cached
    too_wide = once(n_ctx=16384)
    assert too_wide.error_kind == "bad_request" and "more than local:smollm2 supports (8192 tokens" in too_wide.error


# --------------------------------------------------------------------------- the ported example


@pytest.mark.local_model
def test_the_third_party_example_grades_each_case_by_its_own_pattern_on_the_reply():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "third_party_eval.py"
    assert len(path.read_text(encoding="utf-8").splitlines()) < 40
    spec = importlib.util.spec_from_file_location("third_party_eval", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = pk.run(mod.experiment(), cache="off", progress=False)
    cases = {f"{name}.{i}": (name, prefill, pattern) for name, _, _, prefill, cs in mod.EXERCISES
             for i, (_, pattern) in enumerate(cs)}
    assert sorted(r.cell.row_id for r in res) == sorted(cases)  # each case once, on its own prompt only
    for r in res:
        name, prefill, pattern = cases[r.cell.row_id]
        c = r.completion
        assert c.ok and r.cell.variant == name and "{" not in r.cell.request.messages[-1].content
        assert c.text.startswith(prefill) and c.reply == c.text[len(prefill):]
        assert r.grades["regex"].passed == bool(re.search(pattern, c.reply)), (r.cell.row_id, c.text)
