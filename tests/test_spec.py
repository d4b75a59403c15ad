"""The spec language: parse / from_dict laws, safety, limits and error messages."""

from __future__ import annotations

import ast
import inspect
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import lrkit
from lrkit import Schedule, from_dict, parse
from lrkit.schedules import FACTORIES
from lrkit.spec import (
    MAX_DEPTH,
    MAX_DICT_DEPTH,
    MAX_LENGTH,
    MAX_NUMBER_CHARS,
    names,
    register,
    to_dict,
    unregister,
)
from strategies import (
    LEAF_FAMILIES,
    ending_schedules,
    joins,
    leaf_schedules,
    pipes,
    scaleds,
    schedules,
    warmups,
)

SPEC_PY = Path(lrkit.__file__).with_name("spec.py")


def json_round_trip(s: Schedule) -> Any:
    return json.loads(json.dumps(s.to_dict()))


def caret_target(message: str) -> str:
    """The text the caret line of an error message points at."""
    lines = message.split("\n")
    shown, carets = lines[-2][2:], lines[-1][2:]
    start = carets.index("^")
    return shown[start : start + carets.count("^")]


def refused(spec: Any, *, within: float = 1.0) -> str:
    """Assert ``parse(spec)`` raises ValueError within ``within`` s of CPU; return the message.

    The bound guards against a parse that blows up (quadratic or worse) on hostile input,
    with ~50x headroom over what these inputs take. It counts this process's CPU time, not
    the wall clock: on a loaded 2-core CI machine, where the other test worker trains
    models, a wall-clock bound failed on a parse that took 20 ms of work.
    """
    start = time.process_time()
    with pytest.raises(ValueError) as info:
        parse(spec)
    elapsed = time.process_time() - start
    assert elapsed < within, f"took {elapsed:.3f} s of CPU"
    return str(info.value)


# -- the laws: parse(str(s)) == s, from_dict(to_dict(s)) == s -------------------


@pytest.mark.parametrize("family", sorted(LEAF_FAMILIES))
@given(data=st.data())
def test_every_family_round_trips_through_str_and_dict(family: str, data: st.DataObject) -> None:
    s = data.draw(LEAF_FAMILIES[family]())
    assert s.name == family
    assert parse(str(s)) == s
    assert from_dict(s.to_dict()) == s
    assert from_dict(json_round_trip(s)) == s


@given(schedules())
def test_any_schedule_round_trips(s: Schedule) -> None:
    assert parse(str(s)) == s
    assert str(parse(str(s))) == str(s)
    assert from_dict(json_round_trip(s)) == s
    assert to_dict(s) == s.to_dict()


@given(pipes())
def test_pipes_round_trip(s: Schedule) -> None:
    assert parse(str(s)) == s
    assert from_dict(json_round_trip(s)) == s


@given(joins())
def test_joins_with_their_own_boundaries_round_trip(s: Schedule) -> None:
    text = str(s)
    assert parse(text) == s
    assert from_dict(json_round_trip(s)) == s
    if not s._uses_pipes():  # type: ignore[attr-defined]
        assert text.startswith("join(") and "boundaries=[" in text


@given(warmups(warmups(warmups())))
def test_nested_warmups_round_trip(s: Schedule) -> None:
    assert str(s).startswith("warmup(warmup(warmup(")
    assert parse(str(s)) == s
    assert from_dict(json_round_trip(s)) == s


@given(scaleds(pipes()), scaleds(joins()))
def test_scaled_joins_round_trip(a: Schedule, b: Schedule) -> None:
    for s in (a, b):
        assert parse(str(s)) == s
        assert from_dict(json_round_trip(s)) == s


@given(st.lists(ending_schedules(), min_size=3, max_size=3), leaf_schedules())
def test_pipes_flatten_the_same_way_whatever_the_grouping(
    heads: list[Schedule], tail: Schedule
) -> None:
    a, b, c = (str(x) for x in heads)
    d = str(tail)
    flat = parse(f"{a} | {b} | {c} | {d}")
    assert parse(f"(({a} | {b}) | {c}) | {d}") == flat
    assert parse(f"{a} | ({b} | ({c} | {d}))") == flat
    assert parse(f"({a} | {b}) | ({c} | {d})") == flat
    assert flat == heads[0] | heads[1] | heads[2] | tail


def test_scaled_join_prints_and_parses_with_parentheses() -> None:
    a = lrkit.linear(0.0, 1.0, steps=10)
    b = lrkit.cosine(lr=1.0, steps=90)
    s = 0.5 * (a | b)
    assert str(s) == "0.5 * (linear(start_lr=0.0, end_lr=1.0, steps=10) | cosine(lr=1.0, steps=90))"
    assert parse(str(s)) == s
    assert parse(f"({a} | {b}) * 0.5") == s
    # '*' binds tighter than '|': this scales only the first part.
    assert parse(f"0.5 * {a} | {b}") == (0.5 * a) | b


def test_join_form_is_used_when_boundaries_differ_from_lengths() -> None:
    s = lrkit.join(lrkit.cosine(lr=1.0, steps=100), lrkit.constant(0.1), boundaries=[50])
    assert str(s) == "join(cosine(lr=1.0, steps=100), constant(lr=0.1), boundaries=[50])"
    assert parse(str(s)) == s
    assert from_dict(json_round_trip(s)) == s


def test_long_pipe_chains_parse_without_deep_recursion() -> None:
    parts = [lrkit.cosine(lr=0.1, steps=10 + k) for k in range(300)]
    s = parts[0]
    for p in parts[1:]:
        s = s | p
    text = str(s)
    assert len(text) <= MAX_LENGTH
    assert parse(text) == s


def test_deep_but_allowed_nesting_parses() -> None:
    s: Schedule = lrkit.cosine(lr=0.1, steps=100)
    for _ in range(MAX_DEPTH - 1):
        s = lrkit.warmup(s, steps=2)
    assert parse(str(s)) == s
    assert from_dict(json_round_trip(s)) == s


# -- the syntax that is accepted ----------------------------------------------


def test_positional_arguments_follow_the_field_order() -> None:
    assert parse("cosine(0.1, 100, 0.01)") == lrkit.cosine(lr=0.1, steps=100, min_lr=0.01)
    assert parse("linear(0.0, 0.1, 10)") == lrkit.linear(start_lr=0.0, end_lr=0.1, steps=10)
    assert parse("warmup(constant(0.1), 5)") == lrkit.warmup(lrkit.constant(0.1), steps=5)
    assert parse("join(constant(1.0), constant(0.5), boundaries=[3])") == lrkit.join(
        lrkit.constant(1.0), lrkit.constant(0.5), boundaries=[3]
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("constant(1e-3)", lrkit.constant(0.001)),
        ("constant(lr=3E-4)", lrkit.constant(3e-4)),
        ("constant(1)", lrkit.constant(1.0)),
        ("cosine(lr=1, steps=1e4)", lrkit.cosine(lr=1.0, steps=10_000)),
        ("cosine(lr=1, steps=10_000)", lrkit.cosine(lr=1.0, steps=10_000)),
        ("multistep(1.0, (10, 20))", lrkit.multistep(1.0, milestones=[10, 20])),
        ("one_cycle(1.0, 10, three_phase=True, pct_start=0.25)", None),
        ("cyclic(0.1, 1.0, 5, step_size_down=None, mode='triangular2')", None),
        ('cyclic(0.1, 1.0, 5, mode="exp_range", gamma=0.99)', None),
        ("  cosine(lr=0.1, steps=10)  ", lrkit.cosine(lr=0.1, steps=10)),
        ("\n\tcosine(\n  lr=0.1,\n  steps=10,\n)\n", lrkit.cosine(lr=0.1, steps=10)),
        ("cosine(lr=0.1, steps=10)  # a comment", lrkit.cosine(lr=0.1, steps=10)),
        ("((cosine(lr=0.1, steps=10)))", lrkit.cosine(lr=0.1, steps=10)),
        ("constant(0.1) * 2", 2 * lrkit.constant(0.1)),
        ("2 * constant(0.1) * 0.5", 1.0 * lrkit.constant(0.1)),
    ],
)
def test_accepted_syntax(text: str, expected: Schedule | None) -> None:
    s = parse(text)
    assert isinstance(s, Schedule)
    if expected is not None:
        assert s == expected


def test_negative_numbers_reach_the_factory_and_its_message() -> None:
    message = refused("cosine(lr=-0.1, steps=10)")
    assert "cosine: lr must be a finite number >= 0, got -0.1" in message
    assert caret_target(message) == "lr=-0.1"
    message = refused("constant(lr=-inf)")
    assert "got -inf" in message
    assert "nan" in refused("constant(lr=nan)")
    assert "inf" in refused("cosine(lr=inf, steps=10)")


# -- fill: defaults for left-out required arguments (lrkit compare) -----------


def test_fill_supplies_missing_required_arguments() -> None:
    assert parse("cosine()", lr=0.1, steps=1000) == lrkit.cosine(lr=0.1, steps=1000)
    assert parse("constant()", lr=0.1, steps=1000) == lrkit.constant(0.1)
    assert parse("cosine(min_lr=0.01)", lr=0.1, steps=50) == lrkit.cosine(0.1, 50, 0.01)


def test_fill_reaches_nested_calls_and_explicit_arguments_win() -> None:
    s = parse("warmup(cosine(), steps=5)", lr=0.1, steps=100)
    assert s == lrkit.warmup(lrkit.cosine(lr=0.1, steps=95), steps=5)  # budget - warmup
    s = parse("cosine(steps=10) | constant(lr=0.5)", lr=0.1, steps=100)
    assert s == lrkit.cosine(lr=0.1, steps=10) | lrkit.constant(0.5)
    # A positional argument counts as given.
    assert parse("cosine(0.3)", lr=0.1, steps=7) == lrkit.cosine(lr=0.3, steps=7)


def test_fill_never_touches_optional_arguments_and_ignores_unused_names() -> None:
    s = parse("cosine(lr=1.0, steps=10)", min_lr=0.5, power=3.0, anything=1)
    assert s == lrkit.cosine(lr=1.0, steps=10)


def test_fill_lr_goes_to_max_lr_where_there_is_no_lr() -> None:
    assert parse("one_cycle()", lr=0.1, steps=100) == lrkit.one_cycle(max_lr=0.1, steps=100)
    assert parse("one_cycle(max_lr=0.3)", lr=0.1, steps=100) == lrkit.one_cycle(0.3, 100)
    s = parse("cyclic(min_lr=0.01, step_size_up=10)", lr=0.1)
    assert s == lrkit.cyclic(min_lr=0.01, max_lr=0.1, step_size_up=10)


def test_without_fill_missing_arguments_are_named() -> None:
    message = refused("warmup(cosine(), steps=5)")
    assert "cosine() is missing required arguments 'lr', 'steps'" in message
    assert caret_target(message) == "cosine()"
    message = refused("cosine()")
    assert "'lr', 'steps'" in message


def test_a_bad_filled_value_is_reported_as_filled() -> None:
    expected = r"steps must be an integer >= 1, got 0 \(filled in: lr=0.1, steps=0\)"
    with pytest.raises(ValueError, match=expected):
        parse("cosine()", lr=0.1, steps=0)


# -- hostile input: refused fast, nothing executed ----------------------------


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('x')",
        "__import__('os')",
        "().__class__.__bases__",
        "().__class__.__bases__[0].__subclasses__()",
        "lambda: 0",
        "10**10**10",
        "'a'*10**9",
        "[1]*10**9",
        "'a'*1000000000",
        "[1]*1000000000",
        "constant(lr=10**10**10)",
        "constant(lr=[1]*10**9)",
        "cosine(lr=0.1, steps=10) | __import__('os')",
        "open('/etc/passwd')",
        "eval('1')",
        "exec('x=1')",
        "globals()",
        "constant(0.1).__reduce__()",
        "[c for c in ()]",
        "(x := 1)",
        "f'{1}'",
        "cosine(*[1, 2])",
        "cosine(**{'lr': 1})",
        "not constant(1)",
        "constant(1) and constant(2)",
        "constant(1) if 1 else constant(2)",
        "constant(1) + constant(2)",
        "constant(1) @ constant(2)",
        "~constant(1)",
        "--1 * constant(1)",
        "constant(1)[0]",
        "{1: 2}",
        "{1}",
        "...",
        "b'x'",
        "1j * constant(1)",
        "constant(1) < constant(2)",
        "await x",
        "0.5",
        "'cosine(lr=0.1, steps=10)'",
        "[constant(1)]",
        "constant",
        "cosine(lr=0.1, steps=10) | 1",
    ],
)
def test_hostile_and_foreign_syntax_is_refused_fast(text: str) -> None:
    message = refused(text)
    assert message.startswith("spec: ")
    assert "^" in message  # it points at the offending part


def test_nothing_is_evaluated_before_the_whole_spec_passed(
    recorder: tuple[str, list[Any]],
) -> None:
    name, calls = recorder
    refused(f"{name}() | __import__('os').system('echo pwned')")
    refused(f"warmup({name}(), steps=1, shape=().__class__)")
    refused(f"{name}() | cosin(lr=1, steps=1)")
    assert calls == []
    parse(f"{name}()")
    assert calls == [()]


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[Any]]]:
    calls: list[Any] = []

    def record_me() -> Schedule:
        calls.append(())
        return lrkit.cosine(lr=0.1, steps=10)

    register("record_me", record_me)
    try:
        yield "record_me", calls
    finally:
        unregister("record_me")


def test_size_limits_are_checked_before_parsing() -> None:
    message = refused("x" * 10_000_000, within=0.5)
    assert "too long" in message and str(MAX_LENGTH) in message
    refused("(" * 100_000 + ")" * 100_000, within=0.5)
    message = refused("(" * 4_000 + "constant(1)" + ")" * 4_000, within=0.5)
    assert f"more than {MAX_DEPTH} levels" in message
    assert caret_target(message) == "("
    message = refused("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert "nested too deeply" in message


def test_numeric_literals_are_limited_in_size() -> None:
    big = "9" * (MAX_NUMBER_CHARS + 1)
    message = refused(f"cosine(lr=0.1, steps={big})")
    assert "number too long" in message
    assert caret_target(message) == big
    message = refused("constant(1" + "0" * 9_000 + ")")
    assert "number too long" in message


def test_long_operator_and_sign_chains_are_refused_without_recursion_error() -> None:
    refused("-" * 9_000 + "1")
    refused("~" * 9_000 + "constant(1)")
    refused(" * ".join(["2"] * 3_000) + " * constant(1)")
    refused("constant(1)" + " | constant(1)" * 700)


@pytest.mark.parametrize("value", [b"cosine(lr=0.1, steps=10)", None, 3, ["cosine()"]])
def test_a_spec_that_is_not_a_str_is_a_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match="expected a str"):
        parse(value)


def test_empty_and_nul_specs_are_refused() -> None:
    assert "empty" in refused("")
    assert "empty" in refused("  \n ")
    assert "NUL" in refused("constant(1)\x00")


def test_the_module_never_calls_eval_exec_or_compile() -> None:
    tree = ast.parse(SPEC_PY.read_text())
    names_used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not names_used & {"eval", "exec", "compile", "__import__"}
    assert not attributes & {"eval", "exec", "literal_eval"}


# -- error messages: what, where, what is allowed -----------------------------


def test_unknown_schedule_message_matches_the_documented_form() -> None:
    message = refused("cosin(lr=0.1, steps=10)")
    assert message == (
        "spec: unknown schedule 'cosin' at column 1; did you mean 'cosine'?\n"
        "  cosin(lr=0.1, steps=10)\n"
        "  ^^^^^"
    )


@pytest.mark.parametrize(
    ("text", "name", "bad", "suggestion"),
    [
        ("cosine(lr=0.1, stpes=10)", "cosine", "stpes", "steps"),
        ("warmup(cosine(lr=0.1, steps=10), steps=5, start=0.0)", "warmup", "start", "start_lr"),
        ("one_cycle(lr=0.1, steps=10)", "one_cycle", "lr", "max_lr"),
        ("wsd(lr=0.1, steps=100, decay_step=10)", "wsd", "decay_step", "decay_steps"),
    ],
)
def test_unknown_keyword_names_factory_keyword_suggestion_and_allowed(
    text: str, name: str, bad: str, suggestion: str
) -> None:
    message = refused(text)
    sig_names = ", ".join(_parameters(name))
    assert f"{name}() has no argument {bad!r}" in message
    assert f"did you mean {suggestion!r}?" in message
    assert f"{name}() takes: {sig_names}" in message
    assert f"at column {text.index(bad + '=') + 1}" in message
    assert caret_target(message) == bad


def _parameters(name: str) -> list[str]:
    return list(inspect.signature(FACTORIES[name]).parameters)


def test_typos_in_bare_names_get_suggestions() -> None:
    assert "did you mean 'True'?" in refused("one_cycle(max_lr=1, steps=10, three_phase=true)")
    assert "did you mean 'inf'?" in refused("constant(lr=infinity)")
    message = refused("constant(lr=cosine)")
    assert "schedule 'cosine' needs its arguments" in message


def test_unknown_schedule_without_close_match_lists_the_known_names() -> None:
    message = refused("zzzzzz(1)")
    assert "unknown schedule 'zzzzzz'" in message
    for name in ("constant", "cosine", "join", "warmup", "wsd"):
        assert name in message


def test_wrong_calls_are_value_errors_that_say_what_is_wrong() -> None:
    message = refused("cosine(0.1, 10, 0.0, 5)")
    assert "cosine() takes at most 3 positional arguments (lr, steps, min_lr), got 4" in message
    assert caret_target(message) == "5"
    message = refused("cosine(0.1, lr=0.2, steps=10)")
    assert "cosine() got 'lr' twice" in message
    message = refused("cosine(lr=0.1, lr=0.2, steps=10)")
    assert "got 'lr' twice" in message and "at column 16" in message
    message = refused("join(cosine(lr=1, steps=5), constant(1))")
    assert "missing required argument 'boundaries'" in message and "a | b" in message
    message = refused("constant(1) | constant(2)")
    assert "needs 'a' to have a length" in message


def test_factory_errors_keep_their_text_and_point_at_the_argument() -> None:
    text = "warmup(cosine(lr=0.1, steps=100), steps=5, shape='lin')"
    message = refused(text)
    assert "warmup: shape must be one of 'linear', 'cosine', 'exponential', got 'lin'" in message
    assert caret_target(message) == "shape='lin'"
    assert f"at column {text.index('shape=') + 1}" in message
    message = refused("multistep(1.0, [20, 10])")
    assert "multistep: milestones must be strictly increasing" in message
    assert caret_target(message) == "[20, 10]"
    message = refused("0.5 * cosine(lr=0.1, steps=10, min_lr=0.2)")
    assert "cosine: min_lr must be <= lr" in message
    message = refused("-0.5 * constant(1)")
    assert "scale: factor must be a finite number >= 0, got -0.5" in message


def test_locations_on_later_lines_and_after_leading_whitespace() -> None:
    message = refused("  cosin(lr=0.1, steps=10)")
    assert "at column 3" in message and caret_target(message) == "cosin"
    message = refused("warmup(\n    cosine(lr=0.1, stpes=10),\n    steps=5,\n)")
    assert "at line 2, column 20" in message and caret_target(message) == "stpes"
    message = refused("\n\n  constant(lr=0.1) | cosin(lr=1)")
    assert "at line 3, column 22" in message and caret_target(message) == "cosin"


def test_locations_count_characters_not_bytes() -> None:
    text = "warmup(constant(0.1), shape='é', stpes=3)"
    message = refused(text)
    assert f"at column {text.index('stpes') + 1}" in message
    assert caret_target(message) == "stpes"


def test_syntax_errors_are_value_errors_with_a_location() -> None:
    message = refused("cosine(lr=0.1, steps=10")
    assert "was never closed" in message and "at column 7" in message
    message = refused("cosine(lr=0.1,, steps=10)")
    assert "invalid syntax" in message and caret_target(message) == ","
    assert "at column 15" in refused("cosine(lr=0.1))")


def test_long_lines_show_a_window_around_the_problem() -> None:
    text = " | ".join(["cosine(lr=0.1, steps=10)"] * 100) + " | cosin(lr=1)"
    message = refused(text)
    lines = message.split("\n")
    assert len(lines[1]) < 150 and "..." in lines[1]
    assert caret_target(message) == "cosin"


@st.composite
def spec_with_a_typo(draw: st.DrawFn, pattern: str) -> tuple[str, str, int]:
    """A valid spec with one name matched by ``pattern`` misspelled: (text, typo, index)."""
    text = str(draw(schedules()))
    matches = list(re.finditer(pattern, text))
    assume(matches)
    match = draw(st.sampled_from(matches))
    typo = match.group(1) + "_x"
    start = match.start(1)
    return text[:start] + typo + text[match.end(1) :], typo, start


@given(spec_with_a_typo(r"(?<![\w'])(\w+)\("))
def test_any_misspelled_schedule_is_pointed_at(case: tuple[str, str, int]) -> None:
    text, typo, start = case
    message = refused(text)
    assert f"unknown schedule {typo!r} at column {start + 1}" in message
    assert caret_target(message) == typo


@given(spec_with_a_typo(r"(\w+)="))
def test_any_misspelled_keyword_is_pointed_at(case: tuple[str, str, int]) -> None:
    text, typo, start = case
    message = refused(text)
    assert f"has no argument {typo!r} at column {start + 1}" in message
    assert caret_target(message) == typo


# -- from_dict ------------------------------------------------------------------


def test_from_dict_builds_joins_and_scaled_schedules() -> None:
    d = {
        "type": "scale",
        "factor": 0.5,
        "schedule": {
            "type": "join",
            "schedules": [{"type": "constant", "lr": 1.0}, {"type": "constant", "lr": 0.1}],
            "boundaries": [10],
        },
    }
    s = from_dict(d)
    assert s == 0.5 * lrkit.join(lrkit.constant(1.0), lrkit.constant(0.1), boundaries=[10])
    assert s.to_dict() == d


def test_from_dict_accepts_omitted_defaults() -> None:
    assert from_dict({"type": "cosine", "lr": 0.1, "steps": 10}) == lrkit.cosine(0.1, 10)


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        ([1, 2], r"\$: expected a dict with a 'type' key, got list"),
        ("cosine(lr=0.1, steps=10)", r"expected a dict with a 'type' key, got str"),
        ({"lr": 0.1}, r"\$: missing key 'type' \(one of .*cosine.*scale"),
        ({"type": "cosin", "lr": 0.1}, r"unknown type 'cosin'; did you mean 'cosine'\? known:"),
        ({"type": 3}, r"unknown type 3"),
        ({"type": "__import__"}, r"unknown type '__import__'"),
        (
            {"type": "cosine", "lr": 0.1, "steps": 10, "stpes": 1},
            r"\$: unknown key 'stpes' for 'cosine'; did you mean 'steps'\? "
            r"allowed: lr, steps, min_lr",
        ),
        (
            {"type": "cosine", "lr": 0.1, "steps": 10, "a": 1, "b": 2},
            r"unknown keys 'a', 'b' for 'cosine'",
        ),
        ({"type": "cosine", "lr": 0.1}, r"'cosine' is missing required key 'steps'"),
        (
            {"type": "warmup", "schedule": {"type": "cosine", "lr": 0.1, "steps": 0}, "steps": 1},
            r"\$\.schedule: cosine: steps must be an integer >= 1, got 0",
        ),
        (
            {"type": "warmup", "schedule": {"type": "cosine", "lr": 0.1}, "steps": 1},
            r"\$\.schedule: 'cosine' is missing required key 'steps'",
        ),
        (
            {"type": "join", "schedules": [{"type": "constant", "lr": 1.0}, 3], "boundaries": [1]},
            r"\$: join: schedules must be an lrkit schedule, got 3",
        ),
        (
            {"type": "constant", "lr": "__import__('os').system('x')"},
            r"constant: lr must be a finite number >= 0, got \"__import__",
        ),
        ({"type": "constant", "lr": {1, 2}}, r"\$\.lr: expected a JSON value"),
        ({"type": "constant", "lr": lrkit.constant(1.0)}, r"\$\.lr: expected a JSON value"),
        ({"type": "constant", "lr": 1.0, "type_": 1}, r"unknown key 'type_'"),
        ({"type": "scale", "factor": -1.0, "schedule": {"type": "constant", "lr": 1.0}}, "factor"),
    ],
)
def test_from_dict_refuses_bad_input_naming_the_place(d: Any, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        from_dict(d)


def test_from_dict_limits_nesting() -> None:
    d: dict[str, Any] = {"type": "constant", "lr": 0.1}
    for _ in range(MAX_DICT_DEPTH + 1):
        d = {"type": "warmup", "schedule": d, "steps": 1}
    start = time.process_time()
    with pytest.raises(ValueError, match="nested too deeply"):
        from_dict(d)
    assert time.process_time() - start < 1.0  # CPU time, as in refused()


def test_to_dict_refuses_non_schedules() -> None:
    with pytest.raises(TypeError, match="expected an lrkit schedule"):
        to_dict("cosine()")  # type: ignore[arg-type]


# -- the extension point ------------------------------------------------------


def _halved(schedule: Schedule, factor: float = 0.5) -> Schedule:
    return factor * schedule


@pytest.fixture
def registered() -> Iterator[Callable[..., None]]:
    added: list[str] = []

    def add(name: str, factory: Callable[..., Any], **options: Any) -> None:
        register(name, factory, **options)
        added.append(name)

    yield add
    for name in added:
        unregister(name)


def test_registered_names_work_in_parse_and_from_dict(registered: Callable[..., None]) -> None:
    registered("halved", _halved)
    assert "halved" in names()
    s = parse("halved(cosine(lr=0.2, steps=10)) | constant(0.1)")
    assert s == 0.5 * lrkit.cosine(lr=0.2, steps=10) | lrkit.constant(0.1)
    assert parse("halved(constant(1), factor=0.25)") == 0.25 * lrkit.constant(1.0)
    message = refused("halved(constant(1), facter=0.25)")
    assert "did you mean 'factor'?" in message and "halved() takes: schedule, factor" in message
    built = from_dict({"type": "halved", "schedule": {"type": "constant", "lr": 1.0}})
    assert built == 0.5 * lrkit.constant(1.0)


def test_registered_fill_aliases(registered: Callable[..., None]) -> None:
    def peak(top_lr: float, steps: int) -> Schedule:
        return lrkit.cosine(lr=top_lr, steps=steps)

    registered("peak", peak, fill_aliases={"top_lr": "lr"})
    assert parse("peak()", lr=0.1, steps=5) == lrkit.cosine(lr=0.1, steps=5)


def test_type_errors_from_a_factory_become_value_errors(registered: Callable[..., None]) -> None:
    def sized(items: Any) -> Schedule:
        return lrkit.constant(float(len(items)))

    registered("sized", sized)
    assert parse("sized([1, 2])") == lrkit.constant(2.0)
    message = refused("sized(3)")
    assert "invalid sized(...)" in message and "has no len()" in message


def test_register_refuses_bad_names_and_clashes(registered: Callable[..., None]) -> None:
    for bad in ("cosine", "join", "inf", "scale", "not a name", "lambda", ""):
        with pytest.raises(ValueError):
            register(bad, _halved)
    with pytest.raises(TypeError, match="callable"):
        register("x_not_callable", 3)  # type: ignore[arg-type]
    registered("halved", _halved)
    with pytest.raises(ValueError, match="already registered"):
        register("halved", _halved)
    register("halved", _halved, replace=True)
    with pytest.raises(ValueError, match="not a registered name"):
        unregister("cosine")


def test_fill_inside_warmup_leaves_the_warmup_out_of_the_budget() -> None:
    s = lrkit.parse("warmup(cosine(), steps=100)", lr=0.1, steps=1000)
    assert s == lrkit.warmup(lrkit.cosine(lr=0.1, steps=900), steps=100)
    assert s.length == 1000 and s(1000) == 0.0 and s(999) > 0.0
    # Positional warmup steps count the same; explicit inner steps always win.
    assert lrkit.parse("warmup(cosine(), 100)", lr=0.1, steps=1000) == s
    explicit = lrkit.parse("warmup(cosine(lr=0.2, steps=50), steps=100)", lr=0.1, steps=1000)
    assert explicit == lrkit.warmup(lrkit.cosine(lr=0.2, steps=50), steps=100)
    # Outside a warmup the budget is filled as it is.
    assert lrkit.parse("cosine()", lr=0.1, steps=1000).length == 1000
