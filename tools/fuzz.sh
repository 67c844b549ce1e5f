#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) into build-fuzz/ and runs each for
# FUZZ_SECONDS (default 20) from its seeds; a crash fails the script and leaves the input in
# build-fuzz/crashes/. The corpus grows in build-fuzz/corpus/<target>/ across runs.
#   bash tools/fuzz.sh                   # every target, briefly (what CI runs)
#   FUZZ_SECONDS=600 bash tools/fuzz.sh fuzz_api   # one target, a long run
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-20}"
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(fuzz_tokenizer fuzz_safetensors fuzz_llama_config fuzz_request fuzz_api)
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}" CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
out=build-fuzz
# -Og -g1 as in test_sanitizers.sh: the sanitizers' compile time, not their findings, shrinks.
CC=clang CXX=clang++ cmake -S . -B "$out" -G Ninja -DSTARMESH_CUDA=OFF -DSTARMESH_TESTS=OFF -DSTARMESH_FUZZ=ON \
  -DSTARMESH_SANITIZE=address,undefined,fuzzer-no-link -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-Og -g1 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-Og -g1 -DNDEBUG" >/dev/null
cmake --build "$out" -j"$(nproc)" --target "${targets[@]}" make_api_seeds

# Seeds: the files real inputs look like, and recorded API sessions.
seeds="$out/seeds"
mkdir -p "$seeds"/{fuzz_tokenizer,fuzz_safetensors,fuzz_llama_config,fuzz_request,fuzz_api}
for m in models/starmesh-tiny models/starmesh-needle; do
  n="$(basename "$m")"
  printf '\0' | cat - "$m/tokenizer.json" >"$seeds/fuzz_tokenizer/$n"
  cp "$m/config.json" "$seeds/fuzz_llama_config/$n"
  # The header and a slice of the data section of a real checkpoint.
  st="$(ls "$m"/*.safetensors | head -1)"
  head -c 65536 "$st" >"$seeds/fuzz_safetensors/$n"
done
python3 - "$seeds/fuzz_safetensors/small" <<'PY'
import json, struct, sys
header = json.dumps({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},
                     "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}, "__metadata__": {"format": "pt"}})
open(sys.argv[1], "wb").write(struct.pack("<Q", len(header)) + header.encode() + bytes(range(20)))
PY
printf '\1Hello <|begin_of_text|> world 123 \xc3\xa9' >"$seeds/fuzz_tokenizer/text"
printf '\0\0\0\0\0\0\0\x40{"mode":"star","block_size":64}What is the capital of France?' >"$seeds/fuzz_request/basic"
[ -n "$(ls -A "$seeds/fuzz_api")" ] || "$out/bin/make_api_seeds" "$seeds/fuzz_api" >/dev/null

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$PWD/tools/sanitizers/ubsan.supp"
mkdir -p "$out/crashes" "$out/logs"
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$out/corpus/$t"
  # -rss_limit_mb: an input that makes the process grow past 2 GB is a finding (an unbounded
  # allocation), as is one that takes over 10 s.
  if "$out/bin/$t" "$out/corpus/$t" "$seeds/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -max_len=65536 -artifact_prefix="$out/crashes/$t-" -print_final_stats=1 >"$out/logs/$t.log" 2>&1; then
    echo "$t: $(grep -E '^stat::number_of_executed_units' "$out/logs/$t.log" | awk '{print $2}') runs, $(grep -oE 'cov: [0-9]+' "$out/logs/$t.log" | tail -1), no crash"
  else
    echo "$t: FAILED (see $out/logs/$t.log and $out/crashes/)"
    tail -40 "$out/logs/$t.log"
    failed=1
  fi
done
exit "$failed"
