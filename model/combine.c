/*
 * combine.c: the token combining module (PAPER.md 3, PAPER Eq. 9-11), at
 * inference: each kept token j of a window goes to the combination token i
 * with the highest assignment logit
 *
 *     logits[i, j] = (LN_c(C_i) Wq + bq) . (LN_e(E_j) Wk + bk) / sqrt(d)
 *
 * (no Gumbel noise at inference; ties to the lowest i), and each
 * combination token adds the projected mean of the values of its tokens:
 *
 *     C'_i = C_i + (sum_{j -> i} (E_j Wv + bv) / (|{j -> i}| + 1e-6)) Wo + bo
 *
 * Buffers (all rows contiguous, windows one after another):
 *   ffn:  E (raw) [Te x d], then LN_c(C) [W m x d]
 *   tmp:  LN_e(E) [Te x d], later the group means G [W m x d]
 *   qkv:  K [Te x d], V [Te x d], Q [W m x d]
 *   attn: C (raw) [W m x d]
 * and the result, C', replaces x: window i's m rows from row i * m.
 */
#include "encoder_internal.h"

#include <math.h>
#include <string.h>

/* The index of the largest of m logits at stride ld; ties: the lowest. */
static uint32_t argmax_column(const float *logits, uint32_t m, size_t ld)
{
	uint32_t best = 0;
	for (uint32_t i = 1; i < m; i++)
		if (logits[i * ld] > logits[best * ld])
			best = i;
	return best;
}

size_t winnow_combine_forward(winnow_ctx_t *ctx, uint32_t nw,
			      winnow_layer_stats_t *st)
{
	const winnow_model_t *model = ctx->model;
	const winnow_combine_weights_t *cw = &model->combine;
	size_t d = model->cfg.hidden_size, m = model->cfg.combine_tokens;
	float eps = (float)model->cfg.layer_norm_eps;
	size_t te = 0;

	/* Gather E and C of every window into contiguous rows. */
	float *e = ctx->ffn, *c = ctx->attn;
	for (uint32_t i = 0; i < nw; i++) {
		const float *x = ctx->x + (size_t)ctx->win_off[i] * d;
		size_t t = ctx->win_tok[i];
		memcpy(e + te * d, x, t * d * sizeof(float));
		memcpy(c + i * m * d, x + t * d, m * d * sizeof(float));
		te += t;
		st->tokens_in += t;
	}
	float *c_ln = e + te * d, *e_ln = ctx->tmp;
	float *k = ctx->qkv, *v = k + te * d, *q = v + te * d;
	size_t wm = nw * m;

	memcpy(e_ln, e, te * d * sizeof(float));
	ctx->k->add_layernorm(e_ln, NULL, NULL, cw->ln_e_w, cw->ln_e_b, te, d, eps);
	memcpy(c_ln, c, wm * d * sizeof(float));
	ctx->k->add_layernorm(c_ln, NULL, NULL, cw->ln_c_w, cw->ln_c_b, wm, d, eps);
	winnow_gemm(ctx, 1, te, d, d, 1.0f, e_ln, d, cw->k_w, d, 0.0f, k, d);
	ctx->k->add_bias(k, cw->k_b, te, d);
	winnow_gemm(ctx, 1, te, d, d, 1.0f, e, d, cw->v_w, d, 0.0f, v, d);
	ctx->k->add_bias(v, cw->v_b, te, d);
	winnow_gemm(ctx, 1, wm, d, d, 1.0f, c_ln, d, cw->q_w, d, 0.0f, q, d);
	ctx->k->add_bias(q, cw->q_b, wm, d);

	/* Hard assignment and group means, window by window. */
	float *g = ctx->tmp;
	float scale = 1.0f / sqrtf((float)d);
	size_t row = 0;
	memset(g, 0, wm * d * sizeof(float));
	for (uint32_t i = 0; i < nw; i++) {
		size_t t = ctx->win_tok[i];
		float *gi = g + i * m * d;
		uint32_t *count = (uint32_t *)ctx->colsum; /* m counters */
		memset(count, 0, m * sizeof *count);
		winnow_gemm(ctx, 1, m, t, d, scale, q + i * m * d, d, k + row * d,
			    d, 0.0f, ctx->scores, t);
		for (size_t j = 0; j < t; j++) {
			uint32_t a = argmax_column(ctx->scores + j, (uint32_t)m, t);
			const float *vj = v + (row + j) * d;
			for (size_t x = 0; x < d; x++)
				gi[a * d + x] += vj[x];
			count[a]++;
		}
		for (size_t a = 0; a < m; a++) {
			float denom = (float)count[a] + 1e-6f;
			for (size_t x = 0; x < d; x++)
				gi[a * d + x] /= denom;
		}
		row += t;
		ctx->win_off[i] = (uint32_t)(i * m);
		ctx->win_tok[i] = 0;
	}

	/* C' = C + G Wo^T + bo, written over x. */
	memcpy(ctx->x, c, wm * d * sizeof(float));
	winnow_gemm(ctx, 1, wm, d, d, 1.0f, g, d, cw->o_w, d, 1.0f, ctx->x, d);
	ctx->k->add_bias(ctx->x, cw->o_b, wm, d);
	st->tokens_kept += wm;
	return wm;
}
