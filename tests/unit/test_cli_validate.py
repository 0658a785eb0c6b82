"""``python -m runtime validate CONFIG`` as a user runs it: exit code, stdout and stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
ACCOUNT = "123456789012"
QUEUE = f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders"
FIFO = f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders.fifo"


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESM_")}
    python = str(PYTHON) if PYTHON.exists() else sys.executable
    return subprocess.run(
        [python, "-m", "runtime", "validate", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


VALID = f"""\
functions:
  orders:
    Handler: handlers.orders.handler
    Timeout: 10
eventSourceMappings:
  - FunctionName: orders
    EventSourceArn: {QUEUE}
  - FunctionName: arn:aws:lambda:us-east-1:{ACCOUNT}:function:orders
    EventSourceArn: {FIFO}
    UUID: ABCDEF01-2345-6789-ABCD-EF0123456789
    Enabled: false
    ScalingConfig:
      MaximumConcurrency: 5
  - FunctionName: orders
    EventSourceArn: arn:aws:sqs:us-east-1:{ACCOUNT}:bulk
    BatchSize: 500
    MaximumBatchingWindowInSeconds: 2
"""


def test_valid_file_prints_ok_and_one_line_per_mapping(tmp_path: Path) -> None:
    path = tmp_path / "esm.yaml"
    path.write_text(VALID)
    result = validate(str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines == [
        f"{path}: OK (1 functions, 3 mappings)",
        # Derived UUID of (orders, QUEUE): pinned, it names metric series.
        f"  d9b7e6fb-6dc7-5455-94b7-74ef0c41c006  orders <- {QUEUE}  "
        "BatchSize=10 Window=0s MaximumConcurrency=- (enabled)",
        f"  abcdef01-2345-6789-abcd-ef0123456789  orders <- {FIFO}  "
        "BatchSize=10 Window=0s MaximumConcurrency=5 (disabled)",
        f"  {lines[3].split()[0]}  orders <- arn:aws:sqs:us-east-1:{ACCOUNT}:bulk  "
        "BatchSize=500 Window=2s MaximumConcurrency=- (enabled)",
    ]
    assert len(lines[3].split()[0]) == 36


INVALID = f"""\
functions:
  orders:
    Handler: handlers.orders.handler
    Timeout: 901
  broken:
    Handler: handlers.no_such_module.handler
eventSourceMappings:
  - FunctionName: orders
    EventSourceArn: {QUEUE}
    BatchSize: 100
    Colour: blue
  - FunctionName: payments
    EventSourceArn: {QUEUE}
  - FunctionName: orders
    EventSourceArn: {FIFO}
    BatchSize: 20
  - FunctionName: orders
    EventSourceArn: arn:aws:sns:us-east-1:{ACCOUNT}:orders
  - FunctionName: orders
    EventSourceArn: arn:aws:sqs:us-east-1:{ACCOUNT}:other
    ParallelizationFactor: 2
"""


def test_invalid_file_exits_1_and_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "esm.yaml"
    path.write_text(INVALID)
    result = validate(str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    problems = [
        "functions.orders.Timeout: Input should be less than or equal to 900 (got 901)",
        "functions.broken.Handler: Runtime.ImportModuleError: Unable to import module "
        "'handlers.no_such_module': ModuleNotFoundError: No module named "
        "'handlers.no_such_module'",
        "eventSourceMappings[0].Colour: unknown field",
        "eventSourceMappings[0].MaximumBatchingWindowInSeconds: Maximum batch window in seconds "
        "must be greater than 0 if maximum batch size is greater than 10",
        "eventSourceMappings[1].FunctionName: Function does not exist ('payments' is not in "
        "functions)",
        "eventSourceMappings[2].BatchSize: must be at most 10 for FIFO queues (got 20)",
        "eventSourceMappings[3].EventSourceArn: Unrecognized event source. "
        f"('arn:aws:sns:us-east-1:{ACCOUNT}:orders')",
        "eventSourceMappings[4].ParallelizationFactor: Unsupported ParallelizationFactor "
        "parameter for given event source mapping type.",
    ]
    assert result.stderr.splitlines() == [
        f"{path}: {len(problems)} problem(s)",
        *(f"  - {p}" for p in problems),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read file: No such file or directory"),
        ("functions: [unclosed\n", "invalid YAML: "),
        (
            "- just\n- a list\n",
            "top level must be a mapping with functions and eventSourceMappings",
        ),
    ],
    ids=["missing", "bad-yaml", "list"],
)
def test_unreadable_files_exit_1(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "esm.yaml"
    if content is not None:
        path.write_text(content)
    result = validate(str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    first, second = result.stderr.splitlines()[:2]
    assert first == f"{path}: 1 problem(s)"
    assert second.startswith(f"  - {message}")


def test_validate_without_a_file_is_a_usage_error() -> None:
    result = validate()
    assert result.returncode == 2
    assert "the following arguments are required: config" in result.stderr
