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
 * Threads: a context's team (encoder_internal.h) runs the whole pass;
 * products are split by columns, attention by (window, head), row-wise
 * steps by rows; the pruning decisions, compaction and the head run on
 * member 0. Results do not depend on the thread count.
 *
 * Every buffer is allocated once, in winnow_ctx_new, for the largest batch
 * the context will run: fresh pages cost ~12 us each to fault on these VMs,
 * and a forward pass must not allocate.
 */
#include "encoder_internal.h"
#include "prune.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

winnow_ctx_params_t winnow_ctx_default_params(void)
{
	winnow_ctx_params_t p = { .max_windows = 8, .max_tokens = 8 * 512,
				  .profile = 0, .threads = 1 };
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

/* The largest B a member packs on the fly (gemm.h), in floats: K^T of a
 * head (dh x n), V of a head (n x dh), the combining module's K of a
 * window (d x max_len). */
static size_t max_packed_b(const winnow_ctx_t *ctx, size_t n)
{
	const winnow_model_config_t *c = &ctx->model->cfg;
	size_t d = c->hidden_size, dh = d / c->num_heads;
	size_t a = winnow_panels_floats(n, dh), b = winnow_panels_floats(dh, n);
	size_t e = winnow_panels_floats(ctx->max_len, d);
	size_t max = a > b ? a : b;
	return max > e ? max : e;
}

static size_t arena_layout(winnow_ctx_t *ctx, char *base)
{
	const winnow_model_config_t *c = &ctx->model->cfg;
	size_t R = ctx->max_rows, d = c->hidden_size, W = ctx->max_windows;
	size_t n = (size_t)ctx->max_len + c->combine_tokens; /* rows of a window */
	size_t scratch = winnow_gemm_scratch_floats(max_packed_b(ctx, n));
	char *cur = base;

	ctx->x = carve(&cur, R * d * sizeof(float));
	ctx->qkv = carve(&cur, R * 3 * d * sizeof(float));
	ctx->attn = carve(&cur, R * d * sizeof(float));
	ctx->tmp = carve(&cur, R * d * sizeof(float));
	ctx->ffn = carve(&cur, R * c->intermediate_size * sizeof(float));
	ctx->pooled = carve(&cur, W * d * sizeof(float));
	ctx->win_off = carve(&cur, W * sizeof(uint32_t));
	ctx->win_tok = carve(&cur, W * sizeof(uint32_t));
	ctx->row_pos = carve(&cur, R * sizeof(uint32_t));
	ctx->head_colsum = carve(&cur, W * c->num_heads * n * sizeof(double));
	ctx->importance = carve(&cur, n * sizeof(double));
	ctx->leave = carve(&cur, n);
	ctx->prune_scratch = carve(&cur, winnow_prune_scratch_size((uint32_t)n));
	ctx->ret_n = carve(&cur, W * sizeof(uint32_t));
	ctx->ret_pos = carve(&cur, W * ctx->max_len * sizeof(uint32_t));
	ctx->ret_score = carve(&cur, W * ctx->max_len * sizeof(double));
	ctx->layer_stats = carve(&cur, c->num_layers * sizeof(winnow_layer_stats_t));
	for (unsigned t = 0; t < ctx->threads; t++) {
		winnow_member_t *mb = &ctx->members[t];
		mb->gemm_scratch = carve(&cur, scratch * sizeof(float));
		mb->scores = carve(&cur, n * n * sizeof(float));
		mb->counts = carve(&cur, (c->combine_tokens + 1) * sizeof(uint32_t));
	}
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
	if (params->threads > WINNOW_CTX_MAX_THREADS) {
		snprintf(errstr, errstr_size,
			 "cannot create engine context: %u threads, at most %u",
			 params->threads, WINNOW_CTX_MAX_THREADS);
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
	ctx->threads = params->threads ? params->threads : 1;
	ctx->members = calloc(ctx->threads, sizeof *ctx->members);
	if (!ctx->members)
		goto out_free_ctx;

	size_t total = arena_layout(ctx, NULL);
	if (posix_memalign(&ctx->arena, 64, total))
		goto out_free_members;
	ctx->arena_bytes = total;
	/* Fault every page in now, once, rather than in the first forwards. */
	memset(ctx->arena, 0, total);
	arena_layout(ctx, ctx->arena);

	ctx->team = winnow_team_new(ctx->threads, errstr, errstr_size);
	if (!ctx->team) {
		free(ctx->arena);
		free(ctx->members);
		free(ctx);
		return NULL;
	}
	/* The portable kernels call OpenBLAS from every member: one BLAS
	 * thread each, not a BLAS pool beside the team on the same cores. */
	if (!ctx->k->packs_weights)
		openblas_set_num_threads(1);
	return ctx;

out_free_members:
	free(ctx->members);
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
	winnow_team_destroy(ctx->team);
	free(ctx->arena);
	free(ctx->members);
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

void winnow_ctx_share(const winnow_ctx_t *ctx, unsigned tid, size_t n,
		      size_t *begin, size_t *end)
{
	*begin = n * tid / ctx->threads;
	*end = n * (tid + 1) / ctx->threads;
}

static void gemm_band(winnow_ctx_t *ctx, unsigned tid, const winnow_gemm_t *g,
		      size_t col_begin, size_t col_end)
{
	winnow_member_t *mb = &ctx->members[tid];
	ctx->k->gemm(g, col_begin, col_end, mb->gemm_scratch);
	if (ctx->profile)
		mb->gemm_flops += 2.0 * (double)g->m * (double)(col_end - col_begin) *
				  (double)g->k;
}

void winnow_ctx_gemm(winnow_ctx_t *ctx, unsigned tid, const winnow_gemm_t *g)
{
	/* Bands of whole panels, as even as the panel count allows. */
	size_t panels = (g->n + WINNOW_PANEL_COLS - 1) / WINNOW_PANEL_COLS;
	size_t p0, p1;
	winnow_ctx_share(ctx, tid, panels, &p0, &p1);
	size_t c0 = p0 * WINNOW_PANEL_COLS, c1 = p1 * WINNOW_PANEL_COLS;
	if (c1 > g->n)
		c1 = g->n;
	uint64_t t0 = ctx->profile && tid == 0 ? winnow_now_ns() : 0;
	if (c0 < c1)
		gemm_band(ctx, tid, g, c0, c1);
	winnow_team_barrier(ctx->team);
	/* Member 0's wall time of the product, its wait for the others
	 * included, is the team's. */
	if (ctx->profile && tid == 0)
		ctx->stats.gemm_ns += winnow_now_ns() - t0;
}

void winnow_ctx_gemm_alone(winnow_ctx_t *ctx, unsigned tid,
			   const winnow_gemm_t *g)
{
	uint64_t t0 = ctx->profile && tid == 0 ? winnow_now_ns() : 0;
	gemm_band(ctx, tid, g, 0, g->n);
	if (ctx->profile && tid == 0)
		ctx->stats.gemm_ns += winnow_now_ns() - t0;
}

/*
 * Embedding (PAPER.md 1): x = LayerNorm(word + position + token type 0) for
 * each token, then the m combination tokens as they are (no position or
 * type embedding, no LayerNorm). Member tid embeds its share of windows.
 */
static void embed(winnow_ctx_t *ctx, unsigned tid, const winnow_window_t *w,
		  uint32_t nw)
{
	const winnow_model_t *m = ctx->model;
	size_t d = m->cfg.hidden_size, mc = m->cfg.combine_tokens;
	for (uint32_t i = tid; i < nw; i += ctx->threads) {
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

static double *colsum_of(const winnow_ctx_t *ctx, uint32_t i, size_t h)
{
	const winnow_model_config_t *c = &ctx->model->cfg;
	size_t n = (size_t)ctx->max_len + c->combine_tokens;
	return ctx->head_colsum + ((size_t)i * c->num_heads + h) * n;
}

/*
 * Head h of the self-attention of window i over its own rows, on member
 * tid. With colsum set, also the column sums of the head's attention
 * probabilities over all present query rows for the window's embedded
 * tokens (PAPER.md 2, Importance), in double.
 */
static void attention_head(winnow_ctx_t *ctx, unsigned tid, uint32_t i,
			   size_t h, int colsum)
{
	const winnow_model_config_t *c = &ctx->model->cfg;
	size_t d = c->hidden_size, dh = d / c->num_heads;
	size_t n = win_rows(ctx, i), t = ctx->win_tok[i];
	float *scores = ctx->members[tid].scores;
	const float *qkv = ctx->qkv + (size_t)ctx->win_off[i] * 3 * d + h * dh;
	float *out = ctx->attn + (size_t)ctx->win_off[i] * d + h * dh;

	/* PAPER.md 2: scaling by sqrt(d/H). */
	winnow_gemm_t qk = {
		.m = n, .n = n, .k = dh, .a = qkv, .lda = 3 * d,
		.b = qkv + d, .ldb = 3 * d, .trans_b = 1, .c = scores, .ldc = n,
		.alpha = 1.0f / sqrtf((float)dh),
	};
	winnow_ctx_gemm_alone(ctx, tid, &qk);
	ctx->k->softmax_rows(scores, n, n, n);
	if (colsum) {
		double *acc = colsum_of(ctx, i, h);
		memset(acc, 0, t * sizeof(double));
		ctx->k->colsum_add(acc, scores, n, t, n);
	}
	winnow_gemm_t av = {
		.m = n, .n = dh, .k = n, .a = scores, .lda = n,
		.b = qkv + 2 * d, .ldb = 3 * d, .trans_b = 0, .c = out, .ldc = d,
		.alpha = 1.0f,
	};
	winnow_ctx_gemm_alone(ctx, tid, &av);
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
 * The pruning decision of window i (PAPER.md 2), after its attention, on
 * member 0: s(j) is the mean over heads (summed in head order) and over the
 * window's present query rows of the attention its token j received.
 */
static void decide_window(winnow_ctx_t *ctx, uint32_t i, int decide,
			  int last_pruned, uint32_t to, winnow_layer_stats_t *st)
{
	size_t H = ctx->model->cfg.num_heads, n = win_rows(ctx, i);
	size_t t = ctx->win_tok[i];
	double *scores = ctx->importance;
	uint8_t *leave = NULL;

	if (decide || last_pruned) {
		for (size_t j = 0; j < t; j++) {
			double sum = 0;
			for (size_t h = 0; h < H; h++)
				sum += colsum_of(ctx, i, h)[j];
			scores[j] = sum / (double)H / (double)n;
		}
	}
	if (decide) {
		winnow_prune_info_t info;
		leave = ctx->leave;
		winnow_prune_decide(&ctx->rule, scores, (uint32_t)t, leave,
				    ctx->prune_scratch, &info);
		st->protected_ += info.protected_;
		if (info.budget > info.leaving)
			st->spared += info.budget - info.leaving;
	}
	if (last_pruned)
		record_retained(ctx, i, scores, leave);
	compact_window(ctx, i, leave, to);
}

/*
 * The attention half of layer l for every window, with the pruning decision
 * of a pruned layer (PAPER.md 2). The (window, head) pairs are shared out
 * among the members; then member 0 decides and compacts window by window
 * and sets n_rows.
 */
static void attention_and_prune(winnow_ctx_t *ctx, unsigned tid, uint32_t l,
				winnow_layer_stats_t *st)
{
	size_t H = ctx->model->cfg.num_heads;
	uint32_t nw = ctx->n_windows;
	int pruned = l < ctx->pruned_layers;
	int last_pruned = l + 1 == ctx->pruned_layers;
	int decide = pruned && ctx->rule.keep_ratio < 1.0;
	/* Importance is needed to decide, and at the last pruned layer to rank
	 * the retained tokens even when nothing is pruned (PAPER.md 5). */
	int colsum = decide || last_pruned;

	size_t begin, end;
	winnow_ctx_share(ctx, tid, (size_t)nw * H, &begin, &end);
	for (size_t task = begin; task < end; task++)
		attention_head(ctx, tid, (uint32_t)(task / H), task % H, colsum);
	winnow_team_barrier(ctx->team);

	if (tid == 0) {
		/* After the combining module a window's rows are its m
		 * combined tokens: those are what the layer runs on. */
		int combined = l > ctx->model->cfg.combine_layer;
		uint32_t rows = 0;
		for (uint32_t i = 0; i < nw; i++) {
			st->tokens_in += combined ? win_rows(ctx, i) : ctx->win_tok[i];
			decide_window(ctx, i, decide, last_pruned, rows, st);
			st->tokens_kept += combined ? win_rows(ctx, i) : ctx->win_tok[i];
			rows += win_rows(ctx, i);
		}
		ctx->n_rows = rows;
	}
	winnow_team_barrier(ctx->team);
}

/* Row-wise x = LayerNorm(x + y + bias), member tid's share of the rows. */
static void add_layernorm_rows(winnow_ctx_t *ctx, unsigned tid, const float *y,
			       const float *bias, const float *gamma,
			       const float *beta)
{
	const winnow_model_config_t *c = &ctx->model->cfg;
	size_t d = c->hidden_size, r0, r1;
	winnow_ctx_share(ctx, tid, ctx->n_rows, &r0, &r1);
	if (r1 > r0)
		ctx->k->add_layernorm(ctx->x + r0 * d, y ? y + r0 * d : NULL, bias,
				      gamma, beta, r1 - r0, d,
				      (float)c->layer_norm_eps);
	winnow_team_barrier(ctx->team);
}

/*
 * Whether the head reads only each window's [CLS] row of the last layer:
 * [CLS] pooling without combining (with combining, or P < L, it averages
 * rows; PAPER.md 4).
 */
static int cls_pooled(const winnow_model_config_t *c)
{
	return c->pooling == WINNOW_POOLING_CLS &&
	       c->combine_layer == c->num_layers;
}

/*
 * Before the last layer's output projection of a [CLS]-pooled model: rows
 * mix only in attention, so from here on the rows the head does not read
 * need not be computed. Row i becomes window i's [CLS] row (its attention
 * output and residual), which spares the output projection and the
 * feed-forward of every other row: 7/12 of the layer's products. A row of
 * a product does not depend on the others, so the logits are the same
 * bits; the attention, hence the pruning statistics and the retained
 * tokens (PAPER.md 5), still covers every token.
 */
static void keep_cls_rows(winnow_ctx_t *ctx, unsigned tid)
{
	size_t d = ctx->model->cfg.hidden_size;
	if (tid == 0) {
		/* win_off[i] >= i: moving rows up in order never overwrites
		 * one still to move. */
		for (uint32_t i = 0; i < ctx->n_windows; i++) {
			size_t from = (size_t)ctx->win_off[i] * d;
			memmove(ctx->x + i * d, ctx->x + from, d * sizeof(float));
			memmove(ctx->attn + i * d, ctx->attn + from,
				d * sizeof(float));
		}
		ctx->n_rows = ctx->n_windows;
	}
	winnow_team_barrier(ctx->team);
}

/*
 * One post-LN BERT layer over the n_rows rows of ctx->x; the decision of a
 * pruned layer is taken after its attention and applies from the output
 * projection on.
 */
static void layer_forward(winnow_ctx_t *ctx, unsigned tid, uint32_t l,
			  winnow_layer_stats_t *st)
{
	const winnow_model_config_t *c = &ctx->model->cfg;
	const winnow_layer_weights_t *L = &ctx->model->layers[l];
	size_t d = c->hidden_size, inter = c->intermediate_size;
	winnow_gemm_t g;

	g = winnow_linear(L->qkv_w, &L->qkv_p, L->qkv_b, ctx->n_rows, 3 * d, d,
			  ctx->x, d, ctx->qkv, 3 * d);
	winnow_ctx_gemm(ctx, tid, &g);
	attention_and_prune(ctx, tid, l, st);
	if (l + 1 == c->num_layers && cls_pooled(c))
		keep_cls_rows(ctx, tid);
	g = winnow_linear(L->out_w, &L->out_p, L->out_b, ctx->n_rows, d, d,
			  ctx->attn, d, ctx->tmp, d);
	winnow_ctx_gemm(ctx, tid, &g);
	add_layernorm_rows(ctx, tid, ctx->tmp, NULL, L->attn_ln_w, L->attn_ln_b);
	g = winnow_linear(L->up_w, &L->up_p, L->up_b, ctx->n_rows, inter, d,
			  ctx->x, d, ctx->ffn, inter);
	g.gelu = 1;
	winnow_ctx_gemm(ctx, tid, &g);
	g = winnow_linear(L->down_w, &L->down_p, L->down_b, ctx->n_rows, d, inter,
			  ctx->ffn, inter, ctx->tmp, d);
	winnow_ctx_gemm(ctx, tid, &g);
	add_layernorm_rows(ctx, tid, ctx->tmp, NULL, L->ffn_ln_w, L->ffn_ln_b);
}

/* Sequence representation per window, then the classifier (PAPER.md 4),
 * on member 0. */
static void head(winnow_ctx_t *ctx, float *logits)
{
	const winnow_model_t *m = ctx->model;
	size_t d = m->cfg.hidden_size;
	uint32_t nw = ctx->n_windows;
	float *pooled = ctx->pooled;
	int cls = cls_pooled(&m->cfg);
	winnow_gemm_t g;

	for (uint32_t i = 0; i < nw; i++) {
		float *p = pooled + (size_t)i * d;
		if (cls) {
			/* keep_cls_rows left window i's [CLS] on row i */
			memcpy(p, ctx->x + (size_t)i * d, d * sizeof(float));
			continue;
		}
		/* With combining, the window's rows are its m combined tokens;
		 * without, its kept tokens (K_L): mean over either. */
		const float *x = ctx->x + (size_t)ctx->win_off[i] * d;
		size_t n = win_rows(ctx, i);
		memset(p, 0, d * sizeof(float));
		for (size_t t = 0; t < n; t++)
			for (size_t j = 0; j < d; j++)
				p[j] += x[t * d + j];
		for (size_t j = 0; j < d; j++)
			p[j] /= (float)n;
	}
	if (cls) {
		g = winnow_linear(m->pooler_w, &m->pooler_p, NULL, nw, d, d,
				  pooled, d, ctx->tmp, d);
		winnow_ctx_gemm_alone(ctx, 0, &g);
		ctx->k->bias_tanh(ctx->tmp, m->pooler_b, nw, d);
		pooled = ctx->tmp;
	}
	g = winnow_linear(m->cls_w, &m->cls_p, m->cls_b, nw, m->cfg.num_labels,
			  d, pooled, d, logits, m->cfg.num_labels);
	winnow_ctx_gemm_alone(ctx, 0, &g);
}

static winnow_err_t check_batch(winnow_ctx_t *ctx, const winnow_window_t *w,
				uint32_t nw, char *errstr, size_t errstr_size)
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
	ctx->n_windows = nw;
	ctx->n_rows = R;
	return WINNOW_OK;
}

/* A forward pass as the team runs it. */
typedef struct {
	winnow_ctx_t *ctx;
	const winnow_window_t *windows;
	float *logits;
} forward_t;

static void forward_member(void *arg, unsigned tid)
{
	forward_t *f = arg;
	winnow_ctx_t *ctx = f->ctx;
	const winnow_model_t *m = ctx->model;

	embed(ctx, tid, f->windows, ctx->n_windows);
	winnow_team_barrier(ctx->team);
	for (uint32_t l = 0; l < m->cfg.num_layers; l++) {
		winnow_layer_stats_t *st = &ctx->layer_stats[l];
		uint64_t tl = tid == 0 ? winnow_now_ns() : 0;
		if (l == m->cfg.combine_layer)
			winnow_combine_forward(ctx, tid, st);
		else
			layer_forward(ctx, tid, l, st);
		if (tid == 0) {
			st->windows += ctx->n_windows;
			st->ns += winnow_now_ns() - tl;
		}
	}
	if (tid == 0)
		head(ctx, f->logits);
}

winnow_err_t winnow_ctx_forward(winnow_ctx_t *ctx,
				const winnow_window_t *windows,
				uint32_t n_windows, float *logits,
				char *errstr, size_t errstr_size)
{
	uint64_t t0 = winnow_now_ns();
	winnow_err_t err = check_batch(ctx, windows, n_windows, errstr,
				       errstr_size);
	if (err)
		return err;

	forward_t f = { .ctx = ctx, .windows = windows, .logits = logits };
	winnow_team_run(ctx->team, forward_member, &f);

	ctx->stats.forward_ns += winnow_now_ns() - t0;
	ctx->stats.forwards++;
	for (uint32_t i = 0; i < n_windows; i++)
		ctx->stats.tokens += windows[i].n;
	if (ctx->profile) {
		for (unsigned t = 0; t < ctx->threads; t++) {
			ctx->stats.gemm_flops += ctx->members[t].gemm_flops;
			ctx->members[t].gemm_flops = 0;
		}
	}
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
