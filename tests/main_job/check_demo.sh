#!/usr/bin/env bash
# The README's main job exactly as tools/run.sh runs it (`starmesh demo`, no flags: 4 workers,
# the embedded default model, device `auto`), on the binary given: it must exit 0, having
# found the hidden fact in both answers and agreed with the single-process engine (the demo
# checks both itself and exits 1 otherwise; the lines are checked here too, so that a demo
# that stopped checking fails this).
set -uo pipefail
starmesh="$1"
out="$("$starmesh" demo 2>&1)"
code=$?
fail() {
  printf '%s\n--- demo output ---\n%s\n' "$1" "$out"
  exit 1
}
[ "$code" -eq 0 ] || fail "starmesh demo exited with $code"
[ "$(grep -c '^check: the hidden answer is .*, correct$' <<<"$out")" -eq 2 ] || fail "not two correct answers"
grep -q 'gives the same tokens for both questions' <<<"$out" || fail "no agreement with the single-process engine"
if grep -q 'WRONG' <<<"$out"; then fail "a wrong answer"; fi
echo "starmesh demo: both answers correct, equal to the single-process engine"
