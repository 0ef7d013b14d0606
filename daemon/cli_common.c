/* cli_common.c: helpers shared by the `winnow` subcommands. */
#include "cli_common.h"

#include <cblas.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

winnow_model_t *cli_load_model(const char *path)
{
	char err[512];
	winnow_model_params_t p = winnow_model_default_params();
	winnow_model_t *m = winnow_model_load(path, &p, err, sizeof err);
	if (!m)
		fprintf(stderr, "winnow: %s\n", err);
	return m;
}

#ifndef WINNOW_DEFAULT_MODEL
#define WINNOW_DEFAULT_MODEL "model/weights/spam.wnn"
#endif

const char *cli_default_model(void)
{
	const char *env = getenv("WINNOW_MODEL");
	return env && *env ? env : WINNOW_DEFAULT_MODEL;
}

int cli_read_file(const char *path, char **buf, size_t *cap, size_t *len,
		  size_t max_bytes, char *errstr, size_t errstr_size)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	const char *name = strcmp(path, "-") ? path : "<stdin>";
	int ret = -1;
	if (!f) {
		snprintf(errstr, errstr_size, "cannot open '%s': %s", name,
			 strerror(errno));
		return -1;
	}
	*len = 0;
	for (;;) {
		if (*cap - *len < 65536) {
			size_t ncap = *cap ? *cap * 2 : 1 << 20;
			char *nb = realloc(*buf, ncap);
			if (!nb) {
				snprintf(errstr, errstr_size, "cannot read '%s': out of memory", name);
				goto out_close;
			}
			*buf = nb;
			*cap = ncap;
		}
		size_t got = fread(*buf + *len, 1, *cap - *len, f);
		*len += got;
		if (*len > max_bytes) {
			snprintf(errstr, errstr_size,
				 "cannot read '%s': larger than the limit of %zu bytes",
				 name, max_bytes);
			goto out_close;
		}
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		snprintf(errstr, errstr_size, "cannot read '%s': %s", name,
			 strerror(errno));
		goto out_close;
	}
	ret = 0;
out_close:
	if (f != stdin)
		fclose(f);
	return ret;
}

unsigned cli_parse_uint(const char *opt, const char *value, unsigned min,
			unsigned max)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(value, &end, 10);
	if (errno || end == value || *end || value[0] == '-' || v < min || v > max) {
		fprintf(stderr, "winnow: option '%s' takes an integer in %u..%u, not '%s'\n",
			opt, min, max, value);
		exit(2);
	}
	return (unsigned)v;
}

unsigned cli_engine_threads(void)
{
	const char *env = getenv("WINNOW_THREADS");
	if (env && *env)
		return cli_parse_uint("$WINNOW_THREADS", env, 1, WINNOW_CTX_MAX_THREADS);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return n > WINNOW_CTX_MAX_THREADS ? WINNOW_CTX_MAX_THREADS : (unsigned)n;
}

void cli_print_blas(FILE *f)
{
	fprintf(f, "blas: OpenBLAS core %s, %d threads (%s)\n",
		openblas_get_corename(), openblas_get_num_threads(),
		openblas_get_config());
}
