"""Generate the CustomResourceDefinitions in ``crds/`` from the pydantic models.

    python -m kubetasks.api.crdgen --write crds/ charts/kubetasks/crds/   # (re)write the files
    python -m kubetasks.api.crdgen --check crds/ charts/kubetasks/crds/   # exit 1 on drift

Both options take one or more directories; the repository keeps two identical copies, the
top-level ``crds/`` (``kubectl apply -f crds/``) and the Helm chart's ``crds/``.

Pydantic's JSON schema becomes a structural OpenAPI v3 schema: references are inlined,
``Optional[X]`` becomes ``X``, titles and defaults are dropped (the API server applies no
defaults; the models do), and the CRD-only keywords the models carry pass through. A keyword
the API server would not understand is an error here, not a surprise at ``kubectl apply``.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from kubetasks.api import v1alpha1
from kubetasks.api.v1alpha1 import KINDS, Resource

HEADER = (
    "# Generated from sdk/kubetasks/api/v1alpha1.py by\n"
    "#   python -m kubetasks.api.crdgen --write crds/ charts/kubetasks/crds/\n"
    "# Do not edit: change the models and regenerate.\n"
)
# Every copy of the CRDs in the repository: the top-level one and the Helm chart's.
CRD_DIRS = ("crds/", "charts/kubetasks/crds/")
REGENERATE_HINT = (
    f"run `python -m kubetasks.api.crdgen --write {' '.join(CRD_DIRS)}` and commit the result"
)

JsonSchema = dict[str, Any]

# Keywords copied as they are (after their sub-schemas are converted).
_PLAIN_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "required",
        "enum",
        "maxLength",
        "minLength",
        "pattern",
        "minimum",
        "maximum",
        "multipleOf",
        "maxItems",
        "minItems",
        "maxProperties",
        "minProperties",
        "nullable",
    }
)
_DROPPED_KEYWORDS = frozenset({"title", "default", "examples"})
_FORMATS = frozenset({"date-time"})
# Order of keys in each generated schema node, for readable YAML; others follow in order.
_KEY_ORDER = {
    key: rank
    for rank, key in enumerate(("description", "type", "format", "enum", "nullable", "required"))
}
_RULE_KEY_ORDER = {key: rank for rank, key in enumerate(("rule", "message", "fieldPath", "reason"))}


class SchemaError(ValueError):
    """The models produced a JSON schema that has no structural OpenAPI equivalent."""


def structural_schema(model: type[Any]) -> JsonSchema:
    """The model's JSON schema as a CRD ``openAPIV3Schema``."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    return _convert(raw, definitions, path="")


def _resolve(node: JsonSchema, definitions: JsonSchema, path: str) -> JsonSchema:
    """Inline ``$ref`` and flatten ``Optional``; keys on the referring node win."""
    while True:
        if "$ref" in node:
            name = node["$ref"].removeprefix("#/$defs/")
            if name not in definitions:
                raise SchemaError(f"{path or '<root>'}: unknown reference {node['$ref']}")
            node = _merge(
                copy.deepcopy(definitions[name]), {k: v for k, v in node.items() if k != "$ref"}
            )
        elif "anyOf" in node:
            branches = [b for b in node["anyOf"] if b != {"type": "null"}]
            if len(branches) != 1 or len(branches) == len(node["anyOf"]):
                raise SchemaError(
                    f"{path or '<root>'}: only Optional[X] unions map to a structural schema"
                )
            node = _merge(
                copy.deepcopy(branches[0]), {k: v for k, v in node.items() if k != "anyOf"}
            )
        elif "allOf" in node and len(node["allOf"]) == 1:
            node = _merge(
                copy.deepcopy(node["allOf"][0]), {k: v for k, v in node.items() if k != "allOf"}
            )
        else:
            return node


def _merge(base: JsonSchema, override: JsonSchema) -> JsonSchema:
    merged = {**base, **override}
    rules = base.get("x-kubernetes-validations", []) + override.get("x-kubernetes-validations", [])
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged


def _convert(node: JsonSchema, definitions: JsonSchema, path: str) -> JsonSchema:
    node = _resolve(node, definitions, path)
    out: JsonSchema = {}
    for key, value in node.items():
        where = f"{path or '<root>'}: {key}"
        if key in _DROPPED_KEYWORDS:
            continue
        if key == "description":
            out[key] = " ".join(value.split())  # docstrings wrap; descriptions need not
        elif key == "x-kubernetes-validations":
            out[key] = [_ordered(rule, _RULE_KEY_ORDER) for rule in value]
        elif key in _PLAIN_KEYWORDS or key.startswith("x-kubernetes-"):
            out[key] = value
        elif key == "const":
            out["enum"] = [value]
        elif key == "format":
            if value not in _FORMATS:
                raise SchemaError(f"{where} {value!r} is not a format the API server checks")
            out[key] = value
        elif key == "properties":
            out[key] = {
                name: _convert(value[name], definitions, f"{path}.{name}") for name in sorted(value)
            }
        elif key == "items":
            out[key] = _convert(value, definitions, f"{path}[]")
        elif key == "additionalProperties":
            if value is False:
                continue  # the API server prunes unknown fields anyway
            if not isinstance(value, dict):
                raise SchemaError(
                    f"{where} must be a schema; use x-kubernetes-preserve-unknown-fields"
                )
            out[key] = _convert(value, definitions, f"{path}.*")
        elif key in ("oneOf", "anyOf", "allOf"):
            # Only value checks over fields defined outside the junctor (e.g. `required`).
            out[key] = [_validation_branch(b, where) for b in value]
        else:
            raise SchemaError(f"{where} is not supported in a structural schema")
    if out.get("required") == []:
        del out["required"]
    elif "required" in out:
        out["required"] = sorted(out["required"])
    if "type" not in out and not (
        out.get("x-kubernetes-preserve-unknown-fields") or out.get("x-kubernetes-int-or-string")
    ):
        raise SchemaError(f"{path or '<root>'}: no type; give it one or preserve unknown fields")
    return _ordered(out, _KEY_ORDER)


def _ordered(mapping: JsonSchema, order: dict[str, int]) -> JsonSchema:
    return dict(sorted(mapping.items(), key=lambda item: order.get(item[0], len(order))))


def _validation_branch(branch: JsonSchema, where: str) -> JsonSchema:
    if set(branch) - {"required"}:
        raise SchemaError(f"{where}: branches may only list required fields")
    return dict(branch)


def _printer_columns(resource: Resource) -> list[dict[str, Any]]:
    columns = []
    for column in resource.printer_columns:
        entry: dict[str, Any] = {
            "name": column.name,
            "type": column.type,
            "jsonPath": column.json_path,
            "description": column.description,
        }
        if column.priority:
            entry["priority"] = column.priority
        columns.append(entry)
    return columns


def custom_resource_definition(model: type[Any]) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind of ``kubetasks.api.v1alpha1``."""
    resource: Resource = model.resource
    kind = model.model_fields["kind"].default
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{resource.plural}.{v1alpha1.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "kubetasks"},
        },
        "spec": {
            "group": v1alpha1.GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": resource.plural,
                "singular": resource.singular,
                "shortNames": list(resource.short_names),
                "categories": list(resource.categories),
            },
            "scope": "Namespaced" if resource.namespaced else "Cluster",
            "versions": [
                {
                    "name": v1alpha1.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(resource),
                    "schema": {"openAPIV3Schema": structural_schema(model)},
                }
            ],
        },
    }


def generate_crds() -> list[dict[str, Any]]:
    """The CustomResourceDefinitions of every kind, as dicts ready to apply."""
    return [custom_resource_definition(model) for model in KINDS]


def file_name(model: type[Any]) -> str:
    return f"{model.resource.plural}.{v1alpha1.GROUP}.yaml"


def render(model: type[Any]) -> str:
    """The YAML text of the kind's CRD file."""
    body = yaml.safe_dump(
        custom_resource_definition(model), sort_keys=False, width=100, allow_unicode=True
    )
    return HEADER + "---\n" + body


def rendered_files() -> dict[str, str]:
    """File name → content, for every kind."""
    return {file_name(model): render(model) for model in KINDS}


def drift(directory: Path) -> list[str]:
    """Unified diffs between the files in ``directory`` and the models; empty when in sync."""
    problems = []
    for name, expected in rendered_files().items():
        path = directory / name
        actual = path.read_text() if path.exists() else ""
        if actual != expected:
            problems.append(
                "".join(
                    difflib.unified_diff(
                        actual.splitlines(keepends=True),
                        expected.splitlines(keepends=True),
                        fromfile=str(path),
                        tofile=f"{path} (from the models)",
                    )
                )
                or f"{path}: differs\n"
            )
    return problems


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in rendered_files().items():
        path = directory / name
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kubetasks.api.crdgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="DIR", type=Path, nargs="+",
                      help="write the CRD files into each DIR")
    mode.add_argument("--check", metavar="DIR", type=Path, nargs="+",
                      help="fail if any DIR's files drifted")
    args = parser.parse_args(argv)
    if args.write is not None:
        for directory in args.write:
            for path in write(directory):
                print(f"wrote {path}")
        return 0
    problems = [problem for directory in args.check for problem in drift(directory)]
    if problems:
        sys.stdout.write("".join(problems))
        checked = " and ".join(str(d) for d in args.check)
        print(
            f"\nThe CRDs in {checked} do not match the models: {REGENERATE_HINT}.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
