"""Task packages: cloudpickle, optional zstandard, HMAC-SHA256; the sole unpickler of packages.

A package is ``MAGIC | flags | mac | body``. The MAC covers magic, flags and
body and is keyed by the secret key salted with the cluster name, so a
package signed for another cluster (or with another key) fails like a forged
one. Nothing is decompressed or unpickled before the MAC verifies, and
nothing larger than ``max_package_size`` is even checked. A verified,
compressed body is decompressed under a cap (``UNPACKED_FACTOR``), so a
small, validly signed zstd bomb cannot fill the cluster's memory.

Key rotation: packages are always signed with the secret key; the fallback
keys (``secret_key_fallbacks``) only verify.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, TypeVar, overload

import cloudpickle
import zstandard

from .config import Config
from .errors import PackageTooLarge, SignatureError

__all__ = ["Signer", "fast_dumps"]

log = logging.getLogger(__name__)

MAGIC = b"q1"
_FLAG_ZSTD = 0x01
_MAC_SIZE = hashlib.sha256().digest_size
_HEADER = len(MAGIC) + 1 + _MAC_SIZE

UNPACKED_FACTOR = 4
"""How many times ``max_package_size`` a compressed package's pickle may hold.

Compression lets a package carry more than its own size; beyond this,
``dumps`` refuses the task and ``loads`` refuses the package (a zstd bomb).
"""

T = TypeVar("T")


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


def _keyed(keys: Sequence[bytes]) -> tuple[hmac.HMAC, ...]:
    """One keyed HMAC per key, copied for each package: keying one anew hashes the key's
    two pads again, for every ``async_task``."""
    return tuple(hmac.new(key, digestmod=hashlib.sha256) for key in keys)


class Signer:
    """Turns objects into signed packages and verified packages back into objects.

    ``fallbacks`` are old secrets (a key rotation under way): packages signed
    with them still verify; new packages are always signed with ``secret``.
    """

    __slots__ = ("_keys", "_macs", "compress", "max_size", "max_unpacked", "salt")

    def __init__(
        self,
        secret: str,
        salt: str,
        *,
        compress: bool = False,
        max_size: int = 2**24,
        fallbacks: Sequence[str] = (),
    ):
        # The signing key first: most packages verify on the first try.
        self._keys = (_derive(secret, salt), *(_derive(old, salt) for old in fallbacks))
        self._macs = _keyed(self._keys)
        self.salt = salt
        self.compress = compress
        self.max_size = max_size
        self.max_unpacked = max_size * UNPACKED_FACTOR  # largest pickle a package expands to

    def __getstate__(self) -> dict[str, Any]:
        # Keyed HMACs do not pickle: a signer crosses into the workers as its keys.
        return {name: getattr(self, name) for name in self.__slots__ if name != "_macs"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self._macs = _keyed(self._keys)

    @classmethod
    def for_config(cls, config: Config, secret: str, purpose: str | None = None) -> Signer:
        """The one way a configuration's signer is made: its keys, name and package limits.

        ``purpose`` salts a signer for something other than task packages (``"result"``
        for notifications), so that one kind of signed bytes never passes for the other.
        """
        return cls(
            secret,
            config.name if purpose is None else f"{config.name}:{purpose}",
            compress=config.compress,
            max_size=config.max_package_size,
            fallbacks=config.secret_key_fallbacks,
        )

    @staticmethod
    def _mac(keyed: hmac.HMAC, head: bytes, body: bytes) -> bytes:
        """The MAC of ``head`` and ``body`` under a keyed HMAC (``_macs[0]`` signs)."""
        mac = keyed.copy()
        mac.update(head)
        mac.update(body)
        return mac.digest()

    def dumps(self, obj: Any) -> bytes:
        """Pickle, maybe compress, and sign ``obj`` with the secret key (never a fallback).

        Raises:
            TypeError: ``obj`` (a task's arguments, say) cannot be pickled.
            PackageTooLarge: the package is over ``max_size`` bytes, or its pickle
                over ``max_unpacked`` (which a cluster would refuse to decompress).
        """
        try:
            body = fast_dumps(obj)
        except Exception as exc:  # pickling raises many kinds; the caller needs one
            raise TypeError(f"cannot pickle the task: {exc}") from exc
        flags = 0
        if self.compress:
            if len(body) > self.max_unpacked:
                raise PackageTooLarge(
                    f"task pickles to {len(body)} bytes, over {UNPACKED_FACTOR} x "
                    f"max_package_size ({self.max_unpacked} bytes), the most a compressed "
                    "package may hold; pass large data by reference (a path or a key) instead"
                )
            body = zstandard.compress(body, 3)
            flags |= _FLAG_ZSTD
        size = len(body) + _HEADER
        if size > self.max_size:
            raise PackageTooLarge(
                f"package of {size} bytes is over max_package_size ({self.max_size} bytes); "
                "pass large data by reference (a path or a key) instead"
            )
        head = MAGIC + bytes((flags,))
        return head + self._mac(self._macs[0], head, body) + body

    @overload
    def loads(self, package: bytes) -> Any: ...
    @overload
    def loads(self, package: bytes, kind: type[T]) -> T: ...
    def loads(self, package: bytes, kind: type[Any] | None = None) -> Any:
        """Verify ``package`` and return its object; never unpickles what does not verify.

        Checked in this order, each before anything else is done with the bytes:
        type, size (``max_size``), header, signature (the secret key, then each
        fallback); then a compressed body is decompressed, refusing more than
        ``max_unpacked`` bytes; only then is it unpickled. With ``kind``, an
        object of another type is refused too.

        Raises:
            SignatureError: bad signature, truncated, garbled, signed for another
                cluster or with an unknown key, oversized, a decompression bomb, or
                (verified, so from a key holder) not unpicklable here or not a ``kind``.
                The message says which.
        """
        if not isinstance(package, bytes | bytearray | memoryview):
            raise SignatureError(f"a package is bytes, not {type(package).__name__}")
        if len(package) > self.max_size:
            raise SignatureError(
                f"package of {len(package)} bytes is over max_package_size ({self.max_size} bytes)"
            )
        package = bytes(package)
        if len(package) < _HEADER or not package.startswith(MAGIC):
            raise SignatureError("not a qengine package (too short or wrong header)")
        head = package[: len(MAGIC) + 1]
        mac = package[len(head) : _HEADER]
        body = package[_HEADER:]
        if not any(hmac.compare_digest(mac, self._mac(keyed, head, body)) for keyed in self._macs):
            raise SignatureError(
                f"package signature does not verify for cluster {self.salt!r} "
                "(tampered, truncated, or signed with another key or cluster name)"
            )
        if head[-1] & _FLAG_ZSTD:
            body = self._decompress(body)
        try:
            obj = pickle.loads(body)
        except Exception as exc:  # signed by us, so this is a version or environment mismatch
            raise SignatureError(f"verified package could not be unpacked: {exc!r}") from exc
        if kind is not None and not isinstance(obj, kind):
            raise SignatureError(
                f"verified package holds a {type(obj).__name__}, not a {kind.__name__}"
            )
        return obj

    def _decompress(self, body: bytes) -> bytes:
        """The body's pickle, never more than ``max_unpacked`` bytes of it.

        ``ZstdDecompressor.decompress`` bounds its output by ``max_output_size``
        only when the frame does not declare its size; a declared size is
        allocated as declared, so it is checked first. The window limit keeps
        the decoder's own buffer within the cap too.
        """
        cap = self.max_unpacked
        try:
            declared = zstandard.frame_content_size(body)  # -1: not declared
            if declared > cap:
                raise SignatureError(
                    f"verified package would decompress to {declared} bytes, over the cap of "
                    f"{cap} bytes ({UNPACKED_FACTOR} x max_package_size)"
                )
            decompressor = zstandard.ZstdDecompressor(max_window_size=cap)
            return decompressor.decompress(body, max_output_size=cap, allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise SignatureError(
                f"verified package could not be decompressed within the cap of {cap} bytes "
                f"({UNPACKED_FACTOR} x max_package_size): {exc}"
            ) from exc
