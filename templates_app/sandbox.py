"""The Jinja2 sandbox message templates run in: plain data only, bounded size, work and time."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

# A send task's soft time limit may strike inside a template: it is the task's to handle.
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from jinja2 import BaseLoader, TemplateNotFound, nodes, pass_environment, pass_eval_context
from jinja2.exceptions import (
    SecurityError,
    TemplateError,
    TemplateRuntimeError,
    TemplateSyntaxError,
)
from jinja2.filters import (
    do_batch,
    do_tojson,
    do_wordwrap,
    make_attrgetter,
    sync_do_join,
    sync_do_slice,
    sync_do_sum,
)
from jinja2.runtime import StrictUndefined, Undefined, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from .utm import with_utm

# The names a message template may start from; anything else is refused when it is saved.
CONTEXT_ROOTS = frozenset({"data", "recipient", "links", "notification"})
# Jinja globals kept: range (capped) and dict. cycler, joiner, lipsum and namespace are
# removed: namespace is the only mutable state a loop can carry from one pass to the next.
GLOBALS = ("range", "dict")
# Python expanders whose result size follows an argument: predicted before they run.
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
# Filters whose width argument sets the size of their result.
_WIDTH_FILTERS = frozenset({"center", "indent"})
# A printf width or precision of seven digits or more ("%9999999s", "%.9999999f") or from
# an argument ("%*s"), after an optional mapping key ("%(name)9999999s").
_WIDE_FORMAT = re.compile(
    r"%(?:\([^)]*\))?[-+ #0]*(?:\d{7}|\*)|%(?:\([^)]*\))?[-+ #0]*\d*\.(?:\d{7}|\*)"
)
# The same in str.format specs ("{:>9999999}"); a nested "{" takes the width from an argument.
_WIDE_BRACE = re.compile(r"\{[^{}]*:[^{}]*(?:\d{7}|\{)")
# What sizes and repetitions are checked on: text, and the bytes str.encode() makes.
_TEXT = (str, bytes, bytearray)
_SEQUENCES = (*_TEXT, list, tuple)
# Whole numbers from * and ** stay under 10,000 digits (Python prints at most 4,300): past
# that, one multiplication takes milliseconds and a few squarings take seconds.
MAX_INT_DIGITS = 10_000
_MAX_INT_BITS = MAX_INT_DIGITS * 3322 // 1000  # log2(10) bits per digit
# tojson repeats its indent once per nesting level on every line.
MAX_JSON_INDENT = 8
# Characters wordwrap may copy cutting long words into lines (~0.1 s): textwrap copies the
# rest of a word once per line it cuts from it.
_MAX_WRAP_COPY = 3_000_000_000


class RenderLimitError(TemplateRuntimeError):
    """A template exceeded a limit (size, loop work, time); ``partial`` is what it made so far."""

    def __init__(self, message: str, partial: str = ""):
        super().__init__(message)
        self.partial = partial


class TestableUndefined(StrictUndefined):
    """A missing variable fails loudly when printed, but may be tested and looped over.

    ``{% if data.carrier %}`` is how authors write optional parts; printing a misspelt
    ``{{ data.ordr_id }}`` must still fail the message rather than send a blank.
    """

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0


def max_output() -> int:
    return settings.TEMPLATE_MAX_OUTPUT_CHARS


class Budget:
    """Loop iterations, calls and wall time one render may spend."""

    __slots__ = ("steps", "deadline")

    def __init__(self) -> None:
        self.steps = settings.TEMPLATE_MAX_LOOP_ITERATIONS
        self.deadline = time.monotonic() + settings.TEMPLATE_MAX_RENDER_SECONDS

    def spend(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise RenderLimitError(
                f"template stopped: more than {settings.TEMPLATE_MAX_LOOP_ITERATIONS:,} "
                "loop iterations or calls"
            )
        # The clock is read at every step (~50 ns): one slow loop body or filter cannot run
        # on for hundreds of steps past the deadline.
        self.check_clock()

    def check_clock(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimitError(
                f"template stopped: rendering took more than "
                f"{settings.TEMPLATE_MAX_RENDER_SECONDS} s"
            )


_state = threading.local()


def start_budget() -> Budget:
    _state.budget = Budget()
    return _state.budget


def _budget() -> Budget:
    budget = getattr(_state, "budget", None)
    # Outside render_bounded (a direct Template.render), each loop or call gets its own.
    return budget if budget is not None else Budget()


def _bounded(iterable: Iterable) -> Iterator:
    """Every ``for`` loop iterates through this (``_harden`` rewrites each loop's iterable)."""
    budget = _budget()
    for item in iterable:
        budget.spend()
        yield item


def _safe_range(*args: int) -> range:
    values = range(*args)
    if len(values) > settings.TEMPLATE_MAX_LOOP_ITERATIONS:
        raise RenderLimitError(f"range() of {len(values):,} items is over the loop limit")
    return values


def _check_count(count: Any, what: str) -> None:
    """A count of items to make (batch size, slices) is held to the loop limit, like range()."""
    if isinstance(count, int) and count > settings.TEMPLATE_MAX_LOOP_ITERATIONS:
        raise RenderLimitError(f"{what}({count:,}) is over the loop limit")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, _SEQUENCES) else 0


def _check_size(value: Any, what: str) -> Any:
    if _size(value) > max_output():
        raise RenderLimitError(f"{what} would be longer than {max_output():,} characters")
    return value


def _check_predicted(size: int, what: str) -> None:
    if size > max_output():
        raise RenderLimitError(f"{what} would make more than {max_output():,} characters")


def _check_int_size(operator_: str, left: int, right: int) -> None:
    """Refuse a whole-number * or ** whose result would be too long, before computing it."""
    if operator_ == "*":
        bits = left.bit_length() + right.bit_length()
    else:  # a negative exponent makes a float, which overflows on its own
        bits = left.bit_length() * max(right, 0)
    if bits > _MAX_INT_BITS:
        raise RenderLimitError(f"result would be longer than {MAX_INT_DIGITS:,} digits")


def _text_size(item: Any) -> int:
    return len(item) if isinstance(item, _TEXT) else len(str(item))


def _joined_size(items: Any, separator: Any) -> int:
    """The length of ``separator.join(items)``, from its parts."""
    if isinstance(items, _TEXT):  # joining a string puts the separator between its characters
        return len(items) + _text_size(separator) * max(len(items) - 1, 0)
    if not isinstance(items, (list, tuple)):
        return 0
    return sum(map(_text_size, items)) + _text_size(separator) * max(len(items) - 1, 0)


def _translated_size(text: str, table: Any) -> int:
    """str.translate's result: each character as long as its replacement in the table."""
    if not isinstance(table, (dict, list, tuple)):
        return 0
    pairs = table.items() if isinstance(table, dict) else enumerate(table)
    growth = {
        key: len(new) - 1
        for key, new in pairs
        if isinstance(key, int) and 0 <= key < 0x110000 and isinstance(new, str) and len(new) > 1
    }
    if not growth:
        return len(text)
    counts = Counter(text)
    return len(text) + sum(counts[chr(key)] * extra for key, extra in growth.items())


def _predicted_size(name: str, target: Any, args: tuple, kwargs: dict) -> int:
    """How big an expanding string operation's result would be, before running it."""
    if name == "to_bytes" and isinstance(target, int):
        length = args[0] if args else kwargs.get("length", 1)
        return length if isinstance(length, int) else 0
    if not isinstance(target, _TEXT):
        return 0
    if name in _WIDTH_METHODS:
        width = args[0] if args else kwargs.get("width", kwargs.get("tabsize", 0))
        tab = "\t" if isinstance(target, str) else b"\t"
        factor = target.count(tab) if name == "expandtabs" else 1
        return len(target) + (width * max(factor, 1) if isinstance(width, int) else 0)
    if name == "replace" and len(args) >= 2 and isinstance(args[0], _TEXT):
        old, new = args[0], args[1]
        count = target.count(old) if old else len(target) + 1
        return len(target) + count * _size(new)
    if name == "join" and args:
        return _joined_size(args[0], target)
    if name == "translate" and args and isinstance(target, str):
        return _translated_size(target, args[0])
    return 0


def _wide_format(template: str | bytes | bytearray) -> bool:
    if not isinstance(template, str):
        template = template.decode("latin-1")  # bytes % formats like str %
    return _WIDE_FORMAT.search(template) is not None


def plain(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    return False


def _finalize(value: Any) -> Any:
    """What ``{{ ... }}`` may print: text, numbers and plain lists/mappings, never objects."""
    if value is None:
        return ""
    if isinstance(value, Undefined) or plain(value):
        return value
    # No repr here: it would print the class and address this check exists to hide.
    raise SecurityError("only text, numbers, lists and mappings can be printed")


class LayoutLoader(BaseLoader):
    """The only templates an ``{% include %}`` can reach: layouts, by key (no files)."""

    def get_source(self, environment, template: str):
        from .models import Layout

        layout = Layout.objects.filter(key=template).only("html", "updated_at").first()
        if layout is None:
            raise TemplateNotFound(template)
        updated_at = layout.updated_at
        return (
            layout.html,
            None,
            lambda: Layout.objects.filter(key=template, updated_at=updated_at).exists(),
        )


class MessageSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment with limits on source size, output size, loops and time."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *, autoescape: bool):
        super().__init__(
            autoescape=autoescape,
            undefined=TestableUndefined,
            finalize=_finalize,
            loader=LayoutLoader(),
            cache_size=0,
        )
        self.globals = {"range": _safe_range, "dict": dict}
        self.filters.update(_CHECKED_FILTERS)
        self.filters["with_utm"] = with_utm
        for name, function in list(self.filters.items()):
            if name not in _INTERNAL_FILTERS:
                self.filters[name] = _sized_filter(name, function)
        self.filters["_bounded"] = _bounded
        self.filters["_concat"] = _concat

    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):
        if isinstance(source, str):
            if len(source) > settings.TEMPLATE_MAX_SOURCE_CHARS:
                raise TemplateSyntaxError(
                    f"template is longer than {settings.TEMPLATE_MAX_SOURCE_CHARS:,} characters",
                    1,
                )
        # Jinja folds constant expressions by running them while compiling, several times
        # over for a chain of filters: all of it spends one budget, not a fresh one per call.
        own_budget = getattr(_state, "budget", None) is None
        if own_budget:
            start_budget()
        try:
            if isinstance(source, str):
                source = self.parse(source, name, filename)
            _harden(source)
            return super().compile(source, name, filename, raw, defer_init)
        except (SyntaxError, RecursionError, MemoryError) as exc:
            # Python's own compiler limits (e.g. nesting depth): a template error, not a crash.
            raise TemplateSyntaxError(f"template is nested too deeply ({exc})", 1) from exc
        finally:
            if own_budget:
                _state.budget = None

    def getattr(self, obj: Any, attribute: str) -> Any:
        # ``data.items`` is the event's "items" key, not dict.items: data wins over methods.
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context, operator_: str, left: Any, right: Any) -> Any:
        # Operators read the clock too: a template without loops or calls can still chain
        # thousands of megabyte copies.
        _budget().check_clock()
        if operator_ == "**" and isinstance(right, int) and abs(right) > 64:
            raise RenderLimitError("exponent larger than 64")
        if operator_ in ("*", "**") and isinstance(left, int) and isinstance(right, int):
            _check_int_size(operator_, left, right)
        if operator_ == "*" and isinstance(right, int) and isinstance(left, _SEQUENCES):
            if _size(left) * right > max_output():
                raise RenderLimitError(
                    f"repetition would be longer than {max_output():,} characters"
                )
        if operator_ == "*" and isinstance(left, int) and isinstance(right, _SEQUENCES):
            if _size(right) * left > max_output():
                raise RenderLimitError(
                    f"repetition would be longer than {max_output():,} characters"
                )
        if operator_ == "%" and isinstance(left, _TEXT) and _wide_format(left):
            raise RenderLimitError("format width over the output limit")
        result = super().call_binop(context, operator_, left, right)
        return _check_size(result, "result")

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _budget().spend()
        name = getattr(__obj, "__name__", "")
        target = getattr(__obj, "__self__", None)
        if target is None:  # str.format comes wrapped by the sandbox's own formatter
            target = getattr(getattr(__obj, "__wrapped__", None), "__self__", None)
        if name in ("format", "format_map") and isinstance(target, str):
            if _WIDE_BRACE.search(target):
                raise RenderLimitError("format width over the output limit (or from an argument)")
        if name == "join" and isinstance(target, _TEXT) and args:
            # Materialised once, so a generator's parts can be measured before joining.
            if not isinstance(args[0], (*_TEXT, list, tuple)):
                args = (list(args[0]), *args[1:])
        _check_predicted(_predicted_size(name, target, args, kwargs), f"{name}()")
        return _check_size(super().call(__context, __obj, *args, **kwargs), f"{name}()")


def _sized_filter(name: str, function):
    """A filter refusing to make text longer than the output limit (e.g. center(10**9))."""

    def call(*args: Any, **kwargs: Any) -> Any:
        _budget().spend()
        # Filters marked pass_context / pass_eval_context get that first, then the value.
        params = args[1:] if hasattr(function, "jinja_pass_arg") else args
        value, options = (params[0] if params else None), (*params[1:], *kwargs.values())
        if name in _WIDTH_FILTERS and options:
            width = options[0]
            width = len(width) if isinstance(width, str) else width
            lines = str(value).count("\n") + 1 if name == "indent" else 1
            if isinstance(width, int) and width * lines > max_output():
                raise RenderLimitError(f"{name}: width {width:,} is over the output limit")
        if name == "replace" and isinstance(value, str) and len(options) >= 2:
            if _predicted_size("replace", value, options[:2], {}) > max_output():
                raise RenderLimitError(f"replace would make more than {max_output():,} characters")
        if name == "format" and isinstance(value, str) and _wide_format(value):
            raise RenderLimitError("format width over the output limit")
        return _check_size(function(*args, **kwargs), f"filter {name}")

    for marker in ("jinja_pass_arg",):
        if hasattr(function, marker):
            setattr(call, marker, getattr(function, marker))
    call.__name__ = name
    return call


# Filters replaced by versions that measure their result (or bound their work) first: the
# originals build it whole before the size check after every filter could refuse it.


@pass_eval_context
def _join(eval_ctx, value: Iterable, d: Any = "", attribute: Any = None) -> str:
    if attribute is not None:
        value = map(make_attrgetter(eval_ctx.environment, attribute), value)
    items = list(value)
    _check_predicted(_joined_size(items, d), "join")
    return sync_do_join(eval_ctx, items, d)


@pass_environment
def _sum(environment, iterable: Iterable, attribute: Any = None, start: Any = 0) -> Any:
    if not isinstance(start, (list, tuple)):
        return sync_do_sum(environment, iterable, attribute, start)
    # Lists and tuples are joined in one pass: sum() copies the total so far once per item.
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    items = list(iterable)
    _check_predicted(len(start) + sum(map(_size, items)), "sum")
    for item in items:
        if not isinstance(item, type(start)):
            raise TypeError(
                f'can only concatenate {type(start).__name__} (not "{type(item).__name__}")'
            )
    return type(start)(chain(start, *items))


@pass_environment
def _wordwrap(
    environment,
    s: str,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: Any = None,
    break_on_hyphens: bool = True,
) -> str:
    if wrapstring is not None:
        # Each line may end in the wrapstring, and a line can be a single character.
        _check_predicted(_size(s) + (_size(s) + 1) * _text_size(wrapstring), "wordwrap")
    if break_long_words and isinstance(s, str) and isinstance(width, int) and width > 0:
        _check_wrap_work(s, width)
    return do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


def _check_wrap_work(s: str, width: int) -> None:
    """Cutting a megabyte word into one-character lines takes textwrap a quarter of a minute."""
    if len(s) * len(s) // width <= _MAX_WRAP_COPY:  # the usual case: no need to find words
        return
    longest = max(map(len, s.split()), default=0)
    if longest > width and longest * len(s) // width > _MAX_WRAP_COPY:
        raise RenderLimitError(
            f"wordwrap: cutting a {longest:,}-character word into lines of {width} takes too long"
        )


@pass_eval_context
def _tojson(eval_ctx, value: Any, indent: Any = None) -> str:
    width = len(indent) if isinstance(indent, str) else indent
    if isinstance(width, int) and width > MAX_JSON_INDENT:
        raise RenderLimitError(f"tojson: indent over {MAX_JSON_INDENT}")
    if isinstance(width, int) and isinstance(value, (list, tuple, dict)):
        # One line per item, each at least its indent, a value and a line break.
        _check_predicted(len(value) * (width + 2), "tojson")
    return do_tojson(eval_ctx, value, indent)


def _batch(value: Iterable, linecount: int, fill_with: Any = None) -> Iterator:
    _check_count(linecount, "batch")  # the last batch is filled up to this size
    return _bounded(do_batch(value, linecount, fill_with))


def _slice(value: Iterable, slices: int, fill_with: Any = None) -> Iterator:
    _check_count(slices, "slice")  # slices past the items are made (empty) one by one
    return _bounded(sync_do_slice(value, slices, fill_with))


_CHECKED_FILTERS = {
    "join": _join,
    "sum": _sum,
    "wordwrap": _wordwrap,
    "tojson": _tojson,
    "batch": _batch,
    "slice": _slice,
}


@pass_eval_context
def _concat(eval_ctx, values: tuple) -> str:
    """Every ``~`` joins through this (``_harden`` rewrites it): refused like ``+``."""
    _budget().check_clock()
    _check_predicted(sum(map(_size, values)), "result")
    join = markup_join if eval_ctx.autoescape else str_join
    return _check_size(join(values), "result")


# Filters _harden inserts: not counted as calls (a loop spends per item, ``~`` is an operator).
_INTERNAL_FILTERS = frozenset({"_bounded", "_concat"})
# Filters whose output spends a loop step per item.
_COUNTED_ITERS = frozenset({"_bounded", "batch", "slice"})


class _ConcatThroughCheck(NodeTransformer):
    """``a ~ b`` becomes ``(a, b)|_concat``: Concat is not a binop the sandbox intercepts."""

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        self.generic_visit(node)
        parts = nodes.Tuple(node.nodes, "load", lineno=node.lineno)
        return nodes.Filter(parts, "_concat", [], [], None, None, lineno=node.lineno)


def _harden(template: nodes.Template) -> None:
    """Refuse ``self``, route every loop through the budget and every ``~`` through a size
    check, on the parsed template."""
    for node in template.find_all(nodes.Name):
        if node.name == "self" and node.ctx == "load":
            raise TemplateSyntaxError("'self' is not available in message templates", node.lineno)
    for loop in template.find_all(nodes.For):
        # batch and slice count each row they make already: a step a row, not two.
        if not (isinstance(loop.iter, nodes.Filter) and loop.iter.name in _COUNTED_ITERS):
            loop.iter = nodes.Filter(loop.iter, "_bounded", [], [], None, None, lineno=loop.lineno)
    _ConcatThroughCheck().visit(template)


_INTERNAL_REPR = re.compile(
    r"(?:<|&lt;|&#60;)(?:class|function|built-in|bound method|method|module|jinja2\.|Macro|"
    r"LoopContext|TemplateReference|Namespace|Undefined)\b"
)
_OBJECT_AT = " object at 0x"
_OBJECT_ADDRESS = re.compile(_OBJECT_AT + "[0-9a-f]")


def reveals_internals(text: str) -> bool:
    """A last check on the output: no class, function or object repr may leave.

    The object address is looked for as plain text first: one pattern with both branches
    tried both at every space of a message, half of this check's time."""
    if _INTERNAL_REPR.search(text) is not None:
        return True
    return _OBJECT_AT in text and _OBJECT_ADDRESS.search(text) is not None


html_env = MessageSandbox(autoescape=True)
text_env = MessageSandbox(autoescape=False)


def environment(html: bool) -> MessageSandbox:
    return html_env if html else text_env


def render_bounded(template, context: dict[str, Any]) -> str:
    """Render with a fresh budget, stopping at the output limit (``partial`` keeps the start)."""
    limit = max_output()
    start_budget()
    chunks: list[str] = []
    length = 0
    try:
        for chunk in template.generate(context):
            chunks.append(chunk)
            length += len(chunk)
            if length > limit:
                partial = "".join(chunks)[:limit]
                raise RenderLimitError(
                    f"output cut: longer than {limit:,} characters", partial + "\n[cut]"
                )
    except (TemplateError, SoftTimeLimitExceeded):
        raise  # the task's time limit is the task's, not this template's fault
    except RecursionError as exc:
        raise RenderLimitError("template stopped: calls nested too deeply") from exc
    except Exception as exc:  # noqa: BLE001 - staff-written code: any failure is the template's
        # 1 / 0, 1 + 'a', int('x') with this event's data: that message fails, not the batch.
        raise TemplateRuntimeError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        _state.budget = None
    text = "".join(chunks)
    if reveals_internals(text):
        raise SecurityError("the template printed an internal object")
    return text


__all__ = [
    "CONTEXT_ROOTS",
    "GLOBALS",
    "RenderLimitError",
    "TestableUndefined",
    "environment",
    "render_bounded",
]
