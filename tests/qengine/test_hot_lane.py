"""HotLane against the real Redis: replies never cross, stale connections and
unknown scripts fall back to the client, and pools of other kinds are left alone."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import ResponseError

from qengine.redis_conn import SPARE_CONNECTIONS, HotLane


@pytest.fixture
def key(redis_client, cluster_name) -> Iterator[str]:
    name = f"{cluster_name}:lane"
    yield name
    redis_client.delete(name)


@pytest.fixture
def lane(redis_url) -> Iterator[HotLane]:
    client = redis.Redis.from_url(redis_url)
    lane = HotLane(client)
    yield lane
    lane.close()
    client.close()


def _client_ids(client: redis.Redis) -> set[int]:
    return {int(entry["id"]) for entry in client.client_list()}


def _gone(client: redis.Redis, client_id: int) -> bool:
    for _ in range(100):  # the server drops a closed socket's client a moment later
        if client_id not in _client_ids(client):
            return True
        time.sleep(0.01)
    return False


def test_sends_commands_on_one_kept_connection_of_its_own(lane, key):
    assert lane("SET", key, "v") == b"OK"
    assert lane("GET", key) == b"v"
    first, second = lane("CLIENT", "ID"), lane("CLIENT", "ID")
    assert first == second
    assert first != lane.client.client_id()  # not the client's pooled connection


def test_a_connection_the_server_closed_falls_back_to_the_client(lane, redis_client, key):
    stale = lane("CLIENT", "ID")
    redis_client.client_kill_filter(_id=stale)
    assert lane("INCR", key) == 1
    assert redis_client.get(key) == b"1"
    assert lane("CLIENT", "ID") != stale  # the dead connection was dropped, not kept


def test_an_error_reply_is_raised_and_the_connection_stays_usable(lane, redis_client, key):
    redis_client.set(key, "text")
    before = lane("CLIENT", "ID")
    with pytest.raises(ResponseError):
        lane("INCR", key)
    assert lane("CLIENT", "ID") == before
    assert lane("GET", key) == b"text"


def test_a_script_the_server_forgot_is_loaded_again(lane, redis_client, key):
    script = lane.client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert lane.script(script, [key], [2]) == 2  # never loaded before: NOSCRIPT, then loaded
    redis_client.script_flush()
    assert lane.script(script, [key], [3]) == 5
    assert lane.script(script, [key], [4]) == 9


def test_replies_never_cross_between_threads(lane, key):
    threads, calls = 2 * SPARE_CONNECTIONS, 200
    replies: list[int] = []

    def work() -> None:
        mine = [lane("INCR", key) for _ in range(calls)]
        replies.extend(mine)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(replies) == list(range(1, threads * calls + 1))
    assert len(lane._spare) <= SPARE_CONNECTIONS


def test_close_disconnects_the_kept_connections(lane, redis_client):
    kept = lane("CLIENT", "ID")
    lane.close()
    assert _gone(redis_client, kept)


def test_a_forked_child_opens_its_own_connection(lane):
    parent = lane("CLIENT", "ID")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write_end, str(lane("CLIENT", "ID")).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child = int(os.read(read_end, 64))
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child != parent
    assert lane("CLIENT", "ID") == parent  # the parent's connection was left untouched


def test_other_pool_kinds_go_through_the_client(redis_url, key):
    pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=1)
    client = redis.Redis(connection_pool=pool)
    try:
        lane = HotLane(client)
        assert lane("SET", key, "v") is True  # the client's reply callback ran
        assert lane("CLIENT", "ID") == client.client_id()  # the pool's only connection
    finally:
        client.delete(key)
        client.close()
        pool.disconnect()


def test_commands_are_packed_by_hiredis_as_redis_py_would(lane, key):
    assert lane._pack is not None  # hiredis comes with qengine (redis[hiredis])
    args = ("XADD", key, "*", "p", b"\x00\xff package", 7, "naïve")
    connection = lane.client.connection_pool.connection_class(
        **lane.client.connection_pool.connection_kwargs
    )
    assert lane._pack(args) == b"".join(connection.pack_command(*args))
    lane(*args)
    [(_, fields)] = lane.client.xrange(key)
    assert fields == {b"p": b"\x00\xff package", b"7": "naïve".encode()}


def test_without_hiredis_commands_go_through_redis_py_packer(lane, key):
    lane._pack = None  # as on a machine without hiredis
    assert lane("SET", key, "naïve") == b"OK"
    assert lane("GET", key) == "naïve".encode()


def test_a_client_with_another_encoding_keeps_redis_py_packer(redis_url, key):
    client = redis.Redis.from_url(redis_url, encoding="latin-1")
    lane = HotLane(client)
    try:
        assert lane._pack is None
        assert lane("SET", key, "naïve") == b"OK"
        assert client.get(key) == "naïve".encode("latin-1")
    finally:
        lane.close()
        client.delete(key)
        client.close()
