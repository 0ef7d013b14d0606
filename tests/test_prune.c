/*
 * test_prune.c: the pruning decision (PAPER.md 2) on cases computed by hand.
 *
 * Most cases use one window of 10 kept tokens: [CLS] at index 0, [SEP] at
 * index 9, and candidates 1..8 with scores 0.01 .. 0.08. By hand:
 *   sorted candidate scores 0.01 .. 0.08, c = 8
 *   a = Q(0.25): position 7 * 0.25 = 1.75 -> 0.02 + 0.75 * 0.01 = 0.0275
 *   b = Q(0.75): position 7 * 0.75 = 5.25 -> 0.06 + 0.25 * 0.01 = 0.0625
 *   U (Unimportance >= 0.9) <=> s <= a + 0.1 (b - a) = 0.031: 0.01, 0.02, 0.03
 *   I (Importance >= 0.01)  <=> s >= a + 0.01 (b - a) = 0.02785: 0.03 .. 0.08
 *   protected I - U = 0.04 .. 0.08 (indices 4..8, five tokens)
 *   pruning candidates (I - U)^c = indices 1, 2, 3
 */
#include "prune.h"

#include "check_main.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t leave[1024];
static double scratch[8192];

static const double ramp[10] = { 0.5, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06,
				 0.07, 0.08, 0.5 };

/* The indices that leave, as a string "1 2 3", for readable asserts. */
static const char *decide(double p, int fuzzy, winnow_fuzzy_mode_t mode,
			  const double *scores, uint32_t n,
			  winnow_prune_info_t *info)
{
	static char out[4096];
	winnow_prune_rule_t rule = { p, fuzzy, mode };
	winnow_prune_info_t local;
	uint32_t count = winnow_prune_decide(&rule, scores, n, leave, scratch,
					     info ? info : &local);
	size_t len = 0, seen = 0;
	out[0] = '\0';
	for (uint32_t i = 0; i < n; i++) {
		if (leave[i]) {
			len += (size_t)snprintf(out + len, sizeof out - len, "%s%u",
						len ? " " : "", i);
			seen++;
		}
	}
	ck_assert_uint_eq(seen, count);
	return out;
}

START_TEST(keep_count_is_exact_decimal_product)
{
	ck_assert_uint_eq(winnow_keep_count(90, 0.7), 63); /* floor(90*0.7) = 62 */
	ck_assert_uint_eq(winnow_keep_count(10, 0.9), 9);
	ck_assert_uint_eq(winnow_keep_count(100, 0.29), 29); /* 28.999999999999996 */
	ck_assert_uint_eq(winnow_keep_count(512, 0.9), 460);
	ck_assert_uint_eq(winnow_keep_count(3, 0.5), 1);
	ck_assert_uint_eq(winnow_keep_count(7, 1.0), 7);
	ck_assert_uint_eq(winnow_keep_count(0, 0.9), 0);
}
END_TEST

START_TEST(quantiles_interpolate_linearly)
{
	double a[] = { 1, 2, 3, 4 };
	ck_assert_double_eq_tol(winnow_quantile_sorted(a, 4, 0.25), 1.75, 1e-15);
	ck_assert_double_eq_tol(winnow_quantile_sorted(a, 4, 0.75), 3.25, 1e-15);
	ck_assert_double_eq_tol(winnow_quantile_sorted(a, 4, 0.5), 2.5, 1e-15);
	double one[] = { 5 };
	ck_assert_double_eq(winnow_quantile_sorted(one, 1, 0.25), 5);
	double r[] = { 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08 };
	ck_assert_double_eq_tol(winnow_quantile_sorted(r, 8, 0.25), 0.0275, 1e-15);
	ck_assert_double_eq_tol(winnow_quantile_sorted(r, 8, 0.75), 0.0625, 1e-15);
}
END_TEST

START_TEST(alpha_cuts_protect_the_clearly_important)
{
	winnow_prune_info_t info;
	/* budget mode, p = 0.5: budget 5, but only 1, 2, 3 may leave */
	ck_assert_str_eq(decide(0.5, 1, WINNOW_FUZZY_BUDGET, ramp, 10, &info), "1 2 3");
	ck_assert_uint_eq(info.candidates, 8);
	ck_assert_uint_eq(info.protected_, 5);
	ck_assert_uint_eq(info.budget, 5);
	ck_assert_uint_eq(info.leaving, 3);
}
END_TEST

START_TEST(budget_mode)
{
	/* keep(10, 0.7) = 7: budget 3 = all three pruning candidates */
	ck_assert_str_eq(decide(0.7, 1, WINNOW_FUZZY_BUDGET, ramp, 10, NULL), "1 2 3");
	/* keep(10, 0.9) = 9: budget 1, the lowest-scored candidate */
	ck_assert_str_eq(decide(0.9, 1, WINNOW_FUZZY_BUDGET, ramp, 10, NULL), "1");
	/* at p = 0.9 the budget reading is ours-P exactly */
	ck_assert_str_eq(decide(0.9, 0, WINNOW_FUZZY_BUDGET, ramp, 10, NULL), "1");
}
END_TEST

START_TEST(within_mode)
{
	winnow_prune_info_t info;
	/* c = 3 pruning candidates; keep(3, 0.7) = 2: one leaves */
	ck_assert_str_eq(decide(0.7, 1, WINNOW_FUZZY_WITHIN, ramp, 10, &info), "1");
	ck_assert_uint_eq(info.leaving, 1);
	/* keep(3, 0.5) = 1: two leave */
	ck_assert_str_eq(decide(0.5, 1, WINNOW_FUZZY_WITHIN, ramp, 10, NULL), "1 2");
	/* keep(3, 0.9) = 2: one leaves */
	ck_assert_str_eq(decide(0.9, 1, WINNOW_FUZZY_WITHIN, ramp, 10, NULL), "1");
}
END_TEST

START_TEST(without_fuzzy_rule_the_lowest_leave)
{
	ck_assert_str_eq(decide(0.7, 0, WINNOW_FUZZY_BUDGET, ramp, 10, NULL), "1 2 3");
	ck_assert_str_eq(decide(0.5, 0, WINNOW_FUZZY_BUDGET, ramp, 10, NULL), "1 2 3 4 5");
}
END_TEST

START_TEST(products_90x07_and_10x09)
{
	/* 90 tokens: [CLS], 88 candidates with distinct rising scores, [SEP].
	 * keep(90, 0.7) = 63, so 27 leave: the 27 lowest, indices 1..27. */
	double s[90];
	char want[512] = "";
	size_t len = 0;
	for (int i = 0; i < 90; i++)
		s[i] = (i == 0 || i == 89) ? 1.0 : 0.001 * i;
	for (int i = 1; i <= 27; i++)
		len += (size_t)snprintf(want + len, sizeof want - len, "%s%d", i > 1 ? " " : "", i);
	ck_assert_str_eq(decide(0.7, 0, WINNOW_FUZZY_BUDGET, s, 90, NULL), want);
	/* 10 tokens at p = 0.9: keep 9, so exactly one leaves. */
	ck_assert_str_eq(decide(0.9, 0, WINNOW_FUZZY_BUDGET, ramp, 10, NULL), "1");
}
END_TEST

START_TEST(equal_scores_later_position_leaves_first)
{
	double flat[10];
	for (int i = 0; i < 10; i++)
		flat[i] = 0.1;
	/* a = b: Importance = 1[s >= b] = 1 and Unimportance = 1[s <= a] = 1,
	 * so I - U is empty: every candidate may leave. Budget 3: 8, 7, 6. */
	winnow_prune_info_t info;
	ck_assert_str_eq(decide(0.7, 1, WINNOW_FUZZY_BUDGET, flat, 10, &info), "6 7 8");
	ck_assert_uint_eq(info.protected_, 0);
	ck_assert_str_eq(decide(0.7, 0, WINNOW_FUZZY_BUDGET, flat, 10, NULL), "6 7 8");
	/* Two equal lowest scores among distinct others: the later goes first. */
	double s[6] = { 1, 0.2, 0.05, 0.3, 0.05, 1 };
	ck_assert_str_eq(decide(0.84, 0, WINNOW_FUZZY_BUDGET, s, 6, NULL), "4");
}
END_TEST

START_TEST(a_equals_b)
{
	/* Candidates 0.1 0.1 0.1 0.9: a = Q(0.25) = 0.1, b = Q(0.75):
	 * position 2.25 -> 0.1 + 0.25 * 0.8 = 0.3. Not a = b; so use
	 * 0.1 0.2 0.2 0.2 0.2 0.3: a = 0.2 (pos 1.25), b = 0.2 (pos 3.75).
	 * Importance = 1[s >= 0.2]; Unimportance = 1[s <= 0.2]:
	 * I = {0.2 x4, 0.3}, U = {0.1, 0.2 x4}, I - U = {0.3} protected;
	 * candidates 0.1 and the four 0.2. Budget keep(8, 0.5) = 4 leave:
	 * 0.1 (index 1) then the 0.2s from the latest: 5, 4, 3. */
	double s[8] = { 1, 0.1, 0.2, 0.2, 0.2, 0.2, 0.3, 1 };
	winnow_prune_info_t info;
	ck_assert_str_eq(decide(0.5, 1, WINNOW_FUZZY_BUDGET, s, 8, &info), "1 3 4 5");
	ck_assert_uint_eq(info.protected_, 1);
}
END_TEST

START_TEST(fewer_candidates_than_budget)
{
	/* [CLS] x [SEP] at p = 0.5: budget 3 - keep(3, 0.5) = 2, one candidate. */
	double s[3] = { 0.3, 0.2, 0.5 };
	ck_assert_str_eq(decide(0.5, 0, WINNOW_FUZZY_BUDGET, s, 3, NULL), "1");
	ck_assert_str_eq(decide(0.5, 1, WINNOW_FUZZY_BUDGET, s, 3, NULL), "1");
	/* [CLS] [SEP] alone: nothing can leave. */
	ck_assert_str_eq(decide(0.1, 0, WINNOW_FUZZY_BUDGET, s, 2, NULL), "");
	ck_assert_str_eq(decide(0.1, 1, WINNOW_FUZZY_WITHIN, s, 2, NULL), "");
}
END_TEST

START_TEST(cls_and_sep_never_leave)
{
	double s[6] = { 0.0, 0.5, 0.6, 0.7, 0.8, 0.0 };
	ck_assert_str_eq(decide(0.5, 0, WINNOW_FUZZY_BUDGET, s, 6, NULL), "1 2 3");
	ck_assert_str_eq(decide(0.01, 0, WINNOW_FUZZY_BUDGET, s, 6, NULL), "1 2 3 4");
}
END_TEST

START_TEST(keep_ratio_one_prunes_nothing)
{
	ck_assert_str_eq(decide(1.0, 1, WINNOW_FUZZY_BUDGET, ramp, 10, NULL), "");
	ck_assert_str_eq(decide(1.0, 1, WINNOW_FUZZY_WITHIN, ramp, 10, NULL), "");
	ck_assert_str_eq(decide(1.0, 0, WINNOW_FUZZY_BUDGET, ramp, 10, NULL), "");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("prune");
	TCase *tc = tcase_create("decide");
	tcase_add_test(tc, keep_count_is_exact_decimal_product);
	tcase_add_test(tc, quantiles_interpolate_linearly);
	tcase_add_test(tc, alpha_cuts_protect_the_clearly_important);
	tcase_add_test(tc, budget_mode);
	tcase_add_test(tc, within_mode);
	tcase_add_test(tc, without_fuzzy_rule_the_lowest_leave);
	tcase_add_test(tc, products_90x07_and_10x09);
	tcase_add_test(tc, equal_scores_later_position_leaves_first);
	tcase_add_test(tc, a_equals_b);
	tcase_add_test(tc, fewer_candidates_than_budget);
	tcase_add_test(tc, cls_and_sep_never_leave);
	tcase_add_test(tc, keep_ratio_one_prunes_nothing);
	suite_add_tcase(s, tc);
	return winnow_check_run(s);
}
