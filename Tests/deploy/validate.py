#!/usr/bin/env python3
"""Validates Cairn's Kubernetes manifests without a cluster (run by Tests/deploy/validate.sh).

- Plain Kubernetes objects: kubernetes-validate, strict (an unknown field fails), against the
  oldest and newest Kubernetes versions checked (KUBERNETES_VERSIONS).
- cairn.io objects: the openAPIV3Schema of their CRD in deploy/cairn-operator.yaml, as JSON Schema
  (unknown fields fail, as kubectl's strict field validation makes them; CEL rules are not run).
- VolumeSnapshot*: small schemas of their fields (kubernetes-validate has none).
- Every CRD: its schema is structural (every property has a type), it has a status subresource
  and printer columns.
- The Grafana dashboard: every cairn_*/openebs_* series it queries is exported in Sources/.

Usage: validate.py [--objects DIR]... [FILE]...   (the repository's manifests are always checked)
"""
import argparse
import copy
import datetime
import json
import pathlib
import re
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OPERATOR = DEPLOY / "cairn-operator.yaml"
DASHBOARD = DEPLOY / "monitoring" / "grafana-dashboard.json"
KUBERNETES_VERSIONS = ["1.34.0", "1.37.0"]

# Small schemas for the external-snapshotter kinds (snapshot.storage.k8s.io/v1).
_NAME = {"type": "string", "minLength": 1}
_META = {"type": "object", "required": ["name"], "properties": {"name": _NAME}}
SNAPSHOT_SCHEMAS = {
    "VolumeSnapshot": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["source"],
                "properties": {
                    "volumeSnapshotClassName": _NAME,
                    "source": {
                        "type": "object", "additionalProperties": False,
                        "properties": {"persistentVolumeClaimName": _NAME, "volumeSnapshotContentName": _NAME},
                        "oneOf": [{"required": ["persistentVolumeClaimName"]}, {"required": ["volumeSnapshotContentName"]}],
                    },
                },
            },
        },
    },
    "VolumeSnapshotClass": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "driver", "deletionPolicy"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "snapshot.storage.k8s.io/v1"}, "kind": {"const": "VolumeSnapshotClass"},
            "metadata": _META, "driver": _NAME, "deletionPolicy": {"enum": ["Delete", "Retain"]},
            "parameters": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "VolumeSnapshotContent": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object", "required": ["deletionPolicy", "driver", "source", "volumeSnapshotRef"],
                "properties": {
                    "deletionPolicy": {"enum": ["Delete", "Retain"]}, "driver": _NAME,
                    "volumeSnapshotClassName": _NAME,
                    "source": {"type": "object", "properties": {"volumeHandle": _NAME, "snapshotHandle": _NAME},
                               "oneOf": [{"required": ["volumeHandle"]}, {"required": ["snapshotHandle"]}]},
                    "volumeSnapshotRef": {"type": "object", "required": ["name", "namespace"]},
                },
            },
        },
    },
}

# Formats of Kubernetes' OpenAPI that jsonschema does not check by itself.
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("int32")
def _int32(v):
    return not isinstance(v, int) or -(2**31) <= v < 2**31


@FORMATS.checks("int64")
def _int64(v):
    return not isinstance(v, int) or -(2**63) <= v < 2**63


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(v):
    if isinstance(v, str):
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", v):
            raise ValueError(f"{v!r} is not an RFC 3339 date-time")
        datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
    return True


def load(path):
    """The objects in a YAML file (lists expanded), or a failure message."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        return None, f"cannot read: {e}".replace("\n", " ")
    objects = []
    for d in docs:
        if isinstance(d, dict) and d.get("kind", "").endswith("List") and isinstance(d.get("items"), list):
            objects.extend(d["items"])
        else:
            objects.append(d)
    return objects, None


def describe(obj):
    if not isinstance(obj, dict):
        return "(not an object)"
    meta = obj.get("metadata") or {}
    name = meta.get("name", "?") if isinstance(meta, dict) else "?"
    ns = meta.get("namespace") if isinstance(meta, dict) else None
    return f"{obj.get('kind', '?')} {ns + '/' if ns else ''}{name}"


def json_schema(structural, root=True):
    """A CRD's structural schema as JSON Schema: x-kubernetes-* dropped, nullable as a type,
    unknown fields refused (what kubectl's strict field validation does) but in metadata."""
    s = {k: v for k, v in structural.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if structural.get("nullable") and "type" in s:
        s["type"] = [s["type"], "null"]
    if structural.get("x-kubernetes-int-or-string"):
        s["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in s:
        s["properties"] = {k: json_schema(v, False) for k, v in s["properties"].items()}
        if "additionalProperties" not in s and not structural.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = json_schema(s["additionalProperties"], False)
    if isinstance(s.get("items"), dict):
        s["items"] = json_schema(s["items"], False)
    for key in ("allOf", "anyOf", "oneOf"):
        if key in s and key in structural:
            s[key] = [json_schema(x, False) for x in s[key]]
    if root:
        props = s.setdefault("properties", {})
        meta = props.setdefault("metadata", {"type": "object"})
        meta.pop("additionalProperties", None)  # ObjectMeta's other fields
        meta.setdefault("required", ["name"])
        props["metadata"] = meta
        s["required"] = sorted(set(s.get("required", [])) | {"apiVersion", "kind", "metadata"})
    return s


def structural_problems(schema, path="openAPIV3Schema"):
    """Where a CRD schema is not structural: a node with no type (unless it is int-or-string or
    keeps unknown fields)."""
    out = []
    if "type" not in schema and not (schema.get("x-kubernetes-int-or-string")
                                       or schema.get("x-kubernetes-preserve-unknown-fields")):
        out.append(f"{path}: no type")
    for name, sub in (schema.get("properties") or {}).items():
        out += structural_problems(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        out += structural_problems(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += structural_problems(schema["additionalProperties"], f"{path}{{}}")
    return out


def check_crd(crd):
    problems = []
    spec = crd.get("spec", {})
    if spec.get("scope") != "Namespaced":
        problems.append("not namespaced")
    for v in spec.get("versions", []):
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if not schema:
            problems.append(f"{v.get('name')}: no openAPIV3Schema")
            continue
        problems += [f"{v['name']}: {p}" for p in structural_problems(schema)]
        if "status" not in (v.get("subresources") or {}):
            problems.append(f"{v['name']}: no status subresource")
        if not v.get("additionalPrinterColumns"):
            problems.append(f"{v['name']}: no additionalPrinterColumns")
        for part in ("spec", "status"):
            if part not in schema.get("properties", {}):
                problems.append(f"{v['name']}: no {part} in the schema")
    return problems


def crd_validators(objects):
    """(group, version, kind) -> a validator of that kind's objects, from the CRDs given."""
    out = {}
    for crd in objects:
        if not (isinstance(crd, dict) and crd.get("kind") == "CustomResourceDefinition"):
            continue
        spec = crd["spec"]
        for v in spec["versions"]:
            schema = json_schema(copy.deepcopy(v["schema"]["openAPIV3Schema"]))
            jsonschema.Draft202012Validator.check_schema(schema)
            out[(spec["group"], v["name"], spec["names"]["kind"])] = jsonschema.Draft202012Validator(
                schema, format_checker=FORMATS)
    return out


def schema_errors(validator, obj):
    """Every error, one clause each (None when valid)."""
    errors = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return None
    return "; ".join(f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors)


def check_object(obj, crds):
    """None when valid, else why not; and a note of what checked it."""
    if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
        return "not a Kubernetes object (apiVersion and kind)", "-"
    group, _, version = obj["apiVersion"].rpartition("/")
    kind = obj["kind"]
    if group == "cairn.io":
        validator = crds.get((group, version, kind))
        if validator is None:
            return f"no CRD in {OPERATOR.name} for {obj['apiVersion']} {kind}", "-"
        return schema_errors(validator, obj), "CRD schema"
    if group == "snapshot.storage.k8s.io":
        schema = SNAPSHOT_SCHEMAS.get(kind)
        if schema is None or version != "v1":
            return f"no schema for {obj['apiVersion']} {kind}", "-"
        return schema_errors(jsonschema.Draft202012Validator(schema), obj), "snapshot schema"
    if kind == "CustomResourceDefinition":
        problems = check_crd(obj)
        if problems:
            return "; ".join(problems), "structural"
    for v in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, v, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "(root)"
            return f"Kubernetes {v}: {where}: {e.message}", "-"
        except kubernetes_validate.SchemaNotFoundError as e:
            return e.message, "-"
    return None, "kubernetes " + ", ".join(v.rsplit(".", 1)[0] for v in KUBERNETES_VERSIONS) + " strict"


def check_dashboard(path):
    """None when every series the dashboard queries is named in Sources/, else which are not;
    and how many it queries."""
    try:
        dashboard = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return f"cannot read: {e}", 0
    exprs = [t["expr"] for p in dashboard.get("panels", []) for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    names = {m for e in exprs for m in re.findall(r"\b((?:cairn|openebs)_[a-z0-9_]+)", e)}
    exported = set()
    for swift in (ROOT / "Sources").rglob("*.swift"):
        exported |= set(re.findall(r'"((?:cairn|openebs)_[a-z0-9_]+)"', swift.read_text(errors="replace")))
    # A histogram's series: NAME_bucket, NAME_sum, NAME_count.
    missing = sorted(n for n in names if n not in exported
                     and re.sub(r"_(bucket|sum|count)$", "", n) not in exported)
    return (f"not exported by Sources/: {', '.join(missing)}" if missing else None), len(names)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objects", action="append", default=[], metavar="DIR",
                    help="also check every YAML/JSON file under DIR")
    ap.add_argument("files", nargs="*", type=pathlib.Path)
    args = ap.parse_args()

    files = [OPERATOR, DEPLOY / "cairn-csi-external-apiserver.yaml", DEPLOY / "cairn-storageclasses.yaml",
             *sorted((DEPLOY / "examples").glob("*.yaml"))]
    files += args.files
    for d in args.objects:
        d = pathlib.Path(d)
        if not d.is_dir():
            ap.error(f"--objects {d}: not a directory")
        files += sorted(p for p in d.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and p.is_file())

    operator, why = load(OPERATOR)
    if operator is None:
        print(f"FAIL {OPERATOR}: {why}")
        return 1
    crds = crd_validators(operator)

    valid = invalid = 0
    for path in files:
        shown = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
        objects, why = load(path)
        if objects is None or not objects:
            print(f"FAIL {shown}: {why or 'no objects'}")
            invalid += 1
            continue
        for obj in objects:
            problem, how = check_object(obj, crds)
            if problem:
                invalid += 1
                print(f"FAIL {shown}: {describe(obj)}: {problem}")
            else:
                valid += 1
                print(f"ok   {shown}: {describe(obj)} ({how})")
    problem, count = check_dashboard(DASHBOARD)
    shown = DASHBOARD.relative_to(ROOT)
    if problem:
        invalid += 1
        print(f"FAIL {shown}: {problem}")
    else:
        valid += 1
        print(f"ok   {shown}: {count} series, each exported by Sources/")
    print(f"deploy: {valid} objects valid, {invalid} invalid")
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
