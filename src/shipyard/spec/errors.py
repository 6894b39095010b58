"""Turn validation failures into one clear message per problem: path, bad value, fix."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from shipyard.spec.inputs import clip, short

MAX_PROBLEMS = 20  # listed in one error; the rest are counted


class SpecError(ValueError):
    """A spec (or config) that cannot be used; `problems` holds one line each."""

    def __init__(self, source: str, problems: list[str], what: str = "the experiment spec") -> None:
        self.source = source
        self.problems = problems
        # A .py spec's own traceback (shown with --debug), when it raised.
        self.details: str | None = None
        lines = "\n".join(f"  - {p}" for p in problems[:MAX_PROBLEMS])
        if len(problems) > MAX_PROBLEMS:
            lines += f"\n  ... and {len(problems) - MAX_PROBLEMS} more"
        super().__init__(f"{source}: {len(problems)} problem(s) in {what}:\n{lines}")


def format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = clip(str(part), 60)  # a key is user input too
            out += f".{text}" if out else text
    return out or "(top level)"


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that owns the field at `loc` (to list its allowed fields)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            break
        current = _unwrap(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None  # not a model's field (a dict's key, say): no fields to list


def _unwrap(annotation: Any) -> Any:
    # list[Role] -> Role, Resources | None -> Resources, tuple[Taint, ...] -> Taint
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def _describe(error: dict[str, Any], root: type[BaseModel]) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    loc = tuple(error["loc"])
    if kind == "missing":
        return f"{format_path(loc)}: required field is missing; add it"
    if kind == "extra_forbidden":
        owner = _model_at(root, loc[:-1])
        allowed = sorted(owner.model_fields) if owner else []
        hint = difflib.get_close_matches(clip(str(loc[-1]), 60), allowed, n=1)
        fix = f"did you mean {hint[0]!r}?" if hint else f"allowed fields: {', '.join(allowed)}"
        return f"{format_path(loc)}: unknown field; {fix}"
    bounds = {
        "greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"), "less_than": ("<", "lt"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        return f"{format_path(loc)}: must be {op} {ctx[key]}, got {short(value)}"
    if kind == "string_pattern_mismatch":
        return (
            f"{format_path(loc)}: must be lowercase letters, digits and '-', starting and "
            f"ending with a letter or digit (pattern {ctx['pattern']}), got {short(value)}"
        )
    if kind in ("string_too_short", "too_short"):
        return f"{format_path(loc)}: must not be empty, got {short(value)}"
    if kind in ("string_too_long", "too_long"):
        limit = ctx.get("max_length")
        return f"{format_path(loc)}: must be at most {limit} long, got {short(value)}"
    if kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
        if not loc:  # cross-field checks already name their paths, one per line
            return message
        return f"{format_path(loc)}: {message}"
    message = str(error["msg"])
    return f"{format_path(loc)}: {message[:1].lower()}{message[1:]}, got {short(value)}"


def spec_error(
    source: str, exc: ValidationError, root: type[BaseModel], what: str = "the experiment spec"
) -> SpecError:
    """One SpecError for every problem in `exc`. When a nested model failed on its own
    (a `Role(...)` built in a .py file), paths start at that model's name: `Role.replicas`."""
    owner, prefix = root, ""
    if exc.title != root.__name__:
        owner = _nested_model(root, exc.title) or root
        prefix = f"{exc.title}."
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        text = _describe(dict(error), owner)
        problems.extend(prefix + line for line in text.split("\n"))
    return SpecError(source, problems, what)


def _nested_model(root: type[BaseModel], title: str) -> type[BaseModel] | None:
    """The model class named `title` anywhere under `root` (Role, Resources, Taint...)."""
    stack: list[type[BaseModel]] = [root]
    while stack:
        model = stack.pop()
        if model.__name__ == title:
            return model
        for field in model.model_fields.values():
            inner = _unwrap(field.annotation)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                stack.append(inner)
    return None
