/*
 * test_combine.c: the token combining module (PAPER.md 3) on a case computed
 * by hand: m = 2 combination tokens, r = 3 kept tokens, d = 4.
 *
 * Wq = Wk = Wv = Wo = I, zero biases, LayerNorms with gamma 1, beta 0. Every
 * input row has mean 0 and variance 1, so each LayerNorm leaves it as it is
 * (to 1e-12). Then logits[i, j] = C_i . E_j / sqrt(4):
 *
 *   C_1 = ( 1, -1,  1, -1)    E_1 = ( 1, -1,  1, -1): C_1 . E_1 = 4, C_2 . E_1 = 0  -> 1
 *   C_2 = ( 1,  1, -1, -1)    E_2 = ( 1,  1, -1, -1): 0 and 4                       -> 2
 *                             E_3 = ( 1, -1, -1,  1): 0 and 0, a tie: lowest i      -> 1
 *
 *   C'_1 = C_1 + (E_1 + E_3) / (2 + 1e-6) = (1 + 2/2.000001, -1 - 2/2.000001, 1, -1)
 *   C'_2 = C_2 + E_2 / (1 + 1e-6)
 */
#include "encoder_internal.h"

#include "check_main.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

enum { D = 4, M = 2, R = 3 };

static float eye[D * D], zero[D], one[D];

static winnow_model_t *fake_model(void)
{
	winnow_model_t *m = calloc(1, sizeof *m);
	for (int i = 0; i < D; i++) {
		eye[i * D + i] = 1;
		one[i] = 1;
	}
	m->cfg.hidden_size = D;
	m->cfg.num_heads = 1;
	m->cfg.intermediate_size = D;
	m->cfg.num_layers = 2;
	m->cfg.combine_layer = 1;
	m->cfg.combine_tokens = M;
	m->cfg.max_seq_len = 8;
	m->cfg.num_labels = 2;
	m->cfg.layer_norm_eps = 1e-12;
	m->cfg.keep_ratio = 1.0;
	winnow_combine_weights_t *c = &m->combine;
	c->ln_c_w = c->ln_e_w = one;
	c->ln_c_b = c->ln_e_b = zero;
	c->q_w = c->k_w = c->v_w = c->o_w = eye;
	c->q_b = c->k_b = c->v_b = c->o_b = zero;
	return m;
}

START_TEST(hand_computed_m2_r3_d4)
{
	winnow_model_t *model = fake_model();
	char err[256];
	winnow_ctx_params_t p = winnow_ctx_default_params();
	p.max_windows = 1;
	p.max_tokens = 8;
	winnow_ctx_t *ctx = winnow_ctx_new(model, &p, err, sizeof err);
	ck_assert_msg(ctx != NULL, "%s", err);

	static const float rows[R + M][D] = {
		{ 1, -1, 1, -1 }, { 1, 1, -1, -1 }, { 1, -1, -1, 1 }, /* E */
		{ 1, -1, 1, -1 }, { 1, 1, -1, -1 },                   /* C */
	};
	memcpy(ctx->x, rows, sizeof rows);
	ctx->win_off[0] = 0;
	ctx->win_tok[0] = R;
	ctx->n_windows = 1;
	ctx->n_rows = R + M;
	winnow_layer_stats_t st = { 0 };
	winnow_combine_forward(ctx, 0, &st);
	ck_assert_uint_eq(ctx->n_rows, M);
	ck_assert_uint_eq(ctx->win_off[0], 0);
	ck_assert_uint_eq(ctx->win_tok[0], 0);
	ck_assert_uint_eq(st.tokens_in, R);

	float g = 2.0f / (2.0f + 1e-6f), h = 1.0f / (1.0f + 1e-6f);
	const float want[M][D] = {
		{ 1 + g, -1 - g, 1, -1 },
		{ 1 + h, 1 + h, -1 - h, -1 - h },
	};
	for (int i = 0; i < M; i++)
		for (int j = 0; j < D; j++)
			ck_assert_msg(fabsf(ctx->x[i * D + j] - want[i][j]) < 1e-5f,
				      "C'_%d[%d] = %.7f, expected %.7f", i + 1, j,
				      ctx->x[i * D + j], want[i][j]);
	winnow_ctx_destroy(ctx);
	free(model);
}
END_TEST

START_TEST(an_empty_group_adds_only_the_output_bias)
{
	/* All three tokens go to C_1; C_2 gets nothing and becomes C_2 + bo. */
	winnow_model_t *model = fake_model();
	static float bo[D] = { 0.5f, 0.25f, 0, 0 };
	model->combine.o_b = bo;
	char err[256];
	winnow_ctx_params_t p = winnow_ctx_default_params();
	p.max_windows = 1;
	p.max_tokens = 8;
	winnow_ctx_t *ctx = winnow_ctx_new(model, &p, err, sizeof err);
	ck_assert_msg(ctx != NULL, "%s", err);
	static const float rows[R + M][D] = {
		{ 1, -1, 1, -1 }, { 1, -1, 1, -1 }, { 1, -1, 1, -1 },
		{ 1, -1, 1, -1 }, { -1, 1, -1, 1 },
	};
	memcpy(ctx->x, rows, sizeof rows);
	ctx->win_off[0] = 0;
	ctx->win_tok[0] = R;
	ctx->n_windows = 1;
	ctx->n_rows = R + M;
	winnow_layer_stats_t st = { 0 };
	winnow_combine_forward(ctx, 0, &st);
	for (int j = 0; j < D; j++)
		ck_assert_float_eq_tol(ctx->x[D + j], rows[4][j] + bo[j], 1e-6f);
	/* C'_1 = C_1 + 3 E / (3 + 1e-6) + bo */
	float g = 3.0f / (3.0f + 1e-6f);
	for (int j = 0; j < D; j++)
		ck_assert_float_eq_tol(ctx->x[j], rows[3][j] * (1 + g) + bo[j], 1e-5f);
	winnow_ctx_destroy(ctx);
	free(model);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("combine");
	TCase *tc = tcase_create("combine");
	tcase_add_test(tc, hand_computed_m2_r3_d4);
	tcase_add_test(tc, an_empty_group_adds_only_the_output_bias);
	suite_add_tcase(s, tc);
	return winnow_check_run(s);
}
