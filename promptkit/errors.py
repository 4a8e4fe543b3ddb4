"""One family of errors, each saying what is wrong, where, and what to do.

Model-call failures are not raised: they become data in a Completion
(`error_kind`, `error`). These exceptions are for bad input and bad setup.
"""
from __future__ import annotations

import os
import re


class PromptkitError(Exception):
    """Base of every error promptkit raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class SettingsError(PromptkitError, ValueError):
    """A setting or request value is out of range or of the wrong type."""


class ModelSpecError(PromptkitError, ValueError):
    """A model spec string names no known provider or model."""


class MissingKeyError(PromptkitError):
    """A provider needs an API key that is not set."""


class MissingPackageError(PromptkitError, ImportError):
    """An optional package a provider needs is not installed."""


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


_KEY_PATTERNS = [
    re.compile(r"(?i)(authorization\s*[:=]\s*)(bearer\s+)?[^\s,'\"}]+"),
    re.compile(r"(?i)(x-api-key\s*[:=]\s*)[^\s,'\"}]+"),
    re.compile(r"(?i)(api[_-]?key\s*[:=]\s*['\"]?)[^\s,'\"}]+"),
    re.compile(r"()\bsk-[A-Za-z0-9_\-]{8,}"),
]


def secret_values() -> list[str]:
    """Values of environment variables that look like credentials, longest first."""
    vals = {
        v for k, v in os.environ.items()
        if v and len(v) >= 6 and re.search(r"(API_KEY|_TOKEN|_SECRET|PASSWORD)$", k.upper())
    }
    return sorted(vals, key=len, reverse=True)


def redact(text: str) -> str:
    """Remove API keys and authorisation headers from any text leaving the process."""
    if not text:
        return text
    for v in secret_values():
        text = text.replace(v, "[REDACTED]")
    for pat in _KEY_PATTERNS:
        text = pat.sub(lambda m: m.group(1) + "[REDACTED]", text)
    return text
