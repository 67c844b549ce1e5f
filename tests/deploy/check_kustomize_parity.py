#!/usr/bin/env python3
"""Where a real kustomize exists (`kustomize`, or `kubectl kustomize` of kubectl 1.21 or later,
i.e. kustomize v4+), every deploy/k8s kustomization renders there to exactly the objects
kustomize.py renders: the tests' renderer is kustomize's, and the overlays stay renderable by
the real one. Exits 77 (ctest: skipped) when there is none: Debian 12 packages none recent
enough (its kubectl is 1.20, with kustomize 2.0.3).
Usage: check_kustomize_parity.py --deploy deploy"""
import argparse
import pathlib
import re
import shutil
import subprocess
import sys

import yaml

import kustomize

SKIP = 77


def real_kustomize():
    """The command that renders a folder with a kustomize v4 or later, or None."""
    for cmd, version, pattern in ((["kustomize", "build"], ["kustomize", "version"], r"v(\d+)\."),
                                  (["kubectl", "kustomize"], ["kubectl", "version", "--client"],
                                   r"Kustomize Version: v(\d+)\.")):
        if not shutil.which(cmd[0]):
            continue
        out = subprocess.run(version, capture_output=True, text=True, check=False).stdout
        m = re.search(pattern, out)
        if m and int(m.group(1)) >= 4:
            print(f"real kustomize: {' '.join(cmd)} ({out.strip().splitlines()[-1]})")
            return cmd
    return None


def by_id(objs):
    return {(o["apiVersion"], o["kind"], o["metadata"]["name"]): o for o in objs}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--deploy", required=True)
    o = p.parse_args()
    cmd = real_kustomize()
    if not cmd:
        print("no kustomize v4+ here (nor kubectl 1.21+): skipped")
        return SKIP
    roots = sorted(r.parent for r in (pathlib.Path(o.deploy) / "k8s").rglob("kustomization.yaml"))
    bad = 0
    for root in roots:
        r = subprocess.run(cmd + [str(root)], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            print(f"{root}: the real kustomize fails: {r.stderr.strip()}")
            bad += 1
            continue
        real, ours = by_id(yaml.safe_load_all(r.stdout)), by_id(kustomize.render(root))
        diff = sorted(str(k) for k in real.keys() | ours.keys() if real.get(k) != ours.get(k))
        print(f"{root}: {len(real)} objects, " + ("the same" if not diff else f"differ: {diff}"))
        bad += bool(diff)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
