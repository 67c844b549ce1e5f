#!/usr/bin/env python3
"""The Grafana dashboard: template variables $namespace, $job and $pod (and the datasource),
every series selector of every panel's query filtered by all three, every range in a query
$__rate_interval (Grafana's window that is never shorter than the scrape interval allows).
Usage: check_dashboard.py deploy/k8s/monitoring/starmesh-dashboard.json"""
import json
import re
import sys

VARS = ("namespace", "job", "pod")


def problems(d):
    out = []
    names = {v["name"] for v in d.get("templating", {}).get("list", [])}
    out += [f"no template variable ${v}" for v in VARS + ("datasource",) if v not in names]
    for v in d.get("templating", {}).get("list", []):
        q = v.get("query", {})
        q = q.get("query", "") if isinstance(q, dict) else q
        # Each variable's values are narrowed by the ones before it.
        for before in VARS[: VARS.index(v["name"])] if v["name"] in VARS else ():
            if f'{before}=~"${before}"' not in q:
                out.append(f"variable ${v['name']} ignores ${before}")
    targets = [(p.get("title"), t["expr"]) for p in d.get("panels", []) for t in p.get("targets", [])]
    if not targets:
        out.append("no panel queries")
    for title, expr in targets:
        for name, labels in re.findall(r"(starmesh_[a-z0-9_]+)(\{[^}]*\})?", expr):
            missing = [v for v in VARS if f'{v}=~"${v}"' not in labels]
            if missing:
                out.append(f"{title}: {name} is not filtered by {', '.join('$' + m for m in missing)}")
        for window in re.findall(r"\[([^\]]+)\]", expr):
            if window != "$__rate_interval":
                out.append(f"{title}: range [{window}] instead of [$__rate_interval]")
    for p in d.get("panels", []):
        if p.get("datasource", {}).get("uid") != "${datasource}":
            out.append(f"{p.get('title')}: datasource is not ${{datasource}}")
    return out, len(targets)


def main():
    found, queries = problems(json.load(open(sys.argv[1])))
    for e in found:
        print("error:", e)
    # The checks themselves: a query without the variables and one with a fixed window.
    bad, _ = problems({"templating": {"list": []}, "panels": [{"title": "t", "targets": [{"expr": "rate(starmesh_x[5m])"}]}]})
    if not (any("not filtered" in b for b in bad) and any("[5m]" in b for b in bad) and any("$pod" in b for b in bad)):
        print("error: the checks miss a broken dashboard:", bad)
        return 1
    print(f"{queries} queries checked: {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
