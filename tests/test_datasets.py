"""The kit's datasets: every row loads, bad rows are named by file/line/field, the card matches the data."""
from __future__ import annotations

import itertools
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

import promptkit as pk
from promptkit.datasets import (
    Dataset, counts_table, datasets_dir, list_datasets, load_dataset, load_tasks, update_card,
)
from promptkit.errors import DatasetError

ALL = list_datasets()
TASKS = load_tasks()
FILE_TASKS = [n for n in ALL if not TASKS[n].derived_from]
CLASSIFICATION = [n for n in FILE_TASKS if TASKS[n].type in ("label", "multilabel")]
# the tasks the tour teaches on: large enough that a stored run resolves a ~12-point paired difference
TAUGHT = ["renewal_tier", "health_colour"]


# --- every shipped dataset ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_every_row_loads_and_has_the_declared_inputs(name):
    ds = load_dataset(name)
    assert len(ds) >= 40
    for row in ds:
        assert set(row.input) == set(ds.task.input_fields)
        assert all(isinstance(v, str) and v.strip() for v in row.input.values())


@pytest.mark.parametrize("name", FILE_TASKS)
def test_splits_exist_and_test_is_largest(name):
    sizes = load_dataset(name).splits
    assert set(sizes) == {"train", "dev", "test"}
    assert sizes["test"] > sizes["dev"] > sizes["train"] >= 3
    assert sizes["dev"] >= 12
    if name not in TAUGHT:  # the tasks the tour teaches on have a larger dev split (below)
        assert sizes["dev"] <= 20


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_classification_tasks_have_60_rows_and_every_label_in_dev_and_test(name):
    ds = load_dataset(name)
    assert len(ds) >= 60
    counts = ds.label_counts()
    for split in ("dev", "test"):
        assert set(ds.labels) <= set(counts[split]), (split, counts[split])
    total = Counter()
    for c in counts.values():
        total.update(c)
    shares = [total[lab] / len(ds) for lab in ds.labels]
    if ds.task.type == "label":
        assert min(shares) >= 0.2 and max(shares) <= 0.45, total  # balanced-ish
        assert len(set(total[lab] for lab in ds.labels)) > 1, "label mix should not be exactly uniform"
    else:
        assert min(shares) >= 0.1, total


@pytest.mark.parametrize("name", TAUGHT)
def test_taught_tasks_are_large_enough_to_resolve_small_differences(name):
    sizes = load_dataset(name).splits
    assert sum(sizes.values()) >= 150, sizes
    assert sizes["test"] >= 100 and sizes["dev"] >= 30, sizes
    assert 3 <= sizes["train"] <= 12, sizes  # train feeds few-shot examples: a handful per label


@pytest.mark.parametrize("name", [n for n in FILE_TASKS if TASKS[n].type == "label"])
def test_label_shares_are_balanced_in_every_split(name):
    ds = load_dataset(name)
    k = len(ds.labels)
    for split, counts in ds.label_counts().items():
        n = sum(counts.values())
        if split == "train":
            assert min(counts[lab] for lab in ds.labels) >= 1 and max(counts.values()) - min(counts.values()) <= 2
            continue
        shares = {lab: counts[lab] / n for lab in ds.labels}
        # within 0.6x-1.4x of uniform: for three labels each label is 20-47% of the split
        assert all(0.6 / k <= s <= 1.4 / k for s in shares.values()), (split, counts)


@pytest.mark.parametrize("name", [n for n in FILE_TASKS if TASKS[n].type == "label"])
def test_train_split_has_a_few_shot_example_per_label(name):
    ds = load_dataset(name, split="train")
    assert set(r.target for r in ds) == set(ds.labels)


def test_label_sets_are_the_documented_ones():
    assert load_dataset("renewal_tier").labels == ["Commit", "Likely", "At-Risk"]
    assert load_dataset("health_colour").labels == ["Green", "Yellow", "Red"]
    assert load_dataset("competitor_mention").labels == ["Yes", "No"]
    assert len(load_dataset("risk_signals").labels) == 8


def test_renewal_tier_explicit_forecasts_follow_the_band_definitions():
    ds = load_dataset("renewal_tier")
    explicit = [r for r in ds if r.meta.get("forecast") is not None]
    assert 8 <= len(explicit) <= len(ds) // 2  # some explicit, most indirect
    for r in explicit:
        f = r.meta["forecast"]
        assert f"{f}%" in r.input["notes"], r.id
        band = "Commit" if f >= 90 else "Likely" if f >= 70 else "At-Risk"
        assert r.target == band, (r.id, f, r.target)


def test_risk_signal_evidence_quotes_are_in_the_notes_and_match_the_target():
    ds = load_dataset("risk_signals")
    for r in ds:
        assert list(r.meta["evidence"]) == r.target, r.id
        for signal, quote in r.meta["evidence"].items():
            assert quote in r.input["notes"], (r.id, signal, quote)
        assert r.target == sorted(r.target, key=ds.labels.index), f"{r.id}: targets in label order"
    sizes = Counter(len(r.target) for r in ds)
    assert sizes[0] >= 5 and max(sizes) >= 4, sizes  # some rows with none, some with many


def test_binary_view_has_both_classes_in_every_split():
    ds = load_dataset("risk_signals")
    comp = ds.binary("competitive_mentions")
    assert comp.name == "competitor_mention" and comp.labels == ["Yes", "No"]
    assert [r.id for r in comp] == [r.id for r in ds]
    yes = sum(r.target == "Yes" for r in comp)
    assert 0.35 <= yes / len(comp) <= 0.5
    for split, counts in comp.label_counts().items():
        assert counts["Yes"] >= 2 and counts["No"] >= 2, (split, counts)
    assert [r.target for r in load_dataset("competitor_mention")] == [r.target for r in comp]
    for r, src in zip(comp, ds):
        assert (r.target == "Yes") == ("competitive_mentions" in src.target)
    other = ds.binary("missed_milestones")
    assert other.name == "risk_signals.missed_milestones" and {r.target for r in other} == {"Yes", "No"}
    with pytest.raises(DatasetError, match="'churn' is not one of declining_usage"):
        ds.binary("churn")
    with pytest.raises(DatasetError, match="binary\\(\\) needs a multilabel task"):
        load_dataset("renewal_tier").binary("Commit")


def test_health_colour_follows_the_four_question_rule():
    def colour(a):
        answers = [a["set_up"], a["deployed"], a["usage_depth"], a["value_explained"]]
        if a["set_up"] == "no" or answers.count("no") >= 2:
            return "Red"
        return "Green" if answers.count("no") == 0 and answers.count("partly") <= 1 else "Yellow"

    ds = load_dataset("health_colour")
    profiles = Counter()
    for r in ds:
        assert set(r.meta["answers"].values()) <= {"yes", "partly", "no"}, r.id
        assert colour(r.meta["answers"]) == r.target, (r.id, r.meta["answers"], r.target)
        profiles[tuple(r.meta["answers"].values())] += 1
    assert len(profiles) >= 15, "the four answers should come in many combinations"


def test_cx_driver_evidence_quotes_are_in_the_conversation():
    ds = load_dataset("cx_drivers")
    primaries = Counter()
    for r in ds:
        drivers = r.target["drivers"]
        assert list(r.meta["evidence"]) == drivers and r.target["primary"] in drivers, r.id
        for driver, quote in r.meta["evidence"].items():
            assert quote in r.input["conversation"], (r.id, driver, quote)
        assert drivers == sorted(drivers, key=ds.labels.index), r.id
        turns = r.input["conversation"].splitlines()
        assert len(turns) >= 3 and all(t.startswith(("Customer: ", "Agent: ")) for t in turns), r.id
        primaries[r.target["primary"]] += 1
    assert set(primaries) == set(ds.labels) and min(primaries.values()) >= 8, primaries


def test_renewal_email_rubrics_are_checkable_and_consistent_with_the_inputs():
    ds = load_dataset("renewal_email")
    stages = Counter(r.input["days_out"] for r in ds)
    assert set(stages) == {"90", "60", "30"} and min(stages.values()) >= 10, stages
    for r in ds:
        crit = {c["id"]: c for c in r.target}
        assert 5 <= len(crit) <= 9, r.id
        assert crit["length_limit"]["check"]["max_words"] <= 200, r.id
        assert any(name in r.input["contact"] for name in crit["addresses_contact"]["check"]["contains_any"]), r.id
        for c in r.target:
            if "regex" in c.get("check", {}):
                re.compile(c["check"]["regex"])
        if "mentions_renewal_date" in crit:
            assert re.search(crit["mentions_renewal_date"]["check"]["regex"], r.input["renewal_date"], re.I), r.id


def test_rubric_targets_are_validated(bad_dir):
    row = {"id": "e1", "split": "test", "target": [
        {"id": "a", "description": "States the date."}, {"id": "b", "description": "Under 100 words.",
                                                          "check": {"max_words": "100"}},
        {"id": "c", "description": "Greets Ana."}],
        "input": {"account": "A", "contact": "Ana", "csm": "B", "renewal_date": "1 May", "days_out": "45",
                  "context": "x"}}
    path = _write(bad_dir, [row], name="renewal_email.jsonl")
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert str(exc.value) == "renewal_email.jsonl line 1: field 'input.days_out': '45' is not one of 90, 60, 30"
    row["input"]["days_out"] = "60"
    _write(bad_dir, [row], name="renewal_email.jsonl")
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert str(exc.value) == "renewal_email.jsonl line 1: field 'target[1].check.max_words': '100' is not of type 'integer'"
    row["target"][1] = {"id": "a", "description": "Dup."}
    _write(bad_dir, [row], name="renewal_email.jsonl")
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert str(exc.value) == "renewal_email.jsonl line 1: field 'target[1].id': duplicate criterion id 'a'"
    row["target"][1] = {"id": "b"}
    _write(bad_dir, [row], name="renewal_email.jsonl")
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert str(exc.value) == "renewal_email.jsonl line 1: field 'target[1].description': missing"


def test_interview_rubrics_name_themes_attributions_and_invented_fact_traps():
    ds = load_dataset("interview_synthesis")
    for r in ds:
        ids = [c["id"] for c in r.target]
        assert "no_invented_facts" in ids, r.id
        assert sum(i.startswith("theme_") for i in ids) >= 3, r.id
        for c in r.target:
            for name in c.get("check", {}).get("contains_any", []):
                assert name in r.input["notes"], (r.id, c["id"], name)
            if c["id"].startswith("quote_"):
                assert c.get("check", {}).get("contains_any"), f"{r.id}: {c['id']} should check the name"
    assert sum(any(c["id"].startswith("quote_") for c in r.target) for r in ds) >= 30


def _shingles(text: str, k: int = 3) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9%$]+", text.lower())
    return {tuple(words[i:i + k]) for i in range(max(1, len(words) - k + 1))}


def test_no_near_duplicate_rows_within_or_across_datasets():
    """Word 3-shingle Jaccard between the input texts of any two rows: hand-written rows stay far apart."""
    texts = []
    for name in FILE_TASKS:
        for r in load_dataset(name):
            texts.append((name, r.id, _shingles(" ".join(r.input.values()))))
    worst_within, worst_across = (0.0,), (0.0,)
    for (ta, a, sa), (tb, b, sb) in itertools.combinations(texts, 2):
        j = len(sa & sb) / len(sa | sb)
        if ta == tb and j > worst_within[0]:
            worst_within = (j, a, b)
        if ta != tb and j > worst_across[0]:
            worst_across = (j, f"{ta}/{a}", f"{tb}/{b}")
    # some renewal emails are about accounts from renewal_tier, so across tasks a little overlap is expected
    assert worst_within[0] < 0.25, f"near-duplicate rows in one dataset: {worst_within}"
    assert worst_across[0] < 0.4, f"near-duplicate rows across datasets: {worst_across}"


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9%$]+", text.lower()))


@pytest.mark.parametrize("name", FILE_TASKS)
def test_no_two_rows_share_most_of_their_words(name):
    """No row reuses 80% or more of another row's distinct words (share of the shorter row's word set)."""
    rows = [(r.id, _words(" ".join(r.input.values()))) for r in load_dataset(name)]
    worst = (0.0,)
    for (a, wa), (b, wb) in itertools.combinations(rows, 2):
        share = len(wa & wb) / min(len(wa), len(wb))
        if share > worst[0]:
            worst = (share, a, b)
    assert worst[0] < 0.8, f"two rows share most of their words: {worst}"


def test_word_share_flags_a_reworded_copy():
    a = load_dataset("renewal_tier")["rt-003"].input["notes"]
    b = a.replace("Pinecrest", "Pinewood").replace("June", "May").replace("Braze", "Iterable")
    assert len(_words(a) & _words(b)) / min(len(_words(a)), len(_words(b))) >= 0.8


def test_shingle_similarity_flags_a_near_copy():
    a = load_dataset("renewal_tier")[1].input["notes"]
    b = a.replace("Eastmoor", "Westmoor").replace("Tuesday", "Thursday")
    sa, sb = _shingles(a), _shingles(b)
    assert len(sa & sb) / len(sa | sb) > 0.6


@pytest.mark.parametrize("name", ALL)
def test_default_template_loads_and_uses_exactly_the_input_fields(name):
    ds = load_dataset(name)
    tpl = ds.template()
    assert tpl.variables == set(ds.task.input_fields)
    row = ds.rows[0]
    req = tpl.render(row.input)
    assert any(row.input[f][:40] in m.content for m in req.messages for f in row.input)


@pytest.mark.parametrize("name", ALL)
def test_suggested_grader_exists_and_reads_a_gold_answer(name):
    from promptkit import graders
    from promptkit.types import Completion

    ds = load_dataset(name)
    assert callable(getattr(graders, ds.task.grader)), ds.task.grader
    if ds.task.type == "rubric":
        assert [c.id for c in graders.rubric_criteria(ds[0].target)] == [c["id"] for c in ds[0].target]
        return
    grader = graders.default_grader(ds.task)
    for row in ds.split("dev"):
        gold = row.target if isinstance(row.target, str) else json.dumps(row.target)
        assert grader(Completion(text=gold, provider="echo", model="x"), row).score == 1.0, row.id


def test_card_counts_table_matches_the_files():
    card = (datasets_dir() / "README.md").read_text(encoding="utf-8")
    table = card.split("<!-- counts:start -->", 1)[1].split("<!-- counts:end -->", 1)[0].strip()
    assert table == counts_table(), "run: python -m promptkit.datasets --write"
    for name in ALL:
        assert f"### {name}" in card, f"the card does not describe {name}"


def test_public_names_are_exported():
    assert pk.load_dataset is load_dataset


# --- Dataset behaviour ------------------------------------------------------------------------------------------

def test_split_sample_and_frame():
    ds = load_dataset("renewal_tier")
    dev = ds.split("dev")
    assert {r.split for r in dev} == {"dev"} and len(dev) == ds.splits["dev"]
    assert [r.id for r in load_dataset("renewal_tier", split="dev")] == [r.id for r in dev]
    a, b, c = ds.sample(10, seed=1), ds.sample(10, seed=1), ds.sample(10, seed=2)
    assert [r.id for r in a] == [r.id for r in b] != [r.id for r in c]
    assert len({r.id for r in a}) == 10
    df = ds.to_frame()
    assert list(df.columns) == ["id", "split", "notes", "target", "meta"] and len(df) == len(ds)
    assert ds["rt-001"].target == df.set_index("id").loc["rt-001", "target"]
    with pytest.raises(DatasetError, match=f"asked for {len(ds) + 1} rows but it has {len(ds)}"):
        ds.sample(len(ds) + 1)
    with pytest.raises(DatasetError, match="split 'validation' is not one of train, dev, test"):
        ds.split("validation")


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(DatasetError, match=r"no dataset named 'renewal'; known: renewal_tier"):
        load_dataset("renewal")


def test_env_var_overrides_the_datasets_dir(tmp_path, monkeypatch):
    shutil.copy(datasets_dir() / "tasks.yaml", tmp_path / "tasks.yaml")
    (tmp_path / "renewal_tier.jsonl").write_text(
        '{"id": "a", "split": "test", "input": {"notes": "Signed."}, "target": "Commit"}\n')
    monkeypatch.setenv("PROMPTKIT_DATASETS_DIR", str(tmp_path))
    assert datasets_dir() == tmp_path
    assert [r.id for r in load_dataset("renewal_tier")] == ["a"]


def test_save_round_trips_and_leaves_no_temp_file(tmp_path):
    ds = load_dataset("renewal_tier").split("train")
    out = ds.save(tmp_path / "copy" / "renewal_tier.jsonl")
    shutil.copy(datasets_dir() / "tasks.yaml", out.parent / "tasks.yaml")
    again = load_dataset(out)
    assert [(r.id, r.target, r.input, r.meta) for r in again] == [(r.id, r.target, r.input, r.meta) for r in ds]
    assert sorted(p.name for p in out.parent.iterdir()) == ["renewal_tier.jsonl", "tasks.yaml"]


def test_a_failed_save_keeps_the_old_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "rows.jsonl"
    target.write_text("old contents\n")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("promptkit.datasets.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        load_dataset("renewal_tier").save(target)
    assert target.read_text() == "old contents\n" and list(tmp_path.iterdir()) == [target]


def test_a_learners_own_file_without_tasks_yaml_loads_and_infers_labels(tmp_path):
    p = tmp_path / "mine.jsonl"
    p.write_text('{"id": "1", "split": "test", "input": {"q": "hi"}, "target": "Yes"}\n'
                 '\n'
                 '{"id": "2", "split": "dev", "input": {"q": "ho"}, "target": "No"}\n')
    ds = load_dataset(str(p))
    assert ds.name == "mine" and ds.labels == ["No", "Yes"] and len(ds) == 2
    assert ds.label_counts() == {"test": Counter({"Yes": 1}), "dev": Counter({"No": 1})}
    p.write_text('{"id": "1", "split": "test", "input": {"q": "hi"}, "target": {"answer": 4}}\n')
    ds = load_dataset(p)
    assert ds.labels == [] and ds[0].target == {"answer": 4} and ds.label_counts() == {"test": Counter()}


def test_card_update_rewrites_only_the_table(tmp_path, monkeypatch):
    card = tmp_path / "README.md"
    card.write_text("intro\n<!-- counts:start -->\nold\n<!-- counts:end -->\noutro\n")
    update_card(card)
    text = card.read_text()
    assert text.startswith("intro\n<!-- counts:start -->\n| task |") and text.endswith("<!-- counts:end -->\noutro\n")
    assert "old" not in text and list(tmp_path.iterdir()) == [card]


# --- bad input: exact messages ---------------------------------------------------------------------------------

GOOD = {"id": "r1", "split": "test", "input": {"notes": "Renewal signed."}, "target": "Commit"}


@pytest.fixture
def bad_dir(tmp_path):
    shutil.copy(datasets_dir() / "tasks.yaml", tmp_path / "tasks.yaml")
    return tmp_path


def _write(dirpath: Path, lines: list, name: str = "renewal_tier.jsonl") -> Path:
    path = dirpath / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def _row(**changes):
    row = json.loads(json.dumps(GOOD))
    for k, v in changes.items():
        if v is _DROP:
            row.pop(k)
        else:
            row[k] = v
    return row


_DROP = object()

MULTI_CASES = [
    ("label_not_in_set", ["declining_usage", "churn"],
     "risk_signals.jsonl line 1: field 'target[1]': 'churn' is not one of declining_usage, ticket_escalation, "
     "exec_sponsor_departure, missed_milestones, nps_csat_drop, low_qbr_attendance, procurement_delays, "
     "competitive_mentions"),
    ("listed_twice", ["declining_usage", "declining_usage"],
     "risk_signals.jsonl line 1: field 'target[1]': 'declining_usage' is listed twice"),
    ("not_a_list", "declining_usage", "risk_signals.jsonl line 1: field 'target': expected a list of labels, got string"),
]

CX_CASES = [
    ("primary_not_among", {"drivers": ["customer_effort"], "primary": "strong_emotion"},
     "cx_drivers.jsonl line 1: field 'target.primary': 'strong_emotion' is not among target.drivers"),
    ("primary_missing", {"drivers": ["customer_effort"]}, "cx_drivers.jsonl line 1: field 'target.primary': missing"),
    ("drivers_empty", {"drivers": [], "primary": "customer_effort"},
     "cx_drivers.jsonl line 1: field 'target.primary': 'customer_effort' is not among target.drivers"),
    ("extra_key", {"drivers": ["customer_effort"], "primary": "customer_effort", "score": 3},
     "cx_drivers.jsonl line 1: field 'target': Additional properties are not allowed ('score' was unexpected)"),
    ("not_object", ["customer_effort"], "cx_drivers.jsonl line 1: field 'target': expected an object, got list"),
]


@pytest.mark.parametrize("case, target, message", CX_CASES, ids=[c[0] for c in CX_CASES])
def test_bad_cx_targets(bad_dir, case, target, message):
    row = {"id": "c1", "split": "test", "input": {"conversation": "Customer: hi"}, "target": target}
    path = _write(bad_dir, [row], name="cx_drivers.jsonl")
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert str(exc.value) == message


@pytest.mark.parametrize("case, target, message", MULTI_CASES, ids=[c[0] for c in MULTI_CASES])
def test_bad_multilabel_targets(bad_dir, case, target, message):
    path = _write(bad_dir, [_row(target=target)], name="risk_signals.jsonl")
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert str(exc.value) == message


BAD_CASES = [
    ("bad_json", ['{"id": "r1", "split": "test" "input": {}}'],
     "renewal_tier.jsonl line 1: not valid JSON: Expecting ',' delimiter (column 30)"),
    ("not_object", ['["r1", "test"]'], "renewal_tier.jsonl line 1: expected a JSON object, got list"),
    ("missing_target", [_row(target=_DROP)], "renewal_tier.jsonl line 1: field 'target': missing"),
    ("missing_input_field", [_row(input={})], "renewal_tier.jsonl line 1: field 'input.notes': missing"),
    ("unexpected_input", [_row(input={"notes": "x", "account": "Acme"})],
     "renewal_tier.jsonl line 1: field 'input.account': unexpected (this task's inputs are: notes)"),
    ("wrong_type_input", [_row(input={"notes": 17})],
     "renewal_tier.jsonl line 1: field 'input.notes': expected a string, got int"),
    ("empty_input", [_row(input={"notes": "  "})], "renewal_tier.jsonl line 1: field 'input.notes': empty"),
    ("input_not_object", [_row(input="notes")],
     "renewal_tier.jsonl line 1: field 'input': expected an object, got string"),
    ("wrong_type_id", [_row(id=7)], "renewal_tier.jsonl line 1: field 'id': expected a string, got int"),
    ("bad_label", [GOOD, "", _row(id="r2", target="Maybe")],
     "renewal_tier.jsonl line 3: field 'target': 'Maybe' is not one of Commit, Likely, At-Risk"),
    ("label_wrong_type", [_row(target=["Commit"])],
     "renewal_tier.jsonl line 1: field 'target': expected a string, got list"),
    ("bad_split", [_row(split="validation")],
     "renewal_tier.jsonl line 1: field 'split': 'validation' is not one of train, dev, test"),
    ("duplicate_id", [GOOD, _row(split="dev"), GOOD],
     "renewal_tier.jsonl line 2: field 'id': duplicate id 'r1' (first on line 1)"),
    ("unknown_field", [_row(label="Commit")],
     "renewal_tier.jsonl line 1: field 'label': unexpected field (allowed: id, split, input, target, meta)"),
    ("meta_wrong_type", [_row(meta="why")], "renewal_tier.jsonl line 1: field 'meta': expected an object, got string"),
    ("empty_file", ["", "   "], "renewal_tier.jsonl: empty file (no rows)"),
]


@pytest.mark.parametrize("case, lines, message", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_rows_name_file_line_and_field(bad_dir, case, lines, message):
    path = _write(bad_dir, lines)
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert str(exc.value) == message


def test_bad_rows_are_also_caught_when_loading_by_name(bad_dir, monkeypatch):
    _write(bad_dir, [GOOD, _row(id="r2", target="Maybe")])
    monkeypatch.setenv("PROMPTKIT_DATASETS_DIR", str(bad_dir))
    with pytest.raises(DatasetError, match=r"^renewal_tier.jsonl line 2: field 'target': 'Maybe' is not one of"):
        load_dataset("renewal_tier")


def test_non_utf8_file(bad_dir):
    path = bad_dir / "renewal_tier.jsonl"
    path.write_bytes(b'{"id": "r1", "split": "test", "input": {"notes": "caf\xe9"}, "target": "Commit"}\n')
    with pytest.raises(DatasetError, match=r"^renewal_tier.jsonl: not UTF-8 text \(invalid continuation byte"):
        load_dataset(path)


def test_bad_tasks_yaml_names_task_and_field(tmp_path, monkeypatch):
    tasks = yaml.safe_load((datasets_dir() / "tasks.yaml").read_text())
    tasks["renewal_tier"]["labels"] = [True, False]
    (tmp_path / "tasks.yaml").write_text(yaml.safe_dump(tasks))
    monkeypatch.setenv("PROMPTKIT_DATASETS_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=r"tasks.yaml: task 'renewal_tier': field 'labels': expected a list of "
                                           r"strings \(quote Yes/No in YAML\)"):
        list_datasets()
