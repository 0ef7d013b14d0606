/*
 * winnow_cli.c: the `winnow` command-line tool.
 *
 *   winnow classify [--model FILE] [--top-k N] [TEXTFILE...]
 *   winnow tokenize (--model FILE | --vocab FILE)
 *   winnow inspect  [--model FILE]
 *   winnow logits   --model FILE [--batch N]
 *   winnow bench    --model FILE [--seq-len N] [--batch N] [--repeat N] ...
 *   winnow bench    --tokenizer (--model FILE | --vocab FILE) FILE...
 *
 * Each subcommand is a function taking argc/argv after the subcommand name;
 * all of them report errors on stderr as "winnow: ..." and return an exit
 * code (0 ok, 1 a document or input failed, 2 usage or setup error).
 */
#include "winnow_model.h"
#include "cli_common.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fputs("usage: winnow <command> [options]\n"
	      "\n"
	      "commands:\n"
	      "  classify [--model FILE] [--top-k N] [--batch N] [--threads N] [TEXTFILE...]\n"
	      "                         classify each file (stdin when none) as one document;\n"
	      "                         one JSON object per document, the daemon's schema;\n"
	      "                         the model defaults to $WINNOW_MODEL, else the shipped\n"
	      "                         model/weights/spam.wnn\n"
	      "  tokenize (--model FILE | --vocab FILE)\n"
	      "                         token ids of each stdin line, with [CLS]/[SEP]\n"
	      "  inspect [--model FILE] the model's configuration, kernels and BLAS in use\n"
	      "  logits --model FILE [--batch N]\n"
	      "                         raw logits of windows given as lines of token ids\n"
	      "  bench --model FILE [--seq-len N] [--batch N] [--repeat N] [--warmup N]\n"
	      "        [--threads N | --workers N] [--json] [--gemm]\n"
	      "                         time the engine; --gemm also times OpenBLAS alone\n"
	      "                         on the same GEMM shapes\n"
	      "  bench --tokenizer (--model FILE | --vocab FILE) [--repeat N] TEXTFILE...\n"
	      "                         tokenizer throughput in MB/s on one core\n"
	      "\n"
	      "  bench --peak [--threads N]\n"
	      "                         the FP32 FMA rate of N threads\n"
	      "\n"
	      "The engine runs on --threads threads (default $WINNOW_THREADS, else the\n"
	      "online CPUs). Set OPENBLAS_CORETYPE for the machine (scripts do); `winnow\n"
	      "inspect` shows the kernels and the core OpenBLAS chose.\n", f);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	argc--, argv++;
	if (!strcmp(cmd, "classify"))
		return cli_classify(argc, argv);
	if (!strcmp(cmd, "tokenize"))
		return cli_tokenize(argc, argv);
	if (!strcmp(cmd, "inspect"))
		return cli_inspect(argc, argv);
	if (!strcmp(cmd, "logits"))
		return cli_logits(argc, argv);
	if (!strcmp(cmd, "bench"))
		return cli_bench(argc, argv);
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "winnow: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
