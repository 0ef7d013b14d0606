/*
 * metrics.h: winnowd's metrics registry, rendered in the Prometheus text
 * exposition format, version 0.0.4 (what GET /metrics serves).
 *
 * Three kinds of metric:
 *   - counters, which only go up (documents by reason, bytes read);
 *   - gauges, which are set or moved either way (consumer lag per
 *     partition, documents in flight);
 *   - histograms with buckets fixed at registration (latency).
 *
 * A counter or gauge has either no label or one label name given at
 * registration; its series (one per label value) are created when first
 * used, or beforehand with winnow_metric_add_label() so that they show as 0
 * from the start, and may be removed (a revoked partition's lag). A
 * histogram has no label.
 *
 * Thread safety: every function may be called from any thread. One mutex
 * per registry guards everything; an update is a lookup in a short list and
 * an add, far cheaper than the document it counts.
 *
 * Lifetime: metric handles belong to the registry and stay valid until
 * winnow_metrics_destroy(). Registration usually happens at start-up, but
 * may happen at any time.
 */
#ifndef WINNOW_METRICS_H
#define WINNOW_METRICS_H

#include <stddef.h>

typedef struct winnow_metrics_s winnow_metrics_t;
typedef struct winnow_metric_s winnow_metric_t;

/* A labelled metric keeps at most this many series; updates for further
 * label values are dropped (label values come from the program, not from
 * documents, so this is a guard, not a policy). */
#define WINNOW_METRICS_MAX_SERIES 4096

/* NULL when out of memory. */
winnow_metrics_t *winnow_metrics_new(void);

/* Frees the registry and every metric in it. Accepts NULL. */
void winnow_metrics_destroy(winnow_metrics_t *m);

/*
 * Registers a counter or a gauge. name must match [a-zA-Z_:][a-zA-Z0-9_:]*
 * and be new to the registry; help is free text (copied; may be NULL);
 * label_name is NULL for an unlabelled metric, else it must match
 * [a-zA-Z_][a-zA-Z0-9_]* and not start with "__". Returns NULL when a name
 * is invalid or taken, or when out of memory: these are programming errors,
 * checked once at start-up.
 */
winnow_metric_t *winnow_metrics_counter(winnow_metrics_t *m, const char *name,
					const char *help,
					const char *label_name);
winnow_metric_t *winnow_metrics_gauge(winnow_metrics_t *m, const char *name,
				      const char *help,
				      const char *label_name);

/*
 * Registers a histogram with buckets whose upper bounds (inclusive, as
 * Prometheus' "le") are bounds[0] < bounds[1] < ... < bounds[n - 1]; the
 * +Inf bucket is always added (a trailing INFINITY in bounds is accepted
 * and ignored). Returns NULL as winnow_metrics_counter() does, and when the
 * bounds are not strictly increasing or contain NaN.
 */
winnow_metric_t *winnow_metrics_histogram(winnow_metrics_t *m,
					  const char *name, const char *help,
					  const double *bounds, size_t n);

/*
 * Series updates. label_value must be NULL for an unlabelled metric and
 * non-NULL (copied when the series is created) for a labelled one; a
 * mismatch asserts (and is ignored when assertions are compiled out).
 *
 * winnow_metric_inc: adds delta (>= 0 for a counter; any sign for a gauge).
 * winnow_metric_set: gauges only.
 * winnow_metric_observe: histograms only; NaN lands in the +Inf bucket.
 */
void winnow_metric_inc(winnow_metric_t *metric, const char *label_value,
		       double delta);
void winnow_metric_set(winnow_metric_t *metric, const char *label_value,
		       double value);
void winnow_metric_observe(winnow_metric_t *metric, double value);

/* Creates the series for label_value at 0 if it does not exist yet. */
void winnow_metric_add_label(winnow_metric_t *metric, const char *label_value);

/* Removes the series for label_value, if any. */
void winnow_metric_remove(winnow_metric_t *metric, const char *label_value);

/* The current value of a counter or gauge series (0 if it does not exist);
 * for a histogram, its count of observations. For tests and logs. */
double winnow_metric_value(winnow_metric_t *metric, const char *label_value);

/*
 * Renders every metric, in registration order, in the text format: for
 * each, "# HELP" (unless help is empty) and "# TYPE" lines, then its
 * samples (series in the order they were created). Returns a NUL-terminated string the caller frees with
 * free(), and its length in *len (if len is not NULL); NULL when out of
 * memory.
 */
char *winnow_metrics_render(winnow_metrics_t *m, size_t *len);

#endif /* WINNOW_METRICS_H */
