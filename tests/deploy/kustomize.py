#!/usr/bin/env python3
"""Renders a kustomization folder as `kustomize build` does, for the subset deploy/k8s uses:
resources (files and folders), labels (metadata only), images, replicas, patches (strategic
merge, or JSON 6902 with a target), configMapGenerator without the name hash. Debian 12 has no
kustomize that reads these fields (its kubectl is 1.20's, kustomize 2.0.3), so the tests render
here; check_kustomize_parity.py compares this with a real `kubectl kustomize` where one exists.
Anything else in a kustomization is an error, not silently ignored.
Usage: kustomize.py DIR  (prints the objects as YAML)"""
import copy
import pathlib
import sys

import yaml

KNOWN = {"apiVersion", "kind", "resources", "labels", "images", "replicas", "patches",
         "configMapGenerator", "generatorOptions"}
# Strategic merge: lists merged by a key (Kubernetes' patchMergeKey); every other list is replaced.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
              "volumeMounts": "mountPath", "imagePullSecrets": "name"}
PORT_KEYS = {"containerPort", "port"}  # ports merge by containerPort (pods) or port (Services)


class Error(Exception):
    pass


def load_docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def merge(base, patch):
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base)
    for k, v in patch.items():
        if isinstance(k, str) and k.startswith("$"):
            raise Error(f"strategic merge directive {k} is not supported here")
        if v is None:
            out.pop(k, None)
        elif k in out and isinstance(v, list) and isinstance(out[k], list):
            out[k] = merge_list(k, out[k], v)
        else:
            out[k] = merge(out.get(k), v)
    return out


def merge_list(field, base, patch):
    key = MERGE_KEYS.get(field)
    if field == "ports" and patch and isinstance(patch[0], dict):
        key = next((k for k in PORT_KEYS if k in patch[0]), None)
    if key is None:
        return copy.deepcopy(patch)
    # As kustomize orders them: the patch's items first (merged with their base item), then
    # the base's items the patch does not name.
    named = {item.get(key) for item in patch}
    out = []
    for item in patch:
        b = next((b for b in base if b.get(key) == item.get(key)), None)
        out.append(copy.deepcopy(item) if b is None else merge(b, item))
    return out + [copy.deepcopy(b) for b in base if b.get(key) not in named]


def json_patch(doc, ops):
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        if isinstance(parent, list):
            i = len(parent) if last == "-" else int(last)
            if op["op"] == "add":
                parent.insert(i, op["value"])
            elif op["op"] == "replace":
                parent[i] = op["value"]
            elif op["op"] == "remove":
                del parent[i]
            else:
                raise Error(f"JSON patch op {op['op']} is not supported here")
        elif op["op"] in ("add", "replace"):
            parent[last] = op["value"]
        elif op["op"] == "remove":
            del parent[last]
        else:
            raise Error(f"JSON patch op {op['op']} is not supported here")


def matches(doc, target):
    return (not target.get("kind") or doc.get("kind") == target["kind"]) and (
        not target.get("name") or doc["metadata"]["name"] == target["name"])


def apply_patch(docs, folder, p):
    text = (folder / p["path"]).read_text() if "path" in p else p["patch"]
    body = yaml.safe_load(text)
    if isinstance(body, list):  # JSON 6902
        hits = [d for d in docs if matches(d, p.get("target") or {})]
        if not p.get("target") or not hits:
            raise Error(f"{folder}: a JSON patch needs a target that names an object")
        for d in hits:
            json_patch(d, body)
        return
    target = p.get("target") or {"kind": body.get("kind"), "name": body["metadata"]["name"]}
    hits = [i for i, d in enumerate(docs) if matches(d, target)]
    if not hits:
        raise Error(f"{folder}: patch {p.get('path', '(inline)')} matches no object")
    for i in hits:
        docs[i] = merge(docs[i], {k: v for k, v in body.items() if k not in ("apiVersion", "kind")})


def set_images(docs, images):
    for d in docs:
        spec = d.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            name, _, tag = c["image"].partition(":")
            for im in images:
                if im["name"] == name:
                    if "digest" in im:
                        raise Error("images: digest is not supported here")
                    tag = str(im.get("newTag", tag))
                    c["image"] = im.get("newName", name) + (":" + tag if tag else "")


def render(folder):
    folder = pathlib.Path(folder)
    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(k) - KNOWN
    if unknown:
        raise Error(f"{folder}/kustomization.yaml: fields this renderer does not know: {sorted(unknown)}")
    docs = []
    for r in k.get("resources", []):
        path = folder / r
        docs += render(path) if path.is_dir() else load_docs(path)
    hash_off = k.get("generatorOptions", {}).get("disableNameSuffixHash", False)
    for g in k.get("configMapGenerator", []):
        if not hash_off:
            raise Error(f"{folder}: configMapGenerator with a name hash is not supported here")
        data = {pathlib.Path(f).name: (folder / f).read_text() for f in g.get("files", [])}
        meta = {"name": g["name"]}
        if g.get("options", {}).get("labels"):
            meta["labels"] = dict(g["options"]["labels"])
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
    for p in k.get("patches", []):
        apply_patch(docs, folder, p)
    for r in k.get("replicas", []):
        for d in docs:
            if d["metadata"]["name"] == r["name"] and d["kind"] in ("Deployment", "StatefulSet"):
                d["spec"]["replicas"] = r["count"]
    set_images(docs, k.get("images", []))
    for group in k.get("labels", []):
        if group.get("includeSelectors") or group.get("includeTemplates"):
            raise Error(f"{folder}: labels with includeSelectors/includeTemplates are not supported here")
        for d in docs:
            d["metadata"].setdefault("labels", {}).update(group["pairs"])
    return docs


if __name__ == "__main__":
    try:
        yaml.safe_dump_all(render(sys.argv[1]), sys.stdout, sort_keys=False)
    except Error as e:
        sys.exit(f"kustomize.py: {e}")
