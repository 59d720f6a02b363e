"""Packages: signed, optionally compressed, never unpickled unless they verify."""

from __future__ import annotations

import pickle

import pytest

import qengine
from qengine.config import Config
from qengine.errors import ConfigError, PackageTooLarge, SignatureError
from qengine.runtime import get_signer, secret_key
from qengine.signing import MAGIC, Signer

UNPICKLED: list[str] = []


def _record(text: str) -> None:
    UNPICKLED.append(text)


class SideEffect:
    """Unpickling this records itself: proof that a package was (wrongly) unpickled."""

    def __reduce__(self):
        return (_record, ("unpickled!",))


@pytest.fixture(autouse=True)
def _reset_side_effects():
    UNPICKLED.clear()


def signer(**kwargs) -> Signer:
    return Signer("secret", "cluster", **kwargs)


def test_round_trip_plain_and_compressed():
    for compress in (False, True):
        s = signer(compress=compress)
        package = s.dumps({"x": [1, 2, 3] * 100})
        assert isinstance(package, bytes)
        assert s.loads(package) == {"x": [1, 2, 3] * 100}


def test_compression_shrinks_repetitive_packages():
    data = "abc" * 10_000
    assert len(signer(compress=True).dumps(data)) < len(signer().dumps(data)) / 10


def test_side_effect_payload_proves_unpickling_works_when_signed():
    s = signer()
    s.loads(s.dumps(SideEffect()))
    assert UNPICKLED == ["unpickled!"]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p: p[:-1] + bytes([p[-1] ^ 1]), id="flipped-body-bit"),
        pytest.param(lambda p: p[:10] + bytes([p[10] ^ 1]) + p[11:], id="flipped-mac-bit"),
        pytest.param(lambda p: p[: len(p) // 2], id="truncated"),
        pytest.param(lambda p: p[:3], id="header-only"),
        pytest.param(lambda p: b"", id="empty"),
        pytest.param(lambda p: b"garbage" * 10, id="garbled"),
        pytest.param(lambda p: pickle.dumps(SideEffect()), id="raw-pickle"),
        pytest.param(lambda p: p[:2] + b"\x01" + p[3:], id="flag-changed"),
    ],
)
def test_tampered_packages_raise_and_are_never_unpickled(tamper):
    s = signer()
    package = tamper(s.dumps(SideEffect()))
    with pytest.raises(SignatureError):
        s.loads(package)
    assert UNPICKLED == []


def test_package_for_another_cluster_name_or_key_is_refused():
    package = Signer("secret", "cluster-a").dumps(SideEffect())
    with pytest.raises(SignatureError, match="cluster-b"):
        Signer("secret", "cluster-b").loads(package)
    with pytest.raises(SignatureError):
        Signer("other-secret", "cluster-a").loads(package)
    assert UNPICKLED == []


def test_non_bytes_package_is_refused():
    with pytest.raises(SignatureError, match="bytes"):
        signer().loads("not bytes")  # type: ignore[arg-type]


def test_oversized_package_fails_with_a_clear_error():
    with pytest.raises(PackageTooLarge, match="max_package_size"):
        signer(max_size=2048).dumps(b"x" * 4096)


def test_oversized_task_fails_at_enqueue_time():
    qengine.configure(max_package_size=2048, store=qengine.get_config().store)
    with pytest.raises(PackageTooLarge):
        qengine.async_task("tests.tasks.echo", "x" * 10_000)


def test_unpicklable_arguments_fail_at_async_task_time():
    from tests.tasks import Unpicklable

    with pytest.raises(TypeError, match="cannot pickle"):
        qengine.async_task("tests.tasks.echo", Unpicklable())
    with pytest.raises(TypeError, match="cannot pickle"):
        qengine.async_task("tests.tasks.echo", Unpicklable(), sync=True)


def test_networked_broker_needs_an_explicit_secret():
    with pytest.raises(ConfigError, match="secret_key"):
        secret_key(Config(broker="redis://127.0.0.1:6379/0"))
    with pytest.raises(ConfigError, match="secret_key"):
        secret_key(Config(broker="postgresql://localhost/test"))
    assert secret_key(Config(broker="redis://localhost", secret_key="k")) == "k"


def test_embedded_default_generates_one_secret_and_keeps_it(tmp_path, caplog):
    url = f"sqlite:///{tmp_path}/embedded.sqlite3"
    first = secret_key(Config(store=url))
    assert "generated" in caplog.text
    qengine.configure(store=f"sqlite:///{tmp_path}/other.sqlite3")  # drops engines
    second = secret_key(Config(store=url))
    assert first == second
    assert len(first) > 40
    # A package signed under the embedded key verifies for another process's signer.
    package = get_signer(Config(store=url)).dumps("hello")
    assert Signer(second, "default").loads(package) == "hello"


def _full_message():
    from datetime import UTC, datetime

    from qengine.task import TaskMessage

    return TaskMessage(
        id="a" * 32, name="four-word-task-name", func="math.floor", args=(1.5,),
        kwargs={"k": [1, 2]}, hook="tests.tasks.hook", group="g", timeout=2.5, save=False,
        cached=30, ack_failure=True, sync=False, chain=[("math.floor", (2.5,), {})],
        iter_count=3, iter_cached=True, iter_index=1, attempt_count=2,
        enqueued=datetime(2026, 12, 5, 6, 30, 1, 123456, tzinfo=UTC), cluster="c",
    )  # fmt: skip


def test_a_message_round_trips_every_field():
    from qengine.task import TaskMessage

    message = _full_message()
    assert signer().loads(signer().dumps(message), TaskMessage) == message
    bare = TaskMessage(id="b" * 32, name="n", func="math.floor")
    assert signer().loads(signer().dumps(bare), TaskMessage) == bare


def test_a_message_pickles_only_what_differs_from_the_defaults():
    from qengine.task import TaskMessage

    bare = pickle.dumps(TaskMessage(id="b" * 32, name="n", func="math.floor"))
    for default_field in (b"hook", b"group", b"timeout", b"chain", b"iter_count", b"kwargs"):
        assert default_field not in bare


def test_packages_queued_in_the_former_message_format_still_load():
    # Until 2026-12 a message pickled as its dataclass state (copyreg), with an aware
    # datetime: packages a previous version queued must run after an upgrade.
    import copyreg
    import io

    from qengine.task import TaskMessage

    message = _full_message()

    class FormerPickler(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, TaskMessage):
                return copyreg.__newobj__, (TaskMessage,), obj.__getstate__()
            return NotImplemented

    buffer = io.BytesIO()
    FormerPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(message)
    # Signed as Signer.dumps signs: the format header (no compression), the MAC, the body.
    s = signer()
    head = MAGIC + bytes((0,))
    package = head + s._mac(s._macs[0], head, buffer.getvalue()) + buffer.getvalue()
    assert s.loads(package, TaskMessage) == message


def test_a_signer_pickles_for_the_workers_and_still_signs_and_verifies():
    # The cluster hands its signer to every worker process through pickle.
    original = signer(fallbacks=["old"])
    copy = pickle.loads(pickle.dumps(original))
    assert copy.loads(original.dumps({"a": 1})) == {"a": 1}
    assert original.loads(copy.dumps({"b": 2})) == {"b": 2}
    assert Signer("old", "cluster").dumps(3) != copy.dumps(3)
    assert copy.loads(Signer("old", "cluster").dumps(3)) == 3  # the fallback verifies
