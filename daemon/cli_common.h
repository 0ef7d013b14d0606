/*
 * cli_common.h: the subcommands of the `winnow` tool and what they share.
 */
#ifndef WINNOW_CLI_COMMON_H
#define WINNOW_CLI_COMMON_H

#include "winnow_model.h"

#include <stddef.h>
#include <stdio.h>

int cli_classify(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_inspect(int argc, char **argv);
int cli_logits(int argc, char **argv);
int cli_bench(int argc, char **argv);

/* Loads a model, printing "winnow: <reason>" on failure. */
winnow_model_t *cli_load_model(const char *path);

/*
 * The model of `classify` and `inspect` without --model: $WINNOW_MODEL, else
 * the shipped model/weights/spam.wnn of the source tree winnow was built from.
 */
const char *cli_default_model(void);

/*
 * Reads a whole file (path "-" = stdin) into *buf (grown with realloc; *cap
 * is its size) and sets *len. Refuses files over max_bytes. 0 on success,
 * else -1 with the reason in errstr.
 */
int cli_read_file(const char *path, char **buf, size_t *cap, size_t *len,
		  size_t max_bytes, char *errstr, size_t errstr_size);

/* Parses a positive integer option value, or exits with a usage error. */
unsigned cli_parse_uint(const char *opt, const char *value, unsigned min,
			unsigned max);

/* Prints the OpenBLAS core, thread count and build, for inspect and bench. */
void cli_print_blas(FILE *f);

/*
 * The engine threads of a command without --threads: $WINNOW_THREADS, else
 * the online CPUs (at most WINNOW_CTX_MAX_THREADS).
 */
unsigned cli_engine_threads(void);

#endif /* WINNOW_CLI_COMMON_H */
