"""htmlrender: every HTML piece the kit shows is escaped by jinja2 and has keys redacted before it is printed."""
from __future__ import annotations

import jinja2
import pytest

from promptkit.htmlrender import macro, render, trusted
from promptkit.report import html_report
from promptkit.templates import Template
from promptkit.types import Message

KEY = "sk-canary0123456789abcdefXYZ"


def test_printed_strings_are_escaped_and_redacted_and_trusted_html_is_kept():
    out = macro("builder.html.j2", "status", text=f"<b>saved</b> with {KEY}", tone="ok")
    assert "&lt;b&gt;saved&lt;/b&gt;" in out and KEY not in out and "[REDACTED]" in out
    assert out.startswith("<span style='color:#2e7d32'>")
    kept = macro("builder.html.j2", "results", summary=trusted("<table>s</table>"), summary_error=None,
                 side_by_side=trusted("<table>x</table>"), per_call=trusted("<table>y</table>"))
    assert "<h4>Summary</h4><table>s</table>" in kept and "<table>x</table>" in kept


def test_error_box_of_the_builder_never_shows_a_key():
    out = macro("builder.html.j2", "error", kind="ValueError", message=f"bad key {KEY}",
                traceback=f'Traceback\n  raise ValueError("{KEY}")')
    assert KEY not in out and out.count("[REDACTED]") == 2 and "<b>ValueError</b>" in out


def test_template_display_escapes_text_but_bolds_its_variables():
    t = Template(name="t<1>", turns=(Message("user", "<i>{{notes}}</i> " + KEY),))
    out = t._repr_html_()
    assert "&lt;i&gt;<b style='color:#7c3aed'>{{notes}}</b>&lt;/i&gt;" in out
    assert "<b>t&lt;1&gt;</b>" in out and KEY not in out


def test_report_template_is_found_and_strict():
    from promptkit.results import Results

    text = html_report(Results([], {"name": f"run {KEY}"}))
    assert "<h1>run [REDACTED]</h1>" in text and "No cells in these results." in text
    with pytest.raises(jinja2.UndefinedError, match="undefined"):  # a missing field is an error, not a blank
        render("report.html.j2", title="x")
