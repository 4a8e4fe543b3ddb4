"""HTML from the jinja2 templates in data/templates: autoescaped, and every printed string redacted.

The report, the live builder, and the notebook displays of a Template and the
phrase library all draw their HTML here, so escaping (jinja2's autoescape) and
keeping keys out of what is shown (`errors.redact`) are done once.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from .errors import redact

TEMPLATES = Path(__file__).parent / "data" / "templates"


@functools.lru_cache(maxsize=1)
def environment() -> Any:
    """The one jinja2 environment: autoescape on, each printed string through `redact` first."""
    import jinja2
    from markupsafe import Markup

    def finalize(x: Any) -> Any:
        return redact(x) if isinstance(x, str) and not isinstance(x, Markup) else x

    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, finalize=finalize,
                              undefined=jinja2.StrictUndefined, trim_blocks=True)


def render(template: str, /, **context: Any) -> str:
    """A whole template filled in, e.g. render("report.html.j2", title=...)."""
    return environment().get_template(template).render(context)


def macro(template: str, which: str, /, **context: Any) -> str:
    """One macro of a template file (a fragment such as the builder's status line), as a plain str."""
    return str(getattr(environment().get_template(template).module, which)(**context))


def trusted(html_text: str) -> Any:
    """HTML made and escaped by our own code (a plot's data URI, pandas' escaped table): printed as is."""
    from markupsafe import Markup

    return Markup(html_text)
