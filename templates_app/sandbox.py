"""The Jinja2 sandbox message templates run in: plain data only, bounded size, work and time."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from jinja2 import BaseLoader, TemplateNotFound, nodes
from jinja2.exceptions import (
    SecurityError,
    TemplateError,
    TemplateRuntimeError,
    TemplateSyntaxError,
)
from jinja2.runtime import StrictUndefined, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

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
# an argument ("%*s").
_WIDE_FORMAT = re.compile(r"%[-+ #0]*(?:\d{7}|\*)|%[-+ #0]*\d*\.(?:\d{7}|\*)")
# The same in str.format specs ("{:>9999999}"); a nested "{" takes the width from an argument.
_WIDE_BRACE = re.compile(r"\{[^{}]*:[^{}]*(?:\d{7}|\{)")


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


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple)) else 0


def _check_size(value: Any, what: str) -> Any:
    if _size(value) > max_output():
        raise RenderLimitError(f"{what} would be longer than {max_output():,} characters")
    return value


def _predicted_size(name: str, target: Any, args: tuple, kwargs: dict) -> int:
    """How big an expanding string operation's result would be, before running it."""
    if not isinstance(target, str):
        return 0
    if name in _WIDTH_METHODS:
        width = args[0] if args else kwargs.get("width", kwargs.get("tabsize", 0))
        factor = target.count("\t") if name == "expandtabs" else 1
        return len(target) + (width * max(factor, 1) if isinstance(width, int) else 0)
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        old, new = args[0], args[1]
        count = target.count(old) if old else len(target) + 1
        return len(target) + count * _size(new)
    if name == "join" and args and isinstance(args[0], (list, tuple)):
        return sum(_size(item) for item in args[0]) + len(target) * len(args[0])
    return 0


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
        self.filters["_bounded"] = _bounded
        self.filters["with_utm"] = with_utm
        for name, function in list(self.filters.items()):
            if name != "_bounded":
                self.filters[name] = _sized_filter(name, function)

    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):
        if isinstance(source, str):
            if len(source) > settings.TEMPLATE_MAX_SOURCE_CHARS:
                raise TemplateSyntaxError(
                    f"template is longer than {settings.TEMPLATE_MAX_SOURCE_CHARS:,} characters",
                    1,
                )
        try:
            if isinstance(source, str):
                source = self.parse(source, name, filename)
            _harden(source)
            return super().compile(source, name, filename, raw, defer_init)
        except (SyntaxError, RecursionError, MemoryError) as exc:
            # Python's own compiler limits (e.g. nesting depth): a template error, not a crash.
            raise TemplateSyntaxError(f"template is nested too deeply ({exc})", 1) from exc

    def getattr(self, obj: Any, attribute: str) -> Any:
        # ``data.items`` is the event's "items" key, not dict.items: data wins over methods.
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**" and isinstance(right, int) and abs(right) > 64:
            raise RenderLimitError("exponent larger than 64")
        if operator_ == "*" and isinstance(right, int) and isinstance(left, (str, list, tuple)):
            if _size(left) * right > max_output():
                raise RenderLimitError(
                    f"repetition would be longer than {max_output():,} characters"
                )
        if operator_ == "*" and isinstance(left, int) and isinstance(right, (str, list, tuple)):
            if _size(right) * left > max_output():
                raise RenderLimitError(
                    f"repetition would be longer than {max_output():,} characters"
                )
        if operator_ == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
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
        if _predicted_size(name, target, args, kwargs) > max_output():
            raise RenderLimitError(f"{name}() would make more than {max_output():,} characters")
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
        if name == "format" and isinstance(value, str) and _WIDE_FORMAT.search(value):
            raise RenderLimitError("format width over the output limit")
        return _check_size(function(*args, **kwargs), f"filter {name}")

    for marker in ("jinja_pass_arg",):
        if hasattr(function, marker):
            setattr(call, marker, getattr(function, marker))
    call.__name__ = name
    return call


def _harden(template: nodes.Template) -> None:
    """Refuse ``self`` and route every loop through the budget, on the parsed template."""
    for node in template.find_all(nodes.Name):
        if node.name == "self" and node.ctx == "load":
            raise TemplateSyntaxError("'self' is not available in message templates", node.lineno)
    for loop in template.find_all(nodes.For):
        if not (isinstance(loop.iter, nodes.Filter) and loop.iter.name == "_bounded"):
            loop.iter = nodes.Filter(loop.iter, "_bounded", [], [], None, None, lineno=loop.lineno)


_INTERNAL_REPR = re.compile(
    r"(?:<|&lt;|&#60;)(?:class|function|built-in|bound method|method|module|jinja2\.|Macro|"
    r"LoopContext|TemplateReference|Namespace|Undefined)\b| object at 0x[0-9a-f]+"
)


def reveals_internals(text: str) -> bool:
    """A last check on the output: no class, function or object repr may leave."""
    return _INTERNAL_REPR.search(text) is not None


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
    except TemplateError:
        raise
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
