/*
 * cli_bench.c: winnow bench, the engine's and the tokenizer's timings.
 *
 * Engine: a batch of synthetic windows (random ids, fixed seed) or the
 * windows of given documents, warm-up runs, then repeats; prints median and
 * p90 latency and throughput. With --gemm it also reports the rate the
 * engine's sgemm calls reach inside a forward pass against the rate OpenBLAS
 * reaches alone on exactly the same GEMM shapes, so a slow engine can be told
 * from a slow BLAS.
 */
#include "cli_common.h"

#include <cblas.h>
#include <getopt.h>
#include <immintrin.h>
#include <pthread.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of n sorted values, nearest rank. */
static double quantile(const double *sorted, size_t n, double q)
{
	size_t i = (size_t)ceil(q * (double)n);
	return sorted[i ? i - 1 : 0];
}

/* ---- OpenBLAS alone on the engine's GEMM shapes --------------------------- */

typedef struct {
	int trans_b;
	size_t m, n, k, lda, ldb, ldc;
	size_t count; /* how often a forward pass makes this call */
} gemm_shape_t;

/*
 * The sgemm calls of one dense forward over `windows` windows of `len`
 * tokens, as model/encoder.c makes them (per layer: QKV, scores, context,
 * output projection, up, down).
 */
static size_t forward_shapes(const winnow_model_config_t *c, size_t windows,
			     size_t len, gemm_shape_t *s)
{
	size_t T = windows * len, d = c->hidden_size, inter = c->intermediate_size;
	size_t dh = d / c->num_heads, L = c->num_layers, hw = windows * c->num_heads;
	gemm_shape_t list[] = {
		{ 1, T, 3 * d, d, d, d, 3 * d, L },
		{ 1, len, len, dh, 3 * d, 3 * d, len, L * hw },
		{ 0, len, dh, len, len, 3 * d, d, L * hw },
		{ 1, T, d, d, d, d, d, L },
		{ 1, T, inter, d, d, d, inter, L },
		{ 1, T, d, inter, inter, inter, d, L },
	};
	memcpy(s, list, sizeof list);
	return sizeof list / sizeof list[0];
}

static double shapes_flops(const gemm_shape_t *s, size_t n)
{
	double f = 0;
	for (size_t i = 0; i < n; i++)
		f += 2.0 * (double)s[i].m * (double)s[i].n * (double)s[i].k *
		     (double)s[i].count;
	return f;
}

/* Median seconds OpenBLAS alone takes for one forward's worth of GEMMs. */
static double time_gemms_alone(const gemm_shape_t *s, size_t ns, unsigned repeat)
{
	size_t amax = 0, bmax = 0, cmax = 0;
	for (size_t i = 0; i < ns; i++) {
		size_t a = s[i].m * s[i].lda, c = s[i].m * s[i].ldc;
		size_t b = (s[i].trans_b ? s[i].n : s[i].k) * s[i].ldb;
		amax = a > amax ? a : amax;
		bmax = b > bmax ? b : bmax;
		cmax = c > cmax ? c : cmax;
	}
	float *A = calloc(amax, sizeof *A), *B = calloc(bmax, sizeof *B);
	float *C = calloc(cmax, sizeof *C);
	double *times = calloc(repeat + 1, sizeof *times), median = NAN;
	if (!A || !B || !C || !times)
		goto out_free;
	for (size_t i = 0; i < amax; i++)
		A[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
	for (size_t i = 0; i < bmax; i++)
		B[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
	for (unsigned r = 0; r <= repeat; r++) { /* run 0 warms up */
		double t0 = now_s();
		for (size_t i = 0; i < ns; i++)
			for (size_t k = 0; k < s[i].count; k++)
				cblas_sgemm(CblasRowMajor, CblasNoTrans,
					    s[i].trans_b ? CblasTrans : CblasNoTrans,
					    (int)s[i].m, (int)s[i].n, (int)s[i].k,
					    1.0f, A, (int)s[i].lda, B, (int)s[i].ldb,
					    0.0f, C, (int)s[i].ldc);
		times[r] = now_s() - t0;
	}
	qsort(times + 1, repeat, sizeof *times, cmp_double);
	median = quantile(times + 1, repeat, 0.5);
out_free:
	free(times);
	free(C);
	free(B);
	free(A);
	return median;
}

/* ---- FMA peak ------------------------------------------------------------------ */

/*
 * The machine's single-precision FMA rate: independent accumulators, no
 * memory traffic, one loop per thread, all threads at once. It bounds what
 * any GEMM (OpenBLAS's, torch's, a custom one) can reach here, so the
 * sgemm rates of --gemm can be read as a fraction of it.
 */
#define PEAK_ACC 12

/* Twelve named accumulators, not an array: GCC keeps an array of vectors on
 * the stack at -O2, and the loop would time loads and stores instead. */
#define PEAK_BODY(fma)                                                      \
	do {                                                                \
		a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); \
		a3 = fma(a3, m, c); a4 = fma(a4, m, c); a5 = fma(a5, m, c); \
		a6 = fma(a6, m, c); a7 = fma(a7, m, c); a8 = fma(a8, m, c); \
		a9 = fma(a9, m, c); a10 = fma(a10, m, c); a11 = fma(a11, m, c); \
	} while (0)

__attribute__((target("avx512f"))) static float fma_loop_avx512(uint64_t iters)
{
	__m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
	__m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2),
	       a3 = _mm512_set1_ps(3), a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5),
	       a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7), a8 = _mm512_set1_ps(8),
	       a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
	for (uint64_t i = 0; i < iters; i++)
		PEAK_BODY(_mm512_fmadd_ps);
	__m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
				 _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
	s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
	return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_loop_avx2(uint64_t iters)
{
	__m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
	__m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2),
	       a3 = _mm256_set1_ps(3), a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5),
	       a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7), a8 = _mm256_set1_ps(8),
	       a9 = _mm256_set1_ps(9), a10 = _mm256_set1_ps(10), a11 = _mm256_set1_ps(11);
	for (uint64_t i = 0; i < iters; i++)
		PEAK_BODY(_mm256_fmadd_ps);
	__m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
				 _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
	s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
	float out[8];
	_mm256_storeu_ps(out, s);
	return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

typedef struct {
	int avx512;
	uint64_t iters;
	float sink;
} peak_job_t;

static void *peak_thread(void *arg)
{
	peak_job_t *j = arg;
	j->sink = j->avx512 ? fma_loop_avx512(j->iters) : fma_loop_avx2(j->iters);
	return NULL;
}

static int bench_peak(unsigned threads, unsigned repeat, int json)
{
	int avx512 = __builtin_cpu_supports("avx512f");
	if (!avx512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
		fputs("winnow: bench --peak needs AVX2 and FMA or AVX-512\n", stderr);
		return 2;
	}
	double lanes = avx512 ? 16 : 8, best = 0;
	peak_job_t jobs[64];
	pthread_t t[64];
	for (unsigned r = 0; r < repeat + 1; r++) {
		for (unsigned i = 0; i < threads; i++)
			jobs[i] = (peak_job_t){ .avx512 = avx512, .iters = 20u * 1000 * 1000 };
		double t0 = now_s();
		for (unsigned i = 1; i < threads; i++)
			pthread_create(&t[i], NULL, peak_thread, &jobs[i]);
		peak_thread(&jobs[0]);
		for (unsigned i = 1; i < threads; i++)
			pthread_join(t[i], NULL);
		double flops = 2.0 * lanes * PEAK_ACC * (double)jobs[0].iters * threads;
		double rate = flops / (now_s() - t0) * 1e-9;
		if (r && rate > best) /* the first round warms the clocks up */
			best = rate;
	}
	if (json)
		printf("{\"threads\": %u, \"isa\": \"%s\", \"peak_gflops\": %.1f}\n", threads,
		       avx512 ? "avx512" : "avx2", best);
	else
		printf("peak: %.1f GFLOP/s single-precision FMA, %s, %u thread(s) at once (best of %u)\n",
		       best, avx512 ? "AVX-512" : "AVX2", threads, repeat);
	return 0;
}

/* ---- engine --------------------------------------------------------------- */

typedef struct {
	const char *model_path;
	unsigned seq_len, batch, repeat, warmup, threads, workers;
	int json, gemm;
} bench_opts_t;

/*
 * With --workers N the batch is split into N parts run at once, each on
 * its own single-threaded context: the layout of winnowd's encoder
 * workers. Else one context runs the whole batch on --threads threads.
 */
typedef struct {
	winnow_ctx_t *ctx;
	const winnow_window_t *w;
	uint32_t n;
	float *logits;
	winnow_err_t err;
	char errstr[256];
} bench_part_t;

static void *run_part(void *arg)
{
	bench_part_t *p = arg;
	p->err = winnow_ctx_forward(p->ctx, p->w, p->n, p->logits, p->errstr,
				    sizeof p->errstr);
	return NULL;
}

/* One forward of the whole batch over the parts; 0 or -1. */
static int run_parts(bench_part_t *parts, unsigned n)
{
	pthread_t t[64];
	for (unsigned i = 1; i < n; i++)
		pthread_create(&t[i], NULL, run_part, &parts[i]);
	run_part(&parts[0]);
	for (unsigned i = 1; i < n; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < n; i++) {
		if (parts[i].err) {
			fprintf(stderr, "winnow: %s\n", parts[i].errstr);
			return -1;
		}
	}
	return 0;
}

static int bench_engine(const bench_opts_t *o)
{
	char err[512];
	int rc = 2;
	winnow_model_t *m = cli_load_model(o->model_path);
	if (!m)
		return 2;
	const winnow_model_config_t *c = winnow_model_config(m);
	if (o->seq_len < 2 || o->seq_len > c->max_seq_len) {
		fprintf(stderr, "winnow: --seq-len must be in 2..%u for this model\n",
			c->max_seq_len);
		winnow_model_destroy(m);
		return 2;
	}
	unsigned nparts = o->workers ? o->workers : 1;
	if (nparts > o->batch)
		nparts = o->batch;
	if (nparts > 64)
		nparts = 64;
	unsigned per = (o->batch + nparts - 1) / nparts;
	nparts = (o->batch + per - 1) / per;
	/* One context on all the threads, or one single-threaded context per
	 * part. */
	unsigned threads = o->threads ? o->threads : cli_engine_threads();
	bench_part_t parts[64];
	memset(parts, 0, sizeof parts);
	winnow_ctx_params_t cp = winnow_ctx_default_params();
	cp.max_windows = per;
	cp.max_tokens = per * o->seq_len;
	cp.threads = nparts > 1 ? 1 : threads;
	winnow_ctx_t *ctx = winnow_ctx_new(m, &cp, err, sizeof err);
	int parts_ok = ctx != NULL;
	for (unsigned i = 1; parts_ok && i < nparts; i++)
		parts_ok = (parts[i].ctx = winnow_ctx_new(m, &cp, err, sizeof err)) != NULL;
	cp.max_windows = o->batch;
	cp.max_tokens = o->batch * o->seq_len;
	cp.profile = 1;
	cp.threads = threads;
	winnow_ctx_t *pctx = o->gemm ? winnow_ctx_new(m, &cp, err, sizeof err) : NULL;
	int32_t *ids = malloc((size_t)o->batch * o->seq_len * sizeof *ids);
	winnow_window_t *w = calloc(o->batch, sizeof *w);
	float *logits = malloc((size_t)o->batch * c->num_labels * sizeof *logits);
	double *times = calloc(o->repeat, sizeof *times);
	if (!parts_ok || (o->gemm && !pctx)) {
		fprintf(stderr, "winnow: %s\n", err);
		goto out_free;
	}
	if (!ids || !w || !logits || !times) {
		fputs("winnow: out of memory\n", stderr);
		goto out_free;
	}
	uint64_t rng = 0x9E3779B97F4A7C15ull;
	for (unsigned b = 0; b < o->batch; b++) {
		int32_t *win = ids + (size_t)b * o->seq_len;
		win[0] = c->cls_id;
		for (unsigned t = 1; t + 1 < o->seq_len; t++) {
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			/* Skip the special and [unused] ids at the start. */
			win[t] = (int32_t)(1000 % c->vocab_size +
					   (rng >> 33) % (c->vocab_size - 1000 % c->vocab_size));
		}
		win[o->seq_len - 1] = c->sep_id;
		w[b].ids = win;
		w[b].n = o->seq_len;
	}
	parts[0].ctx = ctx;
	for (unsigned i = 0; i < nparts; i++) {
		parts[i].w = w + i * per;
		parts[i].n = i + 1 < nparts ? per : o->batch - i * per;
		parts[i].logits = logits + (size_t)i * per * c->num_labels;
	}
	for (unsigned r = 0; r < o->warmup + o->repeat; r++) {
		double t0 = now_s();
		if (run_parts(parts, nparts))
			goto out_free;
		if (r >= o->warmup)
			times[r - o->warmup] = now_s() - t0;
	}
	qsort(times, o->repeat, sizeof *times, cmp_double);
	double med = quantile(times, o->repeat, 0.5), p90 = quantile(times, o->repeat, 0.9);
	double tokens = (double)o->batch * o->seq_len;

	double engine_gflops = NAN, alone_gflops = NAN, gemm_share = NAN;
	if (o->gemm) {
		for (unsigned r = 0; r < o->warmup + o->repeat; r++) {
			if (r == o->warmup)
				winnow_ctx_stats_reset(pctx);
			winnow_ctx_forward(pctx, w, o->batch, logits, err, sizeof err);
		}
		winnow_ctx_stats_t st;
		winnow_ctx_stats(pctx, &st);
		gemm_shape_t shapes[8];
		size_t ns = forward_shapes(c, o->batch, o->seq_len, shapes);
		/* OpenBLAS alone with the same thread budget, on its own pool. */
		openblas_set_num_threads((int)threads);
		double alone = time_gemms_alone(shapes, ns, o->repeat);
		engine_gflops = st.gemm_flops / (double)st.gemm_ns;
		alone_gflops = shapes_flops(shapes, ns) / alone * 1e-9;
		gemm_share = (double)st.gemm_ns / (double)st.forward_ns;
	}
	if (o->json) {
		printf("{\"seq_len\": %u, \"batch\": %u, \"repeat\": %u, \"workers\": %u, \"threads\": %u, "
		       "\"median_ms\": %.3f, \"p90_ms\": %.3f, \"tokens_per_s\": %.1f, \"memory_mb\": %.1f",
		       o->seq_len, o->batch, o->repeat, nparts,
		       nparts > 1 ? nparts : threads,
		       med * 1e3, p90 * 1e3, tokens / med,
		       (double)winnow_ctx_memory(ctx) * nparts / 1e6);
		if (o->gemm)
			printf(", \"gemm_gflops\": %.2f, \"sgemm_alone_gflops\": %.2f, \"gemm_share\": %.3f",
			       engine_gflops, alone_gflops, gemm_share);
		printf(", \"kernels\": \"%s\", \"blas_core\": \"%s\"}\n",
		       winnow_kernels_name(), openblas_get_corename());
	} else {
		printf("model: %s %s (%u layers, hidden %u)\n", c->name, c->version,
		       c->num_layers, c->hidden_size);
		printf("kernels: %s\n", winnow_kernels_name());
		cli_print_blas(stdout);
		printf("batch %u x %u tokens, %u worker(s), %u thread(s), %u repeats: median %.2f ms, p90 %.2f ms, %.0f tokens/s, activations %.1f MB\n",
		       o->batch, o->seq_len, nparts, nparts > 1 ? nparts : threads,
		       o->repeat, med * 1e3, p90 * 1e3,
		       tokens / med, (double)winnow_ctx_memory(ctx) * nparts / 1e6);
		if (o->gemm)
			printf("gemm: %.1f GFLOP/s in the engine (%.0f%% of forward time), "
			       "%.1f GFLOP/s OpenBLAS alone on the same shapes: %.0f%%\n",
			       engine_gflops, 100 * gemm_share, alone_gflops,
			       100 * engine_gflops / alone_gflops);
	}
	rc = 0;
out_free:
	free(times);
	free(logits);
	free(w);
	free(ids);
	winnow_ctx_destroy(pctx);
	for (unsigned i = 1; i < nparts; i++)
		winnow_ctx_destroy(parts[i].ctx);
	winnow_ctx_destroy(ctx);
	winnow_model_destroy(m);
	return rc;
}

/* ---- tokenizer ------------------------------------------------------------ */

static int bench_tokenizer(const char *model_path, const char *vocab_path,
			   unsigned repeat, int json, char **files, int nfiles)
{
	char err[512];
	winnow_model_t *m = NULL;
	winnow_tokenizer_t *owned = NULL;
	const winnow_tokenizer_t *tok;
	winnow_tokens_t toks = { 0 };
	char **texts = calloc((size_t)nfiles, sizeof *texts);
	size_t *lens = calloc((size_t)nfiles, sizeof *lens);
	int rc = 2;

	if (nfiles == 0) {
		fputs("winnow: bench --tokenizer needs text files\n", stderr);
		goto out_free;
	}
	if (model_path) {
		if (!(m = cli_load_model(model_path)))
			goto out_free;
		tok = winnow_model_tokenizer(m);
	} else {
		winnow_tokenizer_params_t tp = winnow_tokenizer_default_params();
		if (!(owned = winnow_tokenizer_load_vocab(vocab_path, &tp, err, sizeof err))) {
			fprintf(stderr, "winnow: %s\n", err);
			goto out_free;
		}
		tok = owned;
	}
	size_t total = 0, ntok = 0;
	for (int i = 0; i < nfiles; i++) {
		size_t cap = 0;
		if (cli_read_file(files[i], &texts[i], &cap, &lens[i], 1u << 30,
				  err, sizeof err)) {
			fprintf(stderr, "winnow: %s\n", err);
			goto out_free;
		}
		total += lens[i];
	}
	double best = INFINITY;
	for (unsigned r = 0; r < repeat; r++) {
		double t0 = now_s();
		ntok = 0;
		for (int i = 0; i < nfiles; i++) {
			if (winnow_tokenizer_encode(tok, texts[i], lens[i], &toks,
						    err, sizeof err)) {
				fprintf(stderr, "winnow: %s: %s\n", files[i], err);
				goto out_free;
			}
			ntok += toks.n;
		}
		double t = now_s() - t0;
		best = t < best ? t : best;
	}
	if (json)
		printf("{\"bytes\": %zu, \"tokens\": %zu, \"best_s\": %.4f, \"mb_per_s\": %.1f}\n",
		       total, ntok, best, (double)total / best / 1e6);
	else
		printf("tokenizer: %zu bytes, %zu tokens, best of %u: %.3f s, %.1f MB/s on one core\n",
		       total, ntok, repeat, best, (double)total / best / 1e6);
	rc = 0;
out_free:
	for (int i = 0; i < nfiles; i++)
		free(texts[i]);
	free(texts);
	free(lens);
	winnow_tokens_free(&toks);
	winnow_tokenizer_destroy(owned);
	winnow_model_destroy(m);
	return rc;
}

int cli_bench(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "vocab", required_argument, NULL, 'v' },
		{ "tokenizer", no_argument, NULL, 'T' },
		{ "seq-len", required_argument, NULL, 's' },
		{ "batch", required_argument, NULL, 'b' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "threads", required_argument, NULL, 't' },
		{ "workers", required_argument, NULL, 'W' },
		{ "json", no_argument, NULL, 'j' },
		{ "gemm", no_argument, NULL, 'g' },
		{ "peak", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bench_opts_t o = { .seq_len = 128, .batch = 1, .repeat = 10, .warmup = 2 };
	const char *vocab_path = NULL;
	int tokenizer = 0, peak = 0, c;
	while ((c = getopt_long(argc, argv, "m:v:Ts:b:r:w:t:W:jgPh", opts, NULL)) != -1) {
		switch (c) {
		case 'm': o.model_path = optarg; break;
		case 'v': vocab_path = optarg; break;
		case 'T': tokenizer = 1; break;
		case 's': o.seq_len = cli_parse_uint("--seq-len", optarg, 2, 65536); break;
		case 'b': o.batch = cli_parse_uint("--batch", optarg, 1, 4096); break;
		case 'r': o.repeat = cli_parse_uint("--repeat", optarg, 1, 100000); break;
		case 'w': o.warmup = cli_parse_uint("--warmup", optarg, 0, 100000); break;
		case 't': o.threads = cli_parse_uint("--threads", optarg, 1, 256); break;
		case 'W': o.workers = cli_parse_uint("--workers", optarg, 1, 64); break;
		case 'j': o.json = 1; break;
		case 'g': o.gemm = 1; break;
		case 'P': peak = 1; break;
		case 'h':
			puts("usage: winnow bench --model FILE [--seq-len N] [--batch N] [--repeat N]\n"
			     "                    [--warmup N] [--threads N] [--workers N] [--json] [--gemm]\n"
			     "  --threads N  engine threads of the one context (default $WINNOW_THREADS,\n"
			     "               else the online CPUs)\n"
			     "  --workers N  split the batch over N single-threaded contexts run at\n"
			     "               once (winnowd's layout)\n"
			     "       winnow bench --tokenizer (--model FILE | --vocab FILE) [--repeat N] FILE...\n"
			     "       winnow bench --peak [--threads N] [--repeat N]   the FP32 FMA peak");
			return 0;
		default: return 2;
		}
	}
	if (peak)
		return bench_peak(o.threads ? o.threads : 2, o.repeat < 3 ? 3 : o.repeat, o.json);
	if (tokenizer) {
		if (!o.model_path == !vocab_path) {
			fputs("winnow: bench --tokenizer needs --model FILE or --vocab FILE\n", stderr);
			return 2;
		}
		return bench_tokenizer(o.model_path, vocab_path, o.repeat,
				       o.json, argv + optind, argc - optind);
	}
	if (!o.model_path) {
		fputs("winnow: bench needs --model FILE\n", stderr);
		return 2;
	}
	return bench_engine(&o);
}
