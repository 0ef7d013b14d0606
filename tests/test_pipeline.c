/*
 * test_pipeline.c: the thread pipeline, driven through winnow_pipeline.h.
 *
 * Every submitted document gets exactly one callback; results equal the
 * engine's run document by document; poison documents finish with the right
 * status and reason without stopping the others; a full pipeline pushes
 * back; a stop without drain abandons but still answers every document.
 * Also run under TSan by scripts/test.sh.
 *
 * The model is the tiny random one the ctest fixture exports
 * (tests/CMakeLists.txt), passed in WINNOW_TEST_MODEL.
 */
#include "winnow_pipeline.h"

#include "check_main.h"

#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static winnow_model_t *model;

static void load_model(void)
{
	const char *path = getenv("WINNOW_TEST_MODEL");
	char err[512];
	ck_assert_msg(path != NULL, "WINNOW_TEST_MODEL is not set");
	model = winnow_model_load(path, NULL, err, sizeof err);
	ck_assert_msg(model != NULL, "%s", err);
}

static void free_model(void)
{
	winnow_model_destroy(model);
	model = NULL;
}

/* ---- what the callback saw ------------------------------------------------ */

#define MAX_DOCS 400

typedef struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int calls[MAX_DOCS];
	winnow_doc_status_t status[MAX_DOCS];
	char reason[MAX_DOCS][256];
	double scores[MAX_DOCS][2];
	uint32_t retained[MAX_DOCS];
	size_t windows[MAX_DOCS];
	int total;
	int hold;          /* 1: the callback waits until released */
} seen_t;

static seen_t seen;

static void seen_reset(void)
{
	pthread_mutex_destroy(&seen.lock);
	pthread_cond_destroy(&seen.cond);
	memset(&seen, 0, sizeof seen);
	pthread_mutex_init(&seen.lock, NULL);
	pthread_cond_init(&seen.cond, NULL);
}

static void on_done(const winnow_pipeline_doc_t *d, void *user)
{
	intptr_t i = (intptr_t)d->opaque;
	(void)user;
	pthread_mutex_lock(&seen.lock);
	while (seen.hold)
		pthread_cond_wait(&seen.cond, &seen.lock);
	seen.calls[i]++;
	seen.status[i] = d->status;
	if (d->reason)
		snprintf(seen.reason[i], sizeof seen.reason[i], "%s", d->reason);
	if (d->result) {
		seen.scores[i][0] = d->result->scores[0];
		seen.scores[i][1] = d->result->scores[1];
		seen.retained[i] = d->result->n_retained;
		seen.windows[i] = d->result->windows;
	}
	seen.total++;
	pthread_cond_broadcast(&seen.cond);
	pthread_mutex_unlock(&seen.lock);
}

/* ---- documents ------------------------------------------------------------- */

static const char *words[] = {
	"free", "offer", "meeting", "tomorrow", "click", "here", "report",
	"money", "the", "a", "winner", "project", "deadline", "viagra", "hi",
	"thanks", "unsubscribe", "agenda", "review", "lottery",
};

/* Document i: 1 .. ~300 words, deterministic. */
static size_t make_text(int i, char *buf, size_t cap)
{
	unsigned s = 2654435761u * (unsigned)(i + 1);
	size_t n = 1 + (size_t)(i * 37 % 300), len = 0;
	for (size_t k = 0; k < n && len + 16 < cap; k++) {
		s = s * 1103515245u + 12345u;
		len += (size_t)snprintf(buf + len, cap - len, "%s%s", k ? " " : "",
					words[(s >> 16) % 20]);
	}
	return len;
}

static void *compress(const void *src, size_t len, size_t *out_len)
{
	size_t cap = ZSTD_compressBound(len);
	void *dst = malloc(cap);
	ck_assert_ptr_nonnull(dst);
	*out_len = ZSTD_compress(dst, cap, src, len, 3);
	ck_assert(!ZSTD_isError(*out_len));
	return dst;
}

/* The document's scores computed by the engine alone, one window at a time. */
static void reference_scores(const char *text, size_t len, double *scores)
{
	const winnow_model_config_t *c = winnow_model_config(model);
	winnow_doc_params_t dp = winnow_doc_default_params();
	winnow_tokens_t toks = { 0 };
	winnow_doc_result_t r;
	char err[256];
	int truncated;
	winnow_ctx_t *ctx = winnow_ctx_new(model, NULL, err, sizeof err);
	ck_assert_ptr_nonnull(ctx);
	ck_assert_int_eq(winnow_doc_result_init(&r, c->num_labels, 10), WINNOW_OK);
	ck_assert_int_eq(winnow_tokenizer_encode(winnow_model_tokenizer(model), text,
						 len, &toks, err, sizeof err), WINNOW_OK);
	size_t nw = winnow_doc_window_count(&dp, c->max_seq_len - 2, toks.n, &truncated);
	winnow_doc_result_reset(&r, toks.n, nw, truncated);
	int32_t ids[4096];
	for (size_t w = 0; w < nw; w++) {
		winnow_doc_window_t span = winnow_doc_window(&dp, c->max_seq_len - 2, toks.n, w);
		winnow_doc_window_ids(model, &toks, span, ids);
		winnow_window_t win = { ids, span.n + 2 };
		float logits[8];
		ck_assert_int_eq(winnow_ctx_forward(ctx, &win, 1, logits, err, sizeof err), WINNOW_OK);
		const uint32_t *pos;
		const double *sc;
		uint32_t nr = winnow_ctx_retained(ctx, 0, &pos, &sc);
		winnow_doc_result_add(&r, &dp, &toks, span, logits, pos, sc, nr);
	}
	winnow_doc_result_finish(&r, &dp);
	scores[0] = r.scores[0];
	scores[1] = r.scores[1];
	winnow_doc_result_free(&r);
	winnow_tokens_free(&toks);
	winnow_ctx_destroy(ctx);
}

/* ---- tests ------------------------------------------------------------------- */

START_TEST(every_document_once_with_the_engines_result)
{
	enum { N = 300 };
	seen_reset();
	winnow_pipeline_params_t pp = winnow_pipeline_default_params();
	pp.max_documents = 16;
	pp.batch_tokens = 256;
	pp.batch_windows = 8;
	char err[512];
	winnow_pipeline_t *p = winnow_pipeline_new(model, &pp, on_done, NULL, err, sizeof err);
	ck_assert_msg(p != NULL, "%s", err);
	static char text[8192];
	for (int i = 0; i < N; i++) {
		size_t len = make_text(i, text, sizeof text), zlen;
		void *z = compress(text, len, &zlen);
		ck_assert_int_eq(winnow_pipeline_submit(p, z, zlen, (void *)(intptr_t)i, -1), WINNOW_OK);
		free(z); /* submit copied it */
	}
	winnow_pipeline_stop(p, 1);
	winnow_pipeline_stats_t st;
	winnow_pipeline_stats(p, &st);
	ck_assert_uint_eq(st.submitted, N);
	ck_assert_uint_eq(st.completed, N);
	ck_assert_uint_eq(st.by_status[WINNOW_DOC_OK], N);
	ck_assert(st.batches > 0 && st.tokens_seen >= st.tokens_kept);
	ck_assert_uint_eq(winnow_pipeline_in_flight(p), 0);
	int multi = 0;
	for (int i = 0; i < N; i++) {
		ck_assert_msg(seen.calls[i] == 1, "document %d: %d callbacks", i, seen.calls[i]);
		ck_assert_msg(seen.status[i] == WINNOW_DOC_OK, "document %d: %s", i, seen.reason[i]);
		multi += seen.windows[i] > 1;
	}
	ck_assert_msg(multi > 10, "only %d documents of several windows", multi);
	for (int i = 0; i < N; i += 7) {
		double want[2];
		size_t len = make_text(i, text, sizeof text);
		reference_scores(text, len, want);
		ck_assert_msg(fabs(seen.scores[i][0] - want[0]) < 1e-5 &&
			      fabs(seen.scores[i][1] - want[1]) < 1e-5,
			      "document %d: pipeline %.7f/%.7f, engine %.7f/%.7f", i,
			      seen.scores[i][0], seen.scores[i][1], want[0], want[1]);
	}
	winnow_pipeline_destroy(p);
}
END_TEST

START_TEST(poison_documents_are_refused_with_reasons)
{
	seen_reset();
	winnow_pipeline_params_t pp = winnow_pipeline_default_params();
	pp.max_document_bytes = 1 << 20;
	pp.max_input_bytes = 2 << 20;
	char err[512];
	winnow_pipeline_t *p = winnow_pipeline_new(model, &pp, on_done, NULL, err, sizeof err);
	ck_assert_msg(p != NULL, "%s", err);

	const char *good = "an ordinary message about the meeting";
	size_t zlen, blen, elen, ulen;
	void *z = compress(good, strlen(good), &zlen);
	size_t big = 64u << 20; /* a bomb: 64 MiB of zeros, a few KB compressed */
	char *zeros = calloc(1, big);
	void *bomb = compress(zeros, big, &blen);
	free(zeros);
	void *empty = compress("", 0, &elen);
	void *bad_utf8 = compress("caf\xc3 au lait", 12, &ulen);
	size_t blank_len;
	void *blank = compress(" \t\n", 3, &blank_len);
	char *huge = malloc(3 << 20);
	memset(huge, 'x', 3 << 20);

	struct { const void *data; size_t len; winnow_doc_status_t want; const char *reason; } cases[] = {
		{ z, zlen, WINNOW_DOC_OK, NULL },
		{ "plain text, not zstd", 20, WINNOW_DOC_NOT_ZSTD, "not a zstd frame" },
		{ z, zlen - 3, WINNOW_DOC_TRUNCATED_ZSTD, "truncated" },
		{ z, zlen, WINNOW_DOC_OK, NULL },
		{ bomb, blen, WINNOW_DOC_TOO_LARGE, "cap of 1048576" },
		{ bad_utf8, ulen, WINNOW_DOC_INVALID_UTF8, "invalid UTF-8 at byte 3" },
		{ empty, elen, WINNOW_DOC_EMPTY, "empty document" },
		{ "", 0, WINNOW_DOC_EMPTY, "empty value (0 bytes)" },
		{ blank, blank_len, WINNOW_DOC_EMPTY, "no tokens" },
		{ huge, 3 << 20, WINNOW_DOC_TOO_LARGE, "exceeds the input cap" },
		{ z, zlen, WINNOW_DOC_OK, NULL },
	};
	int n = sizeof cases / sizeof cases[0];
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(winnow_pipeline_submit(p, cases[i].data, cases[i].len,
							(void *)(intptr_t)i, -1), WINNOW_OK);
	winnow_pipeline_stop(p, 1);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(seen.calls[i], 1);
		ck_assert_msg(seen.status[i] == cases[i].want, "case %d: %s (%s), expected %s",
			      i, winnow_doc_status_name(seen.status[i]), seen.reason[i],
			      winnow_doc_status_name(cases[i].want));
		if (cases[i].reason)
			ck_assert_msg(strstr(seen.reason[i], cases[i].reason),
				      "case %d: reason '%s' lacks '%s'", i, seen.reason[i],
				      cases[i].reason);
	}
	winnow_pipeline_destroy(p);
	free(z), free(bomb), free(empty), free(bad_utf8), free(blank), free(huge);
}
END_TEST

START_TEST(a_full_pipeline_pushes_back)
{
	seen_reset();
	seen.hold = 1;
	winnow_pipeline_params_t pp = winnow_pipeline_default_params();
	pp.max_documents = 4;
	pp.compressed = 0;
	char err[512];
	winnow_pipeline_t *p = winnow_pipeline_new(model, &pp, on_done, NULL, err, sizeof err);
	ck_assert_msg(p != NULL, "%s", err);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(winnow_pipeline_submit(p, "hello world", 11,
							(void *)(intptr_t)i, 1000), WINNOW_OK);
	ck_assert_uint_eq(winnow_pipeline_in_flight(p), 4);
	ck_assert_int_eq(winnow_pipeline_submit(p, "one more", 8, (void *)4, 50),
			 WINNOW_ERR_BUSY);
	pthread_mutex_lock(&seen.lock);
	seen.hold = 0;
	pthread_cond_broadcast(&seen.cond);
	pthread_mutex_unlock(&seen.lock);
	ck_assert_int_eq(winnow_pipeline_submit(p, "one more", 8, (void *)4, 5000), WINNOW_OK);
	winnow_pipeline_stop(p, 1);
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(seen.calls[i], 1);
		ck_assert_int_eq(seen.status[i], WINNOW_DOC_OK);
	}
	ck_assert_int_eq(winnow_pipeline_submit(p, "late", 4, (void *)5, 0), WINNOW_ERR_ARG);
	winnow_pipeline_destroy(p);
}
END_TEST

START_TEST(stop_without_drain_still_answers_everything)
{
	enum { N = 120 };
	seen_reset();
	winnow_pipeline_params_t pp = winnow_pipeline_default_params();
	pp.compressed = 0;
	pp.max_documents = N;
	char err[512];
	winnow_pipeline_t *p = winnow_pipeline_new(model, &pp, on_done, NULL, err, sizeof err);
	ck_assert_msg(p != NULL, "%s", err);
	static char text[8192];
	for (int i = 0; i < N; i++) {
		size_t len = make_text(i * 3 + 299, text, sizeof text);
		ck_assert_int_eq(winnow_pipeline_submit(p, text, len, (void *)(intptr_t)i, -1),
				 WINNOW_OK);
	}
	winnow_pipeline_stop(p, 0);
	int ok = 0, abandoned = 0;
	for (int i = 0; i < N; i++) {
		ck_assert_msg(seen.calls[i] == 1, "document %d: %d callbacks", i, seen.calls[i]);
		ok += seen.status[i] == WINNOW_DOC_OK;
		abandoned += seen.status[i] == WINNOW_DOC_ABANDONED;
	}
	ck_assert_int_eq(ok + abandoned, N);
	printf("stop without drain: %d classified, %d abandoned\n", ok, abandoned);
	winnow_pipeline_destroy(p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pipeline");
	TCase *tc = tcase_create("pipeline");
	tcase_set_timeout(tc, 300);
	tcase_add_checked_fixture(tc, load_model, free_model);
	tcase_add_test(tc, every_document_once_with_the_engines_result);
	tcase_add_test(tc, poison_documents_are_refused_with_reasons);
	tcase_add_test(tc, a_full_pipeline_pushes_back);
	tcase_add_test(tc, stop_without_drain_still_answers_everything);
	suite_add_tcase(s, tc);
	return winnow_check_run(s);
}
