#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: generation with the embedded
# default model (models/starmesh-tiny) on the CPU backend. Extra arguments go to
# `starmesh generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh
if [ "$#" -eq 0 ]; then set -- --prompt "Star Attention splits a long context into blocks" --max-tokens 48; fi
build/bin/starmesh generate "$@"
