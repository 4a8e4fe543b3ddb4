"""Local models joined from chunk packages: order, verification, failures leave nothing behind.

The joining tests run on small fake chunk files; the model tests run the real
Qwen2.5 models and skip only when their chunk packages are not installed.
"""
from __future__ import annotations

import errno
import hashlib
import importlib.metadata
import tomllib
from types import SimpleNamespace
from pathlib import Path

import pytest

from promptkit import local_models
from promptkit.catalog import LocalModel, catalog
from promptkit.errors import ModelInstallError
from promptkit.local_models import Chunk, chunks_of, gguf_path, install_model, installed_path, joined_path, status

ROOT = Path(__file__).resolve().parents[1]


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def make_fake(tmp_path: Path, parts: list[bytes], *, whole_sha: str | None = None, chunk_sha: bool = True,
              order: list[int] | None = None) -> tuple[LocalModel, dict[str, Path]]:
    """A catalog entry for `parts` written as chunk files, and the files by package name."""
    src = tmp_path / "chunks"
    src.mkdir()
    files, chunks = {}, []
    for i, b in enumerate(parts, 1):
        f = src / f"part{i:02d}.bin"
        f.write_bytes(b)
        files[f"fake-part{i}"] = f
        chunks.append({"package": f"fake-part{i}", "version": "1.0", "file": f"fake_part{i}/data/part{i:02d}.bin",
                       "size": len(b), "sha256": sha(b) if chunk_sha else None})
    if order:
        chunks = [chunks[i] for i in order]
    whole = b"".join(parts)
    model = LocalModel(name="fake", title="Fake", licence="none", origin="test", context_length=64, n_ctx=64,
                       chunks=tuple(chunks), size=len(whole), sha256=whole_sha or sha(whole),
                       install="pip install fake-part1..n", raw={"file": "fake.gguf"})
    return model, files


def resolver(files: dict[str, Path], calls: list[str] | None = None):
    def resolve(c: Chunk) -> Path:
        if calls is not None:
            calls.append(c.package)
        return files[c.package]
    return resolve


def left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


PARTS = [b"GGUF" + bytes(range(256)) * 40, b"second-chunk-" * 700, b"tail"]


def test_joins_chunks_in_catalog_order_and_verifies(tmp_path):
    model, files = make_fake(tmp_path, PARTS)
    out = tmp_path / "models"
    path = install_model(model, progress=False, chunk_files=resolver(files), folder=out)
    assert path == out / "fake.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert left_in(out) == ["fake.gguf", "fake.gguf.verified.json"]  # no temporary file left over
    assert installed_path(model, out) == path
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_chunks_in_wrong_order_fail_the_hash_and_leave_nothing(tmp_path):
    model, files = make_fake(tmp_path, PARTS, chunk_sha=False, order=[1, 0, 2])
    out = tmp_path / "models"
    with pytest.raises(ModelInstallError, match=r"sha256 .* expected") as exc:
        install_model(model, progress=False, chunk_files=resolver(files), folder=out)
    assert "pip install --force-reinstall --no-deps fake-part2==1.0 fake-part1==1.0 fake-part3==1.0" in str(exc.value)
    assert left_in(out) == []
    assert installed_path(model, out) is None


def test_wrong_whole_file_hash_leaves_nothing_under_the_final_name(tmp_path):
    model, files = make_fake(tmp_path, PARTS, whole_sha="0" * 64)
    out = tmp_path / "models"
    with pytest.raises(ModelInstallError, match="nothing was installed"):
        install_model(model, progress=False, chunk_files=resolver(files), folder=out)
    assert left_in(out) == []


def test_damaged_chunk_is_named_with_the_command_that_reinstalls_it(tmp_path):
    model, files = make_fake(tmp_path, PARTS)
    data = bytearray(files["fake-part2"].read_bytes())
    data[10] ^= 0xFF  # same size, different bytes
    files["fake-part2"].write_bytes(bytes(data))
    out = tmp_path / "models"
    with pytest.raises(ModelInstallError) as exc:
        install_model(model, progress=False, chunk_files=resolver(files), folder=out)
    msg = str(exc.value)
    assert "fake-part2==1.0" in msg and str(files["fake-part2"]) in msg
    assert "pip install --force-reinstall --no-deps fake-part2==1.0" in msg
    assert left_in(out) == []


def test_truncated_chunk_is_caught_before_writing(tmp_path):
    model, files = make_fake(tmp_path, PARTS)
    files["fake-part3"].write_bytes(b"ta")
    out = tmp_path / "models"
    with pytest.raises(ModelInstallError, match=r"fake-part3==1.0 is 2 bytes, expected 4"):
        install_model(model, progress=False, chunk_files=resolver(files), folder=out)
    assert left_in(out) == []


def test_missing_chunk_packages_are_named_with_the_pip_command(tmp_path):
    # the real resolver, asked for packages that are not installed
    model, _ = make_fake(tmp_path, PARTS)
    chunks = [dict(c, package=f"promptkit-absent-chunk-part{i}") for i, c in enumerate(model.chunks, 1)]
    chunks[0] = dict(model.chunks[0], package="tqdm", version=importlib.metadata.version("tqdm"),
                     file="tqdm/__init__.py")  # installed, so only the other two are named
    model = LocalModel(**{**model.__dict__, "chunks": tuple(chunks)})
    out = tmp_path / "models"
    with pytest.raises(ModelInstallError) as exc:
        install_model(model, progress=False, folder=out)
    msg = str(exc.value)
    assert "2 of them cannot be used" in msg
    assert "chunk package promptkit-absent-chunk-part2 is not installed" in msg
    assert "pip install --no-deps promptkit-absent-chunk-part2==1.0 promptkit-absent-chunk-part3==1.0" in msg
    assert "pip install fake-part1..n" in msg  # the model's own install command
    assert left_in(out) == []


def test_a_file_missing_inside_an_installed_package_is_named(tmp_path):
    version = importlib.metadata.version("tqdm")
    with pytest.raises(ModelInstallError, match=rf"tqdm=={version} has no file tqdm/data/part01.bin"):
        local_models.chunk_file(Chunk("tqdm", version, "tqdm/data/part01.bin"))
    with pytest.raises(ModelInstallError, match=rf"installed at version {version}, but the model needs 0.0.1"):
        local_models.chunk_file(Chunk("tqdm", "0.0.1", "tqdm/__init__.py"))
    found = local_models.chunk_file(Chunk("tqdm", version, "tqdm/__init__.py"))
    assert found.name == "__init__.py" and found.is_file()


def test_interrupted_join_leaves_nothing(tmp_path, monkeypatch):
    model, files = make_fake(tmp_path, PARTS)
    out = tmp_path / "models"
    real = local_models._read_blocks
    seen = []

    def reader(path):
        for buf in real(path):
            seen.append(len(buf))
            yield buf
        if path == files["fake-part2"]:
            raise KeyboardInterrupt  # the user stops it after two chunks were written

    monkeypatch.setattr(local_models, "_read_blocks", reader)
    with pytest.raises(KeyboardInterrupt):
        install_model(model, progress=False, chunk_files=resolver(files), folder=out)
    assert len(seen) == 2
    assert left_in(out) == []


def raising(exc: BaseException):
    def fail(*args, **kwargs):
        raise exc
    return fail


WRITE_FAILURES = {  # which os call fails while installing -> what the message must say
    "failed_rename": ("replace", PermissionError(errno.EACCES, "Permission denied"),
                      r"could not write local model 'fake' into .*Permission denied"),
    "full_disk_while_writing": ("fsync", OSError(errno.ENOSPC, "No space left on device"),
                                r"disk is full.*PROMPTKIT_MODELS_DIR"),
}


@pytest.mark.parametrize("case", list(WRITE_FAILURES))
def test_a_failed_write_says_what_to_do_and_leaves_nothing(tmp_path, monkeypatch, case):
    call, exc, message = WRITE_FAILURES[case]
    model, files = make_fake(tmp_path, PARTS)
    out = tmp_path / "models"
    monkeypatch.setattr(local_models.os, call, raising(exc))
    with pytest.raises(ModelInstallError, match=message):
        install_model(model, progress=False, chunk_files=resolver(files), folder=out)
    monkeypatch.undo()
    assert left_in(out) == []


def test_too_little_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    model, files = make_fake(tmp_path, PARTS)
    out = tmp_path / "models"
    monkeypatch.setattr(local_models.shutil, "disk_usage", lambda p: SimpleNamespace(total=100, used=90, free=10))
    with pytest.raises(ModelInstallError, match=rf"needs {model.size / 1e6:.1f} MB free in {out}"):
        install_model(model, progress=False, chunk_files=resolver(files), folder=out)
    assert left_in(out) == []


def test_second_use_finds_the_file_without_reading_chunks(tmp_path):
    model, files = make_fake(tmp_path, PARTS)
    out = tmp_path / "models"
    calls: list[str] = []
    first = install_model(model, progress=False, chunk_files=resolver(files, calls), folder=out)
    assert calls == ["fake-part1", "fake-part2", "fake-part3"]
    for f in files.values():
        f.unlink()  # the chunks are gone: a second use must not need them
    again = install_model(model, progress=False, chunk_files=resolver(files, calls), folder=out)
    assert again == first and calls == ["fake-part1", "fake-part2", "fake-part3"]


def test_a_truncated_joined_file_is_not_taken_as_installed(tmp_path):
    model, files = make_fake(tmp_path, PARTS)
    out = tmp_path / "models"
    path = install_model(model, progress=False, chunk_files=resolver(files), folder=out)
    with open(path, "r+b") as f:
        f.truncate(100)
    assert installed_path(model, out) is None
    assert install_model(model, progress=False, chunk_files=resolver(files), folder=out).read_bytes() == b"".join(PARTS)


def fake_catalog(tmp_path: Path, monkeypatch, model: LocalModel) -> None:
    """Point the catalog at a file holding only `model`, and the models folder at tmp_path/models."""
    import yaml

    entry = {"title": model.title, "licence": model.licence, "origin": model.origin,
             "context_length": model.context_length, "n_ctx": model.n_ctx, "size": model.size,
             "sha256": model.sha256, "install": model.install, "file": "fake.gguf", "chunks": list(model.chunks)}
    f = tmp_path / "models.yaml"
    f.write_text(yaml.safe_dump({"local": {"fake": entry}}), encoding="utf-8")
    monkeypatch.setenv("PROMPTKIT_MODELS_FILE", str(f))
    monkeypatch.setenv("PROMPTKIT_MODELS_DIR", str(tmp_path / "models"))


def test_gguf_path_joins_on_first_use_and_says_so(tmp_path, monkeypatch, capsys):
    model, files = make_fake(tmp_path, PARTS)
    fake_catalog(tmp_path, monkeypatch, model)
    monkeypatch.setattr(local_models, "chunk_file", resolver(files))
    assert status(catalog().local_model("fake")).state == "joinable"
    with pytest.raises(ModelInstallError, match="promptkit models --install fake"):
        gguf_path("fake", join=False)
    path = gguf_path("fake")
    assert path == tmp_path / "models" / "fake.gguf" and path.read_bytes() == b"".join(PARTS)
    assert "joining local model 'fake' from 3 chunk packages" in capsys.readouterr().err
    assert gguf_path("fake") == path
    assert "joining" not in capsys.readouterr().err
    assert status(catalog().local_model("fake")).state == "installed"


def test_gguf_path_without_packages_says_how_to_install(tmp_path, monkeypatch, capsys):
    model, _ = make_fake(tmp_path, PARTS)
    fake_catalog(tmp_path, monkeypatch, model)
    st = status(catalog().local_model("fake"))
    assert st.state == "missing" and st.missing == ("fake-part1==1.0", "fake-part2==1.0", "fake-part3==1.0")
    with pytest.raises(ModelInstallError, match=r"(?s)fake-part1 is not installed.*pip install fake-part1..n"):
        gguf_path("fake")
    assert "joining" not in capsys.readouterr().err
    assert left_in(tmp_path / "models") == []


# --- the real catalog entries ------------------------------------------------------------

QWEN = ["qwen2.5-0.5b", "qwen2.5-1.5b"]


@pytest.mark.parametrize("name", QWEN)
def test_catalog_entry_is_complete_and_matches_the_extra(name):
    m = catalog().local_model(name)
    chunks = chunks_of(m)
    assert [c.package for c in chunks] == [f"{chunks[0].package[:-1]}{i}" for i in range(1, len(chunks) + 1)]
    assert sum(c.size for c in chunks) == m.size
    assert all(len(c.sha256) == 64 for c in chunks) and len(m.sha256) == 64
    assert round(m.size / 1e6) == m.size_mb
    assert m.chat_format == "chatml" and "Apache-2.0" in m.licence and m.ram_mb and m.speed
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras[m.extra] == [c.requirement for c in chunks]
    assert f'.[{m.extra}]' in m.install
    assert m.extra in extras["models"][0]


def test_notice_names_every_local_model():
    notice = (ROOT / "NOTICE").read_text(encoding="utf-8")
    for name, m in catalog().local.items():
        assert f"local:{name}" in notice and m.title in notice, name
        chunks = chunks_of(m)
        packages = [chunks[0].package, chunks[-1].package, chunks[0].version] if chunks else [m.package, m.version]
        for word in packages:
            assert word in notice, (name, word)


# --- the real models (skip only when their chunk packages are not installed) -------------

def _packages_missing(name: str) -> tuple[str, ...]:
    return status(catalog().local_model(name)).missing


@pytest.mark.local_model
@pytest.mark.skipif(bool(_packages_missing("qwen2.5-0.5b")),
                    reason="chunk packages of qwen2.5-0.5b not installed (pip install -e '.[qwen05]')")
def test_qwen05_answers_through_the_local_provider_with_its_chatml_template():
    import promptkit as pk
    from promptkit.complete import build_request
    from promptkit.providers import get_provider
    from promptkit.providers.local import LocalProvider

    path = gguf_path("qwen2.5-0.5b")
    m = catalog().local_model("qwen2.5-0.5b")
    assert path.stat().st_size == m.size and installed_path(m) == path
    prov = get_provider("local:qwen2.5-0.5b")
    assert type(prov) is LocalProvider is type(get_provider("local:smollm2"))
    req = build_request("Reply with the single word: yes", system="You answer in one word.", max_tokens=5)
    prompt = prov.loaded().render(req)
    assert prompt.startswith("<|im_start|>system\nYou answer in one word.<|im_end|>\n<|im_start|>user\n")
    assert prompt.endswith("<|im_start|>assistant\n")
    c = pk.complete("Reply with the single word: yes", "local:qwen2.5-0.5b", system="You answer in one word.",
                    max_tokens=5, temperature=0)
    assert c.ok, c.error
    assert c.provider == "local" and c.model == "qwen2.5-0.5b" and c.cost_usd == 0.0
    assert "yes" in c.text.lower() and 1 <= c.output_tokens <= 5
    assert "<|im_end|>" not in c.text  # the end-of-turn token stops generation, it is not text


@pytest.mark.local_model
@pytest.mark.skipif(bool(_packages_missing("qwen2.5-1.5b")),
                    reason="chunk packages of qwen2.5-1.5b not installed (pip install -e '.[qwen15]')")
def test_qwen15_answers_through_the_local_provider():
    import promptkit as pk

    c = pk.complete("Customer notes: 'We are moving to a competitor next quarter.' Renewal risk? "
                    "Answer with one of: Commit, Likely, At-Risk.", "local:qwen2.5-1.5b",
                    system="You are a customer-success analyst. Answer with the label only.",
                    max_tokens=6, temperature=0)
    assert c.ok, c.error
    assert c.text.strip().startswith("At-Risk")


# --- `promptkit models` ---------------------------------------------------------------------

def test_models_command_installs_and_lists_each_state(tmp_path, monkeypatch, capsys):
    from promptkit.cli import main
    from promptkit.models_status import model_table

    model, files = make_fake(tmp_path, PARTS)
    fake_catalog(tmp_path, monkeypatch, model)
    row = next(r for r in model_table() if r["spec"] == "local:fake")
    assert row["state"] == "missing" and not row["ready"]
    assert "install: pip install fake-part1..n" in row["why"]
    assert main(["models", "--install", "fake"]) == 2
    err = capsys.readouterr().err
    assert "fake-part2 is not installed" in err and "pip install --no-deps fake-part1==1.0" in err

    monkeypatch.setattr(local_models, "chunk_file", resolver(files))
    row = next(r for r in model_table() if r["spec"] == "local:fake")
    assert row["state"] == "joinable" and row["ready"] and "promptkit models --install fake" in row["why"]
    assert main(["models", "--install", "fake"]) == 0
    out = capsys.readouterr().out
    assert f"local:fake ready: {tmp_path / 'models' / 'fake.gguf'}" in out
    row = next(r for r in model_table() if r["spec"] == "local:fake")
    assert row["state"] == "installed" and row["path"] == str(tmp_path / "models" / "fake.gguf")
