/*
 * test_document.c: windows over long documents, aggregation and the merge of
 * retained tokens across windows (PAPER.md 5 and 6).
 */
#include "winnow_model.h"

#include "check_main.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

START_TEST(window_count_and_spans)
{
	winnow_doc_params_t p = winnow_doc_default_params();
	int trunc;
	ck_assert_uint_eq(winnow_doc_window_count(&p, 510, 0, &trunc), 0);
	ck_assert_uint_eq(winnow_doc_window_count(&p, 510, 1, &trunc), 1);
	ck_assert_uint_eq(winnow_doc_window_count(&p, 510, 510, &trunc), 1);
	ck_assert_uint_eq(winnow_doc_window_count(&p, 510, 511, &trunc), 2);
	ck_assert_uint_eq(winnow_doc_window_count(&p, 510, 1020, &trunc), 2);
	ck_assert_int_eq(trunc, 0);
	winnow_doc_window_t w = winnow_doc_window(&p, 510, 1021, 2);
	ck_assert_uint_eq(w.first, 1020);
	ck_assert_uint_eq(w.n, 1);

	/* Stride 255: windows start at 0, 255, 510, ... until one reaches the end. */
	p.stride = 255;
	ck_assert_uint_eq(winnow_doc_window_count(&p, 510, 1000, &trunc), 3);
	w = winnow_doc_window(&p, 510, 1000, 2);
	ck_assert_uint_eq(w.first, 510);
	ck_assert_uint_eq(w.n, 490);

	/* Truncation is explicit and reported. */
	p = winnow_doc_default_params();
	p.truncate = 1;
	ck_assert_uint_eq(winnow_doc_window_count(&p, 510, 5000, &trunc), 1);
	ck_assert_int_eq(trunc, 1);
	ck_assert_uint_eq(winnow_doc_window_count(&p, 510, 100, &trunc), 1);
	ck_assert_int_eq(trunc, 0);
}
END_TEST

/* A document of 20 tokens with token i at bytes [2i, 2i+1). */
static winnow_tokens_t doc_tokens(void)
{
	winnow_tokens_t t = { 0 };
	t.cap = t.n = 20;
	t.id = calloc(20, sizeof *t.id);
	t.start = calloc(20, sizeof *t.start);
	t.end = calloc(20, sizeof *t.end);
	for (uint32_t i = 0; i < 20; i++) {
		t.id[i] = 1000 + (int32_t)i;
		t.start[i] = 2 * i;
		t.end[i] = 2 * i + 1;
	}
	return t;
}

START_TEST(mean_and_max_aggregation)
{
	winnow_tokens_t t = doc_tokens();
	winnow_doc_params_t p = winnow_doc_default_params();
	winnow_doc_result_t r;
	ck_assert_int_eq(winnow_doc_result_init(&r, 2, 3), WINNOW_OK);
	float a[2] = { 0, logf(3) };      /* probs 0.25 0.75 */
	float b[2] = { logf(3), 0 };      /* probs 0.75 0.25 */
	float c[2] = { 0, 0 };            /* probs 0.5 0.5 */
	winnow_doc_window_t w = { 0, 10 };

	winnow_doc_result_reset(&r, 20, 3, 0);
	winnow_doc_result_add(&r, &p, &t, w, a, NULL, NULL, 0);
	winnow_doc_result_add(&r, &p, &t, w, b, NULL, NULL, 0);
	winnow_doc_result_add(&r, &p, &t, w, a, NULL, NULL, 0);
	winnow_doc_result_finish(&r, &p);
	ck_assert_double_eq_tol(r.scores[0], (0.25 + 0.75 + 0.25) / 3, 1e-6);
	ck_assert_double_eq_tol(r.scores[1], (0.75 + 0.25 + 0.75) / 3, 1e-6);
	ck_assert_uint_eq(r.label, 1);

	p.aggregate = WINNOW_AGGREGATE_MAX;
	winnow_doc_result_reset(&r, 20, 2, 0);
	winnow_doc_result_add(&r, &p, &t, w, b, NULL, NULL, 0);
	winnow_doc_result_add(&r, &p, &t, w, c, NULL, NULL, 0);
	winnow_doc_result_finish(&r, &p);
	ck_assert_double_eq_tol(r.scores[0], 0.75, 1e-6);
	ck_assert_double_eq_tol(r.scores[1], 0.5, 1e-6);
	ck_assert_uint_eq(r.label, 0);
	winnow_doc_result_free(&r);
	winnow_tokens_free(&t);
}
END_TEST

START_TEST(retained_tokens_merge_by_score)
{
	winnow_tokens_t t = doc_tokens();
	winnow_doc_params_t p = winnow_doc_default_params();
	p.top_k = 3;
	winnow_doc_result_t r;
	ck_assert_int_eq(winnow_doc_result_init(&r, 2, p.top_k), WINNOW_OK);
	float logits[2] = { 0, 0 };
	winnow_doc_result_reset(&r, 20, 2, 0);

	/* Window 0 covers tokens 0..9: positions 1..10 (0 is [CLS]). */
	winnow_doc_window_t w0 = { 0, 10 }, w1 = { 5, 10 };
	uint32_t pos0[] = { 1, 3, 4 };
	double sc0[] = { 0.10, 0.30, 0.20 };
	winnow_doc_result_add(&r, &p, &t, w0, logits, pos0, sc0, 3);
	/* Window 1 (overlapping, tokens 5..14): position 1 = token 5, 0.25;
	 * position 3 = token 7, which ties token 2's 0.30 and ranks after it
	 * by position. Token 0 (0.10) falls out of the top 3. */
	uint32_t pos1[] = { 1, 3 };
	double sc1[] = { 0.25, 0.30 };
	winnow_doc_result_add(&r, &p, &t, w1, logits, pos1, sc1, 2);
	winnow_doc_result_finish(&r, &p);

	ck_assert_uint_eq(r.n_retained, 3);
	ck_assert_uint_eq(r.retained[0].token, 2);  /* window 0 position 3 */
	ck_assert_double_eq(r.retained[0].score, 0.30);
	ck_assert_uint_eq(r.retained[1].token, 7);
	ck_assert_uint_eq(r.retained[2].token, 5);
	ck_assert_uint_eq(r.retained[2].start, 10);
	ck_assert_uint_eq(r.retained[2].end, 11);
	ck_assert_int_eq(r.retained[2].id, 1005);

	/* The same token seen twice keeps its higher score, once. */
	winnow_doc_result_reset(&r, 20, 2, 0);
	uint32_t pa[] = { 6 }, pb[] = { 1 };
	double sa[] = { 0.1 }, sb[] = { 0.4 };
	winnow_doc_result_add(&r, &p, &t, w0, logits, pa, sa, 1); /* token 5 */
	winnow_doc_result_add(&r, &p, &t, w1, logits, pb, sb, 1); /* token 5 */
	winnow_doc_result_finish(&r, &p);
	ck_assert_uint_eq(r.n_retained, 1);
	ck_assert_double_eq(r.retained[0].score, 0.4);
	winnow_doc_result_free(&r);
	winnow_tokens_free(&t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("document");
	TCase *tc = tcase_create("document");
	tcase_add_test(tc, window_count_and_spans);
	tcase_add_test(tc, mean_and_max_aggregation);
	tcase_add_test(tc, retained_tokens_merge_by_score);
	suite_add_tcase(s, tc);
	return winnow_check_run(s);
}
