#!/usr/bin/env python3
"""Checks deploy/k8s against the binaries: every YAML parses; every file a kustomization
names exists; every `starmesh` flag in a container's args (and in an overlay's patches) is one
`starmesh <subcommand> --help` lists; a JSON-patch `replace` of an argument keeps its flag;
Services point at declared container ports; the scrape annotations name the metrics port.
Usage: check_manifests.py --cli build/bin/starmesh --deploy deploy"""
import argparse
import pathlib
import re
import subprocess
import sys

import yaml

errors = []


def fail(msg):
    errors.append(msg)


def flags_of(cli, sub, cache={}):
    if sub not in cache:
        out = subprocess.run([cli, sub, "--help"], capture_output=True, text=True, check=False).stdout
        cache[sub] = set(re.findall(r"(--[a-z][a-z0-9-]*)", out))
    return cache[sub]


def flag_name(arg):
    return arg.split("=", 1)[0] if arg.startswith("--") else None


def check_args(cli, where, sub, args):
    if sub not in ("router", "worker"):
        fail(f"{where}: the first argument must be router or worker, got {sub!r}")
        return
    for a in args:
        f = flag_name(a)
        if f and f not in flags_of(cli, sub):
            fail(f"{where}: `starmesh {sub}` has no flag {f}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cli", required=True)
    p.add_argument("--deploy", required=True)
    o = p.parse_args()
    k8s = pathlib.Path(o.deploy) / "k8s"
    docs = {}
    for path in sorted(k8s.rglob("*.yaml")) + sorted(k8s.rglob("*.yml")):
        try:
            docs[path] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as e:
            fail(f"{path}: not YAML: {e}")
    deployments = {}
    for path, ds in docs.items():
        for d in ds:
            if d.get("kind") == "Deployment":
                deployments[d["metadata"]["name"]] = (path, d)
    # Containers of our image: their arguments and ports.
    for name, (path, d) in deployments.items():
        spec = d["spec"]["template"]
        labels = spec["metadata"].get("labels", {})
        if d["spec"]["selector"]["matchLabels"].items() - labels.items():
            fail(f"{path}: {name}'s selector does not match its pod labels")
        for c in spec["spec"]["containers"]:
            if not c["image"].startswith("starmesh"):
                continue
            args = c.get("args", [])
            check_args(o.cli, f"{path} {name}", args[0] if args else "", args[1:])
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            ann = spec["metadata"].get("annotations", {})
            if ann.get("prometheus.io/scrape") == "true":
                if int(ann.get("prometheus.io/port", 0)) not in ports.values():
                    fail(f"{path} {name}: the scrape port is not a container port")
                listen = [a for a in args if a.startswith("--metrics-listen=")]
                if not listen or int(listen[0].rsplit(":", 1)[1]) != int(ann["prometheus.io/port"]):
                    fail(f"{path} {name}: --metrics-listen does not serve the scraped port")
    # Services: their selectors find a Deployment whose containers declare the target ports.
    for path, ds in docs.items():
        for d in ds:
            if d.get("kind") != "Service":
                continue
            sel = d["spec"]["selector"]
            matches = [dep for _, dep in deployments.values()
                       if not sel.items() - dep["spec"]["template"]["metadata"].get("labels", {}).items()]
            if not matches:
                fail(f"{path}: Service {d['metadata']['name']} selects no Deployment")
                continue
            names = {p["name"] for dep in matches for c in dep["spec"]["template"]["spec"]["containers"]
                     for p in c.get("ports", [])}
            for port in d["spec"]["ports"]:
                if port["targetPort"] not in names:
                    fail(f"{path}: Service port {port['name']} targets {port['targetPort']}, which no container declares")
    # Kustomizations: named files exist; patches of our Deployments use real flags.
    for path, ds in docs.items():
        if path.name != "kustomization.yaml":
            continue
        k = ds[0]
        for r in k.get("resources", []):
            if not (path.parent / r).exists():
                fail(f"{path}: resource {r} does not exist")
        for g in k.get("configMapGenerator", []):
            for f in g.get("files", []):
                if not (path.parent / f.split("=")[-1]).exists():
                    fail(f"{path}: configMapGenerator file {f} does not exist")
        for patch in k.get("patches", []):
            target = patch.get("target", {}).get("name")
            if target not in deployments:
                fail(f"{path}: a patch targets {target}, which is no Deployment here")
                continue
            base_args = deployments[target][1]["spec"]["template"]["spec"]["containers"][0]["args"]
            for op in yaml.safe_load(patch["patch"]):
                m = re.fullmatch(r"/spec/template/spec/containers/0/args/(\d+|-)", op["path"])
                if not m:
                    continue
                check_args(o.cli, f"{path} patch", base_args[0], [op["value"]])
                if op["op"] == "replace":
                    i = int(m.group(1))
                    if i >= len(base_args) or flag_name(base_args[i]) != flag_name(op["value"]):
                        fail(f"{path}: replaces args/{i} ({base_args[i] if i < len(base_args) else 'none'}) "
                             f"with {op['value']}: another flag")
    dockerfile = pathlib.Path(o.deploy) / "docker" / "Dockerfile"
    text = dockerfile.read_text()
    workdir = re.search(r"^WORKDIR (\S+)", text, re.M).group(1)
    if f'"{workdir}/build/bin/starmesh"' not in text:
        fail(f"{dockerfile}: ENTRYPOINT is not {workdir}/build/bin/starmesh")
    for e in errors:
        print("error:", e)
    print(f"{len(docs)} manifest files, {len(deployments)} deployments checked: {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
