"""The Flask extension: the engine's configuration taken from ``app.config``.

Usage, with or without an application factory::

    qe = QEngine()

    def create_app():
        app = Flask(__name__)
        app.config["QENGINE"] = {"broker": "redis://127.0.0.1:6379/0", "secret_key": "…"}
        qe.init_app(app)
        return app

This module never imports Flask: the engine must import without any web
framework, so the extension only uses what the ``app`` it is given offers
(``app.config`` and ``app.extensions``).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..errors import ConfigError
from ..runtime import configure

__all__ = ["EXTENSION_KEY", "AppState", "QEngine", "app_config", "config_keys"]

EXTENSION_KEY = "qengine"
"""The key of this extension's state in ``app.extensions``."""

PREFIX = "QENGINE_"
_KEYS = frozenset(f.name for f in dataclasses.fields(Config))


@dataclass(frozen=True, slots=True)
class AppState:
    """What the extension keeps per application, in ``app.extensions["qengine"]``.

    Kept on the app rather than on the extension object, so one ``QEngine()``
    can serve every app an application factory makes.
    """

    extension: QEngine
    config: Config
    """The configuration built for this app at ``init_app`` time."""


def config_keys(app_config: Mapping[str, Any]) -> dict[str, Any]:
    """The engine keys found in a Flask ``app.config``.

    Two spellings, which may be mixed: a ``QENGINE`` dict of keys, and
    single ``QENGINE_<KEY>`` entries (``QENGINE_WORKERS = 4``), which win
    over the dict because they are the more specific.

    Raises:
        ConfigError: ``QENGINE`` is not a dict, or an entry names no engine key
            (a typo would otherwise be ignored without a word).
    """
    keys: dict[str, Any] = {}
    nested = app_config.get("QENGINE")
    if nested is not None:
        if not isinstance(nested, Mapping):
            raise ConfigError(
                f"app.config['QENGINE'] must be a dict of qengine keys, not {type(nested).__name__}"
            )
        for key, value in nested.items():
            keys[_checked(str(key), f"app.config['QENGINE'][{key!r}]")] = value
    for name, value in app_config.items():
        if name.startswith(PREFIX):
            key = name[len(PREFIX) :].lower()
            keys[_checked(key, f"app.config[{name!r}]")] = value
    return keys


def _checked(key: str, where: str) -> str:
    if key not in _KEYS:
        near = difflib.get_close_matches(key, sorted(_KEYS), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"{where} is not a qengine configuration key{hint}")
    return key


def app_config(app: Any) -> Config:
    """The engine configuration ``init_app`` built for ``app``.

    Raises:
        RuntimeError: the extension was never initialised on this app.
    """
    state = getattr(app, "extensions", {}).get(EXTENSION_KEY)
    if not isinstance(state, AppState):
        raise RuntimeError("QEngine.init_app(app) has not been called for this Flask app")
    return state.config


class QEngine:
    """The Flask extension: ``QEngine(app)``, or ``QEngine()`` then ``init_app(app)``.

    The engine's API (``async_task``, ``result`` …) reads one process-wide
    configuration, so ``init_app`` installs the app's configuration as that
    one. A process normally serves one app; when a factory makes several (in
    tests, say), the app initialised last is the one whose configuration the
    API uses.
    """

    def __init__(self, app: Any = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> Config:
        """Build the configuration from ``app.config``, install it and register the app.

        Sources, strongest first: ``app.config`` (see ``config_keys``), the
        ``QENGINE_*`` environment variables, the TOML file named by
        ``QENGINE_CONFIG``, the defaults. The environment still counts so that
        the app and its ``qcluster`` can share one set of variables.

        Raises:
            ConfigError: a key is unknown or has a bad value; nothing is installed then.
        """
        config = configure(**config_keys(app.config))
        app.extensions[EXTENSION_KEY] = AppState(extension=self, config=config)
        return config
