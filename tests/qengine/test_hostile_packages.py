"""Hostile packages are refused before anything is unpickled; old keys verify while rotating.

The canary is a pickle whose unpickling creates a file: a package that must
be refused carries one, and the file never appearing proves it was never
unpickled. The makers here serve the cluster tests too.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
import zstandard

import qengine
from qengine.config import Config, load_config
from qengine.errors import ConfigError, PackageTooLarge, SignatureError
from qengine.runtime import get_signer
from qengine.signing import UNPACKED_FACTOR, Signer
from qengine.status import Stat, Summary
from qengine.task import TaskMessage

SECRET = "hostile-tests"
NAME = "hostile"
MAX_SIZE = 64 * 1024


class Canary:
    """Unpickling this creates ``path``: the proof that a package was (wrongly) unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def zstd_bomb(prefix: bytes, size: int, *, declared: bool) -> bytes:
    """A zstd frame of ``prefix`` then zeros, ``size`` bytes in all, a few kilobytes compressed.

    Fed in chunks, so the test never holds the expanded bytes itself.
    """
    compressor = zstandard.ZstdCompressor(level=3)
    stream = compressor.compressobj(size=size if declared else -1)
    frame = [stream.compress(prefix)]
    left = size - len(prefix)
    chunk = bytes(1 << 20)
    while left > 0:
        frame.append(stream.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    frame.append(stream.flush())
    return b"".join(frame)


def signed_by_hand(signer: Signer, body: bytes, *, compressed: bool) -> bytes:
    """A package with a valid signature around any body (the package format, built by hand)."""
    head = b"q1" + bytes((1 if compressed else 0,))
    return head + signer._mac(signer._macs[0], head, body) + body


def hostile_packages(
    path: Path, *, secret: str = SECRET, name: str = NAME, max_size: int = MAX_SIZE
) -> dict[str, tuple[bytes, str]]:
    """Packages a cluster of ``secret``, ``name`` and ``max_size`` must refuse unopened.

    Each maps to a piece of the reason it is refused with; each holds the canary
    writing ``path``, so unpickling any of them would create that file.
    """
    cargo = [Canary(path), "the rest of a task"]
    right = Signer(secret, name, max_size=max_size)
    good = right.dumps(cargo)
    middle = len(good) // 2 + 20
    roomy = Signer(secret, name, max_size=max_size * 64)  # the right key, a larger limit
    bomb_size = 64 * 1024 * 1024
    canary = pickle.dumps(Canary(path))  # pickle.loads ignores what follows: zeros
    does_not_verify = f"does not verify for cluster {name!r}"
    return {
        "flipped body byte": (
            good[:middle] + bytes([good[middle] ^ 0x01]) + good[middle + 1 :],
            does_not_verify,
        ),
        "flipped signature byte": (
            good[:10] + bytes([good[10] ^ 0x80]) + good[11:],
            does_not_verify,
        ),
        "wrong key": (Signer(f"not {secret}", name).dumps(cargo), does_not_verify),
        "another cluster name": (Signer(secret, f"{name}-other").dumps(cargo), does_not_verify),
        "truncated": (good[:-9], does_not_verify),
        "truncated into the header": (good[:12], "too short or wrong header"),
        "raw pickle": (pickle.dumps(cargo), "not a qengine package"),
        "oversized": (roomy.dumps([*cargo, b"x" * max_size]), "over max_package_size"),
        "zstd bomb, size declared": (
            signed_by_hand(right, zstd_bomb(canary, bomb_size, declared=True), compressed=True),
            f"would decompress to {bomb_size} bytes",
        ),
        "zstd bomb, size not declared": (
            signed_by_hand(right, zstd_bomb(canary, bomb_size, declared=False), compressed=True),
            "could not be decompressed within the cap",
        ),
    }


@pytest.fixture
def canary(tmp_path) -> Path:
    return tmp_path / "unpickled.canary"


def signer(**kwargs) -> Signer:
    return Signer(SECRET, NAME, max_size=MAX_SIZE, **kwargs)


# -- hostile packages ----------------------------------------------------------------------


def test_the_canary_creates_its_file_when_a_signed_package_is_unpickled(canary):
    s = signer()
    s.loads(s.dumps([Canary(canary)]))
    assert canary.exists(), "the canary would not prove anything"


@pytest.mark.parametrize("kind", list(hostile_packages(Path("unused"))))
def test_hostile_package_is_refused_with_its_reason_and_never_unpickled(kind, canary):
    package, reason = hostile_packages(canary)[kind]
    with pytest.raises(SignatureError, match=re.escape(reason)):
        signer(compress=True).loads(package)
    assert not canary.exists()


def test_bombs_are_small_and_carry_a_valid_signature(canary):
    packages = hostile_packages(canary)
    for kind in ("zstd bomb, size declared", "zstd bomb, size not declared"):
        package, _ = packages[kind]
        assert len(package) < MAX_SIZE / 8
        with pytest.raises(SignatureError) as refused:
            signer().loads(package)
        assert "does not verify" not in str(refused.value), "refused for its size, not its MAC"


def test_a_compressed_package_up_to_the_cap_round_trips():
    s = signer(compress=True)
    assert s.max_unpacked == UNPACKED_FACTOR * MAX_SIZE
    data = bytes(s.max_unpacked - 100)
    package = s.dumps(data)
    assert len(package) < MAX_SIZE
    assert s.loads(package) == data


def test_enqueue_refuses_a_task_the_cluster_would_refuse_to_decompress():
    with pytest.raises(PackageTooLarge, match=f"{UNPACKED_FACTOR} x max_package_size"):
        signer(compress=True).dumps(bytes(UNPACKED_FACTOR * MAX_SIZE + 1))


def test_a_verified_package_of_another_kind_is_refused_when_a_kind_is_asked():
    s = signer()
    package = s.dumps({"not": "a task"})
    assert s.loads(package) == {"not": "a task"}
    with pytest.raises(SignatureError, match="holds a dict, not a TaskMessage"):
        s.loads(package, TaskMessage)


# -- key rotation --------------------------------------------------------------------------


def test_old_key_verifies_while_it_is_a_fallback_and_is_refused_once_removed(canary):
    old_package = Signer("old", NAME).dumps([Canary(canary)])
    rotating = Signer("new", NAME, fallbacks=["older", "old"])
    rotating.loads(old_package)
    assert canary.exists()
    canary.unlink()
    with pytest.raises(SignatureError, match="does not verify"):
        Signer("new", NAME).loads(old_package)
    assert not canary.exists()


def test_signing_always_uses_the_secret_key_never_a_fallback():
    package = Signer("new", NAME, fallbacks=["old"]).dumps("task")
    assert Signer("new", NAME).loads(package) == "task"
    with pytest.raises(SignatureError):
        Signer("old", NAME).loads(package)


def test_a_fallback_is_salted_with_the_cluster_name_too():
    package = Signer("old", f"{NAME}-other").dumps("task")
    with pytest.raises(SignatureError):
        Signer("new", NAME, fallbacks=["old"]).loads(package)


def test_configured_fallbacks_reach_the_signer(tmp_path):
    config = qengine.configure(
        store=f"sqlite:///{tmp_path}/rotation.sqlite3",
        secret_key="new",
        secret_key_fallbacks=["old"],
    )
    assert get_signer(config).loads(Signer("old", config.name).dumps(7)) == 7


def test_fallbacks_key_is_validated_and_kept_as_a_tuple():
    assert Config().secret_key_fallbacks == ()
    assert Config(secret_key_fallbacks=["a", "b"]).secret_key_fallbacks == ("a", "b")
    assert Config(secret_key_fallbacks=("a",)).replace(workers=1).secret_key_fallbacks == ("a",)
    with pytest.raises(ConfigError, match=r"secret_key_fallbacks.*not a str"):
        Config(secret_key_fallbacks="old-key")
    for bad in (["ok", ""], ["ok", 3], [None]):
        with pytest.raises(ConfigError, match=r"secret_key_fallbacks.*non-empty strings"):
            Config(secret_key_fallbacks=bad)


def test_fallbacks_from_the_environment_and_a_toml_file(tmp_path):
    def env(value: str) -> tuple[str, ...]:
        return load_config(environ={"QENGINE_SECRET_KEY_FALLBACKS": value}).secret_key_fallbacks

    assert env('["old,one", "older"]') == ("old,one", "older")
    assert env("old-one, older") == ("old-one", "older")
    assert env("") == ()
    with pytest.raises(ConfigError, match="QENGINE_SECRET_KEY_FALLBACKS") as bad:
        env('["leaked-key",')
    assert "leaked-key" not in str(bad.value)
    toml = tmp_path / "keys.toml"
    toml.write_text('secret_key = "new"\nsecret_key_fallbacks = ["old"]\n')
    assert load_config(environ={}, config_file=str(toml)).secret_key_fallbacks == ("old",)


def test_fallbacks_are_masked_and_kept_out_of_repr():
    config = Config(secret_key="new-key", secret_key_fallbacks=["old-key"])
    assert config.as_dict()["secret_key_fallbacks"] == ["********"]
    assert config.as_dict(masked=False)["secret_key_fallbacks"] == ["old-key"]
    assert "old-key" not in repr(config)
    assert "old-key" not in json.dumps(config.as_dict(), default=str)


# -- the counters --------------------------------------------------------------------------


def test_stat_snapshot_carries_rejected_and_redeliveries():
    stat = Stat(cluster_id="9", name=NAME, rejected=3, redeliveries=2)
    data = json.loads(stat.to_json())
    assert (data["rejected"], data["redeliveries"]) == (3, 2)
    again = Stat.from_json(stat.to_json())
    assert (again.rejected, again.redeliveries) == (3, 2)
    # A snapshot from a cluster that predates the counters reads as zero.
    del data["rejected"], data["redeliveries"]
    old = Stat.from_json(json.dumps(data))
    assert (old.rejected, old.redeliveries) == (0, 0)


def test_qinfo_summary_shows_rejected_and_redelivered():
    lines = Summary(
        name=NAME, clusters=1, workers=2, restarts=0, queued=0, successes=5, failures=0,
        schedules=0, rate=0.0, rate_unit="day", avg_time=0.0, rejected=4, redeliveries=1,
    ).lines()  # fmt: skip
    assert lines[-1].split() == ["Rejected", "4", "Redelivered", "1"]
    assert lines[-1].index("Redelivered") == lines[1].index("Workers")
