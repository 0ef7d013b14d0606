/*
 * encoder.c: the BERT encoder and head over ragged batches of windows.
 *
 * A batch is a list of windows of different lengths. Their tokens are
 * concatenated into one [T x d] matrix (T = the sum of the lengths), so the
 * dense parts of a layer (the fused Q/K/V projection, the output projection
 * and the feed-forward) are each one GEMM over all T tokens and no padding is
 * ever computed; attention runs per window and per head, where its n x n
 * score matrix stays in cache.
 *
 * Layout: row-major. X is [T x d]; QKV is [T x 3d] with the Q, K and V of a
 * token side by side (head h's Q at columns h*dh .. h*dh+dh-1); weights are
 * [out x in] (torch.nn.Linear), hence the transposed B in every sgemm.
 *
 * Every buffer is allocated once, in winnow_ctx_new, for the largest batch
 * the context will run: fresh pages cost ~12 us each to fault on these VMs,
 * and a forward pass must not allocate.
 */
#include "kernels.h"
#include "model_internal.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct winnow_ctx_s {
	const winnow_model_t *model;
	const winnow_kernels_t *k;
	uint32_t max_windows, max_tokens, max_len;
	int profile;

	void *arena;      /* one allocation backing every buffer below */
	float *x;         /* [max_tokens x d] hidden states */
	float *qkv;       /* [max_tokens x 3d] */
	float *attn;      /* [max_tokens x d] attention output (per head cols) */
	float *tmp;       /* [max_tokens x d] sublayer output before the LN */
	float *ffn;       /* [max_tokens x I] */
	float *scores;    /* [max_len x max_len] one head of one window */
	float *pooled;    /* [max_windows x d] */
	uint32_t *win_off;/* [max_windows] first row of each window in x */
	uint32_t *win_len;/* [max_windows] rows of each window */

	winnow_ctx_stats_t stats;
};

winnow_ctx_params_t winnow_ctx_default_params(void)
{
	winnow_ctx_params_t p = { .max_windows = 8, .max_tokens = 8 * 512,
				  .profile = 0 };
	return p;
}

static size_t round_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

winnow_ctx_t *winnow_ctx_new(const winnow_model_t *model,
			     const winnow_ctx_params_t *params,
			     char *errstr, size_t errstr_size)
{
	winnow_ctx_params_t defaults = winnow_ctx_default_params();
	const winnow_model_config_t *c = &model->cfg;
	if (!params)
		params = &defaults;
	if (params->max_windows == 0 || params->max_tokens == 0) {
		snprintf(errstr, errstr_size,
			 "cannot create engine context: max_windows and max_tokens must be positive");
		return NULL;
	}
	/* Pruning and combining arrive with the method (PAPER.md 2-3). */
	if (c->keep_ratio < 1.0 || c->combine_layer < c->num_layers) {
		snprintf(errstr, errstr_size,
			 "cannot create engine context: model '%s' uses token pruning or combining, which this engine does not run yet",
			 c->name);
		return NULL;
	}
	winnow_ctx_t *ctx = calloc(1, sizeof *ctx);
	if (!ctx)
		goto out_nomem;
	ctx->model = model;
	ctx->k = winnow_kernels();
	ctx->max_windows = params->max_windows;
	ctx->max_tokens = params->max_tokens;
	ctx->max_len = c->max_seq_len < params->max_tokens ? c->max_seq_len
							   : params->max_tokens;
	ctx->profile = params->profile;

	size_t T = ctx->max_tokens, d = c->hidden_size, W = ctx->max_windows;
	size_t sizes[] = {
		T * d, T * 3 * d, T * d, T * d, T * c->intermediate_size,
		(size_t)ctx->max_len * ctx->max_len, W * d, W, W,
	};
	size_t elem[] = { 4, 4, 4, 4, 4, 4, 4, 4, 4 };
	size_t total = 0, off[9];
	for (int i = 0; i < 9; i++) {
		off[i] = total;
		total += round_up(sizes[i] * elem[i], 64);
	}
	if (posix_memalign(&ctx->arena, 64, total))
		goto out_free_ctx;
	/* Fault every page in now, once, rather than in the first forwards. */
	memset(ctx->arena, 0, total);
	char *a = ctx->arena;
	ctx->x = (float *)(a + off[0]);
	ctx->qkv = (float *)(a + off[1]);
	ctx->attn = (float *)(a + off[2]);
	ctx->tmp = (float *)(a + off[3]);
	ctx->ffn = (float *)(a + off[4]);
	ctx->scores = (float *)(a + off[5]);
	ctx->pooled = (float *)(a + off[6]);
	ctx->win_off = (uint32_t *)(a + off[7]);
	ctx->win_len = (uint32_t *)(a + off[8]);
	return ctx;

out_free_ctx:
	free(ctx);
out_nomem:
	snprintf(errstr, errstr_size,
		 "cannot create engine context: out of memory for %u tokens",
		 params->max_tokens);
	return NULL;
}

void winnow_ctx_destroy(winnow_ctx_t *ctx)
{
	if (!ctx)
		return;
	free(ctx->arena);
	free(ctx);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * C[m x n] = alpha * A[m x k] * op(B) + beta * C, row-major; B is [n x k]
 * (an nn.Linear weight) when trans_b, else [k x n]. Counted when profiling.
 */
static void gemm(winnow_ctx_t *ctx, int trans_b, size_t m, size_t n,
		 size_t k, float alpha, const float *A, size_t lda,
		 const float *B, size_t ldb, float beta, float *C, size_t ldc)
{
	uint64_t t0 = ctx->profile ? now_ns() : 0;
	cblas_sgemm(CblasRowMajor, CblasNoTrans,
		    trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
		    alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
	if (ctx->profile) {
		ctx->stats.gemm_ns += now_ns() - t0;
		ctx->stats.gemm_flops += 2.0 * (double)m * (double)n * (double)k;
	}
}

/* x[T x d] = LayerNorm(word + position + token type 0), per window. */
static void embed(winnow_ctx_t *ctx, const winnow_window_t *w, uint32_t nw)
{
	const winnow_model_t *m = ctx->model;
	size_t d = m->cfg.hidden_size;
	for (uint32_t i = 0; i < nw; i++) {
		float *x = ctx->x + (size_t)ctx->win_off[i] * d;
		for (uint32_t t = 0; t < w[i].n; t++) {
			memcpy(x + t * d, m->word_emb + (size_t)w[i].ids[t] * d,
			       d * sizeof(float));
			ctx->k->add_layernorm(x + t * d, m->pos_emb + (size_t)t * d,
					      m->type_emb, m->emb_ln_w, m->emb_ln_b,
					      1, d, (float)m->cfg.layer_norm_eps);
		}
	}
}

/* Multi-head self-attention of each window over its own rows of qkv. */
static void attention(winnow_ctx_t *ctx, uint32_t nw)
{
	const winnow_model_config_t *c = &ctx->model->cfg;
	size_t d = c->hidden_size, H = c->num_heads, dh = d / H;
	float scale = 1.0f / sqrtf((float)dh); /* PAPER.md 2: sqrt(d/H) */
	for (uint32_t i = 0; i < nw; i++) {
		size_t n = ctx->win_len[i];
		const float *qkv = ctx->qkv + (size_t)ctx->win_off[i] * 3 * d;
		float *out = ctx->attn + (size_t)ctx->win_off[i] * d;
		for (size_t h = 0; h < H; h++) {
			const float *q = qkv + h * dh;
			const float *kk = qkv + d + h * dh;
			const float *v = qkv + 2 * d + h * dh;
			gemm(ctx, 1, n, n, dh, scale, q, 3 * d, kk, 3 * d, 0.0f,
			     ctx->scores, n);
			ctx->k->softmax_rows(ctx->scores, n, n, n);
			gemm(ctx, 0, n, dh, n, 1.0f, ctx->scores, n, v, 3 * d,
			     0.0f, out + h * dh, d);
		}
	}
}

/* One post-LN BERT layer over the T rows of ctx->x. */
static void layer_forward(winnow_ctx_t *ctx, const winnow_layer_weights_t *L,
			  size_t T, uint32_t nw)
{
	const winnow_model_config_t *c = &ctx->model->cfg;
	size_t d = c->hidden_size, inter = c->intermediate_size;
	float eps = (float)c->layer_norm_eps;

	gemm(ctx, 1, T, 3 * d, d, 1.0f, ctx->x, d, L->qkv_w, d, 0.0f, ctx->qkv, 3 * d);
	ctx->k->add_bias(ctx->qkv, L->qkv_b, T, 3 * d);
	attention(ctx, nw);
	gemm(ctx, 1, T, d, d, 1.0f, ctx->attn, d, L->out_w, d, 0.0f, ctx->tmp, d);
	ctx->k->add_layernorm(ctx->x, ctx->tmp, L->out_b, L->attn_ln_w,
			      L->attn_ln_b, T, d, eps);
	gemm(ctx, 1, T, inter, d, 1.0f, ctx->x, d, L->up_w, d, 0.0f, ctx->ffn, inter);
	ctx->k->bias_gelu(ctx->ffn, L->up_b, T, inter);
	gemm(ctx, 1, T, d, inter, 1.0f, ctx->ffn, inter, L->down_w, inter, 0.0f, ctx->tmp, d);
	ctx->k->add_layernorm(ctx->x, ctx->tmp, L->down_b, L->ffn_ln_w,
			      L->ffn_ln_b, T, d, eps);
}

/* Sequence representation per window, then the classifier (PAPER.md 4). */
static void head(winnow_ctx_t *ctx, uint32_t nw, float *logits)
{
	const winnow_model_t *m = ctx->model;
	size_t d = m->cfg.hidden_size;
	float *pooled = ctx->pooled;

	for (uint32_t i = 0; i < nw; i++) {
		const float *x = ctx->x + (size_t)ctx->win_off[i] * d;
		float *p = pooled + (size_t)i * d;
		if (m->cfg.pooling == WINNOW_POOLING_CLS) {
			memcpy(p, x, d * sizeof(float)); /* [CLS] is row 0 */
		} else {
			size_t n = ctx->win_len[i];
			memset(p, 0, d * sizeof(float));
			for (size_t t = 0; t < n; t++)
				for (size_t j = 0; j < d; j++)
					p[j] += x[t * d + j];
			for (size_t j = 0; j < d; j++)
				p[j] /= (float)n;
		}
	}
	if (m->pooler_w) {
		gemm(ctx, 1, nw, d, d, 1.0f, pooled, d, m->pooler_w, d, 0.0f,
		     ctx->tmp, d);
		ctx->k->bias_tanh(ctx->tmp, m->pooler_b, nw, d);
		pooled = ctx->tmp;
	}
	gemm(ctx, 1, nw, m->cfg.num_labels, d, 1.0f, pooled, d, m->cls_w, d,
	     0.0f, logits, m->cfg.num_labels);
	ctx->k->add_bias(logits, m->cls_b, nw, m->cfg.num_labels);
}

static winnow_err_t check_batch(winnow_ctx_t *ctx, const winnow_window_t *w,
				uint32_t nw, size_t *total,
				char *errstr, size_t errstr_size)
{
	const winnow_model_config_t *c = &ctx->model->cfg;
	size_t T = 0;
	if (nw == 0 || nw > ctx->max_windows) {
		snprintf(errstr, errstr_size,
			 "cannot run batch: %u windows, this context takes 1..%u",
			 nw, ctx->max_windows);
		return WINNOW_ERR_ARG;
	}
	for (uint32_t i = 0; i < nw; i++) {
		if (w[i].n == 0 || w[i].n > ctx->max_len) {
			snprintf(errstr, errstr_size,
				 "cannot run batch: window %u has %u tokens, the model takes 1..%u",
				 i, w[i].n, ctx->max_len);
			return WINNOW_ERR_ARG;
		}
		for (uint32_t t = 0; t < w[i].n; t++) {
			if (w[i].ids[t] < 0 || (uint32_t)w[i].ids[t] >= c->vocab_size) {
				snprintf(errstr, errstr_size,
					 "cannot run batch: window %u token %u has id %d, the vocabulary has %u",
					 i, t, w[i].ids[t], c->vocab_size);
				return WINNOW_ERR_ARG;
			}
		}
		ctx->win_off[i] = (uint32_t)T;
		ctx->win_len[i] = w[i].n;
		T += w[i].n;
	}
	if (T > ctx->max_tokens) {
		snprintf(errstr, errstr_size,
			 "cannot run batch: %zu tokens, this context takes at most %u",
			 T, ctx->max_tokens);
		return WINNOW_ERR_TOO_LARGE;
	}
	*total = T;
	return WINNOW_OK;
}

winnow_err_t winnow_ctx_forward(winnow_ctx_t *ctx,
				const winnow_window_t *windows,
				uint32_t n_windows, float *logits,
				char *errstr, size_t errstr_size)
{
	const winnow_model_t *m = ctx->model;
	uint64_t t0 = now_ns();
	size_t T;
	winnow_err_t err = check_batch(ctx, windows, n_windows, &T, errstr,
				       errstr_size);
	if (err)
		return err;

	embed(ctx, windows, n_windows);
	for (uint32_t l = 0; l < m->cfg.num_layers; l++)
		layer_forward(ctx, &m->layers[l], T, n_windows);
	head(ctx, n_windows, logits);

	ctx->stats.forward_ns += now_ns() - t0;
	ctx->stats.forwards++;
	ctx->stats.tokens += T;
	return WINNOW_OK;
}

void winnow_ctx_stats(const winnow_ctx_t *ctx, winnow_ctx_stats_t *out)
{
	*out = ctx->stats;
}

void winnow_ctx_stats_reset(winnow_ctx_t *ctx)
{
	memset(&ctx->stats, 0, sizeof ctx->stats);
}
