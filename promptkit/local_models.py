"""Where local GGUF files live: inside an installed wheel, or joined from chunk packages.

Packages that carry model bytes are treated as data: located with importlib
metadata and never imported.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from .catalog import LocalModel, catalog
from .errors import ModelInstallError, ModelSpecError


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def installed_path(model: LocalModel) -> Path | None:
    """The GGUF file for `model` if it is already on disk, else None (no side effects)."""
    if model.module and model.glob:
        folder = _package_dir(model.module)
        if folder is None:
            return None
        found = sorted(folder.glob(model.glob))
        return found[0] if found else None
    return None


def gguf_path(name_or_path: str) -> Path:
    """Resolve `smollm2` or `/path/to/model.gguf` to an existing GGUF file, or say how to get it."""
    if name_or_path.endswith(".gguf") or "/" in name_or_path or "\\" in name_or_path:
        p = Path(name_or_path).expanduser()
        if not p.is_file():
            raise ModelSpecError(f"local model file not found: {p} (give the path of an existing .gguf file)")
        return p
    model = catalog().local_model(name_or_path)
    path = installed_path(model)
    if path is None:
        raise ModelInstallError(
            f"local model {model.name!r} is not installed; install it with: {model.install or model.package}"
        )
    return path
