/*
 * prune.c: which kept tokens leave after a pruned layer (PAPER.md 2).
 *
 * The steps follow PAPER.md's text in order, as scripts/winnow_ref/prune.py
 * does, so the two can be read side by side: candidates (all kept tokens but
 * [CLS] and [SEP]); with the fuzzy rule, the fuzzy sets over the candidates'
 * scores (a = Q(0.25), b = Q(0.75)) and the alpha-cuts I (Importance >=
 * 0.01) and U (Unimportance >= 0.9), which protect I - U; the budget, by
 * reading A (`budget`) or B (`within`); and the lowest-scored pruning
 * candidates leave, the later position first among equal scores.
 */
#include "prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ALPHA_IMPORTANT 0.01
#define ALPHA_UNIMPORTANT 0.9

uint32_t winnow_keep_count(uint32_t t, double p)
{
	/* The epsilon makes keep(90, 0.7) = 63, the exact decimal product,
	 * where floor(90 * 0.7) in binary floating point gives 62. */
	return (uint32_t)floor((double)t * p + 1e-6);
}

double winnow_quantile_sorted(const double *xs, uint32_t n, double q)
{
	double pos = (double)(n - 1) * q;
	uint32_t lo = (uint32_t)floor(pos);
	uint32_t hi = lo + 1 < n ? lo + 1 : n - 1;
	return xs[lo] + (pos - (double)lo) * (xs[hi] - xs[lo]);
}

/* Importance(s), PAPER Eq. 6; at a = b it is 1[s >= b]. */
static double importance(double s, double a, double b)
{
	if (s >= b)
		return 1.0;
	if (s <= a)
		return 0.0;
	return (s - a) / (b - a);
}

/* Unimportance(s), PAPER Eq. 7; at a = b it is 1[s <= a]. */
static double unimportance(double s, double a, double b)
{
	if (s <= a)
		return 1.0;
	if (s >= b)
		return 0.0;
	return (b - s) / (b - a);
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

/* A candidate in leaving order: rising score, and among equal scores the
 * later position first (PAPER.md 2: it leaves first). */
typedef struct {
	double score;
	uint32_t index;
} ranked_t;

static int cmp_leaving_order(const void *x, const void *y)
{
	const ranked_t *a = x, *b = y;
	if (a->score != b->score)
		return a->score < b->score ? -1 : 1;
	return a->index > b->index ? -1 : a->index < b->index;
}

size_t winnow_prune_scratch_size(uint32_t n)
{
	return (size_t)n * (sizeof(double) + sizeof(ranked_t) + sizeof(uint32_t));
}

uint32_t winnow_prune_decide(const winnow_prune_rule_t *rule,
			     const double *scores, uint32_t n, uint8_t *leave,
			     void *scratch, winnow_prune_info_t *info)
{
	double *sorted = scratch;
	ranked_t *ranked = (ranked_t *)(sorted + n);
	uint32_t *cand = (uint32_t *)(ranked + n);
	winnow_prune_info_t local = { 0 };
	uint32_t c = 0, n_leave;

	memset(leave, 0, n);
	/* Candidates: every kept token but [CLS] (first) and [SEP] (last). */
	for (uint32_t i = 1; i + 1 < n; i++)
		cand[c++] = i;
	local.candidates = c;
	local.budget = n - winnow_keep_count(n, rule->keep_ratio);
	if (rule->keep_ratio >= 1.0 || c == 0) {
		local.budget = 0;
		goto out;
	}

	if (rule->fuzzy) {
		for (uint32_t k = 0; k < c; k++)
			sorted[k] = scores[cand[k]];
		qsort(sorted, c, sizeof *sorted, cmp_double);
		double a = winnow_quantile_sorted(sorted, c, 0.25);
		double b = winnow_quantile_sorted(sorted, c, 0.75);
		/* Keep only the pruning candidates (I - U)^c, in order. */
		uint32_t kept_c = 0;
		for (uint32_t k = 0; k < c; k++) {
			double s = scores[cand[k]];
			int in_i = importance(s, a, b) >= ALPHA_IMPORTANT;
			int in_u = unimportance(s, a, b) >= ALPHA_UNIMPORTANT;
			if (in_i && !in_u)
				local.protected_++;
			else
				cand[kept_c++] = cand[k];
		}
		c = kept_c;
	}
	if (rule->fuzzy && rule->fuzzy_mode == WINNOW_FUZZY_WITHIN)
		n_leave = c - winnow_keep_count(c, rule->keep_ratio);
	else
		n_leave = local.budget < c ? local.budget : c;

	for (uint32_t k = 0; k < c; k++)
		ranked[k] = (ranked_t){ scores[cand[k]], cand[k] };
	qsort(ranked, c, sizeof *ranked, cmp_leaving_order);
	for (uint32_t k = 0; k < n_leave; k++)
		leave[ranked[k].index] = 1;
	local.leaving = n_leave;
out:
	if (info)
		*info = local;
	return local.leaving;
}
