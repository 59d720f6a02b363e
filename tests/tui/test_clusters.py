"""The cluster table: live snapshots every second, colours, the full task queue, totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import qengine
from qengine.status import Stat
from tui.widgets.clusters_table import (
    FULL_STYLE,
    REJECTED_STYLE,
    STATE_STYLES,
    TOTAL_KEY,
    ClustersTable,
)
from tui.widgets.summary_panel import SummaryPanel

from .conftest import FixedSource, monitor, publish_cluster, run


def test_a_cluster_appears_while_it_publishes_and_disappears_when_it_stops():
    config = qengine.get_config()
    stat = Stat(cluster_id="4242", name=config.name, host="vega", status="Idle", workers=[1, 2])

    async def scenario() -> None:
        async with monitor(poll_s=0.1) as pilot:
            table = pilot.app.screen.query_one(ClustersTable)
            assert table.clusters == []
            stat.save(config)  # what a running cluster does every second
            for _ in range(50):
                await pilot.pause(0.05)
                if table.clusters:
                    break
            assert [c.cluster_id for c in table.clusters] == ["4242"]
            assert table.clusters[0].pool == 2
            stat.clear(config)  # its snapshot is gone (expired, or removed on stop)
            for _ in range(50):
                await pilot.pause(0.05)
                if not table.clusters:
                    break
            assert table.clusters == []

    run(scenario)


def test_states_are_coloured_the_full_task_queue_marked_and_totals_summed(fixed_clusters):
    async def scenario() -> None:
        async with monitor(FixedSource()) as pilot:
            table = pilot.app.screen.query_one(ClustersTable)
            assert [c.host for c in table.clusters] == ["orion", "phoenix"]
            orion = table.get_row("17004")
            assert [str(cell) for cell in orion] == [
                "orion", "17004", "Working", "4", "16", "1", "0", "0:01:15", "0", "0",
            ]  # fmt: skip
            assert orion[2].style == STATE_STYLES["Working"]
            assert FULL_STYLE in {str(span.style) for span in orion[4].spans}
            phoenix = table.get_row("14710")
            assert str(phoenix[7]) == "1d 00:10:18"
            assert not phoenix[4].spans  # 0 of 64: not full
            totals = [str(cell) for cell in table.get_row(TOTAL_KEY)]
            assert totals == ["2 clusters", "", "", "12", "16", "1", "2", "", "0", "0"]

    run(scenario)


def test_rejected_packages_stand_out_and_redeliveries_show_beside_them():
    config = qengine.get_config()
    for cluster_id, rejected, redeliveries in (("51", 3, 2), ("52", 0, 1)):
        Stat(
            cluster_id=cluster_id, name=config.name, host="vega", status="Idle", workers=[1],
            rejected=rejected, redeliveries=redeliveries,
        ).save(config)  # fmt: skip

    async def scenario() -> None:
        async with monitor(FixedSource()) as pilot:
            table = pilot.app.screen.query_one(ClustersTable)
            assert table.COLUMNS[-2:] == ("Rej", "Redel")
            rejecting, quiet = table.get_row("51"), table.get_row("52")
            assert [str(cell) for cell in rejecting[-2:]] == ["3", "2"]
            assert REJECTED_STYLE in {str(span.style) for span in rejecting[-2].spans}
            assert [str(cell) for cell in quiet[-2:]] == ["0", "1"]
            assert not quiet[-2].spans
            assert [str(cell) for cell in table.get_row(TOTAL_KEY)[-2:]] == ["3", "3"]
            text = str(pilot.app.screen.query_one(SummaryPanel).content)
            assert text.splitlines()[-1].split() == ["Rejected", "3", "Redelivered", "3"]

    run(scenario)


def test_an_expired_snapshot_is_not_shown():
    publish_cluster("1", lifetime=timedelta(seconds=-1))

    async def scenario() -> None:
        async with monitor() as pilot:
            table = pilot.app.screen.query_one(ClustersTable)
            assert table.clusters == []
            assert str(table.get_row(TOTAL_KEY)[0]) == "no cluster running"

    run(scenario)


def test_uptime_counts_from_the_time_of_birth():
    publish_cluster("7", up_s=3 * 3600 + 5)
    later = FixedSource()
    later.clock = lambda: datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC) + timedelta(seconds=10)
    (info,) = later.clusters()
    assert info.uptime_s == 3 * 3600 + 15
