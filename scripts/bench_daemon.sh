#!/usr/bin/env bash
# Measures winnowd end to end, through the test broker, against the engine
# alone (`winnow classify`) on the same documents and model, and prints a
# Markdown table (progress goes to stderr):
#
#   scripts/bench_daemon.sh                        the full run, several minutes
#   scripts/bench_daemon.sh --quick                a smoke run, about a minute
#   scripts/bench_daemon.sh --model model/weights/spam.wnn --docs 2000
#
# Documents/s of winnowd: a winnow-broker and a winnowd, started, assigned
# and warmed up, are given the documents as a backlog produced at once; the
# clock runs from the first produce to the last output record in the output
# topic. Latency: the pipeline's (submit to result, from winnowd's
# winnow_document_latency_seconds histogram) during that backlog, and end to
# end (input record timestamp to output record timestamp) in a paced run at
# half the measured rate. winnowd runs with each --max-documents value, so
# that the cost of the consumer's pause/resume flow control shows.
# Target: winnowd at least 90% of the engine's documents/s.
#
# Environment: WINNOW_BUILD_DIR (default build), WINNOW_CACHE (default
# ~/.cache/winnow: the benchmark model is made once under bench/, and the
# SpamAssassin documents are taken from data/spamassassin/docs.jsonl when
# scripts/prepare_data.py has written it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

py=/usr/bin/python3 # Debian's: the only one with zstandard and torch
build=${WINNOW_BUILD_DIR:-build}
cache=${WINNOW_CACHE:-$HOME/.cache/winnow}
model=
docs=1000
corpus=
rounds=2
max_documents=64,1024
partitions=4
paced=10

usage() {
	cat <<EOF
usage: scripts/bench_daemon.sh [--quick] [--model FILE] [--docs N]
                               [--corpus FILE|synthetic] [--rounds K]
                               [--max-documents LIST] [--partitions P]

  --quick              smoke run: 200 documents, 1 round, 4 s paced run
  --model FILE         model (default model/weights/spam.wnn when it exists,
                       else a random model of the default model's shape:
                       6 layers, hidden 192, p = 0.7, combining at layer 3)
  --docs N             documents (default $docs)
  --corpus FILE        JSON lines with "text" (default: the prepared
                       SpamAssassin corpus when present, else synthetic)
  --rounds K           rounds, best kept (default $rounds)
  --max-documents L    winnowd's pipeline.max_documents values (default $max_documents)
  --partitions P       input partitions (default $partitions)
EOF
}

die() {
	echo "bench_daemon: $*" >&2
	exit 1
}

while (($#)); do
	case $1 in
	--quick) docs=200 rounds=1 paced=4 ;;
	--model) model=${2:?--model needs a file}; shift ;;
	--docs) docs=${2:?--docs needs a number}; shift ;;
	--corpus) corpus=${2:?--corpus needs a file}; shift ;;
	--rounds) rounds=${2:?--rounds needs a number}; shift ;;
	--max-documents) max_documents=${2:?--max-documents needs a list}; shift ;;
	--partitions) partitions=${2:?--partitions needs a number}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown option '$1'" ;;
	esac
	shift
done
[[ $docs =~ ^[1-9][0-9]*$ ]] || die "--docs must be a positive integer, got '$docs'"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer, got '$rounds'"
[[ $partitions =~ ^[1-9][0-9]*$ ]] || die "--partitions must be a positive integer"
[[ $max_documents =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--max-documents must be a list like 64,1024"

# shellcheck source=blas_env.sh
source scripts/blas_env.sh

for b in winnowd winnow winnow-broker winnow-kafka-tool; do
	[[ -x $build/$b ]] || die "no $build/$b: build first (cmake -S . -B $build && cmake --build $build -j2)"
done

if [[ -z $model ]]; then
	if [[ -s model/weights/spam.wnn ]]; then
		model=model/weights/spam.wnn
	else
		model=$cache/bench/daemon-default-shape.wnn
		if [[ ! -s $model ]]; then
			echo "bench_daemon: making $model (random weights, the default model's shape)" >&2
			mkdir -p "$cache/bench"
			ckpt=$cache/bench/daemon-default-shape
			"$py" scripts/make_random_checkpoint.py --out "$ckpt" --layers 6 --hidden 192 \
				--heads 4 --label-names ham,spam --max-position 512 --keep-ratio 0.7 \
				--combine-layer 3 --combine-tokens 8 --seed 5 >/dev/null
			"$py" scripts/export_model.py --checkpoint "$ckpt" --out "$model.tmp" \
				--name bench-default-shape --model-version 0 >/dev/null
			mv "$model.tmp" "$model"
		fi
	fi
fi
[[ -s $model ]] || die "no model '$model'"
if [[ -z $corpus ]]; then
	corpus=synthetic
	[[ -s $cache/data/spamassassin/docs.jsonl ]] && corpus=$cache/data/spamassassin/docs.jsonl
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/winnow-bench-daemon.XXXXXX")
# The driver stops every process it starts (by PID) on any exit; the work
# directory goes with this script.
trap 'rm -rf "$work"' EXIT
"$py" tests/e2e/bench_daemon.py --build-dir "$build" --model "$model" \
	--workdir "$work" --corpus "$corpus" --docs "$docs" --rounds "$rounds" \
	--max-documents "$max_documents" --partitions "$partitions" --paced-seconds "$paced"
