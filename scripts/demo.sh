#!/usr/bin/env bash
# winnow demo: installs what is missing, builds, and classifies the sample
# documents in tests/fixtures/samples/ with `winnow classify`, printing one
# line per document (label, confidence, tokens, windows).
#
# Until the daemon and the trained default model exist (see the issues),
# this uses model/weights/spam.wnn when it is there, and otherwise a small
# model with RANDOM weights made on the spot: its labels are then noise,
# which the output says.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/setup.sh
source scripts/blas_env.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target winnow >/dev/null

model=model/weights/spam.wnn
if [[ ! -f $model ]]; then
  model=build/demo/random.wnn
  if [[ ! -f $model ]]; then
    echo "demo: no trained model yet; making a random 2-layer model (labels are noise)" >&2
    /usr/bin/python3 scripts/make_random_checkpoint.py --out build/demo/random \
      --layers 2 --hidden 64 --heads 2 --label-names ham,spam --seed 7 >/dev/null
    /usr/bin/python3 scripts/export_model.py --checkpoint build/demo/random \
      --out "$model" --name random-untrained --model-version 0 >/dev/null
  fi
fi

build/winnow inspect --model "$model" | head -1
echo
build/winnow classify --model "$model" tests/fixtures/samples/*.txt |
  /usr/bin/python3 -c '
import json, os, sys
row = "{:<22} {:<6} {:>10} {:>7} {:>8}"
print(row.format("document", "label", "confidence", "tokens", "windows"))
for line in sys.stdin:
    r = json.loads(line)
    print(row.format(os.path.basename(r["id"]), r["label"],
                     "%.3f" % r["confidence"], r["tokens"], r["chunks"]))
'
