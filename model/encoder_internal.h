/*
 * encoder_internal.h: the engine context, shared by encoder.c and
 * combine.c. Private to model/.
 */
#ifndef WINNOW_ENCODER_INTERNAL_H
#define WINNOW_ENCODER_INTERNAL_H

#include "kernels.h"
#include "model_internal.h"
#include "prune.h"

struct winnow_ctx_s {
	const winnow_model_t *model;
	const winnow_kernels_t *k;
	uint32_t max_windows, max_tokens, max_len;
	size_t max_rows;        /* max_tokens + max_windows * m */
	int profile;
	uint32_t pruned_layers; /* P: layers 0..P-1 prune (PAPER.md 2) */
	winnow_prune_rule_t rule;

	void *arena;            /* one allocation backing every buffer below */
	size_t arena_bytes;
	float *x;               /* [rows x d] hidden states */
	float *qkv;             /* [rows x 3d] */
	float *attn;            /* [rows x d] attention output */
	float *tmp;             /* [rows x d] sublayer output before its LN */
	float *ffn;             /* [rows x inter] */
	float *scores;          /* [n x n], n = max_len + m: one head, one window */
	float *pooled;          /* [max_windows x d] */

	/* The current batch: window i has win_tok[i] embedded rows, then m
	 * combination rows, from row win_off[i]; row_pos[r] is the position in
	 * its window of the token on row r (UINT32_MAX: a combination token). */
	uint32_t n_windows;
	uint32_t *win_off, *win_tok, *row_pos;

	double *colsum;         /* [n] attention column sums of a window */
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

/* C[m x n] = alpha A[m x k] op(B) + beta C, row-major; B is [n x k] (an
 * nn.Linear weight) when trans_b, else [k x n]. Counted when profiling. */
void winnow_gemm(winnow_ctx_t *ctx, int trans_b, size_t m, size_t n, size_t k,
		 float alpha, const float *A, size_t lda, const float *B,
		 size_t ldb, float beta, float *C, size_t ldc);

/*
 * The token combining module (PAPER.md 3), in place of layer P: reduces
 * each window to its m combined rows (from row i * m) and returns the
 * number of rows, n_windows * m.
 */
size_t winnow_combine_forward(winnow_ctx_t *ctx, uint32_t n_windows,
			      winnow_layer_stats_t *st);

#endif /* WINNOW_ENCODER_INTERNAL_H */
