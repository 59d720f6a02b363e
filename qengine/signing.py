"""Task packages: cloudpickle, optional zstandard, HMAC-SHA256; the sole unpickler of packages.

A package is ``MAGIC | flags | mac | body``. The MAC covers magic, flags and
body and is keyed by the secret key salted with the cluster name, so a
package signed for another cluster (or with another key) fails like a forged
one. Nothing is decompressed or unpickled before the MAC verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
import secrets
from functools import lru_cache
from typing import Any

import cloudpickle
import zstandard

from .config import Config, PerConfig
from .errors import ConfigError, PackageTooLarge, SignatureError

__all__ = ["Signer", "fast_dumps", "get_signer"]

log = logging.getLogger(__name__)

MAGIC = b"q1"
_FLAG_ZSTD = 0x01
_MAC_SIZE = hashlib.sha256().digest_size
_HEADER = len(MAGIC) + 1 + _MAC_SIZE


def fast_dumps(obj: Any) -> bytes:
    """Pickle with the standard pickler when that is safe, else with cloudpickle.

    The standard pickler is several times faster, but stores functions and
    classes by reference. That breaks for lambdas and local functions (it
    raises) and for objects of the caller's ``__main__`` (it succeeds, but
    the worker's ``__main__`` is another program): the name shows in the
    bytes, and cloudpickle then stores them by value.
    """
    try:
        body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        body = b"__main__"
    if b"__main__" in body:
        body = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return body


@lru_cache(maxsize=64)
def _derive(secret: str, salt: str) -> bytes:
    # One key per (secret, cluster name): the name is the salt, as the spec asks.
    return hmac.new(secret.encode(), b"qengine.signing:" + salt.encode(), hashlib.sha256).digest()


class Signer:
    """Turns objects into signed packages and verified packages back into objects."""

    __slots__ = ("_key", "compress", "max_size", "salt")

    def __init__(self, secret: str, salt: str, *, compress: bool = False, max_size: int = 2**24):
        self._key = _derive(secret, salt)
        self.salt = salt
        self.compress = compress
        self.max_size = max_size

    def _mac(self, head: bytes, body: bytes) -> bytes:
        mac = hmac.new(self._key, head, hashlib.sha256)
        mac.update(body)
        return mac.digest()

    def dumps(self, obj: Any) -> bytes:
        """Pickle, maybe compress, and sign ``obj``.

        Raises:
            TypeError: ``obj`` (a task's arguments, say) cannot be pickled.
            PackageTooLarge: the package is over ``max_size`` bytes.
        """
        try:
            body = fast_dumps(obj)
        except Exception as exc:  # pickling raises many kinds; the caller needs one
            raise TypeError(f"cannot pickle the task: {exc}") from exc
        flags = 0
        if self.compress:
            body = zstandard.compress(body, 3)
            flags |= _FLAG_ZSTD
        size = len(body) + _HEADER
        if size > self.max_size:
            raise PackageTooLarge(
                f"package of {size} bytes is over max_package_size ({self.max_size} bytes); "
                "pass large data by reference (a path or a key) instead"
            )
        head = MAGIC + bytes((flags,))
        return head + self._mac(head, body) + body

    def loads(self, package: bytes) -> Any:
        """Verify ``package`` and return its object; never unpickles what does not verify.

        Raises:
            SignatureError: bad signature, truncated, garbled, or signed for another cluster.
        """
        if not isinstance(package, bytes | bytearray | memoryview):
            raise SignatureError(f"a package is bytes, not {type(package).__name__}")
        package = bytes(package)
        if len(package) < _HEADER or not package.startswith(MAGIC):
            raise SignatureError("not a qengine package (too short or wrong header)")
        head = package[: len(MAGIC) + 1]
        mac = package[len(head) : _HEADER]
        body = package[_HEADER:]
        if not hmac.compare_digest(mac, self._mac(head, body)):
            raise SignatureError(
                f"package signature does not verify for cluster {self.salt!r} "
                "(tampered, truncated, or signed with another key or cluster name)"
            )
        try:
            if head[-1] & _FLAG_ZSTD:
                body = zstandard.decompress(body)
            return pickle.loads(body)
        except Exception as exc:  # signed by us, so this is a version or environment mismatch
            raise SignatureError(f"verified package could not be unpacked: {exc!r}") from exc


def resolve_secret(config: Config) -> str:
    """The signing secret: configured, or on the embedded default one kept in the SQLite file.

    Raises:
        ConfigError: no secret key is configured and the broker is not a local SQLite file.
    """
    if config.secret_key:
        return config.secret_key
    if not config.is_embedded:
        raise ConfigError(
            "config key 'secret_key' is not set: packages for a networked broker must be "
            "signed with an explicit key (set QENGINE_SECRET_KEY or configure(secret_key=...))"
        )
    from .store import embedded_secret  # the store owns the SQLite file

    return embedded_secret(config.broker_url, secrets.token_urlsafe(48))


def _make_signer(config: Config) -> Signer:
    return Signer(
        resolve_secret(config),
        config.name,
        compress=config.compress,
        max_size=config.max_package_size,
    )


get_signer = PerConfig(_make_signer)
"""The signer for a configuration's key, cluster name and package settings (one per config)."""
