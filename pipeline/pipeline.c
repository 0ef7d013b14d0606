/*
 * pipeline.c: the stages and threads of winnow_pipeline.h.
 *
 * A document lives in a slot from submit to its callback. There are
 * max_documents slots, made once, whose buffers (input, text, tokens,
 * result) grow to what documents need and are reused; submit waits for a
 * free slot, which is the back-pressure the caller feels. Stages hand slots
 * on through queues as large as the number of slots, so a push never waits
 * for long:
 *
 *   submit -> prep_q -> prep thread (decode, tokenize, plan windows)
 *          -> encode_q -> workers (batches of windows, forward, aggregate)
 *          -> out_q -> output thread (finish, callback, slot freed)
 *
 * Workers cut documents into batches under batch_lock: a batch takes
 * windows, in document order, until the token or window budget is reached,
 * and takes what is ready without waiting for more (a busy pipeline fills
 * its batches; an idle one answers at once). Windows of one document can
 * land in different batches and workers; the document's result is updated
 * under its slot's lock, and the worker that adds its last window passes
 * the slot on.
 */
#include "winnow_pipeline.h"
#include "decode.h"
#include "queue.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Buffers grown past this by a rare huge document are given back after it,
 * so that a few outliers do not pin memory in every slot. */
#define SHRINK_TEXT_ABOVE (8u << 20)
#define SHRINK_TOKENS_ABOVE (2u << 20)

typedef struct slot {
	struct slot *next_free;
	void *opaque;
	uint64_t t_submit;
	char *input;
	size_t input_cap, input_len;
	size_t oversized_len;          /* > 0: input refused, not copied */
	char *text;                    /* decompressed (or == input) */
	size_t text_cap, text_len;
	winnow_tokens_t toks;
	size_t n_windows, next_window; /* next_window: under batch_lock */
	size_t windows_done;           /* under lock */
	winnow_doc_result_t result;    /* under lock while windows run */
	winnow_doc_status_t status;
	char reason[256];
	pthread_mutex_t lock;
} slot_t;

typedef struct {
	slot_t *doc;
	winnow_doc_window_t span;
} batch_item_t;

typedef struct {
	winnow_pipeline_t *p;
	pthread_t thread;
	winnow_ctx_t *ctx;
	int32_t *ids;          /* [batch_windows x max_seq_len] */
	winnow_window_t *win;
	batch_item_t *items;
	float *logits;         /* [batch_windows x labels] */
} worker_t;

struct winnow_pipeline_s {
	const winnow_model_t *model;
	const winnow_model_config_t *cfg;
	winnow_pipeline_params_t params;
	winnow_pipeline_done_fn done;
	void *user;

	slot_t *slots;
	uint32_t n_slots;
	pthread_mutex_t free_lock;
	pthread_cond_t free_cond;
	slot_t *free_list;
	uint32_t in_flight;
	int stopping;          /* under free_lock: submit refuses */
	int stopped;

	winnow_queue_t prep_q, encode_q, out_q;
	pthread_mutex_t batch_lock;
	slot_t *current;       /* the document being cut into batches */
	atomic_int abandon;

	winnow_decoder_t decoder; /* the prep thread's */
	pthread_t prep_thread, out_thread;
	worker_t *workers;
	uint32_t n_workers, threads_started;

	pthread_mutex_t stats_lock;
	winnow_pipeline_stats_t stats;
};

const char *winnow_doc_status_name(winnow_doc_status_t s)
{
	switch (s) {
	case WINNOW_DOC_OK: return "ok";
	case WINNOW_DOC_NOT_ZSTD: return "not-zstd";
	case WINNOW_DOC_TRUNCATED_ZSTD: return "truncated-zstd";
	case WINNOW_DOC_CORRUPT_ZSTD: return "corrupt-zstd";
	case WINNOW_DOC_TOO_LARGE: return "too-large";
	case WINNOW_DOC_INVALID_UTF8: return "invalid-utf8";
	case WINNOW_DOC_EMPTY: return "empty";
	case WINNOW_DOC_ENGINE_ERROR: return "engine-error";
	case WINNOW_DOC_ABANDONED: return "abandoned";
	}
	return "unknown";
}

winnow_pipeline_params_t winnow_pipeline_default_params(void)
{
	winnow_pipeline_params_t p = {
		.max_documents = 64,
		.workers = 2,
		.threads_per_worker = 1,
		.batch_tokens = 4096,
		.batch_windows = 16,
		.compressed = 1,
		.max_input_bytes = 16u << 20,
		.max_document_bytes = 16u << 20,
		.zstd_window_log_max = 27,
		.doc = winnow_doc_default_params(),
	};
	return p;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fail_doc(slot_t *s, winnow_doc_status_t status, const char *reason)
{
	s->status = status;
	snprintf(s->reason, sizeof s->reason, "%s", reason);
}

/* ---- prep: decode, tokenize, plan windows --------------------------------- */

static void prepare(winnow_pipeline_t *p, slot_t *s)
{
	const winnow_pipeline_params_t *pp = &p->params;
	char err[256];

	if (s->oversized_len) {
		snprintf(err, sizeof err, "value of %zu bytes exceeds the input cap of %zu bytes",
			 s->oversized_len, pp->max_input_bytes);
		fail_doc(s, WINNOW_DOC_TOO_LARGE, err);
		return;
	}
	if (pp->compressed) {
		s->status = winnow_decode(&p->decoder, s->input, s->input_len,
					  &s->text, &s->text_cap, &s->text_len,
					  s->reason, sizeof s->reason);
		if (s->status != WINNOW_DOC_OK)
			return;
	} else {
		if (s->input_len > pp->max_document_bytes) {
			snprintf(err, sizeof err, "document of %zu bytes exceeds the cap of %zu bytes",
				 s->input_len, pp->max_document_bytes);
			fail_doc(s, WINNOW_DOC_TOO_LARGE, err);
			return;
		}
		/* Swap rather than copy: the input buffer becomes the text. */
		char *b = s->text;
		size_t c = s->text_cap;
		s->text = s->input;
		s->text_cap = s->input_cap;
		s->text_len = s->input_len;
		s->input = b;
		s->input_cap = c;
		s->input_len = 0;
	}
	if (s->text_len == 0) {
		fail_doc(s, WINNOW_DOC_EMPTY, "empty document");
		return;
	}
	winnow_err_t e = winnow_tokenizer_encode(winnow_model_tokenizer(p->model),
						 s->text, s->text_len, &s->toks,
						 err, sizeof err);
	if (e) {
		fail_doc(s, e == WINNOW_ERR_INVALID_UTF8 ? WINNOW_DOC_INVALID_UTF8
		    : e == WINNOW_ERR_TOO_LARGE ? WINNOW_DOC_TOO_LARGE
		    : WINNOW_DOC_ENGINE_ERROR, err);
		return;
	}
	if (s->toks.n == 0) {
		fail_doc(s, WINNOW_DOC_EMPTY,
			 "document has no tokens (only whitespace or control characters)");
		return;
	}
	int truncated;
	s->n_windows = winnow_doc_window_count(&pp->doc, p->cfg->max_seq_len - 2,
					       s->toks.n, &truncated);
	s->next_window = 0;
	s->windows_done = 0;
	winnow_doc_result_reset(&s->result, s->toks.n, s->n_windows, truncated);
}

static void *prep_main(void *arg)
{
	winnow_pipeline_t *p = arg;
	slot_t *s;
	while ((s = winnow_queue_pop(&p->prep_q))) {
		s->status = WINNOW_DOC_OK;
		s->reason[0] = '\0';
		if (atomic_load(&p->abandon))
			fail_doc(s, WINNOW_DOC_ABANDONED, "abandoned at shutdown");
		else
			prepare(p, s);
		winnow_queue_push(s->status == WINNOW_DOC_OK ? &p->encode_q
							     : &p->out_q, s);
	}
	return NULL;
}

/* ---- encoder workers -------------------------------------------------------- */

/*
 * Claims the next batch: windows in document order up to the budgets,
 * waiting only while the batch is empty. Returns its size; 0 once the
 * encode queue is closed and every document is cut.
 */
static uint32_t claim_batch(winnow_pipeline_t *p, worker_t *w)
{
	const winnow_pipeline_params_t *pp = &p->params;
	uint32_t n = 0, tokens = 0, max_text = p->cfg->max_seq_len - 2;

	pthread_mutex_lock(&p->batch_lock);
	while (n < pp->batch_windows) {
		slot_t *d = p->current;
		if (!d || d->next_window == d->n_windows) {
			p->current = NULL;
			d = n ? winnow_queue_try_pop(&p->encode_q)
			      : winnow_queue_pop(&p->encode_q);
			if (!d)
				break;
			p->current = d;
		}
		winnow_doc_window_t span = winnow_doc_window(&pp->doc, max_text,
							     d->toks.n, d->next_window);
		if (n && tokens + span.n + 2 > pp->batch_tokens)
			break;
		w->items[n].doc = d;
		w->items[n].span = span;
		d->next_window++;
		tokens += span.n + 2;
		n++;
	}
	pthread_mutex_unlock(&p->batch_lock);
	return n;
}

/* Adds one window's outcome to its document; passes the document on when it
 * was the last. logits NULL: the window failed or was abandoned. */
static void window_done(winnow_pipeline_t *p, worker_t *w, uint32_t i,
			const float *logits, winnow_doc_status_t fail,
			const char *reason)
{
	slot_t *d = w->items[i].doc;
	int complete;
	pthread_mutex_lock(&d->lock);
	if (logits) {
		const uint32_t *pos;
		const double *sc;
		uint32_t nr = winnow_ctx_retained(w->ctx, i, &pos, &sc);
		winnow_doc_result_add(&d->result, &p->params.doc, &d->toks,
				      w->items[i].span, logits, pos, sc, nr);
	} else if (d->status == WINNOW_DOC_OK) {
		fail_doc(d, fail, reason);
	}
	complete = ++d->windows_done == d->n_windows;
	pthread_mutex_unlock(&d->lock);
	if (complete)
		winnow_queue_push(&p->out_q, d);
}

static void *worker_main(void *arg)
{
	worker_t *w = arg;
	winnow_pipeline_t *p = w->p;
	uint32_t L = p->cfg->max_seq_len, labels = p->cfg->num_labels;
	char err[256];
	uint32_t n;

	while ((n = claim_batch(p, w))) {
		if (atomic_load(&p->abandon)) {
			for (uint32_t i = 0; i < n; i++)
				window_done(p, w, i, NULL, WINNOW_DOC_ABANDONED,
					    "abandoned at shutdown");
			continue;
		}
		uint64_t tokens = 0;
		for (uint32_t i = 0; i < n; i++) {
			int32_t *ids = w->ids + (size_t)i * L;
			winnow_doc_window_ids(p->model, &w->items[i].doc->toks,
					      w->items[i].span, ids);
			w->win[i].ids = ids;
			w->win[i].n = w->items[i].span.n + 2;
			tokens += w->win[i].n;
		}
		winnow_err_t e = winnow_ctx_forward(w->ctx, w->win, n, w->logits,
						    err, sizeof err);
		uint64_t kept = 0;
		for (uint32_t i = 0; i < n; i++) {
			const uint32_t *pos;
			const double *sc;
			kept += e ? 0 : winnow_ctx_retained(w->ctx, i, &pos, &sc) + 2;
			window_done(p, w, i, e ? NULL : w->logits + (size_t)i * labels,
				    WINNOW_DOC_ENGINE_ERROR, err);
		}
		pthread_mutex_lock(&p->stats_lock);
		p->stats.batches++;
		p->stats.batch_windows += n;
		p->stats.batch_tokens += tokens;
		p->stats.tokens_seen += tokens;
		p->stats.tokens_kept += kept;
		pthread_mutex_unlock(&p->stats_lock);
	}
	return NULL;
}

/* ---- output ------------------------------------------------------------------ */

static void release_slot(winnow_pipeline_t *p, slot_t *s)
{
	/* A rare huge document gives its buffers back. */
	if (s->text_cap > SHRINK_TEXT_ABOVE) {
		free(s->text);
		s->text = NULL;
		s->text_cap = 0;
	}
	if (s->input_cap > SHRINK_TEXT_ABOVE) {
		free(s->input);
		s->input = NULL;
		s->input_cap = 0;
	}
	if (s->toks.cap > SHRINK_TOKENS_ABOVE)
		winnow_tokens_free(&s->toks);
	pthread_mutex_lock(&p->free_lock);
	s->next_free = p->free_list;
	p->free_list = s;
	p->in_flight--;
	pthread_cond_signal(&p->free_cond);
	pthread_mutex_unlock(&p->free_lock);
}

static void *output_main(void *arg)
{
	winnow_pipeline_t *p = arg;
	slot_t *s;
	while ((s = winnow_queue_pop(&p->out_q))) {
		winnow_pipeline_doc_t out = {
			.opaque = s->opaque,
			.status = s->status,
			.reason = s->status ? s->reason : NULL,
			.result = s->status ? NULL : &s->result,
			.text = s->text_len ? s->text : NULL,
			.text_len = s->text_len,
		};
		if (s->status == WINNOW_DOC_OK)
			winnow_doc_result_finish(&s->result, &p->params.doc);
		out.latency_ns = now_ns() - s->t_submit;
		p->done(&out, p->user);
		pthread_mutex_lock(&p->stats_lock);
		p->stats.completed++;
		p->stats.by_status[s->status]++;
		pthread_mutex_unlock(&p->stats_lock);
		release_slot(p, s);
	}
	return NULL;
}

/* ---- life cycle ---------------------------------------------------------------- */

static int worker_init(winnow_pipeline_t *p, worker_t *w, char *errstr,
		       size_t errstr_size)
{
	const winnow_pipeline_params_t *pp = &p->params;
	uint32_t L = p->cfg->max_seq_len;
	winnow_ctx_params_t cp = winnow_ctx_default_params();
	cp.max_windows = pp->batch_windows;
	/* A batch's first window is always taken, whatever its length. */
	cp.max_tokens = pp->batch_tokens > L ? pp->batch_tokens : L;
	cp.threads = pp->threads_per_worker ? pp->threads_per_worker : 1;
	w->p = p;
	w->ctx = winnow_ctx_new(p->model, &cp, errstr, errstr_size);
	if (!w->ctx)
		return -1;
	w->ids = malloc((size_t)pp->batch_windows * L * sizeof *w->ids);
	w->win = calloc(pp->batch_windows, sizeof *w->win);
	w->items = calloc(pp->batch_windows, sizeof *w->items);
	w->logits = malloc((size_t)pp->batch_windows * p->cfg->num_labels *
			   sizeof *w->logits);
	if (!w->ids || !w->win || !w->items || !w->logits) {
		snprintf(errstr, errstr_size, "cannot start pipeline: out of memory");
		return -1;
	}
	return 0;
}

static void worker_free(worker_t *w)
{
	winnow_ctx_destroy(w->ctx);
	free(w->ids);
	free(w->win);
	free(w->items);
	free(w->logits);
}

winnow_pipeline_t *winnow_pipeline_new(const winnow_model_t *model,
				       const winnow_pipeline_params_t *params,
				       winnow_pipeline_done_fn done, void *user,
				       char *errstr, size_t errstr_size)
{
	winnow_pipeline_params_t defaults = winnow_pipeline_default_params();
	if (!params)
		params = &defaults;
	if (!params->max_documents || !params->workers || !params->batch_windows ||
	    !params->batch_tokens || !params->max_document_bytes || !done) {
		snprintf(errstr, errstr_size,
			 "cannot start pipeline: max_documents, workers, batch budgets, max_document_bytes and a callback are required");
		return NULL;
	}
	winnow_pipeline_t *p = calloc(1, sizeof *p);
	if (!p) {
		snprintf(errstr, errstr_size, "cannot start pipeline: out of memory");
		return NULL;
	}
	p->model = model;
	p->cfg = winnow_model_config(model);
	p->params = *params;
	p->done = done;
	p->user = user;
	pthread_mutex_init(&p->free_lock, NULL);
	pthread_cond_init(&p->free_cond, NULL);
	pthread_mutex_init(&p->batch_lock, NULL);
	pthread_mutex_init(&p->stats_lock, NULL);
	atomic_init(&p->abandon, 0);

	p->n_slots = params->max_documents;
	p->slots = calloc(p->n_slots, sizeof *p->slots);
	if (!p->slots)
		goto out_nomem;
	for (uint32_t i = 0; i < p->n_slots; i++) {
		slot_t *s = &p->slots[i];
		pthread_mutex_init(&s->lock, NULL);
		if (winnow_doc_result_init(&s->result, p->cfg->num_labels,
					   params->doc.top_k))
			goto out_nomem;
		s->next_free = p->free_list;
		p->free_list = s;
	}
	if (winnow_queue_init(&p->prep_q, p->n_slots) ||
	    winnow_queue_init(&p->encode_q, p->n_slots) ||
	    winnow_queue_init(&p->out_q, p->n_slots) ||
	    winnow_decoder_init(&p->decoder, params->max_document_bytes,
				params->zstd_window_log_max))
		goto out_nomem;

	/* The workers and their contexts' threads are the parallelism; a
	 * context keeps OpenBLAS to one thread (winnow_model.h). */
	p->n_workers = params->workers;
	p->workers = calloc(p->n_workers, sizeof *p->workers);
	if (!p->workers)
		goto out_nomem;
	for (uint32_t i = 0; i < p->n_workers; i++)
		if (worker_init(p, &p->workers[i], errstr, errstr_size))
			goto out_destroy;

	if (pthread_create(&p->prep_thread, NULL, prep_main, p))
		goto out_threads;
	p->threads_started = 1;
	if (pthread_create(&p->out_thread, NULL, output_main, p))
		goto out_threads;
	p->threads_started = 2;
	for (uint32_t i = 0; i < p->n_workers; i++) {
		if (pthread_create(&p->workers[i].thread, NULL, worker_main,
				   &p->workers[i]))
			goto out_threads;
		p->threads_started++;
	}
	return p;

out_threads:
	snprintf(errstr, errstr_size, "cannot start pipeline: cannot create threads");
	goto out_destroy;
out_nomem:
	snprintf(errstr, errstr_size, "cannot start pipeline: out of memory");
out_destroy:
	winnow_pipeline_destroy(p);
	return NULL;
}

winnow_err_t winnow_pipeline_submit(winnow_pipeline_t *p, const void *data,
				    size_t len, void *opaque, int timeout_ms)
{
	struct timespec deadline;
	slot_t *s;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}

	pthread_mutex_lock(&p->free_lock);
	while (!p->free_list && !p->stopping) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&p->free_cond, &p->free_lock);
		} else if (pthread_cond_timedwait(&p->free_cond, &p->free_lock,
						  &deadline)) {
			break;
		}
	}
	if (p->stopping || !p->free_list) {
		winnow_err_t e = p->stopping ? WINNOW_ERR_ARG : WINNOW_ERR_BUSY;
		pthread_mutex_unlock(&p->free_lock);
		return e;
	}
	s = p->free_list;
	p->free_list = s->next_free;
	p->in_flight++;
	pthread_mutex_unlock(&p->free_lock);

	s->opaque = opaque;
	s->t_submit = now_ns();
	s->oversized_len = 0;
	s->input_len = 0;
	s->text_len = 0;
	s->toks.n = 0;
	if (len > p->params.max_input_bytes) {
		s->oversized_len = len;
	} else {
		if (len > s->input_cap) {
			size_t cap = s->input_cap ? s->input_cap : 4096;
			while (cap < len)
				cap *= 2;
			char *nb = realloc(s->input, cap);
			if (!nb) {
				s->oversized_len = len; /* refused rather than lost */
			} else {
				s->input = nb;
				s->input_cap = cap;
			}
		}
		if (!s->oversized_len) {
			/* A 0-byte value may meet a slot with no buffer yet:
			 * memcpy's pointers must be valid even for 0 bytes. */
			if (len)
				memcpy(s->input, data, len);
			s->input_len = len;
		}
	}
	pthread_mutex_lock(&p->stats_lock);
	p->stats.submitted++;
	pthread_mutex_unlock(&p->stats_lock);
	winnow_queue_push(&p->prep_q, s);
	return WINNOW_OK;
}

uint32_t winnow_pipeline_in_flight(winnow_pipeline_t *p)
{
	pthread_mutex_lock(&p->free_lock);
	uint32_t n = p->in_flight;
	pthread_mutex_unlock(&p->free_lock);
	return n;
}

void winnow_pipeline_stats(winnow_pipeline_t *p, winnow_pipeline_stats_t *out)
{
	pthread_mutex_lock(&p->stats_lock);
	*out = p->stats;
	pthread_mutex_unlock(&p->stats_lock);
	out->depth_prep = (uint32_t)winnow_queue_depth(&p->prep_q);
	out->depth_encode = (uint32_t)winnow_queue_depth(&p->encode_q);
	out->depth_output = (uint32_t)winnow_queue_depth(&p->out_q);
}

void winnow_pipeline_stop(winnow_pipeline_t *p, int drain)
{
	pthread_mutex_lock(&p->free_lock);
	int already = p->stopped;
	p->stopping = 1;
	p->stopped = 1;
	pthread_cond_broadcast(&p->free_cond);
	pthread_mutex_unlock(&p->free_lock);
	if (already)
		return;
	if (!drain)
		atomic_store(&p->abandon, 1);
	/* Each stage finishes what it holds before the next one is told. */
	winnow_queue_close(&p->prep_q);
	if (p->threads_started >= 1)
		pthread_join(p->prep_thread, NULL);
	winnow_queue_close(&p->encode_q);
	for (uint32_t i = 0; i + 2 < p->threads_started; i++)
		pthread_join(p->workers[i].thread, NULL);
	winnow_queue_close(&p->out_q);
	if (p->threads_started >= 2)
		pthread_join(p->out_thread, NULL);
}

void winnow_pipeline_destroy(winnow_pipeline_t *p)
{
	if (!p)
		return;
	winnow_pipeline_stop(p, 1);
	for (uint32_t i = 0; p->workers && i < p->n_workers; i++)
		worker_free(&p->workers[i]);
	free(p->workers);
	winnow_decoder_destroy(&p->decoder);
	winnow_queue_destroy(&p->out_q);
	winnow_queue_destroy(&p->encode_q);
	winnow_queue_destroy(&p->prep_q);
	for (uint32_t i = 0; p->slots && i < p->n_slots; i++) {
		slot_t *s = &p->slots[i];
		free(s->input);
		free(s->text);
		winnow_tokens_free(&s->toks);
		winnow_doc_result_free(&s->result);
		pthread_mutex_destroy(&s->lock);
	}
	free(p->slots);
	pthread_mutex_destroy(&p->stats_lock);
	pthread_mutex_destroy(&p->batch_lock);
	pthread_cond_destroy(&p->free_cond);
	pthread_mutex_destroy(&p->free_lock);
	free(p);
}
