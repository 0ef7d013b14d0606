/*
 * metrics.c: the registry of metrics.h and its Prometheus text rendering.
 *
 * The format (version 0.0.4), as far as it matters here: per metric family
 *
 *   # HELP <name> <help, with \ and newline escaped as \\ and \n>
 *   # TYPE <name> counter|gauge|histogram
 *   <name>{<label>="<value, with \, " and newline escaped>"} <float>
 *
 * (no HELP line when the help text is empty), and for a histogram,
 * cumulative "<name>_bucket{le="<bound>"}" samples ending with le="+Inf",
 * then "<name>_sum" and "<name>_count". Floats are written so that they
 * read back exactly; integers without an exponent.
 */
#include "metrics.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
	METRIC_COUNTER,
	METRIC_GAUGE,
	METRIC_HISTOGRAM,
} metric_type_t;

static const char *const type_names[] = {
	[METRIC_COUNTER] = "counter",
	[METRIC_GAUGE] = "gauge",
	[METRIC_HISTOGRAM] = "histogram",
};

/* One label value's sample; label_value is NULL for an unlabelled metric. */
typedef struct series_s {
	char *label_value;
	double value;
	struct series_s *next;
} series_t;

struct winnow_metric_s {
	winnow_metrics_t *registry;
	metric_type_t type;
	char *name;
	char *help;
	char *label_name;          /* NULL: unlabelled */
	series_t *series;          /* in creation order */
	size_t n_series;
	/* Histograms: n_bounds finite bounds, n_bounds + 1 buckets (the last
	 * is +Inf), counts per bucket (not cumulative). */
	double *bounds;
	size_t n_bounds;
	uint64_t *buckets;
	double sum;
	uint64_t count;
	struct winnow_metric_s *next;
};

struct winnow_metrics_s {
	pthread_mutex_t lock;      /* guards everything below and every metric */
	winnow_metric_t *first;    /* in registration order */
	winnow_metric_t **tail;
};

winnow_metrics_t *winnow_metrics_new(void)
{
	winnow_metrics_t *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	m->tail = &m->first;
	return m;
}

static void series_free(series_t *s)
{
	free(s->label_value);
	free(s);
}

static void metric_free(winnow_metric_t *metric)
{
	series_t *s = metric->series;
	while (s) {
		series_t *next = s->next;
		series_free(s);
		s = next;
	}
	free(metric->name);
	free(metric->help);
	free(metric->label_name);
	free(metric->bounds);
	free(metric->buckets);
	free(metric);
}

void winnow_metrics_destroy(winnow_metrics_t *m)
{
	if (!m)
		return;
	winnow_metric_t *metric = m->first;
	while (metric) {
		winnow_metric_t *next = metric->next;
		metric_free(metric);
		metric = next;
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* ---- registration ---------------------------------------------------------- */

static int valid_name(const char *s, int colons)
{
	if (!s || !*s)
		return 0;
	for (size_t i = 0; s[i]; i++) {
		char c = s[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 c == '_' || (colons && c == ':') ||
			 (i > 0 && c >= '0' && c <= '9');
		if (!ok)
			return 0;
	}
	return 1;
}

static char *dup_or_null(const char *s, int *failed)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*failed = 1;
	return d;
}

static series_t *series_new(const char *label_value)
{
	series_t *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	if (label_value && !(s->label_value = strdup(label_value))) {
		free(s);
		return NULL;
	}
	return s;
}

/* Links a fully built metric into the registry unless its name is taken;
 * frees it and returns NULL in that case. */
static winnow_metric_t *metric_register(winnow_metrics_t *m,
					winnow_metric_t *metric)
{
	pthread_mutex_lock(&m->lock);
	for (winnow_metric_t *o = m->first; o; o = o->next) {
		if (!strcmp(o->name, metric->name)) {
			pthread_mutex_unlock(&m->lock);
			metric_free(metric);
			return NULL;
		}
	}
	*m->tail = metric;
	m->tail = &metric->next;
	pthread_mutex_unlock(&m->lock);
	return metric;
}

static winnow_metric_t *metric_new(winnow_metrics_t *m, metric_type_t type,
				   const char *name, const char *help,
				   const char *label_name)
{
	assert(m);
	if (!valid_name(name, 1))
		return NULL;
	if (label_name && (!valid_name(label_name, 0) ||
			   !strncmp(label_name, "__", 2)))
		return NULL;
	winnow_metric_t *metric = calloc(1, sizeof *metric);
	if (!metric)
		return NULL;
	int failed = 0;
	metric->registry = m;
	metric->type = type;
	metric->name = dup_or_null(name, &failed);
	metric->help = dup_or_null(help ? help : "", &failed);
	metric->label_name = dup_or_null(label_name, &failed);
	/* An unlabelled counter or gauge has its one series from the start. */
	if (!label_name && type != METRIC_HISTOGRAM) {
		metric->series = series_new(NULL);
		metric->n_series = 1;
		failed |= !metric->series;
	}
	if (failed) {
		metric_free(metric);
		return NULL;
	}
	return metric;
}

winnow_metric_t *winnow_metrics_counter(winnow_metrics_t *m, const char *name,
					const char *help,
					const char *label_name)
{
	winnow_metric_t *metric = metric_new(m, METRIC_COUNTER, name, help,
					     label_name);
	return metric ? metric_register(m, metric) : NULL;
}

winnow_metric_t *winnow_metrics_gauge(winnow_metrics_t *m, const char *name,
				      const char *help,
				      const char *label_name)
{
	winnow_metric_t *metric = metric_new(m, METRIC_GAUGE, name, help,
					     label_name);
	return metric ? metric_register(m, metric) : NULL;
}

winnow_metric_t *winnow_metrics_histogram(winnow_metrics_t *m,
					  const char *name, const char *help,
					  const double *bounds, size_t n)
{
	assert(bounds || n == 0);
	if (n > 0 && isinf(bounds[n - 1]) && bounds[n - 1] > 0)
		n--;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
			return NULL;
	}
	winnow_metric_t *metric = metric_new(m, METRIC_HISTOGRAM, name, help,
					     NULL);
	if (!metric)
		return NULL;
	metric->n_bounds = n;
	metric->bounds = malloc((n ? n : 1) * sizeof *metric->bounds);
	metric->buckets = calloc(n + 1, sizeof *metric->buckets);
	if (!metric->bounds || !metric->buckets) {
		metric_free(metric);
		return NULL;
	}
	if (n)
		memcpy(metric->bounds, bounds, n * sizeof *bounds);
	return metric_register(m, metric);
}

/* ---- updates --------------------------------------------------------------- */

/* The series of label_value, created if create is set and there is room;
 * NULL otherwise. The registry lock is held. */
static series_t *series_find(winnow_metric_t *metric, const char *label_value,
			     int create)
{
	assert(metric->type != METRIC_HISTOGRAM);
	if ((label_value == NULL) != (metric->label_name == NULL)) {
		assert(!"label value given iff the metric has a label name");
		return NULL; /* release builds drop the update */
	}
	series_t **link = &metric->series;
	for (; *link; link = &(*link)->next) {
		if (!label_value || !strcmp((*link)->label_value, label_value))
			return *link;
	}
	if (!create || metric->n_series >= WINNOW_METRICS_MAX_SERIES)
		return NULL;
	*link = series_new(label_value);
	if (*link)
		metric->n_series++;
	return *link;
}

void winnow_metric_inc(winnow_metric_t *metric, const char *label_value,
		       double delta)
{
	assert(metric);
	assert(metric->type == METRIC_GAUGE || delta >= 0);
	pthread_mutex_lock(&metric->registry->lock);
	series_t *s = series_find(metric, label_value, 1);
	if (s)
		s->value += delta;
	pthread_mutex_unlock(&metric->registry->lock);
}

void winnow_metric_set(winnow_metric_t *metric, const char *label_value,
		       double value)
{
	assert(metric && metric->type == METRIC_GAUGE);
	pthread_mutex_lock(&metric->registry->lock);
	series_t *s = series_find(metric, label_value, 1);
	if (s)
		s->value = value;
	pthread_mutex_unlock(&metric->registry->lock);
}

void winnow_metric_observe(winnow_metric_t *metric, double value)
{
	assert(metric && metric->type == METRIC_HISTOGRAM);
	/* The first bucket whose bound is >= value; NaN compares false
	 * everywhere and so falls through to +Inf. */
	size_t lo = 0, hi = metric->n_bounds;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (value <= metric->bounds[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	if (isnan(value))
		lo = metric->n_bounds;
	pthread_mutex_lock(&metric->registry->lock);
	metric->buckets[lo]++;
	metric->sum += value;
	metric->count++;
	pthread_mutex_unlock(&metric->registry->lock);
}

void winnow_metric_add_label(winnow_metric_t *metric, const char *label_value)
{
	assert(metric && label_value);
	pthread_mutex_lock(&metric->registry->lock);
	series_find(metric, label_value, 1);
	pthread_mutex_unlock(&metric->registry->lock);
}

void winnow_metric_remove(winnow_metric_t *metric, const char *label_value)
{
	assert(metric && metric->label_name && label_value);
	if (!metric->label_name || !label_value)
		return;
	pthread_mutex_lock(&metric->registry->lock);
	for (series_t **link = &metric->series; *link; link = &(*link)->next) {
		if (!strcmp((*link)->label_value, label_value)) {
			series_t *gone = *link;
			*link = gone->next;
			metric->n_series--;
			series_free(gone);
			break;
		}
	}
	pthread_mutex_unlock(&metric->registry->lock);
}

double winnow_metric_value(winnow_metric_t *metric, const char *label_value)
{
	assert(metric);
	double v = 0;
	pthread_mutex_lock(&metric->registry->lock);
	if (metric->type == METRIC_HISTOGRAM) {
		v = (double)metric->count;
	} else {
		series_t *s = series_find(metric, label_value, 0);
		if (s)
			v = s->value;
	}
	pthread_mutex_unlock(&metric->registry->lock);
	return v;
}

/* ---- rendering ------------------------------------------------------------- */

/* A growing string; on allocation failure it stays failed and render
 * returns NULL. */
typedef struct {
	char *buf;
	size_t len, cap;
	int failed;
} strbuf_t;

static void sb_reserve(strbuf_t *sb, size_t more)
{
	if (sb->failed || sb->len + more + 1 <= sb->cap)
		return;
	size_t cap = sb->cap ? sb->cap : 4096;
	while (cap < sb->len + more + 1)
		cap *= 2;
	char *buf = realloc(sb->buf, cap);
	if (!buf) {
		sb->failed = 1;
		return;
	}
	sb->buf = buf;
	sb->cap = cap;
}

static void sb_putc(strbuf_t *sb, char c)
{
	sb_reserve(sb, 1);
	if (sb->failed)
		return;
	sb->buf[sb->len++] = c;
	sb->buf[sb->len] = '\0';
}

static void sb_puts(strbuf_t *sb, const char *s)
{
	size_t n = strlen(s);
	sb_reserve(sb, n);
	if (sb->failed)
		return;
	memcpy(sb->buf + sb->len, s, n + 1);
	sb->len += n;
}

/* Appends s with \ and newline escaped, and " too when quote is set (HELP
 * text escapes two characters, label values three). */
static void sb_escaped(strbuf_t *sb, const char *s, int quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			sb_puts(sb, "\\\\");
		else if (*s == '\n')
			sb_puts(sb, "\\n");
		else if (quote && *s == '"')
			sb_puts(sb, "\\\"");
		else
			sb_putc(sb, *s);
	}
}

/* Formats v as the text format expects: +Inf, -Inf, NaN, integers
 * without exponent, other values with the fewest digits that read back
 * exactly. */
static void format_value(char *out, size_t size, double v)
{
	if (isnan(v)) {
		snprintf(out, size, "NaN");
	} else if (isinf(v)) {
		snprintf(out, size, v > 0 ? "+Inf" : "-Inf");
	} else if (v > -1e15 && v < 1e15 && v == (double)(long long)v) {
		snprintf(out, size, "%.0f", v);
	} else {
		for (int digits = 1; digits <= 17; digits++) {
			snprintf(out, size, "%.*g", digits, v);
			if (strtod(out, NULL) == v)
				break;
		}
	}
}

static void sb_value(strbuf_t *sb, double v)
{
	char num[64];
	format_value(num, sizeof num, v);
	sb_puts(sb, num);
}

static void render_metric(strbuf_t *sb, const winnow_metric_t *metric)
{
	if (*metric->help) {
		sb_puts(sb, "# HELP ");
		sb_puts(sb, metric->name);
		sb_putc(sb, ' ');
		sb_escaped(sb, metric->help, 0);
		sb_putc(sb, '\n');
	}
	sb_puts(sb, "# TYPE ");
	sb_puts(sb, metric->name);
	sb_putc(sb, ' ');
	sb_puts(sb, type_names[metric->type]);
	sb_putc(sb, '\n');

	if (metric->type != METRIC_HISTOGRAM) {
		for (const series_t *s = metric->series; s; s = s->next) {
			sb_puts(sb, metric->name);
			if (metric->label_name) {
				sb_putc(sb, '{');
				sb_puts(sb, metric->label_name);
				sb_puts(sb, "=\"");
				sb_escaped(sb, s->label_value, 1);
				sb_puts(sb, "\"}");
			}
			sb_putc(sb, ' ');
			sb_value(sb, s->value);
			sb_putc(sb, '\n');
		}
		return;
	}

	uint64_t cumulative = 0;
	for (size_t i = 0; i <= metric->n_bounds; i++) {
		cumulative += metric->buckets[i];
		sb_puts(sb, metric->name);
		sb_puts(sb, "_bucket{le=\"");
		sb_value(sb, i < metric->n_bounds ? metric->bounds[i] : INFINITY);
		sb_puts(sb, "\"} ");
		sb_value(sb, (double)cumulative);
		sb_putc(sb, '\n');
	}
	sb_puts(sb, metric->name);
	sb_puts(sb, "_sum ");
	sb_value(sb, metric->sum);
	sb_putc(sb, '\n');
	sb_puts(sb, metric->name);
	sb_puts(sb, "_count ");
	sb_value(sb, (double)metric->count);
	sb_putc(sb, '\n');
}

char *winnow_metrics_render(winnow_metrics_t *m, size_t *len)
{
	assert(m);
	strbuf_t sb = { 0 };
	sb_reserve(&sb, 0); /* an empty registry renders "" */
	if (!sb.failed)
		sb.buf[0] = '\0';
	pthread_mutex_lock(&m->lock);
	for (const winnow_metric_t *metric = m->first; metric;
	     metric = metric->next)
		render_metric(&sb, metric);
	pthread_mutex_unlock(&m->lock);
	if (sb.failed) {
		free(sb.buf);
		return NULL;
	}
	if (len)
		*len = sb.len;
	return sb.buf;
}
