"""Vendor batch APIs (OpenAI Batch, Anthropic Message Batches): half price, results within 24 h, resumable.

`pk.run(exp, batch=True)` answers what it can from the cache, then hands the
`openai:` and `anthropic:` cells to the vendors' batch APIs through the official
SDKs, with the cell key as `custom_id`. Everything needed to find a batch again is
written to a ledger next to the cache *before* the vendor is asked: one JSON file
per batch with its cell keys, then its vendor id once the vendor accepted it. A
re-run (after Ctrl-C, a crash, a reboot, another day) polls the batches the ledger
names instead of submitting again; a batch that expired or was cancelled is
resubmitted for its unfinished cells only. Results are routed by `custom_id`
(they come in any order): answers go to the cache, errors become error cells.

The OpenAI JSONL writer (`openai_batch_lines`, `write_openai_batch`) also makes
input for `vllm run-batch`, which reads the same format.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .batch_format import (  # noqa: F401 - the writer and reader stay reachable as batch.X
    OPENAI_ENDPOINT, anthropic_params, anthropic_result, error_completion, finish_answer, openai_batch_lines,
    openai_body, openai_result, read_openai_batch, refusal, write_openai_batch,
)
from .config import cache_dir, env
from .errors import ExperimentError, PromptkitError, redact
from .files import atomic_write
from .types import Cell, Completion

if TYPE_CHECKING:  # pragma: no cover
    from .providers import Provider

Run = Any  # the runner's state for one run (runner._Run): cells, groups, store, budget, _finish

VENDORS: tuple[str, ...] = ("openai", "anthropic")
# (requests, bytes) per batch, as the vendors document them
LIMITS: dict[str, tuple[int, int]] = {"openai": (50_000, 200 * 1024 * 1024), "anthropic": (100_000, 256 * 1024 * 1024)}
DEFAULT_POLL_S = 30.0
MAX_RESUBMITS = 3
MAX_POLL_FAILURES = 20  # polls in a row that fail before the run stops waiting for that batch  # rounds of resubmitting expired/cancelled cells within one run
ENDED_OK = ("completed",)
LIVE = ("preparing", "submitted")


def poll_seconds() -> float:
    """Seconds between polls: PROMPTKIT_BATCH_POLL_S or 30 (batches take minutes to hours)."""
    raw = env("PROMPTKIT_BATCH_POLL_S")
    try:
        value = float(raw) if raw is not None else DEFAULT_POLL_S
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ExperimentError(f"PROMPTKIT_BATCH_POLL_S must be a positive number of seconds, got {raw!r}")
    return value


def batchable(model: str) -> bool:
    """Whether cells of `model` can go to a vendor batch API (OpenAI or Anthropic proper, no `@url` server)."""
    from .providers import parse_spec

    try:
        spec = parse_spec(model)
    except PromptkitError:
        return False
    return spec.provider in VENDORS and spec.base_url is None


def price_factor(vendor: str) -> float:
    """Batch price as a fraction of the synchronous one (`batch_price_factor` in models.yaml, documented 0.5)."""
    from .catalog import catalog

    return float((catalog().providers.get(vendor) or {}).get("batch_price_factor", 0.5))


# ---- the ledger: batch ids and their cell keys, on disk before anything else -----------------

class Ledger:
    """One JSON file per batch in a folder next to the cache, written atomically (temporary name + rename)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def __repr__(self) -> str:
        return f"Ledger({str(self.folder)!r})"

    def write(self, entry: dict[str, Any]) -> None:
        atomic_write(self.folder / f"{entry['id']}.json", lambda f: json.dump(entry, f))

    def entries(self) -> list[dict[str, Any]]:
        """Every batch recorded, oldest first (unreadable files are skipped, not fatal)."""
        out = []
        if not self.folder.is_dir():
            return out
        for p in self.folder.glob("*.json"):
            try:
                out.append(json.loads(p.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return sorted(out, key=lambda e: (e.get("created_at", 0), e.get("id", "")))


def ledger_for(store: Any) -> Ledger:
    """The ledger beside a cache: `<folder>/batches/` for a SQLite file, `<folder>.batches/` for a DiskCache."""
    path = getattr(store, "path", None)
    if path is not None:
        return Ledger(Path(path).parent / "batches")
    root = getattr(store, "root", None)
    if root is not None:
        root = Path(root)
        return Ledger(root.with_name(root.name + ".batches"))
    return Ledger(cache_dir() / "batches")


# ---- splitting into batches -------------------------------------------------------------------

def _chunks(sizes: list[tuple[str, int]], max_n: int, max_bytes: int) -> list[list[str]]:
    """Split keys (with their line sizes) at the vendor's request and byte limits, keeping order."""
    out: list[list[str]] = []
    cur: list[str] = []
    cur_bytes = 0
    for key, n in sizes:
        if cur and (len(cur) >= max_n or cur_bytes + n > max_bytes):
            out.append(cur)
            cur, cur_bytes = [], 0
        cur.append(key)
        cur_bytes += n
    if cur:
        out.append(cur)
    return out


# ---- talking to the vendors -------------------------------------------------------------------

class _Status:
    def __init__(self, status: str, ended: bool, counts: dict[str, int]) -> None:
        self.status, self.ended, self.counts = status, ended, counts


async def _submit(provider: "Provider", entry: dict[str, Any], cells: list[Cell]) -> str:
    client = await provider._clients.get()  # type: ignore[attr-defined]
    if entry["vendor"] == "openai":
        blob = b"".join(openai_batch_lines(provider, cells))
        up = await client.files.create(file=("promptkit-batch.jsonl", io.BytesIO(blob)), purpose="batch")
        entry["file_id"] = up.id
        b = await client.batches.create(input_file_id=up.id, endpoint=OPENAI_ENDPOINT, completion_window="24h",
                                        metadata={"promptkit_batch": entry["id"]})
        return b.id
    reqs = [{"custom_id": c.key, "params": anthropic_params(provider, c)} for c in cells]
    b = await client.messages.batches.create(requests=reqs)
    return b.id


async def _find_lost(provider: "Provider", entry: dict[str, Any]) -> str | None:
    """An OpenAI batch created but never recorded (killed in between), found by its metadata; None if none."""
    if entry["vendor"] != "openai":
        return None
    client = await provider._clients.get()  # type: ignore[attr-defined]
    async for b in client.batches.list(limit=100):
        if (b.metadata or {}).get("promptkit_batch") == entry["id"]:
            return b.id
        if b.created_at < entry.get("created_at", 0) - 60:
            break
    return None


async def poll(provider: "Provider", entry: dict[str, Any]) -> _Status:
    client = await provider._clients.get()  # type: ignore[attr-defined]
    if entry["vendor"] == "openai":
        b = await client.batches.retrieve(entry["batch_id"])
        rc = b.request_counts
        total = rc.total if rc else len(entry["keys"])
        counts = {"total": total, "succeeded": rc.completed if rc else 0, "errored": rc.failed if rc else 0}
        counts["in_progress"] = max(0, total - counts["succeeded"] - counts["errored"])
        entry["output_file_id"], entry["error_file_id"] = b.output_file_id, b.error_file_id
        return _Status(b.status, b.status in ("completed", "failed", "expired", "cancelled"), counts)
    b = await client.messages.batches.retrieve(entry["batch_id"])
    rc = b.request_counts
    counts = {"total": len(entry["keys"]), "in_progress": rc.processing, "succeeded": rc.succeeded,
              "errored": rc.errored, "expired": rc.expired, "canceled": rc.canceled}
    return _Status(b.processing_status, b.processing_status == "ended", counts)


async def results(provider: "Provider", entry: dict[str, Any], cells: dict[str, Cell]) -> dict[str, Completion | None]:
    """Every result of an ended batch by cell key (None: not run, to resubmit); missing keys are absent."""
    client = await provider._clients.get()  # type: ignore[attr-defined]
    out: dict[str, Completion | None] = {}
    if entry["vendor"] == "openai":
        for fid in (entry.get("output_file_id"), entry.get("error_file_id")):
            if not fid:
                continue
            content = await client.files.content(fid)
            for raw in content.content.splitlines():
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                key = line.get("custom_id")
                if key in cells:
                    out[key] = openai_result(provider, cells[key], line)
        return out
    async for item in await client.messages.batches.results(entry["batch_id"]):
        if item.custom_id in cells:
            out[item.custom_id] = anthropic_result(provider, cells[item.custom_id], item)
    return out


# ---- the run's batch part ---------------------------------------------------------------------

def take_batchable(run: Run, todo: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Split the keys to call into (synchronous keys, {model: keys for a batch}); unready models stay synchronous."""
    from .providers import get_provider

    rest: list[str] = []
    batched: dict[str, list[str]] = {}
    ready: dict[str, bool] = {}
    for key in todo:
        model = run.cells[run.groups[key][0]].model
        if model not in ready:
            ok = batchable(model)
            if ok:
                try:
                    get_provider(model)
                except PromptkitError:  # e.g. a missing key: the synchronous path makes it a config error cell
                    ok = False
            ready[model] = ok
        if ready[model]:
            batched.setdefault(model, []).append(key)
        else:
            rest.append(key)
    return rest, batched


class BatchPart:
    """The cells of one run that go through vendor batches: adopt, submit, poll, collect, resubmit."""

    def __init__(self, run: Run, batched: dict[str, list[str]]) -> None:
        self.run = run
        self.batched = batched
        self.ledger = ledger_for(run.store)
        self.poll_s = poll_seconds()
        self.live: list[dict[str, Any]] = []
        self.waiting: set[str] = {k for keys in batched.values() for k in keys}
        self.submitted = 0
        self.adopted = 0
        self.status: dict[str, _Status] = {}
        self.bar: Any = None
        self.collected_n = 0
        self.held_usd = 0.0
        self.held_tokens = 0

    def _provider(self, model: str) -> "Provider":
        from .providers import get_provider

        return get_provider(model)

    def _cells(self, keys: Iterable[str]) -> list[Cell]:
        return [self.run.cells[self.run.groups[k][0]] for k in keys]

    async def execute(self) -> None:
        try:
            await self._adopt()
            for model, keys in self.batched.items():
                todo = [k for k in keys if k in self.waiting and not self._carried(k)]
                if todo:
                    await self._submit(model, todo)
            self._say_waiting()
            await self._wait()
        except asyncio.CancelledError:
            live = [e for e in self.live if e.get("batch_id")]
            if live:
                print(f"promptkit: stopped waiting; {len(live)} batch(es) keep running at the vendor (recorded in "
                      f"{self.ledger.folder}); run the same experiment again to collect them without paying twice",
                      file=sys.stderr)
            raise
        finally:
            if self.bar is not None:
                self.bar.close()

    def _carried(self, key: str) -> bool:
        return any(key in e["_keyset"] for e in self.live)

    async def _adopt(self) -> None:
        """Pick up batches an earlier run submitted for any of these cells, instead of submitting again."""
        for entry in self.ledger.entries():
            if entry.get("state") not in LIVE:
                continue
            keys = set(entry.get("keys") or ())
            mine = keys & self.waiting
            if not mine:
                continue
            model = entry["model_spec"]
            provider = self._provider(model)
            if entry["state"] == "preparing" or not entry.get("batch_id"):
                found = None
                try:
                    found = await _find_lost(provider, entry)
                except Exception as exc:  # a failed lookup must not stop the run
                    print(f"promptkit: could not look for batch {entry['id']} ({redact(str(exc))})", file=sys.stderr)
                if found is None:
                    entry["state"] = "abandoned"
                    self.ledger.write(entry)
                    if entry["vendor"] == "anthropic":
                        print(f"promptkit: batch {entry['id']} was being submitted when the last run stopped; if "
                              f"Anthropic accepted it, it is not recorded and its cells are submitted again",
                              file=sys.stderr)
                    continue
                entry["batch_id"], entry["state"] = found, "submitted"
                self.ledger.write(entry)
            entry["_keyset"] = keys
            self.live.append(entry)
            self.adopted += 1

    async def _submit(self, model: str, keys: list[str], resubmit_of: str | None = None) -> None:
        provider = self._provider(model)
        vendor = provider.spec.provider
        max_n, max_bytes = LIMITS[vendor]
        cells = self._cells(keys)
        if vendor == "openai":
            sizes = [(c.key, len(next(openai_batch_lines(provider, [c])))) for c in cells]
        else:
            sizes = [(c.key, len(json.dumps({"custom_id": c.key, "params": anthropic_params(provider, c)})) + 2)
                     for c in cells]
        refused = {c.key: why for c in cells if (why := refusal(provider, c)) is not None}
        for k, comp in refused.items():  # what the synchronous path refuses without a call is not sent either
            await self._answer(k, comp)
        keys = [k for k in keys if k not in refused]
        fit = self._within_budget(provider, keys)
        for k in keys:
            if k not in fit:
                await self._answer(k, error_completion("budget", "not run: " + self.run._budget_message(final=False)))
        for chunk in _chunks([s for s in sizes if s[0] in fit], max_n, max_bytes):
            entry: dict[str, Any] = {
                "id": f"pk-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}", "vendor": vendor,
                "model_spec": model, "model": provider.model, "state": "preparing", "batch_id": None,
                "created_at": time.time(), "experiment": self.run.experiment.name, "keys": chunk,
                "resubmit_of": resubmit_of,
            }
            self.ledger.write(entry)  # before the vendor is asked: a crash now loses nothing
            try:
                entry["batch_id"] = await _submit(provider, entry, self._cells(chunk))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                kind, _ = provider.classify(exc)
                msg = redact(f"batch submission failed: {type(exc).__name__}: {exc}{provider.hint(kind)}")
                entry["state"], entry["error"] = "failed", msg
                self.ledger.write(entry)
                print(f"promptkit: {msg}", file=sys.stderr)
                for k in chunk:
                    await self._answer(k, error_completion(kind, msg))
                continue
            entry["state"] = "submitted"
            self.ledger.write(entry)
            entry["_keyset"] = set(chunk)
            self.live.append(entry)
            self.submitted += len(chunk)
            self.run.counts["calls"] += len(chunk)

    def _within_budget(self, provider: "Provider", keys: list[str]) -> set[str]:
        """Keys whose estimated batch cost fits the cap (a batch cannot be stopped part-way, so it is checked now)."""
        budget = self.run.budget
        if not budget.limited:
            return set(keys)
        from .catalog import catalog
        from .limits import estimate_tokens

        factor = price_factor(provider.spec.provider)
        fit: set[str] = set()
        for k in keys:
            n_in, n_out = estimate_tokens(self._cells([k])[0].request)
            usd = (catalog().cost(provider.cost_provider, provider.model, n_in, n_out) or 0.0) * factor
            if not budget.exhausted and budget._fits(self.held_usd + usd, self.held_tokens + n_in + n_out):
                self.held_usd += usd
                self.held_tokens += n_in + n_out
                fit.add(k)
            else:
                budget.exhausted = True
        return fit

    def _say_waiting(self) -> None:
        ids = [e["batch_id"] for e in self.live if e.get("batch_id")]
        if not ids:
            return
        what = (f"submitted {self.submitted} cell(s)" if self.submitted else "") + (
            (" and " if self.submitted else "") + f"picked up {self.adopted} batch(es) from an earlier run"
            if self.adopted else "")
        print(f"promptkit: {what}: {len(ids)} batch(es) at the vendor ({', '.join(ids[:4])}"
              f"{', ...' if len(ids) > 4 else ''}), recorded in {self.ledger.folder}. Results usually come within "
              f"minutes and at most 24 h, at half the price. You may wait here, or stop now (Ctrl-C, close the "
              f"notebook, shut the machine down) and run the same experiment again later: it collects these "
              f"batches instead of submitting again. `promptkit batches` shows their status.", file=sys.stderr)

    def _progress(self) -> None:
        if not self.run.progress:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=sum(len(e["keys"]) for e in self.live), desc="batches", unit="req",
                            dynamic_ncols=True, leave=True)
        total = sum(len(e["keys"]) for e in self.live) + self.collected_n
        done = self.collected_n + sum(
            (self.status[e["id"]].counts.get("succeeded", 0) + self.status[e["id"]].counts.get("errored", 0))
            for e in self.live if e["id"] in self.status)
        agg: dict[str, int] = {}
        for st in self.status.values():  # every batch of this run, ended ones included
            for k, v in st.counts.items():
                agg[k] = agg.get(k, 0) + v
        self.bar.total = total
        self.bar.n = min(done, total)
        self.bar.set_postfix_str(
            f"batches={len(self.live)} in_progress={agg.get('in_progress', 0)} succeeded={agg.get('succeeded', 0)} "
            f"errored={agg.get('errored', 0)}", refresh=True)

    async def _wait(self) -> None:
        rounds: dict[str, int] = {}
        while self.live:
            for entry in list(self.live):
                provider = self._provider(entry["model_spec"])
                try:
                    st = await poll(provider, entry)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await self._poll_failed(provider, entry, exc)
                    continue
                entry.pop("_failures", None)
                self.status[entry["id"]] = st
                entry["status"], entry["counts"] = st.status, st.counts
                if st.ended:
                    await self._collect(provider, entry, st, rounds)
            self._progress()
            if self.live:
                await asyncio.sleep(self.poll_s)

    async def _poll_failed(self, provider: "Provider", entry: dict[str, Any], exc: Exception) -> None:
        """A batch the vendor no longer knows is submitted again; a refused key or a long outage ends the wait
        for its cells with error cells (the ledger keeps the batch, so a later run can still collect it)."""
        kind, _ = provider.classify(exc)
        why = redact(f"{type(exc).__name__}: {exc}{provider.hint(kind)}")
        entry["_failures"] = entry.get("_failures", 0) + 1
        mine = [k for k in entry["keys"] if k in self.waiting]
        if getattr(exc, "status_code", None) == 404:
            entry["state"], entry["error"] = "lost", why
            self.ledger.write({k: v for k, v in entry.items() if not k.startswith("_")})
            self.live.remove(entry)
            print(f"promptkit: the vendor does not know batch {entry['batch_id']} ({why}); submitting its "
                  f"{len(mine)} unanswered cell(s) again", file=sys.stderr)
            if mine:
                await self._submit(entry["model_spec"], mine, resubmit_of=entry.get("resubmit_of") or entry["id"])
            return
        if kind == "auth" or entry["_failures"] >= MAX_POLL_FAILURES:
            self.live.remove(entry)
            for k in mine:
                await self._answer(k, error_completion(kind, f"could not poll batch {entry['batch_id']}: {why}; it stays "
                                                   f"recorded, so running again collects it"))
            return
        print(f"promptkit: could not poll batch {entry['batch_id']} ({why}); trying again in {self.poll_s:g} s",
              file=sys.stderr)

    async def _collect(self, provider: "Provider", entry: dict[str, Any], st: _Status, rounds: dict[str, int]) -> None:
        """Route an ended batch's results by custom_id; resubmit cells that never ran."""
        cells = {c.key: c for c in self._cells(k for k in entry["keys"] if k in self.run.groups)}
        try:
            got = await results(provider, entry, cells)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            print(f"promptkit: could not read the results of batch {entry['batch_id']} ({redact(str(exc))}); "
                  f"trying again in {self.poll_s:g} s", file=sys.stderr)
            return
        factor = price_factor(entry["vendor"])
        unrun: list[str] = []
        for key in entry["keys"]:
            if key not in self.waiting:
                continue
            comp = got.get(key, None)
            if comp is None:
                unrun.append(key)
                continue
            await self._answer(key, finish_answer(provider, cells[key], comp, factor))
        # results of cells this run does not have stay at the vendor for the run that has them
        elsewhere = [k for k in entry["keys"] if k not in self.run.groups]
        entry["state"] = "submitted" if elsewhere else "collected"
        entry["collected_at"] = time.time()
        self.live.remove(entry)
        self.collected_n += len(entry["keys"])
        self.ledger.write({k: v for k, v in entry.items() if not k.startswith("_")})
        if not unrun:
            return
        origin = entry.get("resubmit_of") or entry["id"]
        rounds[origin] = rounds.get(origin, 0) + 1
        if rounds[origin] > MAX_RESUBMITS or st.status == "failed":
            why = f"batch {entry['batch_id']} ended '{st.status}' before running this request"
            for k in unrun:
                await self._answer(k, error_completion("expired" if st.status == "expired" else "server",
                                             f"{why}; run again to submit it again"))
            return
        print(f"promptkit: batch {entry['batch_id']} ended '{st.status}' with {len(unrun)} request(s) not run; "
              f"submitting those again (only those)", file=sys.stderr)
        await self._submit(entry["model_spec"], unrun, resubmit_of=origin)

    async def _answer(self, key: str, comp: Completion) -> None:
        if key not in self.waiting:
            return
        self.waiting.discard(key)
        self.run.budget.add(comp)
        await self.run._finish(key, comp, hit=False)


async def run_batches(run: Run, batched: dict[str, list[str]]) -> None:
    """The runner's hook: answer `batched` ({model: keys}) through vendor batches."""
    part = BatchPart(run, batched)
    run.batch_part = part
    await part.execute()


# ---- `promptkit batches` ----------------------------------------------------------------------

def list_batches(ledger: Ledger | None = None, refresh: bool = True, cache: Any = None) -> list[dict[str, Any]]:
    """Every recorded batch, with its vendor status and counts polled now for those not yet collected."""
    from .aio import run_sync
    from .cache import open_cache

    ledger = ledger or ledger_for(open_cache(cache))
    entries = ledger.entries()

    async def refresh_all() -> None:
        from .providers import get_provider

        for e in entries:
            if e.get("state") != "submitted" or not e.get("batch_id"):
                continue
            try:
                st = await poll(get_provider(e["model_spec"]), e)
                e["status"], e["counts"] = st.status, st.counts
            except Exception as exc:
                e["status"] = f"unknown ({redact(type(exc).__name__ + ': ' + str(exc))[:120]})"

    if refresh:
        run_sync(refresh_all())
    return entries
