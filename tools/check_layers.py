#!/usr/bin/env python3
"""Checks DESIGN.md's layering: a library's files include only starmesh headers of the layers
it may depend on (its own included). Exits 1 and lists every include that reaches up.

    python3 tools/check_layers.py [ROOT]
"""
import pathlib
import re
import sys

# layer -> the layers its headers and sources may include (besides its own)
ALLOWED = {
    "core": set(),
    "kernels": set(),
    "backend": {"core", "kernels"},
    "model": {"core", "backend"},
    "attention": {"core", "backend", "model"},
    "service": {"core"},
    "eval": set(),
    "comm": {"core"},
    "metrics": {"core"},
    "runtime": {"core", "backend", "model", "attention", "service", "comm", "metrics"},
    "api": {"core", "service"},
    "http": {"core", "service"},
    "launch": {"core", "backend", "model", "attention", "service", "comm", "metrics", "runtime"},
}
INCLUDE = re.compile(r'#include\s+"starmesh/([a-z_]+)/')


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)
    bad = []
    for layer, allowed in ALLOWED.items():
        folder = root / "libs" / layer if layer != "kernels" else root / "kernels"
        for path in sorted(folder.rglob("*")):
            if path.suffix not in {".hpp", ".cpp", ".cuh", ".cu", ".h"}:
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                m = INCLUDE.search(line)
                if m and m.group(1) != layer and m.group(1) not in allowed:
                    bad.append(f"{path.relative_to(root)}:{n}: {layer} includes {m.group(1)} ({line.strip()})")
    for b in bad:
        print(b)
    print(f"check_layers: {len(bad)} include(s) reaching up" if bad else "check_layers: every include goes down")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
