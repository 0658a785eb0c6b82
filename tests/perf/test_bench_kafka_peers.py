"""bench_kafka's peers phase (A4) still runs end to end, on a tiny topic: each peer's venv runs
its consumer to the end of the topic and the parent reads its figures.

Only this phase, not the whole bench with ``--peers`` (about 40 s even at 2000 records), so it
stays within a quarter of a minute. tests/run.sh (CI) installs the peers (``deploy/setup.sh
--perf``); with ``--test`` alone there is no ``.peer-venv`` and this test is skipped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tests.perf.kafka_common import (
    PARTITIONS,
    Context,
    accepted_extra_config,
    create_topic,
    fill_topic,
)
from tests.perf.kafka_peer_runs import PEERS, missing_peers, run_peers

pytestmark = pytest.mark.integration

N = 2000


@pytest.mark.timeout(120)
def test_peers_phase_smoke(kafka_bootstrap: str, tmp_path: Path) -> None:
    missing = missing_peers()
    if missing:
        pytest.skip(f"no venv for {', '.join(missing)}: run deploy/setup.sh --perf")
    args = argparse.Namespace(records=N, timeout=60.0)
    extra = accepted_extra_config(kafka_bootstrap)
    ctx = Context(args, kafka_bootstrap, tmp_path, {}, extra, {})
    topic = create_topic(kafka_bootstrap, PARTITIONS, "bench-peers")
    fill_topic(kafka_bootstrap, topic, N)
    runs = run_peers(ctx, topic)
    assert [r.peer for r in runs] == list(PEERS)
    for r in runs:
        assert r.records == N, r
        assert r.version and r.confluent_kafka and r.librdkafka, r
        assert 0 < r.join_seconds < r.seconds, r
        assert 0 < r.processed_seconds <= r.seconds_no_join, r
        assert r.records_per_s > 0 and r.records_per_s_no_join > 0, r
        assert r.peer in r.cpu_seconds and "other" in r.cpu_seconds, r
