#!/usr/bin/env python3
"""The Prometheus rules: the operator's PrometheusRule (monitoring/operator) holds exactly the
groups of monitoring/prometheus-rules.yml; `promtool check rules` passes on both; and
`promtool test rules rules_test.yml` (the router-down alert, failures that ignore the
clients' mistakes) passes.
Usage: check_rules.py --deploy deploy"""
import argparse
import pathlib
import subprocess
import sys
import tempfile

import yaml

import kustomize


def promtool(*args):
    r = subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)
    print(f"promtool {' '.join(args)}: exit {r.returncode}\n{(r.stdout + r.stderr).strip()}")
    return r.returncode == 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--deploy", required=True)
    o = p.parse_args()
    mon = pathlib.Path(o.deploy) / "k8s" / "monitoring"
    plain = yaml.safe_load((mon / "prometheus-rules.yml").read_text())
    crs = [x for x in kustomize.render(mon / "operator") if x["kind"] == "PrometheusRule"]
    ok = len(crs) == 1 and crs[0]["spec"] == plain
    if not ok:
        print("error: operator/prometheus-rule.yaml's spec is not prometheus-rules.yml's groups: edit both")
    ok &= promtool("check", "rules", str(mon / "prometheus-rules.yml"))
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        yaml.safe_dump(crs[0]["spec"] if crs else {}, f)
        f.flush()
        ok &= promtool("check", "rules", f.name)
    ok &= promtool("test", "rules", str(pathlib.Path(__file__).parent / "rules_test.yml"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
