/*
 * prune.h: the token-pruning decision of one window in one layer
 * (PAPER.md section 2). Private to model/; tests/test_prune.c checks it on
 * hand-computed cases.
 *
 * A pure function of the kept tokens' importance scores: the encoder
 * computes the scores from the layer's attention, asks which tokens leave,
 * and compacts its buffers. The scores are doubles (summed in double from
 * the f32 attention probabilities), as in the PyTorch reference.
 */
#ifndef WINNOW_PRUNE_H
#define WINNOW_PRUNE_H

#include "winnow_model.h"

#include <stdint.h>

typedef struct {
	double keep_ratio;             /* p; >= 1 disables pruning */
	int fuzzy;                     /* 0: ours-P, 1: the fuzzy rule */
	winnow_fuzzy_mode_t fuzzy_mode;
} winnow_prune_rule_t;

/* What one decision did, for the per-layer trace. */
typedef struct {
	uint32_t candidates;  /* kept tokens less [CLS]/[SEP] */
	uint32_t protected_;  /* candidates the fuzzy rule protects (I - U) */
	uint32_t budget;      /* how many the ratio alone would remove */
	uint32_t leaving;     /* how many leave */
} winnow_prune_info_t;

/* keep(t, p) = floor(t * p + 1e-6), in double (PAPER.md 2, Budget). */
uint32_t winnow_keep_count(uint32_t t, double p);

/* Quantile q of n sorted values, linear interpolation (numpy's default). */
double winnow_quantile_sorted(const double *sorted, uint32_t n, double q);

/*
 * Decides which of the n kept tokens leave. scores[i] is the importance of
 * the i-th kept token in position order; index 0 is the window's [CLS] and
 * n - 1 its [SEP], which never leave. leave[i] is set to 1 for each leaving
 * token, 0 otherwise. scratch holds winnow_prune_scratch_size(n) bytes,
 * aligned for doubles. Returns the number leaving; fills *info when
 * not NULL.
 */
uint32_t winnow_prune_decide(const winnow_prune_rule_t *rule,
			     const double *scores, uint32_t n, uint8_t *leave,
			     void *scratch, winnow_prune_info_t *info);

/* Bytes of scratch winnow_prune_decide needs for n kept tokens. */
size_t winnow_prune_scratch_size(uint32_t n);

#endif /* WINNOW_PRUNE_H */
