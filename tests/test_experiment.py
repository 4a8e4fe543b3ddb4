"""Experiment YAML files: what they can say, and messages that name the file, line and field."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from promptkit.cache import MemoryCache
from promptkit.errors import ExperimentError
from promptkit.experiment import grader_from_spec, load_experiment
from promptkit.runner import run

ROOT = Path(__file__).resolve().parents[1]

TEMPLATE = """\
name: tier
system: You are a customer-success analyst.
turns:
  - role: user
    content: "Notes: {{notes}}\\nAnswer with one of: Commit, Likely, At-Risk."
"""

ROWS = [
    {"id": "a1", "split": "test", "input": {"notes": "Signed the PO."}, "target": "Commit"},
    {"id": "a2", "split": "test", "input": {"notes": "Champion left."}, "target": "At-Risk"},
]


def write(tmp_path: Path, body: str, name: str = "exp.yaml") -> Path:
    (tmp_path / "tier.yaml").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n", encoding="utf-8")
    p = tmp_path / name
    p.write_text(textwrap.dedent(body), encoding="utf-8")
    return p


GOOD = """\
name: tiers
description: two prompts on two echo models
prompts:
  - template: tier.yaml
  - template: tier.yaml
    name: tier_role
    phrases: [analyst]
models: [echo:a, echo:b]
dataset: rows.jsonl
settings: {max_tokens: 3}
sweep: {temperature: [0, 0.7]}
repeats: 2
graders:
  - label
  - {name: contains, text: Notes}
run:
  concurrency: 3
"""


def test_good_file_loads_and_runs(tmp_path):
    e = load_experiment(write(tmp_path, GOOD))
    assert e.name == "tiers" and e.source.endswith("exp.yaml")
    assert [v.name for v in e.variants] == ["tier", "tier_role"]
    assert e.models == ["echo:a", "echo:b"] and e.repeats == 2
    assert [lab for lab, _ in e.settings_grid()] == ["temperature=0", "temperature=0.7"]
    assert [g.name for g in e.graders] == ["label_match", "contains"]
    assert e.n_cells == 2 * 2 * 2 * 2 * 2
    role = e.variants[1].to_request(ROWS[0]["input"], e.settings)
    plain = e.variants[0].to_request(ROWS[0]["input"], e.settings)
    assert role.messages != plain.messages  # the phrase changed the prompt
    res = run(e, cache_backend=MemoryCache(), progress=False)
    assert len(res) == 32 and res.meta["limits"]["concurrency"] == 3
    assert set(res.results[0].grades) == {"label_match", "contains"}
    assert res.results[0].grades["contains"].passed  # echo answers with the prompt, which holds "Notes"


def test_inline_template_inline_rows_and_ablation(tmp_path):
    p = write(tmp_path, """\
        prompts:
          - template:
              name: inline
              turns: [{role: user, content: "Tier for {{notes}}"}]
            ablation: [analyst, only_label]
        models: echo:a
        rows:
          - {id: x, input: {notes: hello}, target: Commit}
        """)
    e = load_experiment(p)
    assert [v.name for v in e.variants] == ["inline", "inline+analyst", "inline+only_label", "inline+analyst+only_label"]
    assert e.name == "exp" and len(e.rows) == 1


def test_dataset_by_name_with_split_and_sample(tmp_path):
    p = write(tmp_path, """\
        prompts: [{template: default}]
        models: [echo:a]
        dataset: {name: renewal_tier, split: test, n: 5, seed: 1}
        graders: [label_match]
        """)
    e = load_experiment(p)
    assert len(e.rows) == 5 and all(r.split == "test" for r in e.rows)
    assert e.variants[0].name == "renewal_tier"
    assert load_experiment(p).rows == e.rows  # the seeded sample is the same every time
    grader = e.graders[0]
    assert grader.name == "label_match"


def test_the_example_file_loads():
    e = load_experiment(ROOT / "examples" / "renewal_tier.yaml")
    assert e.models == ["local:smollm2"] and len(e.variants) == 4 and len(e.rows) == 8
    assert e.run_options["concurrency"] == 8


@pytest.mark.parametrize("body, needles", [
    ("prompts: [tier.yaml]\nmodels: [echo:a]\ndataset: rows.jsonl\nmodel: [x]\n",
     ["line 4", "field 'model'", "unknown field", "did you mean 'models'"]),
    ("prompts: [tier.yaml]\ndataset: rows.jsonl\n", ["missing the required field 'models'"]),
    ("prompts: [tier.yaml]\nmodels: [echo:a]\n", ["needs 'dataset'"]),
    ("prompts: [tier.yaml]\nmodels:\n  - echo:a\n  - gpt4\ndataset: rows.jsonl\n",
     ["line 4", "field 'models[1]'", "provider:model"]),
    ("prompts: [nothere.yaml]\nmodels: [echo:a]\ndataset: rows.jsonl\n",
     ["line 1", "field 'prompts[0].template'", "nothere.yaml", "not found"]),
    ("prompts:\n  - template: tier.yaml\n    phrases: [no_such_phrase]\nmodels: [echo:a]\ndataset: rows.jsonl\n",
     ["line 3", "field 'prompts[0].phrases'", "no_such_phrase"]),
    ("prompts: [tier.yaml]\nmodels: [echo:a]\ndataset: rows.jsonl\ngraders: [label_macth]\n",
     ["field 'graders[0]'", "unknown grader 'label_macth'", "did you mean 'label_match'"]),
    ("prompts: [tier.yaml]\nmodels: [echo:a]\ndataset: rows.jsonl\nsweep: {temperature: [0, 3]}\n",
     ["field 'sweep.temperature[1]'", "between 0 and 2"]),
    ("prompts: [tier.yaml]\nmodels: [echo:a]\ndataset: rows.jsonl\nsettings: {max_tokens: 0}\n",
     ["line 4, field 'settings.max_tokens'", "at least 1, got 0"]),
    ("prompts: [tier.yaml]\nmodels: [echo:a]\ndataset: {name: no_such_dataset}\n",
     ["field 'dataset.name'", "no dataset named 'no_such_dataset'"]),
    ("prompts: [tier.yaml]\nmodels: [echo:a]\ndataset: rows.jsonl\nrepeats: zero\n", ["field 'repeats'"]),
    ("prompts: [tier.yaml]\nmodels: [echo:a]\ndataset: rows.jsonl\nrun: {concurrenc: 2}\n",
     ["field 'run.concurrenc'", "did you mean 'concurrency'"]),
    ("prompts: [tier.yaml\nmodels: [echo:a]\n", ["not valid YAML", "line "]),
])
def test_errors_name_file_line_and_field(tmp_path, body, needles):
    p = write(tmp_path, body)
    with pytest.raises(ExperimentError) as info:
        load_experiment(p)
    msg = str(info.value)
    assert msg.startswith(str(p)), msg
    for n in needles:
        assert n in msg, (n, msg)


def test_missing_file():
    with pytest.raises(ExperimentError, match="experiment file not found"):
        load_experiment("/nonexistent/exp.yaml")


def test_row_missing_a_template_variable_names_file_row_and_variable(tmp_path):
    p = write(tmp_path, """\
        prompts: [tier.yaml]
        models: [echo:a]
        rows:
          - {id: ok, input: {notes: fine}}
          - {id: broken, input: {note: typo}}
        """)
    e = load_experiment(p)
    with pytest.raises(ExperimentError) as info:
        e.expand()
    msg = str(info.value)
    assert str(p) in msg and "row 'broken'" in msg and "'notes'" in msg and "prompt 'tier'" in msg


def test_grader_from_spec_takes_dataset_labels():
    class DS:
        labels = ["Yes", "No"]

    g = grader_from_spec("label", DS())
    from promptkit.types import Completion

    assert g(Completion(text="Yes."), "Yes").passed and not g(Completion(text="No"), "Yes").passed


# ---- the command line ---------------------------------------------------------------------------


def test_cli_run_writes_exports_that_read_back(tmp_path, capsys):
    from promptkit.cli import main
    from promptkit.results import Results

    p = write(tmp_path, GOOD)
    out = tmp_path / "out"
    assert main(["run", str(p), "--out", str(out), "--no-progress", "--concurrency", "2"]) == 0
    text = capsys.readouterr().out
    assert "tiers: 32 cells" in text and "32 calls, 0 from cache" in text and "score [95% CI]" in text
    back = Results.from_jsonl(out / "results.jsonl")
    assert len(back) == 32 and back.meta["limits"]["concurrency"] == 2
    assert (out / "results.csv").read_text(encoding="utf-8").count("\n") == 33
    assert (out / "report.html").read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    assert main(["run", str(p), "--out", str(out), "--no-progress"]) == 0  # second run: from the cache
    assert "0 calls, 32 from cache" in capsys.readouterr().out


def test_cli_run_budget_stop_exits_3(tmp_path, capsys):
    from promptkit.cli import main

    p = write(tmp_path, GOOD)
    code = main(["run", str(p), "--out", str(tmp_path / "o"), "--no-progress", "--budget-tokens", "100", "--cache", "off"])
    captured = capsys.readouterr()
    assert code == 3 and "stopped for budget" in captured.out and "stopped for budget" in captured.err


def test_cli_bad_file_exits_2_with_the_message(tmp_path, capsys):
    from promptkit.cli import main

    p = write(tmp_path, "prompts: [tier.yaml]\nmodels: [echo:a]\ndataset: rows.jsonl\nrepeats: -1\n")
    assert main(["run", str(p), "--no-progress"]) == 2
    assert f"{p}, line 4, field 'repeats'" in capsys.readouterr().err


def test_cli_compare(tmp_path, capsys, monkeypatch):
    from promptkit.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--models", "echo:a,echo:b", "--dataset", "renewal_tier", "--n", "4", "--grader", "label",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "compare-renewal_tier: 8 cells" in text and "echo:a" in text and "echo:b" in text and "baseline" in text
    assert (tmp_path / "runs" / "compare-renewal_tier" / "report.html").exists()


def test_default_grader_is_the_datasets_usual_one(tmp_path):
    p = write(tmp_path, """\
        prompts: [{template: default}]
        models: [echo:a]
        dataset: {name: renewal_tier, n: 2}
        graders: [default]
        """)
    g = load_experiment(p).graders[0]
    from promptkit.types import Completion

    assert g(Completion(text="At-Risk"), "At-Risk").passed and not g(Completion(text="Commit"), "At-Risk").passed
    p2 = write(tmp_path, "prompts: [tier.yaml]\nmodels: [echo:a]\ndataset: rows.jsonl\ngraders: [default]\n", "e2.yaml")
    g2 = load_experiment(p2).graders[0]  # a learner's own file: labels inferred from its targets
    assert g2(Completion(text="Commit"), "Commit").passed


def test_python_experiment_takes_a_dataset_and_its_template():
    from promptkit.datasets import load_dataset
    from promptkit.experiment import Experiment
    from promptkit.graders import label_match

    ds = load_dataset("renewal_tier", split="test").sample(3, seed=2)
    e = Experiment(variants=[ds.template()], models=["echo:a"], rows=ds, graders=[label_match(ds.labels)],
                   settings={"max_tokens": 4}, sweep={"temperature": [0.0, 1]})
    cells = e.expand()
    assert len(cells) == 6 and {c.row_id for c in cells} == {r.id for r in ds.rows}
    assert {c.settings_label for c in cells} == {"temperature=0", "temperature=1"}
    assert all(c.target in ds.labels for c in cells) and cells[0].settings.max_tokens == 4
    res = run(e, cache_backend=MemoryCache(), progress=False)
    assert len(res) == 6 and all("label_match" in r.grades for r in res.results)
