/*
 * simd_avx512.h: AVX-512F helpers shared by the files compiled for AVX-512
 * (kernels_avx512.c, gemm_avx512.c): lane masks and the vector exp, erf and
 * GELU. Include it only from those files. Private to model/.
 */
#ifndef WINNOW_SIMD_AVX512_H
#define WINNOW_SIMD_AVX512_H

#include <immintrin.h>
#include <stddef.h>

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

/* gelu_erf(v) = v/2 (1 + erf(v / sqrt 2)), as BERT's "gelu". */
static inline __m512 gelu512(__m512 v)
{
	__m512 g = _mm512_add_ps(_mm512_set1_ps(1.0f),
				 erf512(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f))));
	return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), g);
}

#endif /* WINNOW_SIMD_AVX512_H */
