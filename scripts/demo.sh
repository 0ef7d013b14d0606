#!/usr/bin/env bash
# winnow demo: installs what is missing, builds, starts the test broker and
# winnowd with the shipped model, produces the sample documents in
# tests/fixtures/samples/ (zstd-compressed, key = file name), and prints the
# labelled records as a table. Stops everything it started, by PID, on exit.
#
# Uses model/weights/spam.wnn; until the trained model ships it falls back to
# a small model with RANDOM weights made on the spot, and says so: its labels
# are then noise.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/setup.sh
source scripts/blas_env.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target winnow winnowd winnow-broker >/dev/null

work=$(mktemp -d /tmp/winnow-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

model=model/weights/spam.wnn
if [[ ! -f $model ]]; then
  model=build/demo/random.wnn
  if [[ ! -f $model ]]; then
    echo "demo: no trained model yet; making a random 2-layer model (labels are noise)" >&2
    /usr/bin/python3 scripts/make_random_checkpoint.py --out build/demo/random \
      --layers 2 --hidden 64 --heads 2 --label-names ham,spam --seed 7 >/dev/null
    /usr/bin/python3 scripts/export_model.py --checkpoint build/demo/random \
      --out "$model" --keep-ratio 0.9 --name random-untrained --model-version 0 >/dev/null
  fi
fi

# The broker: an ephemeral port, its address written to a file.
build/winnow-broker -f "$work/broker.addr" docs:2 labels:2 docs.dlq:1 \
  </dev/null >"$work/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s $work/broker.addr ]] && break; sleep 0.1; done
brokers=$(cat "$work/broker.addr")

cat >"$work/winnowd.yaml" <<YAML
model: $root/$model
kafka:
  brokers: $brokers
  group: winnow-demo
  input: docs
  output: labels
  dead_letter: docs.dlq
  properties:
    session.timeout.ms: "6000"
http:
  listen: ""
explain:
  top_k: 5
shutdown_timeout: 10
YAML
build/winnowd --config "$work/winnowd.yaml" 2>"$work/winnowd.log" &
pids+=($!)

# One message per file: kcat -P given a file sends it whole (on stdin it
# would split the binary zstd frame at newline bytes).
n=0
for f in tests/fixtures/samples/*.txt; do
  z="$work/$(basename "$f").zst"
  /usr/bin/python3 -c 'import sys, zstandard; open(sys.argv[2], "wb").write(zstandard.ZstdCompressor().compress(open(sys.argv[1], "rb").read()))' "$f" "$z"
  kcat -b "$brokers" -t docs -P -k "$(basename "$f")" "$z"
  n=$((n + 1))
done
echo "demo: produced $n documents to 'docs' at $brokers; waiting for winnowd..."

# Read the labelled records back (bounded wait), then print them.
records="$work/records.jsonl"
for _ in $(seq 60); do
  kcat -b "$brokers" -t labels -C -e -q -f '%s\n' >"$records" 2>/dev/null || true
  [[ $(wc -l <"$records") -ge $n ]] && break
  sleep 0.5
done
/usr/bin/python3 - "$records" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
fmt = "{:<18} {:<6} {:>10}  {}"
print(fmt.format("document", "label", "confidence", "top retained tokens"))
for r in sorted(rows, key=lambda r: r["id"]):
    toks = ", ".join(t["token"] for t in r["retained"][:5])
    print(fmt.format(r["id"], r["label"], "%.3f" % r["confidence"], toks))
print(f"({len(rows)} records, model {rows[0]['model'] if rows else '?'})")
PY
