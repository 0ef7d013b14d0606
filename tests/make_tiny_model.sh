#!/usr/bin/env bash
# Exports the tiny random models the C tests share: DIR/tiny.wnn, 2 layers,
# hidden 32, real vocabulary, max_seq_len 64 (so documents span windows),
# pruning at p = 0.8 so that retained tokens are exercised; and
# DIR/tiny-pfc.wnn, 3 layers with pruning and the combining module at
# layer 2 (m = 4), so that threaded tests cover every step of the method.
set -euo pipefail
dir=$1
root=$(cd "$(dirname "$0")/.." && pwd)
[[ -s $dir/tiny.wnn && -s $dir/tiny-pfc.wnn ]] && exit 0
mkdir -p "$dir"
/usr/bin/python3 "$root/scripts/make_random_checkpoint.py" --out "$dir/tiny" \
  --layers 2 --hidden 32 --heads 2 --label-names ham,spam --max-position 64 \
  --seed 11 >/dev/null
/usr/bin/python3 "$root/scripts/export_model.py" --checkpoint "$dir/tiny" \
  --out "$dir/tiny.wnn.tmp" --keep-ratio 0.8 --name tiny --model-version 0 >/dev/null
mv "$dir/tiny.wnn.tmp" "$dir/tiny.wnn"
/usr/bin/python3 "$root/scripts/make_random_checkpoint.py" --out "$dir/tiny-pfc" \
  --layers 3 --hidden 32 --heads 2 --label-names ham,spam --max-position 64 \
  --combine-layer 2 --combine-tokens 4 --seed 12 >/dev/null
/usr/bin/python3 "$root/scripts/export_model.py" --checkpoint "$dir/tiny-pfc" \
  --out "$dir/tiny-pfc.wnn.tmp" --keep-ratio 0.7 --combine-layer 2 --combine-tokens 4 \
  --name tiny-pfc --model-version 0 >/dev/null
mv "$dir/tiny-pfc.wnn.tmp" "$dir/tiny-pfc.wnn"
