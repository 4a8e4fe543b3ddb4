"""The HTML report is one self-contained file; the plots show scores with CIs, the baseline and latency."""
from __future__ import annotations

import base64
import os
import re

import pytest

import promptkit as pk
from promptkit.report import html_report, plot_confusion, plot_latency, plot_scores
from promptkit.results import Results
from promptkit.types import Cell, CellResult, Completion, Grade, Message, Request, Settings

GOLD = ["A", "A", "A", "B", "B", "A", "A", "B"]


def make(variant: str, model: str, answers: list[str | None], *, latency: float = 0.2, error_rows=(),
         graded: bool = True) -> list[CellResult]:
    out = []
    s = Settings(max_tokens=4)
    for i, (gold, ans) in enumerate(zip(GOLD, answers)):
        req = Request((Message("user", f"notes {i}"),), s)
        cell = Cell(f"{variant}{model}{i}", variant, model, s, f"r{i}", 0, req, target=gold)
        if i in error_rows:
            out.append(CellResult(cell, Completion(error_kind="timeout", error="timed out after 30 s")))
            continue
        comp = Completion(text=ans or "hmm", input_tokens=20, output_tokens=1, latency_s=latency + 0.01 * i,
                          cost_usd=0.0)
        grades = {}
        if graded:
            grades["tier"] = (Grade(0.0, False, label=None, parsed=False) if ans is None
                              else Grade(float(ans == gold), ans == gold, label=ans))
        out.append(CellResult(cell, comp, grades))
    return out


@pytest.fixture
def results() -> Results:
    cells = (make("zero_shot", "m1", ["A"] * 8)
             + make("zero_shot", "m2", ["A", "B", None, "B", "B", "A", "A", "B"], latency=1.0, error_rows=(7,))
             + make("few_shot", "m1", ["A", "A", "B", "B", "B", "A", "A", "A"])
             + make("few_shot", "m2", GOLD, latency=1.0))
    return Results(cells, {"name": "Renewal <tiers>", "dataset": "renewal_tier.jsonl", "rows": 8})


def test_plot_scores_bars_with_ci_and_baseline_lines(results):
    fig = plot_scores(results)
    ax = fig.axes[0]
    bars = [p for p in ax.patches]
    assert len(bars) == 4  # 2 variants x 2 models
    s = results.summary().set_index(["variant", "model"])
    heights = sorted(round(b.get_height(), 6) for b in bars)
    assert heights == sorted(round(v, 6) for v in s["accuracy"])
    baselines = [c for c in ax.collections if c.get_label() == "majority baseline"]
    assert len(baselines) == 1  # labelled once in the legend
    ys = {round(seg[0][1], 6) for coll in ax.collections for seg in coll.get_segments()
          if coll.get_linestyle() and len(seg) == 2 and seg[0][1] == seg[1][1]}
    assert round(5 / 8, 6) in ys  # baseline of all 8 rows: "A" 5 times
    assert round(5 / 7, 6) in ys  # m2 zero_shot lost row 7 (a B) to an error: 5 of 7
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "majority baseline" in legend and "m1" in legend and "m2" in legend
    assert ax.get_ylabel() == "accuracy"


def test_plot_scores_balanced_accuracy_draws_chance_and_rejects_unknown_metric(results):
    fig = plot_scores(results, metric="balanced_accuracy")
    ax = fig.axes[0]
    assert any(line.get_label() == "chance (1/k)" and line.get_ydata()[0] == 0.5 for line in ax.get_lines())
    with pytest.raises(ValueError, match="summary has no such column"):
        plot_scores(results, metric="bleu")


def test_plot_scores_draws_one_bar_per_model_and_setting_of_a_sweep():
    cells = make("v", "m1", GOLD)
    for c in make("v", "m1", ["A"] * 8):
        c.cell.settings_label = "temperature=0.7"
        cells.append(c)
    ax = plot_scores(Results(cells)).axes[0]
    assert len(ax.patches) == 2
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "m1 · temperature=0.7" in legend and "m1 · default" in legend


def test_plot_latency_one_box_per_model_and_every_call_drawn(results):
    fig = plot_latency(results)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["m1", "m2"]
    dots = sum(len(c.get_offsets()) for c in ax.collections)
    assert dots == 31  # 32 calls, one failed
    with pytest.raises(ValueError, match="must be 'model' or 'variant'"):
        plot_latency(results, by="row")


def test_plot_confusion_shows_the_counts(results):
    fig = plot_confusion(results, variant="zero_shot", model="m2")
    img = fig.axes[0].images[0].get_array()
    cm = results.confusion(variant="zero_shot", model="m2")
    assert img.tolist() == cm.to_numpy(float).tolist()
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("1") >= 1 and len(texts) == cm.size


def test_plots_leave_pyplot_alone(results):
    import matplotlib
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    before = plt.get_fignums()
    plot_scores(results)
    plot_latency(results)
    assert plt.get_fignums() == before and matplotlib.get_backend() == backend


def test_report_is_self_contained_with_tables_plots_and_confusions(results, tmp_path):
    path = results.to_html(tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    assert os.listdir(tmp_path) == ["report.html"]  # no temporary file left beside it
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # nothing loaded from outside: no scripts, no stylesheets, no links, no remote images
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text)
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text
    imgs = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', text)
    assert len(imgs) == 3  # accuracy, balanced accuracy, latency
    for b64 in imgs:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    # title and meta escaped
    assert "<title>Renewal &lt;tiers&gt;</title>" in text and "renewal_tier.jsonl" in text
    # summary table with the honest columns
    for head in ("accuracy", "baseline", "balanced_accuracy", "macro_f1", "unparseable", "latency_p50",
                 "tokens_per_100", "cost_per_100"):
        assert f">{head}</th>" in text, head
    assert 'class="flag"' in text and "not above majority baseline" in text
    # errors, confusion matrices, side-by-side
    assert "Errors" in text and "timed out after 30 s" in text
    assert text.count("gold \\ answer") == 4 and "(unparseable)" in text
    assert "Side by side" in text and "zero_shot" in text and "✓ 1.00 A" in text


def test_report_escapes_outputs(tmp_path):
    cells = make("v", "m", ["A"] * 8)
    cells[0].completion.text = '<img src="https://evil.example/x.png" onerror="alert(1)">'
    text = html_report(Results(cells))
    assert "<img src=\"https://evil" not in text
    assert "&lt;img src=&#34;https://evil.example/x.png&#34;" in text


def test_report_of_ungraded_and_of_empty_results():
    text = html_report(Results(make("v", "m", ["A"] * 8, graded=False), {"name": "raw"}))
    assert "No grades" in text and "<h2>Summary</h2>" in text and "Confusion" not in text
    empty = html_report(Results([], {"name": "nothing yet"}))
    assert "No cells" in empty and "nothing yet" in empty


def test_report_cuts_long_side_by_side_and_says_so(results):
    text = html_report(results, max_rows=3)
    assert "First 3 of 8 rows." in text
    sbs = text.split("Side by side")[1]
    assert "r2" in sbs and "r3" not in sbs


def test_public_names_are_exposed_lazily():
    assert pk.Results is Results


def test_report_survives_a_group_where_every_call_failed(results):
    dead = make("broken", "m1", ["A"] * 8, error_rows=range(8))
    res = Results(results.results + dead, results.meta)
    s = res.summary().set_index("variant")
    assert s.loc["broken", "errors"] == 8 and s.loc["broken", "flag"] == "no labelled rows"
    text = html_report(res)
    assert "broken · m1" in text and "no successful cells" in text
    assert len(re.findall(r"data:image/png;base64,", text)) == 3
