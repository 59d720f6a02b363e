"""Schedules: next-run maths, repeats and catch-up, storage, validation and claiming."""

from __future__ import annotations

import ast
import pathlib
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine

import qengine
from qengine.db import ScheduleRow, get_engine
from qengine.errors import ScheduleError
from qengine.runtime import get_config
from qengine.schedules import (
    Schedule,
    ScheduleType,
    advance,
    claim_due,
    next_run_after,
    recurrence,
    schedule,
    seconds_until_due,
    slot_task_id,
)
from qengine.task import Task

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def local(tz: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=tz)


def walk(schedule_type: str, start: datetime, count: int, tz=UTC, **kw) -> list[datetime]:
    """``count`` slots after ``start`` the way the scheduler walks them (each from the last)."""
    slots, current = [], start
    for _ in range(count):
        current = next_run_after(schedule_type, current, tz=tz, **kw)
        slots.append(current)
    return slots


@pytest.fixture
def engine():
    return get_engine(get_config().store)


def rows(engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.select(ScheduleRow.__table__)).all()


class Recorder:
    """An ``enqueue`` for claim_due that records calls and hands out task ids."""

    def __init__(self) -> None:
        self.calls: list[tuple[int | None, str]] = []
        self.lock = threading.Lock()

    def __call__(
        self, schedule: Schedule, *, group: str, conn: sa.Connection, slot: datetime
    ) -> str:
        with self.lock:
            self.calls.append((schedule.id, group))
            return f"task-{len(self.calls)}"


def claim(engine, now, enqueue, *, cluster="default", catch_up=True, tz=UTC, **kw):
    return claim_due(engine, now, cluster, enqueue, catch_up=catch_up, tz=tz, **kw)


# -- next_run_after: each type ------------------------------------------------------------


def test_minutes_and_hourly_add_absolute_time():
    start = utc(2024, 3, 31, 0, 30)
    assert next_run_after("I", start, minutes=25, tz=PARIS) == utc(2024, 3, 31, 0, 55)
    # Across the Paris spring change an hour is still sixty minutes.
    assert next_run_after("H", start, tz=PARIS) == utc(2024, 3, 31, 1, 30)


@pytest.mark.parametrize(
    ("schedule_type", "expected"),
    [
        ("D", utc(2024, 1, 16, 9)),
        ("W", utc(2024, 1, 22, 9)),
        ("M", utc(2024, 2, 15, 9)),
        ("Q", utc(2024, 4, 15, 9)),
        ("Y", utc(2025, 1, 15, 9)),
    ],
)
def test_calendar_types_step_one_period(schedule_type, expected):
    assert next_run_after(schedule_type, utc(2024, 1, 15, 9), tz=UTC) == expected


def test_cron_takes_the_next_slot_of_the_expression():
    assert next_run_after("C", utc(2024, 1, 15, 9), cron="*/20 * * * *", tz=UTC) == utc(
        2024, 1, 15, 9, 20
    )


def test_once_has_no_next_run():
    with pytest.raises(ScheduleError, match="no next run"):
        next_run_after("O", utc(2024, 1, 1), tz=UTC)


# -- months, years and DST ------------------------------------------------------------------


def test_monthly_on_the_31st_runs_on_the_last_day_then_keeps_that_day():
    # The spec: "It will however continue to run on that day, e.g. the 28th".
    slots = walk("M", utc(2023, 1, 31, 12), 4)
    assert [s.date().isoformat() for s in slots] == [
        "2023-02-28", "2023-03-28", "2023-04-28", "2023-05-28",
    ]  # fmt: skip
    assert walk("M", utc(2024, 1, 31, 12), 1)[0] == utc(2024, 2, 29, 12)
    assert walk("M", utc(2024, 3, 31, 12), 1)[0] == utc(2024, 4, 30, 12)


def test_quarterly_steps_three_months_from_the_last_run():
    slots = walk("Q", utc(2023, 11, 30, 12), 3)
    assert [s.date().isoformat() for s in slots] == ["2024-02-29", "2024-05-29", "2024-08-29"]


def test_yearly_on_february_29th_runs_on_the_28th_in_the_following_years():
    slots = walk("Y", utc(2024, 2, 29, 8), 4)
    assert [s.date().isoformat() for s in slots] == [
        "2025-02-28", "2026-02-28", "2027-02-28", "2028-02-28",
    ]  # fmt: skip


def test_monthly_schedule_stored_between_runs_follows_the_same_rule(engine):
    schedule("math.floor", 1, schedule_type="M", next_run=utc(2023, 1, 31, 12))
    seen = []
    for now in [utc(2023, 1, 31, 12), utc(2023, 2, 28, 12), utc(2023, 3, 28, 12)]:
        claim(engine, now, Recorder())
        seen.append(Schedule.list()[0].next_run)
    assert seen == [utc(2023, 2, 28, 12), utc(2023, 3, 28, 12), utc(2023, 4, 28, 12)]
    assert Schedule.list()[0].q_options is None


def test_daily_keeps_local_wall_time_across_dst_in_paris():
    slots = walk("D", local(PARIS, 2024, 3, 30, 9).astimezone(UTC), 1, tz=PARIS)
    assert slots == [utc(2024, 3, 31, 7)]  # 09:00 CEST
    slots = walk("D", local(PARIS, 2024, 10, 26, 9).astimezone(UTC), 1, tz=PARIS)
    assert slots == [utc(2024, 10, 27, 8)]  # 09:00 CET


def test_daily_in_a_skipped_hour_runs_after_the_change():
    start = local(PARIS, 2024, 3, 30, 2, 30).astimezone(UTC)
    slots = [s.astimezone(PARIS).strftime("%d %H:%M") for s in walk("D", start, 2, tz=PARIS)]
    assert slots == ["31 03:30", "01 03:30"]


def test_weekly_keeps_local_time_across_dst_in_new_york():
    start = local(NEW_YORK, 2024, 10, 28, 8).astimezone(UTC)
    assert walk("W", start, 1, tz=NEW_YORK)[0] == local(NEW_YORK, 2024, 11, 4, 8)


def test_cron_is_evaluated_in_the_configured_zone_across_dst():
    current = local(PARIS, 2024, 3, 30, 9).astimezone(UTC)
    nxt = next_run_after("C", current, cron="0 9 * * *", tz=PARIS)
    assert nxt == utc(2024, 3, 31, 7)
    current = local(NEW_YORK, 2024, 11, 2, 9).astimezone(UTC)
    assert next_run_after("C", current, cron="0 9 * * *", tz=NEW_YORK) == utc(2024, 11, 3, 14)


# -- creating schedules ---------------------------------------------------------------------


@time_machine.travel(utc(2024, 5, 1, 10, 17, 30), tick=False)
def test_cron_schedule_starts_at_the_first_slot_after_now():
    item = schedule("math.floor", 1, schedule_type="C", cron="*/15 * * * *")
    assert item.next_run == utc(2024, 5, 1, 10, 30)


@time_machine.travel(utc(2024, 5, 1, 10, 17), tick=False)
def test_next_run_defaults_to_now_for_other_types():
    assert schedule("math.floor", 1, schedule_type="H").next_run == utc(2024, 5, 1, 10, 17)


def test_naive_next_run_is_read_in_the_configured_zone():
    qengine.configure(get_config(), time_zone="Europe/Paris")
    item = schedule("math.floor", next_run=datetime(2024, 7, 1, 9))
    assert Schedule.get(item.id).next_run == utc(2024, 7, 1, 7)


def test_aware_next_run_in_any_zone_is_stored_in_utc():
    item = schedule("math.floor", next_run=local(NEW_YORK, 2024, 1, 1, 9))
    stored = Schedule.get(item.id).next_run
    assert stored == utc(2024, 1, 1, 14)
    assert stored.tzinfo == UTC


def _assert_refused(match: str, *args, **kwargs) -> None:
    with pytest.raises(ScheduleError, match=match):
        schedule(*args, **kwargs)
    assert Schedule.list() == []


def test_invalid_cron_is_refused():
    _assert_refused("not a valid cron", "math.floor", schedule_type="C", cron="every day")


def test_cron_that_never_fires_is_refused():
    _assert_refused("never fires", "math.floor", schedule_type="C", cron="0 0 31 2 *")


@pytest.mark.parametrize("minutes", [None, 0, -5, 1.5])
def test_minutes_schedule_needs_positive_minutes(minutes):
    _assert_refused("minutes >= 1", "math.floor", schedule_type="I", minutes=minutes)


def test_unknown_type_lists_the_allowed_letters():
    _assert_refused(r"unknown schedule type 'X'.*I \(Minutes\).*C \(Cron\)", "math.floor",
                    schedule_type="X")  # fmt: skip


def test_callable_func_is_refused_with_the_reason():
    _assert_refused("stored", print)


def test_callable_hook_is_refused():
    _assert_refused("hook must be a dotted path", "math.floor", hook=print)


def test_func_without_a_module_is_refused():
    _assert_refused("not a dotted path", "floor")


@pytest.mark.parametrize("bad", [object(), range(3), datetime(2024, 1, 1)])
def test_non_literal_args_are_refused(bad):
    _assert_refused("args must be Python literals", "math.floor", bad)


def test_non_literal_kwargs_are_refused():
    _assert_refused("kwargs must map names to Python literals", "math.floor", when=object())


def test_unknown_q_option_is_refused():
    _assert_refused("unknown q_options", "math.floor", q_options={"colour": "red"})


def test_duplicate_name_is_refused_and_stores_nothing():
    schedule("math.floor", name="nightly")
    with pytest.raises(ScheduleError, match="'nightly' already exists"):
        schedule("math.ceil", name="nightly")
    assert [s.func for s in Schedule.list()] == ["math.floor"]


# -- storage ------------------------------------------------------------------------------


def test_get_list_save_delete_round_trip():
    item = schedule(
        "math.hypot", 3, 4, name="hyp", hook="tests.tasks.hook", schedule_type="I",
        minutes=5, repeats=24, next_run=utc(2024, 1, 1), cluster="alpha",
        q_options={"timeout": 30}, scale=[1, 2.5, "x", None],
    )  # fmt: skip
    got = Schedule.get("hyp")
    assert got == Schedule.get(item.id) == item
    assert got.args == (3, 4)
    assert got.kwargs == {"scale": [1, 2.5, "x", None]}
    assert got.q_options == {"timeout": 30}
    assert Schedule.get("nope") is None

    got.repeats = 3
    got.save()
    assert Schedule.get(item.id).repeats == 3
    schedule("math.floor", schedule_type="D")
    assert [s.name for s in Schedule.list(cluster="alpha")] == ["hyp"]
    assert [s.func for s in Schedule.list(schedule_type="D")] == ["math.floor"]
    assert len(Schedule.list(cluster=None)) == 1
    assert got.delete() is True
    assert got.delete() is False
    assert Schedule.get(item.id) is None


def test_list_refuses_unknown_filters():
    with pytest.raises(TypeError, match="colour"):
        Schedule.list(colour="red")


def test_args_written_by_hand_in_the_admin_are_read(engine):
    with engine.begin() as conn:
        conn.execute(
            sa.insert(ScheduleRow).values(
                func="math.copysign", args="2, -2", kwargs="", next_run=utc(2024, 1, 1)
            )
        )
        conn.execute(sa.insert(ScheduleRow).values(
            func="math.sqrt", args="9", kwargs=None, next_run=utc(2024, 1, 1)))  # fmt: skip
    assert [(s.args, s.kwargs) for s in Schedule.list()] == [((2, -2), {}), ((9,), {})]


def test_type_constants_and_choices():
    assert (Schedule.ONCE, Schedule.MINUTES, Schedule.CRON) == ("O", "I", "C")
    assert dict(Schedule.TYPE)["Q"] == "Quarterly"
    assert len(Schedule.TYPE) == 9


def test_schedule_types_keep_their_stored_letters_and_labels():
    # The letters are in every q_schedule row and Django's migration; the labels in its admin.
    assert [(kind.value, kind.label) for kind in ScheduleType] == [
        ("O", "Once"), ("I", "Minutes"), ("H", "Hourly"), ("D", "Daily"), ("W", "Weekly"),
        ("M", "Monthly"), ("Q", "Quarterly"), ("Y", "Yearly"), ("C", "Cron"),
    ]  # fmt: skip
    assert tuple((kind.value, kind.label) for kind in ScheduleType) == Schedule.TYPE
    assert all(getattr(Schedule, kind.name) is kind for kind in ScheduleType)
    assert ScheduleType.of("W") is ScheduleType.WEEKLY
    assert ScheduleType.of("X") is None
    assert ScheduleType.of(None) is None


def test_a_type_member_is_stored_as_its_letter(engine):
    schedule("math.floor", schedule_type=ScheduleType.DAILY)
    assert [type(row.schedule_type) for row in rows(engine)] == [str]
    assert [row.schedule_type for row in rows(engine)] == ["D"]
    assert Schedule.list()[0].schedule_type == Schedule.DAILY


def test_recurrence_reads_neither_the_store_nor_the_configuration():
    # It is the pure part: each rule can be checked with any zone and instant.
    tree = ast.parse(pathlib.Path(recurrence.__file__).read_text())
    modules = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules |= {
        a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
    }
    assert {name.split(".")[0] for name in modules}.isdisjoint(
        {"sqlalchemy", "runtime", "db", "config", "store", "rows", "claim"}
    )


def test_slot_task_ids_are_stable_and_distinct_per_cluster_schedule_and_slot():
    slot = utc(2024, 3, 1, 9)
    first = slot_task_id("alpha", 7, slot)
    assert first == slot_task_id("alpha", 7, slot)
    assert len({first, slot_task_id("beta", 7, slot), slot_task_id("alpha", 8, slot),
                slot_task_id("alpha", 7, slot + timedelta(minutes=1))}) == 4  # fmt: skip


def test_last_run_and_success_read_the_store():
    item = schedule("math.floor")
    assert item.last_run() is None
    assert item.success() is None
    now = datetime.now(UTC)
    task = Task(id="abc123", name="t", func="math.floor", started=now, stopped=now, success=True)
    from qengine.runtime import get_store

    get_store().save_task(task)
    item.task = "abc123"
    assert item.last_run().id == "abc123"
    assert item.success() is True


# -- advance: repeats and catch-up ----------------------------------------------------------


def make(schedule_type="D", **kw) -> Schedule:
    kw.setdefault("next_run", utc(2024, 1, 1, 9))
    return Schedule(func="math.floor", schedule_type=schedule_type, id=1, **kw)


def test_not_due_paused_or_unset_schedules_do_not_run():
    now = utc(2024, 1, 1, 9)
    assert advance(make(next_run=now + timedelta(seconds=1)), now, catch_up=True, tz=UTC).runs == 0
    assert advance(make(repeats=0), now, catch_up=True, tz=UTC).runs == 0
    assert advance(make(next_run=None), now, catch_up=True, tz=UTC).runs == 0


def test_forever_schedules_keep_counting_down():
    step = advance(make(repeats=-1), utc(2024, 1, 1, 9), catch_up=True, tz=UTC)
    assert (step.runs, step.repeats, step.next_run) == (1, -2, utc(2024, 1, 2, 9))


def test_positive_repeats_run_that_many_times_then_stop():
    step = advance(make(repeats=2), utc(2024, 1, 10), catch_up=True, tz=UTC)
    assert step.slots == (utc(2024, 1, 1, 9), utc(2024, 1, 2, 9))
    assert step.repeats == 0
    assert not step.delete


def test_once_with_negative_repeats_is_deleted_after_its_run():
    step = advance(make("O", repeats=-1), utc(2024, 1, 2), catch_up=True, tz=UTC)
    assert (step.runs, step.delete) == (1, True)


def test_once_with_positive_repeats_is_kept_and_not_run_again():
    step = advance(make("O", repeats=5), utc(2024, 1, 2), catch_up=True, tz=UTC)
    assert (step.runs, step.delete, step.repeats) == (1, False, 0)


def test_catch_up_replays_every_missed_slot():
    step = advance(make("D"), utc(2024, 1, 4, 10), catch_up=True, tz=UTC)
    assert [s.day for s in step.slots] == [1, 2, 3, 4]
    assert (step.next_run, step.repeats) == (utc(2024, 1, 5, 9), -5)


def test_without_catch_up_one_run_then_the_next_future_slot():
    step = advance(make("D"), utc(2024, 1, 4, 10), catch_up=False, tz=UTC)
    assert (step.runs, step.next_run, step.repeats) == (1, utc(2024, 1, 5, 9), -2)


def test_without_catch_up_minutes_skip_to_their_grid():
    item = make("I", minutes=7, next_run=utc(2024, 1, 1))
    step = advance(item, utc(2024, 6, 1), catch_up=False, tz=UTC)
    assert step.runs == 1
    assert utc(2024, 6, 1) < step.next_run <= utc(2024, 6, 1, 0, 7)
    assert (step.next_run - utc(2024, 1, 1)) % timedelta(minutes=7) == timedelta(0)


def test_without_catch_up_cron_moves_to_the_slot_after_now():
    item = make("C", cron="0 * * * *", next_run=utc(2024, 1, 1))
    step = advance(item, utc(2024, 1, 3, 5, 30), catch_up=False, tz=UTC)
    assert (step.runs, step.next_run) == (1, utc(2024, 1, 3, 6))


def test_max_runs_leaves_the_rest_of_the_backlog_due():
    item = make("I", minutes=1, next_run=utc(2024, 1, 1))
    step = advance(item, utc(2024, 1, 2), catch_up=True, tz=UTC, max_runs=10)
    assert step.runs == 10
    assert step.next_run == utc(2024, 1, 1, 0, 10)


# -- claim_due ----------------------------------------------------------------------------


def test_claim_enqueues_with_the_name_or_id_as_group(engine):
    named = schedule("math.floor", name="nightly", next_run=utc(2024, 1, 1))
    anonymous = schedule("math.ceil", next_run=utc(2024, 1, 1), repeats=3)
    enqueue = Recorder()
    claims = claim(engine, utc(2024, 1, 1), enqueue)
    assert sorted(enqueue.calls) == [(named.id, "nightly"), (anonymous.id, str(anonymous.id))]
    assert sorted(c.task_ids for c in claims) == [("task-1",), ("task-2",)]
    # Both were ONCE: the negative one is gone, the positive one stays with its task id.
    task_of = {c.schedule.id: c.task_ids[0] for c in claims}
    assert [(s.id, s.repeats, s.task) for s in Schedule.list()] == [
        (anonymous.id, 0, task_of[anonymous.id])
    ]


def test_claim_twice_for_the_same_instant_enqueues_once(engine):
    schedule("math.floor", schedule_type="H", next_run=utc(2024, 1, 1))
    enqueue = Recorder()
    claim(engine, utc(2024, 1, 1), enqueue)
    claim(engine, utc(2024, 1, 1), enqueue)
    assert len(enqueue.calls) == 1
    assert Schedule.list()[0].next_run == utc(2024, 1, 1, 1)


def test_concurrent_claims_run_each_slot_once(engine):
    schedule("math.floor", schedule_type="H", next_run=utc(2024, 1, 1))
    schedule("math.ceil", schedule_type="D", next_run=utc(2024, 1, 1))
    enqueue = Recorder()
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        claim(engine, utc(2024, 1, 1), enqueue)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(enqueue.calls) == 2


def test_claim_catches_up_in_one_transaction(engine):
    schedule("math.floor", schedule_type="D", next_run=utc(2024, 1, 1, 9))
    enqueue = Recorder()
    claim(engine, utc(2024, 1, 3, 12), enqueue)
    item = Schedule.list()[0]
    assert len(enqueue.calls) == 3
    assert (item.next_run, item.repeats, item.task) == (utc(2024, 1, 4, 9), -4, "task-3")


def test_claim_without_catch_up_runs_once(engine):
    schedule("math.floor", schedule_type="D", next_run=utc(2024, 1, 1, 9))
    enqueue = Recorder()
    claim(engine, utc(2024, 1, 3, 12), enqueue, catch_up=False)
    assert len(enqueue.calls) == 1
    assert Schedule.list()[0].next_run == utc(2024, 1, 4, 9)


def test_claim_respects_the_cluster_restriction(engine):
    mine = schedule("math.floor", next_run=utc(2024, 1, 1), cluster="alpha")
    schedule("math.ceil", next_run=utc(2024, 1, 1), cluster="beta")
    anyone = schedule("math.trunc", next_run=utc(2024, 1, 1))
    enqueue = Recorder()
    claim(engine, utc(2024, 1, 1), enqueue, cluster="alpha")
    assert sorted(i for i, _ in enqueue.calls) == [mine.id, anyone.id]


def test_claim_skips_paused_schedules(engine):
    schedule("math.floor", next_run=utc(2024, 1, 1), repeats=0)
    enqueue = Recorder()
    assert claim(engine, utc(2024, 2, 1), enqueue) == []
    assert enqueue.calls == []


def test_claim_uses_the_zone_for_calendar_types(engine):
    schedule("math.floor", schedule_type="D", next_run=local(PARIS, 2024, 3, 30, 9))
    claim(engine, utc(2024, 3, 30, 8), Recorder(), tz=PARIS)
    assert Schedule.list()[0].next_run == utc(2024, 3, 31, 7)


def test_a_failing_schedule_does_not_block_the_others(engine):
    broken = schedule("math.floor", next_run=utc(2024, 1, 1), schedule_type="H")
    fine = schedule("math.ceil", next_run=utc(2024, 1, 1), schedule_type="H")

    def enqueue(item: Schedule, *, group: str, conn: sa.Connection, slot: datetime) -> str:
        if item.id == broken.id:
            raise RuntimeError("broker down")
        return "ok"

    claims = claim(engine, utc(2024, 1, 1), enqueue)
    assert {c.schedule.id: c.error for c in claims} == {
        broken.id: "RuntimeError: broker down", fine.id: None,
    }  # fmt: skip
    assert Schedule.get(broken.id).next_run == utc(2024, 1, 1)  # still due: retried later
    assert Schedule.get(fine.id).next_run == utc(2024, 1, 1, 1)


def test_seconds_until_due(engine):
    now = utc(2024, 1, 1)
    assert seconds_until_due(engine, now, "default") is None
    schedule("math.floor", next_run=now + timedelta(seconds=90))
    schedule("math.ceil", next_run=now + timedelta(seconds=30), cluster="beta")
    schedule("math.trunc", next_run=now - timedelta(hours=1), repeats=0)
    assert seconds_until_due(engine, now, "default") == 90
    assert seconds_until_due(engine, now, "beta") == 30
    assert seconds_until_due(engine, now + timedelta(hours=1), "default") == 0


# -- row locks on PostgreSQL and MariaDB ------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("postgres_url", marks=pytest.mark.postgres),
        pytest.param("mariadb_url", marks=pytest.mark.mariadb),
    ]
)
def server_url(request) -> str:
    return request.getfixturevalue(request.param)


def test_a_locked_schedule_is_skipped_by_another_cluster(server_url, cluster_name):
    engine = get_engine(server_url)
    item = Schedule(func="math.floor", schedule_type="H", next_run=utc(2024, 1, 1),
                    cluster=cluster_name).save(store_url=server_url)  # fmt: skip
    inside, release = threading.Event(), threading.Event()
    first = Recorder()

    def slow(schedule: Schedule, *, group: str, conn: sa.Connection, slot: datetime) -> str:
        inside.set()
        release.wait(10)
        return first(schedule, group=group, conn=conn, slot=slot)

    thread = threading.Thread(target=claim, args=(engine, utc(2024, 1, 1), slow),
                              kwargs={"cluster": cluster_name})  # fmt: skip
    thread.start()
    assert inside.wait(10)
    second = Recorder()
    assert claim(engine, utc(2024, 1, 1), second, cluster=cluster_name) == []  # skipped, no wait
    release.set()
    thread.join(10)
    assert claim(engine, utc(2024, 1, 1), second, cluster=cluster_name) == []  # no longer due
    assert (len(first.calls), second.calls) == (1, [])
    stored = Schedule.get(item.id, store_url=server_url)
    assert (stored.next_run, stored.repeats, stored.task) == (utc(2024, 1, 1, 1), -2, "task-1")
