"""The Prompt Intelligence dashboard: the tour notebooks served by Voilà as web pages that work offline.

Voilà runs each chapter unchanged in its own kernel and shows the outputs and
widgets without the code. Its stock `lab` template links icon CSS from a CDN,
so at startup we derive a `promptkit` template from the installed `lab` one
with every off-host link removed, add a landing page that lists the chapters,
and point Voilà at it through JUPYTER_PATH (nothing inside the venv changes).
"""
from __future__ import annotations

import ast
import errno
import functools
import inspect
import os
import re
import signal
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import DashboardError

TEMPLATE = "promptkit"
DEFAULT_PORT = 8866
SKIP_TAG = "no-dashboard"
CULL_IDLE_S = 900
WS_PING_TIMEOUT_MS = 24 * 3600 * 1000
DATA = Path(__file__).parent / "data" / "dashboard"

# <link ...href="http(s)://..."> and <script ...src="http(s)://..."></script>: what a browser would fetch off-host
_OFF_HOST = re.compile(
    r"<link\b[^>]*\bhref=[\"']?(?:https?:)?//[^>]*>\s*"
    r"|<script\b[^>]*\bsrc=[\"']?(?:https?:)?//[^>]*>\s*</script>\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Chapter:
    """One tour notebook as the landing page lists it."""

    path: Path
    number: str
    title: str
    summary: str

    @property
    def name(self) -> str:
        return self.path.name


def default_notebooks() -> Path:
    """The tour folder: ./notebooks when run from a checkout, else the one beside the package."""
    from .config import shipped_dir

    for cand in (Path.cwd() / "notebooks", shipped_dir("notebooks")):
        if any(cand.glob("*.ipynb")):
            return cand
    return Path.cwd() / "notebooks"


def notebooks_dir(notebooks: str | Path | None = None) -> Path:
    """Resolve and check the folder to serve; a clear error when it holds no notebook."""
    root = Path(notebooks).expanduser() if notebooks is not None else default_notebooks()
    if not root.is_dir():
        raise DashboardError(f"--notebooks {str(root)!r} is not a folder")
    if not any(root.glob("*.ipynb")):
        hint = " (build them from notebooks/src with: python tools/nbpack.py)" if (root / "src").is_dir() else ""
        raise DashboardError(f"no .ipynb notebooks in {str(root)!r}{hint}")
    return root.resolve()


def _plain(md: str) -> str:
    """Markdown inline markup to plain text, for one line on the landing page."""
    md = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", md)
    md = re.sub(r"(\*\*|__|\*|`)", "", md)
    return re.sub(r"\s+", " ", md).strip()


def _shorten(text: str, limit: int = 240) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def title_and_summary(nb: Any) -> tuple[str, str]:
    """The first markdown heading and the first prose paragraph after it (tables, lists and code skipped)."""
    title, para = "", []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            s = line.strip()
            if not title:
                if s.startswith("#"):
                    title = _plain(s.lstrip("#"))
                continue
            if not s:
                if para:
                    break
                continue
            if s.startswith(("#", "|", "```", "<", "* ", "- ", "1. ")):
                if para:
                    break
                continue
            para.append(s)
        if title and para:
            break
    return re.sub(r"^\d+[.:]\s*", "", title), _shorten(_plain(" ".join(para)))


def read_chapter(path: str | Path) -> Chapter:
    """One landing-page entry; a notebook that cannot be read still gets a line saying why."""
    import nbformat

    path = Path(path)
    try:
        title, summary = title_and_summary(nbformat.read(path, as_version=4))
    except Exception as exc:
        title, summary = "", f"(cannot read this notebook: {exc})"
    return Chapter(path, _number(path), title or path.stem.replace("_", " "), summary)


def _number(path: Path) -> str:
    m = re.match(r"(\d+)", path.stem)
    return str(int(m.group(1))) if m else ""


def chapters(notebooks: str | Path) -> list[Chapter]:
    """Every notebook in the folder, in file-name order (00_, 01_, ...)."""
    return [read_chapter(p) for p in sorted(Path(notebooks).glob("*.ipynb"))]


# ------------------------------------------------------------------ the template


def _installed_template_file(rel: str) -> Path:
    from jupyter_core.paths import jupyter_path

    for root in jupyter_path():
        p = Path(root) / rel
        if p.is_file():
            return p
    raise DashboardError(f"Voilà's template file {rel} was not found in the Jupyter data paths; "
                         f"reinstall voila (pip install voila)")


def strip_off_host(html: str) -> str:
    """Remove <link>/<script> tags that would make the browser fetch from another host."""
    return _OFF_HOST.sub("", html)


def build_template(dest: str | Path) -> Path:
    """Write the offline `promptkit` Voilà template under dest (a JUPYTER_PATH root); return dest."""
    dest = Path(dest)
    tdir = dest / "voila" / "templates" / TEMPLATE
    tdir.mkdir(parents=True, exist_ok=True)
    lab_index = _installed_template_file("voila/templates/lab/index.html.j2").read_text(encoding="utf-8")
    lab_page = _installed_template_file("voila/templates/lab/page.html").read_text(encoding="utf-8")
    base_page = _installed_template_file("voila/templates/base/page.html").read_text(encoding="utf-8")
    if "voila/templates/base/page.html" not in lab_page:
        raise DashboardError("Voilà's lab/page.html no longer extends base/page.html; promptkit's dashboard "
                             "template needs updating for this Voilà version")
    files = {
        "conf.json": '{"base_template": "lab", "mimetypes": {"text/html": true}}\n',
        "offline_lab_index.html.j2": strip_off_host(lab_index),
        "offline_base_page.html": strip_off_host(base_page),
        "page.html": lab_page.replace("voila/templates/base/page.html", "offline_base_page.html"),
    }
    for name, text in files.items():
        (tdir / name).write_text(text, encoding="utf-8")
    for src in DATA.iterdir():
        if src.is_file():
            (tdir / src.name).write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    return dest


# ------------------------------------------------------------------ the server


def parse_params(pairs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """`-p NAME VALUE` pairs to values, read as YAML like papermill does (6 -> int, [a, b] -> list, false -> bool)."""
    import yaml

    out: dict[str, Any] = {}
    for name, text in pairs:
        if not name.isidentifier():
            raise DashboardError(f"-p {name!r}: a parameter name must be a Python variable name, e.g. N_ROWS")
        try:
            out[name] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DashboardError(f"-p {name} {text!r}: not a readable value ({exc.__class__.__name__})") from None
    return out


def _assigned_names(source: str) -> set[str]:
    code = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines())  # IPython magics
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set(re.findall(r"^([A-Za-z_]\w*)\s*[:=]", code, re.M))
    return {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}


def inject_params(notebook: Any, params: Mapping[str, Any]) -> Any:
    """Papermill's trick: after the cell tagged `parameters`, a cell setting the values that chapter declares."""
    import nbformat

    for i, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            own = {k: v for k, v in params.items() if k in _assigned_names(cell.source)}
            if own:
                src = "# set by promptkit dashboard -p\n" + "".join(f"{k} = {v!r}\n" for k, v in own.items())
                notebook.cells.insert(i + 1, nbformat.v4.new_code_cell(src, metadata={"tags": ["injected-parameters"]}))
            break
    return notebook


def prepare_notebook(req_handler: Any, notebook: Any, cwd: str, params: Mapping[str, Any] | None = None) -> Any:
    """Voilà prelaunch hook: drop cells tagged no-dashboard (code-only exercises), apply -p parameters, and
    title the page by the chapter's heading."""
    notebook.cells = [c for c in notebook.cells if SKIP_TAG not in c.get("metadata", {}).get("tags", [])]
    if params:
        inject_params(notebook, params)
    title, _ = title_and_summary(notebook)
    if title:
        notebook.metadata["title"] = f"{title} · Prompt Intelligence"
    return notebook


def check_port(ip: str, port: int) -> None:
    """Fail early with a clear message rather than let Voilà wander to another port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tornado does: a just-stopped server's port is free
        try:
            s.bind((ip, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DashboardError(f"port {port} on {ip} is in use; choose another with --port N") from None
            raise DashboardError(f"cannot listen on {ip}:{port}: {exc}") from None


def voila_config(root: Path, *, port: int, ip: str, show_tracebacks: bool,
                 params: Mapping[str, Any] | None = None) -> Any:
    """The Voilà settings of the dashboard, as a traitlets Config."""
    from traitlets.config import Config

    c = Config()
    c.Voila.root_dir = str(root)
    c.Voila.ip = ip
    c.Voila.port = port
    c.Voila.port_retries = 0
    c.Voila.open_browser = False
    c.VoilaConfiguration.template = TEMPLATE
    c.VoilaConfiguration.classic_tree = True
    c.VoilaConfiguration.theme = "light"
    c.VoilaConfiguration.show_margins = True
    c.VoilaConfiguration.show_tracebacks = show_tracebacks
    # show the prose at once and each output as its cell finishes: a chapter's measurements take minutes
    c.VoilaConfiguration.progressive_rendering = True
    # Voilà reads no pong while a notebook executes over its execution socket, so jupyter_server's 90 s pong
    # timeout would close it mid-chapter and lose the remaining outputs: keep the pings, drop the timeout
    c.Voila.tornado_settings = {"ws_ping_timeout": WS_PING_TIMEOUT_MS}
    c.VoilaConfiguration.allow_template_override = "NO"
    c.VoilaConfiguration.prelaunch_hook = functools.partial(prepare_notebook, params=dict(params or {}))
    # a tab closed without its unload beacon leaves a kernel (~100-300 MB): cull it once idle and disconnected
    c.MappingKernelManager.cull_idle_timeout = CULL_IDLE_S
    c.MappingKernelManager.cull_interval = 60
    c.MappingKernelManager.cull_connected = False
    return c


def _app_class() -> type:
    from voila.app import Voila
    from voila.tornado.handler import TornadoVoilaHandler

    class DashboardApp(Voila):
        """Voilà with the chapter list for the landing page, and Ctrl-C that stops it with its kernels."""

        def initialize(self, argv: Any = None) -> None:
            super().initialize(argv)
            # Voilà stops gracefully on SIGTERM only; treat Ctrl-C the same, even if the shell started us ignoring it
            signal.signal(signal.SIGINT, self._handle_signal_stop)

        def _handle_signal_stop(self, sig: int, frame: Any) -> None:
            if getattr(self, "ioloop", None) is None:  # not serving yet
                raise KeyboardInterrupt
            print("promptkit dashboard: stopping; shutting down the kernels", flush=True)
            super()._handle_signal_stop(sig, frame)

        def init_settings(self) -> dict:
            settings = super().init_settings()
            root = Path(self.root_dir)
            settings["voila_jinja2_env"].globals["promptkit_chapters"] = lambda: chapters(root)
            return settings

        def init_handlers(self) -> list:
            return [(h[0], _sets_xsrf_cookie(h[1]), *h[2:]) if isinstance(h, tuple) and h[1] is TornadoVoilaHandler
                    else h for h in super().init_handlers()]

    return DashboardApp


def _sets_xsrf_cookie(handler: type) -> type:
    """A chapter page that sets the _xsrf cookie: without it Voilà's unload beacon is refused (403) and the
    closed tab's kernel lives on (voila-dashboards/voila#1458)."""

    class Handler(handler):  # type: ignore[misc, valid-type]
        async def prepare(self, *args: Any, **kwargs: Any) -> None:
            result = super().prepare(*args, **kwargs)
            if inspect.isawaitable(result):
                await result
            self.xsrf_token  # noqa: B018 (reading it sets the cookie)

    Handler.__name__ = handler.__name__
    return Handler


class _jupyter_path:
    """Put the generated template first on JUPYTER_PATH for the server's lifetime."""

    def __init__(self, root: Path) -> None:
        self.root, self.old = root, os.environ.get("JUPYTER_PATH")

    def __enter__(self) -> None:
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(self.root), self.old) if p)

    def __exit__(self, *exc: Any) -> None:
        if self.old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = self.old


def url(ip: str, port: int) -> str:
    return f"http://{ip}:{port}/"


def serve(notebooks: str | Path | None = None, port: int = DEFAULT_PORT, *, ip: str = "127.0.0.1",
          show_tracebacks: bool = False, params: Mapping[str, Any] | None = None) -> int:
    """Serve the tour until Ctrl-C (Voilà then shuts its kernels down); returns an exit status."""
    root = notebooks_dir(notebooks)
    check_port(ip, port)
    with tempfile.TemporaryDirectory(prefix="promptkit-dashboard-") as tmp:
        build_template(tmp)
        with _jupyter_path(Path(tmp)):
            print(f"promptkit dashboard: serving {root} at {url(ip, port)}  (Ctrl-C stops it)", flush=True)
            if params:
                print("promptkit dashboard: chapter parameters " + ", ".join(f"{k}={v!r}" for k, v in params.items()),
                      flush=True)
            config = voila_config(root, port=port, ip=ip, show_tracebacks=show_tracebacks, params=params)
            app = _app_class()(config=config)
            app.initialize([])
            app.start()
    return 0


__all__ = ["Chapter", "DashboardError", "build_template", "chapters", "default_notebooks", "inject_params",
           "notebooks_dir", "parse_params", "prepare_notebook", "read_chapter", "serve", "strip_off_host"]
