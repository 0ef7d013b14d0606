/*
 * encoder.c: the BERT encoder with fuzzy token pruning and token combining
 * (PAPER.md sections 1-5) over ragged batches of windows.
 *
 * A batch is a list of windows of different lengths. Their rows are
 * concatenated into one matrix, so the dense parts of a layer (the fused
 * Q/K/V projection, the output projection and the feed-forward) are each one
 * GEMM over all rows and no padding is ever computed; attention runs per
 * window and per head, where its score matrix stays in cache.
 *
 * Rows of a window: its kept embedded tokens in position order, then its m
 * combination tokens (PAPER.md 1). After the attention of each pruned layer
 * the leaving tokens' rows are dropped physically (PAPER.md 2, OURS): the
 * output projection and feed-forward of that layer, and everything after,
 * run on the kept rows only. The combining module (combine.c) then reduces
 * each window to its m combined rows.
 *
 * Layout: row-major. X is [rows x d]; QKV is [rows x 3d] with the Q, K and V
 * of a row side by side (head h's Q at columns h*dh .. h*dh+dh-1); weights
 * are [out x in] (torch.nn.Linear), hence the transposed B in every sgemm.
 *
 * Every buffer is allocated once, in winnow_ctx_new, for the largest batch
 * the context will run: fresh pages cost ~12 us each to fault on these VMs,
 * and a forward pass must not allocate.
 */
#include "encoder_internal.h"
#include "prune.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* Carves `bytes` (64-byte aligned) out of the arena cursor. */
static void *carve(char **cursor, size_t bytes)
{
	void *p = *cursor;
	*cursor += round_up(bytes, 64);
	return p;
}

static size_t arena_layout(winnow_ctx_t *ctx, char *base)
{
	const winnow_model_config_t *c = &ctx->model->cfg;
	size_t R = ctx->max_rows, d = c->hidden_size, W = ctx->max_windows;
	size_t n = (size_t)ctx->max_len + c->combine_tokens; /* rows of a window */
	char *cur = base;

	ctx->x = carve(&cur, R * d * sizeof(float));
	ctx->qkv = carve(&cur, R * 3 * d * sizeof(float));
	ctx->attn = carve(&cur, R * d * sizeof(float));
	ctx->tmp = carve(&cur, R * d * sizeof(float));
	ctx->ffn = carve(&cur, R * c->intermediate_size * sizeof(float));
	ctx->scores = carve(&cur, n * n * sizeof(float));
	ctx->pooled = carve(&cur, W * d * sizeof(float));
	ctx->win_off = carve(&cur, W * sizeof(uint32_t));
	ctx->win_tok = carve(&cur, W * sizeof(uint32_t));
	ctx->row_pos = carve(&cur, R * sizeof(uint32_t));
	ctx->colsum = carve(&cur, n * sizeof(double));
	ctx->importance = carve(&cur, n * sizeof(double));
	ctx->leave = carve(&cur, n);
	ctx->prune_scratch = carve(&cur, winnow_prune_scratch_size((uint32_t)n));
	ctx->ret_n = carve(&cur, W * sizeof(uint32_t));
	ctx->ret_pos = carve(&cur, W * ctx->max_len * sizeof(uint32_t));
	ctx->ret_score = carve(&cur, W * ctx->max_len * sizeof(double));
	ctx->layer_stats = carve(&cur, c->num_layers * sizeof(winnow_layer_stats_t));
	return (size_t)(cur - base);
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
	winnow_ctx_t *ctx = calloc(1, sizeof *ctx);
	if (!ctx)
		goto out_nomem;
	ctx->model = model;
	ctx->k = winnow_kernels();
	ctx->max_windows = params->max_windows;
	ctx->max_tokens = params->max_tokens;
	ctx->max_len = c->max_seq_len < params->max_tokens ? c->max_seq_len
							   : params->max_tokens;
	ctx->max_rows = params->max_tokens +
			(size_t)params->max_windows * c->combine_tokens;
	ctx->profile = params->profile;
	ctx->pruned_layers = c->combine_layer; /* P; = L without combining */
	ctx->rule.keep_ratio = c->keep_ratio;
	ctx->rule.fuzzy = c->fuzzy;
	ctx->rule.fuzzy_mode = c->fuzzy_mode;

	size_t total = arena_layout(ctx, NULL);
	if (posix_memalign(&ctx->arena, 64, total))
		goto out_free_ctx;
	ctx->arena_bytes = total;
	/* Fault every page in now, once, rather than in the first forwards. */
	memset(ctx->arena, 0, total);
	arena_layout(ctx, ctx->arena);
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

size_t winnow_ctx_memory(const winnow_ctx_t *ctx)
{
	return ctx->arena_bytes;
}

const char *winnow_blas_describe(void)
{
	static __thread char buf[128];
	snprintf(buf, sizeof buf, "OpenBLAS core %s, %d threads",
		 openblas_get_corename(), openblas_get_num_threads());
	return buf;
}

void winnow_blas_set_threads(int n)
{
	openblas_set_num_threads(n);
}

uint64_t winnow_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void winnow_gemm(winnow_ctx_t *ctx, int trans_b, size_t m, size_t n, size_t k,
		 float alpha, const float *A, size_t lda, const float *B,
		 size_t ldb, float beta, float *C, size_t ldc)
{
	uint64_t t0 = ctx->profile ? winnow_now_ns() : 0;
	cblas_sgemm(CblasRowMajor, CblasNoTrans,
		    trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
		    alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
	if (ctx->profile) {
		ctx->stats.gemm_ns += winnow_now_ns() - t0;
		ctx->stats.gemm_flops += 2.0 * (double)m * (double)n * (double)k;
	}
}

/*
 * Embedding (PAPER.md 1): x = LayerNorm(word + position + token type 0) for
 * each token, then the m combination tokens as they are (no position or
 * type embedding, no LayerNorm).
 */
static void embed(winnow_ctx_t *ctx, const winnow_window_t *w, uint32_t nw)
{
	const winnow_model_t *m = ctx->model;
	size_t d = m->cfg.hidden_size, mc = m->cfg.combine_tokens;
	for (uint32_t i = 0; i < nw; i++) {
		float *x = ctx->x + (size_t)ctx->win_off[i] * d;
		uint32_t *pos = ctx->row_pos + ctx->win_off[i];
		for (uint32_t t = 0; t < w[i].n; t++) {
			memcpy(x + t * d, m->word_emb + (size_t)w[i].ids[t] * d,
			       d * sizeof(float));
			ctx->k->add_layernorm(x + t * d, m->pos_emb + (size_t)t * d,
					      m->type_emb, m->emb_ln_w, m->emb_ln_b,
					      1, d, (float)m->cfg.layer_norm_eps);
			pos[t] = t;
		}
		if (mc)
			memcpy(x + (size_t)w[i].n * d, m->combine.tokens,
			       mc * d * sizeof(float));
		for (size_t j = 0; j < mc; j++)
			pos[w[i].n + j] = UINT32_MAX;
	}
}

static uint32_t win_rows(const winnow_ctx_t *ctx, uint32_t i)
{
	return ctx->win_tok[i] + ctx->model->cfg.combine_tokens;
}

/*
 * Multi-head self-attention of window i over its own rows. With scores set,
 * also s(j) for its embedded tokens (PAPER.md 2, Importance): the mean over
 * heads and over all present query rows of the attention probabilities,
 * summed in double.
 */
static void attention_window(winnow_ctx_t *ctx, uint32_t i, double *scores)
{
	const winnow_model_config_t *c = &ctx->model->cfg;
	size_t d = c->hidden_size, H = c->num_heads, dh = d / H;
	size_t n = win_rows(ctx, i), t = ctx->win_tok[i];
	float scale = 1.0f / sqrtf((float)dh); /* PAPER.md 2: sqrt(d/H) */
	const float *qkv = ctx->qkv + (size_t)ctx->win_off[i] * 3 * d;
	float *out = ctx->attn + (size_t)ctx->win_off[i] * d;

	if (scores)
		memset(ctx->colsum, 0, t * sizeof(double));
	for (size_t h = 0; h < H; h++) {
		const float *q = qkv + h * dh;
		const float *kk = qkv + d + h * dh;
		const float *v = qkv + 2 * d + h * dh;
		winnow_gemm(ctx, 1, n, n, dh, scale, q, 3 * d, kk, 3 * d, 0.0f,
			    ctx->scores, n);
		ctx->k->softmax_rows(ctx->scores, n, n, n);
		if (scores)
			ctx->k->colsum_add(ctx->colsum, ctx->scores, n, t, n);
		winnow_gemm(ctx, 0, n, dh, n, 1.0f, ctx->scores, n, v, 3 * d,
			    0.0f, out + h * dh, d);
	}
	if (scores)
		for (size_t j = 0; j < t; j++)
			scores[j] = ctx->colsum[j] / (double)H / (double)n;
}

/* Moves rows [from, from + n) of a [* x cols] matrix to row `to`. */
static void move_rows(float *a, size_t cols, size_t to, size_t from, size_t n)
{
	if (to != from && n)
		memmove(a + to * cols, a + from * cols, n * cols * sizeof(float));
}

/*
 * Drops the rows of window i's leaving tokens from x, attn and row_pos and
 * moves the window's rows to start at row `to` (earlier windows may have
 * shrunk). leave[] flags the window's embedded tokens.
 */
static void compact_window(winnow_ctx_t *ctx, uint32_t i, const uint8_t *leave,
			   uint32_t to)
{
	size_t d = ctx->model->cfg.hidden_size, mc = ctx->model->cfg.combine_tokens;
	uint32_t from = ctx->win_off[i], t = ctx->win_tok[i], kept = 0;
	for (uint32_t j = 0; j < t; j++) {
		if (leave && leave[j])
			continue;
		move_rows(ctx->x, d, to + kept, from + j, 1);
		move_rows(ctx->attn, d, to + kept, from + j, 1);
		ctx->row_pos[to + kept] = ctx->row_pos[from + j];
		kept++;
	}
	move_rows(ctx->x, d, to + kept, from + t, mc);
	move_rows(ctx->attn, d, to + kept, from + t, mc);
	memmove(ctx->row_pos + to + kept, ctx->row_pos + from + t,
		mc * sizeof(uint32_t));
	ctx->win_off[i] = to;
	ctx->win_tok[i] = kept;
}

/* Keeps window i's retained tokens (PAPER.md 5): K_P less [CLS]/[SEP]. */
static void record_retained(winnow_ctx_t *ctx, uint32_t i, const double *scores,
			    const uint8_t *leave)
{
	uint32_t t = ctx->win_tok[i], n = 0;
	uint32_t *pos = ctx->ret_pos + (size_t)i * ctx->max_len;
	double *sc = ctx->ret_score + (size_t)i * ctx->max_len;
	for (uint32_t j = 1; j + 1 < t; j++) {
		if (leave && leave[j])
			continue;
		pos[n] = ctx->row_pos[ctx->win_off[i] + j];
		sc[n] = scores[j];
		n++;
	}
	ctx->ret_n[i] = n;
}

/*
 * The attention half of layer l for every window, with the pruning decision
 * of a pruned layer (PAPER.md 2): returns the number of rows left.
 */
static size_t attention_and_prune(winnow_ctx_t *ctx, uint32_t l, uint32_t nw,
				  winnow_layer_stats_t *st)
{
	int pruned = l < ctx->pruned_layers;
	int last_pruned = l + 1 == ctx->pruned_layers;
	int decide = pruned && ctx->rule.keep_ratio < 1.0;
	/* Importance is needed to decide, and at the last pruned layer to rank
	 * the retained tokens even when nothing is pruned (PAPER.md 5). */
	double *scores = decide || last_pruned ? ctx->importance : NULL;
	uint32_t rows = 0;

	for (uint32_t i = 0; i < nw; i++) {
		uint8_t *leave = NULL;
		st->tokens_in += ctx->win_tok[i];
		attention_window(ctx, i, scores);
		if (decide) {
			winnow_prune_info_t info;
			leave = ctx->leave;
			winnow_prune_decide(&ctx->rule, scores, ctx->win_tok[i],
					    leave, ctx->prune_scratch, &info);
			st->protected_ += info.protected_;
			if (info.budget > info.leaving)
				st->spared += info.budget - info.leaving;
		}
		if (last_pruned)
			record_retained(ctx, i, scores, leave);
		compact_window(ctx, i, leave, rows);
		st->tokens_kept += ctx->win_tok[i];
		rows += win_rows(ctx, i);
	}
	return rows;
}

/*
 * One post-LN BERT layer over the `rows` rows of ctx->x; the decision of a
 * pruned layer is taken after its attention and applies from the output
 * projection on. Returns the rows left.
 */
static size_t layer_forward(winnow_ctx_t *ctx, uint32_t l, size_t rows,
			    uint32_t nw, winnow_layer_stats_t *st)
{
	const winnow_model_config_t *c = &ctx->model->cfg;
	const winnow_layer_weights_t *L = &ctx->model->layers[l];
	size_t d = c->hidden_size, inter = c->intermediate_size;
	float eps = (float)c->layer_norm_eps;

	winnow_gemm(ctx, 1, rows, 3 * d, d, 1.0f, ctx->x, d, L->qkv_w, d, 0.0f,
		    ctx->qkv, 3 * d);
	ctx->k->add_bias(ctx->qkv, L->qkv_b, rows, 3 * d);
	rows = attention_and_prune(ctx, l, nw, st);
	winnow_gemm(ctx, 1, rows, d, d, 1.0f, ctx->attn, d, L->out_w, d, 0.0f,
		    ctx->tmp, d);
	ctx->k->add_layernorm(ctx->x, ctx->tmp, L->out_b, L->attn_ln_w,
			      L->attn_ln_b, rows, d, eps);
	winnow_gemm(ctx, 1, rows, inter, d, 1.0f, ctx->x, d, L->up_w, d, 0.0f,
		    ctx->ffn, inter);
	ctx->k->bias_gelu(ctx->ffn, L->up_b, rows, inter);
	winnow_gemm(ctx, 1, rows, d, inter, 1.0f, ctx->ffn, inter, L->down_w,
		    inter, 0.0f, ctx->tmp, d);
	ctx->k->add_layernorm(ctx->x, ctx->tmp, L->down_b, L->ffn_ln_w,
			      L->ffn_ln_b, rows, d, eps);
	return rows;
}

/* Sequence representation per window, then the classifier (PAPER.md 4). */
static void head(winnow_ctx_t *ctx, uint32_t nw, float *logits)
{
	const winnow_model_t *m = ctx->model;
	size_t d = m->cfg.hidden_size;
	float *pooled = ctx->pooled;
	int cls = m->cfg.pooling == WINNOW_POOLING_CLS &&
		  m->cfg.combine_layer == m->cfg.num_layers;

	for (uint32_t i = 0; i < nw; i++) {
		/* With combining, the window's rows are its m combined tokens;
		 * without, its kept tokens (K_L): mean over either. */
		const float *x = ctx->x + (size_t)ctx->win_off[i] * d;
		float *p = pooled + (size_t)i * d;
		if (cls) {
			memcpy(p, x, d * sizeof(float)); /* [CLS] is row 0 */
			continue;
		}
		size_t n = win_rows(ctx, i);
		memset(p, 0, d * sizeof(float));
		for (size_t t = 0; t < n; t++)
			for (size_t j = 0; j < d; j++)
				p[j] += x[t * d + j];
		for (size_t j = 0; j < d; j++)
			p[j] /= (float)n;
	}
	if (cls) {
		winnow_gemm(ctx, 1, nw, d, d, 1.0f, pooled, d, m->pooler_w, d,
			    0.0f, ctx->tmp, d);
		ctx->k->bias_tanh(ctx->tmp, m->pooler_b, nw, d);
		pooled = ctx->tmp;
	}
	winnow_gemm(ctx, 1, nw, m->cfg.num_labels, d, 1.0f, pooled, d,
		    m->cls_w, d, 0.0f, logits, m->cfg.num_labels);
	ctx->k->add_bias(logits, m->cls_b, nw, m->cfg.num_labels);
}

static winnow_err_t check_batch(winnow_ctx_t *ctx, const winnow_window_t *w,
				uint32_t nw, size_t *rows,
				char *errstr, size_t errstr_size)
{
	const winnow_model_config_t *c = &ctx->model->cfg;
	size_t T = 0, R = 0;
	if (nw == 0 || nw > ctx->max_windows) {
		snprintf(errstr, errstr_size,
			 "cannot run batch: %u windows, this context takes 1..%u",
			 nw, ctx->max_windows);
		return WINNOW_ERR_ARG;
	}
	for (uint32_t i = 0; i < nw; i++) {
		if (w[i].n < 2 || w[i].n > ctx->max_len) {
			snprintf(errstr, errstr_size,
				 "cannot run batch: window %u has %u tokens, the model takes 2..%u ([CLS] ... [SEP])",
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
		T += w[i].n;
	}
	if (T > ctx->max_tokens) {
		snprintf(errstr, errstr_size,
			 "cannot run batch: %zu tokens, this context takes at most %u",
			 T, ctx->max_tokens);
		return WINNOW_ERR_TOO_LARGE;
	}
	for (uint32_t i = 0; i < nw; i++) {
		ctx->win_off[i] = (uint32_t)R;
		ctx->win_tok[i] = w[i].n;
		R += w[i].n + c->combine_tokens;
	}
	*rows = R;
	return WINNOW_OK;
}

winnow_err_t winnow_ctx_forward(winnow_ctx_t *ctx,
				const winnow_window_t *windows,
				uint32_t n_windows, float *logits,
				char *errstr, size_t errstr_size)
{
	const winnow_model_t *m = ctx->model;
	uint64_t t0 = winnow_now_ns();
	size_t rows;
	winnow_err_t err = check_batch(ctx, windows, n_windows, &rows, errstr,
				       errstr_size);
	if (err)
		return err;

	ctx->n_windows = n_windows;
	embed(ctx, windows, n_windows);
	for (uint32_t l = 0; l < m->cfg.num_layers; l++) {
		winnow_layer_stats_t *st = &ctx->layer_stats[l];
		uint64_t tl = winnow_now_ns();
		st->windows += n_windows;
		if (l == m->cfg.combine_layer)
			rows = winnow_combine_forward(ctx, n_windows, st);
		else
			rows = layer_forward(ctx, l, rows, n_windows, st);
		st->ns += winnow_now_ns() - tl;
	}
	head(ctx, n_windows, logits);

	ctx->stats.forward_ns += winnow_now_ns() - t0;
	ctx->stats.forwards++;
	for (uint32_t i = 0; i < n_windows; i++)
		ctx->stats.tokens += windows[i].n;
	return WINNOW_OK;
}

uint32_t winnow_ctx_retained(const winnow_ctx_t *ctx, uint32_t window,
			     const uint32_t **positions, const double **scores)
{
	if (window >= ctx->n_windows) {
		*positions = NULL;
		*scores = NULL;
		return 0;
	}
	*positions = ctx->ret_pos + (size_t)window * ctx->max_len;
	*scores = ctx->ret_score + (size_t)window * ctx->max_len;
	return ctx->ret_n[window];
}

void winnow_ctx_stats(const winnow_ctx_t *ctx, winnow_ctx_stats_t *out)
{
	*out = ctx->stats;
}

int winnow_ctx_layer_stats(const winnow_ctx_t *ctx, uint32_t layer,
			   winnow_layer_stats_t *out)
{
	if (layer >= ctx->model->cfg.num_layers)
		return -1;
	*out = ctx->layer_stats[layer];
	return 0;
}

void winnow_ctx_stats_reset(winnow_ctx_t *ctx)
{
	memset(&ctx->stats, 0, sizeof ctx->stats);
	memset(ctx->layer_stats, 0,
	       ctx->model->cfg.num_layers * sizeof *ctx->layer_stats);
}
