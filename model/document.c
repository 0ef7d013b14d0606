/*
 * document.c: long documents as windows, and a document's result from its
 * windows' (PAPER.md sections 5 and 6).
 *
 * winnow never truncates silently: a document longer than max_seq_len - 2
 * WordPiece tokens is cut into windows of that many tokens (overlapping when
 * the stride is shorter), each with its own [CLS] and [SEP] and classified
 * alone; the document's scores are the mean, or the per-label
 * maximum, of its windows' probabilities. Truncation to the first window is
 * an explicit option that the result reports.
 */
#include "model_internal.h"

#include <stdlib.h>
#include <string.h>

winnow_doc_params_t winnow_doc_default_params(void)
{
	winnow_doc_params_t p = { .stride = 0, .aggregate = WINNOW_AGGREGATE_MEAN,
				  .truncate = 0, .top_k = 10 };
	return p;
}

static size_t stride_of(const winnow_doc_params_t *p, uint32_t max_text)
{
	return p->stride && p->stride < max_text ? p->stride : max_text;
}

size_t winnow_doc_window_count(const winnow_doc_params_t *p, uint32_t max_text,
			       size_t n, int *truncated)
{
	size_t s = stride_of(p, max_text), count;
	*truncated = 0;
	if (n == 0)
		return 0;
	/* Windows start at 0, s, 2s, ... until one reaches the end. */
	count = n <= max_text ? 1 : 1 + (n - max_text + s - 1) / s;
	if (p->truncate && count > 1) {
		*truncated = 1;
		count = 1;
	}
	return count;
}

winnow_doc_window_t winnow_doc_window(const winnow_doc_params_t *p,
				      uint32_t max_text, size_t n, size_t index)
{
	winnow_doc_window_t w;
	w.first = index * stride_of(p, max_text);
	w.n = (uint32_t)(n - w.first < max_text ? n - w.first : max_text);
	return w;
}

void winnow_doc_window_ids(const winnow_model_t *m, const winnow_tokens_t *t,
			   winnow_doc_window_t w, int32_t *out)
{
	out[0] = m->cfg.cls_id;
	memcpy(out + 1, t->id + w.first, w.n * sizeof *out);
	out[w.n + 1] = m->cfg.sep_id;
}

winnow_err_t winnow_doc_result_init(winnow_doc_result_t *r, uint32_t labels,
				    uint32_t top_k)
{
	memset(r, 0, sizeof *r);
	r->num_labels = labels;
	r->top_k = top_k;
	r->scores = calloc(labels, sizeof *r->scores);
	r->retained = calloc(top_k ? top_k : 1, sizeof *r->retained);
	if (!r->scores || !r->retained) {
		winnow_doc_result_free(r);
		return WINNOW_ERR_NOMEM;
	}
	return WINNOW_OK;
}

void winnow_doc_result_free(winnow_doc_result_t *r)
{
	free(r->scores);
	free(r->retained);
	r->scores = NULL;
	r->retained = NULL;
}

void winnow_doc_result_reset(winnow_doc_result_t *r, size_t tokens,
			     size_t windows, int truncated)
{
	memset(r->scores, 0, r->num_labels * sizeof *r->scores);
	r->n_retained = 0;
	r->windows = windows;
	r->windows_added = 0;
	r->tokens = tokens;
	r->truncated = truncated;
	r->label = 0;
}

/* a ranks before b: higher score, then earlier in the document. */
static int ranks_before(const winnow_retained_t *a, const winnow_retained_t *b)
{
	return a->score > b->score || (a->score == b->score && a->token < b->token);
}

/* Offers one token to the best-top_k list, kept sorted best first. A token
 * seen in two overlapping windows keeps its higher score. */
static void offer(winnow_doc_result_t *r, const winnow_retained_t *c)
{
	uint32_t i;
	for (i = 0; i < r->n_retained; i++) {
		if (r->retained[i].token == c->token) {
			if (!ranks_before(c, &r->retained[i]))
				return;
			memmove(r->retained + i, r->retained + i + 1,
				(r->n_retained - i - 1) * sizeof *c);
			r->n_retained--;
			break;
		}
	}
	uint32_t at = r->n_retained;
	while (at > 0 && ranks_before(c, &r->retained[at - 1]))
		at--;
	if (at >= r->top_k)
		return;
	uint32_t n = r->n_retained < r->top_k ? r->n_retained : r->top_k - 1;
	memmove(r->retained + at + 1, r->retained + at, (n - at) * sizeof *c);
	r->retained[at] = *c;
	r->n_retained = n + 1;
}

void winnow_doc_result_add(winnow_doc_result_t *r,
			   const winnow_doc_params_t *p,
			   const winnow_tokens_t *toks, winnow_doc_window_t w,
			   const float *logits, const uint32_t *positions,
			   const double *scores, uint32_t n_retained)
{
	float probs[r->num_labels];
	winnow_softmax(logits, probs, r->num_labels);
	for (uint32_t j = 0; j < r->num_labels; j++) {
		if (p->aggregate == WINNOW_AGGREGATE_MAX)
			r->scores[j] = probs[j] > r->scores[j] ? probs[j] : r->scores[j];
		else
			r->scores[j] += probs[j];
	}
	r->windows_added++;
	for (uint32_t k = 0; k < n_retained && r->top_k; k++) {
		/* Position 0 of a window is its [CLS]: text token first + pos - 1. */
		size_t t = w.first + positions[k] - 1;
		winnow_retained_t c = { .token = t, .id = toks->id[t],
					.start = toks->start[t], .end = toks->end[t],
					.score = scores[k] };
		offer(r, &c);
	}
}

void winnow_doc_result_finish(winnow_doc_result_t *r,
			      const winnow_doc_params_t *p)
{
	/* mean: divide the sums; max: the per-label maxima as they are. */
	if (p->aggregate == WINNOW_AGGREGATE_MEAN && r->windows_added)
		for (uint32_t j = 0; j < r->num_labels; j++)
			r->scores[j] /= (double)r->windows_added;
	r->label = 0;
	for (uint32_t j = 1; j < r->num_labels; j++)
		if (r->scores[j] > r->scores[r->label])
			r->label = j;
}
