"""Comparing a live API response with an AWS-recorded one (localstack-snapshot placeholders)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
RECORDED_ACCOUNT = "111111111111"


def recorded_api(case: str, key: str) -> Any:
    """One recorded response of the Lambda API snapshot (tests/conformance/lambda_api_esm.json)."""
    cases = json.loads((CONFORMANCE / "lambda_api_esm.json").read_text())["cases"]
    return cases[case][key]


def _pattern(recorded: str, account: str) -> re.Pattern[str]:
    out = ""
    for part in re.split(r"(<[^<>]+>)", recorded):
        if part == "<partition>":
            out += "aws"
        elif part == "<region>":
            out += r"[a-z]{2}-[a-z]+-\d"
        elif part.startswith("<") and part.endswith(">"):
            out += ".+"
        else:
            out += re.escape(part.replace(RECORDED_ACCOUNT, account))
    return re.compile(out)


def mismatches(got: Any, recorded: Any, account: str, where: str = "") -> list[str]:
    """Differences between a live response and a recorded one: the same keys, and values
    equal except where the recording has a placeholder (any value of that form)."""
    if isinstance(recorded, dict):
        if not isinstance(got, dict):
            return [f"{where}: {got!r} is not an object"]
        keys = set(recorded) - {"ResponseMetadata"}
        have = set(got) - {"ResponseMetadata"}
        out = [f"{where}.{k}: missing" for k in sorted(keys - have)]
        out += [f"{where}.{k}: not recorded" for k in sorted(have - keys)]
        for k in sorted(keys & have):
            out += mismatches(got[k], recorded[k], account, f"{where}.{k}")
        return out
    if isinstance(recorded, list):
        if not isinstance(got, list) or len(got) != len(recorded):
            return [f"{where}: {got!r} vs recorded {recorded!r}"]
        out = []
        for i, (g, r) in enumerate(zip(got, recorded, strict=True)):
            out += mismatches(g, r, account, f"{where}[{i}]")
        return out
    if recorded == "datetime":
        return [] if got is not None else [f"{where}: missing time"]
    if isinstance(recorded, str) and isinstance(got, str):
        return (
            []
            if _pattern(recorded, account).fullmatch(got)
            else [f"{where}: {got!r} does not match recorded {recorded!r}"]
        )
    return [] if got == recorded else [f"{where}: {got!r} vs recorded {recorded!r}"]
