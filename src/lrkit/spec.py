"""The spec language: schedules as short strings and as plain dicts.

:func:`parse` reads the text that ``str(schedule)`` prints, and more: the
factory call syntax of :mod:`lrkit.schedules` with keyword or positional
arguments, ``a | b`` to join schedules and ``number * schedule`` to scale one:

    warmup(cosine(lr=3e-4, steps=10000, min_lr=3e-5), steps=500)
    linear(0.0, 0.1, steps=100) | 0.5 * cosine(lr=0.2, steps=900)

It never evaluates code. The text goes through three gates, each one cheap:

1. Limits, checked on the raw text before any parser sees it: at most
   :data:`MAX_LENGTH` characters, brackets nested at most :data:`MAX_DEPTH`
   deep (one linear scan; brackets inside strings count too), numeric
   literals at most :data:`MAX_NUMBER_CHARS` characters (so ``10...0`` with
   a million digits never becomes an int).
2. :func:`ast.parse` builds a syntax tree, which is then checked, node by
   node, against a whitelist: calls of known schedule names (keyword and
   positional arguments, no ``*``/``**`` unpacking), numbers, strings,
   ``None``/``True``/``False``, ``inf``/``nan``, lists and tuples, a unary
   minus on a number, ``|`` between schedules and ``*`` between a number and
   a schedule. Unknown names and keywords, missing arguments and anything
   else (attribute access, subscripts, lambdas, ``**``, f-strings, ...) are a
   :class:`ValueError` that shows where: the column and a caret line under
   the offending text.
3. Only when the whole tree passed, a small evaluator walks it and calls the
   factories. Their own checks (``steps must be an integer >= 1``) come back
   as a :class:`ValueError` with the location added.

:func:`from_dict` is the inverse of ``Schedule.to_dict()``; it validates the
dict (known ``type``, known keys) and builds the schedule, evaluating nothing.

New spec names (the controllers ``plateau(...)``, ``guard(...)``,
``adaptive(...)``) plug in with :func:`register`; the parser itself needs no
change.

Examples:
    >>> import lrkit
    >>> s = lrkit.parse("warmup(cosine(lr=0.1, steps=100), steps=10)")
    >>> s == lrkit.warmup(lrkit.cosine(lr=0.1, steps=100), steps=10)
    True
    >>> lrkit.parse(str(s)) == s, lrkit.from_dict(s.to_dict()) == s
    (True, True)
    >>> lrkit.parse("cosine()", lr=0.1, steps=1000)
    cosine(lr=0.1, steps=1000)
"""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
import keyword
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lrkit.schedules import FACTORIES, Join, Scaled, Schedule

__all__ = [
    "MAX_DEPTH",
    "MAX_DICT_DEPTH",
    "MAX_LENGTH",
    "MAX_NUMBER_CHARS",
    "from_dict",
    "names",
    "parse",
    "register",
    "to_dict",
    "unregister",
]

Factory = Callable[..., Any]

#: The longest spec :func:`parse` reads, in characters.
MAX_LENGTH = 10_000
#: How deep brackets (``(``, ``[``, ``{``) may nest in a spec.
MAX_DEPTH = 32
#: The longest numeric literal, in characters (``1.2345678901234567e-05`` is 22).
MAX_NUMBER_CHARS = 40
#: How deep schedules may nest in :func:`from_dict`'s input.
MAX_DICT_DEPTH = 64
# How deep the syntax tree may be once parsed. Left-nested chains of one
# operator (``a | b | c``) count as one level: the evaluator unrolls them.
_MAX_TREE_DEPTH = 100

#: Bare names that stand for numbers.
_NUMBER_NAMES: dict[str, float] = {"inf": math.inf, "nan": math.nan}

# Where ``parse(..., lr=x)`` puts ``x`` for factories that have no ``lr``:
# factory name -> {parameter: fill name}.
_FILL_ALIASES: dict[str, dict[str, str]] = {
    "one_cycle": {"max_lr": "lr"},
    "cyclic": {"max_lr": "lr"},
    "invscaling": {"eta0": "lr"},
}

# Names added with register(), on top of lrkit.schedules.FACTORIES.
_EXTRA: dict[str, Factory] = {}
_EXTRA_ALIASES: dict[str, dict[str, str]] = {}

# The classes whose fields are the keys of ``to_dict()``, where the spec
# factory has another signature (join takes its parts as *schedules).
_DICT_CLASSES: dict[str, Factory] = {"join": Join, "scale": Scaled}

_NEWLINE = re.compile(r"\r\n|\r|\n")
# A numeric literal: a digit (or a dot and a digit) not inside a name.
_NUMBER = re.compile(r"(?<![\w.])\.?\d[\w.]*")
_OPENERS = "([{"
_CLOSERS = ")]}"
_ALLOWED = (
    "a spec may contain only schedule calls such as cosine(lr=0.1, steps=100), numbers, "
    "strings, None/True/False, lists, 'a | b' and 'number * schedule'"
)


# --------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------


def names() -> list[str]:
    """Every spec name :func:`parse` knows, sorted.

    Returns:
        The names of :data:`lrkit.schedules.FACTORIES` plus those added with
        :func:`register`.

    Examples:
        >>> "cosine" in names(), "join" in names()
        (True, True)
    """
    return sorted({**FACTORIES, **_EXTRA})


def register(
    name: str,
    factory: Factory,
    *,
    fill_aliases: Mapping[str, str] | None = None,
    replace: bool = False,
) -> None:
    """Add a spec name, so that ``parse("name(...)")`` and ``from_dict`` build it.

    The parser reads positional and keyword parameters, and which are
    required, from ``inspect.signature(factory)``; :func:`from_dict` calls
    ``factory(**fields)`` with the keys of the dict, so a registered factory
    should accept the fields its ``to_dict()`` writes as keywords.

    A new schedule family is one :class:`lrkit.Schedule` subclass registered
    here; with its ``_formula`` it also runs in ``to_keras`` and ``to_optax``
    (:mod:`lrkit.schedules`, "Adding a family: one class").

    Args:
        name: the spec name, a Python identifier such as ``"plateau"``.
        factory: a callable that returns the object (a class or a function).
        fill_aliases: ``{parameter: fill name}``: which ``parse(..., **fill)``
            value fills a parameter of another name, e.g. ``{"max_lr": "lr"}``.
        replace: allow replacing a name registered before (never a built-in
            schedule name).

    Raises:
        ValueError: ``name`` is not an identifier, is reserved (``inf``,
            ``nan``, a keyword) or is taken.
        TypeError: ``factory`` is not callable.

    Examples:
        >>> import lrkit.spec
        >>> def halved(schedule):
        ...     return 0.5 * schedule
        >>> lrkit.spec.register("halved", halved)
        >>> lrkit.parse("halved(constant(lr=0.2))")
        0.5 * constant(lr=0.2)
        >>> lrkit.spec.unregister("halved")
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"register: name must be a Python identifier, got {name!r}")
    if name in _NUMBER_NAMES or name == "scale":
        raise ValueError(f"register: name {name!r} is reserved")
    if name in FACTORIES:
        raise ValueError(f"register: {name!r} is a built-in schedule and cannot be replaced")
    if name in _EXTRA and not replace:
        raise ValueError(f"register: {name!r} is already registered; pass replace=True")
    if not callable(factory):
        raise TypeError(f"register: factory must be callable, got {factory!r}")
    _signature(factory)  # fail now, not at the first parse, if it has none
    _EXTRA[name] = factory
    _EXTRA_ALIASES[name] = dict(fill_aliases or {})


def unregister(name: str) -> None:
    """Remove a name added with :func:`register`.

    Args:
        name: the spec name.

    Raises:
        ValueError: ``name`` was not registered (built-in names cannot be removed).
    """
    if name not in _EXTRA:
        raise ValueError(
            f"unregister: {name!r} is not a registered name; registered: {sorted(_EXTRA)}"
        )
    del _EXTRA[name]
    _EXTRA_ALIASES.pop(name, None)


def _factory(name: str) -> Factory | None:
    return FACTORIES.get(name) or _EXTRA.get(name)


def _aliases(name: str) -> Mapping[str, str]:
    return _EXTRA_ALIASES.get(name) or _FILL_ALIASES.get(name, {})


@dataclass(frozen=True)
class _Signature:
    """What a factory accepts, from ``inspect.signature``."""

    positional: tuple[str, ...]  # given by position, in order
    variadic: str | None  # the name of ``*args``, if any (join's schedules)
    keywords: tuple[str, ...]  # given by keyword
    required: tuple[str, ...]  # no default (``*args`` excluded)
    any_keyword: bool  # has ``**kwargs``


@functools.lru_cache(maxsize=256)
def _signature(factory: Factory) -> _Signature:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot read the signature of {factory!r}: {exc}") from exc
    kinds = inspect.Parameter
    return _Signature(
        positional=tuple(
            p.name for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
        ),
        variadic=next((p.name for p in params if p.kind is kinds.VAR_POSITIONAL), None),
        keywords=tuple(
            p.name for p in params if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
        ),
        required=tuple(
            p.name
            for p in params
            if p.default is kinds.empty and p.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD)
        ),
        any_keyword=any(p.kind is kinds.VAR_KEYWORD for p in params),
    )


def _suggest(word: str, options: list[str] | tuple[str, ...]) -> str:
    """``"; did you mean 'x'?"`` for the closest option, or ``""``.

    Close spellings first (difflib), then an option that contains the word or
    is contained in it (``lr`` -> ``max_lr``, ``infinity`` -> ``inf``).
    """
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if not close and len(word) >= 2:
        close = sorted(
            (o for o in options if len(o) >= 2 and (word in o or o in word)),
            key=lambda o: -difflib.SequenceMatcher(None, word, o).ratio(),
        )
    return f"; did you mean {close[0]!r}?" if close else ""


# --------------------------------------------------------------------------
# Locations: "at column 12" and a caret line under the offending text
# --------------------------------------------------------------------------


class _Source:
    """The spec text, and how positions in the parsed part map back to it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = _NEWLINE.split(text)
        # ast.parse rejects leading whitespace ("unexpected indent"), so it
        # sees the text without it; positions shift back by that prefix.
        self.body = text.lstrip()
        prefix = _NEWLINE.split(text[: len(text) - len(self.body)])
        self.line_shift = len(prefix) - 1
        self.col_shift = len(prefix[-1])
        self.body_lines = _NEWLINE.split(self.body)

    def _to_text(self, line: int, col: int) -> tuple[int, int]:
        """A (1-based line, 0-based char column) in the body -> in the text."""
        return line + self.line_shift, col + (self.col_shift if line == 1 else 0)

    def node_span(self, node: ast.AST) -> tuple[int, int, int, int]:
        """(line, col, end_line, end_col) of a node in the text; cols in characters."""

        def char_col(line: int, byte_col: int) -> int:
            raw = self.body_lines[line - 1].encode("utf-8")[:byte_col]
            return len(raw.decode("utf-8", errors="ignore"))

        line = getattr(node, "lineno", 1)
        col = char_col(line, getattr(node, "col_offset", 0))
        end_line = getattr(node, "end_lineno", None) or line
        end_col = char_col(end_line, getattr(node, "end_col_offset", None) or 0)
        return (*self._to_text(line, col), *self._to_text(end_line, end_col))

    def error(
        self,
        what: str,
        span: tuple[int, int, int, int],
        hint: str = "",
    ) -> ValueError:
        """``spec: <what> at column N<hint>`` and the source line with carets."""
        line, col, end_line, end_col = span
        line = min(max(line, 1), len(self.lines))
        src = self.lines[line - 1]
        col = min(max(col, 0), len(src))
        stop = end_col if end_line == line and end_col > col else len(src)
        where = f"column {col + 1}" if len(self.lines) == 1 else f"line {line}, column {col + 1}"
        # Long lines: show a window around the offending text.
        start = max(0, col - 30)
        end = min(len(src), max(start + 100, col + 1))
        lead = "..." if start else ""
        tail = "..." if end < len(src) else ""
        shown = src[start:end]
        pad = "".join("\t" if ch == "\t" else " " for ch in src[start:col])
        carets = "^" * max(1, min(stop, end) - col)
        excerpt = f"  {lead}{shown}{tail}\n  {' ' * len(lead)}{pad}{carets}"
        return ValueError(f"spec: {what} at {where}{hint}\n{excerpt}")

    def node_error(self, node: ast.AST, what: str, hint: str = "") -> ValueError:
        return self.error(what, self.node_span(node), hint)

    def char_error(self, index: int, width: int, what: str, hint: str = "") -> ValueError:
        """An error at ``self.text[index:index + width]``."""
        before = _NEWLINE.split(self.text[:index])
        line, col = len(before), len(before[-1])
        return self.error(what, (line, col, line, col + width), hint)


# --------------------------------------------------------------------------
# parse
# --------------------------------------------------------------------------


def parse(spec: str, /, **fill: Any) -> Schedule:
    """Build a schedule from its spec string, without evaluating any code.

    The grammar is a small, safe subset of Python expressions::

        spec   := sched
        sched  := NAME "(" [args] ")" | sched "|" sched | number "*" sched
                | sched "*" number | "(" sched ")"
        args   := value ("," value)* ("," NAME "=" value)*   (positional first)
        value  := sched | number | STRING | None | True | False | "[" values "]"
                | "(" values ")"
        number := ["-"] (INT | FLOAT | inf | nan)

    ``NAME`` is a factory of :data:`lrkit.schedules.FACTORIES` (or one added
    with :func:`register`). Positional arguments go to the parameters in
    their order (for ``join``: the parts, with ``boundaries=`` by keyword).
    ``a | b`` and ``x * s`` use the operators of :class:`~lrkit.Schedule`,
    so ``(a | b) | c`` and ``a | (b | c)`` give the same flat join. A unary
    minus is allowed on a number so that the factory can say why a negative
    value is wrong.

    ``**fill`` gives defaults for *required* arguments that a call leaves
    out, by parameter name, in every call that accepts the name (this is how
    ``lrkit compare`` fills ``lr`` and ``steps``). Arguments written in the
    spec always win; optional arguments are never filled; fill names no
    call uses are ignored. ``lr`` also fills ``max_lr`` in ``one_cycle`` and
    ``cyclic`` (which have no ``lr``). Inside ``warmup(..., steps=w)`` a
    filled ``steps`` is ``steps - w``, so that the whole schedule spans the
    budget: ``parse("warmup(cosine(), steps=100)", lr=0.1, steps=1000)`` is
    ``warmup(cosine(lr=0.1, steps=900), steps=100)``. A ``swa(...)`` around a
    schedule that never ends (``constant()``) takes the filled ``steps`` as
    the total its fractions (``start=0.75``) refer to, and writes them as
    counts: ``swa(constant(lr=0.1), start=750)``.

    Args:
        spec: the spec text, e.g. ``"cosine(lr=0.1, steps=1000)"``.
        **fill: defaults for missing required arguments, e.g. ``lr=0.1``.

    Returns:
        The schedule (or, for a name added with :func:`register`, what its
        factory returns).

    Raises:
        TypeError: ``spec`` is not a ``str``.
        ValueError: the spec is too long or too deeply nested, is not valid
            syntax, uses anything outside the grammar, names an unknown
            schedule or keyword, misses a required argument, or a factory
            rejects an argument. The message shows the column and the text.

    Examples:
        >>> parse("cosine(lr=0.1, steps=100)")
        cosine(lr=0.1, steps=100)
        >>> parse("linear(0.0, 0.1, 10) | cosine(lr=0.1, steps=90)")
        linear(start_lr=0.0, end_lr=0.1, steps=10) | cosine(lr=0.1, steps=90)
        >>> parse("0.5 * multistep(1.0, milestones=[30, 60])")
        0.5 * multistep(lr=1.0, milestones=[30, 60])
        >>> parse("warmup(cosine(), steps=5)", lr=0.1, steps=100)
        warmup(cosine(lr=0.1, steps=95), steps=5)
        >>> parse("one_cycle()", lr=0.1, steps=100)
        one_cycle(max_lr=0.1, steps=100)
        >>> parse("cosin(lr=0.1, steps=10)")
        Traceback (most recent call last):
        ...
        ValueError: spec: unknown schedule 'cosin' at column 1; did you mean 'cosine'?
          cosin(lr=0.1, steps=10)
          ^^^^^
        >>> parse("__import__('os').system('ls')")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: spec: attribute access ('.system') is not allowed at column 1; ...
          __import__('os').system('ls')
          ^^^^^^^^^^^^^^^^^^^^^^^
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec: expected a str, got {type(spec).__name__}")
    if len(spec) > MAX_LENGTH:
        raise ValueError(
            f"spec: too long: {len(spec)} characters, at most {MAX_LENGTH} are allowed"
        )
    source = _Source(spec)
    if not source.body:
        raise ValueError("spec: empty; expected a schedule such as 'cosine(lr=0.1, steps=1000)'")
    _check_text(source)
    tree = _syntax_tree(source)
    _check_tree(tree.body, source, fill)
    return _Evaluator(source, fill).top(tree.body)


def _check_text(source: _Source) -> None:
    """The limits on the raw text: no NUL, bracket depth, numeric literal size."""
    text = source.text
    if "\x00" in text:
        raise source.char_error(text.index("\x00"), 1, "NUL character")
    depth = 0
    for i, ch in enumerate(text):
        if ch in _OPENERS:
            depth += 1
            if depth > MAX_DEPTH:
                raise source.char_error(
                    i, 1, f"brackets nested too deeply (more than {MAX_DEPTH} levels)"
                )
        elif ch in _CLOSERS and depth:
            depth -= 1
    for match in _NUMBER.finditer(text):
        if len(match.group()) > MAX_NUMBER_CHARS:
            raise source.char_error(
                match.start(),
                len(match.group()),
                f"number too long ({len(match.group())} characters, "
                f"at most {MAX_NUMBER_CHARS} are allowed)",
            )


def _syntax_tree(source: _Source) -> ast.Expression:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escapes in strings
            return ast.parse(source.body, mode="eval")
    except SyntaxError as exc:
        line = exc.lineno or 1
        col = max((exc.offset or 1) - 1, 0)
        end_line = exc.end_lineno or line
        end_col = max((exc.end_offset or 1) - 1, 0)
        span = (*source._to_text(line, col), *source._to_text(end_line, end_col))
        raise source.error(exc.msg, span) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        # CPython's parser gives up on very long operator chains this way.
        raise ValueError(f"spec: too complex to parse ({type(exc).__name__}); {_ALLOWED}") from None


def _is_plain_number(node: ast.AST) -> bool:
    """An unsigned numeric literal: ``1``, ``2.5e-3``, ``inf``."""
    if isinstance(node, ast.Constant):
        return type(node.value) in (int, float)
    return isinstance(node, ast.Name) and node.id in _NUMBER_NAMES


def _is_number(node: ast.AST) -> bool:
    """A numeric literal, with at most one sign: ``1``, ``-1``, ``inf``."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _is_plain_number(node.operand)
    return _is_plain_number(node)


def _is_schedule(node: ast.AST) -> bool:
    """A node that stands for a schedule: a call or a ``|``/``*`` expression."""
    return isinstance(node, ast.Call) or (
        isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitOr, ast.Mult))
    )


def _kind(node: ast.AST) -> str:
    """What a value node is, for messages."""
    if _is_number(node):
        return "a number"
    if isinstance(node, ast.Constant):
        return {str: "a string", bool: "a bool", type(None): "None"}.get(
            type(node.value), type(node.value).__name__
        )
    if isinstance(node, (ast.List, ast.Tuple)):
        return "a list"
    return "an expression"


# Descriptions of the syntax a spec may not use, for messages.
_FORBIDDEN: dict[type, str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Lambda: "lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.JoinedStr: "an f-string",
    ast.Compare: "a comparison",
    ast.BoolOp: "'and'/'or'",
    ast.IfExp: "a conditional expression",
    ast.NamedExpr: "':='",
    ast.Starred: "'*' unpacking",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "a slice",
}

_OPERATORS: dict[type, str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitAnd: "&",
    ast.BitXor: "^",
    ast.MatMult: "@",
    ast.Mult: "*",
    ast.BitOr: "|",
    ast.Invert: "~",
    ast.Not: "not",
    ast.USub: "-",
    ast.UAdd: "+",
}


def _check_tree(top: ast.AST, source: _Source, fill: Mapping[str, Any]) -> None:
    """Check every node against the whitelist before anything is evaluated.

    An iterative walk in source order (so the first problem in the text is
    the one reported), with a depth limit, so no input can exhaust the stack.
    Where schedules are expected (the whole spec, the sides of ``|`` and
    ``*``) is checked after the walk, so that forbidden syntax is reported as
    such rather than as a misplaced value.
    """
    operators: list[ast.BinOp] = []
    stack: list[tuple[ast.AST, int]] = [(top, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_TREE_DEPTH:
            raise source.node_error(node, f"nested too deeply (more than {_MAX_TREE_DEPTH} levels)")
        if isinstance(node, ast.BinOp):
            operators.append(node)
        children = _check_node(node, source, fill)
        for child, step in reversed(children):
            stack.append((child, depth + step))
    if not _is_schedule(top):
        raise source.node_error(
            top,
            f"expected a schedule, got {_kind(top)}",
            "; write e.g. cosine(lr=0.1, steps=1000)",
        )
    for node in operators:
        _check_operands(node, source)


def _check_node(
    node: ast.AST, source: _Source, fill: Mapping[str, Any]
) -> list[tuple[ast.AST, int]]:
    """Check one node; return its children to check, with their depth step."""
    if isinstance(node, ast.Constant):
        if type(node.value) not in (int, float, str, bool, type(None)):
            raise source.node_error(
                node,
                f"{type(node.value).__name__} literal {node.value!r} is not allowed",
                f"; {_ALLOWED}",
            )
        return []
    if isinstance(node, ast.Name):
        if node.id in _NUMBER_NAMES:
            return []
        if _factory(node.id) is not None:
            raise source.node_error(
                node,
                f"schedule {node.id!r} needs its arguments",
                f"; write e.g. {node.id}(...)",
            )
        raise source.node_error(
            node,
            f"unknown name {node.id!r}",
            _suggest(node.id, [*names(), *_NUMBER_NAMES, "True", "False", "None"])
            or f"; {_ALLOWED}",
        )
    if isinstance(node, (ast.List, ast.Tuple)):
        return [(elt, 1) for elt in node.elts]  # a Starred element fails below
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, (ast.USub, ast.UAdd)) and _is_plain_number(node.operand):
            return []
        symbol = _OPERATORS.get(type(node.op), "?")
        raise source.node_error(
            node,
            f"unary '{symbol}' is only allowed as a sign on a number",
            f"; {_ALLOWED}",
        )
    if isinstance(node, ast.BinOp):
        return _check_binop(node, source)
    if isinstance(node, ast.Call):
        return _check_call(node, source, fill)
    what = _FORBIDDEN.get(type(node), f"{type(node).__name__} syntax")
    if isinstance(node, ast.Attribute):
        what += f" ('.{node.attr}')"
    raise source.node_error(node, f"{what} is not allowed", f"; {_ALLOWED}")


def _check_binop(node: ast.BinOp, source: _Source) -> list[tuple[ast.AST, int]]:
    if not isinstance(node.op, (ast.BitOr, ast.Mult)):
        symbol = _OPERATORS.get(type(node.op), "?")
        raise source.error(
            f"operator '{symbol}' is not allowed",
            _operator_span(node, symbol, source),
            "; only 'a | b' (join) and 'number * schedule' (scale) are",
        )
    # A left-nested chain (a | b | c) is one level: the evaluator unrolls it.
    left_step = 0 if isinstance(node.left, ast.BinOp) else 1
    return [(node.left, left_step), (node.right, 1)]


def _check_operands(node: ast.BinOp, source: _Source) -> None:
    """``|`` between schedules, ``*`` between a number and a schedule."""
    if isinstance(node.op, ast.BitOr):
        for side, name in ((node.left, "left"), (node.right, "right")):
            if not _is_schedule(side):
                raise source.node_error(
                    side, f"'|' joins schedules, but its {name} side is {_kind(side)}"
                )
    elif not (
        (_is_number(node.left) and _is_schedule(node.right))
        or (_is_schedule(node.left) and _is_number(node.right))
    ):
        raise source.node_error(
            node,
            f"'*' scales a schedule by a number, got {_kind(node.left)} * {_kind(node.right)}",
            "; write e.g. 0.5 * cosine(lr=0.1, steps=100)",
        )


def _operator_span(node: ast.BinOp, symbol: str, source: _Source) -> tuple[int, int, int, int]:
    """Where the operator of ``node`` is: between its two sides."""
    _, _, line, col = source.node_span(node.left)
    right_line, right_col, _, _ = source.node_span(node.right)
    if line == right_line:
        between = source.lines[line - 1][col:right_col]
        found = between.find(symbol)
        if found >= 0:
            return line, col + found, line, col + found + len(symbol)
    return source.node_span(node)


def _check_call(
    node: ast.Call, source: _Source, fill: Mapping[str, Any]
) -> list[tuple[ast.AST, int]]:
    func = node.func
    if not isinstance(func, ast.Name):
        what = _FORBIDDEN.get(type(func), "calling an expression")
        if isinstance(func, ast.Attribute):
            what += f" ('.{func.attr}')"
        raise source.node_error(
            func, f"{what} is not allowed", "; only schedule names can be called, e.g. cosine(...)"
        )
    factory = _factory(func.id)
    if factory is None:
        raise source.node_error(
            func,
            f"unknown schedule {func.id!r}",
            _suggest(func.id, names()) or f"; known: {', '.join(names())}",
        )
    sig = _signature(factory)
    name = func.id
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            raise source.node_error(arg, "'*' unpacking is not allowed", f"; {_ALLOWED}")
    if sig.variadic is None and len(node.args) > len(sig.positional):
        raise source.node_error(
            node.args[len(sig.positional)],
            f"{name}() takes at most {len(sig.positional)} positional arguments "
            f"({', '.join(sig.positional)}), got {len(node.args)}",
        )
    given = set(sig.positional[: len(node.args)])
    for kw in node.keywords:
        if kw.arg is None:
            raise source.node_error(kw, "'**' unpacking is not allowed", f"; {_ALLOWED}")
        span = source.node_span(kw)
        name_span = (span[0], span[1], span[0], span[1] + len(kw.arg))
        if kw.arg not in sig.keywords and not sig.any_keyword:
            raise source.error(
                f"{name}() has no argument {kw.arg!r}",
                name_span,
                f"{_suggest(kw.arg, sig.keywords) or ';'} {name}() takes: "
                f"{', '.join(sig.keywords) or 'no keyword arguments'}",
            )
        if kw.arg in given:
            raise source.error(f"{name}() got {kw.arg!r} twice", name_span)
        given.add(kw.arg)
    missing = [p for p in sig.required if p not in given and _fill_value(name, p, fill) is _NOTHING]
    if missing:
        hint = ""
        if name == "join" and missing == ["boundaries"]:
            hint = "; write join(a, b, boundaries=[step]) or a | b"
        raise source.node_error(
            node,
            f"{name}() is missing required argument{'s' if len(missing) > 1 else ''} "
            + ", ".join(repr(p) for p in missing),
            hint,
        )
    children: list[tuple[ast.AST, int]] = [(arg, 1) for arg in node.args]
    return children + [(kw.value, 1) for kw in node.keywords]


_NOTHING = object()


def _signature_defaults(factory: Factory | None) -> dict[str, Any]:
    """The defaults of a factory's parameters, by name."""
    if factory is None:
        return {}
    params = inspect.signature(factory).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _warmup_steps(value: Any, budget: int) -> Any:
    """A warmup's ``steps``: a float in (0, 1) is that fraction of ``budget`` (at least 1 step)."""
    if type(value) is float and 0 < value < 1:
        return max(1, round(value * budget))
    return value


def _fill_value(name: str, param: str, fill: Mapping[str, Any]) -> Any:
    """The fill value for ``param`` of factory ``name``, or ``_NOTHING``."""
    if param in fill:
        return fill[param]
    alias = _aliases(name).get(param)
    if alias is not None and alias in fill:
        return fill[alias]
    return _NOTHING


class _Evaluator:
    """Evaluates a tree that passed :func:`_check_tree`; calls factories only."""

    def __init__(self, source: _Source, fill: Mapping[str, Any]) -> None:
        self.source = source
        self.fill = fill

    def top(self, node: ast.AST) -> Any:
        return self.value(node)

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return _NUMBER_NAMES[node.id]
        if isinstance(node, ast.UnaryOp):
            number = self.value(node.operand)
            return -number if isinstance(node.op, ast.USub) else number
        if isinstance(node, ast.List):
            return [self.value(elt) for elt in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(self.value(elt) for elt in node.elts)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        # Unreachable after _check_tree; refuse rather than guess.
        raise self.source.node_error(node, f"{type(node).__name__} is not allowed")

    def binop(self, node: ast.BinOp) -> Any:
        chain = []
        left: ast.AST = node
        while isinstance(left, ast.BinOp):  # unroll a | b | c without recursion
            chain.append(left)
            left = left.left
        result = self.value(left)
        for op in reversed(chain):
            right = self.value(op.right)
            result = self.apply(op, result, right)
        return result

    def apply(self, node: ast.BinOp, left: Any, right: Any) -> Any:
        try:
            if isinstance(node.op, ast.BitOr):
                for value, side in ((left, node.left), (right, node.right)):
                    if not isinstance(value, Schedule):
                        raise self.source.node_error(
                            side, f"'|' joins schedules, got {type(value).__name__}"
                        )
                return left | right
            number, schedule = (left, right) if isinstance(right, Schedule) else (right, left)
            if not isinstance(schedule, Schedule) or type(number) not in (int, float):
                raise self.source.node_error(
                    node, "'*' scales a schedule by a number", f"; {_ALLOWED}"
                )
            return schedule * number
        except (ValueError, TypeError, ArithmeticError) as exc:
            if str(exc).startswith("spec: "):
                raise
            symbol = _OPERATORS[type(node.op)]
            raise self.source.node_error(node, f"invalid '{symbol}'", f": {exc}") from exc

    def _inner_fill(self, name: str, where: Mapping[str, ast.AST]) -> Mapping[str, Any]:
        """The fill for the arguments of a ``name(...)`` call.

        A warmup spends its own ``steps`` of the budget, so a filled ``steps``
        of the schedule it wraps is the budget minus the warmup: with
        ``steps=1000``, ``warmup(cosine(), steps=100)`` ends at step 1000.
        """
        budget = self.fill.get("steps")
        given = where.get("steps")
        if name != "warmup" or budget is None or given is None:
            return self.fill
        node = given.value if isinstance(given, ast.keyword) else given
        warm = _warmup_steps(self.value(node), budget)
        if type(warm) in (int, float) and 0 < warm < budget:
            return {**self.fill, "steps": budget - warm}
        return self.fill

    def _resolve_fraction(
        self, node: ast.Call, positional: Any, args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        """``warmup(..., steps=0.05)``: a fraction of the total, made a count from the fill."""
        index = list(positional).index("steps") if "steps" in positional else None
        if index is not None and index < len(args):
            value, put = args[index], lambda v: args.__setitem__(index, v)
        elif "steps" in kwargs:
            value, put = kwargs["steps"], lambda v: kwargs.__setitem__("steps", v)
        else:
            return
        if type(value) is not float or not 0 < value < 1:
            return
        budget = self.fill.get("steps")
        if budget is None:
            raise self.source.node_error(
                node,
                "warmup(...) needs the total",
                f": steps={value!r} is a fraction of the total number of steps, which is not "
                "known here; give it (Scheduler(optimizer, spec, total_steps=N), or "
                "parse(spec, steps=N)), or write the warmup's steps as a count",
            )
        put(_warmup_steps(value, budget))

    def _resolve_swa(self, positional: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
        """``swa(constant(), start=0.75)``: a schedule that never ends has no length to take
        fractions of, so a known total (the fill's ``steps``) makes them counts."""
        budget = self.fill.get("steps")
        inner = args[0] if args else kwargs.get("schedule")
        if budget is None or not isinstance(inner, Schedule) or inner.length is not None:
            return
        defaults = _signature_defaults(_factory("swa"))

        def given(param: str) -> Any:
            index = list(positional).index(param)
            return args[index] if index < len(args) else kwargs.get(param, defaults.get(param))

        # Without swa_lr there is nothing to anneal: anneal_steps is left as it is.
        for param in ("start", "anneal_steps") if given("swa_lr") is not None else ("start",):
            index = list(positional).index(param)
            value = given(param)
            if type(value) is float and 0 < value < 1:
                count = max(1, math.ceil(value * budget - 1e-9))
                if index < len(args):
                    args[index] = count
                else:
                    kwargs[param] = count

    def call(self, node: ast.Call) -> Any:
        name = node.func.id if isinstance(node.func, ast.Name) else ""
        factory = _factory(name)
        if factory is None:  # unreachable after _check_tree
            raise self.source.node_error(node.func, "only schedule names can be called")
        sig = _signature(factory)
        where: dict[str, ast.AST] = dict(zip(sig.positional, node.args, strict=False))
        where.update({kw.arg: kw for kw in node.keywords if kw.arg})
        outer_fill = self.fill
        self.fill = self._inner_fill(name, where)
        try:
            args = [self.value(arg) for arg in node.args]
            kwargs = {kw.arg: self.value(kw.value) for kw in node.keywords if kw.arg}
        finally:
            self.fill = outer_fill
        if name == "warmup":
            self._resolve_fraction(node, sig.positional, args, kwargs)
        elif name == "swa":
            self._resolve_swa(sig.positional, args, kwargs)
        filled = []
        for param in sig.required:
            if param in where:
                continue
            value = _fill_value(name, param, self.fill)
            if value is not _NOTHING:
                kwargs[param] = value
                filled.append(param)
        try:
            return factory(*args, **kwargs)
        except (ValueError, TypeError, ArithmeticError) as exc:
            message = str(exc)
            match = re.match(rf"{re.escape(name)}: (\w+) ", message)
            culprit = where.get(match.group(1)) if match else None
            if culprit is not None:
                raise self.source.node_error(culprit, "invalid argument", f": {message}") from exc
            note = f" (filled in: {', '.join(f'{p}={kwargs[p]!r}' for p in filled)})"
            raise self.source.node_error(
                node, f"invalid {name}(...)", f": {message}{note if filled else ''}"
            ) from exc


# --------------------------------------------------------------------------
# dicts
# --------------------------------------------------------------------------


def to_dict(schedule: Schedule) -> dict[str, Any]:
    """The schedule as JSON types: ``{"type": name, **fields}``.

    The same as ``schedule.to_dict()``; :func:`from_dict` reads it back.

    Args:
        schedule: any lrkit schedule.

    Returns:
        A dict of JSON types; nested schedules are nested dicts.

    Raises:
        TypeError: ``schedule`` has no ``to_dict``.

    Examples:
        >>> import lrkit
        >>> to_dict(0.5 * lrkit.constant(0.2))
        {'type': 'scale', 'factor': 0.5, 'schedule': {'type': 'constant', 'lr': 0.2}}
    """
    method = getattr(schedule, "to_dict", None)
    if not callable(method):
        raise TypeError(f"to_dict: expected an lrkit schedule, got {type(schedule).__name__}")
    return method()


def from_dict(d: Mapping[str, Any]) -> Schedule:
    """Build a schedule from ``to_dict()``'s output (also after a JSON round trip).

    The dict is ``{"type": name, **fields}``: ``name`` is a spec name (see
    :func:`names`) or ``"scale"`` (a scaled schedule: ``factor`` and
    ``schedule``); ``join`` takes ``schedules`` (a list) and ``boundaries``.
    A nested dict is a nested schedule, lists become tuples. Nothing in it is
    evaluated: strings stay strings.

    Args:
        d: the dict.

    Returns:
        The schedule; ``from_dict(s.to_dict()) == s``.

    Raises:
        ValueError: not a dict, no or an unknown ``type``, unknown or missing
            keys, values of other than JSON types, nesting deeper than
            :data:`MAX_DICT_DEPTH`, or a factory rejects a value. The message
            names the place, e.g. ``$.schedule.steps``.

    Examples:
        >>> from_dict({"type": "warmup", "schedule": {"type": "constant", "lr": 0.1},
        ...            "steps": 10})
        warmup(constant(lr=0.1), steps=10)
        >>> from_dict({"type": "cosine", "lr": 0.1, "step": 10})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: from_dict: $: unknown key 'step' for 'cosine'; did you mean 'steps'? ...
    """
    return _from_dict(d, "$", 0)


def _dict_factory(kind: str) -> Factory | None:
    return _DICT_CLASSES.get(kind) or _factory(kind)


def _from_dict(d: Any, path: str, depth: int) -> Any:
    if not isinstance(d, Mapping):
        raise ValueError(
            f"from_dict: {path}: expected a dict with a 'type' key, "
            f"got {type(d).__name__}: {_short(d)}"
        )
    if depth > MAX_DICT_DEPTH:
        raise ValueError(
            f"from_dict: {path}: schedules nested too deeply (more than {MAX_DICT_DEPTH} levels)"
        )
    known = sorted({*names(), *_DICT_CLASSES})
    if "type" not in d:
        raise ValueError(
            f"from_dict: {path}: missing key 'type' (one of {', '.join(known)}); "
            f"got keys {sorted(map(str, d))}"
        )
    kind = d["type"]
    factory = _dict_factory(kind) if isinstance(kind, str) else None
    if factory is None:
        hint = _suggest(kind, known) if isinstance(kind, str) else ""
        raise ValueError(
            f"from_dict: {path}: unknown type {_short(kind)}{hint} known: {', '.join(known)}"
        )
    sig = _signature(factory)
    unknown = [k for k in d if k != "type" and k not in sig.keywords]
    if unknown and not sig.any_keyword:
        hint = _suggest(str(unknown[0]), sig.keywords) if len(unknown) == 1 else ""
        raise ValueError(
            f"from_dict: {path}: unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(_short(k) for k in unknown)} for {kind!r}{hint} "
            f"allowed: {', '.join(sig.keywords)}"
        )
    missing = [p for p in sig.required if p not in d]
    if missing:
        raise ValueError(
            f"from_dict: {path}: {kind!r} is missing required "
            f"key{'s' if len(missing) > 1 else ''} {', '.join(repr(p) for p in missing)}"
        )
    kwargs = {
        key: _field(value, f"{path}.{key}", depth) for key, value in d.items() if key != "type"
    }
    try:
        return factory(**kwargs)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise ValueError(f"from_dict: {path}: {exc}") from exc


def _field(value: Any, path: str, depth: int) -> Any:
    """One field value: JSON scalars as they are, lists as tuples, dicts as schedules."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, Mapping):
        return _from_dict(value, path, depth + 1)
    if isinstance(value, (list, tuple)):
        return tuple(_field(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
    raise ValueError(
        f"from_dict: {path}: expected a JSON value (number, string, bool, None, list "
        f"or dict), got {type(value).__name__}: {_short(value)}"
    )


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
