#!/usr/bin/env bash
# Downloads, here, the Debian 12 packages that a build on the GPU machine needs (it reaches no
# package archive), into .devdata/debs (ignored by git; carried to the machine with
# `carry: [".devdata"]`). bench/run_h200.sh unpacks them into a prefix there.
#   core: the compute core, the CLI's generate and eval, the cross-backend tests
#   mesh: CAF, Cap'n Proto, UCX and their libraries, for the router / worker / client build
# Usage: bash tools/fetch_device_debs.sh [DIR]   (DIR defaults to .devdata/debs)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.devdata/debs}"
core=(
  libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libopenblas0 libgfortran5 libblas3 liblapack3
  libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3
  nlohmann-json3-dev libfmt-dev libfmt9 libspdlog-dev libspdlog1.10 libcli11-dev doctest-dev
)
mesh=(
  libcaf-dev libcaf-core0.17 libcaf-io0.17 libcaf-openssl0.17 libssl-dev
  capnproto libcapnp-dev libcapnp-0.9.2
  libucx-dev libucx0 libnuma1 libibverbs1 librdmacm1 libnl-3-200 libnl-route-3-200
  libssl3 libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libbrotli1 zlib1g-dev
  pkgconf pkgconf-bin libpkgconf3
  # prometheus-cpp (libs/metrics): its CMake package also finds civetweb and curl for the pull
  # and push parts, which we do not link but whose files must be there.
  prometheus-cpp-dev libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libprometheus-cpp-push1.0
  libcivetweb-dev libcivetweb1 civetweb libcurl4-openssl-dev libcurl4
)
mkdir -p "$dir"
cd "$dir"
# apt-get download as root warns that _apt cannot write here; the files are right all the same.
apt-get download "${core[@]}" "${mesh[@]}" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true
missing=0
for p in "${core[@]}" "${mesh[@]}"; do
  ls "${p}"_*.deb >/dev/null 2>&1 || { echo "missing: $p" >&2; missing=1; }
done
[ "$missing" = 0 ] || exit 1
echo "fetch_device_debs: $(ls ./*.deb | wc -l) packages, $(du -sh . | cut -f1) in $dir"
