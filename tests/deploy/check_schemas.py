#!/usr/bin/env python3
"""Validates every object deploy/k8s renders, offline and strictly (validator/validate.mjs:
the Kubernetes, Prometheus-operator and KEDA schemas, unknown fields are errors): each
kustomization folder as kustomize.py renders it, and each manifest no kustomization names
(autoscaling/hpa.yaml). With --broken DIR it checks the validator instead: every file there
must fail, with the message its `# expect:` line gives.
Usage: check_schemas.py --validator DIR --deploy deploy [--broken tests/deploy/broken]"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import yaml

import kustomize


def referenced(k_path):
    k = yaml.safe_load(k_path.read_text())
    names = list(k.get("resources", [])) + [p["path"] for p in k.get("patches", []) if "path" in p]
    names += [f for g in k.get("configMapGenerator", []) for f in g.get("files", [])]
    return {(k_path.parent / n).resolve() for n in names}


def deploy_objects(deploy):
    k8s = pathlib.Path(deploy) / "k8s"
    roots = sorted(k8s.rglob("kustomization.yaml"))
    used = set().union(*(referenced(r) for r in roots))
    entries = []
    for r in roots:
        entries += [{"source": str(r.parent), "object": o} for o in kustomize.render(r.parent)]
    for f in sorted(k8s.rglob("*.yaml")):
        if f.name != "kustomization.yaml" and f.resolve() not in used:
            entries += [{"source": str(f), "object": o} for o in kustomize.load_docs(f)]
    return entries


def validate(validator, entries):
    """Runs the validator; returns (exit code, output)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(entries, f)
        f.flush()
        here = pathlib.Path(__file__).parent
        r = subprocess.run(["node", str(here / "validator" / "validate.mjs"), validator, f.name],
                           capture_output=True, text=True, check=False)
    return r.returncode, r.stdout + r.stderr


def check_broken(validator, broken):
    failures = 0
    files = sorted(pathlib.Path(broken).glob("*.yaml"))
    for f in files:
        text = f.read_text()
        expect = [l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("# expect:")]
        rc, out = validate(validator, [{"source": f.name, "object": o} for o in kustomize.load_docs(f)])
        ok = rc == 1 and expect and all(e in out for e in expect)
        print(f"{'rejected' if ok else 'NOT REJECTED AS EXPECTED'}: {f.name}: {out.strip().splitlines()[0]}")
        if not ok:
            print(out)
            failures += 1
    print(f"{len(files)} broken manifests: {len(files) - failures} rejected as expected")
    return 1 if failures or not files else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--validator", required=True, help="tools/setup.sh's build/testdata/deploy-validator")
    p.add_argument("--deploy", required=True)
    p.add_argument("--broken")
    o = p.parse_args()
    if not (pathlib.Path(o.validator) / "node_modules" / "kubernetes-models").is_dir():
        sys.exit(f"{o.validator}: no kubernetes-models there: run tools/setup.sh")
    if o.broken:
        return check_broken(o.validator, o.broken)
    entries = deploy_objects(o.deploy)
    kinds = sorted({f"{e['object']['apiVersion']} {e['object']['kind']}" for e in entries})
    print("kinds:", ", ".join(kinds))
    rc, out = validate(o.validator, entries)
    print(out, end="")
    return rc


if __name__ == "__main__":
    sys.exit(main())
