"""Breaks of a rendered overlay that check_policy.py must catch, one at a time: the proof that
its checks are not vacuous. Each names the error it expects."""
import copy


def deployment(objs, name):
    return next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


def container(objs, name):
    return deployment(objs, name)["spec"]["template"]["spec"]["containers"][0]


def drop_kind(kind):
    def drop(objs):
        objs[:] = [o for o in objs if o["kind"] != kind]
    return drop


def key_elsewhere(objs):
    args = container(objs, "starmesh-router")["args"]
    args[:] = ["--tls-key=/tmp/key.pem" if a.startswith("--tls-key=") else a for a in args]


def open_metrics(objs):
    policy = next(o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "starmesh-worker")
    policy["spec"]["ingress"].append({"ports": [{"port": "metrics"}]})


def open_data_plane(objs):
    policy = next(o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "starmesh-worker")
    policy["spec"]["ingress"].append({"from": [{"namespaceSelector": {}}], "ports": [{"port": 7600, "endPort": 7631}]})


MUTATIONS = [
    ("router without its container securityContext", "runAsNonRoot must be true",
     lambda o: container(o, "starmesh-router").pop("securityContext")),
    ("worker's root filesystem writable", "root filesystem must be read-only",
     lambda o: container(o, "starmesh-worker")["securityContext"].update(readOnlyRootFilesystem=False)),
    ("worker may escalate privileges", "allowPrivilegeEscalation",
     lambda o: container(o, "starmesh-worker")["securityContext"].pop("allowPrivilegeEscalation")),
    ("worker keeps its capabilities", "drop ALL",
     lambda o: container(o, "starmesh-worker")["securityContext"]["capabilities"].update(drop=[])),
    ("router pod as root", "non-root user",
     lambda o: deployment(o, "starmesh-router")["spec"]["template"]["spec"]["securityContext"].update(runAsUser=0)),
    ("worker without /tmp", "emptyDir at /tmp",
     lambda o: container(o, "starmesh-worker").update(volumeMounts=container(o, "starmesh-worker")["volumeMounts"][:-1])),
    ("worker without a startupProbe", "startupProbe",
     lambda o: container(o, "starmesh-worker").pop("startupProbe")),
    ("router readiness on /healthz", "readinessProbe must GET /readyz",
     lambda o: container(o, "starmesh-router")["readinessProbe"]["httpGet"].update(path="/healthz")),
    ("worker liveness on another port", "livenessProbe must ask",
     lambda o: container(o, "starmesh-worker")["livenessProbe"]["httpGet"].update(port="mesh")),
    ("image latest", "pinned tag",
     lambda o: container(o, "starmesh-worker").update(image="starmesh:latest")),
    ("TLS key not from the Secret", "must be read from the Secret starmesh-mesh-tls",
     key_elsewhere),
    ("an undefined $(VAR)", "does not define",
     lambda o: container(o, "starmesh-worker")["args"].append("--capacity=$(CAPACITY)")),
    ("no PodDisruptionBudget", "no PodDisruptionBudget", drop_kind("PodDisruptionBudget")),
    ("no NetworkPolicy", "no NetworkPolicy selects", drop_kind("NetworkPolicy")),
    ("worker metrics open to everyone", "port metrics is open to everyone", open_metrics),
    ("data plane open to other namespaces", "data plane ports", open_data_plane),
    ("workers not spread", "not spread",
     lambda o: deployment(o, "starmesh-worker")["spec"]["template"]["spec"].pop("topologySpreadConstraints")),
]


def run(objs, check_objects, errors):
    """Applies each mutation to a copy of `objs`; True when every one was caught as expected."""
    missed = 0
    for name, expect, mutate in MUTATIONS:
        errors.clear()
        mutant = copy.deepcopy(objs)
        mutate(mutant)
        check_objects(mutant)
        ok = any(expect in e for e in errors)
        missed += not ok
        print(f"{'caught' if ok else 'MISSED'}: {name}" + ("" if ok else f" (got: {errors})"))
    errors.clear()
    print(f"{len(MUTATIONS)} broken overlays: {len(MUTATIONS) - missed} caught")
    return missed == 0
