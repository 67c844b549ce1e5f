#!/usr/bin/env bash
# Asks starmesh's C++ engine (single process, CPU) the needle questions of tasks.py and
# counts exact answers: one block (= global attention), Star Attention on 4 hosts with
# blocks of 1/4 and 1/16 of the context (anchor = block), and 1/16 without anchor.
#     bash tools/train/cpp_check.sh [N] [TOKENS] [SEED]     (defaults 12 2048 2026)
# Needs build/bin/starmesh and python3 (no other package); MODEL and BIN override the paths.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
n=${1:-12} tokens=${2:-2048} seed=${3:-2026}
model=${MODEL:-$root/models/starmesh-needle} bin=${BIN:-$root/build/bin/starmesh}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$root/tools/train/tasks.py" --task niah_single --tokens "$tokens" --n "$n" --seed "$seed" | python3 -c "
import json, sys
for i, l in enumerate(sys.stdin):
    d = json.loads(l)
    for ext in ('context', 'query', 'answer'):
        open(f'$tmp/{i}.{ext}', 'w').write(d[ext])
"
declare -A ok=([global]=0 [star4]=0 [star16]=0 [noanchor16]=0)
ask() { "$bin" generate --model "$model" --context-file "$tmp/$1.context" --query "$(cat "$tmp/$1.query")" \
          --max-tokens 16 --mode star "${@:2}" 2>"$tmp/err"; }
for ((i = 0; i < n; i++)); do
  a=$(cat "$tmp/$i.answer")
  if [ "$(ask $i --hosts 1 --block-size 1000000 | xargs)" = "$a" ]; then ok[global]=$((ok[global] + 1)); fi
  L=$(grep -o 'context [0-9]* tokens' "$tmp/err" | head -1 | awk '{print $2}' || true)
  if [ -z "$L" ]; then echo "instance $i: the engine failed: $(tail -1 "$tmp/err")" >&2; exit 1; fi
  for k in 4 16; do
    if [ "$(ask $i --hosts 4 --block-size $(((L + k - 1) / k)) | xargs)" = "$a" ]; then ok[star$k]=$((ok[star$k] + 1)); fi
  done
  if [ "$(ask $i --hosts 4 --block-size $(((L + 15) / 16)) --no-anchor | xargs)" = "$a" ]; then ok[noanchor16]=$((ok[noanchor16] + 1)); fi
done
for m in global star4 star16 noanchor16; do echo "$m ${ok[$m]}/$n"; done
