#!/usr/bin/env bash
# Exports the tiny random model the C tests share into DIR/tiny.wnn: 2 layers,
# hidden 32, real vocabulary, max_seq_len 64 (so documents span windows),
# pruning at p = 0.8 so that retained tokens are exercised.
set -euo pipefail
dir=$1
root=$(cd "$(dirname "$0")/.." && pwd)
[[ -s $dir/tiny.wnn ]] && exit 0
mkdir -p "$dir"
/usr/bin/python3 "$root/scripts/make_random_checkpoint.py" --out "$dir/tiny" \
  --layers 2 --hidden 32 --heads 2 --label-names ham,spam --max-position 64 \
  --seed 11 >/dev/null
/usr/bin/python3 "$root/scripts/export_model.py" --checkpoint "$dir/tiny" \
  --out "$dir/tiny.wnn.tmp" --keep-ratio 0.8 --name tiny --model-version 0 >/dev/null
mv "$dir/tiny.wnn.tmp" "$dir/tiny.wnn"
