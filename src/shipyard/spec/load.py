"""Load an Experiment from a .py module or a YAML/JSON file; both give the same object."""

from __future__ import annotations

import contextlib
import sys
import traceback
import types
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shipyard.spec.errors import SpecError, spec_error
from shipyard.spec.experiment import Experiment
from shipyard.spec.inputs import InputError, clip, read_data, read_text, short

SPEC_MODULE = "__shipyard_spec__"


def load_experiment(path: str | Path) -> Experiment:
    """Read one experiment; raise SpecError with every problem found, or FileNotFoundError.

    A .py spec is code and runs: what it prints goes to stderr (stdout may carry the
    command's own output), and an exception it raises becomes a SpecCodeError."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in (".py", ".yaml", ".yml", ".json"):
        raise SpecError(str(path), [f"unsupported file type {short(suffix)}; use .py, .yaml, .yml or .json"])
    try:
        if suffix == ".py":
            return _from_python(path, read_text(path))
        return experiment_from_data(read_data(path), str(path))
    except InputError as exc:
        raise SpecError(exc.source, [exc.problem]) from None


def experiment_from_data(data: Any, source: str = "<data>") -> Experiment:
    if not isinstance(data, dict):
        kind = "nothing (an empty file)" if data is None else type(data).__name__
        raise SpecError(source, [f"(top level): expected a mapping of experiment fields, got {kind}"])
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise spec_error(source, exc, Experiment) from None


class SpecCodeError(SpecError):
    """A .py spec that raised or exited while it ran; `details` is its traceback."""

    def __init__(self, path: Path, line: int | None, problem: str, details: str | None) -> None:
        super().__init__(str(path), [problem])
        self.line, self.details = line, details
        at = f" line {line}" if line else ""
        self.args = (f"error in spec file {path}{at}: {problem}",)


def _from_python(path: Path, text: str) -> Experiment:
    # As runpy.run_path does: a module of its own while it runs (dataclasses and
    # pydantic models defined in the spec look themselves up in sys.modules).
    module = types.ModuleType(SPEC_MODULE)
    module.__file__ = str(path)
    namespace = module.__dict__
    saved = sys.modules.get(SPEC_MODULE)
    sys.modules[SPEC_MODULE] = module
    try:
        code = compile(text, str(path), "exec")
        with contextlib.redirect_stdout(sys.stderr):
            exec(code, namespace)
    except ValidationError as exc:
        # Point at the line of the spec file that built the bad object.
        line = _spec_line(path, exc)
        raise spec_error(f"{path}:{line}" if line else str(path), exc, Experiment) from None
    except SpecError:
        raise
    except SystemExit as exc:
        problem = (f"it called sys.exit({short(exc.code)}); a spec file must define an Experiment, "
                   "not exit")
        raise SpecCodeError(path, _spec_line(path, exc), problem, _user_traceback(exc)) from None
    except SyntaxError as exc:
        where = exc.lineno if exc.filename == str(path) else None
        problem = f"SyntaxError: {clip(str(exc.msg))}"
        raise SpecCodeError(path, where, problem, _user_traceback(exc)) from None
    except Exception as exc:
        problem = f"{type(exc).__name__}: {_message(exc)}"
        raise SpecCodeError(path, _spec_line(path, exc), problem, _user_traceback(exc)) from None
    finally:
        if saved is None:
            sys.modules.pop(SPEC_MODULE, None)
        else:
            sys.modules[SPEC_MODULE] = saved
    return _pick(path, dict(namespace))


def _message(exc: BaseException) -> str:
    try:
        return clip(str(exc))
    except Exception:  # the spec's own exception class cannot say what it is
        return "(its message could not be shown)"


def _spec_line(path: Path, exc: BaseException) -> int | None:
    """The last line of the spec file on the way to `exc`."""
    lines = [n for f, n in traceback.walk_tb(exc.__traceback__) if f.f_code.co_filename == str(path)]
    return lines[-1] if lines else None


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the spec file's first frame on (shipyard's own frames left out)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _pick(path: Path, namespace: dict[str, Any]) -> Experiment:
    found = {k: v for k, v in namespace.items() if isinstance(v, Experiment)}
    if "experiment" in found:
        return found["experiment"]
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise SpecError(
            str(path), ["(module): defines no Experiment; assign one, e.g. experiment = Experiment(...)"]
        )
    names = ", ".join(sorted(found))
    raise SpecError(
        str(path), [f"(module): defines several experiments ({names}); name the one to run `experiment`"]
    )
