"""The model catalog: ids, aliases, prices and local model files, read from data.

Code never hard-codes a model id or a price; `data/models.yaml` holds them so a
retired id or a new price is a one-line data change.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import yamlfile
from .errors import ModelSpecError

CATALOG_PATH = Path(__file__).with_name("data") / "models.yaml"


@dataclass(frozen=True)
class ModelInfo:
    """A vendor model the catalog knows: its canonical id, aliases and prices."""

    provider: str
    id: str
    aliases: tuple[str, ...] = ()
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    context_length: int | None = None


@dataclass(frozen=True)
class LocalModel:
    """A local GGUF model: where its bytes come from and how to check them."""

    name: str
    title: str
    licence: str
    origin: str
    context_length: int
    n_ctx: int
    chat_format: str | None = None
    package: str | None = None
    version: str | None = None
    module: str | None = None
    glob: str | None = None
    chunks: tuple[dict[str, Any], ...] = ()
    size: int | None = None
    sha256: str | None = None
    size_mb: int | None = None
    ram_mb: int | None = None
    speed: str = ""
    install: str = ""
    extra: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Catalog:
    providers: dict[str, dict[str, Any]]
    models: dict[tuple[str, str], ModelInfo]
    local: dict[str, LocalModel]

    def resolve(self, provider: str, model: str) -> str:
        """Canonical id for an alias; unknown ids pass through unchanged (vendors add models)."""
        for info in self.models.values():
            if info.provider == provider and (model == info.id or model in info.aliases):
                return info.id
        return model

    def info(self, provider: str, model: str) -> ModelInfo | None:
        return self.models.get((provider, self.resolve(provider, model)))

    def cost(self, provider: str, model: str, input_tokens: int | None, output_tokens: int | None) -> float | None:
        """USD cost of one call, or None when the price or a token count is unknown."""
        if provider == "local":
            return 0.0
        info = self.info(provider, model)
        if info is None or info.input_per_mtok is None or info.output_per_mtok is None:
            return None
        if input_tokens is None or output_tokens is None:
            return None
        return (input_tokens * info.input_per_mtok + output_tokens * info.output_per_mtok) / 1e6

    def local_model(self, name: str) -> LocalModel:
        try:
            return self.local[name]
        except KeyError:
            raise ModelSpecError(
                f"unknown local model {name!r}; known local models are {sorted(self.local)} "
                f"(or give a path: local:/path/to/model.gguf)"
            ) from None


def _local(name: str, d: dict[str, Any]) -> LocalModel:
    keys = {f for f in LocalModel.__dataclass_fields__} - {"name", "raw", "chunks"}
    kw = {k: d[k] for k in keys if k in d}
    return LocalModel(name=name, chunks=tuple(d.get("chunks", ())), raw=d, **kw)


def _read(path: str) -> dict[str, Any]:
    """The YAML of the catalog file, or a ModelSpecError naming file, line and column (and the variable)."""
    who = " (PROMPTKIT_MODELS_FILE names this file: fix it or unset the variable)" if os.environ.get(
        "PROMPTKIT_MODELS_FILE") else ""
    data = yamlfile.load(path, ModelSpecError, "model catalog", who)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ModelSpecError(f"{path}: expected a mapping with providers, models and local, "
                             f"got {type(data).__name__}{who}")
    return data


@functools.lru_cache(maxsize=4)
def _load(path: str) -> Catalog:
    data = _read(path)
    models: dict[tuple[str, str], ModelInfo] = {}
    for provider, entries in (data.get("models") or {}).items():
        for mid, d in (entries or {}).items():
            d = d or {}
            models[(provider, mid)] = ModelInfo(
                provider=provider, id=mid, aliases=tuple(d.get("aliases", ())),
                input_per_mtok=d.get("input_per_mtok"), output_per_mtok=d.get("output_per_mtok"),
                context_length=d.get("context_length"),
            )
    local = {name: _local(name, d or {}) for name, d in (data.get("local") or {}).items()}
    return Catalog(providers=data.get("providers") or {}, models=models, local=local)


def catalog() -> Catalog:
    """The catalog in force (PROMPTKIT_MODELS_FILE points at another file)."""
    return _load(os.environ.get("PROMPTKIT_MODELS_FILE") or str(CATALOG_PATH))
