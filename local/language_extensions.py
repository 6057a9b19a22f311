"""CloudFormation's ``AWS::LanguageExtensions`` transform, as far as template.yaml uses it.

CloudFormation runs the transform at deploy time, before SAM's; ``sam build`` keeps the template as
written (its ``Fn::ForEach`` intact) for it. What reads the template here (the local stack, the
offline translation in tests) sees it expanded the same way first: ``Fn::ForEach`` over a literal list
in the Conditions, Resources and Outputs sections (each item put for ``${Id}``, ``&{Id}`` and ``Ref:
Id``), then ``Fn::FindInMap`` with literal keys. Anything else of the transform's is refused rather
than passed on unexpanded (tests/integration/test_template.py checks this expansion against the SAM
CLI's own and against what ``sam build`` ships).
"""

from __future__ import annotations

import copy
import re
from typing import Any

TRANSFORM = "AWS::LanguageExtensions"
FOR_EACH = "Fn::ForEach::"
SECTIONS = ("Conditions", "Resources", "Outputs")
# The transform's other functions: not used by the template, so not expanded here.
NOT_EXPANDED = ("Fn::Length", "Fn::ToJsonString")


class UnsupportedTemplate(ValueError):
    """The template uses a part of the transform this module does not expand."""


def expand(template: dict[str, Any]) -> dict[str, Any]:
    """The template as CloudFormation hands it to the next transform (a copy; unchanged without ours)."""
    transforms = template.get("Transform", [])
    transforms = [transforms] if isinstance(transforms, str) else list(transforms)
    if TRANSFORM not in transforms:
        return template
    expanded = copy.deepcopy(template)
    rest = [name for name in transforms if name != TRANSFORM]
    expanded["Transform"] = rest[0] if len(rest) == 1 else rest
    parameters = set(template.get("Parameters", {}))
    for section in SECTIONS:
        if section in expanded:
            expanded[section] = _section(expanded[section], parameters)
    result: dict[str, Any] = _find_in_map(expanded, expanded.get("Mappings", {}))
    _refuse_leftovers(result, "")
    return result


def _section(entries: dict[str, Any], parameters: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in entries.items():
        produced = _for_each(key, value, parameters) if key.startswith(FOR_EACH) else {key: value}
        for name, entry in produced.items():
            if name in out:
                raise UnsupportedTemplate(f"{name} is declared twice")
            out[name] = entry
    return out


def _for_each(loop: str, value: Any, parameters: set[str]) -> dict[str, Any]:
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[2], dict)):
        raise UnsupportedTemplate(f"{loop}: [identifier, collection, fragment] expected")
    identifier, collection, fragment = value
    if identifier in parameters:
        raise UnsupportedTemplate(f"{loop}: the identifier {identifier} is also a parameter")
    if not (isinstance(collection, list) and all(isinstance(item, str) for item in collection)):
        raise UnsupportedTemplate(f"{loop}: only a literal list of strings is expanded locally")
    out: dict[str, Any] = {}
    for item in collection:
        # A nested loop is expanded with the outer identifier already put in.
        for name, entry in _section(_put(fragment, identifier, item), parameters).items():
            if name in out:
                raise UnsupportedTemplate(f"{loop}: {name} is produced twice")
            out[name] = entry
    return out


def _put(value: Any, identifier: str, item: str) -> Any:
    if isinstance(value, str):
        stripped = re.sub(r"[^A-Za-z0-9]", "", item)  # &{Id}: for logical ids
        return value.replace(f"${{{identifier}}}", item).replace(f"&{{{identifier}}}", stripped)
    if isinstance(value, dict):
        if value == {"Ref": identifier}:
            return item
        return {_put(k, identifier, item): _put(v, identifier, item) for k, v in value.items()}
    if isinstance(value, list):
        return [_put(v, identifier, item) for v in value]
    return value


def _find_in_map(value: Any, mappings: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Fn::FindInMap"}:
            args = value["Fn::FindInMap"]
            if len(args) == 3 and all(isinstance(arg, str) for arg in args):
                name, top, second = args
                try:
                    return mappings[name][top][second]
                except KeyError:
                    raise UnsupportedTemplate(f"Fn::FindInMap {args}: no such entry") from None
        return {k: _find_in_map(v, mappings) for k, v in value.items()}
    if isinstance(value, list):
        return [_find_in_map(v, mappings) for v in value]
    return value


def _refuse_leftovers(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, entry in value.items():
            if key.startswith(FOR_EACH) or key in NOT_EXPANDED:
                raise UnsupportedTemplate(f"{where}/{key} is not expanded locally")
            _refuse_leftovers(entry, f"{where}/{key}")
    elif isinstance(value, list):
        for index, entry in enumerate(value):
            _refuse_leftovers(entry, f"{where}/{index}")
