"""Where local GGUF files live: inside an installed wheel, or joined from chunk packages.

Packages that carry model bytes are treated as untrusted data: they are found
through their installed metadata (`importlib.metadata`), never imported, and the
joined file is only given its final name once its size and sha256 match the
catalog.
"""
from __future__ import annotations

import errno
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .catalog import LocalModel, catalog
from .config import models_dir
from .errors import ModelInstallError, ModelSpecError
from .files import atomic_write

BLOCK = 8 << 20  # bytes read and hashed at a time while joining
MARKER_SUFFIX = ".verified.json"


@dataclass(frozen=True)
class Chunk:
    """One piece of a joined model: a data file inside a pinned package."""

    package: str
    version: str
    file: str  # path inside the installed distribution, as listed in its RECORD
    size: int | None = None
    sha256: str | None = None

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


ChunkResolver = Callable[[Chunk], Path]


@dataclass(frozen=True)
class LocalStatus:
    """Where a local model stands: `installed` (file ready), `joinable` (packages there) or `missing`."""

    model: LocalModel
    state: str
    path: Path | None = None
    missing: tuple[str, ...] = ()  # requirements not installed (or at another version)

    @property
    def ready(self) -> bool:
        return self.state in ("installed", "joinable")


def chunks_of(model: LocalModel) -> list[Chunk]:
    """The catalog's chunk list as typed records, in joining order."""
    out = []
    for i, d in enumerate(model.chunks):
        try:
            out.append(Chunk(package=str(d["package"]), version=str(d["version"]), file=str(d["file"]),
                             size=d.get("size"), sha256=d.get("sha256")))
        except (KeyError, TypeError):
            raise ModelSpecError(
                f"models.yaml: local.{model.name}.chunks[{i}] must have package, version and file; got {d!r}"
            ) from None
    return out


def pip_command(chunks: Sequence[Chunk], reinstall: bool = False) -> str:
    """The exact pip command that installs these chunk packages (pinned, no dependencies)."""
    flags = "--force-reinstall --no-deps" if reinstall else "--no-deps"
    return f"pip install {flags} " + " ".join(c.requirement for c in chunks)


def chunk_file(chunk: Chunk) -> Path:
    """The installed data file of one chunk, located from package metadata without importing it."""
    try:
        dist = importlib.metadata.distribution(chunk.package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelInstallError(
            f"chunk package {chunk.package} is not installed; install it with: pip install {chunk.requirement}"
        ) from None
    if dist.version != chunk.version:
        raise ModelInstallError(
            f"chunk package {chunk.package} is installed at version {dist.version}, but the model needs "
            f"{chunk.version}; install the pinned one with: pip install --no-deps {chunk.requirement}"
        )
    listed = [f for f in (dist.files or []) if f.as_posix() == chunk.file]
    if not listed:
        raise ModelInstallError(
            f"chunk package {chunk.requirement} has no file {chunk.file} in its file list; "
            f"reinstall it with: pip install --force-reinstall --no-deps {chunk.requirement}"
        )
    path = Path(dist.locate_file(listed[0]))
    if not path.is_file():
        raise ModelInstallError(
            f"file {path} of chunk package {chunk.requirement} is missing from disk; "
            f"reinstall it with: pip install --force-reinstall --no-deps {chunk.requirement}"
        )
    return path


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def joined_path(model: LocalModel, folder: Path | None = None) -> Path:
    """Where the joined GGUF of a chunked model lives (PROMPTKIT_MODELS_DIR overrides the folder)."""
    name = model.raw.get("file") or f"{model.name}.gguf"
    return (folder or models_dir()) / name


def _marker(path: Path) -> Path:
    return path.with_name(path.name + MARKER_SUFFIX)


def _is_verified(model: LocalModel, path: Path) -> bool:
    """Quick check used on every start: right size and a marker that records the catalog's sha256."""
    try:
        if path.stat().st_size != model.size:
            return False
        mark = json.loads(_marker(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(mark, dict) and mark.get("sha256") == model.sha256 and mark.get("size") == model.size


def installed_path(model: LocalModel, folder: Path | None = None) -> Path | None:
    """The GGUF file for `model` if it is already on disk, else None (no side effects, no hashing)."""
    if model.chunks:
        path = joined_path(model, folder)
        return path if _is_verified(model, path) else None
    if model.module and model.glob:
        pkg = _package_dir(model.module)
        if pkg is None:
            return None
        found = sorted(pkg.glob(model.glob))
        return found[0] if found else None
    return None


def _resolve(model: LocalModel, chunks: list[Chunk], resolve: ChunkResolver) -> list[Path]:
    """Every chunk's file, or one error listing every problem and the command that fixes them."""
    paths: list[Path] = []
    problems: list[str] = []
    missing: list[Chunk] = []
    for c in chunks:
        try:
            paths.append(resolve(c))
        except ModelInstallError as exc:
            problems.append(str(exc))
            missing.append(c)
    if problems:
        how = model.install or pip_command(chunks)
        raise ModelInstallError(
            f"local model {model.name!r} is joined from {len(chunks)} chunk packages and "
            f"{len(missing)} of them cannot be used:\n  - " + "\n  - ".join(problems)
            + f"\nInstall the model's packages with: {how}\n(or exactly: {pip_command(missing)})"
        )
    for c, p in zip(chunks, paths):
        if c.size is not None and p.stat().st_size != c.size:
            raise ModelInstallError(
                f"file {p} of chunk package {c.requirement} is {p.stat().st_size} bytes, expected {c.size}; "
                f"reinstall it with: pip install --force-reinstall --no-deps {c.requirement}"
            )
    return paths


def _read_blocks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while True:
            buf = f.read(BLOCK)
            if not buf:
                return
            yield buf


def _write_marker(model: LocalModel, path: Path, chunks: Sequence[Chunk]) -> None:
    mark = {"model": model.name, "size": model.size, "sha256": model.sha256,
            "from": [c.requirement for c in chunks]}
    atomic_write(_marker(path), lambda f: f.write(json.dumps(mark, indent=1) + "\n"), durable=False)


def _disk_error(exc: OSError, model: LocalModel, folder: Path) -> ModelInstallError:
    if exc.errno == errno.ENOSPC:
        return ModelInstallError(
            f"the disk is full: joining local model {model.name!r} needs {model.size / 1e6:.1f} MB free in "
            f"{folder}; free some space, or set PROMPTKIT_MODELS_DIR to a folder on a larger disk, then retry"
        )
    return ModelInstallError(
        f"could not write local model {model.name!r} into {folder}: {exc.strerror or exc}; "
        f"check that the folder is writable, or set PROMPTKIT_MODELS_DIR to another folder"
    )


_INSTALL_LOCK = threading.Lock()


def install_model(
    name: str | LocalModel,
    progress: bool = True,
    *,
    chunk_files: ChunkResolver | None = None,
    folder: Path | None = None,
) -> Path:
    """Join a chunked model into the models folder once, verified; return the GGUF path.

    The bytes go to a temporary file in the same folder, hashed as they are
    written, and are renamed to the final name only when size and sha256 match
    the catalog, so a failure of any kind leaves nothing under the final name.
    `chunk_files` maps a chunk to its file (tests point it at fake chunks).
    """
    model = name if isinstance(name, LocalModel) else catalog().local_model(name)
    if not model.chunks:
        path = installed_path(model)
        if path is None:
            raise ModelInstallError(f"local model {model.name!r} is not installed; install it with: {model.install}")
        return path
    if model.size is None or not model.sha256:
        raise ModelSpecError(f"models.yaml: local.{model.name} has chunks but no size and sha256 to check them")
    chunks = chunks_of(model)
    final = joined_path(model, folder)
    with _INSTALL_LOCK:
        if _is_verified(model, final):
            return final
        paths = _resolve(model, chunks, chunk_files or chunk_file)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(final.parent).free
        except OSError as exc:
            raise _disk_error(exc, model, final.parent) from exc
        if free < model.size:
            raise _disk_error(OSError(errno.ENOSPC, "no space left"), model, final.parent)
        if progress:
            print(
                f"promptkit: joining local model {model.name!r} from {len(chunks)} chunk packages into "
                f"{final} ({model.size / 1e6:.0f} MB, once; later starts are immediate)",
                file=sys.stderr,
            )
        _join(model, chunks, paths, final, progress)
        return final


def _join(model: LocalModel, chunks: list[Chunk], paths: list[Path], final: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    try:
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
    except OSError as exc:
        raise _disk_error(exc, model, final.parent) from exc
    tmp = Path(tmp_name)
    try:
        total = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as out, tqdm(
            total=model.size, unit="B", unit_scale=True, unit_divisor=1024,
            desc=f"joining {model.name}", disable=not progress,
        ) as bar:
            for c, p in zip(chunks, paths):
                part = hashlib.sha256()
                for buf in _read_blocks(p):
                    out.write(buf)
                    total.update(buf)
                    part.update(buf)
                    written += len(buf)
                    bar.update(len(buf))
                if c.sha256 and part.hexdigest() != c.sha256:
                    raise ModelInstallError(
                        f"file {p} of chunk package {c.requirement} has sha256 {part.hexdigest()}, expected "
                        f"{c.sha256}: the package is damaged or not the one the catalog names; reinstall it with: "
                        f"{pip_command([c], reinstall=True)}"
                    )
            out.flush()
            os.fsync(out.fileno())
        if written != model.size or total.hexdigest() != model.sha256:
            raise ModelInstallError(
                f"joined local model {model.name!r} is {written} bytes with sha256 {total.hexdigest()}, expected "
                f"{model.size} bytes with sha256 {model.sha256}; nothing was installed. Reinstall its packages "
                f"with: {pip_command(chunks, reinstall=True)}"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the model file is ordinary data
        os.replace(tmp, final)
        _write_marker(model, final, chunks)
    except OSError as exc:
        raise _disk_error(exc, model, final.parent) from exc
    finally:
        tmp.unlink(missing_ok=True)


def status(model: LocalModel, chunk_files: ChunkResolver | None = None) -> LocalStatus:
    """Installed, joinable on first use, or missing (with the requirements still to install)."""
    resolve = chunk_files or chunk_file
    path = installed_path(model)
    if path is not None:
        return LocalStatus(model, "installed", path)
    if not model.chunks:
        return LocalStatus(model, "missing", missing=(f"{model.package}=={model.version}",) if model.package else ())
    missing = []
    for c in chunks_of(model):
        try:
            resolve(c)
        except ModelInstallError:
            missing.append(c.requirement)
    return LocalStatus(model, "missing" if missing else "joinable", missing=tuple(missing))


def gguf_path(name_or_path: str, join: bool = True) -> Path:
    """Resolve `smollm2` or `/path/to/model.gguf` to an existing GGUF file, joining chunks on first use."""
    if name_or_path.endswith(".gguf") or "/" in name_or_path or "\\" in name_or_path:
        p = Path(name_or_path).expanduser()
        if not p.is_file():
            raise ModelSpecError(f"local model file not found: {p} (give the path of an existing .gguf file)")
        return p
    model = catalog().local_model(name_or_path)
    path = installed_path(model)
    if path is not None:
        return path
    if model.chunks and join:
        return install_model(model, progress=True)
    if model.chunks:
        raise ModelInstallError(
            f"local model {model.name!r} is not joined yet; run: promptkit models --install {model.name} "
            f"(its packages: {model.install or pip_command(chunks_of(model))})"
        )
    raise ModelInstallError(
        f"local model {model.name!r} is not installed; install it with: {model.install or model.package}"
    )
