"""A validator for the part of JSON Schema that ``zoo/schemas/*.schema.json`` use (jsonschema is no dependency).

Keywords: ``type``, ``const``, ``enum``, ``required``, ``properties``,
``additionalProperties``, ``items``, ``oneOf``, ``minimum``,
``exclusiveMinimum`` and local ``$ref`` (``#/$defs/NAME``); descriptions are
ignored. A keyword it does not know fails loudly, so a schema cannot outgrow it
unnoticed.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["errors", "schema"]

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
_ANNOTATIONS = {"$schema", "title", "description"}
_KNOWN = {"type", "const", "enum", "required", "properties", "additionalProperties", "items", "oneOf", "minimum",
          "exclusiveMinimum", "$ref", "$defs"} | _ANNOTATIONS


def schema(name: str) -> dict[str, Any]:
    """The schema the package ships as ``zoo/schemas/NAME.schema.json``."""
    return json.loads((resources.files("zoo") / "schemas" / f"{name}.schema.json").read_text(encoding="utf-8"))


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def errors(value: Any, node: dict[str, Any], root: dict[str, Any] | None = None, path: str = "$") -> list[str]:
    """What in ``value`` breaks ``node`` (a schema), one line each with its JSON path; empty when valid."""
    root = root if root is not None else node
    unknown = set(node) - _KNOWN
    if unknown:
        raise ValueError(f"{path}: schema keywords {sorted(unknown)} are not supported by this validator")
    if "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"{path}: only local $ref '#/$defs/NAME' is supported, not {ref!r}")
        return errors(value, root["$defs"][ref.removeprefix("#/$defs/")], root, path)
    found: list[str] = []
    if "type" in node:
        kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not any(_is(value, k) for k in kinds):
            return [f"{path}: {value!r} is not of type {' or '.join(kinds)}"]
    if "const" in node and value != node["const"]:
        found.append(f"{path}: {value!r} is not {node['const']!r}")
    if "enum" in node and value not in node["enum"]:
        found.append(f"{path}: {value!r} is not one of {node['enum']}")
    if _is(value, "number"):
        if "minimum" in node and value < node["minimum"]:
            found.append(f"{path}: {value} is below {node['minimum']}")
        if "exclusiveMinimum" in node and value <= node["exclusiveMinimum"]:
            found.append(f"{path}: {value} is not above {node['exclusiveMinimum']}")
    if "oneOf" in node:
        matching = [s for s in node["oneOf"] if not errors(value, s, root, path)]
        if len(matching) != 1:
            found.append(f"{path}: {value!r} matches {len(matching)} of the oneOf schemas, not exactly one")
    if isinstance(value, dict):
        found += [f"{path}: {key!r} is missing" for key in node.get("required", ()) if key not in value]
        properties = node.get("properties", {})
        extra = node.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                found += errors(item, properties[key], root, f"{path}.{key}")
            elif extra is False:
                found.append(f"{path}: {key!r} is not allowed")
            elif isinstance(extra, dict):
                found += errors(item, extra, root, f"{path}.{key}")
    if isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            found += errors(item, node["items"], root, f"{path}[{i}]")
    return found
