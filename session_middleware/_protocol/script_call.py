"""A Lua script's KEYS and ARGV by name: each script's call is a dataclass whose
fields are its keys, then its arguments, in the order the script reads them (see
lua_scripts.py). The one place that knows the positions: the call builds its EVAL command,
and reads one back by name.

A key or a trailing argument that is None is left out of the command; a field declared
with `pairs()` is sent as its count, then its items; one declared with `rest()` takes the
remaining arguments."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field, fields
from typing import Any, ClassVar, TypeVar

_ROLE = "script_role"
_PRESENT = "script_present"

Call = TypeVar("Call", bound="ScriptCall")


def key(*, present: Callable[[Mapping[str, Any]], bool] | None = None) -> Any:
    """A key (KEYS). An optional one defaults to None (left out); `present` says, from the
    arguments, whether a command read back has it (needed only when an optional key is not
    the last one)."""
    return field(metadata={_ROLE: "key", _PRESENT: present})


def optional_key(*, present: Callable[[Mapping[str, Any]], bool] | None = None) -> Any:
    return field(default=None, metadata={_ROLE: "key", _PRESENT: present})


def flag() -> Any:
    """A boolean argument, sent as '1' or '0'."""
    return field(default=False, metadata={_ROLE: "flag"})


def pairs() -> Any:
    """Field/value pairs sent as their count, then the pairs."""
    return field(default=(), metadata={_ROLE: "pairs"})


def rest() -> Any:
    """The arguments that remain, last."""
    return field(default=(), metadata={_ROLE: "rest"})


class ScriptCall:
    """One call of a script, by name (subclasses are keyword-only dataclasses; not frozen:
    one is built for nearly every request, and a frozen one costs more to build)."""

    __slots__ = ()
    SCRIPT: ClassVar[str]

    def command(self) -> tuple[Any, ...]:
        """The EVAL command for Redis."""
        build = _BUILDERS.get(type(self))
        if build is None:
            build = _BUILDERS[type(self)] = _builder(type(self))
        return build(self)

    @classmethod
    def of(cls: type[Call], command: tuple[Any, ...]) -> Call:
        """The call that `command` makes, read back by name (ValueError: another script)."""
        if command[:1] != ("EVAL",) or command[1] != cls.SCRIPT:
            raise ValueError(f"not a call of {cls.__name__}")
        count = int(command[2])
        keys, argv = list(command[3 : 3 + count]), list(command[3 + count :])
        specs = fields(cls)  # type: ignore[arg-type]
        named: dict[str, Any] = {}
        for spec in specs:
            role = spec.metadata.get(_ROLE, "arg")
            if role == "flag":
                named[spec.name] = argv.pop(0) == "1"
            elif role == "pairs":
                size = 2 * int(argv.pop(0))
                named[spec.name], argv = tuple(argv[:size]), argv[size:]
            elif role == "rest":
                named[spec.name], argv = tuple(argv), []
            elif role == "arg" and argv:
                named[spec.name] = argv.pop(0)
        for spec in specs:
            if spec.metadata.get(_ROLE) != "key":
                continue
            present = spec.metadata.get(_PRESENT)
            if present is None or present(named):
                named[spec.name] = keys.pop(0) if keys else None
        return cls(**named)


_BUILDERS: dict[type[ScriptCall], Callable[[Any], tuple[Any, ...]]] = {}


def _builder(call: type[ScriptCall]) -> Callable[[Any], tuple[Any, ...]]:
    """The function that builds a call's EVAL command, written out once per class from its
    fields (a loop over the fields, looking each up by name and role, cost several times as
    much on every call). An optional key, or an argument, that is None is left out."""
    lines = ["def build(self):", "    keys = []"]
    parts = ["'EVAL'", "script", "len(keys)", "*keys"]
    for spec in fields(call):  # type: ignore[arg-type]
        name, role = spec.name, spec.metadata.get(_ROLE, "arg")
        value = f"self.{name}"
        if role == "key":
            if spec.default is not None:  # key(): always there
                lines.append(f"    keys.append({value})")
            else:
                lines += [f"    if {value} is not None:", f"        keys.append({value})"]
        elif role == "flag":
            parts.append(f"'1' if {value} else '0'")
        elif role == "pairs":
            lines.append(f"    {name} = {value}")
            parts += [f"len({name}) // 2", f"*{name}"]
        elif role == "rest":
            parts.append(f"*{value}")
        else:
            parts.append(f"*(() if {value} is None else ({value},))")
    lines.append(f"    return ({', '.join(parts)})")
    namespace: dict[str, Any] = {"script": call.SCRIPT}
    exec("\n".join(lines), namespace)  # noqa: S102 - our own fields' names, as dataclasses do
    built: Callable[[Any], tuple[Any, ...]] = namespace["build"]
    return built
