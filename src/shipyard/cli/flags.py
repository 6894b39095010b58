"""Numeric command-line flags: finite and in range, checked where they are parsed.

`arg(...)` is an argparse `type=` (bench scripts); `check(...)` a typer callback (the
`shipyard` verbs). Both give one line naming the flag, the bound and the value.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import typer

from shipyard.spec.quantity import bounded_number


def arg(*, integer: bool = False, low: float | None = None, above: float | None = None,
        high: float | None = None) -> Callable[[str], float]:
    """An argparse type: `--speedup nan` exits 2 with 'argument --speedup: ... is not a finite number'."""

    def parse(text: str) -> float:
        try:
            number = bounded_number(text, integer=integer, low=low, above=above, high=high)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return int(number) if integer else number

    parse.__name__ = "whole number" if integer else "number"  # argparse's word for a bad value
    return parse


def check(*, integer: bool = False, low: float | None = None, above: float | None = None,
          high: float | None = None) -> Callable[[float | None], float | None]:
    """A typer callback for a numeric option (None, when left out, passes)."""

    def callback(value: float | None) -> float | None:
        if value is None:
            return None
        try:
            bounded_number(value, integer=integer, low=low, above=above, high=high)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        return value

    return callback


def counts(*, low: int = 1, high: int) -> Callable[[str], str]:
    """An argparse type for a comma-separated list of whole numbers ("1,4,16"); the text
    is kept (scripts split it), every item checked."""
    item = arg(integer=True, low=low, high=high)

    def parse(text: str) -> str:
        parts = text.split(",")
        for part in parts:
            try:
                item(part)
            except argparse.ArgumentTypeError as exc:
                raise argparse.ArgumentTypeError(f"{part.strip()!r} in {text!r}: {exc}") from None
        return ",".join(str(int(float(p))) for p in parts)

    parse.__name__ = "list of whole numbers"
    return parse
