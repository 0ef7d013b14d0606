/*
 * kernels.c: portable kernels and the run-time choice of kernel set.
 * The portable set is the specification the AVX-512 set is tested against.
 */
#include "kernels.h"
#include "winnow_model.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void add_bias_portable(float *x, const float *bias, size_t rows,
			      size_t cols)
{
	for (size_t r = 0; r < rows; r++, x += cols)
		for (size_t c = 0; c < cols; c++)
			x[c] += bias[c];
}

static void bias_gelu_portable(float *x, const float *bias, size_t rows,
			       size_t cols)
{
	for (size_t r = 0; r < rows; r++, x += cols) {
		for (size_t c = 0; c < cols; c++) {
			float v = x[c] + bias[c];
			x[c] = 0.5f * v * (1.0f + erff(v * (float)M_SQRT1_2));
		}
	}
}

static void bias_tanh_portable(float *x, const float *bias, size_t rows,
			       size_t cols)
{
	for (size_t r = 0; r < rows; r++, x += cols)
		for (size_t c = 0; c < cols; c++)
			x[c] = tanhf(x[c] + bias[c]);
}

static void add_layernorm_portable(float *x, const float *y, const float *bias,
				   const float *gamma, const float *beta,
				   size_t rows, size_t cols, float eps)
{
	for (size_t r = 0; r < rows; r++, x += cols) {
		float sum = 0;
		for (size_t c = 0; c < cols; c++) {
			float v = x[c] + (y ? y[r * cols + c] : 0.0f) +
				  (bias ? bias[c] : 0.0f);
			x[c] = v;
			sum += v;
		}
		float mean = sum / (float)cols, var = 0;
		for (size_t c = 0; c < cols; c++) {
			float dv = x[c] - mean;
			var += dv * dv;
		}
		float inv = 1.0f / sqrtf(var / (float)cols + eps);
		for (size_t c = 0; c < cols; c++)
			x[c] = (x[c] - mean) * inv * gamma[c] + beta[c];
	}
}

static void colsum_add_portable(double *acc, const float *x, size_t rows,
				size_t cols, size_t ld)
{
	for (size_t r = 0; r < rows; r++, x += ld)
		for (size_t c = 0; c < cols; c++)
			acc[c] += (double)x[c];
}

static void softmax_rows_portable(float *x, size_t rows, size_t cols,
				  size_t ld)
{
	for (size_t r = 0; r < rows; r++, x += ld)
		winnow_softmax(x, x, cols);
}

void winnow_softmax(const float *logits, float *probs, size_t n)
{
	if (n == 0)
		return;
	float max = logits[0], sum = 0;
	for (size_t i = 1; i < n; i++)
		if (logits[i] > max)
			max = logits[i];
	for (size_t i = 0; i < n; i++) {
		probs[i] = expf(logits[i] - max);
		sum += probs[i];
	}
	float inv = 1.0f / sum;
	for (size_t i = 0; i < n; i++)
		probs[i] *= inv;
}

static const winnow_kernels_t portable = {
	.name = "portable",
	.add_bias = add_bias_portable,
	.bias_gelu = bias_gelu_portable,
	.add_layernorm = add_layernorm_portable,
	.softmax_rows = softmax_rows_portable,
	.colsum_add = colsum_add_portable,
	.bias_tanh = bias_tanh_portable,
	.gemm = winnow_gemm_portable,
	.packs_weights = 0,
};

const winnow_kernels_t *winnow_kernels_portable(void)
{
	return &portable;
}

/* Defined in kernels_avx512.c, the only file built for AVX-512. The CPU
 * check lives here, in code compiled for any x86-64. */
extern const winnow_kernels_t winnow_kernels_avx512_set;

const winnow_kernels_t *winnow_kernels_avx512(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
	    __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
		return &winnow_kernels_avx512_set;
#endif
	return NULL;
}

static const winnow_kernels_t *chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose(void)
{
	const char *force = getenv("WINNOW_KERNELS");
	chosen = &portable;
	if (force && !strcmp(force, "portable"))
		return;
	const winnow_kernels_t *k = winnow_kernels_avx512();
	if (k)
		chosen = k;
}

const winnow_kernels_t *winnow_kernels(void)
{
	pthread_once(&chosen_once, choose);
	return chosen;
}

const char *winnow_kernels_name(void)
{
	return winnow_kernels()->name;
}
