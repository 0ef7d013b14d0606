/*
 * gemm.c: panel packing and the portable (OpenBLAS) product of gemm.h. The
 * AVX-512 product is in gemm_avx512.c.
 */
#include "gemm.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>

size_t winnow_panels_floats(size_t n, size_t k)
{
	size_t panels = (n + WINNOW_PANEL_COLS - 1) / WINNOW_PANEL_COLS;
	return panels * k * WINNOW_PANEL_COLS;
}

void winnow_panels_pack(float *dst, const float *B, size_t ldb, int trans,
			size_t k, size_t col_begin, size_t col_end)
{
	assert(col_begin % WINNOW_PANEL_COLS == 0);
	for (size_t c0 = col_begin; c0 < col_end; c0 += WINNOW_PANEL_COLS) {
		size_t cols = col_end - c0 < WINNOW_PANEL_COLS ? col_end - c0
							      : WINNOW_PANEL_COLS;
		for (size_t kk = 0; kk < k; kk++, dst += WINNOW_PANEL_COLS) {
			size_t j = 0;
			if (trans)
				for (; j < cols; j++)
					dst[j] = B[(c0 + j) * ldb + kk];
			else
				for (; j < cols; j++)
					dst[j] = B[kk * ldb + c0 + j];
			for (; j < WINNOW_PANEL_COLS; j++)
				dst[j] = 0.0f;
		}
	}
}

size_t winnow_gemm_scratch_floats(size_t max_b_floats)
{
	return WINNOW_GEMM_MC * WINNOW_GEMM_KC + max_b_floats;
}

void winnow_gemm_portable(const winnow_gemm_t *g, size_t col_begin,
			  size_t col_end, float *scratch)
{
	size_t cols = col_end - col_begin;
	assert(!g->accumulate || g->alpha == 1.0f);
	assert(col_begin % WINNOW_PANEL_COLS == 0); /* panels as in every split */
	if (cols == 0 || g->m == 0)
		return;
	/*
	 * One sgemm per panel, never per band: OpenBLAS's AVX2 kernels (Haswell,
	 * Zen) round a column differently depending on how wide the product
	 * it is part of is, so a band's width, which follows the thread count,
	 * would change the results. A panel's product is the same whatever
	 * the split (tests/test_team.c); AVX-512 machines use gemm_avx512.c.
	 */
	for (size_t c0 = col_begin; c0 < col_end; c0 += WINNOW_PANEL_COLS) {
		size_t w = col_end - c0 < WINNOW_PANEL_COLS ? col_end - c0
							   : WINNOW_PANEL_COLS;
		const float *b = g->trans_b ? g->b + c0 * g->ldb : g->b + c0;
		cblas_sgemm(CblasRowMajor, CblasNoTrans,
			    g->trans_b ? CblasTrans : CblasNoTrans, (int)g->m,
			    (int)w, (int)g->k, g->alpha, g->a, (int)g->lda, b,
			    (int)g->ldb, g->accumulate ? 1.0f : 0.0f, g->c + c0,
			    (int)g->ldc);
	}
	float *c = g->c + col_begin;
	if (!g->bias && !g->gelu)
		return;
	for (size_t r = 0; r < g->m; r++) {
		float *row = c + r * g->ldc;
		for (size_t j = 0; j < cols; j++) {
			float v = row[j];
			if (g->bias)
				v += g->bias[col_begin + j];
			if (g->gelu)
				v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
			row[j] = v;
		}
	}
}
