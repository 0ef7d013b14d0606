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

#include <immintrin.h>
#include <math.h>

/* Lanes [0, n) of a 16-lane vector, for row tails. */
static inline __mmask16 tail_mask(size_t n)
{
	return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

/* e^x: x = n ln2 + r, |r| <= ln2/2, e^r by its degree-7 Taylor polynomial. */
static inline __m512 exp512(__m512 x)
{
	x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
	x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
	__m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
					_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
	__m512 p = _mm512_set1_ps(1.0f / 5040);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	return _mm512_scalef_ps(p, n);
}

static inline __m512 erf512(__m512 x)
{
	const __m512i sign_bit = _mm512_set1_epi32((int)0x80000000);
	__m512i xi = _mm512_castps_si512(x);
	__m512 ax = _mm512_castsi512_ps(_mm512_andnot_si512(sign_bit, xi));
	__m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f),
				 _mm512_fmadd_ps(ax, _mm512_set1_ps(0.3275911f),
						 _mm512_set1_ps(1.0f)));
	__m512 p = _mm512_set1_ps(1.061405429f);
	p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
	p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
	p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
	p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
	p = _mm512_mul_ps(p, t);
	__m512 e = exp512(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), ax), ax));
	__m512 y = _mm512_fnmadd_ps(p, e, _mm512_set1_ps(1.0f));
	return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y),
						   _mm512_and_si512(sign_bit, xi)));
}

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
};
