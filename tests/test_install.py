"""promptkit installed outside the repo: the wheel ships the datasets and the tour, and `promptkit tour` works.

The slow test builds the wheel from a copy of the source, installs it (no dependencies) into
a fresh venv that borrows the dependencies of the running one, then, from a folder that is not
the repo: loads a dataset, runs `promptkit tour --no-browser` until JupyterLab serves the tour,
and executes the first chapter with papermill on the real local model.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

from promptkit.tour import copy_tour, lab_command

ROOT = Path(__file__).resolve().parents[1]


def test_copy_tour_makes_the_learners_own_copy_and_never_overwrites_it(tmp_path):
    folder, copied, kept = copy_tour(tmp_path / "tour")
    names = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert names and sorted(c for c in copied if c.endswith(".ipynb")) == names and not kept
    assert any(c.startswith("solutions/") for c in copied)
    mine = folder / names[0]
    assert os.access(mine, os.W_OK)
    mine.write_text("my answers", encoding="utf-8")
    _, copied2, kept2 = copy_tour(folder)
    assert not copied2 and names[0] in kept2 and mine.read_text(encoding="utf-8") == "my answers"
    cmd = lab_command(folder, no_browser=True, port=8899)
    assert cmd[1:3] == ["-m", "jupyterlab"] and "--no-browser" in cmd and "--port=8899" in cmd
    assert f"--ServerApp.root_dir={folder}" in cmd and cmd[-1] == "00_welcome.ipynb"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(pk_error(), match="is a file"):
        copy_tour(tmp_path / "afile")


def pk_error():
    from promptkit.errors import PromptkitError

    return PromptkitError


def test_every_package_folder_is_in_the_wheel_list():
    """pyproject.toml lists packages by hand (to map datasets/ and notebooks/ in): a new folder must be added."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^\[tool\.setuptools\]\npackages = \[(.*?)\]", text, re.S | re.M)
    assert block, "pyproject.toml: [tool.setuptools] packages = [...] not found"
    listed = set(re.findall(r'"([\w.]+)"', block.group(1)))
    found = {".".join(p.relative_to(ROOT).parts) for p in (ROOT / "promptkit").rglob("*")
             if p.is_dir() and p.name != "__pycache__" and not p.name.startswith(".")} | {"promptkit"}
    missing = sorted(found - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{cmd} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, venv bin) with promptkit installed from a freshly built wheel."""
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "NOTICE"):
        shutil.copy(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "src")
    for name in ("promptkit", "datasets", "notebooks"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_RETRIES": "1", "PIP_TIMEOUT": "10"}
    import setuptools

    # the build backend pyproject asks for: this venv's own when new enough (offline), else pip fetches it
    own = int(setuptools.__version__.split(".")[0]) >= 77
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *(["--no-build-isolation"] if own else []),
          "-w", str(base / "dist"), str(src)], env=pip_env, timeout=600)
    wheel = next((base / "dist").glob("promptkit-*.whl"))
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
         env=pip_env, timeout=300)
    # Borrow this venv's dependencies as a plain path (its .pth files, and so its editable promptkit, stay off).
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "zz_promptkit_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return py, venv / "bin", site


@pytest.mark.local_model
@pytest.mark.notebook
@pytest.mark.timeout(1800)
def test_wheel_ships_datasets_and_tour_and_promptkit_tour_runs_outside_the_repo(installed, tmp_path):
    py, bindir, site = installed
    work = tmp_path / "learner"
    work.mkdir()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "jrt"), "JUPYTER_CONFIG_DIR": str(tmp_path / "jcfg"),
           "JUPYTERLAB_DIR": str(Path(sys.prefix) / "share" / "jupyter" / "lab"),
           "PROMPTKIT_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("PROMPTKIT_DATASETS_DIR", None)
    env.pop("PYTHONPATH", None)  # the test runs with the worktree on the path; the venv must not
    probe = _run([str(py), "-c", "import json, promptkit as pk\nfrom promptkit.datasets import datasets_dir\n"
                  "from promptkit import stored_run\n"
                  "ds = pk.load_dataset('renewal_tier')\n"
                  "print(json.dumps({'file': pk.__file__, 'dir': str(datasets_dir()), 'rows': len(ds.rows),\n"
                  "                  'stored': len(stored_run.read('tour_stored_run'))}))"],
                 cwd=work, env=env, timeout=120)
    info = json.loads(probe.stdout.strip().splitlines()[-1])
    assert info["file"].startswith(str(site)), info  # the installed wheel, not the repo
    assert info["dir"] == str(site / "promptkit" / "_datasets") and info["rows"] > 0
    assert info["stored"] > 0  # the stored run chapter 01 shows beside its live one ships in the wheel

    port = _free_port()
    log = tmp_path / "tour.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(bindir / "promptkit"), "tour", "--no-browser", "--port", str(port), "my-tour"],
                                cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        url = None
        while time.monotonic() < deadline and proc.poll() is None and url is None:
            time.sleep(1)
            m = re.search(rf"(http://127\.0\.0\.1:{port}/lab\S*)", log.read_text(errors="replace"))
            url = m.group(1) if m else None
        text = log.read_text(errors="replace")
        assert url, f"JupyterLab did not come up (exit {proc.poll()}):\n{text[-3000:]}"
        assert "the tour is in" in text and str(work / "my-tour") in text
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200 and b"JupyterLab" in resp.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    tour = work / "my-tour"
    chapters = sorted(p.name for p in tour.glob("*.ipynb"))
    assert chapters == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert (tour / "solutions").is_dir()

    executed = tmp_path / "00_welcome.out.ipynb"
    _run([str(py), "-m", "papermill", str(tour / "00_welcome.ipynb"), str(executed), "-p", "N_ROWS", "4",
          "-k", "python3", "--cwd", str(tour), "--no-progress-bar"], cwd=work, env=env, timeout=1500)
    nb = json.loads(executed.read_text(encoding="utf-8"))
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors and nb["metadata"]["papermill"]["exception"] is not True
