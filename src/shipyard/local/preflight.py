"""Can this machine start every rank of the experiment? Checked before a run is recorded.

The spec already validated what any backend needs; this checks what only the local one
does: the program of each role exists here and may be run, its working directory exists,
and every argument and environment value fits what the kernel passes to a process.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from shipyard.local.ranks import local_command, role_cwd
from shipyard.spec import Experiment, Role
from shipyard.spec.inputs import short

# Linux's MAX_ARG_STRLEN: the longest single argument or NAME=value string exec takes.
MAX_ARG_BYTES = 32 * 4096


class LaunchError(ValueError):
    """The experiment cannot start on this machine; `problems` holds one line each."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"experiment {name} cannot start on this machine ({len(problems)} "
                         f"problem(s)); nothing was queued:\n{lines}")


def check_launch(exp: Experiment, workdir: Path) -> None:
    """Raise LaunchError listing everything that would stop a rank from starting."""
    problems = [p for i, role in enumerate(exp.roles) for p in _role_problems(i, role, workdir)]
    if problems:
        raise LaunchError(exp.name, problems)


def _role_problems(i: int, role: Role, workdir: Path):
    cwd = role_cwd(workdir, role)
    if not cwd.is_dir():
        what = "is not a directory" if cwd.exists() else "does not exist"
        yield f"roles[{i}].working_dir: {short(str(cwd), 300)} {what}; create it or fix the path"
        return
    program = local_command(role.command)[0]
    if "/" in program:
        target = cwd / program
        if not target.is_file():
            looked = short(str(target), 300)
            yield (f"roles[{i}].command[0]: {short(program)} not found (looked for {looked}); "
                   "fix the path, relative to the working directory")
        elif not os.access(target, os.X_OK):
            yield (f"roles[{i}].command[0]: {short(program)} is not executable; make it so "
                   f"(chmod +x) or run it through its interpreter, e.g. [python, {short(program)}]")
    else:
        search = role.env.get("PATH", os.environ.get("PATH", os.defpath))
        if shutil.which(program, path=search) is None:
            yield (f"roles[{i}].command[0]: {short(program)} not found on PATH; install it or give "
                   "its path")
    for j, arg in enumerate(role.command):
        if len(arg.encode()) >= MAX_ARG_BYTES:
            yield f"roles[{i}].command[{j}]: longer than the {MAX_ARG_BYTES - 1:,} bytes a process may get"
    for key, value in role.env.items():
        if len(key.encode()) + len(value.encode()) + 1 >= MAX_ARG_BYTES:
            yield f"roles[{i}].env.{key}: longer than the {MAX_ARG_BYTES - 1:,} bytes a process may get"
