"""Functions are isolated as on Lambda: each runs in worker processes of its own."""

from __future__ import annotations

import pytest

from tests.support.aws import Queue, wait_until
from tests.support.records import read_invocations

pytestmark = pytest.mark.integration


def two_functions(record_file, a: Queue, b: Queue, **function: object) -> dict[str, object]:
    def fn(greeting: str) -> dict[str, object]:
        return {
            "Handler": "tests.handlers.behave.handler",
            "Timeout": 5,
            "Environment": {"Variables": {"RECORD_FILE": str(record_file), "GREETING": greeting}},
            **function,
        }

    return {
        "functions": {"english": fn("hello"), "french": fn("bonjour")},
        "eventSourceMappings": [
            {"FunctionName": "english", "EventSourceArn": a.arn},
            {"FunctionName": "french", "EventSourceArn": b.arn},
        ],
    }


def test_two_functions_see_their_own_environment(sqs, runtime_factory, record_file):
    a, b = Queue.create(sqs, "en"), Queue.create(sqs, "fr")
    cfg = two_functions(record_file, a, b)
    rt = runtime_factory(cfg, workers=1).start()
    a.send({"n": i} for i in range(5))
    b.send({"n": i} for i in range(5))
    wait_until(lambda: a.total() == 0 and b.total() == 0, 30, what="both queues drained")
    invs = read_invocations(record_file)
    seen = {(i.function_name, i.context["greeting"], i.context["greeting_at_import"]) for i in invs}
    assert seen == {("english", "hello", "hello"), ("french", "bonjour", "bonjour")}
    # Worker processes are per function: no process ran both.
    pids = {
        name: {i.pid for i in invs if i.function_name == name} for name in ("english", "french")
    }
    assert not pids["english"] & pids["french"]
    assert rt.metric("esm_workers_alive") == 2
    assert rt.stop() == 0


def test_a_crashing_function_does_not_touch_another_functions_batches(
    sqs, runtime_factory, record_file
):
    a, b = Queue.create(sqs, "crash", visibility_timeout=30), Queue.create(sqs, "steady")
    cfg = two_functions(record_file, a, b)
    rt = runtime_factory(cfg, workers=1).start()
    b.send([{"n": 0, "sleep": 2}])
    wait_until(lambda: read_invocations(record_file), 10, what="the steady batch started")
    a.send([{"exit": 3}])
    wait_until(lambda: b.total() == 0, 15, what="the steady batch finished and was deleted")
    steady = [i for i in read_invocations(record_file) if i.function_name == "french"]
    assert len(steady) == 1 and steady[0].outcome == "returned"
    wait_until(lambda: rt.metric("esm_worker_restarts_total") >= 1, 15)
    rt.kill_tree()
