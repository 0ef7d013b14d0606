/*
 * daemon_metrics.h: winnowd's metrics and health, served on http.listen
 * (/metrics in Prometheus text, /healthz, /readyz). The names:
 *
 *   winnow_documents_consumed_total          messages taken from the input
 *   winnow_documents_classified_total{label} output records produced
 *   winnow_documents_dead_lettered_total{reason}
 *   winnow_documents_dropped_total           revoked or abandoned in flight
 *   winnow_document_latency_seconds          histogram, submit to result
 *   winnow_tokens_seen_total, winnow_tokens_kept_total
 *   winnow_batches_total, winnow_batch_windows_total, winnow_batch_tokens_total
 *   winnow_documents_in_flight, winnow_queue_depth{stage}
 *   winnow_consumer_lag{partition}           high watermark - position
 *
 * Thread-safe: the output thread and the main loop both update it.
 */
#ifndef WINNOW_DAEMON_METRICS_H
#define WINNOW_DAEMON_METRICS_H

#include "winnow_pipeline.h"

#include <stddef.h>
#include <stdint.h>

typedef struct winnow_daemon_metrics_s winnow_daemon_metrics_t;

/* Starts the HTTP endpoint on listen ("" or NULL: no endpoint). */
winnow_daemon_metrics_t *winnow_daemon_metrics_new(const char *listen,
						   char *errstr,
						   size_t errstr_size);
void winnow_daemon_metrics_destroy(winnow_daemon_metrics_t *m);

void winnow_daemon_metrics_heartbeat(winnow_daemon_metrics_t *m);
void winnow_daemon_metrics_model_loaded(winnow_daemon_metrics_t *m, int on);
void winnow_daemon_metrics_assigned(winnow_daemon_metrics_t *m, int on);
void winnow_daemon_metrics_producer_connected(winnow_daemon_metrics_t *m, int on);

void winnow_daemon_metrics_consumed(winnow_daemon_metrics_t *m);
void winnow_daemon_metrics_classified(winnow_daemon_metrics_t *m,
				      const winnow_doc_result_t *result,
				      uint64_t latency_ns);
void winnow_daemon_metrics_dead_letter(winnow_daemon_metrics_t *m,
				       const char *reason);
void winnow_daemon_metrics_dropped(winnow_daemon_metrics_t *m);
/* Main thread: queue depths and token/batch counters from the pipeline;
 * in_flight counts documents consumed and not yet acknowledged. */
void winnow_daemon_metrics_pipeline(winnow_daemon_metrics_t *m,
				    const winnow_pipeline_stats_t *st,
				    size_t held, size_t in_flight);
void winnow_daemon_metrics_lag(winnow_daemon_metrics_t *m, int32_t partition,
			       int64_t lag);
/* A revoked partition's lag series goes away. */
void winnow_daemon_metrics_lag_forget(winnow_daemon_metrics_t *m,
				      int32_t partition);
/* Label names of the model, for the classified counter. */
void winnow_daemon_metrics_labels(winnow_daemon_metrics_t *m,
				  const char *const *labels, uint32_t n);

#endif /* WINNOW_DAEMON_METRICS_H */
