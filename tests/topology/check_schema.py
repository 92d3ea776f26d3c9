#!/usr/bin/env python3
"""Checks docs/topology.schema.json with an independent validator.

Debian's python3-jsonschema (draft 2020-12) and python3-yaml (PyYAML, YAML
1.1) read the files, not our loader:
  - the schema itself is a valid draft 2020-12 schema;
  - every examples/*.yaml is accepted;
  - broken files whose faults are shapes (unknown keys, wrong types, values
    out of range) are rejected, each at the place named below;
  - broken files whose faults only the loader can see (names links refer
    to, loops, duplicate addresses on a segment) are accepted: the schema
    is not stricter than the format.

Usage: check_schema.py SOURCE_DIR
"""
import pathlib
import sys

try:
    import jsonschema
    import yaml
except ImportError as e:
    sys.exit(f"check_schema.py: {e}: install python3-jsonschema and python3-yaml (scripts/setup.sh does)")

# Broken files the schema must reject, and a path (as "a/b/c") where one of
# its errors must be.
REJECTED = {
    "unknown-keys": "",                      # 'defualts' at the top
    "wrong-types": "defaults/memory",
    "names": "name",
    "nic-names": "nodes/wan/nics",
    "bad-macs": "nodes/alice/nics/eth1/mac",
    "bad-addresses": "nodes/alice/nics/eth0/addresses/10",
    "isa": "nodes/bad-jumpers/nics/eth0/io",
    "vlans": "switches/sw1/ports/big/vlan",
    "images": "nodes/dave/image",
    "endpoints": "links/1/1",
    "routes": "nodes/alice/routes/8",
    "run": "nodes/alice/run",
    "not-a-map": "",
    "missing-keys": "",
    "empty": "",
}
# Broken files that are well-shaped: only the loader finds their faults.
ACCEPTED = ["dangling", "used-twice", "loops", "duplicates-on-segment", "trunk-nic"]


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def error_paths(validator, doc):
    paths = set()
    for error in validator.iter_errors(doc):
        for e in [error, *(error.context or [])]:
            paths.add("/".join(str(p) for p in e.absolute_path))
    return paths


def main():
    root = pathlib.Path(sys.argv[1])
    schema = load(root / "docs/topology.schema.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    failures = []
    examples = sorted((root / "examples").glob("*.yaml"))
    if len(examples) < 5:
        failures.append(f"expected the five examples, found {len(examples)}")
    for path in examples:
        for error in validator.iter_errors(load(path)):
            failures.append(f"{path.name}: rejected: {'/'.join(map(str, error.absolute_path))}: {error.message}")
    broken = root / "tests/topology/broken"
    for name, where in REJECTED.items():
        paths = error_paths(validator, load(broken / f"{name}.yaml"))
        if not paths:
            failures.append(f"broken/{name}.yaml: accepted, but the schema should reject it")
        elif where not in paths:
            failures.append(f"broken/{name}.yaml: no error at '{where}' (errors at: {sorted(paths)})")
    for name in ACCEPTED:
        for error in validator.iter_errors(load(broken / f"{name}.yaml")):
            failures.append(f"broken/{name}.yaml: rejected by the schema at "
                            f"'{'/'.join(map(str, error.absolute_path))}': {error.message}")
    for f in failures:
        print(f"FAIL {f}")
    print(f"check_schema.py: {len(examples)} examples, {len(REJECTED)} rejected and "
          f"{len(ACCEPTED)} accepted broken files, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
