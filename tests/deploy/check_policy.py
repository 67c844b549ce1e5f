#!/usr/bin/env python3
"""Checks that each workload the overlays render is deployed as issue 16 asks: pod and
container securityContext (non-root, read-only root, no privilege escalation, capabilities
dropped, seccomp), a writable emptyDir at /tmp, startup/liveness probes on /healthz and
readiness on /readyz at the metrics port, a pinned image tag, the Secrets mounted where the
flags read them, every $(VAR) of the arguments defined, a NetworkPolicy for each pod that opens
each port to whom docs/SECURITY.md says, and for the workers a PodDisruptionBudget and spreading.
Usage: check_policy.py --deploy deploy --version 0.1.0"""
import argparse
import pathlib
import re
import sys

import kustomize
import policy_mutations as mutations

errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)


def selects(selector, labels):
    return not (selector.get("matchLabels", {}).items() - labels.items())


def arg(args, flag):
    return next((a.split("=", 1)[1] for a in args if a.startswith(flag + "=")), None)


def check_security(where, pod, c):
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) > 0, f"{where}: pod must run as a non-root user")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: pod needs seccomp RuntimeDefault")
    check(pod.get("automountServiceAccountToken") is False, f"{where}: mounts a service account token it never uses")
    sc = c.get("securityContext", {})
    check(sc.get("runAsNonRoot") is True, f"{where}: container securityContext.runAsNonRoot must be true")
    check(sc.get("readOnlyRootFilesystem") is True, f"{where}: the root filesystem must be read-only")
    check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation must be false")
    check(not sc.get("privileged"), f"{where}: must not be privileged")
    check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{where}: must drop ALL capabilities")
    check(not sc.get("capabilities", {}).get("add"), f"{where}: must add no capabilities")
    empty = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    check(any(m["mountPath"] == "/tmp" and m["name"] in empty for m in c.get("volumeMounts", [])),
          f"{where}: needs an emptyDir at /tmp (the root is read-only)")


def check_probes(where, c, args):
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    listen = arg(args, "--metrics-listen")
    metrics = int(listen.rsplit(":", 1)[1]) if listen else None
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path, f"{where}: {probe} must GET {path}")
        check(ports.get(get.get("port"), get.get("port")) == metrics, f"{where}: {probe} must ask the --metrics-listen port")


def check_image(where, c, version):
    name, _, tag = c["image"].rpartition(":")
    check(name and tag.startswith(version) and tag != "latest",
          f"{where}: image {c['image']} must carry a pinned tag starting with the version {version}")


def check_secrets(where, pod, c, args):
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    wants = {"--tls-ca": "starmesh-mesh-tls", "--tls-cert": "starmesh-mesh-tls", "--tls-key": "starmesh-mesh-tls",
             "--api-tokens-file": "starmesh-api-tokens"}
    for flag, secret in wants.items():
        path = arg(args, flag)
        if path is None:
            check(flag == "--api-tokens-file" and args[0] == "worker", f"{where}: no {flag}")
            continue
        vol = mounts.get(str(pathlib.PurePath(path).parent))
        check(secrets.get(vol) == secret, f"{where}: {flag}={path} must be read from the Secret {secret}")
    env = {e["name"] for e in c.get("env", [])}
    for a in args:
        for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", a):
            check(var in env, f"{where}: argument {a} names $({var}), which the container's env does not define")


def allowed(policy, port_name, port_number):
    """The ingress rules of `policy` that open this port: their `from` lists ([] = anyone)."""
    out = []
    for rule in policy["spec"].get("ingress", []):
        for p in rule.get("ports", []):
            lo, hi = p.get("port"), p.get("endPort", p.get("port"))
            if lo == port_name or (isinstance(lo, int) and lo <= port_number <= hi):
                out.append(rule.get("from", []))
    return out


def check_network(where, labels, c, policies):
    mine = [p for p in policies if selects(p["spec"]["podSelector"], labels)
            and "Ingress" in p["spec"].get("policyTypes", [])]
    check(mine, f"{where}: no NetworkPolicy selects its pods")
    for port in c.get("ports", []):
        froms = [f for p in mine for f in allowed(p, port["name"], port["containerPort"])]
        check(froms, f"{where}: port {port['name']} is not opened by any NetworkPolicy")
        if port["name"] not in ("api", "http"):  # only the public doors are open to everyone
            check(all(froms), f"{where}: port {port['name']} is open to everyone")
    dp = next((e["value"] for e in c.get("env", []) if e["name"] == "UCX_TCP_PORT_RANGE"), None)
    if dp:  # the data plane: open to the workers (pods of this very selector) and no one else
        lo, hi = map(int, dp.split("-"))
        froms = [f for p in mine for f in allowed(p, None, lo)]
        peers = [f for f in froms if len(f) == 1 and set(f[0]) == {"podSelector"}
                 and f[0]["podSelector"].get("matchLabels") and selects(f[0]["podSelector"], labels)]
        check(froms and peers == froms and all(allowed(p, None, hi) for p in mine if allowed(p, None, lo)),
              f"{where}: the data plane ports {dp} must be open to the workers only")


def check_objects(objs, version, name):
    """Appends to `errors` what is wrong with one overlay's objects; returns its workloads."""
    policies = [x for x in objs if x["kind"] == "NetworkPolicy"]
    pdbs = [x for x in objs if x["kind"] == "PodDisruptionBudget"]
    workloads = [x for x in objs if x["kind"] == "Deployment"]
    for d in workloads:
        pod = d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        for c in pod["containers"]:
            where = f"{name}: {d['metadata']['name']}/{c['name']}"
            args = c.get("args", [])
            check_security(where, pod, c)
            check_probes(where, c, args)
            check_image(where, c, version)
            check_secrets(where, pod, c, args)
            check_network(where, labels, c, policies)
        if d["metadata"]["name"].endswith("worker"):
            where = f"{name}: {d['metadata']['name']}"
            check(any(selects(b["spec"]["selector"], labels) for b in pdbs), f"{where}: no PodDisruptionBudget")
            keys = {t["topologyKey"] for t in pod.get("topologySpreadConstraints", [])}
            check("kubernetes.io/hostname" in keys, f"{where}: workers are not spread over nodes")
    return len(workloads)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--deploy", required=True)
    p.add_argument("--version", required=True)
    o = p.parse_args()
    overlays = sorted((pathlib.Path(o.deploy) / "k8s" / "overlays").iterdir())
    workloads = sum(check_objects(kustomize.render(d), o.version, d.name) for d in overlays)
    for e in errors:
        print("error:", e)
    print(f"{len(overlays)} overlays, {workloads} workloads checked: {len(errors)} problems")
    if errors or not workloads:
        return 1
    # The checks themselves: each break of a rendered overlay must be caught.
    caught = mutations.run(kustomize.render(overlays[0]), lambda objs: check_objects(objs, o.version, "mutant"), errors)
    return 0 if caught else 1


if __name__ == "__main__":
    sys.exit(main())
