"""Bad input: each mistake a learner or practitioner makes gets one exact message saying what is wrong and where,
raised before anything is called or written; an input too long for the model fails only its own cell."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import promptkit as pk
from promptkit.cache import DiskCache
from promptkit.cli import main
from promptkit.config import cache_dir
from promptkit.datasets import load_dataset
from promptkit.errors import DatasetError, ExperimentError, ModelSpecError, SettingsError, TemplateError
from promptkit.experiment import Experiment
from promptkit.providers import known_prefixes
from promptkit.runner import run
from promptkit.templates import Template, load_template
from promptkit.types import Row, Settings

GOOD_ROW = {"id": "a1", "split": "test", "input": {"notes": "Signed the PO early."}, "target": "Commit"}
TIER = 'name: tier\nturns:\n  - role: user\n    content: "Notes: {{notes}}\\nAnswer: Commit, Likely or At-Risk."\n'
BUILT_IN_PROVIDERS = {"anthropic", "echo", "lmstudio", "local", "ollama", "openai", "vllm"}


def files_under(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


# ---- the Python API (what a notebook cell calls) ------------------------------------------------


def test_malformed_dataset_line_names_file_line_and_column(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text(json.dumps(GOOD_ROW) + '\n{"id": "a2", "split": "test", "input": {"notes": "x"} "target": "Commit"}\n')
    with pytest.raises(DatasetError) as e:
        load_dataset(p)
    assert str(e.value) == "rows.jsonl line 2: not valid JSON: Expecting ',' delimiter (column 55)"


def test_dataset_row_missing_a_field_names_file_line_and_field(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text(json.dumps(GOOD_ROW) + "\n\n" + json.dumps({"id": "a3", "split": "test", "target": "Commit"}) + "\n")
    with pytest.raises(DatasetError) as e:
        load_dataset(p)
    assert str(e.value) == "rows.jsonl line 3: field 'input': missing"  # blank lines still count


@pytest.mark.parametrize("text", ["", "\n   \n\n"], ids=["empty", "blank-lines"])
def test_empty_dataset_file(tmp_path, text):
    p = tmp_path / "empty.jsonl"
    p.write_text(text)
    with pytest.raises(DatasetError) as e:
        load_dataset(p)
    assert str(e.value) == "empty.jsonl: empty file (no rows)"


def test_empty_split_is_refused_before_a_run(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text(json.dumps(GOOD_ROW) + "\n")
    dev = load_dataset(p, split="dev")
    assert len(dev) == 0
    with pytest.raises(ExperimentError) as e:
        Experiment(variants=[Template.from_yaml(TIER)], models=["echo:a"], rows=dev)
    assert str(e.value) == "Experiment.rows: no rows (is the dataset or split empty?)"


def test_missing_template_variable_names_variable_template_and_part():
    t = Template.from_yaml(TIER)
    with pytest.raises(TemplateError) as e:
        t.render({"note": "typo"})
    assert str(e.value) == ("template 'tier': missing variable 'notes' (used in turn 1 (user); did you mean 'note'?); "
                            "given variables: ['note']")


def test_row_missing_a_field_the_template_needs_names_row_and_variable_and_nothing_runs(tmp_path):
    t = Template(name="tier", turns=[{"role": "user", "content": "Notes: {{notes}} Renews in {{days}} days."}])
    rows = [Row(id="r1", input={"notes": "fine", "days": 30}), Row(id="r2", input={"notes": "no days"})]
    e = Experiment(variants=[t], models=["echo:a"], rows=rows)
    cache = tmp_path / "cache"
    with pytest.raises(ExperimentError) as info:
        run(e, cache_backend=cache, progress=False)
    assert str(info.value) == (
        "1 prompt(s) could not be built from the rows, nothing was run:\n"
        "  row 'r2' cannot fill prompt 'tier': template 'tier': missing variable 'days' (used in turn 1 (user)); "
        "given variables: ['notes']\n"
        "Fix the dataset rows or the template variables (or drop those rows) and run again.")
    assert files_under(cache) == set()  # not even the good row was called


def test_unknown_model_spec_lists_the_known_providers():
    assert BUILT_IN_PROVIDERS <= set(known_prefixes())
    with pytest.raises(ModelSpecError) as e:
        pk.complete("hello", "chatgpt:4o")
    assert str(e.value) == (f"unknown provider 'chatgpt'; known providers are {known_prefixes()} "
                            "(write a model as provider:model, e.g. local:smollm2 or openai:gpt-4o-mini)")
    with pytest.raises(ModelSpecError) as e:
        pk.complete("hello", "gpt-4o")
    assert str(e.value) == (f"model spec 'gpt-4o' needs the form provider:model; known providers are "
                            f"{known_prefixes()} (e.g. local:smollm2, anthropic:claude-haiku-4-5, openai:gpt-4o-mini)")
    with pytest.raises(ExperimentError) as e:
        Experiment(variants=[Template.from_yaml(TIER)], models=["echo:a", "gpt4:o"], rows=[Row(id="r", input={})])
    assert str(e.value).startswith("Experiment.models[1]: unknown provider 'gpt4'; known providers are [")


@pytest.mark.parametrize("setting, value, message", [
    ("temperature", 5, "Settings.temperature must be between 0 and 2, got 5"),
    ("max_tokens", 0, "Settings.max_tokens must be a whole number of at least 1, got 0"),
])
def test_out_of_range_setting_names_the_setting_and_value(setting, value, message):
    with pytest.raises(SettingsError) as e:
        Settings(**{setting: value})
    assert str(e.value) == message
    with pytest.raises(SettingsError) as e:  # before any model is asked
        pk.complete("hello", "echo:a", **{setting: value})
    assert str(e.value) == message


def test_template_file_that_does_not_parse_names_file_line_and_column(tmp_path):
    p = tmp_path / "tier.yaml"
    p.write_text('name: tier\nturns:\n  - role: user\n    content: "Notes: {{notes}}\n')  # the quote is never closed
    with pytest.raises(TemplateError) as e:
        load_template(p)
    assert str(e.value) == (f"{p}, line 5, column 1: not valid YAML: found unexpected end of stream "
                            "(while scanning a quoted scalar that starts at line 4, column 14)")
    p.write_text("name: tier\nturns:\n  - role: user\n   content: x\n")  # one space short
    with pytest.raises(TemplateError) as e:
        load_template(p)
    assert str(e.value) == (f"{p}, line 4, column 4: not valid YAML: expected <block end>, but found "
                            "'<block mapping start>' "
                            "(while parsing a block collection that starts at line 3, column 3)")


# ---- the command line: exit 2, one message, nothing written ---------------------------------------------

EXP = "prompts: [{template}]\nmodels: [{models}]\ndataset: {dataset}\n{extra}"
CLI_CASES = {
    "malformed dataset line": (
        dict(dataset="bad.jsonl"),
        "exp.yaml, line 3, field 'dataset.path': bad.jsonl line 2: not valid JSON: "
        "Expecting ',' delimiter (column 55)"),
    "empty dataset": (
        dict(dataset="empty.jsonl"), "exp.yaml, line 3, field 'dataset.path': empty.jsonl: empty file (no rows)"),
    "empty split": (
        dict(dataset="{path: rows.jsonl, split: dev}"), "exp.yaml, line 3, field 'dataset': "
        "dataset 'rows' has no rows in split 'dev'"),
    "row missing a variable": (
        dict(dataset="typo.jsonl"),
        "exp.yaml: 1 prompt(s) could not be built from the rows, nothing was run:\n"
        "  row 'a2' cannot fill prompt 'tier': template 'tier': missing variable 'notes' "
        "(used in turn 1 (user); did you mean 'note'?); given variables: ['note']\n"
        "Fix the dataset rows or the template variables (or drop those rows) and run again."),
    "unknown model": (
        dict(models="echo:a, gpt4:o"),
        "exp.yaml, line 2, field 'models[1]': unknown provider 'gpt4'; known providers are {known} "
        "(write a model as provider:model, e.g. local:smollm2 or openai:gpt-4o-mini)"),
    "temperature 5": (
        dict(extra="settings:\n  max_tokens: 8\n  temperature: 5\n"),
        "exp.yaml, line 6, field 'settings.temperature': Settings.temperature must be between 0 and 2, got 5"),
    "max_tokens 0": (
        dict(extra="settings: {max_tokens: 0}\n"),
        "exp.yaml, line 4, field 'settings.max_tokens': Settings.max_tokens must be a whole number of at least 1, "
        "got 0"),
    "template that does not parse": (
        dict(template="broken.yaml"),
        "exp.yaml, line 1, field 'prompts[0].template': broken.yaml, line 5, column 1: not valid YAML: "
        "found unexpected end of stream (while scanning a quoted scalar that starts at line 4, column 14)"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_refuses_bad_input_with_one_exact_message_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    given, message = CLI_CASES[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tier.yaml").write_text(TIER)
    (tmp_path / "broken.yaml").write_text('name: tier\nturns:\n  - role: user\n    content: "Notes: {{notes}}\n')
    good = json.dumps(GOOD_ROW)
    (tmp_path / "rows.jsonl").write_text(good + "\n")
    (tmp_path / "bad.jsonl").write_text(good + '\n{"id": "a2", "split": "test", "input": {"notes": "x"} "target": 1}\n')
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "typo.jsonl").write_text(good + "\n" + json.dumps({**GOOD_ROW, "id": "a2", "input": {"note": "x"}}))
    fields = {"template": "tier.yaml", "models": "echo:a", "dataset": "rows.jsonl", "extra": "", **given}
    (tmp_path / "exp.yaml").write_text(EXP.format(**fields))
    before = files_under(tmp_path)
    assert main(["run", "exp.yaml", "--out", "out", "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "promptkit: " + message.format(known=known_prefixes()) + "\n"
    assert captured.out == ""
    assert files_under(tmp_path) == before  # no results, report or partial export
    assert files_under(cache_dir()) == set()  # and no cache entry: nothing was called


# ---- an input longer than the model's context: that cell's error, the run goes on ---------------------


@pytest.mark.local_model
def test_input_longer_than_the_local_context_is_that_cells_error_and_the_run_goes_on(tmp_path):
    t = Template(name="tier", turns=[{"role": "user", "content": "Notes: {{notes}}\nOne word: Commit or At-Risk?"}])
    long_notes = " ".join(f"Call {i}: the champion asked about seats." for i in range(900))  # ~9k tokens
    rows = [Row(id="short1", input={"notes": "Signed early."}), Row(id="long", input={"notes": long_notes}),
            Row(id="short2", input={"notes": "Champion left."})]
    e = Experiment(variants=[t], models=["local:smollm2"], rows=rows, settings=Settings(max_tokens=3))
    res = run(e, cache_backend=tmp_path / "cache", progress=False)
    by_row = {r.cell.row_id: r.completion for r in res.results}
    assert len(res) == 3
    long = by_row["long"]
    assert long.error_kind == "context_length" and long.text == ""
    m = re.fullmatch(r"the prompt is (\d+) tokens but local:smollm2 runs with a context window of n_ctx=4096 tokens "
                     r"\(Settings.n_ctx; the default is the model's n_ctx in models.yaml\); that is more than the "
                     r"model's own limit of 8192 tokens: shorten the input or the few-shot examples", long.error)
    assert m and int(m.group(1)) > 4096, long.error
    assert by_row["short1"].ok and by_row["short2"].ok and by_row["short2"].output_tokens >= 1
    counts = res.meta["counts"]
    assert counts["errors_by_kind"] == {"context_length": 1} and counts["retries"] == 0  # not worth retrying
    assert len(DiskCache(tmp_path / "cache")) == 2  # the error is not cached: a shorter input is simply run again
