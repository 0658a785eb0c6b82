"""The filter engine against AWS-validated cases (tests/conformance/FILTERING_SOURCES.md).

Every case asserts the outcome exactly: MATCH / NO_MATCH, or INVALID_PATTERN with the precise
reason. Matching cases are also run through the general (array-consistent) algorithm on its own,
so the fast path and the general one are both held to AWS's answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.filtering import FilterPatternError, compile_pattern

CASES_FILE = Path(__file__).resolve().parents[1] / "conformance" / "filtering_cases.jsonl"


def _load() -> list[dict[str, Any]]:
    with CASES_FILE.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


CASES = _load()


def _param(case: dict[str, Any]) -> Any:
    marks = [pytest.mark.skip(reason=case["skip"])] if "skip" in case else []
    return pytest.param(case, id=case["id"], marks=marks)


def test_the_case_file_is_complete() -> None:
    assert len(CASES) == 217
    assert len({c["id"] for c in CASES}) == 217
    assert sum(c["source"] == "eventbridge-template" for c in CASES) == 157
    assert sum(c["source"] == "lambda-esm" for c in CASES) == 60
    skipped = [c["id"] for c in CASES if "skip" in c]
    assert skipped == ["ls-template:content_wildcard_complex_EXC"]


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_conformance(case: dict[str, Any]) -> None:
    expected = case["expected"]
    if expected == "INVALID_PATTERN":
        with pytest.raises(FilterPatternError) as exc_info:
            compile_pattern(case["pattern"])
        message = str(exc_info.value)
        assert message, "the reason must not be empty"
        assert message == case["reason"]
        return
    pattern = compile_pattern(case["pattern"])
    event = case["event"]
    assert pattern.matches(event) is (expected == "MATCH")
    # the general algorithm alone gives the same answer as the fast path
    assert pattern._matches_general(event) is (expected == "MATCH")
