"""The cell key and the on-disk cache of answers.

The key is the one identity of a cell everywhere: cache entry, results row id,
`custom_id` of a vendor batch request, task key on a cluster. It hashes what
changes the answer (provider and base URL, model, rendered messages, prefill,
settings, repeat index; for local models also the context window in force and
the model file the models file names) and nothing that does not (timeouts, retries,
concurrency). The cache is a small get/put interface keyed by it, so the
storage can change (SQLite, Redis, object store) without touching the runner:
SqliteCache (one file, the default) and DiskCache (a file per key, for shared
filesystems) both keep only successful answers.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import queue
import re
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from .config import cache_dir, env
from .files import atomic_write
from .stored import KEY_RE as _KEY_RE, completion_dict
from .types import Completion, Request, Settings

KEY_VERSION = 1


def cell_key(model: str, request: Request, repeat: int = 0) -> str:
    """sha256 hex (64 lowercase characters) of everything that changes a cell's answer."""
    provider, base_url, resolved = _model_identity(model)
    payload = {
        "v": KEY_VERSION,
        "provider": provider,
        "base_url": base_url,
        "model": resolved,
        "request": {
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "settings": _settings_dict(request.settings),
            "prefill": request.prefill,
        },
        "repeat": int(repeat),
    }
    if provider == "local":  # the window decides which prompts fit; the catalog entry decides the weights
        payload["local"] = _local_identity(resolved, _catalog_file(), request.settings.n_ctx)
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _model_identity(model: str) -> tuple[str, str | None, str]:
    """(provider, base_url, canonical model id) of a spec, memoised per catalog file (keys are hot in re-runs).

    The base URL is the spec's `@url`, else the one the provider's variable sets (OPENAI_BASE_URL,
    ANTHROPIC_BASE_URL, OLLAMA_BASE_URL, ...): the same spec pointed at another server is another cell.
    """
    catalog_file = _catalog_file()
    var = _base_url_env(model.partition(":")[0].strip().lower(), catalog_file)
    return _identity(model, catalog_file, (env(var) or "").rstrip("/") or None if var else None)


@functools.lru_cache(maxsize=64)
def _base_url_env(prefix: str, catalog_file: str) -> str | None:
    from .catalog import catalog

    return (catalog().providers.get(prefix) or {}).get("base_url_env")


def _catalog_file() -> str:
    return os.environ.get("PROMPTKIT_MODELS_FILE") or _default_catalog_file()


@functools.lru_cache(maxsize=1)
def _default_catalog_file() -> str:
    """The packaged models file (an import per key was a measurable part of expanding a grid)."""
    from .catalog import CATALOG_PATH

    return str(CATALOG_PATH)


@functools.lru_cache(maxsize=256)
def _local_identity(model: str, catalog_file: str, n_ctx: int | None) -> dict[str, Any]:
    """A local model's weights (as the models file names them) and the context window it runs with."""
    from .catalog import catalog
    from .providers.local import DEFAULT_N_CTX

    info = catalog().local.get(model)
    if info is None:  # local:/path/to/model.gguf
        return {"file": model, "n_ctx": n_ctx or DEFAULT_N_CTX}
    weights = info.sha256 or f"{info.package}=={info.version}:{info.raw.get('file') or info.glob}"
    return {"weights": weights, "n_ctx": n_ctx or info.n_ctx}


@functools.lru_cache(maxsize=1024)
def _identity(model: str, catalog_file: str, env_base_url: str | None) -> tuple[str, str | None, str]:
    from .catalog import catalog
    from .providers import parse_spec

    spec = parse_spec(model)
    return spec.provider, spec.base_url or env_base_url, catalog().resolve(spec.provider, spec.model)


@functools.lru_cache(maxsize=1024)
def _settings_dict(settings: Settings) -> dict[str, Any]:
    """The settings as the key sees them (shared, never mutated)."""
    d = settings.to_dict()
    d.pop("n_ctx")  # keyed apart, as the window in force (local models only)
    for name in ("temperature", "top_p"):  # 0 and 0.0 ask the same thing: one key
        d[name] = float(d[name])
    return d


class Cache(Protocol):
    """What the runner needs from a cache: answers by cell key (a `check()` returning problems is optional).

    The contract a new store (network, object store) keeps: `key` is a 64-character lowercase
    hex cell key; `get` returns the stored Completion with `cached=True`, or None for a miss *or*
    anything unreadable (never raises for a bad entry: the cell is run again); `put` stores only
    `completion.ok` answers, as one atomic write per key (a reader sees a whole entry or none),
    and raises OSError when it cannot write (the runner notes it and keeps the answer in the
    results). With `threaded_puts = True` the runner calls `put` from one background thread.
    Optional, for speed: `get_many(keys) -> {key: Completion}` (one round trip for the cache
    check) and `put_many([(key, completion), ...])` (one write for a burst of answers).
    See RedisCache (promptkit/redis_cache.py) for a small network example.
    """

    def get(self, key: str) -> Completion | None: ...

    def put(self, key: str, completion: Completion) -> None: ...


_FIX = ("make it writable, or point PROMPTKIT_CACHE_DIR (or cache_backend=) at a folder you can write, "
        "or run with cache='off'")


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"


def _writable_folder(folder: Path) -> str | None:
    """None if answers can be written under `folder` (made on first write if missing), else why not.

    Tried, not guessed from permission bits: root ignores them, and an immutable or
    read-only-mounted folder refuses writes whatever they say.
    """
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return f"no folder {folder}"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    try:
        fd, name = tempfile.mkstemp(prefix=".promptkit-probe-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return f"cannot write in {probe} ({_why(exc)})"
    return None


def _not_kept(where: Path, why: str) -> str:
    return (f"cannot write the answer cache {where}: {why}. This run's answers will not be kept, so running "
            f"again pays for them again; {_FIX}")


class DiskCache:
    """One JSON file per key, written to a temporary name and renamed into place.

    A killed process leaves either a whole entry or none; several processes (or
    machines on a shared filesystem) can read and write the same folder.
    """

    threaded_puts = True  # the runner may write from one background thread (file I/O releases the GIL)

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()

    def _path(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ValueError(f"cache key must be at most 64 lowercase hex characters, got {key!r}")
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        c = Completion.from_dict(data["completion"])
        c.cached = True
        return c

    def put(self, key: str, completion: Completion) -> None:
        """Store a successful answer; errors are never cached, so a re-run retries them."""
        if not completion.ok:
            return
        data = {"key": key, "completion": completion_dict(completion)}
        atomic_write(self._path(key), lambda f: json.dump(data, f, ensure_ascii=False), durable=False)

    def check(self) -> list[str]:
        """What would stop answers being kept, said before the first call (the runner prints it)."""
        if self.root.exists() and not self.root.is_dir():
            return [_not_kept(self.root, "it is a file, not a folder")]
        why = _writable_folder(self.root)
        return [_not_kept(self.root, why)] if why else []

    def __contains__(self, key: str) -> bool:
        return self._path(key).exists()

    def __len__(self) -> int:
        """Entries under their final names (a write killed part-way leaves only a `.tmp-` file, not counted)."""
        if not self.root.exists():
            return 0
        return sum(1 for p in self.root.glob("*/*.json") if not p.name.startswith("."))


def _while_locked(step: Callable[[], Any], patience_s: float = 30.0) -> Any:
    """Run `step`, again while another process holds the file: switching a new file to WAL takes an exclusive
    lock that SQLite does not wait for (busy_timeout does not apply), so two processes opening one fresh cache
    at once (a run's workers, two notebooks) saw "database is locked" and lost a burst of answers."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SqliteCache:
    """Every answer in one SQLite file in WAL mode: the runner's default store.

    A write costs about a quarter of the CPU of DiskCache's file-per-key write
    (measured: ~28 us against ~115 us), and each write is its own transaction,
    so a killed process loses nothing it had stored. Several processes on one
    machine may share the file (WAL + busy_timeout); on a network filesystem
    use DiskCache instead. The file is created on the first write only.
    """

    threaded_puts = True  # the runner may write from one background thread
    FILENAME = "cache.sqlite3"

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir() / self.FILENAME
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._con is None:
            if not create and not self.path.exists():
                return None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA busy_timeout=30000")
            _while_locked(lambda: con.execute("PRAGMA journal_mode=WAL"))
            con.execute("PRAGMA synchronous=NORMAL")
            _while_locked(lambda: con.execute("CREATE TABLE IF NOT EXISTS answers "
                                              "(key TEXT PRIMARY KEY, completion TEXT NOT NULL, stored_at REAL NOT NULL)"))
            self._con = con
        return self._con

    def check(self) -> list[str]:
        """What would stop answers being kept, said before the first call; a damaged file is moved aside.

        A file SQLite cannot read (random bytes, a truncated copy, a bad page) would make every
        lookup a miss and every write fail, silently paying for the whole grid again. It is renamed
        to `cache.sqlite3.damaged-<time>` (kept for inspection) and a new file starts at the first write.
        """
        if self.path.exists() and not self.path.is_file():
            return [_not_kept(self.path, "it is a folder, not a file")]
        why = _writable_folder(self.path.parent)
        if why:
            return [_not_kept(self.path, why)]
        if not self.path.exists():
            return []
        damage = self._damage()
        if damage is None:
            try:  # a read-only file in a writable folder: SQLite opens it, then refuses every write
                with self._lock:
                    con = self._connect(create=False)
                    assert con is not None
                    con.execute("BEGIN IMMEDIATE")
                    con.execute("ROLLBACK")
            except sqlite3.DatabaseError as exc:
                return [_not_kept(self.path, f"{type(exc).__name__}: {exc}")]
            return []
        self.close()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        try:
            for suffix in ("", "-wal", "-shm"):
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    os.replace(part, Path(f"{aside}{suffix}"))
        except OSError as exc:
            return [_not_kept(self.path, f"it is damaged ({damage}) and could not be moved aside ({_why(exc)})")]
        return [f"the answer cache {self.path} was damaged ({damage}); moved it to {aside} (kept for inspection) "
                f"and started a new one, so answers stored only there will be asked for again"]

    def _damage(self) -> str | None:
        """Why SQLite cannot use the file, or None; reads only (quick_check walks every page once)."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(16)
        except OSError as exc:
            return _why(exc)
        if head and head != b"SQLite format 3\x00":
            return "not an SQLite database"
        if not head:
            return None  # an empty file is a new database
        try:
            with self._lock:
                con = self._connect(create=False)
                assert con is not None
                verdict = [r[0] for r in con.execute("PRAGMA quick_check").fetchall()]
                con.execute("SELECT key FROM answers LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            return f"{type(exc).__name__}: {exc}"
        if verdict != ["ok"]:
            return "; ".join(verdict[:2])
        return None

    @staticmethod
    def _check(key: str) -> None:
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ValueError(f"cache key must be at most 64 lowercase hex characters, got {key!r}")

    def get(self, key: str) -> Completion | None:
        self._check(key)
        try:
            with self._lock:
                con = self._connect(create=False)
                row = con.execute("SELECT completion FROM answers WHERE key=?", (key,)).fetchone() if con else None
            if row is None:
                return None
            c = Completion.from_dict(json.loads(row[0]))
        except (sqlite3.DatabaseError, json.JSONDecodeError, TypeError):
            return None  # an unreadable entry is a miss: the cell is simply run again
        c.cached = True
        return c

    def put(self, key: str, completion: Completion) -> None:
        """Store a successful answer; errors are never cached, so a re-run retries them."""
        self._check(key)
        if not completion.ok:
            return
        blob = json.dumps(completion_dict(completion), ensure_ascii=False)
        with self._lock:
            con = self._connect(create=True)
            assert con is not None
            con.execute("INSERT OR REPLACE INTO answers (key, completion, stored_at) VALUES (?, ?, ?)",
                        (key, blob, time.time()))

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        """The stored answers among `keys` (one query per 500 keys instead of one per key)."""
        for key in keys:
            self._check(key)
        found: dict[str, Completion] = {}
        try:
            with self._lock:
                con = self._connect(create=False)
                rows = [] if con is None else [
                    row for i in range(0, len(keys), 500)
                    for row in con.execute("SELECT key, completion FROM answers WHERE key IN (%s)"
                                           % ",".join("?" * len(keys[i:i + 500])), keys[i:i + 500])]
        except sqlite3.DatabaseError:
            return {}  # an unreadable file is all misses: the cells are simply run again
        for key, blob in rows:
            try:
                c = Completion.from_dict(json.loads(blob))
            except (json.JSONDecodeError, TypeError):
                continue  # an unreadable entry is a miss
            c.cached = True
            found[key] = c
        return found

    def put_many(self, items: list[tuple[str, Completion]]) -> None:
        """Store several answers in one transaction (a burst of answers costs one commit, not one each)."""
        rows = []
        for key, completion in items:
            self._check(key)
            if completion.ok:
                rows.append((key, json.dumps(completion_dict(completion), ensure_ascii=False), time.time()))
        if not rows:
            return
        with self._lock:
            con = self._connect(create=True)
            assert con is not None
            with con:  # BEGIN ... COMMIT (isolation_level=None leaves transactions to us)
                con.execute("BEGIN IMMEDIATE")  # take the write lock now, waiting busy_timeout for it
                con.executemany("INSERT OR REPLACE INTO answers (key, completion, stored_at) VALUES (?, ?, ?)", rows)

    def __contains__(self, key: str) -> bool:
        self._check(key)
        with self._lock:
            con = self._connect(create=False)
            return bool(con and con.execute("SELECT 1 FROM answers WHERE key=?", (key,)).fetchone())

    def __len__(self) -> int:
        with self._lock:
            con = self._connect(create=False)
            return con.execute("SELECT COUNT(*) FROM answers").fetchone()[0] if con else 0

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


class BackgroundWriter:
    """Writes a run's answers from one thread, in batches.

    Waking a thread per answer costs the event loop a context switch and a GIL
    hand-over each time (measured: milliseconds per answer on a loaded machine).
    So answers collect on the loop's side and go to the thread at most every
    HAND_OVER_S; the thread writes each batch in one go (`put_many`, one
    transaction, where the store has it).
    """

    HAND_OVER_S = 0.05

    def __init__(self, store: Cache) -> None:
        self.store = store
        self.errors: list[str] = []
        self._pending: list[tuple[str, Completion]] = []
        self._queue: "queue.SimpleQueue[list[tuple[str, Completion]] | None]" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._drain, name="promptkit-cache", daemon=True)
        self._thread.start()

    def put(self, key: str, completion: Completion) -> None:
        """Take an answer to write (call from the event loop's thread; the write follows within HAND_OVER_S)."""
        self._pending.append((key, completion))
        if len(self._pending) == 1:
            try:
                asyncio.get_running_loop().call_later(self.HAND_OVER_S, self._hand_over)
            except RuntimeError:  # no loop here: hand over at once
                self._hand_over()

    def _hand_over(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self._queue.put(batch)

    def _drain(self) -> None:
        done = False
        while not done:
            batches = [self._queue.get()]
            while True:
                try:
                    batches.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            done = None in batches
            batch = [item for b in batches if b is not None for item in b]
            # a full disk must not end the run: the answers stay in memory and the failure is reported
            put_many = getattr(self.store, "put_many", None)
            if put_many is not None:
                try:
                    put_many(batch)
                except Exception as exc:
                    self.errors.append(f"{len(batch)} answer(s) not cached: {type(exc).__name__}: {exc}")
                continue
            for key, completion in batch:
                try:
                    self.store.put(key, completion)
                except Exception as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")

    def close(self) -> list[str]:
        """Wait until every answer taken is written; return what could not be."""
        self._hand_over()
        self._queue.put(None)
        self._thread.join()
        return self.errors


def open_cache(where: str | os.PathLike[str] | None = None) -> "SqliteCache | DiskCache | Any":
    """The store at `where`: a .sqlite/.sqlite3/.db file is a SqliteCache, a folder a DiskCache, a redis:// URL a
    RedisCache (promptkit/redis_cache.py); None the default."""
    if where is None:
        return SqliteCache()
    if isinstance(where, str) and where.startswith(("redis://", "rediss://", "unix://")):
        from .redis_cache import RedisCache

        return RedisCache(url=where)
    p = Path(where)
    if p.suffix.lower() in (".sqlite", ".sqlite3", ".db"):
        return SqliteCache(p)
    return DiskCache(p)


class MemoryCache:
    """A dict-backed cache for tests and throwaway runs."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> Completion | None:
        d = self.data.get(key)
        if d is None:
            return None
        c = Completion.from_dict(d)
        c.cached = True
        return c

    def put(self, key: str, completion: Completion) -> None:
        if completion.ok:
            self.data[key] = completion_dict(completion)

    def __len__(self) -> int:
        return len(self.data)
