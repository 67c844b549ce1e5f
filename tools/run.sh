#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: `starmesh demo`, a router and 4
# context workers on 127.0.0.1 finding a fact hidden in a long document with the embedded
# default model (models/starmesh-needle). Extra arguments go to `starmesh demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh
build/bin/starmesh demo "$@"
