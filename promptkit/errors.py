"""One family of errors, each saying what is wrong, where, and what to do.

Model-call failures are not raised: they become data in a Completion
(`error_kind`, `error`). These exceptions are for bad input and bad setup.
"""
from __future__ import annotations

import os
import re
from typing import Any


class PromptkitError(Exception):
    """Base of every error promptkit raises on purpose."""

    def __init__(self, message: str, *, field: tuple[str | int, ...] = ()) -> None:
        super().__init__(redact(message))
        self.field = tuple(field)  # the input field at fault, e.g. ("turns", 1, "role"): a file reader finds its line


class SettingsError(PromptkitError, ValueError):
    """A setting or request value is out of range or of the wrong type."""


class ModelSpecError(PromptkitError, ValueError):
    """A model spec string names no known provider or model."""


class MissingKeyError(PromptkitError):
    """A provider needs an API key that is not set."""


class MissingPackageError(PromptkitError, ImportError):
    """An optional package a provider needs is not installed."""


def require(module: str, install: str) -> Any:
    """`module`, imported only when a feature first needs it; if missing, MissingPackageError(`install`)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingPackageError(install) from exc


class ModelInstallError(PromptkitError):
    """A local model could not be found, joined or verified."""


class TemplateError(PromptkitError, ValueError):
    """A template is malformed or is rendered with wrong variables."""


class DatasetError(PromptkitError, ValueError):
    """A dataset file or row is malformed (message names file, line and field)."""


class ExperimentError(PromptkitError, ValueError):
    """An experiment definition is malformed."""


class GraderError(PromptkitError, ValueError):
    """A grader was configured wrongly."""


class ExerciseError(PromptkitError, ValueError):
    """An exercise definition or a submitted answer is malformed."""


class DashboardError(PromptkitError, ValueError):
    """The dashboard cannot start: no notebooks, a busy port, or Voilà's templates not found."""


# A credential's name, as a header, a keyword argument, a dict or JSON key, or an environment variable.
_SECRET_NAME = (
    r"(?:proxy-)?authorization|x-api-key|\w*api[_-]?key|\w*(?:auth|access|refresh|session)[_-]?token"
    r"|\w*_token|\w*secret(?:[_-]?key)?|password"
)
_DONE = r"(?!(?-i:b)?['\"]?\[REDACTED\])"  # already masked: leave it (redact is idempotent)
_KEY_PATTERNS = [
    # a name then its value: "Authorization: Bearer x", "'x-api-key': 'x'", '"api_key": "x"', "OPENAI_API_KEY=x",
    # "(b'authorization', b'Bearer x')"; the scheme word (Bearer, Basic, Token) goes with the value
    re.compile(r"(?i)(\b(?:" + _SECRET_NAME + r")\b['\"]?(?:\s*[:=]\s*|['\"]\s*,\s*)" + _DONE
               + r"(?:(?-i:b)?['\"])?)((?:bearer|basic|token)\s+)?" + _DONE + r"([^\s,'\"})\]]+)"),
    re.compile(r"(?i)([?&](?:key|api[_-]?key|access[_-]?token|token)=)" + _DONE + r"([^&\s'\"]+)"),  # in a URL
    re.compile(r"(\bBearer\s+)()([A-Za-z0-9._~+/=-]{12,})"),  # a bearer token quoted on its own
    re.compile(r"()()(\bsk-[A-Za-z0-9_\-]{8,})"),  # OpenAI / Anthropic key shapes wherever they appear
]


def _mask(m: re.Match[str]) -> str:
    value = m.group(m.lastindex or 0)  # the last group of each pattern is the secret
    if not any(ch.isalnum() for ch in value):  # "OPENAI_API_KEY=..." in a hint is not a key
        return m.group(0)
    return m.group(1) + "[REDACTED]"


_IN_USE: set[str] = set()  # the key values providers actually send, whatever their variable or shape
MIN_SECRET_LEN = 8  # shorter values would blank out ordinary words; no real key is this short
_CREDENTIAL_VAR = re.compile(r"(API_KEY|_KEY|_TOKEN|_SECRET|PASSWORD)$")
_known: tuple[Any, tuple[int, int], list[str]] | None = None  # (environment, which keys in use, the values)


def register_secret(value: str | None) -> None:
    """Redact this exact value from every text from now on (a key a provider is about to send)."""
    if value and len(value) >= MIN_SECRET_LEN:
        _IN_USE.add(value)


def _environment() -> Any:
    """A cheap copy of the environment to compare with the last one (os.environ's own dict when it has one)."""
    data = getattr(os.environ, "_data", None)
    return data.copy() if isinstance(data, dict) else dict(os.environ)


def secret_values() -> list[str]:
    """Keys in use, and values of environment variables that look like credentials, longest first.

    Rebuilt only when the environment or the keys in use changed: every error text passes through
    here, and scanning the environment each time cost more than the rest of an error cell.
    """
    global _known
    env_now = _environment()
    known = _known
    in_use = (id(_IN_USE), len(_IN_USE))  # register_secret only adds
    if known is not None and known[1] == in_use and known[0] == env_now:
        return list(known[2])
    vals = {v for k, v in os.environ.items() if v and len(v) >= 6 and _CREDENTIAL_VAR.search(k.upper())}
    out = sorted(vals | _IN_USE, key=len, reverse=True)
    _known = (env_now, in_use, out)
    return list(out)


def redact(text: str) -> str:
    """Remove API keys and authorisation headers from any text leaving the process."""
    if not text:
        return text
    for v in secret_values():
        text = text.replace(v, "[REDACTED]")
    for pat in _KEY_PATTERNS:
        text = pat.sub(_mask, text)
    return text
