/*
 * test_kernels.c: each kernel set (portable, and AVX-512 where the CPU has
 * it) against a double-precision reference, on row lengths that exercise
 * vector bodies and tails.
 */
#include "kernels.h"
#include "winnow_model.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const size_t widths[] = { 1, 3, 15, 16, 17, 64, 100, 768, 3072 };
#define NWIDTHS (sizeof widths / sizeof widths[0])
#define ROWS 3

static float frand(unsigned *s, float scale)
{
	*s = *s * 1103515245u + 12345u;
	return ((float)((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f) * scale;
}

static void fill(float *x, size_t n, unsigned seed, float scale)
{
	for (size_t i = 0; i < n; i++)
		x[i] = frand(&seed, scale);
}

/* The sets to test: portable always, AVX-512 when this CPU runs it. */
static const winnow_kernels_t *sets[2];
static int nsets;

static void setup(void)
{
	nsets = 0;
	sets[nsets++] = winnow_kernels_portable();
	if (winnow_kernels_avx512())
		sets[nsets++] = winnow_kernels_avx512();
}

static void check_close(const float *got, const double *want, size_t n,
			double tol, const char *what, const char *set, size_t w)
{
	for (size_t i = 0; i < n; i++) {
		double err = fabs(got[i] - want[i]);
		ck_assert_msg(err <= tol * (1 + fabs(want[i])),
			      "%s (%s, width %zu): element %zu is %.9g, expected %.9g",
			      what, set, w, i, got[i], want[i]);
	}
}

START_TEST(gelu_matches_erf_definition)
{
	for (int s = 0; s < nsets; s++) {
		for (size_t k = 0; k < NWIDTHS; k++) {
			size_t w = widths[k], n = ROWS * w;
			float *x = malloc(n * sizeof *x), *b = malloc(w * sizeof *b);
			double *want = malloc(n * sizeof *want);
			fill(x, n, 1 + (unsigned)k, 6.0f);
			fill(b, w, 7, 0.5f);
			for (size_t i = 0; i < n; i++) {
				double v = (double)x[i] + b[i % w];
				want[i] = 0.5 * v * (1 + erf(v / sqrt(2.0)));
			}
			sets[s]->bias_gelu(x, b, ROWS, w);
			check_close(x, want, n, 2e-6, "bias_gelu", sets[s]->name, w);
			free(x), free(b), free(want);
		}
	}
}
END_TEST

START_TEST(layernorm_matches_definition)
{
	for (int s = 0; s < nsets; s++) {
		for (size_t k = 0; k < NWIDTHS; k++) {
			size_t w = widths[k], n = ROWS * w;
			float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
			float *b = malloc(w * sizeof *b), *g = malloc(w * sizeof *g);
			float *be = malloc(w * sizeof *be);
			double *want = malloc(n * sizeof *want);
			fill(x, n, 3 + (unsigned)k, 3.0f);
			fill(y, n, 5, 1.0f);
			fill(b, w, 9, 0.2f);
			fill(g, w, 11, 1.0f);
			fill(be, w, 13, 0.3f);
			for (size_t r = 0; r < ROWS; r++) {
				double mean = 0, var = 0;
				for (size_t c = 0; c < w; c++)
					mean += (double)x[r * w + c] + y[r * w + c] + b[c];
				mean /= (double)w;
				for (size_t c = 0; c < w; c++) {
					double d = (double)x[r * w + c] + y[r * w + c] + b[c] - mean;
					var += d * d;
				}
				var /= (double)w;
				for (size_t c = 0; c < w; c++)
					want[r * w + c] = ((double)x[r * w + c] + y[r * w + c] + b[c] - mean) /
							  sqrt(var + 1e-12) * g[c] + be[c];
			}
			sets[s]->add_layernorm(x, y, b, g, be, ROWS, w, 1e-12f);
			/* A width-1 row normalises to beta exactly; others to 1e-5. */
			check_close(x, want, n, 2e-5, "add_layernorm", sets[s]->name, w);
			free(x), free(y), free(b), free(g), free(be), free(want);
		}
	}
}
END_TEST

START_TEST(softmax_rows_sum_to_one)
{
	for (int s = 0; s < nsets; s++) {
		for (size_t k = 0; k < NWIDTHS; k++) {
			size_t w = widths[k], ld = w + 5, n = ROWS * ld;
			float *x = malloc(n * sizeof *x);
			double *want = malloc(n * sizeof *want);
			fill(x, n, 17 + (unsigned)k, 20.0f);
			for (size_t r = 0; r < ROWS; r++) {
				double max = -INFINITY, sum = 0;
				for (size_t c = 0; c < w; c++)
					max = fmax(max, x[r * ld + c]);
				for (size_t c = 0; c < w; c++)
					sum += exp(x[r * ld + c] - max);
				for (size_t c = 0; c < ld; c++)
					want[r * ld + c] = c < w ? exp(x[r * ld + c] - max) / sum
								 : x[r * ld + c];
			}
			sets[s]->softmax_rows(x, ROWS, w, ld);
			/* Columns beyond the row (stride padding) are untouched. */
			check_close(x, want, n, 2e-6, "softmax_rows", sets[s]->name, w);
			free(x), free(want);
		}
	}
}
END_TEST

START_TEST(bias_and_tanh)
{
	for (int s = 0; s < nsets; s++) {
		for (size_t k = 0; k < NWIDTHS; k++) {
			size_t w = widths[k], n = ROWS * w;
			float *x = malloc(n * sizeof *x), *x2 = malloc(n * sizeof *x2);
			float *b = malloc(w * sizeof *b);
			double *want = malloc(n * sizeof *want), *want2 = malloc(n * sizeof *want2);
			fill(x, n, 23 + (unsigned)k, 4.0f);
			memcpy(x2, x, n * sizeof *x);
			fill(b, w, 29, 1.0f);
			for (size_t i = 0; i < n; i++) {
				want[i] = (double)x[i] + b[i % w];
				want2[i] = tanh((double)x[i] + b[i % w]);
			}
			sets[s]->add_bias(x, b, ROWS, w);
			check_close(x, want, n, 1e-7, "add_bias", sets[s]->name, w);
			sets[s]->bias_tanh(x2, b, ROWS, w);
			check_close(x2, want2, n, 1e-6, "bias_tanh", sets[s]->name, w);
			free(x), free(x2), free(b), free(want), free(want2);
		}
	}
}
END_TEST

/*
 * Products (gemm.h) against a double-precision reference: shapes with row
 * and column tails and several k blocks, B as an nn.Linear weight or plain,
 * packed at load or on the fly, every epilogue, computed in column bands
 * as the engine's threads do.
 */
typedef struct {
	size_t m, n, k;
	int trans, packed, accumulate, gelu, bias;
	float alpha;
	size_t lda;   /* 0: k + 3 */
} gemm_case_t;

static const gemm_case_t gemm_cases[] = {
	{ 1, 1, 1, 1, 0, 0, 0, 0, 1.0f, 0 },
	{ 12, 32, 16, 1, 1, 0, 0, 1, 1.0f, 0 },
	{ 13, 33, 17, 1, 1, 0, 1, 1, 1.0f, 0 },
	{ 25, 70, 800, 1, 1, 1, 0, 1, 1.0f, 0 },   /* 2 k blocks, accumulate */
	{ 97, 100, 1600, 1, 0, 0, 0, 0, 0.125f, 0 }, /* 3 k blocks, 2 MC blocks */
	{ 130, 64, 130, 0, 0, 0, 0, 0, 1.0f, 0 },  /* S V of a head */
	{ 130, 130, 64, 1, 0, 0, 0, 0, 0.125f, 0 }, /* Q K^T of a head */
	{ 7, 48, 192, 0, 0, 1, 1, 1, 1.0f, 0 },
	{ 5, 2, 192, 1, 1, 0, 0, 1, 1.0f, 0 },     /* a classifier */
	{ 30, 48, 30, 0, 0, 0, 0, 0, 1.0f, 0 },    /* S V, head of 48: a 16-wide panel */
	/* Rows 4 KiB apart: A copied before the kernel reads it. */
	{ 110, 40, 1000, 1, 1, 0, 1, 1, 1.0f, 1024 },
	{ 100, 33, 3072, 1, 1, 1, 0, 0, 1.0f, 3072 },
};

static double gelu_ref(double v)
{
	return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
}

static void run_gemm_case(const winnow_kernels_t *set, const gemm_case_t *t,
			  size_t bands)
{
	size_t m = t->m, n = t->n, k = t->k;
	size_t lda = t->lda ? t->lda : k + 3, ldb = (t->trans ? k : n) + 5, ldc = n + 2;
	size_t bsize = (t->trans ? n : k) * ldb;
	float *a = malloc(m * lda * sizeof *a), *b = malloc(bsize * sizeof *b);
	float *c = malloc(m * ldc * sizeof *c), *bias = malloc(n * sizeof *bias);
	float *panels = aligned_alloc(64, (winnow_panels_floats(n, k) + 16) * sizeof(float));
	size_t scratch_n = winnow_gemm_scratch_floats(winnow_panels_floats(n, k));
	float *scratch = aligned_alloc(64, (scratch_n + 16) * sizeof(float));
	double *want = malloc(m * n * sizeof *want);
	fill(a, m * lda, 1, 1.0f);
	fill(b, bsize, 2, 1.0f);
	fill(c, m * ldc, 3, 1.0f);
	fill(bias, n, 4, 1.0f);
	for (size_t i = 0; i < m; i++) {
		for (size_t j = 0; j < n; j++) {
			double s = 0;
			for (size_t x = 0; x < k; x++)
				s += (double)a[i * lda + x] *
				     (t->trans ? b[j * ldb + x] : b[x * ldb + j]);
			s *= t->alpha;
			if (t->accumulate)
				s += c[i * ldc + j];
			if (t->bias)
				s += bias[j];
			want[i * n + j] = t->gelu ? gelu_ref(s) : s;
		}
	}
	winnow_panels_t p = { panels, n, k };
	if (t->packed)
		winnow_panels_pack(panels, b, ldb, t->trans, k, 0, n);
	winnow_gemm_t g = {
		.m = m, .n = n, .k = k, .a = a, .lda = lda,
		.panels = t->packed ? &p : NULL, .b = b, .ldb = ldb,
		.trans_b = t->trans, .c = c, .ldc = ldc, .alpha = t->alpha,
		.accumulate = t->accumulate, .bias = t->bias ? bias : NULL,
		.gelu = t->gelu,
	};
	size_t np = (n + WINNOW_PANEL_COLS - 1) / WINNOW_PANEL_COLS;
	for (size_t s = 0; s < bands; s++) {
		size_t c0 = np * s / bands * WINNOW_PANEL_COLS;
		size_t c1 = np * (s + 1) / bands * WINNOW_PANEL_COLS;
		set->gemm(&g, c0, c1 < n ? c1 : n, scratch);
	}
	for (size_t i = 0; i < m; i++) {
		for (size_t j = 0; j < n; j++) {
			double w = want[i * n + j], err = fabs(c[i * ldc + j] - w);
			ck_assert_msg(err <= 2e-6 * (double)k * (1 + fabs(w)),
				      "gemm %zux%zux%zu (%s, %zu bands): C[%zu][%zu] is %.9g, expected %.9g",
				      m, n, k, set->name, bands, i, j, c[i * ldc + j], w);
		}
	}
	free(want), free(scratch), free(panels), free(bias), free(c), free(b), free(a);
}

START_TEST(gemm_matches_reference)
{
	for (int s = 0; s < nsets; s++) {
		for (size_t i = 0; i < sizeof gemm_cases / sizeof gemm_cases[0]; i++) {
			gemm_case_t t = gemm_cases[i];
			if (t.packed && !sets[s]->packs_weights)
				t.packed = 0;
			run_gemm_case(sets[s], &t, 1);
			run_gemm_case(sets[s], &t, 3);
		}
	}
}
END_TEST

START_TEST(gemm_leaves_padding_columns_alone)
{
	/* ldc > n: the columns past n belong to someone else (a head's
	 * output is a band of the attention rows) and must not be written. */
	for (int s = 0; s < nsets; s++) {
		size_t m = 13, n = 40, k = 20, ldc = 64;
		float *a = calloc(m * k, sizeof *a), *b = calloc(n * k, sizeof *b);
		float *c = malloc(m * ldc * sizeof *c);
		float *scratch = aligned_alloc(64, winnow_gemm_scratch_floats(
			winnow_panels_floats(n, k)) * sizeof(float));
		for (size_t i = 0; i < m * ldc; i++)
			c[i] = 7.0f;
		winnow_gemm_t g = { .m = m, .n = n, .k = k, .a = a, .lda = k,
				    .b = b, .ldb = k, .trans_b = 1, .c = c,
				    .ldc = ldc, .alpha = 1.0f };
		sets[s]->gemm(&g, 0, n, scratch);
		for (size_t i = 0; i < m; i++)
			for (size_t j = 0; j < ldc; j++)
				ck_assert_float_eq(c[i * ldc + j], j < n ? 0.0f : 7.0f);
		free(scratch), free(c), free(b), free(a);
	}
}
END_TEST

START_TEST(forced_portable_is_honoured)
{
	/* Forked test: the choice is made once per process, here first. */
	setenv("WINNOW_KERNELS", "portable", 1);
	ck_assert_str_eq(winnow_kernels_name(), "portable");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kernels");
	TCase *tc = tcase_create("kernels");
	tcase_add_checked_fixture(tc, setup, NULL);
	/* The GEMM cases check every element against a double-precision loop:
	 * about 2 s alone under ASan, over Check's 4 s default on a machine
	 * busy with other work (it timed out in CI). */
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, gelu_matches_erf_definition);
	tcase_add_test(tc, layernorm_matches_definition);
	tcase_add_test(tc, softmax_rows_sum_to_one);
	tcase_add_test(tc, bias_and_tanh);
	tcase_add_test(tc, gemm_matches_reference);
	tcase_add_test(tc, gemm_leaves_padding_columns_alone);
	tcase_add_test(tc, forced_portable_is_honoured);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	printf("kernel sets tested: %s%s\n", winnow_kernels_portable()->name,
	       winnow_kernels_avx512() ? ", avx512" : " (this CPU has no AVX-512)");
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
