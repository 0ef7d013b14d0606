/*
 * gemm_avx512.c: the AVX-512 product of gemm.h. Compiled for AVX-512 (as
 * kernels_avx512.c); kernels.c checks the CPU before anything here runs.
 *
 * The micro-kernel computes a 12 x 32 tile of C: per step of k it loads 32
 * values of a B panel (two vectors), broadcasts the 12 values of A's column
 * k one by one and does 24 FMAs into 24 accumulators. A is read in place,
 * row-major (12 rows at stride lda; each row is a sequential stream), but
 * for the strides that alias in L1 (rows_alias), and B from its panels.
 * Blocking (KC, MC) is explained in gemm.h.
 *
 * The epilogue runs on the tile in registers before its one store: the
 * partial C of earlier k blocks (or the caller's C when accumulating),
 * alpha, the bias and GELU. Rows and columns past the end are masked.
 */
#include "gemm.h"

#include "simd_avx512.h"

#include <assert.h>
#include <string.h>

#define MR WINNOW_GEMM_MR
#define NR WINNOW_PANEL_COLS
#define KC WINNOW_GEMM_KC
#define MC WINNOW_GEMM_MC

/* What the store of a tile does beyond writing the accumulators. */
typedef struct {
	size_t rows;         /* valid rows of the tile, 1..MR */
	__mmask16 lo, hi;    /* valid columns 0-15 and 16-31 */
	int load_c;          /* add what C holds (earlier k blocks, or beta 1) */
	int last;            /* the last k block: apply alpha, bias, GELU */
	float alpha;
	const float *bias;   /* at the tile's first column, or NULL */
	int gelu;
} tile_t;

/* Inlined: 24 vector arguments would otherwise go through the stack. */
static inline __attribute__((always_inline)) void
store_row(float *c, __m512 x0, __m512 x1, const tile_t *t)
{
	if (t->load_c) {
		x0 = _mm512_add_ps(x0, _mm512_maskz_loadu_ps(t->lo, c));
		x1 = _mm512_add_ps(x1, _mm512_maskz_loadu_ps(t->hi, c + 16));
	}
	if (t->last) {
		if (t->alpha != 1.0f) {
			__m512 a = _mm512_set1_ps(t->alpha);
			x0 = _mm512_mul_ps(x0, a);
			x1 = _mm512_mul_ps(x1, a);
		}
		if (t->bias) {
			x0 = _mm512_add_ps(x0, _mm512_maskz_loadu_ps(t->lo, t->bias));
			x1 = _mm512_add_ps(x1, _mm512_maskz_loadu_ps(t->hi, t->bias + 16));
		}
		if (t->gelu) {
			x0 = gelu512(x0);
			x1 = gelu512(x1);
		}
	}
	_mm512_mask_storeu_ps(c, t->lo, x0);
	_mm512_mask_storeu_ps(c + 16, t->hi, x1);
}

/*
 * C[12 x 32] (+)= A[12 x kc] (rows at stride lda) x panel[kc x 32]. The
 * accumulators are named, not an array, so that they stay in registers.
 */
static void kernel_12x32(size_t kc, const float *a, size_t lda,
			 const float *b, float *c, size_t ldc, const tile_t *t)
{
	__m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
	__m512 c60, c61, c70, c71, c80, c81, c90, c91, ca0, ca1, cb0, cb1;
	c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = _mm512_setzero_ps();
	c40 = c41 = c50 = c51 = c60 = c61 = c70 = c71 = _mm512_setzero_ps();
	c80 = c81 = c90 = c91 = ca0 = ca1 = cb0 = cb1 = _mm512_setzero_ps();
	/* Four row pointers, each with offsets 0, lda, 2 lda: fewer live
	 * registers than twelve pointers, and no spills. */
	const float *a0 = a, *a3 = a + 3 * lda, *a6 = a + 6 * lda, *a9 = a + 9 * lda;
	size_t l1 = lda, l2 = 2 * lda;

	for (size_t k = 0; k < kc; k++, b += NR) {
		__m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), x;
#define ROW(p, off, x0, x1)                         \
	x = _mm512_set1_ps((p)[off]);               \
	x0 = _mm512_fmadd_ps(x, b0, x0);            \
	x1 = _mm512_fmadd_ps(x, b1, x1);
		ROW(a0, 0, c00, c01) ROW(a0, l1, c10, c11) ROW(a0, l2, c20, c21)
		ROW(a3, 0, c30, c31) ROW(a3, l1, c40, c41) ROW(a3, l2, c50, c51)
		ROW(a6, 0, c60, c61) ROW(a6, l1, c70, c71) ROW(a6, l2, c80, c81)
		ROW(a9, 0, c90, c91) ROW(a9, l1, ca0, ca1) ROW(a9, l2, cb0, cb1)
#undef ROW
		a0++, a3++, a6++, a9++;
	}

	size_t n = t->rows;
	store_row(c, c00, c01, t);
	if (n > 1) store_row(c + 1 * ldc, c10, c11, t);
	if (n > 2) store_row(c + 2 * ldc, c20, c21, t);
	if (n > 3) store_row(c + 3 * ldc, c30, c31, t);
	if (n > 4) store_row(c + 4 * ldc, c40, c41, t);
	if (n > 5) store_row(c + 5 * ldc, c50, c51, t);
	if (n > 6) store_row(c + 6 * ldc, c60, c61, t);
	if (n > 7) store_row(c + 7 * ldc, c70, c71, t);
	if (n > 8) store_row(c + 8 * ldc, c80, c81, t);
	if (n > 9) store_row(c + 9 * ldc, c90, c91, t);
	if (n > 10) store_row(c + 10 * ldc, ca0, ca1, t);
	if (n > 11) store_row(c + 11 * ldc, cb0, cb1, t);
}

/* r[0..15] = the transpose of r[0..15] (16 x 16 floats). */
static inline void transpose16(__m512 r[16])
{
	__m512 t[16], u[16];
	for (int i = 0; i < 16; i += 2) {
		t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
		t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
	}
	for (int i = 0; i < 16; i += 4) {
		u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
		u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
		u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
		u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
	}
	/* u[4g + c] holds, in each 128-bit lane L, column c of rows 4g..4g+3
	 * for the columns 4L..4L+3. */
	for (int c = 0; c < 4; c++) {
		__m512 a = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
		__m512 b = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
		__m512 e = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
		__m512 f = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
		r[c] = _mm512_shuffle_f32x4(a, e, 0x88);
		r[c + 8] = _mm512_shuffle_f32x4(a, e, 0xDD);
		r[c + 4] = _mm512_shuffle_f32x4(b, f, 0x88);
		r[c + 12] = _mm512_shuffle_f32x4(b, f, 0xDD);
	}
}

/*
 * winnow_panels_pack for a B of [n x k] (trans), by 16 x 16 blocks
 * transposed in registers: the scalar loop gathers one float per row of B
 * and cost 4% of a forward pass (the K of every attention head).
 */
static void pack_trans(float *dst, const float *B, size_t ldb, size_t k,
		       size_t col_begin, size_t col_end)
{
	for (size_t c0 = col_begin; c0 < col_end; c0 += NR, dst += k * NR) {
		for (size_t half = 0; half < NR; half += 16) {
			size_t j0 = c0 + half;
			size_t rows = j0 >= col_end ? 0 : col_end - j0 < 16 ? col_end - j0 : 16;
			for (size_t k0 = 0; k0 < k; k0 += 16) {
				size_t kn = k - k0 < 16 ? k - k0 : 16;
				__mmask16 m = tail_mask(kn);
				__m512 r[16];
				for (size_t i = 0; i < 16; i++)
					r[i] = i < rows ? _mm512_maskz_loadu_ps(m, B + (j0 + i) * ldb + k0)
							: _mm512_setzero_ps();
				transpose16(r);
				for (size_t i = 0; i < kn; i++)
					_mm512_storeu_ps(dst + (k0 + i) * NR + half, r[i]);
			}
		}
	}
}

/* The same for the last panel of a band when it has at most 16 columns
 * (a head of 48 dimensions: half the work of kernel_12x32 there). */
static void kernel_12x16(size_t kc, const float *a, size_t lda,
			 const float *b, float *c, size_t ldc, const tile_t *t)
{
	__m512 c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, ca, cb;
	c0 = c1 = c2 = c3 = c4 = c5 = _mm512_setzero_ps();
	c6 = c7 = c8 = c9 = ca = cb = _mm512_setzero_ps();
	const float *a0 = a, *a3 = a + 3 * lda, *a6 = a + 6 * lda, *a9 = a + 9 * lda;
	size_t l1 = lda, l2 = 2 * lda;
	const __m512 zero = _mm512_setzero_ps();

	for (size_t k = 0; k < kc; k++, b += NR) {
		__m512 b0 = _mm512_loadu_ps(b);
#define ROW(p, off, x0) x0 = _mm512_fmadd_ps(_mm512_set1_ps((p)[off]), b0, x0);
		ROW(a0, 0, c0) ROW(a0, l1, c1) ROW(a0, l2, c2)
		ROW(a3, 0, c3) ROW(a3, l1, c4) ROW(a3, l2, c5)
		ROW(a6, 0, c6) ROW(a6, l1, c7) ROW(a6, l2, c8)
		ROW(a9, 0, c9) ROW(a9, l1, ca) ROW(a9, l2, cb)
#undef ROW
		a0++, a3++, a6++, a9++;
	}

	size_t n = t->rows;
	store_row(c, c0, zero, t);
	if (n > 1) store_row(c + 1 * ldc, c1, zero, t);
	if (n > 2) store_row(c + 2 * ldc, c2, zero, t);
	if (n > 3) store_row(c + 3 * ldc, c3, zero, t);
	if (n > 4) store_row(c + 4 * ldc, c4, zero, t);
	if (n > 5) store_row(c + 5 * ldc, c5, zero, t);
	if (n > 6) store_row(c + 6 * ldc, c6, zero, t);
	if (n > 7) store_row(c + 7 * ldc, c7, zero, t);
	if (n > 8) store_row(c + 8 * ldc, c8, zero, t);
	if (n > 9) store_row(c + 9 * ldc, c9, zero, t);
	if (n > 10) store_row(c + 10 * ldc, ca, zero, t);
	if (n > 11) store_row(c + 11 * ldc, cb, zero, t);
}

/* winnow_panels_pack for a B of [k x n] (the V of a head): each row of a
 * panel is 32 contiguous floats of B, two masked vector copies. */
static void pack_plain(float *dst, const float *B, size_t ldb, size_t k,
		       size_t col_begin, size_t col_end)
{
	for (size_t c0 = col_begin; c0 < col_end; c0 += NR, dst += k * NR) {
		size_t cols = col_end - c0 < NR ? col_end - c0 : NR;
		__mmask16 lo = tail_mask(cols), hi = cols > 16 ? tail_mask(cols - 16) : 0;
		for (size_t kk = 0; kk < k; kk++) {
			const float *src = B + kk * ldb + c0;
			_mm512_storeu_ps(dst + kk * NR, _mm512_maskz_loadu_ps(lo, src));
			_mm512_storeu_ps(dst + kk * NR + 16, _mm512_maskz_loadu_ps(hi, src + 16));
		}
	}
}

static inline __mmask16 cols_mask(size_t cols, size_t from)
{
	return cols <= from ? 0 : tail_mask(cols - from);
}

/*
 * Rows [m0, m0 + MC) of C for every panel of the band, over the k block
 * [k0, k0 + kc).
 */
static void row_block(const winnow_gemm_t *g, tile_t *t, const float *band,
		      size_t k0, size_t kc, size_t m0, size_t n_panels,
		      size_t col_begin, size_t col_end, int copy, float *block)
{
	size_t M = g->m, K = g->k;
	size_t mc = M - m0 < MC ? M - m0 : MC;
	size_t full = mc / MR * MR, padded = (mc + MR - 1) / MR * MR;
	const float *a = g->a + m0 * g->lda + k0;
	size_t lda = g->lda, first_copied = copy ? 0 : full;
	/* The rows the kernel reads from block: all of them, or the tail that
	 * does not fill MR. */
	for (size_t r = first_copied; r < padded; r++) {
		float *dst = block + (r - first_copied) * kc;
		if (r < mc)
			memcpy(dst, a + r * lda, kc * sizeof(float));
		else
			memset(dst, 0, kc * sizeof(float));
	}
	for (size_t q = 0; q < n_panels; q++) {
		size_t col = col_begin + q * NR;
		size_t cols = col_end - col < NR ? col_end - col : NR;
		const float *b = band + (q * K + k0) * NR;
		t->lo = cols_mask(cols, 0);
		t->hi = cols_mask(cols, 16);
		t->bias = g->bias ? g->bias + col : NULL;
		for (size_t i = 0; i < padded; i += MR) {
			const float *ai = i < first_copied ? a + i * lda
							   : block + (i - first_copied) * kc;
			size_t ldi = i < first_copied ? lda : kc;
			t->rows = mc - i < MR ? mc - i : MR;
			(cols > 16 ? kernel_12x32 : kernel_12x16)(
				kc, ai, ldi, b, g->c + (m0 + i) * g->ldc + col,
				g->ldc, t);
		}
	}
}

/*
 * Rows of A at a stride that is a multiple of 4 KiB (the down projection's
 * 3072 floats) all fall into the same set of the 8-way L1 cache, and the
 * kernel's 12 row streams evict each other: such an A is copied, MC rows
 * of a k block at a time, to a block of stride KC first. Copied or not,
 * rows past the end are zero-padded to a multiple of MR, so that the
 * kernel never reads past A.
 */
static int rows_alias(size_t lda)
{
	size_t bytes = lda * sizeof(float), g = 4096;
	while (bytes % g)
		g /= 2;
	return 4096 / g < 4; /* fewer than 4 distinct offsets modulo 4 KiB */
}

void winnow_gemm_avx512(const winnow_gemm_t *g, size_t col_begin,
			size_t col_end, float *scratch)
{
	size_t M = g->m, K = g->k;
	assert(col_begin % NR == 0 && col_end <= g->n);
	assert(!g->accumulate || g->alpha == 1.0f);
	if (col_end <= col_begin || M == 0)
		return;
	assert(K > 0);

	float *block = scratch; /* [MC][KC]: A copied, or its tail rows */
	const float *band;      /* the band's first panel */
	if (g->panels) {
		band = g->panels->data + col_begin / NR * K * NR;
	} else {
		float *packed = scratch + MC * KC;
		if (g->trans_b)
			pack_trans(packed, g->b, g->ldb, K, col_begin, col_end);
		else
			pack_plain(packed, g->b, g->ldb, K, col_begin, col_end);
		band = packed;
	}
	size_t n_panels = (col_end - col_begin + NR - 1) / NR;
	int copy = rows_alias(g->lda);
	tile_t t = { .alpha = g->alpha, .gelu = g->gelu };

	for (size_t k0 = 0; k0 < K; k0 += KC) {
		size_t kc = K - k0 < KC ? K - k0 : KC;
		t.load_c = k0 > 0 || g->accumulate;
		t.last = k0 + kc == K;
		for (size_t m0 = 0; m0 < M; m0 += MC)
			row_block(g, &t, band, k0, kc, m0, n_panels, col_begin,
				  col_end, copy, block);
	}
}
