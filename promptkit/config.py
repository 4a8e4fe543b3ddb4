"""Where settings come from: the environment, a `.env` file, and default folders.

Keys are read, never printed: errors name the variable to set, not its value.
"""
from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

from .errors import MissingKeyError, register_secret

_ENV_LOADED = False


def load_env() -> None:
    """Read a `.env` file from the working directory or its parents, once; the environment wins."""
    global _ENV_LOADED
    if _ENV_LOADED:
        return
    _ENV_LOADED = True
    try:
        from dotenv import find_dotenv, load_dotenv
    except ImportError:  # python-dotenv is a core dependency; tolerate its absence anyway
        return
    path = find_dotenv(usecwd=True)
    if path:
        load_dotenv(path, override=False)


def env(name: str) -> str | None:
    load_env()
    value = os.environ.get(name)
    return value or None


def require_key(var: str, provider: str) -> str:
    """The API key in `var`, or a MissingKeyError that says how to set it (never its value)."""
    value = env(var)
    register_secret(value)
    if not value:
        raise MissingKeyError(
            f"{provider} needs an API key: set the environment variable {var} in your shell, "
            f"or add a line for {var} to a .env file in the folder you start from"
        )
    return value


_SECRETS: dict[int, str] = {}  # Secret id -> value, outside every object a repr, pickle or debugger walks


class Secret:
    """An API key held out of instance state: repr, vars(), pickle and debugger dumps show only its source.

    The value is registered for redaction, so it is removed from any error text
    whatever its shape; a pickled Secret carries the variable name and reads the
    key again when loaded.
    """

    __slots__ = ("source", "public", "__weakref__")

    def __init__(self, value: str, source: str, *, register: bool = True) -> None:
        self.source = source
        self.public = not register  # a placeholder such as "not-needed", not a credential
        _SECRETS[id(self)] = value
        weakref.finalize(self, _SECRETS.pop, id(self), None)
        if register:
            register_secret(value)

    def reveal(self) -> str:
        """The key itself, for the SDK client only."""
        return _SECRETS[id(self)]

    def __repr__(self) -> str:
        return f"Secret(from {self.source})"

    def __reduce__(self) -> tuple[Any, ...]:
        if self.public:
            return (_public_secret, (self.reveal(), self.source))
        return (_secret_from, (self.source,))


def _secret_from(source: str) -> Secret:
    value = env(source)
    return Secret(value, source) if value else Secret("", source, register=False)


def _public_secret(value: str, source: str) -> Secret:
    return Secret(value, source, register=False)


def data_home() -> Path:
    """Root folder for promptkit's own files (cache, joined models): PROMPTKIT_HOME or ~/.cache/promptkit."""
    root = env("PROMPTKIT_HOME")
    return Path(root) if root else Path.home() / ".cache" / "promptkit"


def cache_dir() -> Path:
    d = env("PROMPTKIT_CACHE_DIR")
    return Path(d) if d else data_home() / "cache"


def models_dir() -> Path:
    d = env("PROMPTKIT_MODELS_DIR")
    return Path(d) if d else data_home() / "models"


SHIPPED: dict[str, str] = {"datasets": "_datasets", "notebooks": "_tour"}  # repo folder -> package folder in a wheel


def shipped_dir(name: str) -> Path:
    """A folder the distribution ships (`datasets`, `notebooks`): in the installed package, else the checkout's.

    The repo keeps them at the top level; pyproject.toml maps them into the package
    (promptkit/_datasets, promptkit/_tour) so a non-editable install has them too.
    """
    here = Path(__file__).resolve().parent
    inside = here / SHIPPED[name]
    return inside if inside.is_dir() else here.parent / name
