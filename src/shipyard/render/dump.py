"""Rendered objects as YAML, fast: a gang of 10,000 pods is 2 million scalars, and
PyYAML's representer (even with libyaml's emitter) spends ~2 ms a pod on them.

Objects are plain data (dicts, lists, str, int, bool, None), so a small block-style
writer does: a string is written plain only when it cannot be read as anything else
(letters, digits, '_', '.', '/', '-', starting with a letter, '_' or '/', and not a YAML
1.1 boolean or null word), printable ASCII otherwise goes double-quoted through JSON's
escaping (a subset of YAML's), and anything rarer is left to PyYAML. What it writes,
`yaml.safe_load` reads back equal (tests/unit/test_render_pod_extras.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
# Words YAML 1.1 (PyYAML) reads as booleans or null.
_SIMPLE_KEY_MAX = 1000
_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _WORDS:
            return value
        if _PRINTABLE.fullmatch(value):
            return json.dumps(value)
    # Control characters, non-ASCII, floats: PyYAML's own scalar, double-quoted (escaped,
    # so on one line) for a string.
    style = '"' if isinstance(value, str) else None
    text = yaml.safe_dump(value, default_style=style, width=1 << 30, allow_unicode=False)
    return text.removesuffix("\n...\n").removesuffix("\n")


def _lines(value: Any, indent: str, out: list[str]) -> None:
    """`value` (a non-empty dict or list) as block lines at `indent`."""
    if isinstance(value, dict):
        for key, item in value.items():
            head = f"{indent}{_scalar(key)}:"
            if len(head) > _SIMPLE_KEY_MAX:  # YAML's implicit keys end at 1024 characters
                out.append(f"{indent}? {_scalar(key)}")
                head = f"{indent}:"
            if isinstance(item, dict | list) and item:
                out.append(head)
                _lines(item, indent + "  ", out)
            else:
                out.append(f"{head} {_empty_or_scalar(item)}")
        return
    for item in value:
        if isinstance(item, dict) and item:
            # "- " then the mapping's first key on the same line, the rest under it.
            start = len(out)
            _lines(item, indent + "  ", out)
            out[start] = f"{indent}- {out[start][len(indent) + 2:]}"
        elif isinstance(item, list) and item:
            out.append(f"{indent}-")
            _lines(item, indent + "  ", out)
        else:
            out.append(f"{indent}- {_empty_or_scalar(item)}")


def _empty_or_scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def dump_all(documents: list[Any]) -> str:
    """A multi-document YAML stream, documents separated by '---' (as yaml.safe_dump_all)."""
    parts: list[str] = []
    for i, doc in enumerate(documents):
        out: list[str] = [] if i == 0 else ["---"]
        if isinstance(doc, dict | list) and doc:
            _lines(doc, "", out)
        else:
            out.append(_empty_or_scalar(doc))
        parts.append("\n".join(out) + "\n")
    return "".join(parts)
