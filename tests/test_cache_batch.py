"""Batched cache access on the runner's hot path: get_many, put_many and the background writer."""
from __future__ import annotations

import sqlite3

import pytest

from promptkit.cache import BackgroundWriter, MemoryCache, SqliteCache
from promptkit.types import Completion


def key(i: int) -> str:
    return f"{i:064x}"


def answer(i: int) -> Completion:
    return Completion(text=f"answer {i}", provider="openai", model="m", input_tokens=i, output_tokens=2)


def test_put_many_stores_answers_not_errors_and_get_many_finds_exactly_them(tmp_path):
    cache = SqliteCache(tmp_path / "c.sqlite3")
    items = [(key(i), answer(i)) for i in range(1200)] + [(key(5000), Completion(error_kind="server", error="boom"))]
    cache.put_many(items)
    assert len(cache) == 1200
    asked = [key(i) for i in range(0, 2400, 2)] + [key(5000)]  # more than one 500-key query, half of them absent
    found = cache.get_many(asked)
    assert sorted(found) == [key(i) for i in range(0, 1200, 2)]
    assert all(found[key(i)].text == f"answer {i}" and found[key(i)].cached for i in range(0, 1200, 2))
    assert found[key(8)] == cache.get(key(8))


def test_get_many_treats_an_unreadable_entry_as_a_miss(tmp_path):
    path = tmp_path / "c.sqlite3"
    cache = SqliteCache(path)
    cache.put_many([(key(1), answer(1)), (key(2), answer(2))])
    con = sqlite3.connect(path)
    con.execute("UPDATE answers SET completion='{not json' WHERE key=?", (key(2),))
    con.commit()
    con.close()
    assert list(cache.get_many([key(1), key(2)])) == [key(1)]
    assert SqliteCache(tmp_path / "absent.sqlite3").get_many([key(1)]) == {}


def test_background_writer_writes_everything_handed_over_before_close(tmp_path):
    cache = SqliteCache(tmp_path / "c.sqlite3")
    writer = BackgroundWriter(cache)
    for i in range(300):
        writer.put(key(i), answer(i))
    assert writer.close() == []
    assert len(cache) == 300 and cache.get(key(299)).text == "answer 299"


def test_background_writer_uses_put_when_a_store_has_no_put_many_and_reports_failures():
    class Failing(MemoryCache):
        def put(self, k, completion):
            if k == key(3):
                raise OSError("disk full")
            super().put(k, completion)

    store = Failing()
    writer = BackgroundWriter(store)
    for i in range(5):
        writer.put(key(i), answer(i))
    errors = writer.close()
    assert errors == ["OSError: disk full"]
    assert sorted(store.data) == [key(0), key(1), key(2), key(4)]  # the one failure costs only its own answer


@pytest.mark.parametrize("bad", ["", "XYZ", "g" * 64])
def test_batched_calls_check_keys(tmp_path, bad):
    cache = SqliteCache(tmp_path / "c.sqlite3")
    with pytest.raises(ValueError):
        cache.get_many([bad])
    with pytest.raises(ValueError):
        cache.put_many([(bad, answer(1))])


def test_background_writer_in_a_loop_writes_while_the_run_goes_on(tmp_path):
    """Answers reach the file during the run (a killed run keeps them), in batches, not one wake-up each."""
    import asyncio

    path = tmp_path / "c.sqlite3"
    writer = BackgroundWriter(SqliteCache(path))

    async def run() -> int:
        for i in range(50):
            writer.put(key(i), answer(i))
            await asyncio.sleep(0)
        deadline = asyncio.get_running_loop().time() + 5
        while len(SqliteCache(path)) < 50 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        return len(SqliteCache(path))

    assert asyncio.run(run()) == 50  # on disk before close()
    assert writer.close() == []
