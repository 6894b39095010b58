"""The command starts light: what `shipyard --help` imports, and lazy commands that behave
as the eager ones did (bench/cli_startup.py measures the time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from shipyard.cli.lazy import build, source_help
from shipyard.cli.main import LAZY, SETTINGS, app

ROOT = Path(__file__).parents[2]
# Heavy, and needed only by the commands that use them.
HEAVY = ("kubernetes", "pydantic", "httpx", "aiohttp", "shipyard.spec", "shipyard.local", "shipyard.kube",
         "shipyard.render", "shipyard.fleet", "shipyard.dev", "shipyard.controller", "yaml")


def loaded_after(code: str) -> set[str]:
    """Modules in sys.modules after `code`, run in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_importing_the_cli_loads_none_of_the_heavy_packages():
    assert heavy(loaded_after("import shipyard.cli.main")) == []


def test_top_level_help_loads_none_of_the_heavy_packages():
    code = ("import contextlib, io\nfrom shipyard.cli.main import app\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    app(['--help'], prog_name='shipyard')")
    assert heavy(loaded_after(code)) == []


def test_top_level_help_loads_no_rich_renderer():
    # typer's rich help (typer.rich_utils) imports markdown-it, pygments and attrs: over
    # half of `shipyard --help`'s start-up. Help is click's plain text; rich is loaded
    # by the first table or coloured line a command prints.
    code = ("import contextlib, io\nfrom shipyard.cli.main import app\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    app(['--help'], prog_name='shipyard')")
    loaded = loaded_after(code)
    assert sorted(m for m in loaded if m.split(".")[0] in ("rich", "markdown_it", "pygments")) == []
    assert "typer.rich_utils" not in loaded


def test_the_console_is_made_on_first_print(capsys):
    from shipyard.cli import output

    output.table(("A", "B"), [("x", None)])
    assert capsys.readouterr().out.split() == ["A", "B", "x"]


@pytest.mark.parametrize("name", list(LAZY))
def test_the_help_read_from_one_statement_is_the_help_of_the_whole_module(name):
    import ast
    import importlib.util

    from shipyard.cli.lazy import _find, _help, _statement

    entry = LAZY[name]
    source = Path(importlib.util.find_spec(entry.module).origin).read_text()
    node = _statement(source, entry)
    assert node is not None, "the shortcut did not find it"
    assert _help(node) == _help(_find(ast.parse(source), entry))


def test_a_function_without_a_docstring_is_read_as_having_none():
    import ast

    from shipyard.cli.lazy import Entry, _find, _help, _statement

    source = ('def first(x: int = 1):\n    return x\n\n\n'
              'def second():\n    """Second\'s help."""\n')
    entry = Entry("m:first", group=False)
    node = _statement(source, entry) or _find(ast.parse(source), entry)
    assert node is not None and _help(node) == ""
    assert _help(_statement(source, Entry("m:second", group=False))) == "Second's help."


def test_a_command_that_needs_a_package_still_gets_it():
    code = ("from typer.testing import CliRunner\nfrom shipyard.cli.main import app\n"
            "r = CliRunner().invoke(app, ['render', 'examples/ddp/experiment.py'])\n"
            "assert r.exit_code == 0, r.output")
    assert "shipyard.render" in loaded_after(code)


def eager() -> typer.Typer:
    """The app as it was registered before the lazy entries: every module imported."""
    import importlib

    full = typer.Typer(**SETTINGS)
    for name, entry in LAZY.items():
        target = getattr(importlib.import_module(entry.module), entry.attr)
        if entry.group:
            full.add_typer(target, name=name)
        else:
            full.command(name)(target)
    return full


@pytest.mark.parametrize("name", list(LAZY))
def test_a_lazy_entry_lists_the_help_its_module_gives_it(name):
    real = typer.main.get_group(eager()).commands[name]
    assert source_help(LAZY[name]) == (real.help or "")
    built = build(name, LAZY[name], SETTINGS)
    assert (built.help, built.hidden, built.deprecated, built.short_help) == \
        (real.help, real.hidden, real.deprecated, real.short_help)
    assert [p.name for p in built.params] == [p.name for p in real.params]


def test_the_commands_are_listed_in_the_order_typer_gave_them():
    ctx = typer.Context(typer.main.get_command(app))
    lazy = typer.main.get_group(app).list_commands(ctx)
    full = typer.main.get_group(eager()).list_commands(ctx)
    own = [n for n in lazy if n not in LAZY]
    # Typer lists commands before groups; the lazy commands were registered first.
    assert lazy == [n for n in full if n in LAZY and not LAZY[n].group] + own + \
        [n for n in full if n in LAZY and LAZY[n].group]


def test_a_lazy_command_runs():
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["fleet", "--help"])
    assert result.exit_code == 0 and "redispatch" in result.output
    result = CliRunner().invoke(app, ["move", "--help"])
    assert result.exit_code == 0 and "--to" in result.output
