#!/usr/bin/env bash
# The results table of docs/results.md: fine-tunes and evaluates every
# (task, variant, seed), seed by seed, and rebuilds the page.
#
#   scripts/run_table.sh                          everything: 3 tasks x 11 variants x 3 seeds
#   scripts/run_table.sh --seeds 1 --tasks spam2  a part of it
#   scripts/run_table.sh --page-only              only rebuild the page from what is done
#
# Each run is trained (scripts/train.py: the task's epochs and learning
# rate, at most its --minutes of training time; scripts/winnow_train/tasks.py) and evaluated at once (scripts/evaluate.py through the C
# engine), which archives its numbers in docs/results/runs/TASK/VARIANT/
# seedS.json; a run whose numbers are archived already is skipped, so the
# table can be filled over several sessions and machines (commit the
# archive as it grows). All runs start from one pretrained encoder
# (--encoder, default scripts/encoder/, committed with its provenance); each
# archived entry records its sha256, and evaluate.py refuses to put runs of
# different encoders in one table. The page is rebuilt at the end, whole
# whatever part was trained: accuracy and F1 from every archived run of
# every task and seed, and throughput: each run's speed-up over the
# task's speed reference (plain BERT), measured side by side with it as
# the run is evaluated and archived with it (evaluate.py).
#
# Cost on 2 cores (Zen 4, docs/training.md): a spam task is about 4.5 hours
# a seed for the 11 variants and the page, Brown about as much: a whole
# table is about 40 hours, many sessions, hence the archive. The runs of
# the default build (scripts/build_default_model.sh: spam2 bert,
# ours-PFC-P3 and ours-PFC-P2, seed 1) are the table's own, same settings.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=/usr/bin/python3

seeds=1,2,3 tasks_sel=all variants_sel=table epochs= minutes= page_only=0
encoder=scripts/encoder # the table's, committed: a lost cache cannot end the table
results=docs/results.md
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; cat <<USAGE
options:
  --seeds LIST      seeds (default 1,2,3)
  --tasks LIST      tasks (default all: spam2, spam3, brown)
  --variants LIST   variants (default: the table's, winnow_train/tasks.py)
  --epochs N        fine-tuning epochs of each run (default: the task's,
                    tasks.py: 3 for spam, as the shipped model's; 8 for brown)
  --minutes M       compute-time cap of each run (CPU time over its
                    threads; default: the task's, 45 for spam, 90 for brown)
  --encoder DIR     the pretrained encoder (default scripts/encoder, the
                    table's; RUNS/pretrain/encoder is scripts/pretrain.py's)
  --page-only       skip training; rebuild the page from what is done
  --results FILE    the page (default docs/results.md)
USAGE
}
while (($#)); do
	case $1 in
	--seeds) seeds=$2; shift ;;
	--tasks) tasks_sel=$2; shift ;;
	--variants) variants_sel=$2; shift ;;
	--epochs) epochs=$2; shift ;;
	--minutes) minutes=$2; shift ;;
	--encoder) encoder=$2; shift ;;
	--page-only) page_only=1 ;;
	--results) results=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run_table: unknown option '$1' (--help)" >&2; exit 2 ;;
	esac
	shift
done

source scripts/blas_env.sh
archive=${WINNOW_ARCHIVE:-docs/results/runs} # as scripts/winnow_train/paths.py
expand() { # expand tasks|variants SELECTION -> space-separated names
	(cd scripts && $py -c "
import sys
from winnow_train import tasks
kind, sel = sys.argv[1], sys.argv[2]
known = tasks.TASKS if kind == 'tasks' else tasks.VARIANTS
if sel == 'table':
    names = list(tasks.TABLE_VARIANTS)
else:
    names = tasks.parse_list(sel, known, kind[:-1])
print(' '.join(names))" "$1" "$2")
}
task_minutes() { # the table's compute-time cap of a run of task $1
	(cd scripts && $py -c "
import sys
from winnow_train import tasks
print(tasks.TASKS[sys.argv[1]].max_minutes)" "$1")
}
task_list=$(expand tasks "$tasks_sel")
variant_list=$(expand variants "$variants_sel")

if ((!page_only)); then
	# Hours of training from an encoder the archive's runs do not share
	# would end in a table evaluate.py refuses: say so before the first run.
	PYTHONPATH=scripts $py -c "
import os, sys
from winnow_train import archive, paths
enc = sys.argv[1]
sha = archive.encoder_sha256(enc)
if sha is None:
    sys.exit(f\"run_table: no pretrained encoder in '{enc}' (scripts/pretrain.py)\")
conflict = archive.archive_encoder_conflict(paths.ARCHIVE, sha)
if conflict:
    sys.exit(f'run_table: {conflict}')
print(f'== encoder {sha[:12]}', file=sys.stderr)" "$encoder"
	total=0 k=0
	for s in ${seeds//,/ }; do for t in $task_list; do for v in $variant_list; do
		total=$((total + 1))
	done; done; done
	for s in ${seeds//,/ }; do
		for t in $task_list; do
			for v in $variant_list; do
				k=$((k + 1))
				if [[ -f $archive/$t/$v/seed$s.json ]]; then
					echo "== run $k/$total: $t/$v/seed$s: archived, skipped" >&2
					continue
				fi
				echo "== run $k/$total: $t/$v/seed$s ($(date +%H:%M))" >&2
				recipe=(--max-minutes "${minutes:-$(task_minutes "$t")}")
				[[ -z $epochs ]] || recipe+=(--epochs "$epochs")
				$py scripts/train.py --task "$t" --variant "$v" --seed "$s" \
					"${recipe[@]}" --encoder "$encoder"
				$py scripts/evaluate.py --task "$t" --variant "$v" --seed "$s" \
					--encoder "$encoder" --markdown ''
			done
		done
	done
fi

# The page is the whole table, not this invocation's part of it (a page
# of one task would drop the others' tables until the next full rebuild).
page_variants=$(expand variants table)
for v in $variant_list; do
	[[ " $page_variants " == *" $v "* ]] || page_variants+=" $v"
done
echo "== the page ($(date +%H:%M))" >&2
$py scripts/evaluate.py --task all --variant "${page_variants// /,}" \
	--seed 1,2,3 --speed-repeats 0 --reuse-archive --markdown "$results"
