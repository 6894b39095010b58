"""pydantic model -> the structural OpenAPI v3 schema a CRD needs.

One source of truth: the same model validates a spec file on the client and the
object in the API server. References are inlined, `X | None` becomes nullable,
exclusive bounds become OpenAPI 3.0's boolean form.
"""

from __future__ import annotations

import warnings
from collections.abc import Set as AbstractSet
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import PydanticJsonSchemaWarning

# What OpenAPI v3 (as CRDs use it) understands; anything else pydantic emits is dropped.
_KEEP = {
    "type", "format", "minimum", "maximum", "minLength", "maxLength", "pattern", "enum",
    "default", "nullable", "minItems", "maxItems", "uniqueItems", "multipleOf", "required",
}


def structural_schema(model: type[BaseModel], exclude: AbstractSet[str] = frozenset()) -> dict[str, Any]:
    with warnings.catch_warnings():
        # Quantity defaults ("100m") have no JSON form; the schema simply has no default
        # for them, which is right: the server must not fill in what the client parses.
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
        raw = model.model_json_schema(mode="serialization")
    defs = raw.get("$defs", {})
    schema = _convert(raw, defs)
    for name in exclude:
        schema.get("properties", {}).pop(name, None)
    if "required" in schema:
        schema["required"] = [r for r in schema["required"] if r not in exclude]
        if not schema["required"]:
            del schema["required"]
    return schema


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return _convert(defs[node["$ref"].split("/")[-1]], defs)
    options = node.get("anyOf")
    if options is not None:
        non_null = [o for o in options if o.get("type") != "null"]
        if len(non_null) == 1:
            one = _convert(non_null[0], defs)
            if len(non_null) < len(options):
                one["nullable"] = True
                # The API server checks a null against the enum too (and refuses it, even
                # with null listed): the client-side model is the judge of these values.
                one.pop("enum", None)
            if "default" in node and node["default"] is not None:
                one["default"] = node["default"]
            return one
        # Mixed types (rare): let the client-side model be the judge.
        return {"x-kubernetes-preserve-unknown-fields": True}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _KEEP or key.startswith("x-kubernetes-"):
            out[key] = value
    if "exclusiveMinimum" in node:
        out["minimum"], out["exclusiveMinimum"] = node["exclusiveMinimum"], True
    if "exclusiveMaximum" in node:
        out["maximum"], out["exclusiveMaximum"] = node["exclusiveMaximum"], True
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {k: _convert(v, defs) for k, v in node["properties"].items()}
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _convert(node["additionalProperties"], defs)
    if "items" in node:
        out["items"] = _convert(node["items"], defs)
    elif "prefixItems" in node:
        out["items"] = _convert(node["prefixItems"][0], defs)
    if out.get("default") is None:
        out.pop("default", None)
    if out.get("type") == "array" and "items" not in out:
        out["items"] = {"x-kubernetes-preserve-unknown-fields": True}
    return out
