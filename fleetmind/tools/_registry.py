"""Tools that agents can call, and the registry that holds them.

A tool is a named function with a JSON Schema for its arguments. Agents (and the LLMs behind them)
see only the name, the description and the schema, and call a tool with a JSON object of
arguments. The registry is protocol-neutral on purpose: a Python function decorated with
:func:`tool` and a tool offered by a remote MCP server are both a :class:`ToolSpec`, so agents use
one registry for both.

Calling a tool never raises for a mistake the agent can fix or a failure inside the tool: bad
arguments, an unknown tool name and an exception raised by the tool all come back as a
:class:`ToolResult` with ``ok=False`` and a one-line ``error``, which the agent reads like any
other observation. Cancellation is still asyncio cancellation and goes through.

Tools can also come from a :class:`ToolSource`, such as an MCP server, added with
:meth:`ToolRegistry.add_source`. A source is loaded lazily, on the first :meth:`ToolRegistry.load`
or on the first call of a tool name the registry does not know yet, so that a server nobody uses
is never started.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, overload, runtime_checkable

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetmind._validation import describe_validation_error
from fleetmind.errors import AgentError, FleetmindError

__all__ = ["ToolRegistry", "ToolResult", "ToolSource", "ToolSpec", "tool", "tool_spec"]

_log = logging.getLogger(__name__)

_TOOL_ATTR = "__fleetmind_tool__"

# MCP allows letters, digits, "_", "-" and "." in tool names, up to 128 characters; LLM APIs are
# stricter still, so anything outside this set would fail later and far from its cause.
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

# An entry in a Google-style "Args:" section: ``name (type): text`` or ``name: text``.
_ARG_LINE_RE = re.compile(r"^\*{0,2}([A-Za-z_]\w*)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_ARGS_HEADERS = frozenset({"Args:", "Arguments:", "Parameters:"})

# Errors shown to an agent are one line; a tool that raises with a huge message (a whole HTTP
# body, say) should not flood the agent's context.
_MAX_ERROR_CHARS = 500

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What an agent needs to know to call a tool, and the callable that runs it.

    Build one with :func:`tool` (or :meth:`from_function`) for a Python function. A spec built by
    hand, for example for a tool of a remote MCP server, leaves ``arguments_model`` as ``None``:
    the registry then passes the arguments to ``fn`` as keywords unchecked, and the remote side
    validates them.

    Attributes:
        name: The name agents call the tool by, unique within a registry.
        description: What the tool does, written for the agent that decides whether to call it.
        input_schema: JSON Schema of the arguments object. Treat it as read-only.
        fn: The callable that runs the tool, sync or async; it takes the arguments as keywords.
        arguments_model: The pydantic model that validates the arguments, if there is one.
        arguments_as_object: Call ``fn`` with the arguments object as its one positional
            argument instead of as keywords. Bridged tools use it: an MCP tool's argument
            names are JSON keys, which need not be Python identifiers.
    """

    name: str
    description: str
    input_schema: dict[str, Any] = field(hash=False)
    fn: Callable[..., Any]
    arguments_model: type[BaseModel] | None = field(default=None, repr=False, compare=False)
    arguments_as_object: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise AgentError(
                f"tool name {self.name!r} is not valid: use 1 to 128 letters, digits, '_', '-' "
                "or '.'"
            )

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> ToolSpec:
        """Describe a plain function as a tool.

        The argument schema comes from the parameters' type hints (an unannotated parameter
        accepts anything); the description from the first paragraph of the docstring; each
        parameter's description from the docstring's ``Args:`` section.

        Args:
            fn: A sync or async function with named parameters only.
            name: The tool's name; defaults to the function's name.
            description: The tool's description; defaults to the docstring's first paragraph.

        Raises:
            AgentError: The function cannot be described as a tool (``*args``, positional-only
                parameters, a type hint pydantic cannot handle, or a bad name).
        """
        tool_name = name if name is not None else getattr(fn, "__name__", "")
        summary, arg_docs = _parse_docstring(inspect.getdoc(fn))
        model = _arguments_model(fn, tool_name, arg_docs)
        return cls(
            name=tool_name,
            description=description if description is not None else summary,
            input_schema=model.model_json_schema(),
            fn=fn,
            arguments_model=model,
        )


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one tool call, as the calling agent sees it.

    Attributes:
        ok: Whether the tool ran and returned.
        value: What the tool returned; ``None`` when ``ok`` is false.
        error: One line saying what went wrong; ``None`` when ``ok`` is true.
    """

    ok: bool
    value: Any = None
    error: str | None = None


@runtime_checkable
class ToolSource(Protocol):
    """Tools that come from somewhere else (an MCP server, say) and join a registry lazily.

    :meth:`specs` may be slow (it may start a server), so the registry calls it only when the
    tools are first needed; :meth:`aclose` releases whatever :meth:`specs` started.

    A source whose tools can change while it runs may also offer ``on_change(callback)``: the
    registry gives it a callback, and reloads the source's tools (:meth:`ToolRegistry.reload`)
    each time it is called.
    """

    @property
    def name(self) -> str:
        """A short name for the source, used in errors."""
        ...

    async def specs(self) -> list[ToolSpec]:
        """The source's tools, ready to call."""
        ...

    async def aclose(self) -> None:
        """Release what the source holds (processes, connections); safe to call twice."""
        ...


@overload
def tool(fn: F, /) -> F: ...


@overload
def tool(*, name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...


def tool(
    fn: F | None = None, /, *, name: str | None = None, description: str | None = None
) -> F | Callable[[F], F]:
    """Mark a function as a tool that agents can call.

    Use it bare (``@tool``) or with overrides (``@tool(name="grep", description="...")``). The
    function is returned unchanged and stays callable as before; its :class:`ToolSpec` is attached
    to it and :func:`tool_spec` returns it.

    Args:
        fn: The function, when used as ``@tool``.
        name: The tool's name; defaults to the function's name.
        description: The tool's description; defaults to the docstring's first paragraph.

    Raises:
        AgentError: The function cannot be described as a tool (see
            :meth:`ToolSpec.from_function`).
    """

    def decorate(func: F) -> F:
        spec = ToolSpec.from_function(func, name=name, description=description)
        try:
            setattr(func, _TOOL_ATTR, spec)
        except (AttributeError, TypeError) as exc:
            raise AgentError(
                f"@tool cannot mark {func!r}: use it on a plain function defined with def"
            ) from exc
        return func

    if fn is not None:
        return decorate(fn)
    return decorate


def tool_spec(fn: Callable[..., Any]) -> ToolSpec:
    """The :class:`ToolSpec` that :func:`tool` attached to ``fn``.

    Raises:
        AgentError: ``fn`` was not decorated with :func:`tool`.
    """
    spec = getattr(fn, _TOOL_ATTR, None)
    if not isinstance(spec, ToolSpec):
        raise AgentError(f"{_callable_name(fn)} is not a tool: decorate it with @tool")
    return spec


class ToolRegistry:
    """The tools an agent may call, by name.

    Example:
        ```python
        registry = ToolRegistry([count_lines, find_todos])
        result = await registry.call("count_lines", {"path": "."})
        if not result.ok:
            print(result.error)
        ```
    """

    def __init__(self, tools: Iterable[Callable[..., Any] | ToolSpec] = ()) -> None:
        """Create a registry holding ``tools`` (functions or specs; see :meth:`register`)."""
        self._specs: dict[str, ToolSpec] = {}
        self._pending: list[ToolSource] = []
        self._loaded: list[ToolSource] = []
        self._load_lock: asyncio.Lock | None = None
        self._names_of: dict[int, list[str]] = {}
        """The tool names each loaded source registered, by ``id(source)``."""
        self._refreshes: set[asyncio.Task[None]] = set()
        for item in tools:
            self.register(item)

    def register(self, fn_or_spec: Callable[..., Any] | ToolSpec) -> ToolSpec:
        """Add a tool and return its spec.

        A function decorated with :func:`tool` brings its own spec; a plain function is described
        on the fly with :meth:`ToolSpec.from_function`. Registering the same tool twice is a no-op.

        Raises:
            AgentError: Another tool already has this name, or the function cannot be a tool.
        """
        if isinstance(fn_or_spec, ToolSpec):
            spec = fn_or_spec
        elif isinstance(getattr(fn_or_spec, _TOOL_ATTR, None), ToolSpec):
            spec = tool_spec(fn_or_spec)
        else:
            spec = ToolSpec.from_function(fn_or_spec)
        existing = self._specs.get(spec.name)
        if existing is not None and existing != spec:
            raise AgentError(
                f"a different tool named {spec.name!r} is already registered "
                f"({_callable_name(existing.fn)})"
            )
        self._specs[spec.name] = spec
        return spec

    def add_source(self, source: ToolSource) -> None:
        """Add a source of tools, loaded on the next :meth:`load` or unknown-name :meth:`call`.

        Nothing about the source runs now. Adding the same source twice is a no-op.
        """
        if not isinstance(source, ToolSource):
            raise AgentError(
                f"{source!r} is not a tool source: it needs name, async specs() and async aclose()"
            )
        if any(s is source for s in (*self._pending, *self._loaded)):
            return
        self._pending.append(source)
        # A source that can say its tools changed (an MCP server's list_changed) is followed.
        watch = getattr(source, "on_change", None)
        if callable(watch):
            watch(lambda: self._source_changed(source))

    @property
    def sources(self) -> list[ToolSource]:
        """Every added source, loaded or not, in the order they were added."""
        return [*self._loaded, *self._pending]

    @property
    def pending_sources(self) -> list[ToolSource]:
        """The sources whose tools have not been loaded yet."""
        return list(self._pending)

    async def load(self) -> list[ToolSpec]:
        """Load the tools of every source not loaded yet, and return every registered spec.

        Sources load concurrently. The sync views (:meth:`names`, :meth:`specs`, :meth:`get`)
        show a source's tools only once it has loaded, so an agent that shows its tools to an
        LLM awaits this first. A source that fails stays pending and is tried again next time.

        Raises:
            AgentError: A source offers a tool whose name another tool already has.
            FleetmindError: A source could not be loaded (for an MCP server, a
                ``ProtocolError``); the first failure is raised after the others loaded.
        """
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        async with self._load_lock:
            pending = list(self._pending)
            if not pending:
                return self.specs()

            async def fetch(source: ToolSource) -> list[ToolSpec] | Exception:
                # Each failure is kept as a value, so one bad source neither cancels the
                # others nor loses their tools.
                try:
                    return list(await source.specs())
                except Exception as exc:
                    return exc

            async with asyncio.TaskGroup() as tg:
                fetches = [tg.create_task(fetch(s), name=f"load {s.name}") for s in pending]
            failures: list[Exception] = []
            for source, fetched in zip(pending, fetches, strict=True):
                outcome = fetched.result()
                if isinstance(outcome, Exception):
                    failures.append(outcome)
                    continue
                try:
                    self._register_all(source, outcome)
                except AgentError as exc:
                    failures.append(exc)
                    continue
                self._pending.remove(source)
                self._loaded.append(source)
            if failures:
                raise failures[0]
            return self.specs()

    async def aclose(self) -> None:
        """Close every source (loaded or not); their tools stay listed but fail when called.

        Every source is closed even when one fails; the first failure is raised at the end.
        """
        for refresh in list(self._refreshes):
            refresh.cancel()
        errors: list[Exception] = []
        for source in reversed(self.sources):
            try:
                await source.aclose()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _register_all(self, source: ToolSource, specs: list[ToolSpec]) -> None:
        """Register a source's tools all at once, or none of them if one name is taken.

        The tools the source registered before (when it is loaded again) are replaced.
        """
        previous = set(self._names_of.get(id(source), ()))
        seen: set[str] = set()
        for spec in specs:
            existing = self._specs.get(spec.name)
            taken = existing is not None and existing != spec and spec.name not in previous
            if spec.name in seen or taken:
                raise AgentError(
                    f"tool source {source.name!r} offers a tool named {spec.name!r}, which "
                    "another tool already has; give the source a prefix"
                )
            seen.add(spec.name)
        for name in previous - seen:
            del self._specs[name]
        for spec in specs:
            self._specs[spec.name] = spec
        self._names_of[id(source)] = [spec.name for spec in specs]

    async def reload(self, source: ToolSource) -> list[ToolSpec]:
        """List a loaded source's tools again, so that the registry matches what it offers now.

        Tools it added become callable, tools it removed are gone, and changed descriptions
        and schemas replace the old ones. A source not loaded yet is left to :meth:`load`.

        Raises:
            AgentError: The source now offers a tool whose name another tool has (its old
                tools then stay).
            FleetmindError: The source could not be listed.
        """
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        async with self._load_lock:
            if not any(s is source for s in self._loaded):
                return []
            specs = list(await source.specs())
            self._register_all(source, specs)
            return specs

    def _source_changed(self, source: ToolSource) -> None:
        """Reload ``source`` in the background (it said its tools changed)."""

        async def reload() -> None:
            try:
                specs = await self.reload(source)
            except Exception as exc:  # the old tools stay; the next change tries again
                _log.warning(
                    "tool source %r changed, but its tools could not be listed again: %s",
                    source.name,
                    _describe_exception(exc),
                )
                return
            _log.info("tool source %r: %d tools after a change", source.name, len(specs))

        task = asyncio.get_running_loop().create_task(reload(), name=f"reload {source.name}")
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    def get(self, name: str) -> ToolSpec | None:
        """The spec of the tool called ``name``, or ``None`` if there is none (loaded yet)."""
        return self._specs.get(name)

    def names(self) -> list[str]:
        """The names of the registered tools, in the order they were registered."""
        return list(self._specs)

    def specs(self) -> list[ToolSpec]:
        """The registered tools' specs, in the order they were registered.

        Tools of sources that have not loaded yet are not included; see :meth:`load`.
        """
        return list(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    async def call(self, name: str, arguments: object = None) -> ToolResult:
        """Validate ``arguments`` and run the tool called ``name``.

        Sync tools run in a worker thread (``asyncio.to_thread``) so they do not block the event
        loop. Nothing the agent or the tool gets wrong raises: an unknown name, bad arguments or
        an exception from the tool all give ``ToolResult(ok=False, error=...)``. A tool that
        returns a :class:`ToolResult` itself has it passed on as it is.

        A name the registry does not know loads the pending sources first (see :meth:`load`);
        if one fails to load, the unknown-name error says so.

        Args:
            name: The tool to run.
            arguments: The arguments object, as decoded from the agent's JSON.

        Returns:
            The tool's return value, or a one-line error.
        """
        spec = self._specs.get(name)
        load_error = ""
        if spec is None and self._refreshes:
            # A source is listing its changed tools: the name may be among them.
            await asyncio.wait([asyncio.shield(t) for t in list(self._refreshes)])
            spec = self._specs.get(name)
        if spec is None and self._pending:
            try:
                await self.load()
            except Exception as exc:
                load_error = f"; {_describe_exception(exc)}"
            spec = self._specs.get(name)
        if spec is None:
            known = ", ".join(self._specs) or "none"
            # Listing the known names lets an LLM correct a misspelt call on its next turn.
            return ToolResult(
                ok=False,
                error=_one_line(f"unknown tool {name!r} (known tools: {known}){load_error}"),
            )
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, Mapping):
            return ToolResult(
                ok=False,
                error=f"arguments for tool {name!r} must be an object, "
                f"not {type(arguments).__name__}",
            )
        if spec.arguments_as_object:
            return await _run_tool(spec, name, (dict(arguments),), {})
        try:
            kwargs = _bind_arguments(spec, arguments)
        except ValidationError as exc:
            problems = describe_validation_error(exc, all_errors=True, noun="argument")
            return ToolResult(
                ok=False, error=_one_line(f"bad arguments for tool {name!r}: {problems}")
            )
        except _BadArguments as exc:
            return ToolResult(ok=False, error=_one_line(f"bad arguments for tool {name!r}: {exc}"))
        return await _run_tool(spec, name, (), kwargs)


async def _run_tool(
    spec: ToolSpec, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ToolResult:
    """Run a tool's callable and turn what happens into a :class:`ToolResult`."""
    try:
        if _is_async_callable(spec.fn):
            value = await spec.fn(*args, **kwargs)
        else:
            value = await asyncio.to_thread(spec.fn, *args, **kwargs)
        # A sync wrapper (a lambda around a remote call, say) may hand back an awaitable.
        if inspect.isawaitable(value):
            value = await value
    except Exception as exc:
        # Exception, not BaseException: cancellation must still cancel the caller.
        return ToolResult(
            ok=False, error=_one_line(f"tool {name!r} failed: {_describe_exception(exc)}")
        )
    if isinstance(value, ToolResult):
        # The tool judged its own outcome (a remote tool that reported an error, say).
        return value
    return ToolResult(ok=True, value=value)


class _BadArguments(Exception):
    """Arguments for a spec without a model cannot even be passed as keywords."""


def _bind_arguments(spec: ToolSpec, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments to call ``spec.fn`` with, validated when the spec has a model."""
    if spec.arguments_model is None:
        bad = [key for key in arguments if not isinstance(key, str) or not key.isidentifier()]
        if bad:
            raise _BadArguments(f"argument names must be identifiers, got {bad[0]!r}")
        return dict(arguments)
    validated = spec.arguments_model.model_validate(dict(arguments))
    fields = type(validated).model_fields
    # Only the arguments the agent gave: the function's own defaults then apply unchanged.
    return {
        typing.cast(str, fields[field_name].alias): getattr(validated, field_name)
        for field_name in validated.model_fields_set
    }


def _arguments_model(
    fn: Callable[..., Any], tool_name: str, arg_docs: Mapping[str, str]
) -> type[BaseModel]:
    """A pydantic model of ``fn``'s parameters, used to validate arguments and build the schema."""
    label = _callable_name(fn)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise AgentError(f"cannot read the signature of {label}: {exc}") from exc
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        # get_type_hints evaluates string annotations and can raise nearly anything.
        raise AgentError(f"cannot resolve the type hints of {label}: {exc}") from exc

    fields: dict[str, Any] = {}
    for index, param in enumerate(signature.parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise AgentError(
                f"tool {label} has parameter {param.name!r} that cannot be passed by name: "
                "tools take named parameters only"
            )
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        # Fields get neutral internal names and the parameter name as alias, so that parameters
        # called e.g. "json", "schema" or "model_x" do not clash with BaseModel's own attributes.
        fields[f"p{index}"] = (
            annotation,
            Field(default, alias=param.name, description=arg_docs.get(param.name)),
        )
    try:
        return pydantic.create_model(
            f"{tool_name or 'tool'}_arguments",
            __config__=ConfigDict(extra="forbid", title=tool_name),
            **fields,
        )
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
        raise AgentError(f"cannot build an argument schema for tool {label}: {exc}") from exc


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The first paragraph of a Google-style docstring, and its ``Args:`` descriptions."""
    if not doc:
        return "", {}
    lines = doc.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or line.strip() in _ARGS_HEADERS:
            break
        summary.append(line.strip())

    args: dict[str, str] = {}
    in_args = False
    entry_indent: int | None = None
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            # inspect.getdoc removed the common indentation, so section headers sit at column 0.
            in_args = stripped in _ARGS_HEADERS
            entry_indent, current = None, None
            continue
        if not in_args:
            continue
        if entry_indent is None:
            entry_indent = indent
        if indent == entry_indent:
            match = _ARG_LINE_RE.match(stripped)
            current = match[1] if match else None
            if match is not None and current is not None:
                args[current] = match[2]
        elif current is not None:
            args[current] = f"{args[current]} {stripped}".strip()
    return " ".join(summary), args


def _describe_exception(exc: Exception) -> str:
    message = exc.message if isinstance(exc, FleetmindError) else str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    return text


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    # Callable objects with an async __call__ count too; iscoroutinefunction sees through
    # functools.partial on its own.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - the method itself is what is inspected
    )


def _callable_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{qualname}" if module else qualname
