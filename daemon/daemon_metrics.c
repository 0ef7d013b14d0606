/* daemon_metrics.c: winnowd's metric set and health (daemon_metrics.h). */
#include "daemon_metrics.h"
#include "http.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct winnow_daemon_metrics_s {
	winnow_metrics_t *reg;
	winnow_health_t *health;
	winnow_http_t *http;
	winnow_metric_t *consumed, *classified, *dead, *dropped, *latency;
	winnow_metric_t *tokens_seen, *tokens_kept, *batches, *batch_windows,
			*batch_tokens, *in_flight, *depth, *lag;
	winnow_pipeline_stats_t last; /* main thread: for counter deltas */
	const char *const *labels;
	uint32_t n_labels;
};

/* Latency buckets, seconds: 1 ms .. 60 s. */
static const double latency_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };

winnow_daemon_metrics_t *winnow_daemon_metrics_new(const char *listen,
						   char *errstr,
						   size_t errstr_size)
{
	winnow_daemon_metrics_t *m = calloc(1, sizeof *m);
	if (!m || !(m->reg = winnow_metrics_new()) ||
	    !(m->health = winnow_health_new(30000))) {
		snprintf(errstr, errstr_size, "out of memory");
		winnow_daemon_metrics_destroy(m);
		return NULL;
	}
	winnow_metrics_t *r = m->reg;
	m->consumed = winnow_metrics_counter(r, "winnow_documents_consumed_total",
		"Messages taken from the input topic.", NULL);
	m->classified = winnow_metrics_counter(r, "winnow_documents_classified_total",
		"Documents classified, by label.", "label");
	m->dead = winnow_metrics_counter(r, "winnow_documents_dead_lettered_total",
		"Documents sent to the dead-letter topic, by reason.", "reason");
	m->dropped = winnow_metrics_counter(r, "winnow_documents_dropped_total",
		"Documents in flight when their partition was revoked or the daemon stopped (classified again later).", NULL);
	m->latency = winnow_metrics_histogram(r, "winnow_document_latency_seconds",
		"Time from handing a document to the pipeline to its result.",
		latency_bounds, sizeof latency_bounds / sizeof latency_bounds[0]);
	m->tokens_seen = winnow_metrics_counter(r, "winnow_tokens_seen_total",
		"Window tokens entering the encoder.", NULL);
	m->tokens_kept = winnow_metrics_counter(r, "winnow_tokens_kept_total",
		"Window tokens still kept at the last pruned layer.", NULL);
	m->batches = winnow_metrics_counter(r, "winnow_batches_total",
		"Encoder batches run.", NULL);
	m->batch_windows = winnow_metrics_counter(r, "winnow_batch_windows_total",
		"Windows in those batches (mean batch size = this / batches).", NULL);
	m->batch_tokens = winnow_metrics_counter(r, "winnow_batch_tokens_total",
		"Tokens in those batches.", NULL);
	m->in_flight = winnow_metrics_gauge(r, "winnow_documents_in_flight",
		"Documents consumed and not yet finished.", NULL);
	m->depth = winnow_metrics_gauge(r, "winnow_queue_depth",
		"Documents waiting before each stage.", "stage");
	m->lag = winnow_metrics_gauge(r, "winnow_consumer_lag",
		"Messages between the consumer's position and the high watermark, per partition.",
		"partition");
	if (!m->consumed || !m->classified || !m->dead || !m->dropped || !m->latency ||
	    !m->tokens_seen || !m->tokens_kept || !m->batches || !m->batch_windows ||
	    !m->batch_tokens || !m->in_flight || !m->depth || !m->lag) {
		snprintf(errstr, errstr_size, "cannot register metrics");
		winnow_daemon_metrics_destroy(m);
		return NULL;
	}
	static const char *const reasons[] = { "not-zstd", "truncated-zstd",
		"corrupt-zstd", "too-large", "invalid-utf8", "empty", "engine-error" };
	for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
		winnow_metric_add_label(m->dead, reasons[i]);
	if (listen && *listen) {
		m->http = winnow_http_start(listen, m->reg, m->health, errstr, errstr_size);
		if (!m->http) {
			winnow_daemon_metrics_destroy(m);
			return NULL;
		}
	}
	return m;
}

void winnow_daemon_metrics_destroy(winnow_daemon_metrics_t *m)
{
	if (!m)
		return;
	winnow_http_stop(m->http);
	winnow_health_destroy(m->health);
	winnow_metrics_destroy(m->reg);
	free(m);
}

void winnow_daemon_metrics_heartbeat(winnow_daemon_metrics_t *m)
{
	winnow_health_heartbeat(m->health);
}

void winnow_daemon_metrics_model_loaded(winnow_daemon_metrics_t *m, int on)
{
	winnow_health_set_ready(m->health, WINNOW_READY_MODEL, on);
}

void winnow_daemon_metrics_assigned(winnow_daemon_metrics_t *m, int on)
{
	winnow_health_set_ready(m->health, WINNOW_READY_CONSUMER, on);
}

void winnow_daemon_metrics_producer_connected(winnow_daemon_metrics_t *m, int on)
{
	winnow_health_set_ready(m->health, WINNOW_READY_PRODUCER, on);
}

void winnow_daemon_metrics_consumed(winnow_daemon_metrics_t *m)
{
	winnow_metric_inc(m->consumed, NULL, 1);
}

void winnow_daemon_metrics_labels(winnow_daemon_metrics_t *m,
				  const char *const *labels, uint32_t n)
{
	m->labels = labels;
	m->n_labels = n;
	for (uint32_t i = 0; i < n; i++)
		winnow_metric_add_label(m->classified, labels[i]);
}

void winnow_daemon_metrics_classified(winnow_daemon_metrics_t *m,
				      const winnow_doc_result_t *r,
				      uint64_t latency_ns)
{
	const char *label = r->label < m->n_labels ? m->labels[r->label] : "unknown";
	winnow_metric_inc(m->classified, label, 1);
	winnow_metric_observe(m->latency, (double)latency_ns / 1e9);
}

void winnow_daemon_metrics_dead_letter(winnow_daemon_metrics_t *m,
				       const char *reason)
{
	winnow_metric_inc(m->dead, reason, 1);
}

void winnow_daemon_metrics_dropped(winnow_daemon_metrics_t *m)
{
	winnow_metric_inc(m->dropped, NULL, 1);
}

void winnow_daemon_metrics_pipeline(winnow_daemon_metrics_t *m,
				    const winnow_pipeline_stats_t *st,
				    size_t held, size_t in_flight)
{
	winnow_metric_inc(m->tokens_seen, NULL, (double)(st->tokens_seen - m->last.tokens_seen));
	winnow_metric_inc(m->tokens_kept, NULL, (double)(st->tokens_kept - m->last.tokens_kept));
	winnow_metric_inc(m->batches, NULL, (double)(st->batches - m->last.batches));
	winnow_metric_inc(m->batch_windows, NULL,
			  (double)(st->batch_windows - m->last.batch_windows));
	winnow_metric_inc(m->batch_tokens, NULL,
			  (double)(st->batch_tokens - m->last.batch_tokens));
	m->last = *st;
	winnow_metric_set(m->in_flight, NULL, (double)in_flight);
	winnow_metric_set(m->depth, "consumer-held", (double)held);
	winnow_metric_set(m->depth, "prep", st->depth_prep);
	winnow_metric_set(m->depth, "encode", st->depth_encode);
	winnow_metric_set(m->depth, "output", st->depth_output);
}

void winnow_daemon_metrics_lag(winnow_daemon_metrics_t *m, int32_t partition,
			       int64_t lag)
{
	char p[16];
	snprintf(p, sizeof p, "%d", (int)partition);
	winnow_metric_set(m->lag, p, (double)lag);
}

void winnow_daemon_metrics_lag_forget(winnow_daemon_metrics_t *m,
				      int32_t partition)
{
	char p[16];
	snprintf(p, sizeof p, "%d", (int)partition);
	winnow_metric_remove(m->lag, p);
}
