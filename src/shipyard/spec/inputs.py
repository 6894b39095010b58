"""The one way user files come in: bytes, then UTF-8 text, then data, each step with limits.

Every failure is one `InputError` whose message names the file and says what to fix:
a byte that is not UTF-8 (with its offset and line), a file too large, YAML or JSON
nested too deep or expanding (aliases) to too many values, a duplicate key, a number
beyond what a value can hold. Messages quote values through `short()`, never whole.
"""

from __future__ import annotations

import json
import math
import reprlib
from pathlib import Path
from typing import Any

import yaml

MAX_SPEC_BYTES = 1 << 20  # a spec or config; real ones are a few KB
MAX_TRACE_BYTES = 1 << 28
MAX_DEPTH = 64  # levels of nested lists and mappings
MAX_VALUES = 100_000  # values in a document once aliases are expanded
_REPR_LIMIT = 80

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class InputError(ValueError):
    """A file that cannot be read as data: `source` is the file, `problem` what to fix."""

    def __init__(self, source: str, problem: str) -> None:
        self.source, self.problem = source, problem
        super().__init__(f"{source}: {problem}")


def short(value: object, limit: int = _REPR_LIMIT) -> str:
    """A repr of `value` of at most `limit` characters, cheap for any value (a huge
    integer, a deep or alias-shared structure, a 10 MB string)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        digits = int(value.bit_length() * math.log10(2)) + 1
        digits -= 10 ** (digits - 1) > abs(value)
        return f"<an integer of about {digits} digits>"
    if isinstance(value, str | bytes):
        text = repr(value[:limit])  # then cut: the repr of the cut may still be longer
        return text if len(text) <= limit else text[: limit - 4] + "..." + text[-1]
    try:
        text = _repr.repr(value)
    except Exception:  # a user object with a broken __repr__, an int past the digit limit
        text = f"<{type(value).__name__}>"
    return clip(text, limit)


def clip(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters (for a library's message that may quote input)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother, _repr.maxlong = 3, 60, 60, 40
_repr.maxdict = _repr.maxlist = _repr.maxtuple = _repr.maxset = 4


def read_bytes(path: Path, limit: int = MAX_SPEC_BYTES) -> bytes:
    """The file's bytes, or InputError (missing, a directory, unreadable, too large)."""
    source = str(path)
    try:
        if path.is_dir():
            raise InputError(source, "is a directory; give the file inside it")
        if path.exists() and not path.is_file():  # a FIFO would block the read forever
            raise InputError(source, "is not a regular file (a pipe or a device); save it to a file first")
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise InputError(source, "no such file; check the path") from None
    except OSError as exc:
        raise InputError(source, f"cannot read the file: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise InputError(source, f"larger than the limit of {limit:,} bytes; is this the right file?")
    return data


def decode(data: bytes, source: str) -> str:
    """UTF-8 text (a leading byte-order mark is dropped), or InputError at the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            source, f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}); "
            "save the file as UTF-8"
        ) from None


def read_text(path: Path, limit: int = MAX_SPEC_BYTES) -> str:
    return decode(read_bytes(path, limit), str(path))


def read_data(path: Path) -> Any:
    """A .json file as JSON, anything else as YAML."""
    text = read_text(path)
    return parse_json(text, str(path)) if path.suffix.lower() == ".json" else parse_yaml(text, str(path))


# -- YAML --------------------------------------------------------------------


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """Safe YAML that refuses duplicate keys and integers too long to convert."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable: the base class says so
            line = key_node.start_mark.line + 1
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {short(key)} (first at line {first}); keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep)
        return mapping

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            value: int = super().construct_yaml_int(node)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"integer of {len(str(node.value))} characters is out of range",
                node.start_mark,
            ) from None
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)


def _line(event: yaml.Event) -> int:
    # The parser marks every event; the stubs allow for one without.
    return event.start_mark.line + 1 if event.start_mark is not None else 0


def _check_shape(text: str, source: str) -> None:
    """Depth and expanded size from the parser's events, before anything is built: a
    thousand-level nest or an alias bomb costs nothing here."""
    sizes: dict[str, int] = {}  # anchor -> values under it, aliases expanded
    stack: list[list[Any]] = []  # one [anchor, values so far] per open list or mapping
    total = 0
    for event in yaml.parse(text, Loader=_Base):
        if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            stack.append([event.anchor, 1])
            total += 1
            if len(stack) > MAX_DEPTH:
                raise InputError(source, f"line {_line(event)}: nested more than "
                                 f"{MAX_DEPTH} levels deep; flatten it")
            count = 0
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            anchor, count = stack.pop()
            if anchor:
                sizes[anchor] = count
        elif isinstance(event, yaml.AliasEvent):
            if any(frame[0] == event.anchor for frame in stack):
                raise InputError(source, f"line {_line(event)}: alias *{event.anchor} "
                                 "is inside the value it names; a value must not contain itself")
            count = sizes.get(event.anchor or "", 1)  # undefined: the loader says so
            total += count
        elif isinstance(event, yaml.ScalarEvent):
            count = 1
            total += 1
            if event.anchor:
                sizes[event.anchor] = 1
        else:
            continue
        if count and stack:
            stack[-1][1] += count
        if total > MAX_VALUES:
            raise InputError(source, f"expands (through aliases) to more than {MAX_VALUES:,} values; "
                             "write it out without alias chains")


def parse_yaml(text: str, source: str) -> Any:
    """One YAML document as plain data, or InputError."""
    try:
        _check_shape(text, source)
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        if "nesting depth" in str(getattr(exc, "problem", "")):  # libyaml's own limit, met first
            line = exc.problem_mark.line + 1  # type: ignore[attr-defined]
            raise InputError(source, f"line {line}: nested more than {MAX_DEPTH} levels deep; "
                             "flatten it") from None
        raise InputError(source, f"not valid YAML: {_yaml_problem(exc)}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + clip(str(problem))


# -- JSON --------------------------------------------------------------------


class _JsonProblem(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _JsonProblem(f"duplicate key {short(key)}; keep one")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _JsonProblem(f"{name} is not a number JSON allows; write a finite number")


def parse_json(text: str, source: str) -> Any:
    """One JSON document as plain data, or InputError."""
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise InputError(source, f"not valid JSON: {where}: {exc.msg}") from None
    except _JsonProblem as exc:
        raise InputError(source, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(source, f"nested more than {MAX_DEPTH} levels deep; flatten it") from None
    except ValueError:  # an integer past Python's digit limit
        raise InputError(source, "a number has more than 4,300 digits; no field takes one so large") from None
    if depth(data) > MAX_DEPTH:
        raise InputError(source, f"nested more than {MAX_DEPTH} levels deep; flatten it")
    return data


def depth(data: Any) -> int:
    """Levels of nested lists and mappings (without recursion)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list | tuple):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                stack.extend((v, level + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest
