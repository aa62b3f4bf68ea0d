"""A strict JSON schema of the Argo ``Workflow`` type, derived offline from hera's
generated models (which follow Argo's own OpenAPI definitions).

Strict: every object type with declared properties rejects any other property,
so a misspelt or misplaced field fails. Kubernetes quantities (``16Gi``, ``4``)
are strings or numbers, as the API server reads them; hera types them as strings.
"""

from __future__ import annotations

import functools

import jsonschema


def _strict(node):
    if isinstance(node, dict):
        if "properties" in node and node.get("type", "object") == "object":
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


@functools.lru_cache(maxsize=1)
def workflow_schema() -> dict:
    from hera.workflows.models import Workflow

    schema = Workflow.model_json_schema(by_alias=True)
    definitions = schema["$defs"]
    assert "Quantity" in definitions and "Template" in definitions, "hera's models changed shape"
    definitions["Quantity"] = {"anyOf": [{"type": "string"}, {"type": "number"}]}
    return _strict(schema)


def workflow_errors(document: dict) -> list[str]:
    """Every way ``document`` is not a Workflow, as `path: message` lines."""
    validator = jsonschema.Draft202012Validator(workflow_schema())
    lines = set()
    for error in validator.iter_errors(document):
        for leaf in _leaves(error):
            lines.add(f"{'.'.join(map(str, leaf.absolute_path)) or '<root>'}: {leaf.message[:300]}")
    return sorted(lines)


def _leaves(error):
    """The errors under an `anyOf` (hera writes every optional field as `anyOf: [X,
    null]`), without the uninformative "is not of type 'null'"."""
    if not error.context:
        yield error
        return
    for sub in error.context:
        if sub.validator == "type" and sub.validator_value == "null":
            continue
        yield from _leaves(sub)
