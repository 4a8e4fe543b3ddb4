"""The dashboard in a real browser: Voilà serving the tour, driven by Playwright in Debian's headless Chromium.

Every page load records each request the browser makes and asserts none leaves
the machine; every page is saved as a full-page screenshot under
test-artifacts/screenshots/ for a human to look at.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest

from promptkit import dashboard
from promptkit.config import models_dir

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SHOTS = ROOT / "test-artifacts" / "screenshots"
LOGS = ROOT / "test-artifacts" / "dashboard"  # each test server's output, kept for reading after a failure
CHROMIUM = Path(os.environ.get("PROMPTKIT_CHROMIUM", "/usr/lib/chromium/chromium"))
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--no-default-browser-check", "--disable-extensions",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
WIDGET_REPR = re.compile(r"\b(VBox|HBox|Output|HTML|Button|Textarea|Accordion)\((children|value|description|layout|outputs)=")
START_TIMEOUT_S = 90
# joined local models are shared, as in conftest.py (a fresh home would join 1.6 GB of Qwen again)
MODELS_DIR = os.environ.get("PROMPTKIT_MODELS_DIR") or str(models_dir())
PAGE_TIMEOUT_MS = 120_000  # the page itself: Voilà renders the prose at once and streams each cell's output
CHAPTER_TIMEOUT_S = 3000  # a chapter's measurements, run from the top on open (minutes on a shared 2-core machine)
STEP_TIMEOUT_MS = 60_000  # one click or keystroke and the kernel's answer
RUN_TIMEOUT_MS = 600_000  # a run of the local model


# ------------------------------------------------------------------ unit tests (no server)


def _nb(path: Path, cells: list) -> Path:
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_chapter_line_is_first_heading_and_first_paragraph(tmp_path):
    path = _nb(tmp_path / "07_tables.ipynb", [
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("# 7. Tables **that** count\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                                      "Read a `DataFrame` like\nan [analyst](https://example.org).\n\nSecond paragraph."),
    ])
    ch = dashboard.read_chapter(path)
    assert (ch.number, ch.title, ch.name) == ("7", "Tables that count", "07_tables.ipynb")
    assert ch.summary == "Read a DataFrame like an analyst."


def test_broken_notebook_still_listed_with_the_reason(tmp_path):
    (tmp_path / "01_broken.ipynb").write_text("{not json", encoding="utf-8")
    (ch,) = dashboard.chapters(tmp_path)
    assert ch.title == "01 broken" and "cannot read this notebook" in ch.summary


def test_generated_template_has_no_off_host_links(tmp_path):
    root = dashboard.build_template(tmp_path)
    tdir = root / "voila" / "templates" / dashboard.TEMPLATE
    texts = {p.name: p.read_text(encoding="utf-8") for p in tdir.iterdir()}
    assert {"index.html.j2", "tree.html", "page.html", "offline_lab_index.html.j2", "offline_base_page.html"} <= set(texts)
    stock = dashboard._installed_template_file("voila/templates/lab/index.html.j2").read_text(encoding="utf-8")
    assert "cdn.jsdelivr.net" in stock  # what the derived copy removes
    for name, text in texts.items():
        assert not re.search(r"""(href|src)=["']?(https?:)?//""", text), name


def test_prelaunch_hook_drops_tagged_cells_and_titles_the_page():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 2. Power phrases\n\nWhat each phrase does."),
        nbformat.v4.new_code_cell("print('shown')"),
        nbformat.v4.new_code_cell("check()", metadata={"tags": ["no-dashboard"]}),
    ])
    out = dashboard.prepare_notebook(None, nb, ".")
    assert [c.source for c in out.cells][1:] == ["print('shown')"]
    assert out.metadata["title"] == "Power phrases · Prompt Intelligence"


def test_params_are_injected_after_the_parameters_cell_of_chapters_that_declare_them():
    params = dashboard.parse_params([("N_ROWS", "3"), ("MODELS", "[local:smollm2, 'echo:x']"), ("AUTORUN", "true")])
    assert params == {"N_ROWS": 3, "MODELS": ["local:smollm2", "echo:x"], "AUTORUN": True}
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("%matplotlib inline\nN_ROWS = 18\nMODELS: list = []", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(N_ROWS)"),
    ])
    out = dashboard.inject_params(nb, params)
    assert [c.source.splitlines()[0] for c in out.cells] == ["# Title", "%matplotlib inline", "# set by promptkit dashboard -p",
                                                              "print(N_ROWS)"]
    assert out.cells[2].source.splitlines()[1:] == ["N_ROWS = 3", "MODELS = ['local:smollm2', 'echo:x']"]  # no AUTORUN
    untouched = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("N_ROWS = 1")])  # no parameters tag
    assert len(dashboard.inject_params(untouched, params).cells) == 1


def test_bad_param_name_is_refused():
    with pytest.raises(dashboard.DashboardError, match="-p 'N-ROWS': a parameter name must be a Python variable name"):
        dashboard.parse_params([("N-ROWS", "3")])


def test_cli_refuses_a_folder_without_notebooks(tmp_path, capsys):
    from promptkit.cli import main

    (tmp_path / "src").mkdir()
    assert main(["dashboard", "--notebooks", str(tmp_path), "--port", str(_free_port())]) == 2
    err = capsys.readouterr().err
    assert "no .ipynb notebooks in" in err and str(tmp_path) in err and "tools/nbpack.py" in err


def test_cli_refuses_a_busy_port(tmp_path, capsys):
    from promptkit.cli import main

    _nb(tmp_path / "00_a.ipynb", [nbformat.v4.new_markdown_cell("# A")])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["dashboard", "--notebooks", str(tmp_path), "--port", str(port)]) == 2
    assert f"port {port} on 127.0.0.1 is in use; choose another with --port N" in capsys.readouterr().err


# ------------------------------------------------------------------ the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `promptkit dashboard` subprocess in its own process group, as a terminal would run it."""

    def __init__(self, notebooks: Path, log: Path, home: Path, params: dict | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}  # runs with no key
        env["PROMPTKIT_HOME"] = str(home)
        env["PROMPTKIT_MODELS_DIR"] = MODELS_DIR
        exe = Path(sys.executable).with_name("promptkit")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "promptkit.cli"]
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd + ["dashboard", "--port", str(self.port), "--notebooks", str(notebooks), "--show-tracebacks"]
            + [a for k, v in (params or {}).items() for a in ("-p", k, json.dumps(v))],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=str(ROOT), start_new_session=True,
        )
        self.wait_for_port()
        self.ready_s = time.monotonic() - self.t0

    def wait_for_port(self) -> None:
        """Poll the TCP port, never a notebook URL: a GET of a notebook executes it."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the dashboard exited with {self.proc.returncode} before listening:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.25)
        pytest.fail(f"the dashboard did not listen on port {self.port} within {START_TIMEOUT_S} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def children(self) -> dict[int, str]:
        """pid -> command line of the server's child processes (the kernels)."""
        kids = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.proc.pid:
                    pid = int(stat.parent.name)
                    kids[pid] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                continue
        return kids

    def ctrl_c(self, timeout: float = 60) -> int:
        """What Ctrl-C in a terminal does: SIGINT to the whole foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ctrl_c(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(NOTEBOOKS, LOGS / "server.log", tmp_path_factory.mktemp("dashhome"))
    yield srv
    srv.kill()


# ------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is not installed ({CHROMIUM} is missing); the dashboard's browser tests need Debian's "
            f"package: run `sudo apt-get update && sudo apt-get install -y chromium` (make test does this as root), "
            f"or set PROMPTKIT_CHROMIUM to a Chromium binary"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Visit:
    """A browser tab that records every request, websocket, failed load and console error."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context(viewport={"width": 1440, "height": 900})
        self.context.set_default_timeout(STEP_TIMEOUT_MS)
        self.requests: list[str] = []
        self.bad: list[str] = []
        self.context.on("request", lambda r: self.requests.append(r.url))
        self.context.on("requestfailed", lambda r: self.bad.append(f"failed {r.url}: {r.failure}"))
        self.context.on("response", lambda r: r.status >= 400 and self.bad.append(f"{r.status} {r.url}"))
        self.executions: list = []  # Voilà's /voila/execution/<kernel> sockets: closed once every cell has run
        self.page = self.context.new_page()
        self.page.on("websocket", self._on_websocket)
        self.page.on("popup", lambda p: self.bad.append(f"opened a new tab: {p.url}"))

    def _on_websocket(self, ws) -> None:
        self.requests.append(ws.url)
        if "/voila/execution/" in ws.url:
            self.executions.append(ws)

    def wait_executed(self, timeout_s: float = CHAPTER_TIMEOUT_S) -> float:
        """Wait until Voilà has sent the last cell's output (it then closes the execution socket)."""
        t0 = time.monotonic()
        while not (self.executions and all(ws.is_closed() for ws in self.executions)):
            if time.monotonic() - t0 > timeout_s:
                raise AssertionError(f"the page was still executing after {timeout_s} s")
            self.page.wait_for_timeout(500)
        return time.monotonic() - t0

    def off_host(self) -> list[str]:
        out = []
        for u in self.requests:
            parts = urlsplit(u)
            if parts.scheme in ("data", "blob", "about"):
                continue
            if parts.hostname not in LOCAL_HOSTS:
                out.append(u)
        return out

    def check_offline(self) -> None:
        assert self.requests, "no request was recorded"
        assert self.off_host() == [], f"the page fetched from other hosts: {self.off_host()}"
        assert self.bad == [], f"failed loads: {self.bad}"

    def screenshot(self, name: str) -> Path:
        """Full page: Voilà scrolls inside #rendered_cells, so grow the viewport to the content first."""
        height = self.page.evaluate(
            "() => { const el = document.getElementById('rendered_cells');"
            " return Math.max(el ? el.scrollHeight : 0, document.body.scrollHeight); }")
        self.page.set_viewport_size({"width": 1440, "height": min(int(height) + 40, 30000)})
        self.page.wait_for_timeout(500)
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def text(self) -> str:
        return self.page.inner_text("body")

    def leave(self) -> None:
        """Navigate away: Voilà's unload beacon asks the server to shut the page's kernel down."""
        self.page.goto("about:blank")
        self.page.wait_for_timeout(300)

    def close(self) -> None:
        try:
            self.leave()
        finally:
            self.context.close()


@pytest.fixture
def visit(browser):
    v = Visit(browser)
    yield v
    v.close()


def _page_is_clean(text: str) -> None:
    assert "Traceback" not in text and "There was an error when executing cell" not in text, text[-3000:]
    assert not WIDGET_REPR.search(text), f"raw widget repr in the page: {WIDGET_REPR.search(text).group(0)}"


def _kernels(server: Server) -> list[int]:
    return [pid for pid, cmd in server.children().items() if "ipykernel" in cmd]


def _open_chapter(v: Visit, server: Server, name: str, *, wait: bool = True) -> float:
    """Open a chapter; with wait, until every cell has run and shown its output. Returns the seconds taken."""
    t0 = time.monotonic()
    v.page.goto(f"{server.url}voila/render/{name}", timeout=PAGE_TIMEOUT_MS)
    v.page.wait_for_selector("#rendered_cells", state="visible", timeout=PAGE_TIMEOUT_MS)
    if wait:
        v.wait_executed()
        # no placeholder left where an output should be
        assert v.page.locator("[class*=skeleton]").count() == 0
    return time.monotonic() - t0


# ------------------------------------------------------------------ browser tests


def test_landing_page_lists_every_chapter(server, visit):
    visit.page.goto(server.url)
    expected = dashboard.chapters(NOTEBOOKS)
    assert expected, "no chapters in notebooks/ (build them: python tools/nbpack.py)"
    links = visit.page.locator("a.pk-chapter")
    links.first.wait_for()
    assert links.count() == len(expected)
    for i, ch in enumerate(expected):
        link = links.nth(i)
        assert link.get_attribute("href") == f"/voila/render/{ch.name}"
        assert link.get_attribute("target") is None  # same tab
        assert link.locator(".pk-title").inner_text() == ch.title
        assert link.locator(".pk-summary").inner_text() == ch.summary
        assert len(ch.summary) > 20
    assert visit.page.title() == "Prompt Intelligence tour"
    _page_is_clean(visit.text())
    visit.screenshot("00_landing")
    visit.check_offline()


CHAPTERS = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb") if "live_builder" not in p.name)


@pytest.fixture
def chapter_server(request, tmp_path, notebook_cache, monkeypatch):
    """A server running one chapter with the notebook tests' small CI parameters (test_notebooks.py)."""
    from test_notebooks import CI_PARAMETERS

    monkeypatch.setenv("PROMPTKIT_CACHE_DIR", str(notebook_cache))  # shared with the notebook tests

    srv = Server(NOTEBOOKS, LOGS / f"server_{Path(request.node.callspec.params['name']).stem}.log", tmp_path / "home",
                 params=CI_PARAMETERS.get(Path(request.node.callspec.params["name"]).stem, {}))
    yield srv
    srv.kill()


@pytest.mark.local_model
@pytest.mark.timeout(CHAPTER_TIMEOUT_S + 300)
@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_page_runs_and_reads_cleanly(chapter_server, visit, name):
    server = chapter_server
    took = _open_chapter(visit, server, name)
    ch = dashboard.read_chapter(NOTEBOOKS / name)
    visit.page.get_by_role("heading", name=re.compile(re.escape(ch.title))).first.wait_for()
    text = visit.text()
    _page_is_clean(text)
    assert "All chapters" in text
    assert visit.page.title().startswith(ch.title)
    # no code cells: Voilà shows outputs and prose only
    assert visit.page.locator(".jp-InputArea-editor").count() == 0
    print(f"{name}: rendered in {took:.1f} s")
    visit.screenshot(f"chapter_{Path(name).stem}")
    visit.check_offline()


def _builder(v: Visit, server: Server) -> tuple[float, float]:
    """Open the live builder: seconds to the widget's appearance, then to the end of the page's cells."""
    t0 = time.monotonic()
    _open_chapter(v, server, "04_live_builder.ipynb", wait=False)
    v.page.locator(".pk-builder").wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
    widget_s = time.monotonic() - t0
    v.wait_executed()  # later cells (the exercise) keep the kernel busy; clicks would wait behind them
    return widget_s, time.monotonic() - t0


def _field(v: Visit, kind: str, label: str):
    return v.page.locator(f".pk-builder .widget-{kind}", has=v.page.locator("label", has_text=re.compile(f"^{label}$")))


@pytest.mark.local_model
def test_live_builder_runs_a_prompt_on_the_local_model(server, visit):
    from promptkit.phrases import default_library, get_phrase

    widget_s, done_s = _builder(visit, server)
    print(f"server start to first widget: {server.ready_s + widget_s:.1f} s (port open after {server.ready_s:.1f} s, "
          f"widget {widget_s:.1f} s after opening the page; page done after {done_s:.1f} s)")
    page = visit.page
    _page_is_clean(visit.text())
    assert page.locator(".pk-builder .pk-error").count() == 0

    # type a prompt: the kernel renders it into the preview of what the model sees
    prompt = ("Account notes:\n{{notes}}\n\nWill this account renew? "
              "Answer with one of: Commit, Likely, At-Risk.")
    _field(visit, "textarea", "User").locator("textarea").fill(prompt)
    preview = page.locator(".pk-builder .widget-html", has_text="Will this account renew?").last
    preview.wait_for()

    # toggle a power phrase: open its section, tick it, see its text join the prompt
    phrase = get_phrase("only_label")
    section = next(c.title for c in default_library().categories if c.id == phrase.category)
    page.locator(".pk-builder .jupyter-widget-Collapse-header", has_text=section).first.click()
    box = _field(visit, "checkbox", re.escape(phrase.title)).locator("input[type=checkbox]")
    box.check()
    assert box.is_checked()
    page.locator(".pk-builder pre", has_text=phrase.text).first.wait_for()

    # two rows keep the run short: focus the Rows slider and step it down with the keyboard
    rows_slider = _field(visit, "hslider", "Rows")
    handle = rows_slider.locator(".noUi-handle")
    while int(rows_slider.locator(".widget-readout").inner_text()) > 2:
        handle.press("ArrowLeft")
    page.get_by_role("button", name="Run").click()
    status = page.locator(".pk-builder .widget-html", has_text=re.compile(r"Done: \d+ calls"))
    status.wait_for(timeout=RUN_TIMEOUT_MS)
    done = status.inner_text()
    assert page.locator(".pk-builder .pk-error").count() == 0, page.locator(".pk-error").inner_text()
    n_rows = int(_field(visit, "hslider", "Rows").locator(".widget-readout").inner_text())
    m = re.search(r"Done: (\d+) calls \((\d+) from the cache\) in ([\d.]+) s", done)
    assert m and int(m.group(1)) == 2 * n_rows and int(m.group(2)) == 0, done  # with and without the phrase

    # the summary: one row per variant with its grade and metrics
    summary = page.locator(".pk-results table").first
    heads = [h.strip() for h in summary.locator("thead th").all_inner_texts()]
    for col in ("n", "errors", "score", "accuracy", "baseline", "latency_p50"):
        assert col in heads, heads
    rows = summary.locator("tbody tr")
    assert rows.count() == 2  # with and without the phrase
    for i in range(2):
        cells = [c.strip() for c in rows.nth(i).locator("td").all_inner_texts()]
        values = dict(zip(heads[-len(cells):], cells))
        assert int(values["n"]) == n_rows and int(values["errors"]) == 0
        assert 0.0 <= float(values["accuracy"]) <= 1.0 and 0.0 <= float(values["score"]) <= 1.0
        assert 0.0 < float(values["latency_p50"]) < 120

    # side by side: each row's gold label, then each variant's answer with its grade
    text = page.locator(".pk-results").inner_text()
    assert "Side by side" in text and "Per call: latency, tokens, cost" in text
    sbs = page.locator(".pk-results table").nth(1)
    sbs_heads = [h.strip() for h in sbs.locator("thead tr").first.locator("th").all_inner_texts()]
    assert {"target", "with phrases", "without phrases"} <= set(sbs_heads), sbs_heads
    body = sbs.locator("tbody tr")
    assert body.count() == n_rows
    import promptkit as pk  # the builder opens on its exercise's dataset

    labels = pk.load_dataset(pk.exercises.get_exercise("builder.prompt_worth_saving").dataset).task.labels
    gold = set(labels)
    for i in range(n_rows):
        cells = [c.strip() for c in body.nth(i).locator("td").all_inner_texts()]
        assert cells[0] in gold, cells
        for answer in cells[1:]:  # "<model output>\n— <mark> <score> <parsed label or 'unparseable'>"
            assert re.search(rf"— [✓✗?] [01]\.\d\d ({'|'.join(map(re.escape, labels))}|unparseable)$", answer), answer
    per_call = page.locator(".pk-results details table")
    assert per_call.locator("tbody tr").count() == 2 * n_rows
    _page_is_clean(visit.text())
    visit.screenshot("chapter_04_live_builder_after_run")
    visit.check_offline()


@pytest.mark.local_model
def test_builder_callback_error_is_shown_in_the_page(server, visit):
    _builder(visit, server)
    page = visit.page
    page.locator(".pk-builder .widget-dropdown", has=page.locator("label", has_text="Dataset")).locator("select") \
        .select_option(label="(none: fill the variables)")
    _field(visit, "textarea", "notes").wait_for()  # the prompt's {{notes}} now needs a value
    page.get_by_role("button", name="Run").click()
    err = page.locator(".pk-builder .pk-error")
    err.wait_for()
    assert "ValueError" in err.inner_text() and "fill the variable field(s) ['notes'] first" in err.inner_text()
    assert "Something went wrong; see the message above." in visit.text()
    visit.screenshot("chapter_04_live_builder_error")
    visit.check_offline()

    # leaving the page shuts its kernel down (each open tab holds one)
    before = _kernels(server)
    visit.leave()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_kernels(server)) >= len(before):
        time.sleep(0.5)
    assert len(_kernels(server)) == len(before) - 1, (before, _kernels(server))


# ------------------------------------------------------------------ Ctrl-C stops the server and its kernels


def test_tiny_tour_renders_then_ctrl_c_stops_server_and_kernels(tmp_path, visit):
    nbdir = tmp_path / "tour"
    nbdir.mkdir()
    _nb(nbdir / "01_tiny.ipynb", [
        nbformat.v4.new_markdown_cell("# 1. A tiny chapter\n\nIt prints and then fails."),
        nbformat.v4.new_code_cell("WORD = 'default'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print('visible ' + WORD)"),
        nbformat.v4.new_code_cell("print('hidden ' + 'cell')", metadata={"tags": ["no-dashboard"]}),
        nbformat.v4.new_code_cell("raise ValueError('boom ' + 'from a cell')"),
        nbformat.v4.new_code_cell("print('after ' + 'the error')"),
    ])
    srv = Server(nbdir, tmp_path / "server.log", tmp_path / "home", params={"WORD": "output"})
    try:
        assert f"promptkit dashboard: serving {nbdir.resolve()} at {srv.url}" in srv.output()
        _open_chapter(visit, srv, "01_tiny.ipynb")
        text = visit.text()
        assert "visible output" in text and "hidden cell" not in text  # -p applied, no-dashboard cell dropped
        assert "ValueError: boom from a cell" in text and "Traceback (most recent call last)" in text  # --show-tracebacks
        assert "after the error" in text  # one failing cell does not blank the rest of the chapter
        assert visit.page.title() == "A tiny chapter · Prompt Intelligence"
        visit.check_offline()
        kernels = {pid: cmd for pid, cmd in srv.children().items() if "ipykernel" in cmd}
        assert kernels, f"no kernel child found: {srv.children()}"

        t0 = time.monotonic()
        assert srv.ctrl_c(timeout=60) == 0, srv.output()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in kernels):
            time.sleep(0.2)
        alive = [pid for pid in kernels if Path(f"/proc/{pid}/stat").exists()
                 and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
        assert alive == [], f"kernels still running after Ctrl-C: {alive}"
        print(f"stopped with its kernels in {time.monotonic() - t0:.1f} s")
    finally:
        srv.kill()
