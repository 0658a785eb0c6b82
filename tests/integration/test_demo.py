"""The README's first command keeps working: the demo runs traffic through the runtime."""

from __future__ import annotations

import re
import subprocess
import sys
from urllib.parse import urlparse

import pytest

from tests.support.emulator import REPO, free_port

pytestmark = pytest.mark.integration


def test_demo_runs_traffic_and_stops_cleanly(aws_endpoint):
    port = urlparse(aws_endpoint).port
    out = subprocess.run(
        [
            sys.executable,
            "deploy/demo.py",
            f"--aws-port={port}",
            f"--http-port={free_port()}",
            "--duration=5",
            "--rate=100",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    processed = [int(n) for n in re.findall(r"processed\s+(\d+)", out.stdout)]
    assert processed and processed[-1] > 100, out.stdout
    checkpointed = [int(n) for n in re.findall(r"checkpointed\s+(\d+)", out.stdout)]
    assert checkpointed and checkpointed[-1] > 50, out.stdout
    assert "runtime exited with 0" in out.stdout
