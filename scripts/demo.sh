#!/usr/bin/env bash
# winnow demo: installs what is missing, builds, starts the test broker and
# winnowd with the shipped model, produces the sample documents in
# tests/fixtures/samples/ (zstd-compressed, key = file name), and prints the
# labelled records as a table. Stops everything it started, by PID, on exit.
#
# The model is model/weights/spam.wnn (docs/models.md), or $WINNOW_MODEL.
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

model=${WINNOW_MODEL:-model/weights/spam.wnn}
if [[ ! -f $model ]]; then
  echo "demo: no model at '$model' (scripts/build_default_model.sh trains one)" >&2
  exit 1
fi
[[ $model == /* ]] || model=$root/$model

# The broker: an ephemeral port, its address written to a file.
build/winnow-broker -f "$work/broker.addr" docs:2 labels:2 docs.dlq:1 \
  </dev/null >"$work/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s $work/broker.addr ]] && break; sleep 0.1; done
brokers=$(cat "$work/broker.addr")

cat >"$work/winnowd.yaml" <<YAML
model: $model
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
/usr/bin/python3 - "$records" tests/fixtures/samples <<'PY'
import json, os, re, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
fmt = "{:<18} {:<6} {:>10}  {}"
print(fmt.format("document", "label", "confidence", "top retained tokens"))
for r in sorted(rows, key=lambda r: r["id"]):
    toks = ", ".join(t["token"] for t in r["retained"][:5])
    print(fmt.format(r["id"], r["label"], "%.3f" % r["confidence"], toks))
print(f"({len(rows)} records, model {rows[0]['model'] if rows else '?'})")

# A retained token is a pointer into the document (its byte span): the
# words around it say more than the WordPiece alone.
print("\nthe top 3 retained tokens in their text:")
for r in sorted(rows, key=lambda r: r["id"]):
    text = open(os.path.join(sys.argv[2], r["id"]), "rb").read()
    print(f"  {r['id']} ({r['label']})")
    for t in r["retained"][:3]:
        a, b = t["start"], t["end"]
        before = re.sub(rb"\s+", b" ", text[max(0, a - 24):a]).decode("utf-8", "replace")
        after = re.sub(rb"\s+", b" ", text[b:b + 24]).decode("utf-8", "replace")
        word = text[a:b].decode("utf-8", "replace")
        print(f"    {t['score']:.3f}  ...{before}[{word}]{after}...")
PY
