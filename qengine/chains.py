"""Composite tasks: iterables (``async_iter``/``Iter``), chains, and the ``AsyncTask`` wrapper."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from .api import (
    count_group,
    fetch,
    fetch_group,
    result,
    result_group,
    split_options,
    submit,
)
from .brokers import Broker
from .outcomes import cache_timeout, iter_args_key
from .runtime import get_config, get_store
from .store import dumps
from .task import Task, TaskMessage, func_name, new_id

__all__ = ["AsyncTask", "Chain", "Iter", "async_chain", "async_iter"]

Link = tuple[Any, ...]


def async_iter(func: str | Callable[..., Any], args_iter: Iterable[Any], **kwargs: Any) -> str:
    """Run ``func`` once per item of ``args_iter``; return the id of the collated result.

    Each part goes through the cache; when the last one finishes, one task
    whose result is the list of every part's result (in the iterable's
    order) is saved under the returned id. Takes ``async_task``'s options
    except ``hook``.
    """
    options, kwargs = split_options(dict(kwargs))
    return _start_iter(func, args_iter, kwargs, options)


def _start_iter(
    func: str | Callable[..., Any],
    args_iter: Iterable[Any],
    kwargs: dict[str, Any],
    options: dict[str, Any],
) -> str:
    """``async_iter`` once its options are known: ``Iter`` comes in here with its own."""
    options.pop("hook", None)
    config = get_config()
    items = [item if isinstance(item, tuple) else (item,) for item in args_iter]
    iter_id, name = new_id()
    cached = options.get("cached")
    cached = config.cached if cached is None else cached
    store = get_store()
    if not items:
        # Nothing to run: the collated result is known now.
        now = datetime.now(UTC)
        empty = Task(
            id=iter_id, name=name, func=func_name(func) or "", result=[], success=True,
            started=now, stopped=now,
        )  # fmt: skip
        if cached:
            store.cache_task(empty, cache_timeout(cached))
        else:
            store.save_task(empty)
        return iter_id
    store.cache.set(iter_args_key(store, iter_id), dumps(list(args_iter_items(items))))
    options.update(
        group=iter_id,
        iter_count=len(items),
        iter_cached=cached or None,
        cached=True,
        task_name=options.get("task_name") or name,
    )
    for index, args in enumerate(items):
        submit(func, args, dict(kwargs), {**options, "iter_index": index}, config)
    return iter_id


def args_iter_items(items: list[tuple[Any, ...]]) -> list[Any]:
    """The arguments as the caller gave them: single values unwrapped."""
    return [item[0] if len(item) == 1 else item for item in items]


def _link(task: Any) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    if not isinstance(task, tuple):
        task = (task,)
    if not task or len(task) > 3:
        raise ValueError(
            f"a chain link is (func,), (func, args) or (func, args, kwargs), not {task!r}"
        )
    func = task[0]
    args = task[1] if len(task) > 1 else ()
    kwargs = task[2] if len(task) > 2 else {}
    if not isinstance(args, tuple):
        args = (args,)
    return func, args, dict(kwargs)


def async_chain(
    chain: list[Link],
    group: str | None = None,
    cached: bool | int | None = None,
    sync: bool | None = None,
    broker: Broker | None = None,
) -> str:
    """Run tasks one after the other, each once the previous one finished; return the group.

    ``chain`` is a list of ``(func, args, kwargs)``; ``args`` and ``kwargs`` may be left out.
    """
    links = list(chain)
    if not links:
        raise ValueError("a chain needs at least one task")
    for link in links:
        _link(link)  # reject a malformed link before anything runs
    group = group or new_id()[0]
    func, args, kwargs = _link(links[0])
    options, kwargs = split_options(kwargs)
    config = get_config()
    options.update(
        group=group,
        cached=config.cached if cached is None else cached,
        sync=config.sync if sync is None else sync,
        chain=links[1:],
    )
    if broker is not None:
        options["broker"] = broker
    submit(func, args, kwargs, options, config, continue_chain=continue_chain)
    return group


def continue_chain(message: TaskMessage, broker: Broker | None = None) -> str:
    """Queue the rest of the chain ``message`` belongs to, once ``message`` finished.

    Handed to ``qengine.outcomes.finish`` by its callers (the cluster's
    monitor; sync mode through ``submit``), which cannot import this module.
    """
    return async_chain(
        list(message.chain or ()),
        group=message.group,
        cached=message.cached,
        sync=message.sync,
        broker=broker,
    )


class AsyncTask:
    """One task kept in an object: set its options, ``run()`` it, read its result.

    Changing the function, arguments or any option after ``run()`` makes
    ``result()`` return None until it is run again.
    """

    def __init__(self, func: str | Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._func = func
        self._args = args
        self._kwargs = dict(kwargs)
        self.id = ""
        self.started = False

    def _option(self, key: str) -> Any:
        # async_task's own rule, so a property reads the value run() will use.
        options, _ = split_options(dict(self._kwargs))
        return options.get(key)

    def _set_option(self, key: str, value: Any) -> None:
        # Change the option where it is: a key in q_options there, else the keyword
        # (writing it into q_options would turn an existing keyword into a function argument).
        q_options = self._kwargs.get("q_options")
        if q_options is not None and key in q_options:
            self._kwargs["q_options"] = {**q_options, key: value}
        else:
            self._kwargs[key] = value
        self.started = False

    @property
    def func(self) -> str | Callable[..., Any]:
        return self._func

    @func.setter
    def func(self, value: str | Callable[..., Any]) -> None:
        self._func = value
        self.started = False

    @property
    def args(self) -> tuple[Any, ...]:
        return self._args

    @args.setter
    def args(self, value: tuple[Any, ...]) -> None:
        self._args = tuple(value)
        self.started = False

    @property
    def kwargs(self) -> dict[str, Any]:
        return self._kwargs

    @kwargs.setter
    def kwargs(self, value: dict[str, Any]) -> None:
        self._kwargs = dict(value)
        self.started = False

    def _opt(key: str) -> property:  # type: ignore[misc]
        return property(
            lambda self: self._option(key),
            lambda self, value: self._set_option(key, value),
            doc=f"The ``{key}`` option of this task.",
        )

    broker = _opt("broker")
    sync = _opt("sync")
    save = _opt("save")
    hook = _opt("hook")
    group = _opt("group")
    cached = _opt("cached")
    timeout = _opt("timeout")
    ack_failure = _opt("ack_failure")
    del _opt

    def run(self) -> str:
        """Send the task (or run it, in sync mode); return its id."""
        from .api import async_task

        self.id = async_task(self._func, *self._args, **self._kwargs)
        self.started = True
        return self.id

    def result(self, wait: int = 0) -> Any:
        if self.started:
            return result(self.id, wait=wait, cached=self.cached)
        return None

    def fetch(self, wait: int = 0) -> Task | None:
        if self.started:
            return fetch(self.id, wait=wait, cached=self.cached)
        return None

    def result_group(self, failures: bool = False, wait: int = 0, count: int | None = None) -> Any:
        if self.started and self.group:
            return result_group(self.group, failures, wait, count, cached=self.cached)
        return None

    def fetch_group(self, failures: bool = True, wait: int = 0, count: int | None = None) -> Any:
        if self.started and self.group:
            return fetch_group(self.group, failures, wait, count, cached=self.cached)
        return None


class Iter:
    """An ``async_iter`` built up one argument set at a time."""

    def __init__(
        self,
        func: str | Callable[..., Any] | None = None,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        cached: bool | int | None = None,
        sync: bool | None = None,
        broker: Broker | None = None,
    ) -> None:
        self.func = func
        self.args: list[Any] = list(args or [])
        self.kwargs = dict(kwargs or {})
        self.cached = get_config().cached if cached is None else cached
        self.sync = get_config().sync if sync is None else sync
        self.broker = broker
        self.id = ""
        self.started = False

    def append(self, *args: Any) -> int:
        """Add one call's arguments; return how many calls there are now."""
        self.args.append(args)
        self.started = False
        return self.length()

    def run(self) -> str:
        if self.func is None:
            raise ValueError("Iter has no function to run")
        options: dict[str, Any] = {"cached": self.cached, "sync": self.sync}
        if self.broker is not None:
            options["broker"] = self.broker
        # Past split_options: every one of ``kwargs`` is the function's, even a ``timeout``
        # or ``task_name``, which async_task's keyword rule would take as options.
        self.id = _start_iter(self.func, self.args, dict(self.kwargs), options)
        self.started = True
        return self.id

    def result(self, wait: int = 0) -> list[Any] | None:
        if self.started:
            return result(self.id, wait=wait, cached=bool(self.cached))  # type: ignore[no-any-return]
        return None

    def fetch(self, wait: int = 0) -> Task | None:
        if self.started:
            return fetch(self.id, wait=wait, cached=bool(self.cached))
        return None

    def length(self) -> int:
        return len(self.args)


class Chain:
    """A sequence of tasks run one after another, as one group."""

    def __init__(
        self,
        chain: list[Link] | None = None,
        group: str | None = None,
        cached: bool | int | None = None,
        sync: bool | None = None,
        broker: Broker | None = None,
    ) -> None:
        self.chain: list[Link] = list(chain or [])
        self.group = group or ""
        self.cached = get_config().cached if cached is None else cached
        self.sync = get_config().sync if sync is None else sync
        self.broker = broker
        self.started = False

    def append(self, func: str | Callable[..., Any], *args: Any, **kwargs: Any) -> int:
        """Add a task (``async_task``'s arguments and options); return the chain's length."""
        self.chain.append((func, args, kwargs))
        self.started = False
        return self.length()

    def run(self) -> str:
        """Start the chain; return its group id."""
        self.group = async_chain(
            self.chain, group=self.group or None, cached=self.cached, sync=self.sync,
            broker=self.broker,
        )  # fmt: skip
        self.started = True
        return self.group

    def result(self, wait: int = 0) -> list[Any] | None:
        """Every link's result in order, once the whole chain finished (see ``result_group``)."""
        if self.started:
            return result_group(
                self.group, wait=wait, count=self.length(), cached=bool(self.cached)
            )
        return None

    def fetch(self, failures: bool = True, wait: int = 0) -> list[Task] | None:
        if self.started:
            return fetch_group(
                self.group, failures=failures, wait=wait, count=self.length(),
                cached=bool(self.cached),
            )  # fmt: skip
        return None

    def current(self) -> int | None:
        """How many links have finished; equals ``length()`` once the chain is done."""
        if self.started and self.group:
            return count_group(self.group, cached=bool(self.cached))
        return None

    def length(self) -> int:
        return len(self.chain)
