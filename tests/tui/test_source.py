"""tui.source: snapshots, problems by part, and actions that never raise."""

from __future__ import annotations

import pytest

import qengine
from qengine.errors import BrokerUnavailable, StoreError
from qengine.schedules import Schedule
from tui.model import PollRequest, TaskFilter
from tui.source import BROKER, STORE, Source, SourceError, _part_of

from .conftest import NOW, FixedSource, publish_cluster


def test_a_full_poll_reads_every_part(fixed_tasks, fixed_schedules, queued):
    publish_cluster("17004", task_q=16, queue_limit=16)
    snapshot = FixedSource().poll(PollRequest(full=True))
    assert snapshot.problems == {}
    assert snapshot.checked == {BROKER, STORE}
    assert snapshot.clusters is not None
    assert snapshot.clusters[0].is_full
    assert snapshot.queue is not None
    assert (snapshot.queue.queued, snapshot.queue.in_flight) == (2, 0)
    assert snapshot.summary is not None
    assert (snapshot.summary.successes, snapshot.summary.failures) == (12, 2)
    assert snapshot.rate is not None
    assert len(snapshot.rate) == 60
    assert snapshot.tasks is not None
    assert len(snapshot.tasks) == 14
    assert snapshot.failures is not None
    assert len(snapshot.failures) == 2
    assert snapshot.schedules is not None
    assert [s.every for s in snapshot.schedules] == ["0 3 * * *", "5 min", ""]
    assert snapshot.groups == ["adds", "reports"]


def test_a_quick_poll_reads_only_clusters_and_queue(fixed_tasks):
    snapshot = Source().poll(PollRequest(full=False))
    assert snapshot.clusters == []
    assert snapshot.queue is not None
    assert snapshot.summary is None
    assert snapshot.tasks is None


def test_task_lists_follow_their_filters(fixed_tasks):
    request = PollRequest(tasks=TaskFilter(group="add"), failures=TaskFilter(func="tests.tasks.e"))
    snapshot = Source().poll(request)
    assert snapshot.tasks is not None
    assert {t.group for t in snapshot.tasks} == {"adds"}
    assert snapshot.failures is not None
    assert [t.name for t in snapshot.failures] == ["echo-broken"]


def test_times_are_shown_in_the_configured_zone(fixed_tasks):
    qengine.configure(store=qengine.get_config().store, time_zone="Europe/Paris")
    (task,) = Source().tasks(TaskFilter(group="reports"))
    assert task.stopped is not None
    assert task.stopped.utcoffset() is not None
    assert task.stopped.hour == 10  # 09:25 UTC in March is 10:25 in Paris


def test_a_failed_part_is_named_and_the_rest_still_read(monkeypatch, fixed_tasks):
    def down(self):
        raise BrokerUnavailable("cannot reach the queue")

    monkeypatch.setattr(Source, "queue", down)
    snapshot = Source().poll(PollRequest())
    assert snapshot.problems == {BROKER: "cannot reach the queue"}
    assert snapshot.queue is None
    assert snapshot.tasks is not None


@pytest.mark.parametrize(
    ("error", "part"),
    [
        (BrokerUnavailable("x"), BROKER),
        (StoreError("x"), STORE),
        (pytest.importorskip("redis").ConnectionError("x"), BROKER),
        (pytest.importorskip("sqlalchemy.exc").OperationalError("s", {}, Exception("x")), STORE),
        (ValueError("x"), "default"),
    ],
)
def test_errors_are_attributed_by_where_they_come_from(error, part):
    assert _part_of(error, "default") == part


def test_long_errors_are_cut_to_one_line(monkeypatch):
    def down(self):
        raise StoreError("first line " + "x" * 500 + "\nSQL: select …")

    monkeypatch.setattr(Source, "clusters", down)
    problem = Source().poll(PollRequest(full=False)).problems[STORE]
    assert "\n" not in problem
    assert len(problem) <= 200


def test_task_detail_turns_values_into_text(fixed_tasks):
    info = Source().task("f" * 32)
    assert info is not None
    assert info.args == "('disk full',)"
    assert info.result.startswith("ValueError: disk full")
    assert info.attempts == 3
    assert Source().task("missing") is None


def test_actions_report_failures_instead_of_raising():
    source = Source()
    result = source.pause(999)
    assert not result.ok
    assert "schedule #999 no longer exists" in result.message
    assert not source.resubmit("missing").ok


def test_pause_twice_and_resume_an_unpaused_schedule_say_so(fixed_schedules):
    source = Source()
    item = Schedule.get("every-five")
    assert item is not None
    assert item.id is not None
    assert source.pause(item.id).ok
    again = source.pause(item.id)
    assert again.ok
    assert "already paused" in again.message
    assert source.resume(item.id).message.endswith("(repeats 7)")
    assert "not paused" in source.resume(item.id).message


def test_delete_forgets_the_pause_note(fixed_schedules):
    from qengine import queries

    source = Source()
    item = Schedule.get("every-five")
    assert item is not None
    assert item.id is not None
    source.pause(item.id)
    assert source.delete(item.id).ok
    assert queries.paused_repeats(qengine.get_config(), item.id) is None


def test_describe_masks_passwords():
    qengine.configure(store="postgresql+psycopg://me:hunter2@db.example/q", secret_key="k" * 32)
    text = Source().describe()
    assert "hunter2" not in text
    assert text.startswith("default · postgresql+psycopg://me:")


@pytest.mark.usefixtures("config_file_reset")
def test_open_reads_a_config_file_and_reports_a_bad_one(tmp_path):
    good = tmp_path / "q.toml"
    good.write_text(f'name = "reports"\nstore = "sqlite:///{tmp_path}/other.sqlite3"\n')
    assert Source.open(str(good)).name == "reports"
    bad = tmp_path / "bad.toml"
    bad.write_text("workers = 'many'\n")
    with pytest.raises(SourceError, match="workers"):
        Source.open(str(bad))


def test_the_clock_is_the_sources():
    assert FixedSource().clock() == NOW


@pytest.mark.redis
def test_a_redis_broker_gives_clusters_and_queue(redis_url, cluster_name, redis_client):
    from qengine.status import Stat

    config = qengine.configure(
        store=qengine.get_config().store, broker=redis_url, name=cluster_name, secret_key="k" * 32
    )
    Stat(cluster_id="77", name=cluster_name, status="Working", workers=[1]).save(config)
    qengine.async_task("tests.tasks.add", 1, 2)
    source = Source()
    try:
        snapshot = source.poll(PollRequest(full=False))
        assert snapshot.problems == {}
        assert [c.cluster_id for c in snapshot.clusters or []] == ["77"]
        assert snapshot.queue is not None
        assert snapshot.queue.queued == 1
    finally:
        source.close()
        for key in redis_client.scan_iter(match=f"qengine:{cluster_name}:*"):
            redis_client.delete(key)
