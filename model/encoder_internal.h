/*
 * encoder_internal.h: the engine context, shared by encoder.c and
 * combine.c. Private to model/.
 *
 * A context runs a forward pass on a team of threads (team.h): every
 * member runs the same steps with its index (tid), splits each matrix
 * product by columns and each row-wise step by rows, and meets the others
 * at a barrier before a step that reads what they wrote. Serial steps (the
 * pruning decisions, compaction, the head) run on member 0 between two
 * barriers.
 */
#ifndef WINNOW_ENCODER_INTERNAL_H
#define WINNOW_ENCODER_INTERNAL_H

#include "gemm.h"
#include "kernels.h"
#include "model_internal.h"
#include "prune.h"
#include "team.h"

/* What each member of the team owns. */
typedef struct {
	float *gemm_scratch;    /* winnow_gemm_scratch_floats() */
	float *scores;          /* [n x n], n = max_len + m: one head, one window */
	uint32_t *counts;       /* [m] tokens per combination token */
	uint64_t gemm_ns;       /* profile = 1 */
	double gemm_flops;
} winnow_member_t;

struct winnow_ctx_s {
	const winnow_model_t *model;
	const winnow_kernels_t *k;
	uint32_t max_windows, max_tokens, max_len;
	size_t max_rows;        /* max_tokens + max_windows * m */
	int profile;
	uint32_t pruned_layers; /* P: layers 0..P-1 prune (PAPER.md 2) */
	winnow_prune_rule_t rule;

	winnow_team_t *team;
	unsigned threads;
	winnow_member_t *members; /* [threads] */

	void *arena;            /* one allocation backing every buffer below */
	size_t arena_bytes;
	float *x;               /* [rows x d] hidden states */
	float *qkv;             /* [rows x 3d] */
	float *attn;            /* [rows x d] attention output */
	float *tmp;             /* [rows x d] sublayer output before its LN */
	float *ffn;             /* [rows x inter] */
	float *pooled;          /* [max_windows x d] */

	/* The current batch: window i has win_tok[i] embedded rows, then m
	 * combination rows, from row win_off[i]; row_pos[r] is the position in
	 * its window of the token on row r (UINT32_MAX: a combination token).
	 * n_rows is the batch's row count now. Written by member 0 between
	 * barriers. */
	uint32_t n_windows;
	size_t n_rows;
	uint32_t *win_off, *win_tok, *row_pos;

	/* Column sums of the attention probabilities, [max_windows][H][n]:
	 * window i, head h, written by the member that ran the head and summed
	 * over heads in head order by member 0, so the importance scores do not
	 * depend on the thread count. */
	double *head_colsum;
	double *importance;     /* [n] s(j) of a window's kept tokens */
	uint8_t *leave;         /* [n] the pruning decision of a window */
	void *prune_scratch;

	/* Retained tokens per window (PAPER.md 5), in position order. */
	uint32_t *ret_n;        /* [max_windows] */
	uint32_t *ret_pos;      /* [max_windows x max_len] */
	double *ret_score;      /* [max_windows x max_len] */

	winnow_ctx_stats_t stats;
	winnow_layer_stats_t *layer_stats; /* [num_layers] */
};

uint64_t winnow_now_ns(void);

/* The product Y = X W^T (+ bias) of an nn.Linear weight W [n x k], with its
 * packed panels when the kernels use them. */
static inline winnow_gemm_t winnow_linear(const float *w,
					  const winnow_panels_t *panels,
					  const float *bias, size_t rows,
					  size_t n, size_t k, const float *x,
					  size_t ldx, float *y, size_t ldy)
{
	winnow_gemm_t g = {
		.m = rows, .n = n, .k = k, .a = x, .lda = ldx,
		.panels = panels && panels->data ? panels : NULL,
		.b = w, .ldb = k, .trans_b = 1, .c = y, .ldc = ldy,
		.alpha = 1.0f, .bias = bias,
	};
	return g;
}

/* Computes g with the whole team, each member a band of columns; returns
 * once every member is done (a barrier). Every member must call it. */
void winnow_ctx_gemm(winnow_ctx_t *ctx, unsigned tid, const winnow_gemm_t *g);

/* Computes g on the calling member alone. */
void winnow_ctx_gemm_alone(winnow_ctx_t *ctx, unsigned tid,
			   const winnow_gemm_t *g);

/* Member tid's share [*begin, *end) of n rows (or windows). */
void winnow_ctx_share(const winnow_ctx_t *ctx, unsigned tid, size_t n,
		      size_t *begin, size_t *end);

/*
 * The token combining module (PAPER.md 3), in place of layer P, run by
 * every member: reduces each window to its m combined rows (from row
 * i * m) and sets n_rows to n_windows * m.
 */
void winnow_combine_forward(winnow_ctx_t *ctx, unsigned tid,
			    winnow_layer_stats_t *st);

#endif /* WINNOW_ENCODER_INTERNAL_H */
