/*
 * gemm.h: the engine's matrix products, C = alpha A op(B) (+ C) (+ bias),
 * optionally followed by GELU. Private to model/.
 *
 * Two implementations behind one call (kernels.h chooses, once per
 * process): the portable one calls OpenBLAS's sgemm; the AVX-512 one runs
 * winnow's own micro-kernel over weights packed once, at load, into
 * column panels, and fuses the bias and GELU into the store of C. OpenBLAS
 * packs both operands on every call; a weight never changes, so packing it
 * once saves that work and lets the kernel stream it.
 *
 * Layout: row-major. A is [m x k] (stride lda); B is [n x k] (an
 * nn.Linear weight, "trans") or [k x n]; C is [m x n] (stride ldc). Panels:
 * B split into ceil(n / 32) panels of 32 columns, panel p stored as [k x 32]
 * (its columns side by side for each k), the last one zero-padded.
 *
 * Every call computes a band of C's columns, [col_begin, col_end), so that
 * threads split a product between them by columns (each element of C is
 * computed by one thread, in the same order whatever the thread count: the
 * results do not depend on it). Band edges are multiples of 32 but for the
 * last.
 */
#ifndef WINNOW_GEMM_H
#define WINNOW_GEMM_H

#include <stddef.h>

#define WINNOW_PANEL_COLS 32

/*
 * Blocking of the AVX-512 product (gemm_avx512.c): a micro-kernel computes
 * 12 rows x 32 columns of C over KC steps of k, with 24 accumulators,
 * reading 12 rows of A in place; MC rows of A pass over every panel of the
 * band before the next MC. A panel's KC x 32 slice (96 KiB) and MC x KC of
 * A (288 KiB) sit in the 1 MiB L2 of the Zen 4/5 cores winnow runs on.
 * KC = 768 takes BERT's hidden size in one block, so C is written once
 * (at 384, a batch of 8 x 512 tokens wrote and re-read 38 MB of C, more
 * than L3); with 2 threads on Zen 4 it measured 1.03-1.06x OpenBLAS's
 * sgemm on the encoder's shapes, against 0.96-1.02x at KC = 384 (M = 512
 * and 4096; N, K = 2304, 768 / 768, 3072 / 3072, 768).
 */
#define WINNOW_GEMM_MR 12
#ifndef WINNOW_GEMM_KC /* overridable for tuning experiments only */
#define WINNOW_GEMM_KC 768
#endif
#ifndef WINNOW_GEMM_MC
#define WINNOW_GEMM_MC 96
#endif

typedef struct {
	const float *data;  /* [ceil(n / 32)][k][32] */
	size_t n, k;
} winnow_panels_t;

/* Floats of the panels of an n x k operand. */
size_t winnow_panels_floats(size_t n, size_t k);

/*
 * Packs columns [col_begin, col_end) of B (col_begin a multiple of 32) into
 * panels at dst, panel p of the band at dst + p * k * 32. trans: B is
 * [n x k] (row j of B is column j of op(B)); else [k x n].
 */
void winnow_panels_pack(float *dst, const float *B, size_t ldb, int trans,
			size_t k, size_t col_begin, size_t col_end);

typedef struct {
	size_t m, n, k;
	const float *a;
	size_t lda;
	/* B: packed panels when the caller has them (weights, AVX-512 path),
	 * else the plain matrix (packed into scratch by the AVX-512 path). */
	const winnow_panels_t *panels;
	const float *b;
	size_t ldb;
	int trans_b;
	float *c;
	size_t ldc;
	float alpha;        /* must be 1 when accumulate */
	int accumulate;     /* C += ..., else C = ... */
	const float *bias;  /* [n] added to every row, or NULL */
	int gelu;           /* then C = gelu_erf(C) */
} winnow_gemm_t;

/*
 * Scratch each calling thread must pass, in floats (64-byte aligned), for
 * products whose B is at most max_b_floats floats (k x n) when it must be
 * packed on the fly.
 */
size_t winnow_gemm_scratch_floats(size_t max_b_floats);

/* The OpenBLAS implementation (any x86-64); scratch is unused. */
void winnow_gemm_portable(const winnow_gemm_t *g, size_t col_begin,
			  size_t col_end, float *scratch);

/* The AVX-512 implementation, defined in gemm_avx512.c; only called once
 * kernels.c has checked the CPU. scratch: winnow_gemm_scratch_floats(). */
void winnow_gemm_avx512(const winnow_gemm_t *g, size_t col_begin,
			size_t col_end, float *scratch);

#endif /* WINNOW_GEMM_H */
