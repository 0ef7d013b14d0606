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

/* Row of window i's first embedded token in the gathered E. */
static size_t e_row(const winnow_ctx_t *ctx, uint32_t i)
{
	size_t r = 0;
	for (uint32_t w = 0; w < i; w++)
		r += ctx->win_tok[w];
	return r;
}

/* Rows [r0, r1) of a [* x d] matrix: dst = LayerNorm(src). */
static void layernorm_rows(const winnow_ctx_t *ctx, float *dst, const float *src,
			   size_t r0, size_t r1, const float *gamma,
			   const float *beta)
{
	size_t d = ctx->model->cfg.hidden_size;
	if (r1 <= r0)
		return;
	memcpy(dst + r0 * d, src + r0 * d, (r1 - r0) * d * sizeof(float));
	ctx->k->add_layernorm(dst + r0 * d, NULL, NULL, gamma, beta, r1 - r0, d,
			      (float)ctx->model->cfg.layer_norm_eps);
}

void winnow_combine_forward(winnow_ctx_t *ctx, unsigned tid,
			    winnow_layer_stats_t *st)
{
	const winnow_model_t *model = ctx->model;
	const winnow_combine_weights_t *cw = &model->combine;
	size_t d = model->cfg.hidden_size, m = model->cfg.combine_tokens;
	uint32_t nw = ctx->n_windows;
	size_t te = e_row(ctx, nw), wm = nw * m, r0, r1;
	winnow_gemm_t g;

	/* Gather E and C of every window into contiguous rows. */
	float *e = ctx->ffn, *c = ctx->attn;
	for (uint32_t i = tid; i < nw; i += ctx->threads) {
		const float *x = ctx->x + (size_t)ctx->win_off[i] * d;
		size_t t = ctx->win_tok[i];
		memcpy(e + e_row(ctx, i) * d, x, t * d * sizeof(float));
		memcpy(c + i * m * d, x + t * d, m * d * sizeof(float));
	}
	winnow_team_barrier(ctx->team);

	float *c_ln = e + te * d, *e_ln = ctx->tmp;
	float *k = ctx->qkv, *v = k + te * d, *q = v + te * d;
	winnow_ctx_share(ctx, tid, te, &r0, &r1);
	layernorm_rows(ctx, e_ln, e, r0, r1, cw->ln_e_w, cw->ln_e_b);
	winnow_ctx_share(ctx, tid, wm, &r0, &r1);
	layernorm_rows(ctx, c_ln, c, r0, r1, cw->ln_c_w, cw->ln_c_b);
	winnow_team_barrier(ctx->team);

	g = winnow_linear(cw->k_w, &cw->k_p, cw->k_b, te, d, d, e_ln, d, k, d);
	winnow_ctx_gemm(ctx, tid, &g);
	g = winnow_linear(cw->v_w, &cw->v_p, cw->v_b, te, d, d, e, d, v, d);
	winnow_ctx_gemm(ctx, tid, &g);
	g = winnow_linear(cw->q_w, &cw->q_p, cw->q_b, wm, d, d, c_ln, d, q, d);
	winnow_ctx_gemm(ctx, tid, &g);

	/* Hard assignment and group means, window by window. */
	float *gm = ctx->tmp;
	float *logits = ctx->members[tid].scores;
	uint32_t *count = ctx->members[tid].counts;
	for (uint32_t i = tid; i < nw; i += ctx->threads) {
		size_t t = ctx->win_tok[i], row = e_row(ctx, i);
		float *gi = gm + i * m * d;
		memset(gi, 0, m * d * sizeof(float));
		memset(count, 0, m * sizeof *count);
		winnow_gemm_t lg = {
			.m = m, .n = t, .k = d, .a = q + i * m * d, .lda = d,
			.b = k + row * d, .ldb = d, .trans_b = 1,
			.c = logits, .ldc = t, .alpha = 1.0f / sqrtf((float)d),
		};
		winnow_ctx_gemm_alone(ctx, tid, &lg);
		for (size_t j = 0; j < t; j++) {
			uint32_t a = argmax_column(logits + j, (uint32_t)m, t);
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
	}
	winnow_team_barrier(ctx->team);

	if (tid == 0) {
		for (uint32_t i = 0; i < nw; i++) {
			st->tokens_in += ctx->win_tok[i];
			ctx->win_off[i] = (uint32_t)(i * m);
			ctx->win_tok[i] = 0;
		}
		st->tokens_kept += wm;
		ctx->n_rows = wm;
		memcpy(ctx->x, c, wm * d * sizeof(float));
	}
	winnow_team_barrier(ctx->team);

	/* C' = C + G Wo^T + bo, written over x. */
	g = winnow_linear(cw->o_w, &cw->o_p, cw->o_b, wm, d, d, gm, d, ctx->x, d);
	g.accumulate = 1;
	winnow_ctx_gemm(ctx, tid, &g);
}
