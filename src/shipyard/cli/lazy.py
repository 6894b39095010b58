"""Sub-commands imported only when they run, so that `shipyard --help` (and commands
that need little) start without kubernetes, pydantic, httpx or the dev tooling.

An entry names a typer command function ("module:function") or a Typer app of
sub-commands ("module:app"). The top-level help needs only each entry's help text:
it is read from the module's source (the function's docstring, or the literal
`help=` of its `typer.Typer(...)`) without running it. Running an entry, or asking
for its own --help, imports the module and builds the command exactly as an eager
`app.command(name)(function)` / `app.add_typer(app, name=name)` would have.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True, slots=True)
class Entry:
    target: str  # "package.module:attribute"
    group: bool  # a Typer app of sub-commands (listed after the commands, as typer does)

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    @property
    def attr(self) -> str:
        return self.target.partition(":")[2]


def available(module: str) -> bool:
    """Whether a module is installed (found without importing it)."""
    return importlib.util.find_spec(module) is not None


@cache
def source_help(entry: Entry) -> str:
    """The help text typer would show for `entry`, read from its source without importing."""
    spec = importlib.util.find_spec(entry.module)
    if spec is None or spec.origin is None:
        raise LookupError(f"{entry.target}: module not found")
    with open(spec.origin, encoding="utf-8") as f:
        source = f.read()
    # Parsing only the statement that defines the entry costs a tenth of parsing the
    # whole module, and `shipyard --help` does it for every lazy entry.
    node = _statement(source, entry) or _find(ast.parse(source, spec.origin), entry)
    if node is None:
        raise LookupError(f"{entry.target}: no {'Typer app' if entry.group else 'function'} "
                          f"{entry.attr} at the top level of {spec.origin}")
    return _help(node)


def _help(node: ast.stmt) -> str:
    if isinstance(node, ast.FunctionDef):
        return ast.get_docstring(node) or ""
    assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
    for kw in node.value.keywords:
        if kw.arg == "help":
            return str(ast.literal_eval(kw.value))
    return ""


def _find(tree: ast.Module, entry: Entry) -> ast.stmt | None:
    for node in tree.body:
        if not entry.group and isinstance(node, ast.FunctionDef) and node.name == entry.attr:
            return node
        if (entry.group and isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and any(isinstance(t, ast.Name) and t.id == entry.attr for t in node.targets)):
            return node
    return None


_QUOTE = re.compile(r'[rRuU]?("""|\'\'\')')


def _statement(source: str, entry: Entry) -> ast.stmt | None:
    """The entry's statement parsed on its own: a function up to the end of its first
    triple-quoted string (its docstring, if it has one), an app's `Typer(...)` call up to
    the first line where it parses. None when that shortcut does not give it."""
    name = re.escape(entry.attr)
    head = re.search(rf"^{name} = typer\.Typer\(" if entry.group else rf"^def {name}\(", source, re.M)
    if head is None:
        return None
    if entry.group:
        lines = source[head.start():].splitlines(keepends=True)
        ends = [sum(map(len, lines[:n])) for n in range(1, min(len(lines), 40) + 1)]
    else:
        quote = _QUOTE.search(source, head.end())
        close = quote and source.find(quote.group(1), quote.end())
        if quote is None or close is None or close < 0:
            return None
        ends = [close + 3 - head.start()]
    text = source[head.start():]
    for end in ends:
        try:
            tree = ast.parse(text[:end])
        except SyntaxError:
            continue
        return _find(tree, entry)
    return None


def lazy_group(settings: Mapping[str, Any], entries: Mapping[str, Entry]) -> type[TyperGroup]:
    """A TyperGroup class that lists `entries` beside its own commands and imports each
    only when it is looked up to run. `settings`: the app's typer.Typer keyword arguments
    (the real command is built under the same ones)."""
    commands = [n for n, e in entries.items() if not e.group]
    groups = [n for n, e in entries.items() if e.group]

    class LazyGroup(TyperGroup):
        listing = False  # set while the group's own help is written

        def list_commands(self, ctx: Any) -> list[str]:
            own = [n for n in super().list_commands(ctx) if n not in entries]
            return [*commands, *own, *groups]

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            entry = entries.get(cmd_name)
            if entry is None:
                return super().get_command(ctx, cmd_name)
            if self.listing:  # only a name and a help line are needed
                return TyperCommand(cmd_name, help=source_help(entry))
            if cmd_name not in self.commands:
                self.add_command(build(cmd_name, entry, settings), cmd_name)
            return self.commands[cmd_name]

        def format_help(self, ctx: Any, formatter: Any) -> None:
            self.listing = True
            try:
                super().format_help(ctx, formatter)
            finally:
                self.listing = False

    return LazyGroup


def build(name: str, entry: Entry, settings: Mapping[str, Any]) -> Any:
    """Import `entry` and build its click command as typer builds a registered one."""
    target = getattr(importlib.import_module(entry.module), entry.attr)
    parent = typer.Typer(**{k: v for k, v in settings.items() if k not in ("cls", "help", "name")})
    parent.callback()(_nothing)  # a group even with one command: the command is taken out
    if entry.group:
        parent.add_typer(target, name=name)
    else:
        parent.command(name)(target)
    return typer.main.get_group(parent).commands[name]


def _nothing() -> None:
    pass
