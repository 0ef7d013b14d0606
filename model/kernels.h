/*
 * kernels.h: the element-wise and row-wise kernels of the encoder, with a
 * portable C version and an AVX-512 version chosen once at run time (the
 * binaries must run on any x86-64, whatever the build machine had).
 * Private to model/.
 *
 * Layout: every matrix is row-major, rows x cols, contiguous unless an ld
 * (leading dimension, in floats) is given.
 */
#ifndef WINNOW_KERNELS_H
#define WINNOW_KERNELS_H

#include "gemm.h"

#include <stddef.h>

typedef struct {
	const char *name;
	/* x[r][c] += bias[c] */
	void (*add_bias)(float *x, const float *bias, size_t rows, size_t cols);
	/* x[r][c] = gelu_erf(x[r][c] + bias[c]) */
	void (*bias_gelu)(float *x, const float *bias, size_t rows, size_t cols);
	/*
	 * x[r] = LayerNorm(x[r] + y[r] + bias) * gamma + beta: the residual
	 * add of a post-LN BERT sublayer. y may be NULL (nothing added).
	 */
	void (*add_layernorm)(float *x, const float *y, const float *bias,
			      const float *gamma, const float *beta,
			      size_t rows, size_t cols, float eps);
	/* Each row of x (stride ld) becomes its softmax. */
	void (*softmax_rows)(float *x, size_t rows, size_t cols, size_t ld);
	/*
	 * acc[c] += sum over the rows of x[r][c] (stride ld), in double: the
	 * column sums of attention probabilities that make the importance
	 * scores (PAPER.md 2), as exact as the reference's.
	 */
	void (*colsum_add)(double *acc, const float *x, size_t rows,
			   size_t cols, size_t ld);
	/* x[r][c] = tanh(x[r][c] + bias[c]) (the [CLS] pooler) */
	void (*bias_tanh)(float *x, const float *bias, size_t rows, size_t cols);
	/* The columns [col_begin, col_end) of a product (gemm.h). */
	void (*gemm)(const winnow_gemm_t *g, size_t col_begin, size_t col_end,
		     float *scratch);
	/* 1: gemm reads packed weights (winnow_panels_t), made at load. */
	int packs_weights;
} winnow_kernels_t;

/* The kernels for this CPU; WINNOW_KERNELS=portable in the environment
 * forces the portable set (tests compare the two). */
const winnow_kernels_t *winnow_kernels(void);

const winnow_kernels_t *winnow_kernels_portable(void);
/* NULL when the CPU (or the compiler) has no AVX-512. */
const winnow_kernels_t *winnow_kernels_avx512(void);

#endif /* WINNOW_KERNELS_H */
