"""The filter pattern engine operator by operator, its error messages and its matching model.

The AWS-validated cases are in test_filter_conformance.py; these are our own, for every operator
and error path, the duplicate-key rule, ``$or`` nesting, array consistency, ``exists`` on
objects, numeric edge cases, and the fast path against the general algorithm.
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from runtime.filtering import (
    MAX_ALTERNATIVES,
    MAX_NESTING,
    CompiledPattern,
    FilterPatternError,
    compile_pattern,
)
from runtime.filtering.array_match import Collector


def compiled(pattern: Any, **options: Any) -> CompiledPattern:
    return compile_pattern(pattern if isinstance(pattern, str) else json.dumps(pattern), **options)


def matches(pattern: Any, event: Any, **options: Any) -> bool:
    """Match with both algorithms and insist that they agree."""
    p = compiled(pattern, **options)
    result = p.matches(event)
    if isinstance(event, dict):
        assert p._matches_general(event) is result, "fast path and general algorithm disagree"
    return result


def rule(values: list[Any]) -> dict[str, Any]:
    return {"f": values}


def check(values: list[Any], yes: list[Any], no: list[Any]) -> None:
    """``{"f": values}`` matches every ``{"f": v}`` for v in yes, none for v in no."""
    for v in yes:
        assert matches(rule(values), {"f": v}), v
    for v in no:
        assert not matches(rule(values), {"f": v}), v


MISSING = object()


def check_missing(values: list[Any], expected: bool) -> None:
    assert matches(rule(values), {"other": 1}) is expected


# ------------------------------------------------------------------------------------------
# Exact values
# ------------------------------------------------------------------------------------------


def test_exact_string_is_case_and_type_sensitive() -> None:
    check(["Alice"], yes=["Alice"], no=["alice", "Alice ", 1, None, True, ["x"]])
    check_missing(["Alice"], False)


def test_empty_string_matches_only_the_empty_string() -> None:
    check([""], yes=[""], no=[" ", None, 0, False])


def test_null_matches_only_null() -> None:
    check([None], yes=[None], no=["null", 0, False, ""])
    check_missing([None], False)


def test_booleans_match_only_themselves() -> None:
    check([True], yes=[True], no=[1, "true", False, None])
    check([False], yes=[False], no=[0, "false", True, None])


def test_values_of_a_list_are_or_ed() -> None:
    check(["Credit", "Debit", 5, None], yes=["Credit", "Debit", 5, None], no=["Cash", 6, False])


def test_fields_are_and_ed() -> None:
    pattern = {"Location": ["New York"], "Day": ["Monday"]}
    assert matches(pattern, {"Location": "New York", "Day": "Monday"})
    assert not matches(pattern, {"Location": "New York", "Day": "Tuesday"})
    assert not matches(pattern, {"Location": "New York"})


def test_exactly_operator() -> None:
    check([{"exactly": "a"}], yes=["a"], no=["A", "ab"])


def test_nested_objects_and_keys_are_case_sensitive() -> None:
    pattern = {"body": {"order": {"status": ["paid"]}}}
    assert matches(pattern, {"body": {"order": {"status": "paid"}}})
    assert not matches(pattern, {"body": {"Order": {"status": "paid"}}})
    assert not matches(pattern, {"body": {"order": "paid"}})
    assert not matches(pattern, {"body": "paid"})


def test_unicode_strings() -> None:
    check(["café 🚀"], yes=["café 🚀"], no=["cafe 🚀"])


# ------------------------------------------------------------------------------------------
# Numbers
# ------------------------------------------------------------------------------------------


def test_number_literals_compare_by_value_like_event_ruler() -> None:
    # event-ruler and the AWS-validated number_comparison_float case: 300 matches 300.0
    check([300], yes=[300, 300.0, 3e2], no=[301, "300", True, None])
    check([0.1], yes=[0.1], no=[0.10000001, "0.1"])
    check([-0.0], yes=[0, 0.0, -0.0], no=[1e-300])


def test_number_literals_can_compare_by_json_representation() -> None:
    # Lambda's documentation: "300, 300.0 and 3.0e2 are not considered equal". Once decoded
    # by Python's json, 300.0 and 3.0e2 are the same float: only int vs float can be told.
    strict = {"number_match": "representation"}
    assert matches({"n": [300]}, {"n": 300}, **strict)
    assert not matches({"n": [300]}, {"n": 300.0}, **strict)
    assert matches('{"n": [300.0]}', {"n": 300.0}, **strict)
    assert matches('{"n": [3.0e2]}', {"n": 300.0}, **strict)
    assert not matches('{"n": [3.0e2]}', {"n": 300}, **strict)
    # numeric operators still compare values
    assert matches({"n": [{"numeric": ["=", 300]}]}, {"n": 300.0}, **strict)
    with pytest.raises(ValueError, match="number_match"):
        compile_pattern('{"n": [1]}', number_match="text")  # type: ignore[arg-type]


def test_numbers_too_big_for_a_double_match_by_their_text() -> None:
    big = 12345678901234567890  # not exactly a double: event-ruler's exact-text fallback
    check([big], yes=[big], no=[big + 1, float(big), str(big)])


def test_numeric_comparisons() -> None:
    check([{"numeric": ["=", 100]}], yes=[100, 100.0], no=[99.999, 101, "100", None, True])
    check([{"numeric": ["<", 100]}], yes=[99, -1e300, 99.99], no=[100, 101])
    check([{"numeric": ["<=", 100]}], yes=[100, 99], no=[100.0001])
    check([{"numeric": [">", 100]}], yes=[101, 100.5, 1e300], no=[100, 99])
    check([{"numeric": [">=", 100]}], yes=[100, 101], no=[99.9999])


def test_numeric_ranges_have_open_and_closed_ends() -> None:
    check([{"numeric": [">", 10, "<=", 20]}], yes=[10.0001, 20], no=[10, 20.0001])
    check([{"numeric": [">=", 10, "<", 20]}], yes=[10, 19.999], no=[20, 9])
    check([{"numeric": [">", 0, "<", 1]}], yes=[0.5], no=[0, 1])
    check([{"numeric": [">=", -1.5, "<=", -0.5]}], yes=[-1.5, -1, -0.5], no=[0, -2])


def test_numeric_matches_only_json_numbers() -> None:
    check(
        [{"numeric": [">", 0]}],
        yes=[1, 0.5],
        no=["5", True, None, float("inf"), float("nan"), 10**400, 12345678901234567891],
    )


def test_numeric_ints_beyond_2_53_are_compared_exactly() -> None:
    check([{"numeric": [">", 9007199254740992]}], yes=[2**60], no=[2**53])
    check([{"numeric": ["=", 9007199254740992]}], yes=[2**53, 2.0**53], no=[2**53 + 2])


def test_numeric_on_a_list_matches_any_element() -> None:
    check([{"numeric": [">", 10]}], yes=[[1, 20], [[5], [11]]], no=[[1, 2], []])


def test_several_numeric_rules_are_or_ed() -> None:
    check(
        [{"numeric": ["<", 0]}, {"numeric": [">", 10]}, 5],
        yes=[-1, 11, 5],
        no=[0, 10, 6],
    )


# ------------------------------------------------------------------------------------------
# Prefix, suffix, equals-ignore-case, wildcard
# ------------------------------------------------------------------------------------------


def test_prefix() -> None:
    check([{"prefix": "us-"}], yes=["us-east-1", "us-"], no=["eu-west-1", "US-east", 1, None])
    check([{"prefix": ""}], yes=["", "anything"], no=[0, None, False])


def test_suffix() -> None:
    check([{"suffix": ".png"}], yes=["a.png", ".png"], no=["a.PNG", "png", 1])
    check([{"suffix": ""}], yes=["", "x"], no=[1])


def test_several_prefixes_and_suffixes() -> None:
    check(
        [{"prefix": "a"}, {"prefix": "b"}, {"suffix": "z"}],
        yes=["apple", "banana", "fizz"],
        no=["cherry", "zebra"],
    )


def test_equals_ignore_case() -> None:
    check(
        [{"equals-ignore-case": "alice"}],
        yes=["Alice", "ALICE", "alice"],
        no=["alice ", "alicia", 1, None],
    )
    check([{"equals-ignore-case": "ÄÖÜ"}], yes=["äöü"], no=["aou"])
    check([{"equals-ignore-case": ""}], yes=[""], no=["x"])


def test_prefix_and_suffix_with_equals_ignore_case() -> None:
    check(
        [{"prefix": {"equals-ignore-case": "EventB"}}], yes=["eventbridge", "EVENTB"], no=["even"]
    )
    check([{"suffix": {"equals-ignore-case": ".png"}}], yes=["a.PNG", ".Png"], no=["png", "a.jpg"])


def test_wildcard() -> None:
    check(
        [{"wildcard": "arn:aws:*:us-east-1:*:queue/*"}],
        yes=["arn:aws:sqs:us-east-1:123:queue/q", "arn:aws::us-east-1::queue/"],
        no=["arn:aws:sqs:us-west-2:123:queue/q", 1],
    )
    check([{"wildcard": "*"}], yes=["", "x"], no=[1, None])
    check([{"wildcard": "a*"}], yes=["a", "ab"], no=["ba"])
    check([{"wildcard": "*a"}], yes=["a", "ba"], no=["ab"])
    check([{"wildcard": "a*a"}], yes=["aa", "aba"], no=["a"])  # segments may not overlap
    check([{"wildcard": "a*b*c"}], yes=["abc", "aXbYc", "abbc"], no=["acb", "ac"])
    check([{"wildcard": ""}], yes=[""], no=["x"])
    check([{"wildcard": "no-star"}], yes=["no-star"], no=["no-star-x"])


def test_wildcard_escapes() -> None:
    check([{"wildcard": "a\\*b"}], yes=["a*b"], no=["axb", "a\\*b"])
    check([{"wildcard": "a\\\\*"}], yes=["a\\", "a\\xyz"], no=["a"])
    check([{"wildcard": "\\**"}], yes=["*", "*x"], no=["x*"])


# ------------------------------------------------------------------------------------------
# anything-but
# ------------------------------------------------------------------------------------------


def test_anything_but_string() -> None:
    check(
        [{"anything-but": "Raining"}],
        yes=["Sunny", "raining", None, 5, True, ["Sunny"]],
        no=["Raining", ["Raining"]],
    )
    check_missing([{"anything-but": "Raining"}], False)


def test_anything_but_number_compares_values() -> None:
    check([{"anything-but": 100}], yes=[101, "100", None, False], no=[100, 100.0])
    check([{"anything-but": 0}], yes=[1, "0"], no=[0, -0.0])


def test_anything_but_lists() -> None:
    check([{"anything-but": ["a", "b"]}], yes=["c", 1, None], no=["a", "b"])
    check([{"anything-but": [1, 2.5]}], yes=[3, "1", None], no=[1, 2.5, 1.0])
    check_missing([{"anything-but": ["a"]}], False)


def test_anything_but_prefix_and_suffix() -> None:
    check([{"anything-but": {"prefix": "init"}}], yes=["post-init", 12, None], no=["init-x"])
    check([{"anything-but": {"prefix": ["a", "b"]}}], yes=["c"], no=["ax", "bx"])
    check([{"anything-but": {"suffix": ".txt"}}], yes=["a.txt.bak", 1], no=["a.txt"])
    check([{"anything-but": {"suffix": [".txt", ".jpg"]}}], yes=["a.png"], no=["a.jpg"])


def test_anything_but_equals_ignore_case() -> None:
    check(
        [{"anything-but": {"equals-ignore-case": "stopped"}}],
        yes=["running", None, 1],
        no=["STOPPED", "Stopped"],
    )
    check([{"anything-but": {"equals-ignore-case": ["a", "B"]}}], yes=["c"], no=["A", "b"])


def test_anything_but_wildcard() -> None:
    check([{"anything-but": {"wildcard": "*/init/*"}}], yes=["a/b/c", 1, None], no=["a/init/c"])
    check(
        [{"anything-but": {"wildcard": ["*/init/*", "*.tmp"]}}],
        yes=["a/b/c"],
        no=["x/init/y", "f.tmp"],
    )
    check([{"anything-but": {"wildcard": ""}}], yes=["x"], no=[""])


def test_anything_but_with_exists_false_accepts_a_missing_field() -> None:
    values = [{"anything-but": ["roses"]}, {"exists": False}]
    check(values, yes=["tulips", None], no=["roses"])
    check_missing(values, True)


# ------------------------------------------------------------------------------------------
# exists
# ------------------------------------------------------------------------------------------


def test_exists_true_needs_a_leaf_value() -> None:
    check([{"exists": True}], yes=["x", None, 0, False, [1], [[None]]], no=[{}, {"a": 1}, [], [{}]])
    check_missing([{"exists": True}], False)


def test_exists_false_matches_a_missing_field_or_one_without_leaf_value() -> None:
    check([{"exists": False}], yes=[{}, {"a": 1}, [], [{"a": 1}]], no=["x", None, 0, [1]])
    check_missing([{"exists": False}], True)


def test_exists_works_on_leaf_nodes_only() -> None:
    # Lambda's doc: {"person": {"address": [{"exists": true}]}} does not match an object address
    pattern = {"person": {"address": [{"exists": True}]}}
    assert not matches(pattern, {"person": {"address": {"street": "x"}}})
    assert matches(pattern, {"person": {"address": "1 Main St"}})
    # DynamoDB: exists on the attribute's type key, not on the attribute
    assert matches({"NewImage": {"k": {"S": [{"exists": True}]}}}, {"NewImage": {"k": {"S": "v"}}})
    assert not matches({"NewImage": {"k": [{"exists": True}]}}, {"NewImage": {"k": {"S": "v"}}})


def test_exists_false_on_nested_paths() -> None:
    pattern = {"a": {"b": {"c": [{"exists": False}]}}}
    assert matches(pattern, {})
    assert matches(pattern, {"a": "scalar"})
    assert matches(pattern, {"a": {"b": 1}})
    assert matches(pattern, {"a": {"b": {"d": 1}}})
    assert not matches(pattern, {"a": {"b": {"c": 1}}})


def test_exists_true_and_false_together_match_anything() -> None:
    values = [{"exists": True}, {"exists": False}]
    check(values, yes=["x", {}, []], no=[])
    check_missing(values, True)


# ------------------------------------------------------------------------------------------
# cidr and IP literals
# ------------------------------------------------------------------------------------------


def test_cidr_v4() -> None:
    check(
        [{"cidr": "10.0.0.0/24"}],
        yes=["10.0.0.0", "10.0.0.255", "::ffff:a00:1"],
        no=["10.0.1.0", "10.0.0.256", "10.0.0", 167772161, None, "2001:db8::1"],
    )
    check([{"cidr": "0.0.0.0/0"}], yes=["1.2.3.4", "255.255.255.255"], no=["::1"])


def test_cidr_starts_at_the_address_as_written() -> None:
    # event-ruler builds the range from the address itself, not from the network address
    check([{"cidr": "10.0.0.5/24"}], yes=["10.0.0.5", "10.0.0.255"], no=["10.0.0.4"])


def test_cidr_v6() -> None:
    check(
        [{"cidr": "2001:db8:1234:1a00::/64"}],
        yes=["2001:db8:1234:1a00::1", "2001:0DB8:1234:1A00:FFFF:FFFF:FFFF:FFFF"],
        no=["2001:db8:1234:1a01::", "10.0.0.1"],
    )


def test_an_exact_string_that_is_an_ip_address_matches_the_address() -> None:
    check(["10.0.0.1"], yes=["10.0.0.1"], no=["10.0.0.2"])
    check(["2001:db8::1"], yes=["2001:db8::1", "2001:0DB8:0:0:0:0:0:1"], no=["2001:db8::2"])


# ------------------------------------------------------------------------------------------
# $or
# ------------------------------------------------------------------------------------------


def test_or_across_fields() -> None:
    pattern = {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]}
    assert matches(pattern, {"Location": "New York", "Day": "Sunday"})
    assert matches(pattern, {"Location": "Paris", "Day": "Monday"})
    assert not matches(pattern, {"Location": "Paris", "Day": "Sunday"})


def test_or_with_sibling_fields_and_nested() -> None:
    # source && (metricName || (metricType && namespace && (metricId || spaceId)) || scope)
    pattern = {
        "source": ["aws.cloudwatch"],
        "$or": [
            {"metricName": ["CPUUtilization"]},
            {
                "metricType": ["MetricType"],
                "namespace": ["AWS/EC2"],
                "$or": [{"metricId": [1234]}, {"spaceId": [1000]}],
            },
            {"scope": ["Service"]},
        ],
    }
    assert compiled(pattern).alternatives == 4
    base = {"source": "aws.cloudwatch"}
    assert matches(pattern, {**base, "scope": "Service"})
    assert matches(
        pattern, {**base, "metricType": "MetricType", "namespace": "AWS/EC2", "spaceId": 1000}
    )
    assert not matches(pattern, {**base, "metricType": "MetricType", "namespace": "AWS/EC2"})
    assert not matches(pattern, {"scope": "Service"})


def test_parallel_or_multiplies_out() -> None:
    pattern = {
        "$or": [{"a": [1]}, {"b": [1]}],
        "detail": {"$or": [{"c": [1]}, {"d": [1]}]},
    }
    assert compiled(pattern).alternatives == 4
    assert matches(pattern, {"b": 1, "detail": {"c": 1}})
    assert not matches(pattern, {"b": 1, "detail": {"e": 1}})


def test_or_inside_a_nested_object_keeps_the_path() -> None:
    pattern = {"detail": {"$or": [{"c-count": [{"numeric": [">", 0]}]}, {"d-count": [1]}]}}
    assert matches(pattern, {"detail": {"c-count": 5}})
    assert not matches(pattern, {"c-count": 5})


def test_a_path_repeated_inside_an_or_branch_replaces_the_outer_rule() -> None:
    # event-ruler copies the rule into each branch and puts the branch's list over it
    pattern = {"a": [1], "$or": [{"a": [2]}, {"b": [3]}]}
    assert matches(pattern, {"a": 2})
    assert matches(pattern, {"a": 1, "b": 3})
    assert not matches(pattern, {"a": 1})


def test_too_many_or_alternatives_are_rejected() -> None:
    ors = {f"k{i}": {"$or": [{"a": [1]}, {"b": [1]}]} for i in range(11)}  # 2**11 = 2048
    with pytest.raises(FilterPatternError, match=f"more than {MAX_ALTERNATIVES}"):
        compiled(ors)
    compiled({f"k{i}": {"$or": [{"a": [1]}, {"b": [1]}]} for i in range(10)})  # 1024 is fine


# ------------------------------------------------------------------------------------------
# Arrays and array consistency
# ------------------------------------------------------------------------------------------

EMPLOYEES = {
    "employees": [
        {"firstName": "John", "lastName": "Doe"},
        {"firstName": "Anna", "lastName": "Smith"},
        {"firstName": "Peter", "lastName": "Jones"},
    ]
}


def test_a_condition_on_an_array_matches_any_element() -> None:
    assert matches({"resources": ["b", "z"]}, {"resources": ["a", "b"]})
    assert not matches({"resources": ["c"]}, {"resources": ["a", "b"]})
    assert matches({"employees": {"firstName": ["Anna"]}}, EMPLOYEES)


def test_fields_of_one_match_come_from_the_same_array_element() -> None:
    assert matches({"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}}, EMPLOYEES)
    assert not matches({"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}}, EMPLOYEES)


def test_array_consistency_in_nested_arrays() -> None:
    nested = {
        "employees": [
            [EMPLOYEES["employees"][0], EMPLOYEES["employees"][1]],
            [EMPLOYEES["employees"][2]],
        ]
    }
    assert matches({"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}}, nested)
    assert not matches({"employees": {"firstName": ["John"], "lastName": ["Jones"]}}, nested)
    assert not matches({"employees": {"firstName": ["John"], "lastName": ["Smith"]}}, nested)


def test_different_arrays_are_independent() -> None:
    event = {"a": [{"x": 1}, {"x": 2}], "b": [{"y": 1}, {"y": 2}]}
    assert matches({"a": {"x": [2]}, "b": {"y": [1]}}, event)


def test_array_consistency_with_deeper_levels() -> None:
    event = {"orders": [{"id": 1, "lines": [{"sku": "A"}]}, {"id": 2, "lines": [{"sku": "B"}]}]}
    assert matches({"orders": {"id": [2], "lines": {"sku": ["B"]}}}, event)
    assert not matches({"orders": {"id": [1], "lines": {"sku": ["B"]}}}, event)


def test_exists_false_is_checked_in_the_chosen_element() -> None:
    pattern = {"items": {"type": ["book"], "discount": [{"exists": False}]}}
    assert matches(pattern, {"items": [{"type": "book", "discount": 5}, {"type": "book"}]})
    assert not matches(pattern, {"items": [{"type": "book", "discount": 5}, {"type": "pen"}]})
    # with no positive condition in the array, every element must lack the field
    only_absent = {"items": {"discount": [{"exists": False}]}}
    assert not matches(only_absent, {"items": [{"discount": 5}, {"type": "pen"}]})
    assert matches(only_absent, {"items": [{"type": "book"}, {"type": "pen"}]})


def test_exists_true_in_a_list_of_objects() -> None:
    pattern = {"detail": {"automations": {"id": [{"exists": True}]}}}
    assert matches(pattern, {"detail": {"automations": [{"k": 1}, {"id": "x"}]}})
    assert not matches(pattern, {"detail": {"automations": [{"k": 1}]}})
    assert not matches(pattern, {"detail": {"automations": []}})


def test_a_leaf_and_a_deeper_path_from_different_array_elements_do_not_combine() -> None:
    pattern = {"a": [1], "a.b": [2]}
    assert not matches(pattern, {"a": [1, {"b": 2}]})
    assert matches(pattern, {"a": 1, "a.b": 2})


def test_many_array_elements_do_not_make_matching_explode() -> None:
    n = 150
    event = {
        "a": [
            {"b": [{"x": i} for i in range(n)], "c": [{"y": i} for i in range(n)], "d": [{"z": 0}]}
            for _ in range(n)
        ]
    }
    pattern = {
        "a": {"b": {"x": [{"exists": True}]}, "c": {"y": [{"exists": True}]}, "d": {"z": [1]}}
    }
    assert not matches(pattern, event)  # would be n**3 choices without indexing and memoising
    event["a"][-1]["d"] = [{"z": 1}]
    assert matches(pattern, event)


# ------------------------------------------------------------------------------------------
# Dotted keys (event-ruler joins path segments with ".")
# ------------------------------------------------------------------------------------------


def test_dotted_keys_in_patterns_and_events_are_the_same_path() -> None:
    nested, dotted = (
        {"detail": {"state": {"status": "running"}}},
        {"detail": {"state.status": "running"}},
    )
    for pattern in (
        {"detail": {"state": {"status": ["running"]}}},
        {"detail": {"state.status": ["running"]}},
    ):
        assert matches(pattern, nested)
        assert matches(pattern, dotted)
    assert matches({"a": {"b": {"c": [1]}}}, {"a.b": {"c": 1}})
    assert matches({"a": {"b": {"c": [1]}}}, {"a.b.c": 1})
    assert not matches({"a": {"b": {"c": [1]}}}, {"a.b.c": 2})


def test_dotted_keys_that_cannot_reach_the_pattern_are_ignored() -> None:
    pattern = {"body": {"a": ["x"]}}
    assert matches(pattern, {"other.key": 1, "body": {"a": "x", "z.z": 2}})
    assert not matches(pattern, {"body.b": 1, "body": {"a": "y"}})
    assert matches(pattern, {"body.a": "x"})


# ------------------------------------------------------------------------------------------
# Duplicate keys, empty pattern, fields, non-object events
# ------------------------------------------------------------------------------------------


def test_duplicate_keys_last_value_wins() -> None:
    pattern = '{"a": ["first"], "a": ["last"]}'
    assert matches(pattern, {"a": "last"})
    assert not matches(pattern, {"a": "first"})
    nested = '{"d": {"location": [{"prefix": "us-"}], "location": [{"anything-but": "us-east"}]}}'
    assert matches(nested, {"d": {"location": "eu-central-1"}})
    assert not matches(nested, {"d": {"location": "us-east"}})
    # also inside a match expression: {"prefix": "a", "prefix": "b"} is {"prefix": "b"}
    assert matches('{"a": [{"prefix": "x", "prefix": "y"}]}', {"a": "yes"})
    # and when the earlier value was an object
    assert matches('{"a": {"b": [1]}, "a": [2]}', {"a": 2})


def test_an_empty_pattern_matches_every_event() -> None:
    assert compiled("{}").fields == frozenset()
    assert matches("{}", {"anything": 1})
    assert matches("{}", {})


def test_fields_are_the_top_level_keys_the_pattern_reads() -> None:
    pattern = {
        "body": {"a": ["x"]},
        "attributes.SenderId": ["y"],
        "$or": [{"eventSource": ["aws:sqs"]}, {"awsRegion": [{"prefix": "us-"}]}],
    }
    assert compiled(pattern).fields == frozenset({"body", "attributes", "eventSource", "awsRegion"})


def test_non_object_events_have_no_fields() -> None:
    assert not compiled({"a": [1]}).matches([1])
    assert not compiled({"a": [1]}).matches("a")
    assert compiled({"a": [{"exists": False}]}).matches(None)


def test_events_may_be_other_mappings_and_sequences() -> None:
    from collections import OrderedDict
    from decimal import Decimal

    p = compiled({"a": {"b": [{"numeric": [">", 1]}]}, "c": ["x"]})
    assert p.matches(OrderedDict(a=OrderedDict(b=Decimal("1.5")), c="x"))
    assert p.matches({"a": ({"b": 0}, {"b": 2}), "c": "x"})
    assert not p.matches({"a": {"b": Decimal("0.5")}, "c": "x"})


def test_a_compiled_pattern_is_reusable() -> None:
    p = compiled({"body": {"n": [{"numeric": [">", 10]}]}})
    assert [p.matches({"body": {"n": n}}) for n in (5, 15, 10, 11)] == [False, True, False, True]
    assert "numeric" in repr(p)


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------

MIXED = (
    "Inside anything but list, either all values are number or string, mixed type is not supported"
)
ERRORS = [
    # not a pattern
    ("", "Expecting value: line 1 column 1 (char 0)"),
    ("null", "Filter is not an object"),
    ("[]", "Filter is not an object"),
    ('"text"', "Filter is not an object"),
    ('{"a": [1]} trailing', "Extra data: line 1 column 12 (char 11)"),
    ('{"a": [NaN]}', "Non-standard token 'NaN' is not allowed"),
    ('{"a": 1}', '"a" must be an object or an array'),
    ('{"a": "x"}', '"a" must be an object or an array'),
    ('{"a": null}', '"a" must be an object or an array'),
    ('{"a": {}}', "Empty objects are not allowed"),
    ('{"a": []}', "Empty arrays are not allowed"),
    ('{"a": [[1]]}', "Match value must be String, number, true, false, or null"),
    ('{"a": [{}]}', "Match expression name not found"),
    ('{"a": [{"EXISTS": true}]}', "Unrecognized match type EXISTS"),
    ('{"a": [{"regex": "x"}]}', "Unrecognized match type regex"),
    ('{"a": [{"prefix": "x", "suffix": "y"}]}', "Only one key allowed in match expression"),
    # operands
    ('{"a": [{"exactly": 1}]}', "exact match pattern must be a string"),
    ('{"a": [{"prefix": 1}]}', "prefix match pattern must be a string"),
    ('{"a": [{"prefix": ["x"]}]}', "prefix match pattern must be a string"),
    ('{"a": [{"suffix": null}]}', "suffix match pattern must be a string"),
    ('{"a": [{"prefix": {}}]}', "Prefix expression name not found"),
    ('{"a": [{"suffix": {}}]}', "Suffix expression name not found"),
    ('{"a": [{"prefix": {"suffix": "x"}}]}', "Unsupported prefix pattern: suffix"),
    (
        '{"a": [{"suffix": {"equals-ignore-case": 1}}]}',
        "equals-ignore-case match pattern must be a string",
    ),
    (
        '{"a": [{"prefix": {"equals-ignore-case": "x", "b": 1}}]}',
        "Only one key allowed in match expression",
    ),
    ('{"a": [{"equals-ignore-case": ["x"]}]}', "equals-ignore-case match pattern must be a string"),
    ('{"a": [{"exists": "true"}]}', "exists match pattern must be either true or false."),
    ('{"a": [{"exists": true, "b": 1}]}', "Only one key allowed in match expression"),
    # wildcard
    ('{"a": [{"wildcard": 1}]}', "wildcard match pattern must be a string"),
    ('{"a": [{"wildcard": "a**b"}]}', "Consecutive wildcard characters at pos 2"),
    ('{"a": [{"wildcard": "é**"}]}', "Consecutive wildcard characters at pos 3"),  # UTF-8 bytes
    ('{"a": [{"wildcard": "a\\\\x"}]}', "Invalid escape character at pos 2"),
    ('{"a": [{"wildcard": "ab\\\\"}]}', "Invalid escape character at pos 3"),
    # numeric
    ('{"a": [{"numeric": 5}]}', "Value of numeric must be an array."),
    ('{"a": [{"numeric": []}]}', "Invalid member in numeric match: ]"),
    ('{"a": [{"numeric": [5]}]}', "Invalid member in numeric match: 5"),
    ('{"a": [{"numeric": ["!=", 5]}]}', "Unrecognized numeric range operator: !="),
    ('{"a": [{"numeric": ["=", "5"]}]}', "Value of equals must be numeric"),
    ('{"a": [{"numeric": [">"]}]}', "Value of > must be numeric"),
    ('{"a": [{"numeric": ["<=", true]}]}', "Value of <= must be numeric"),
    ('{"a": [{"numeric": ["=", 5, 6]}]}', "Too many elements in numeric expression"),
    ('{"a": [{"numeric": ["<", 5, ">", 1]}]}', "Too many elements in numeric expression"),
    ('{"a": [{"numeric": [">", 5, 6]}]}', "Bad value in numeric range: 6"),
    ('{"a": [{"numeric": [">", 0, ">", 5]}]}', "Bad numeric range operator: >"),
    ('{"a": [{"numeric": [">", 0, "<"]}]}', "Value of < must be numeric"),
    ('{"a": [{"numeric": [">", 0, "<", 5, 6]}]}', "Too many terms in numeric range expression"),
    ('{"a": [{"numeric": [">", 5, "<", 5]}]}', "Bottom must be less than top"),
    ('{"a": [{"numeric": [">=", 6, "<=", 5]}]}', "Bottom must be less than top"),
    ('{"a": [{"numeric": [">", 1e400]}]}', "Cannot compare number : 1e400"),
    (
        '{"a": [{"numeric": ["=", 12345678901234567890]}]}',
        "Cannot compare number : 12345678901234567890",
    ),
    ('{"a": [{"numeric": [">", 1], "x": 1}]}', "Too many elements in numeric expression"),
    # anything-but
    (
        '{"a": [{"anything-but": null}]}',
        "Value of anything-but must be an array or single string/number value.",
    ),
    (
        '{"a": [{"anything-but": true}]}',
        "Value of anything-but must be an array or single string/number value.",
    ),
    (
        '{"a": [{"anything-but": []}]}',
        MIXED,
    ),
    (
        '{"a": [{"anything-but": ["x", 1]}]}',
        MIXED,
    ),
    (
        '{"a": [{"anything-but": ["x", null]}]}',
        "Inside anything but list, start|null|boolean is not supported.",
    ),
    (
        '{"a": [{"anything-but": ["x", ["y"]]}]}',
        "Inside anything but list, start|null|boolean is not supported.",
    ),
    ('{"a": [{"anything-but": 1e400}]}', "Cannot compare number : 1e400"),
    ('{"a": [{"anything-but": {}}]}', "Anything-But expression name not found"),
    ('{"a": [{"anything-but": {"exists": true}}]}', "Unsupported anything-but pattern: exists"),
    (
        '{"a": [{"anything-but": {"numeric": [">", 1]}}]}',
        "Unsupported anything-but pattern: numeric",
    ),
    ('{"a": [{"anything-but": {"prefix": ""}}]}', "Null prefix/suffix not allowed"),
    ('{"a": [{"anything-but": {"suffix": ["x", ""]}}]}', "Null prefix/suffix not allowed"),
    ('{"a": [{"anything-but": {"prefix": 1}}]}', "prefix/suffix match pattern must be a string"),
    (
        '{"a": [{"anything-but": {"prefix": {"equals-ignore-case": "x"}}}]}',
        "Value of anything-but must be an array or single string/number value.",
    ),
    ('{"a": [{"anything-but": {"prefix": []}}]}', "Empty arrays are not allowed"),
    (
        '{"a": [{"anything-but": {"equals-ignore-case": 1}}]}',
        "Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported.",
    ),
    (
        '{"a": [{"anything-but": {"equals-ignore-case": ["x", true]}}]}',
        "Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported.",
    ),
    ('{"a": [{"anything-but": {"wildcard": 1}}]}', "wildcard match pattern must be a string"),
    (
        '{"a": [{"anything-but": {"wildcard": ["a**"]}}]}',
        "Consecutive wildcard characters at pos 2",
    ),
    (
        '{"a": [{"anything-but": {"prefix": "x", "suffix": "y"}}]}',
        "Too many elements in numeric expression",
    ),
    ('{"a": [{"anything-but": "x", "b": 1}]}', "Too many elements in numeric expression"),
    # cidr
    ('{"a": [{"cidr": 1}]}', "prefix match pattern must be a string"),
    ('{"a": [{"cidr": "10.0.0.0"}]}', "Malformed CIDR, one '/' required"),
    ('{"a": [{"cidr": "10.0.0.0/8/8"}]}', "Malformed CIDR, one '/' required"),
    ('{"a": [{"cidr": "10.0.0.0/x"}]}', "Malformed CIDR, mask bits must be an integer"),
    ('{"a": [{"cidr": "10.0.0.0/-1"}]}', "Malformed CIDR, mask bits must not be negative"),
    ('{"a": [{"cidr": "10.0.0.0/32"}]}', "IPv4 mask bits must be < 32"),
    ('{"a": [{"cidr": "::/128"}]}', "IPv6 mask bits must be < 128"),
    ('{"a": [{"cidr": "999.0.0.0/8"}]}', "Invalid IP address: 999.0.0.0"),
    ('{"a": [{"cidr": "1:2:3/8"}]}', "Invalid IP address: 1:2:3"),
    ('{"a": [{"cidr": "host.example/8"}]}', "Nonstandard IP address: host.example"),
    # $or
    ('{"$or": {"a": [1]}}', "It must be an Array followed with $or."),
    ('{"$or": [{"a": [1]}]}', "There must have at least 2 Objects in $or relationship."),
    ('{"$or": []}', "There must have at least 2 Objects in $or relationship."),
    ('{"$or": [{"a": [1]}, [1]]}', "Only JSON object is allowed in array of $or relationship."),
    ('{"$or": [{"a": [1]}, {}]}', "Empty objects are not allowed"),
    (
        '{"$or": [{"numeric": [1]}, {"a": [1]}]}',
        "numeric is Ruler reserved fieldName which cannot be used inside $or.",
    ),
    (
        '{"$or": [{"a": {"prefix": ["x"]}}, {"b": [1]}]}',
        "prefix is Ruler reserved fieldName which cannot be used inside $or.",
    ),
]


@pytest.mark.parametrize(("pattern", "reason"), ERRORS, ids=[e[0] for e in ERRORS])
def test_invalid_patterns_are_rejected_with_the_reason(pattern: str, reason: str) -> None:
    with pytest.raises(FilterPatternError) as exc_info:
        compile_pattern(pattern)
    assert str(exc_info.value) == reason
    assert isinstance(exc_info.value, ValueError)


def test_reserved_words_are_ordinary_field_names_outside_or() -> None:
    assert matches(
        {"prefix": ["x"], "numeric": {"exists": [1]}}, {"prefix": "x", "numeric": {"exists": 1}}
    )


def test_deeply_nested_patterns_are_rejected() -> None:
    ok = '{"a":' * MAX_NESTING + "[1]" + "}" * MAX_NESTING
    assert compile_pattern(ok).matches(json.loads(ok.replace("[1]", "1")))
    for depth in (MAX_NESTING + 1, 5000):
        with pytest.raises(FilterPatternError, match="nested more than"):
            compile_pattern('{"a":' * depth + "[1]" + "}" * depth)


# ------------------------------------------------------------------------------------------
# The fast path, the general algorithm and a brute-force oracle agree
# ------------------------------------------------------------------------------------------

RANDOM_PATTERNS = [
    {"a": [1, "x"], "b": {"c": [{"prefix": "p"}]}},
    {"a": [{"exists": False}], "b": {"c": [{"numeric": [">", 0]}]}},
    {"b": {"c": [{"anything-but": ["p1"]}, {"exists": False}], "d": [True, None]}},
    {"b": {"c": [{"exists": True}], "d": [{"exists": False}]}},
    {"$or": [{"a": [1]}, {"b": {"d": [True]}}], "b": {"c": [{"suffix": "1"}]}},
    {"b.c": ["p1"], "b": {"d": [{"anything-but": 1}]}},
    {"a": [{"numeric": [">=", 0, "<", 2]}], "b.c": [{"exists": False}]},
]
LEAVES: list[Any] = [1, 0, 2.5, "x", "p1", "q1", True, None, "1"]


def _random_value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 2 or roll < 0.5:
        return rng.choice(LEAVES)
    if roll < 0.75:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = rng.sample(["a", "b", "c", "d", "b.c", "b.d"], rng.randint(0, 3))
    return {k: _random_value(rng, depth + 1) for k in keys}


def _brute_force(pattern: CompiledPattern, event: dict[str, Any]) -> bool:
    """Try every combination of fields (or absence) for every alternative."""
    collector = Collector()
    collector.visit_object(pattern._trie, event, ())
    fields = collector.fields
    for alternative in pattern._alternatives:
        choices = []
        for condition in alternative.conditions:
            candidates = fields.get(condition.path_id, [])
            options: list[Any] = [m for v, m in candidates if condition.test(v)]
            if condition.allow_absent:
                options.append(("absent", condition.path_id))
            choices.append(options)
        for combination in itertools.product(*choices):
            chosen: dict[int, int] = {}
            consistent = True
            for option in combination:
                if option and option[0] == "absent":
                    continue
                for array, index in option:
                    if chosen.setdefault(array, index) != index:
                        consistent = False
            if not consistent:
                continue
            absent_ok = all(
                not any(all(chosen.get(a, i) == i for a, i in m) for _, m in fields.get(o[1], []))
                for o in combination
                if o and o[0] == "absent"
            )
            if absent_ok:
                return True
    return False


@pytest.mark.parametrize("pattern", RANDOM_PATTERNS, ids=[json.dumps(p) for p in RANDOM_PATTERNS])
def test_fast_path_general_algorithm_and_brute_force_agree(pattern: dict[str, Any]) -> None:
    rng = random.Random(json.dumps(pattern))
    p = compiled(pattern)
    outcomes = set()
    for _ in range(400):
        keys = rng.sample(["a", "b", "b.c", "x"], rng.randint(0, 4))
        event = {k: _random_value(rng, 0) for k in keys}
        expected = _brute_force(p, event)
        assert p._matches_general(event) is expected, event
        assert p.matches(event) is expected, event
        outcomes.add(expected)
    assert outcomes == {True, False}  # the events exercise both answers
