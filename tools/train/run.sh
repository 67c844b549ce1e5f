#!/usr/bin/env bash
# Everything in one command, on a machine with a CUDA GPU and PyTorch + transformers +
# tokenizers + safetensors + matplotlib: builds the tokenizer, trains starmesh-needle for
# TRAIN_SECONDS (default 420) of wall-clock time, exports it (bf16 safetensors, config.json,
# tokenizer.json) and evaluates it (global attention and simulated Star Attention) into DIR:
#
#     bash tools/train/run.sh DIR        (DIR defaults to $OUT, else /tmp/starmesh-needle)
#
# DIR ends with 8 files: config.json model.safetensors tokenizer.json tokenizer_config.json
# train.json (settings + loss curve) loss.png eval.json log.txt.
# TRAIN_ARGS / EVAL_ARGS pass extra flags to train.py / star_eval.py.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-${OUT:-/tmp/starmesh-needle}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
{
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  python3 -c 'import torch, transformers, tokenizers; print("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers", tokenizers.__version__)'
  # shellcheck disable=SC2086
  python3 "$here/train.py" --out "$out" --train-seconds "${TRAIN_SECONDS:-420}" ${TRAIN_ARGS:-}
  # shellcheck disable=SC2086
  python3 "$here/star_eval.py" --model "$out" --out "$out/eval.json" ${EVAL_ARGS:-}
} 2>&1 | tee "$out/log.txt"
