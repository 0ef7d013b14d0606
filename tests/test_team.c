/*
 * test_team.c: the engine's thread team (model/team.h) and a forward pass
 * shared by several threads. Run under TSan with the pipeline tests.
 */
#include "team.h"
#include "winnow_model.h"

#include "check_main.h"

#include <check.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	winnow_team_t *team;
	int ran[8];
	int value[8];
	atomic_int wrong;
	int phases;
} team_test_t;

static void mark(void *arg, unsigned tid)
{
	team_test_t *t = arg;
	t->ran[tid]++;
}

START_TEST(every_member_runs_once_per_run)
{
	char err[256];
	team_test_t t = { 0 };
	t.team = winnow_team_new(4, err, sizeof err);
	ck_assert_msg(t.team != NULL, "%s", err);
	ck_assert_uint_eq(winnow_team_size(t.team), 4);
	for (int r = 0; r < 300; r++)
		winnow_team_run(t.team, mark, &t);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(t.ran[i], 300);
	winnow_team_destroy(t.team);
}
END_TEST

/* Each phase, every member writes its slot, meets the others, and checks
 * every slot; then meets them again before the next phase overwrites. */
static void phases(void *arg, unsigned tid)
{
	team_test_t *t = arg;
	unsigned n = winnow_team_size(t->team);
	for (int p = 0; p < t->phases; p++) {
		t->value[tid] = p * 10 + (int)tid;
		winnow_team_barrier(t->team);
		for (unsigned j = 0; j < n; j++)
			if (t->value[j] != p * 10 + (int)j)
				atomic_fetch_add(&t->wrong, 1);
		winnow_team_barrier(t->team);
	}
}

START_TEST(barrier_makes_every_write_visible)
{
	char err[256];
	for (unsigned n = 1; n <= 3; n++) {
		team_test_t t = { .phases = 2000 };
		t.team = winnow_team_new(n, err, sizeof err);
		ck_assert_msg(t.team != NULL, "%s", err);
		winnow_team_run(t.team, phases, &t);
		winnow_team_run(t.team, phases, &t);
		ck_assert_int_eq(atomic_load(&t.wrong), 0);
		winnow_team_destroy(t.team);
	}
}
END_TEST

START_TEST(destroy_of_an_idle_team_returns)
{
	char err[256];
	winnow_team_t *t = winnow_team_new(3, err, sizeof err);
	ck_assert_msg(t != NULL, "%s", err);
	winnow_team_destroy(t);
	winnow_team_destroy(NULL);
}
END_TEST

/*
 * A batch of windows of mixed lengths through one context of 1 thread and
 * one of 3: every product is split by columns and attention by heads, each
 * value computed by one thread in one order, so the logits and retained
 * tokens must be the same bits.
 */
static void check_threads_do_not_change_the_results(const char *path)
{
	char err[512];
	winnow_model_params_t mp = winnow_model_default_params();
	winnow_model_t *m = winnow_model_load(path, &mp, err, sizeof err);
	ck_assert_msg(m != NULL, "%s", err);
	const winnow_model_config_t *c = winnow_model_config(m);

	enum { NW = 5 };
	static const uint32_t lens[NW] = { 2, 9, 64, 33, 50 };
	int32_t *ids = malloc(NW * 128 * sizeof *ids);
	winnow_window_t w[NW];
	uint32_t seed = 12345, total = 0;
	for (int i = 0; i < NW; i++) {
		int32_t *x = ids + i * 128;
		x[0] = (int32_t)c->cls_id;
		for (uint32_t t = 1; t + 1 < lens[i]; t++) {
			seed = seed * 1103515245u + 12345u;
			x[t] = (int32_t)(1000 + (seed >> 8) % (c->vocab_size - 1000));
		}
		x[lens[i] - 1] = (int32_t)c->sep_id;
		w[i] = (winnow_window_t){ x, lens[i] };
		total += lens[i];
	}

	float logits[2][NW * 16];
	uint32_t retained[2][NW][128];
	uint32_t n_retained[2][NW];
	static const unsigned threads[2] = { 1, 3 };
	ck_assert_uint_le(c->num_labels, 16);
	for (int r = 0; r < 2; r++) {
		winnow_ctx_params_t cp = winnow_ctx_default_params();
		cp.max_windows = NW;
		cp.max_tokens = total;
		cp.threads = threads[r];
		winnow_ctx_t *ctx = winnow_ctx_new(m, &cp, err, sizeof err);
		ck_assert_msg(ctx != NULL, "%s", err);
		/* Twice: the second pass reuses every buffer. */
		for (int pass = 0; pass < 2; pass++)
			ck_assert_msg(winnow_ctx_forward(ctx, w, NW, logits[r], err,
							 sizeof err) == WINNOW_OK, "%s", err);
		for (int i = 0; i < NW; i++) {
			const uint32_t *pos;
			const double *sc;
			n_retained[r][i] = winnow_ctx_retained(ctx, (uint32_t)i, &pos, &sc);
			memcpy(retained[r][i], pos, n_retained[r][i] * sizeof *pos);
		}
		winnow_ctx_destroy(ctx);
	}
	ck_assert_mem_eq(logits[0], logits[1], NW * c->num_labels * sizeof(float));
	for (int i = 0; i < NW; i++) {
		ck_assert_uint_eq(n_retained[0][i], n_retained[1][i]);
		ck_assert_mem_eq(retained[0][i], retained[1][i],
				 n_retained[0][i] * sizeof(uint32_t));
	}
	free(ids);
	winnow_model_destroy(m);
}

START_TEST(threads_do_not_change_the_results)
{
	/* tiny.wnn: pruning; tiny-pfc.wnn beside it: pruning and combining. */
	const char *path = getenv("WINNOW_TEST_MODEL");
	ck_assert_msg(path != NULL, "WINNOW_TEST_MODEL is not set");
	check_threads_do_not_change_the_results(path);
	char pfc[4096];
	snprintf(pfc, sizeof pfc, "%.*s-pfc.wnn", (int)(strlen(path) - 4), path);
	check_threads_do_not_change_the_results(pfc);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("team");
	TCase *tc = tcase_create("team");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, every_member_runs_once_per_run);
	tcase_add_test(tc, barrier_makes_every_write_visible);
	tcase_add_test(tc, destroy_of_an_idle_team_returns);
	tcase_add_test(tc, threads_do_not_change_the_results);
	suite_add_tcase(s, tc);
	return winnow_check_run(s);
}
