/*
 * kernels_avx512.c: AVX-512F versions of the kernels in kernels.h.
 *
 * This is the only file compiled with -mavx512f; kernels.c checks the CPU
 * before anything here runs. Every kernel matches the portable version in
 * kernels.c to float rounding (tests/test_kernels.c compares them); exp and
 * erf are polynomial approximations accurate to a few units in the last
 * place (exp) and 1.5e-7 absolute (erf, Abramowitz & Stegun 7.1.26).
 */
#include "kernels.h"

#include "simd_avx512.h"

#include <math.h>

static void add_bias_avx512(float *x, const float *bias, size_t rows,
			    size_t cols)
{
	for (size_t r = 0; r < rows; r++, x += cols) {
		for (size_t c = 0; c < cols; c += 16) {
			__mmask16 m = tail_mask(cols - c);
			__m512 v = _mm512_maskz_loadu_ps(m, x + c);
			v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + c));
			_mm512_mask_storeu_ps(x + c, m, v);
		}
	}
}

static void bias_gelu_avx512(float *x, const float *bias, size_t rows,
			     size_t cols)
{
	const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
	const __m512 rsqrt2 = _mm512_set1_ps(0.70710678118654752f);
	for (size_t r = 0; r < rows; r++, x += cols) {
		for (size_t c = 0; c < cols; c += 16) {
			__mmask16 m = tail_mask(cols - c);
			__m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + c),
						 _mm512_maskz_loadu_ps(m, bias + c));
			__m512 g = _mm512_add_ps(one, erf512(_mm512_mul_ps(v, rsqrt2)));
			_mm512_mask_storeu_ps(x + c, m,
					      _mm512_mul_ps(_mm512_mul_ps(half, v), g));
		}
	}
}

static void bias_tanh_avx512(float *x, const float *bias, size_t rows,
			     size_t cols)
{
	/* d values per window: not worth a vector tanh. */
	for (size_t r = 0; r < rows; r++, x += cols)
		for (size_t c = 0; c < cols; c++)
			x[c] = tanhf(x[c] + bias[c]);
}

static void add_layernorm_avx512(float *x, const float *y, const float *bias,
				 const float *gamma, const float *beta,
				 size_t rows, size_t cols, float eps)
{
	for (size_t r = 0; r < rows; r++, x += cols) {
		const float *yr = y ? y + r * cols : NULL;
		__m512 sum = _mm512_setzero_ps();
		for (size_t c = 0; c < cols; c += 16) {
			__mmask16 m = tail_mask(cols - c);
			__m512 v = _mm512_maskz_loadu_ps(m, x + c);
			if (yr)
				v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, yr + c));
			if (bias)
				v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + c));
			_mm512_mask_storeu_ps(x + c, m, v);
			sum = _mm512_add_ps(sum, v);
		}
		float mean = _mm512_reduce_add_ps(sum) / (float)cols;
		__m512 vmean = _mm512_set1_ps(mean), var = _mm512_setzero_ps();
		for (size_t c = 0; c < cols; c += 16) {
			__mmask16 m = tail_mask(cols - c);
			__m512 dv = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + c), vmean);
			var = _mm512_fmadd_ps(dv, dv, var);
		}
		float inv = 1.0f / sqrtf(_mm512_reduce_add_ps(var) / (float)cols + eps);
		__m512 vinv = _mm512_set1_ps(inv);
		for (size_t c = 0; c < cols; c += 16) {
			__mmask16 m = tail_mask(cols - c);
			__m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + c), vmean);
			v = _mm512_mul_ps(_mm512_mul_ps(v, vinv), _mm512_maskz_loadu_ps(m, gamma + c));
			v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, beta + c));
			_mm512_mask_storeu_ps(x + c, m, v);
		}
	}
}

static void softmax_rows_avx512(float *x, size_t rows, size_t cols, size_t ld)
{
	for (size_t r = 0; r < rows; r++, x += ld) {
		__m512 vmax = _mm512_set1_ps(-INFINITY);
		for (size_t c = 0; c < cols; c += 16) {
			__mmask16 m = tail_mask(cols - c);
			vmax = _mm512_mask_max_ps(vmax, m, vmax, _mm512_maskz_loadu_ps(m, x + c));
		}
		__m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
		__m512 sum = _mm512_setzero_ps();
		for (size_t c = 0; c < cols; c += 16) {
			__mmask16 m = tail_mask(cols - c);
			__m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + c), max));
			e = _mm512_maskz_mov_ps(m, e);
			_mm512_mask_storeu_ps(x + c, m, e);
			sum = _mm512_add_ps(sum, e);
		}
		__m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
		for (size_t c = 0; c < cols; c += 16) {
			__mmask16 m = tail_mask(cols - c);
			_mm512_mask_storeu_ps(x + c, m,
					      _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + c), inv));
		}
	}
}

static void colsum_add_avx512(double *acc, const float *x, size_t rows,
			      size_t cols, size_t ld)
{
	for (size_t c = 0; c < cols; c += 8) {
		size_t left = cols - c;
		__mmask8 m = left >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << left) - 1);
		__m512d sum = _mm512_maskz_loadu_pd(m, acc + c);
		for (size_t r = 0; r < rows; r++) {
			__m256 v = _mm256_maskz_loadu_ps(m, x + r * ld + c);
			sum = _mm512_add_pd(sum, _mm512_cvtps_pd(v));
		}
		_mm512_mask_storeu_pd(acc + c, m, sum);
	}
}

const winnow_kernels_t winnow_kernels_avx512_set = {
	.name = "avx512",
	.add_bias = add_bias_avx512,
	.bias_gelu = bias_gelu_avx512,
	.add_layernorm = add_layernorm_avx512,
	.softmax_rows = softmax_rows_avx512,
	.colsum_add = colsum_add_avx512,
	.bias_tanh = bias_tanh_avx512,
	.gemm = winnow_gemm_avx512,
	.packs_weights = 1,
};
