"""`promptkit tour [DIR]`: the tour's notebooks copied into a folder the learner owns, opened in JupyterLab.

An installed promptkit (wheel, sdist or git URL) ships the notebooks inside the
package; they are copied out, never edited in place, so the learner's answers
live in their own folder and survive an upgrade. `make tour` stays the path
from a clone.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .config import shipped_dir
from .errors import PromptkitError

DEFAULT_DIR = "promptkit-tour"
FIRST = "00_welcome.ipynb"


def copy_tour(dest: str | os.PathLike[str] = DEFAULT_DIR) -> tuple[Path, list[str], list[str]]:
    """Copy the notebooks (and exercise solutions) into `dest`; a file already there is the learner's, kept as is.

    Returns (folder, copied names, kept names).
    """
    src = shipped_dir("notebooks")
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise PromptkitError(f"no tour notebooks in {src}: this promptkit install is incomplete; reinstall it "
                             f"(pip install --force-reinstall promptkit) or run `make tour` in a clone")
    folder = Path(dest).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise PromptkitError(f"{folder} is a file; give `promptkit tour` a folder to copy the tour into")
    if folder == src.resolve():  # the checkout's own notebooks folder: open it as it is
        return folder, [], [p.name for p in notebooks]
    files = notebooks + sorted((src / "solutions").glob("*.yaml"))
    copied, kept = [], []
    for f in files:
        rel = f.relative_to(src)
        target = folder / rel
        if target.exists():
            kept.append(str(rel))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)  # not copy2: site-packages files may be read-only, the learner's copy must not be
        copied.append(str(rel))
    return folder, copied, kept


def lab_command(folder: Path, *, no_browser: bool = False, port: int | None = None) -> list[str]:
    """The JupyterLab command that serves `folder` on 127.0.0.1 and opens the first chapter."""
    cmd = [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--ServerApp.root_dir={folder}"]
    if no_browser:
        cmd.append("--no-browser")
    if port is not None:
        cmd.append(f"--port={port}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    if (folder / FIRST).exists():
        cmd.append(FIRST)
    return cmd


def open_tour(dest: str | os.PathLike[str] = DEFAULT_DIR, *, no_browser: bool = False, port: int | None = None) -> int:
    """Copy the tour into `dest` and run JupyterLab there until it is stopped; returns its exit status."""
    folder, copied, kept = copy_tour(dest)
    print(f"promptkit: the tour is in {folder}" + (f" ({len(copied)} file(s) copied" if copied else " (")
          + (f"{', ' if copied else ''}{len(kept)} already there, kept as they are)" if kept else ")"), flush=True)
    print("promptkit: starting JupyterLab; open the URL printed below (Ctrl-C stops it)", flush=True)
    proc = subprocess.Popen(lab_command(folder, no_browser=no_browser, port=port), cwd=folder)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # JupyterLab got the same Ctrl-C: let it shut its kernels down
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


__all__ = ["copy_tour", "lab_command", "open_tour"]
