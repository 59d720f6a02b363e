"""The task API: ``async_task``, results, groups and the cache, as the spec names them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .brokers import Broker
from .cluster.worker import execute
from .config import MAX_INT, Config, is_cached, is_timeout, shown
from .outcomes import ContinueChain, finish
from .runtime import get_broker, get_config, get_notifier, get_signer, get_store
from .signals import SENDER, pre_enqueue
from .signing import Signer
from .store import task_from_values
from .task import NAME_LENGTH, PATH_LENGTH, Task, TaskMessage, new_id, storable
from .transactions import defer

__all__ = [
    "OPTION_KEYS",
    "async_task",
    "async_tasks",
    "count_group",
    "delete_cached",
    "delete_group",
    "fetch",
    "fetch_group",
    "queue_size",
    "resubmit",
    "result",
    "result_group",
]

OPTION_KEYS = frozenset(
    {
        "hook", "group", "save", "sync", "cached", "ack_failure", "broker", "timeout",
        "task_name", "on_commit",
    }
)  # fmt: skip
"""Keywords ``async_task`` takes for itself; every other keyword goes to the task's function."""

# Keys the library's own callers (chains, iters, schedules) may pass on top.
_INTERNAL_KEYS = frozenset({"chain", "iter_count", "iter_cached", "iter_index"})


def split_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate ``async_task`` options from the function's keyword arguments.

    The rule is Django Q's (1.3.6 and django-q2), so calls written for it
    mean the same here: a keyword named like an option is an option unless
    ``q_options`` holds the same key; then ``q_options`` gives the option and
    the keyword goes to the function, which is how a function gets a
    parameter called ``hook`` or ``group``. ``task_name`` as a keyword is
    always an option, and wins over the one in ``q_options``.
    """
    if not kwargs:
        return {}, kwargs  # the common call: nothing to separate
    q_options = kwargs.pop("q_options", None)
    if q_options is None:
        q_options = {}
    if not isinstance(q_options, Mapping):
        raise TypeError(f"q_options must be a dict, not {type(q_options).__name__}")
    unknown = sorted(set(q_options) - OPTION_KEYS, key=repr)  # the keys may be of any type
    if unknown:
        raise ValueError(
            f"unknown q_options key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(OPTION_KEYS))}"
        )
    options = dict(q_options)
    for key in OPTION_KEYS.intersection(kwargs):
        if key != "task_name" and key not in options:
            options[key] = kwargs.pop(key)
    # Django Q reads `task_name or q_options["task_name"]`: an empty keyword defers to q_options.
    keyword_name = kwargs.pop("task_name", None)
    if keyword_name:
        options["task_name"] = keyword_name
    return options, kwargs


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse a bad ``async_task`` option (schedules check their ``q_options`` with it too).

    Raises:
        TypeError: ``hook`` is neither a dotted path nor a callable.
        ValueError: another option has a bad value; the message names it.
    """

    if not options:
        return

    def bad(key: str, allowed: str) -> ValueError:
        return ValueError(f"async_task option {key}={shown(options[key])} is invalid: {allowed}")

    hook = options.get("hook")
    if hook is not None and not (isinstance(hook, str) or callable(hook)):
        raise TypeError(f"hook must be a dotted path or a callable, not {type(hook).__name__}")
    if isinstance(hook, str) and not storable(hook, PATH_LENGTH):
        raise bad("hook", f"a dotted path of at most {PATH_LENGTH} characters, without NUL")
    for key in ("group", "task_name"):
        value = options.get(key)
        if value is not None and (not isinstance(value, str) or not storable(value, NAME_LENGTH)):
            raise bad(key, f"a string of at most {NAME_LENGTH} characters, without NUL")
    for key in ("save", "sync", "ack_failure"):
        if options.get(key) is not None and not isinstance(options[key], bool):
            raise bad(key, "True, False or None")
    if options.get("cached") is not None and not is_cached(options["cached"]):
        raise bad("cached", f"True, False or a number of seconds >= 1 (at most {MAX_INT})")
    if not is_timeout(options.get("timeout")):
        raise bad("timeout", f"None or a number of seconds > 0 (at most {MAX_INT})")
    broker = options.get("broker")
    if broker is not None and not isinstance(broker, Broker):
        raise bad("broker", "a Broker instance from get_broker()")
    on_commit = options.get("on_commit")
    if (
        on_commit is not None
        and not isinstance(on_commit, bool)
        and not (isinstance(on_commit, str) and on_commit)
    ):
        raise bad("on_commit", "True, False, None or the name of a database")


def _check_call(func: str | Callable[..., Any], options: dict[str, Any]) -> None:
    _check_func(func)
    check_options(options)


def _check_func(func: str | Callable[..., Any]) -> None:
    if not (isinstance(func, str) or callable(func)):
        raise TypeError(
            f"func must be a dotted path string or a callable, not {type(func).__name__}"
        )
    if isinstance(func, str) and ("." not in func or not storable(func, PATH_LENGTH)):
        raise ValueError(
            f"func {shown(func)} must be a dotted path such as 'math.floor' "
            f"(at most {PATH_LENGTH} characters, without NUL)"
        )


def prepare(
    func: str | Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: dict[str, Any],
    config: Config,
    ident: tuple[str, str] | None = None,
    *,
    options_checked: bool = False,
) -> TaskMessage:
    """Check a call and build its task message; ``pre_enqueue`` fires here.

    ``ident`` is the ``new_id()`` pair when the id had to be handed out
    before the message exists (an enqueue waiting for a commit).
    ``options_checked`` spares a batch checking its one set of options per task.
    """
    _check_func(func)
    if not options_checked:
        check_options(options)
    task_id, name = ident or new_id()
    cached = options.get("cached")
    sync = options.get("sync")
    message = TaskMessage(
        id=task_id,
        name=options.get("task_name") or name,
        func=func,
        args=tuple(args),
        kwargs=kwargs,
        hook=options.get("hook"),
        group=options.get("group"),
        timeout=options.get("timeout"),
        save=options.get("save"),
        cached=config.cached if cached is None else cached,
        ack_failure=options.get("ack_failure"),
        sync=config.sync if sync is None else sync,
        chain=options.get("chain"),
        iter_count=options.get("iter_count"),
        iter_cached=options.get("iter_cached"),
        iter_index=options.get("iter_index"),
        cluster=config.name,
    )
    pre_enqueue.send(SENDER, task=message)
    return message


def submit(
    func: str | Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: dict[str, Any],
    config: Config | None = None,
    *,
    continue_chain: ContinueChain | None = None,
) -> str:
    """Build, sign and enqueue (or in sync mode run) one task; return its id.

    With ``on_commit`` the call is checked now, so a wrong call fails where
    it is made, but the message is built, signed and sent only when the
    caller's transaction commits: ``pre_enqueue`` then fires for tasks that
    are really queued, never for a rolled-back one. The id is handed out now
    so the caller can keep it, as for any task.

    ``continue_chain`` queues the rest of a chain after a link run in sync
    mode; the chains module hands it in with each link (importing it here
    would make the API and the chains import each other).
    """
    config = config or get_config()
    broker: Broker | None = options.get("broker")
    on_commit = options.get("on_commit")
    if not on_commit:
        message = prepare(func, args, kwargs, options, config)
        return _send(message, config, broker, continue_chain)
    _check_call(func, options)
    ident = new_id()

    def send() -> None:
        message = prepare(func, args, kwargs, options, config, ident)
        _send(message, config, broker, continue_chain)

    defer(send, on_commit)
    return ident[0]


def _send(
    message: TaskMessage,
    config: Config,
    broker: Broker | None,
    continue_chain: ContinueChain | None,
) -> str:
    if message.sync:
        _run_inline(message, config, broker, continue_chain)
    else:
        package = get_signer(config).dumps(message)
        target = broker or get_broker(config)
        target.enqueue(package)
    return message.id


def _run_inline(
    message: TaskMessage,
    config: Config,
    broker: Broker | None,
    continue_chain: ContinueChain | None,
) -> None:
    # Pack and unpack as the trip through a broker would, so sync mode fails on exactly
    # what a cluster would fail on (unpicklable arguments, oversized packages). The
    # package never leaves this process, so a configured key is not required.
    signer = Signer.for_config(config, config.secret_key or "sync-mode")
    received: TaskMessage = signer.loads(signer.dumps(message))
    received.attempt_count = 1
    outcome = execute(received, soft_timeout=False)
    finish([outcome], config, broker=broker, continue_chain=continue_chain)


Call = tuple[Any, ...]
"""One task of ``async_tasks``: ``(func,)``, ``(func, args)`` or ``(func, args, kwargs)``."""


def _unpack_call(call: Any, index: int) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    if type(call) is tuple and len(call) == 2 and type(call[1]) is tuple:
        return call[0], call[1], {}  # the common form, without the general path's copies
    if isinstance(call, str) or callable(call):
        return call, (), {}
    if not isinstance(call, tuple | list) or not 1 <= len(call) <= 3:
        raise TypeError(
            f"async_tasks: call {index} is {shown(call)}; each call is a function (or its "
            "dotted path), or a tuple (func, args) or (func, args, kwargs)"
        )
    func, args, kwargs = (*call, *((), {})[len(call) - 1 :])
    if not isinstance(args, tuple | list) or not isinstance(kwargs, dict):
        raise TypeError(
            f"async_tasks: call {index} needs args as a tuple or list and kwargs as a dict, "
            f"not {type(args).__name__} and {type(kwargs).__name__}"
        )
    return func, tuple(args), kwargs


def async_tasks(calls: Iterable[Any], **options: Any) -> list[str]:
    """Queue many tasks in one call and one broker round trip; return their ids in order.

    Each call is a function (or its dotted path) or a tuple ``(func, args)`` or
    ``(func, args, kwargs)``. The keywords are ``async_task``'s options and apply
    to every task (a ``group`` gathers them, a ``hook`` sees each one); keywords
    for the functions go in each call's ``kwargs``. Every task is checked and
    ``pre_enqueue`` sent for it before any is queued, so a bad call queues
    nothing; with ``sync`` each runs inline, in order; with ``on_commit`` the
    whole batch waits for the commit. On a broker without a batch operation the
    packages are enqueued one by one.

    Raises:
        TypeError: a call is malformed, a keyword is not an option, or a task's
            arguments cannot be pickled.
        ValueError, ConfigError, PackageTooLarge, BrokerUnavailable: as ``async_task``.
    """
    options, rest = split_options(dict(options))
    if rest:
        raise TypeError(
            f"async_tasks: {', '.join(map(repr, sorted(rest)))} not an option; keyword "
            "arguments for the functions go in each call's kwargs: (func, args, kwargs)"
        )
    unpacked = [_unpack_call(call, index) for index, call in enumerate(calls)]
    config = get_config()
    broker: Broker | None = options.get("broker")
    on_commit = options.get("on_commit")
    if not on_commit:
        return _send_many(unpacked, options, config, broker)
    check_options(options)
    for func, _, _ in unpacked:
        _check_func(func)
    idents = [new_id() for _ in unpacked]

    def send() -> None:
        _send_many(unpacked, options, config, broker, idents)

    defer(send, on_commit)
    return [ident[0] for ident in idents]


def _send_many(
    calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]],
    options: dict[str, Any],
    config: Config,
    broker: Broker | None,
    idents: list[tuple[str, str]] | None = None,
) -> list[str]:
    check_options(options)
    messages = [
        prepare(func, args, kwargs, options, config, ident, options_checked=True)
        for ident, (func, args, kwargs) in zip(idents or [None] * len(calls), calls, strict=True)
    ]
    if messages and messages[0].sync:
        for message in messages:
            _run_inline(message, config, broker, None)
    elif messages:
        signer = get_signer(config)
        packages = [signer.dumps(message) for message in messages]
        (broker or get_broker(config)).enqueue_many(packages)
    return [message.id for message in messages]


def async_task(func: str | Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """Queue ``func(*args, **kwargs)`` for a cluster; return the task id.

    Options: hook, group, save, sync, cached, ack_failure, broker, timeout,
    task_name, on_commit, as keywords or in ``q_options=dict`` (see
    ``split_options`` for which wins). ``on_commit=True`` (or a database
    name) holds the task back until the caller's transaction commits, and
    drops it on rollback; it needs a framework that registered a commit hook
    (``qengine.transactions``), which qdjango does.

    Raises:
        TypeError: ``func`` is neither a dotted path nor a callable, or the
            arguments cannot be pickled.
        ValueError: an option has a bad value or ``q_options`` an unknown key.
        ConfigError: ``on_commit`` without a commit hook (plain Python).
        PackageTooLarge: the package is over ``max_package_size``.
        BrokerUnavailable: the broker cannot be reached (with ``sync``: StoreError,
            the result store).
    """
    options, kwargs = split_options(dict(kwargs))
    return submit(func, args, kwargs, options)


# -- waiting ----------------------------------------------------------------------


def wait_for(probe: Callable[[], Any], wait: int) -> Any:
    """Call ``probe`` until it returns something truthy or ``wait`` ms pass (-1: forever)."""
    deadline = None if wait < 0 else time.monotonic() + wait / 1000
    delay = 0.002
    while True:
        value = probe()
        if value:
            return value
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return value
            time.sleep(min(delay, left))
        else:
            time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _cached_default(cached: bool | None) -> bool:
    return bool(get_config().cached) if cached is None else bool(cached)


# -- results ----------------------------------------------------------------------


def fetch(task_id: str, wait: int = 0, cached: bool | None = None) -> Task | None:
    """The finished task by id or name, waiting up to ``wait`` ms (-1: indefinitely).

    With a Redis broker the wait wakes on the cluster's notification; with
    SQL only, it polls the store with a short, growing interval.

    Raises:
        StoreError: the result store (or with ``cached`` the cache) cannot be read.
        BrokerUnavailable: ``wait`` needs the broker's Redis, which cannot be reached.
    """
    store = get_store()
    decode = None
    if _cached_default(cached):
        probe = lambda: store.cached(task_id)  # noqa: E731
    else:
        probe = lambda: store.get(task_id)  # noqa: E731
        decode = task_from_values  # the notification carries the saved row
    if wait != 0:
        notifier = get_notifier()
        if notifier is not None:
            return notifier.wait(task_id, probe, wait, decode)  # type: ignore[no-any-return]
    return wait_for(probe, wait)  # type: ignore[no-any-return]


def result(task_id: str, wait: int = 0, cached: bool | None = None) -> Any:
    """The result of a finished task (None until it finished), waiting up to ``wait`` ms.

    Raises:
        StoreError: the result store (or with ``cached`` the cache) cannot be read.
        BrokerUnavailable: ``wait`` needs the broker's Redis, which cannot be reached.
    """
    task = fetch(task_id, wait=wait, cached=cached)
    return task.result if task is not None else None


def queue_size(broker: Broker | None = None) -> int:
    """Packages waiting in the broker, not counting those being processed.

    Raises:
        BrokerUnavailable: the broker cannot be reached.
    """
    return (broker or get_broker()).queue_size()


def delete_cached(task_id: str, broker: Broker | None = None) -> None:
    """Remove a task's result from the cache.

    Raises:
        StoreError: the cache cannot be written.
    """
    get_store().delete_cached(task_id)


# -- groups -----------------------------------------------------------------------


def count_group(group_id: str, failures: bool = False, cached: bool | None = None) -> int:
    """Finished tasks in the group; with ``failures`` only the failed ones.

    Raises:
        StoreError: the result store (or with ``cached`` the cache) cannot be read.
    """
    store = get_store()
    if _cached_default(cached):
        tasks = store.cached_group(group_id)
        return sum(1 for t in tasks if not t.success) if failures else len(tasks)
    return store.group_count(group_id, failures=failures)


def _wait_group(group_id: str, probe: Callable[[], Any], wait: int) -> Any:
    """``wait_for`` for a group: woken by the cluster when the broker is Redis, else polling."""
    if wait != 0:
        notifier = get_notifier()
        if notifier is not None:
            return notifier.wait_group(group_id, probe, wait)
    return wait_for(probe, wait)


def _wait_count(group_id: str, count: int | None, wait: int, cached: bool | None) -> float:
    """Block until the group has ``count`` tasks (``wait`` 0 means no limit, as the spec has it)."""
    start = time.monotonic()
    if count:
        _wait_group(group_id, lambda: count_group(group_id, cached=cached) >= count, wait or -1)
    return start


def _remaining(start: float, wait: int) -> int:
    if wait < 0:
        return -1
    return max(0, int(wait - (time.monotonic() - start) * 1000))


def fetch_group(
    group_id: str,
    failures: bool = True,
    wait: int = 0,
    count: int | None = None,
    cached: bool | None = None,
) -> list[Task]:
    """The group's finished tasks, oldest first; ``count`` blocks until there are that many.

    Raises:
        StoreError: the result store (or with ``cached`` the cache) cannot be read.
        BrokerUnavailable: ``wait`` or ``count`` needs the broker's Redis, which cannot
            be reached.
    """
    start = _wait_count(group_id, count, wait, cached)
    store = get_store()
    if _cached_default(cached):
        probe = lambda: store.cached_group(group_id, failures=failures)  # noqa: E731
    else:
        probe = lambda: store.group_tasks(group_id, failures=failures)  # noqa: E731
    return _wait_group(group_id, probe, _remaining(start, wait)) or []


def result_group(
    group_id: str,
    failures: bool = False,
    wait: int = 0,
    count: int | None = None,
    cached: bool | None = None,
) -> list[Any]:
    """The group's results, oldest first; failures' error texts only with ``failures``.

    Raises:
        StoreError: the result store (or with ``cached`` the cache) cannot be read.
        BrokerUnavailable: ``wait`` or ``count`` needs the broker's Redis, which cannot
            be reached.
    """
    start = _wait_count(group_id, count, wait, cached)
    store = get_store()
    if _cached_default(cached):

        def probe() -> list[Any]:
            return [t.result for t in store.cached_group(group_id, failures=failures)]

    else:

        def probe() -> list[Any]:
            return store.group_results(group_id, failures=failures)

    return _wait_group(group_id, probe, _remaining(start, wait)) or []


def resubmit(task_id: str) -> str:
    """Queue a stored task again with its function, arguments, hook and group.

    The stored failure is removed once the new task is queued, so a task
    shows once in the results; returns the new task's id.

    Raises:
        LookupError: no stored task has this id or name.
    """
    store = get_store()
    task = store.get(task_id)
    if task is None:
        raise LookupError(f"no stored task with id or name {task_id!r}")
    options: dict[str, Any] = {"hook": task.hook, "group": task.group}
    new_id = submit(task.func, tuple(task.args), dict(task.kwargs), options)
    if not task.success:
        store.delete_task(task.id)
    return new_id


def delete_group(group_id: str, tasks: bool = False, cached: bool | None = None) -> int:
    """Remove the group label (or with ``tasks`` the tasks too); return how many were affected."""
    if _cached_default(cached):
        return get_store().delete_cached_group(group_id, tasks=tasks)
    return get_store().delete_group(group_id, tasks=tasks)
