"""Label scoring on the real embedded model, checked against an independent full-sequence evaluation."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest

import promptkit as pk
from promptkit.graders import label_match
from promptkit.complete import build_request
from promptkit.errors import GraderError, ModelSpecError
from promptkit.providers import get_provider
from promptkit.scoring import (
    LabelScore, auc, label_logprobs, label_probs, loaded_model, normalise, predictions, score_from_completion,
    score_labels, score_request, scoring_model, summarize,
)
from promptkit.templates import Template
from promptkit.types import Row, Settings

pytestmark = pytest.mark.local_model

TIERS = ["Commit", "Likely", "At-Risk"]
PROMPT = "Notes: budget cut, champion left, no reply to emails.\nAnswer with one of: Commit, Likely, At-Risk."


def reference_logprob(context: str, label: str) -> float:
    """log P(label | context) the slow way: the logits_all model evaluates context+label in full, one pass."""
    lm = get_provider("local:smollm2").loaded(logits=True)
    stripped = context.rstrip(" ")
    ctx = lm.tokenize(stripped)
    full = lm.tokenize(context + label)
    assert full[: len(ctx)] == ctx
    llm = lm.llm
    with lm.lock:
        llm.reset()
        llm.eval(full)
        rows = np.array(llm.scores[: len(full)], dtype=np.float64)
        llm.reset()
    total = 0.0
    for i in range(len(ctx), len(full)):
        row = rows[i - 1]
        total += row[full[i]] - (row.max() + math.log(np.exp(row - row.max()).sum()))
    return total


def test_multi_token_labels_count_every_token():
    s = score_request("local:smollm2", PROMPT, TIERS)
    assert len(s.tokens["At-Risk"]) >= 2 and len(s.tokens["Likely"]) >= 2, s.tokens
    assert "".join(s.tokens["At-Risk"]) == "At-Risk"
    context = loaded_model("local:smollm2").render(build_request(PROMPT))
    for lab in TIERS:
        assert s.logprobs[lab] == pytest.approx(reference_logprob(context, lab), abs=1e-3)
    assert sum(s.probs.values()) == pytest.approx(1.0)
    assert s.label == max(TIERS, key=s.logprobs.__getitem__)


def test_two_token_label_matches_the_full_evaluation():
    labels = ["Renew", "Churn", "Maybe"]  # 2, 2 and 1 tokens on SmolLM2
    s = score_request("local:smollm2", "Will this customer renew? One word.", labels)
    assert [len(s.tokens[lab]) for lab in labels] == [2, 2, 1]
    context = loaded_model("local:smollm2").render(build_request("Will this customer renew? One word."))
    for lab in labels:
        assert s.logprobs[lab] == pytest.approx(reference_logprob(context, lab), abs=1e-3)


def test_whole_label_differs_from_first_token_only():
    lm = loaded_model("local:smollm2")
    context = lm.render(build_request(PROMPT))
    with lm.lock:
        per_token = lm.continuation_logprobs(context, TIERS)
    first_only = {lab: toks[0][1] for lab, toks in zip(TIERS, per_token)}
    whole = label_logprobs("local:smollm2", PROMPT, TIERS)
    assert whole["At-Risk"] < first_only["At-Risk"]  # later tokens have probability < 1
    assert whole["Commit"] == pytest.approx(sum(lp for _, lp in per_token[0]))
    assert normalise(whole) != pytest.approx(normalise(first_only))


def test_prefill_with_trailing_space_is_scored_as_the_model_writes_it():
    got = label_logprobs("local:smollm2", PROMPT, ["Commit", "At-Risk"], prefill="Answer: ")
    context = loaded_model("local:smollm2").render(build_request(PROMPT, prefill="Answer: "))
    assert got["Commit"] == pytest.approx(reference_logprob(context, "Commit"), abs=1e-3)
    without = label_logprobs("local:smollm2", PROMPT, ["Commit", "At-Risk"])
    assert got["Commit"] != pytest.approx(without["Commit"])


def test_mean_normalisation_and_end_of_answer():
    s = score_request("local:smollm2", PROMPT, TIERS)
    mean = label_logprobs("local:smollm2", PROMPT, TIERS, normalize="mean")
    for lab in TIERS:
        assert mean[lab] == pytest.approx(s.logprobs[lab] / len(s.tokens[lab]))
    eos = score_request("local:smollm2", PROMPT, TIERS, end_of_answer=True)
    assert all(eos.logprobs[lab] < s.logprobs[lab] for lab in TIERS)
    assert all(len(eos.tokens[lab]) == len(s.tokens[lab]) + 1 for lab in TIERS)


def test_scoring_leaves_generation_unchanged_and_is_repeatable():
    prov = get_provider("local:smollm2")
    lm = prov.loaded()
    req = build_request(PROMPT, max_tokens=8)
    before = prov._generate(lm, req, threading.Event()).text
    a = label_logprobs("local:smollm2", PROMPT, TIERS)
    label_logprobs("local:smollm2", "Something else entirely. Yes or No?", ["Yes", "No"])
    b = label_logprobs("local:smollm2", PROMPT, TIERS)
    assert a == b
    after = prov._generate(lm, req, threading.Event()).text
    assert before == after


def count_decoded(monkeypatch) -> list[int]:
    """Record how many prompt tokens each llm.eval call decodes."""
    llm = loaded_model("local:smollm2").llm
    sizes: list[int] = []
    real = llm.eval

    def counting(tokens):
        sizes.append(len(tokens))
        return real(tokens)

    monkeypatch.setattr(llm, "eval", counting)
    return sizes


def test_reused_prefix_gives_the_same_scores_on_smollm2(monkeypatch):
    # SmolLM2 gives identical numbers for any batch of two or more tokens, so reuse must not change a score;
    # the rows extend each other (same prompt, then with a prefill) to exercise a cache shorter than the match
    reqs = {"a": build_request(PROMPT), "b": build_request(PROMPT, prefill="Answer:"),
            "c": build_request("Other notes: all good.\nAnswer with one of: Commit, Likely, At-Risk."),
            "d": build_request(PROMPT, prefill="Answer:")}
    rows = [Row(k, {}, "Commit", "test") for k in reqs]
    sizes = count_decoded(monkeypatch)
    fresh = score_labels("local:smollm2", lambda r: reqs[r.id], rows, TIERS, progress=False)
    fresh_sizes = list(sizes)
    sizes.clear()
    reused = score_labels("local:smollm2", lambda r: reqs[r.id], rows, TIERS, progress=False, reuse_prefix=True)
    # b extends a: with reuse only its prefill is decoded (d repeats b's request, so the score cache may answer
    # it in either run; compare the row that must be decoded in both)
    assert sizes[1] < fresh_sizes[1] / 2, (sizes, fresh_sizes)
    for f, r in zip(fresh, reused):
        assert r.logprobs == pytest.approx(f.logprobs, abs=1e-6), f.row_id
    context = loaded_model("local:smollm2").render(reqs["b"])
    assert reused[1].logprobs["Commit"] == pytest.approx(reference_logprob(context, "Commit"), abs=1e-3)


def test_score_labels_over_rows_carries_ids_targets_and_splits():
    tpl = Template(name="tier", turns="Notes: {{notes}}\nAnswer with one of: Commit, Likely, At-Risk.")
    rows = [
        Row("r1", {"notes": "Signed the renewal early, expanding seats."}, "Commit", "test"),
        Row("r2", {"notes": "Champion left, usage down 60%, evaluating a competitor."}, "At-Risk", "test"),
    ]
    scores = score_labels("local:smollm2", tpl, rows, TIERS, progress=False)
    assert [s.row_id for s in scores] == ["r1", "r2"]
    assert [s.target for s in scores] == ["Commit", "At-Risk"] and {s.split for s in scores} == {"test"}
    one = score_request("local:smollm2", tpl.to_request(rows[1].input, Settings()), TIERS)
    assert scores[1].logprobs == pytest.approx(one.logprobs, abs=1e-6)
    assert predictions(scores) == [s.label for s in scores]
    summary = summarize(scores, TIERS, n_boot=50)
    assert summary.n == 2 and summary.unparseable == 0


def test_too_long_prompt_is_recorded_not_raised():
    s = score_request("local:smollm2", "word " * 6000, ["Yes", "No"])
    assert not s.ok and "context window" in s.error and s.label is None


def test_runner_form_answers_the_label_and_carries_probabilities():
    spec = scoring_model("local:smollm2", TIERS)
    assert spec == "score:smollm2[Commit|Likely|At-Risk]"
    c = pk.complete(PROMPT, spec)
    assert c.ok, c.error
    direct = score_request("local:smollm2", PROMPT, TIERS)
    assert c.text == direct.label and c.finish_reason == "scored"
    assert label_probs(c) == pytest.approx(direct.probs, abs=1e-6)
    back = score_from_completion(c, row_id="x", target="At-Risk")
    assert back.label == direct.label and back.correct == (direct.label == "At-Risk")
    pre = pk.complete(PROMPT, spec, prefill="Answer: ")
    assert pre.text.startswith("Answer: ") and pre.text[len("Answer: "):] in TIERS


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(GraderError, match="at least two labels"):
        label_logprobs("local:smollm2", PROMPT, ["Yes"])
    with pytest.raises(GraderError, match="normalize"):
        label_logprobs("local:smollm2", PROMPT, ["Yes", "No"], normalize="max")
    with pytest.raises(ModelSpecError, match="only local models"):
        label_logprobs("echo:x", PROMPT, ["Yes", "No"])
    with pytest.raises(ModelSpecError, match="must look like"):
        pk.complete(PROMPT, "score:smollm2")
    with pytest.raises(GraderError, match="cannot be used in a scoring spec"):
        scoring_model("local:smollm2", ["A|B", "C"])


def test_auc_of_hand_made_scores():
    def ls(rid, p_yes, target):
        return LabelScore(rid, "Yes" if p_yes >= 0.5 else "No", {"Yes": p_yes, "No": 1 - p_yes}, {}, target=target)

    # every row's argmax is "No", yet P(Yes) ranks the rows perfectly
    scores = [ls("a", 0.4, "Yes"), ls("b", 0.3, "Yes"), ls("c", 0.2, "No"), ls("d", 0.1, "No")]
    assert set(predictions(scores)) == {"No"}
    assert auc(scores, "Yes") == 1.0


def test_scoring_spec_runs_in_the_runner_beside_generation():
    from promptkit.experiment import Experiment

    tpl = Template(name="yn", turns="Notes: {{notes}}\nDo the notes mention a competing vendor? Answer Yes or No.")
    rows = [Row("r1", {"notes": "They are trialling Zendesk."}, "Yes", "test"),
            Row("r2", {"notes": "Renewal signed."}, "No", "test")]
    spec = scoring_model("local:smollm2", ["Yes", "No"])
    exp = Experiment(variants=[tpl], models=["local:smollm2", spec], rows=rows,
                     settings=Settings(max_tokens=4), graders=[label_match(["Yes", "No"])])
    res = pk.run(exp, cache="off", progress=False)
    scored = [r for r in res.results if r.cell.model == spec]
    assert len(scored) == 2
    for r in scored:
        assert r.completion.ok and r.completion.text in ("Yes", "No")
        assert r.grades["label_match"].label == r.completion.text  # the ordinary label grader reads it
        assert sum(label_probs(r.completion).values()) == pytest.approx(1.0)
    summary = res.summary()
    assert set(summary["model"]) == {"local:smollm2", spec}


class Interrupted(Exception):
    pass


def test_scores_are_cached_by_the_runners_cell_key_and_an_interrupted_run_keeps_its_rows(monkeypatch):
    from promptkit import scoring
    from promptkit.cache import cell_key, open_cache

    ds = pk.load_dataset("renewal_tier")
    rows = ds.split("dev").rows[:4]
    fresh = score_labels("local:smollm2", ds.template(), rows, TIERS, progress=False, cache="off")
    real, calls, stop = scoring._score_on_thread, [], [3]

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == stop[0]:
            stop[0] = 0
            raise Interrupted("the learner stops the cell on the third row")
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "_score_on_thread", interrupted)
    with pytest.raises(Interrupted):
        score_labels("local:smollm2", ds.template(), rows, TIERS, progress=False)
    calls.clear()
    again = score_labels("local:smollm2", ds.template(), rows, TIERS, progress=False)
    assert len(calls) == 2, "only the two rows the interrupted run had not scored are scored again"
    for a, b in zip(again, fresh):
        assert (a.row_id, a.label, a.target, a.split) == (b.row_id, b.label, b.target, b.split)
        assert a.probs == pytest.approx(b.probs, abs=1e-9)
    calls.clear()
    score_labels("local:smollm2", ds.template(), rows, TIERS, progress=False)
    assert not calls
    # the key is the runner's: a scoring_model cell over the same request finds the same entry
    req = ds.template().to_request(rows[0].input, Settings())
    hit = open_cache().get(cell_key(scoring_model("local:smollm2", TIERS), req))
    assert label_probs(hit) == pytest.approx(fresh[0].probs, abs=1e-9)
    score_labels("local:smollm2", ds.template(), rows, TIERS, progress=False, cache="refresh")
    assert len(calls) == 4
