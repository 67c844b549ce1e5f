#!/usr/bin/env python3
"""Checks deploy/ against the binary: every YAML parses; in each overlay as kustomize renders
it (kustomize.py), every `starmesh` flag of a container's arguments, with the container's
$(VAR)s put in as Kubernetes does, is one `starmesh <subcommand> --help` lists; Services point
at declared container ports; the scrape annotations name the metrics port. The Dockerfile:
its runtime stage runs the binary it copies, as a non-root user, and installs the Debian
package of every shared library the binary built here loads (CUDA's aside: they are copied).
Usage: check_manifests.py --cli build/bin/starmesh --deploy deploy"""
import argparse
import pathlib
import re
import subprocess
import sys

import yaml

import kustomize

errors = []


def fail(msg):
    errors.append(msg)


def flags_of(cli, sub, cache={}):
    if sub not in cache:
        out = subprocess.run([cli, sub, "--help"], capture_output=True, text=True, check=False).stdout
        cache[sub] = set(re.findall(r"(--[a-z][a-z0-9-]*)", out))
    return cache[sub]


def expand(arg, env):
    """$(NAME) as the kubelet expands it: a defined variable's value, else left as it is."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def check_container(cli, where, c, ann):
    # valueFrom (the pod's IP) is known only at run time: an address stands in for it.
    env = {e["name"]: e.get("value", "10.0.0.1") for e in c.get("env", [])}
    args = [expand(a, env) for a in c.get("args", [])]
    sub = args[0] if args else ""
    if sub not in ("router", "worker"):
        fail(f"{where}: the first argument must be router or worker, got {sub!r}")
        return
    for a in args[1:]:
        if "$(" in a:
            fail(f"{where}: {a} names a variable the container does not define")
        if a.startswith("--") and a.split("=", 1)[0] not in flags_of(cli, sub):
            fail(f"{where}: `starmesh {sub}` has no flag {a.split('=', 1)[0]}")
    ports = {p["containerPort"] for p in c.get("ports", [])}
    if ann.get("prometheus.io/scrape") == "true":
        port = int(ann.get("prometheus.io/port", 0))
        listen = [a for a in args if a.startswith("--metrics-listen=")]
        if port not in ports:
            fail(f"{where}: the scrape port is not a container port")
        if not listen or int(listen[0].rsplit(":", 1)[1]) != port:
            fail(f"{where}: --metrics-listen does not serve the scraped port")


def check_overlay(cli, overlay):
    objs = kustomize.render(overlay)
    deployments = [o for o in objs if o["kind"] == "Deployment"]
    for d in deployments:
        tmpl = d["spec"]["template"]
        labels = tmpl["metadata"].get("labels", {})
        if d["spec"]["selector"]["matchLabels"].items() - labels.items():
            fail(f"{overlay}: {d['metadata']['name']}'s selector does not match its pod labels")
        for c in tmpl["spec"]["containers"]:
            if c["image"].startswith("starmesh"):
                check_container(cli, f"{overlay.name} {d['metadata']['name']}", c, tmpl["metadata"].get("annotations", {}))
    for s in (o for o in objs if o["kind"] == "Service"):
        sel = s["spec"]["selector"]
        matches = [d for d in deployments if not sel.items() - d["spec"]["template"]["metadata"]["labels"].items()]
        if not matches:
            fail(f"{overlay}: Service {s['metadata']['name']} selects no Deployment")
        names = {p["name"] for d in matches for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for port in s["spec"]["ports"]:
            if matches and port["targetPort"] not in names:
                fail(f"{overlay}: Service port {port['name']} targets {port['targetPort']}, which no container declares")


def library_packages(cli):
    """The Debian packages of the libraries `cli` loads, CUDA's (copied, not installed) aside."""
    out = subprocess.run(["ldd", cli], capture_output=True, text=True, check=True).stdout
    libs = [m for m in re.findall(r"=> (/\S+)", out) if not m.startswith("/usr/local/cuda")]
    pkgs = set()
    for lib in libs:
        r = subprocess.run(["dpkg", "-S", str(pathlib.Path(lib).resolve())], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            r = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            fail(f"{lib}, which the binary loads, belongs to no Debian package")
            continue
        pkgs.add(r.stdout.split(":", 1)[0])
    return pkgs


def check_dockerfile(cli, dockerfile):
    text = dockerfile.read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    if len(stages) < 2:
        fail(f"{dockerfile}: not multi-stage (a build stage and a runtime stage)")
        return
    runtime = stages[-1]
    entry = re.search(r'^ENTRYPOINT \["([^"]+)"', runtime, re.M)
    copied = re.findall(r"^COPY --from=\S+ \S+ (\S+)", runtime, re.M)
    if not entry or entry.group(1) not in copied:
        fail(f"{dockerfile}: the runtime stage's ENTRYPOINT is not a binary it copies from the build stage")
    user = re.search(r"^USER (\d+)", runtime, re.M)
    if not user or int(user.group(1)) == 0:
        fail(f"{dockerfile}: the runtime stage must run as a numeric non-root USER")
    listed = set(re.search(r'^ARG RUNTIME_PACKAGES="([^"]*)"', runtime, re.M).group(1).split())
    in_base = {"libc6", "libgcc-s1", "libstdc++6"}  # in every Debian 12 image (apt needs them)
    missing = library_packages(cli) - listed - in_base
    if missing:
        fail(f"{dockerfile}: RUNTIME_PACKAGES lacks {sorted(missing)}, whose libraries the binary loads")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cli", required=True)
    p.add_argument("--deploy", required=True)
    o = p.parse_args()
    k8s = pathlib.Path(o.deploy) / "k8s"
    files = sorted(k8s.rglob("*.yaml")) + sorted(k8s.rglob("*.yml"))
    for path in files:
        try:
            list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as e:
            fail(f"{path}: not YAML: {e}")
    overlays = sorted((k8s / "overlays").iterdir())
    for overlay in overlays:
        try:
            check_overlay(o.cli, overlay)
        except kustomize.Error as e:
            fail(str(e))
    check_dockerfile(o.cli, pathlib.Path(o.deploy) / "docker" / "Dockerfile")
    for e in errors:
        print("error:", e)
    print(f"{len(files)} manifest files, {len(overlays)} overlays and the Dockerfile checked: {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
