/*
 * test_metrics.c: the metrics registry (daemon/metrics.h) and its
 * Prometheus text rendering, byte for byte.
 *
 * Also run under TSan (label "pipeline"): the concurrent test increments
 * one registry from four threads.
 */
#include "metrics.h"

#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static winnow_metrics_t *m;

static void setup(void)
{
	m = winnow_metrics_new();
	ck_assert_ptr_nonnull(m);
}

static void teardown(void)
{
	winnow_metrics_destroy(m);
	m = NULL;
}

/* Renders m and compares with expected exactly. */
static void assert_render(const char *expected)
{
	size_t len = 12345;
	char *text = winnow_metrics_render(m, &len);
	ck_assert_ptr_nonnull(text);
	ck_assert_str_eq(text, expected);
	ck_assert_uint_eq(len, strlen(expected));
	free(text);
}

START_TEST(empty_registry_renders_nothing)
{
	assert_render("");
}
END_TEST

START_TEST(counter_with_labels)
{
	winnow_metric_t *c = winnow_metrics_counter(m, "winnow_documents_total",
						    "Documents finished, by outcome.",
						    "reason");
	ck_assert_ptr_nonnull(c);
	/* A labelled family with no series yet is just its header. */
	assert_render("# HELP winnow_documents_total Documents finished, by outcome.\n"
		      "# TYPE winnow_documents_total counter\n");
	winnow_metric_add_label(c, "ok");
	winnow_metric_inc(c, "invalid-utf8", 1);
	winnow_metric_inc(c, "ok", 2);
	winnow_metric_inc(c, "ok", 1);
	winnow_metric_add_label(c, "ok"); /* exists: no reset */
	assert_render("# HELP winnow_documents_total Documents finished, by outcome.\n"
		      "# TYPE winnow_documents_total counter\n"
		      "winnow_documents_total{reason=\"ok\"} 3\n"
		      "winnow_documents_total{reason=\"invalid-utf8\"} 1\n");
	ck_assert(winnow_metric_value(c, "ok") == 3);
	ck_assert(winnow_metric_value(c, "absent") == 0);
}
END_TEST

START_TEST(gauge_set_inc_remove)
{
	winnow_metric_t *g = winnow_metrics_gauge(m, "winnow_in_flight",
						  "Documents in the pipeline.",
						  NULL);
	winnow_metric_t *lag = winnow_metrics_gauge(m, "winnow_consumer_lag",
						    "Messages behind the high watermark.",
						    "partition");
	ck_assert_ptr_nonnull(g);
	ck_assert_ptr_nonnull(lag);
	winnow_metric_set(g, NULL, 5);
	winnow_metric_inc(g, NULL, -2);
	winnow_metric_set(lag, "0", 12);
	winnow_metric_set(lag, "1", 0.5);
	winnow_metric_set(lag, "2", 7);
	winnow_metric_set(lag, "0", 10);
	winnow_metric_remove(lag, "1");
	winnow_metric_remove(lag, "9"); /* absent: nothing happens */
	assert_render("# HELP winnow_in_flight Documents in the pipeline.\n"
		      "# TYPE winnow_in_flight gauge\n"
		      "winnow_in_flight 3\n"
		      "# HELP winnow_consumer_lag Messages behind the high watermark.\n"
		      "# TYPE winnow_consumer_lag gauge\n"
		      "winnow_consumer_lag{partition=\"0\"} 10\n"
		      "winnow_consumer_lag{partition=\"2\"} 7\n");
}
END_TEST

START_TEST(unlabelled_counter_starts_at_zero)
{
	winnow_metric_t *c = winnow_metrics_counter(m, "winnow_bytes_total",
						    NULL, NULL);
	ck_assert_ptr_nonnull(c);
	assert_render("# TYPE winnow_bytes_total counter\n"
		      "winnow_bytes_total 0\n");
	winnow_metric_inc(c, NULL, 1e6);
	winnow_metric_inc(c, NULL, 0.25);
	assert_render("# TYPE winnow_bytes_total counter\n"
		      "winnow_bytes_total 1000000.25\n");
}
END_TEST

START_TEST(histogram_buckets_sum_count)
{
	static const double bounds[] = { 0.01, 0.1, 1 };
	winnow_metric_t *h = winnow_metrics_histogram(m, "winnow_latency_seconds",
						      "Submit to delivery.",
						      bounds, 3);
	ck_assert_ptr_nonnull(h);
	winnow_metric_observe(h, 0.0078125); /* first bucket */
	winnow_metric_observe(h, 0.1);       /* le is inclusive: second */
	winnow_metric_observe(h, 0.5);
	winnow_metric_observe(h, 2);         /* +Inf only */
	assert_render("# HELP winnow_latency_seconds Submit to delivery.\n"
		      "# TYPE winnow_latency_seconds histogram\n"
		      "winnow_latency_seconds_bucket{le=\"0.01\"} 1\n"
		      "winnow_latency_seconds_bucket{le=\"0.1\"} 2\n"
		      "winnow_latency_seconds_bucket{le=\"1\"} 3\n"
		      "winnow_latency_seconds_bucket{le=\"+Inf\"} 4\n"
		      "winnow_latency_seconds_sum 2.6078125\n"
		      "winnow_latency_seconds_count 4\n");
	ck_assert(winnow_metric_value(h, NULL) == 4);
}
END_TEST

START_TEST(histogram_bounds_validated)
{
	static const double with_inf[] = { 1, 2, INFINITY };
	static const double unsorted[] = { 1, 3, 2 };
	static const double repeated[] = { 1, 1 };
	static const double nan_bound[] = { 1, NAN };
	ck_assert_ptr_null(winnow_metrics_histogram(m, "a", "", unsorted, 3));
	ck_assert_ptr_null(winnow_metrics_histogram(m, "b", "", repeated, 2));
	ck_assert_ptr_null(winnow_metrics_histogram(m, "c", "", nan_bound, 2));
	winnow_metric_t *h = winnow_metrics_histogram(m, "d", "", with_inf, 3);
	winnow_metric_t *only_inf = winnow_metrics_histogram(m, "e", "", NULL, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_ptr_nonnull(only_inf);
	winnow_metric_observe(only_inf, 3);
	assert_render("# TYPE d histogram\n"
		      "d_bucket{le=\"1\"} 0\n"
		      "d_bucket{le=\"2\"} 0\n"
		      "d_bucket{le=\"+Inf\"} 0\n"
		      "d_sum 0\n"
		      "d_count 0\n"
		      "# TYPE e histogram\n"
		      "e_bucket{le=\"+Inf\"} 1\n"
		      "e_sum 3\n"
		      "e_count 1\n");
}
END_TEST

START_TEST(label_values_and_help_escaped)
{
	winnow_metric_t *c = winnow_metrics_counter(m, "winnow_errors_total",
						    "Errors, by \"kind\";\n"
						    "a back\\slash stays one.",
						    "kind");
	ck_assert_ptr_nonnull(c);
	winnow_metric_inc(c, "say \"hi\"", 1);
	winnow_metric_inc(c, "C:\\tmp", 2);
	winnow_metric_inc(c, "two\nlines", 3);
	winnow_metric_inc(c, "", 4);
	/* HELP escapes \ and newline only; label values also escape ". */
	assert_render("# HELP winnow_errors_total Errors, by \"kind\";\\n"
		      "a back\\\\slash stays one.\n"
		      "# TYPE winnow_errors_total counter\n"
		      "winnow_errors_total{kind=\"say \\\"hi\\\"\"} 1\n"
		      "winnow_errors_total{kind=\"C:\\\\tmp\"} 2\n"
		      "winnow_errors_total{kind=\"two\\nlines\"} 3\n"
		      "winnow_errors_total{kind=\"\"} 4\n");
}
END_TEST

START_TEST(special_values_formatted)
{
	winnow_metric_t *g = winnow_metrics_gauge(m, "g", "", "v");
	winnow_metric_set(g, "tenth", 0.1);
	winnow_metric_set(g, "third", 1.0 / 3);
	winnow_metric_set(g, "big", 1e20);
	winnow_metric_set(g, "negative", -42);
	winnow_metric_set(g, "inf", INFINITY);
	winnow_metric_set(g, "-inf", -INFINITY);
	winnow_metric_set(g, "nan", NAN);
	assert_render("# TYPE g gauge\n"
		      "g{v=\"tenth\"} 0.1\n"
		      "g{v=\"third\"} 0.3333333333333333\n"
		      "g{v=\"big\"} 1e+20\n"
		      "g{v=\"negative\"} -42\n"
		      "g{v=\"inf\"} +Inf\n"
		      "g{v=\"-inf\"} -Inf\n"
		      "g{v=\"nan\"} NaN\n");
}
END_TEST

START_TEST(invalid_or_taken_names_refused)
{
	ck_assert_ptr_nonnull(winnow_metrics_counter(m, "ns:sub_total", "", NULL));
	ck_assert_ptr_null(winnow_metrics_counter(m, "ns:sub_total", "", NULL));
	ck_assert_ptr_null(winnow_metrics_gauge(m, "ns:sub_total", "", NULL));
	ck_assert_ptr_null(winnow_metrics_counter(m, "", "", NULL));
	ck_assert_ptr_null(winnow_metrics_counter(m, "9lives", "", NULL));
	ck_assert_ptr_null(winnow_metrics_counter(m, "with-dash", "", NULL));
	ck_assert_ptr_null(winnow_metrics_counter(m, "ok_name", "", "bad:label"));
	ck_assert_ptr_null(winnow_metrics_counter(m, "ok_name", "", "__reserved"));
	ck_assert_ptr_null(winnow_metrics_counter(m, "ok_name", "", "1x"));
	ck_assert_ptr_nonnull(winnow_metrics_counter(m, "ok_name", "", "_x1"));
}
END_TEST

START_TEST(series_capped)
{
	winnow_metric_t *g = winnow_metrics_gauge(m, "many", "", "i");
	char value[32];
	for (int i = 0; i < WINNOW_METRICS_MAX_SERIES + 10; i++) {
		snprintf(value, sizeof value, "%d", i);
		winnow_metric_set(g, value, 1);
	}
	ck_assert(winnow_metric_value(g, "0") == 1);
	snprintf(value, sizeof value, "%d", WINNOW_METRICS_MAX_SERIES);
	ck_assert(winnow_metric_value(g, value) == 0); /* dropped */
}
END_TEST

/* ---- four threads at once -------------------------------------------------- */

#define THREADS 4
#define ROUNDS 20000

static const char *const reasons[] = { "ok", "empty", "too-large" };
static winnow_metric_t *shared_counter, *shared_gauge, *shared_hist;

static void *hammer(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < ROUNDS; i++) {
		winnow_metric_inc(shared_counter, reasons[i % 3], 1);
		winnow_metric_inc(shared_gauge, NULL, 1);
		winnow_metric_inc(shared_gauge, NULL, -1);
		winnow_metric_observe(shared_hist, (double)(i % 4));
		if (i % 1000 == (int)id) {
			/* Renders and new series while others update. */
			char *text = winnow_metrics_render(m, NULL);
			ck_assert_ptr_nonnull(text);
			free(text);
			char label[32];
			snprintf(label, sizeof label, "t%ld-%d", id, i);
			winnow_metric_add_label(shared_counter, label);
		}
	}
	return NULL;
}

START_TEST(concurrent_increments_sum_right)
{
	static const double bounds[] = { 0.5, 1.5, 2.5 };
	shared_counter = winnow_metrics_counter(m, "c_total", "", "reason");
	shared_gauge = winnow_metrics_gauge(m, "g", "", NULL);
	shared_hist = winnow_metrics_histogram(m, "h", "", bounds, 3);
	pthread_t threads[THREADS];
	for (long t = 0; t < THREADS; t++)
		ck_assert_int_eq(pthread_create(&threads[t], NULL, hammer,
						(void *)t), 0);
	for (int t = 0; t < THREADS; t++)
		pthread_join(threads[t], NULL);

	/* i % 3 == 0 for (ROUNDS + 2) / 3 of the rounds of each thread. */
	ck_assert(winnow_metric_value(shared_counter, "ok") ==
		  (double)THREADS * ((ROUNDS + 2) / 3));
	ck_assert(winnow_metric_value(shared_counter, "empty") +
		  winnow_metric_value(shared_counter, "ok") +
		  winnow_metric_value(shared_counter, "too-large") ==
		  (double)THREADS * ROUNDS);
	ck_assert(winnow_metric_value(shared_gauge, NULL) == 0);
	ck_assert(winnow_metric_value(shared_hist, NULL) ==
		  (double)THREADS * ROUNDS);

	char *text = winnow_metrics_render(m, NULL);
	ck_assert_ptr_nonnull(text);
	/* 0,1,2,3 equally often: sum 1.5 per observation, cumulative 1/4s. */
	ck_assert_ptr_nonnull(strstr(text, "h_bucket{le=\"0.5\"} 20000\n"));
	ck_assert_ptr_nonnull(strstr(text, "h_bucket{le=\"1.5\"} 40000\n"));
	ck_assert_ptr_nonnull(strstr(text, "h_bucket{le=\"2.5\"} 60000\n"));
	ck_assert_ptr_nonnull(strstr(text, "h_bucket{le=\"+Inf\"} 80000\n"));
	ck_assert_ptr_nonnull(strstr(text, "h_sum 120000\n"));
	ck_assert_ptr_nonnull(strstr(text, "h_count 80000\n"));
	ck_assert_ptr_nonnull(strstr(text, "c_total{reason=\"t3-3\"} 0\n"));
	free(text);
}
END_TEST

static Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("registry");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, empty_registry_renders_nothing);
	tcase_add_test(tc, counter_with_labels);
	tcase_add_test(tc, gauge_set_inc_remove);
	tcase_add_test(tc, unlabelled_counter_starts_at_zero);
	tcase_add_test(tc, histogram_buckets_sum_count);
	tcase_add_test(tc, histogram_bounds_validated);
	tcase_add_test(tc, label_values_and_help_escaped);
	tcase_add_test(tc, special_values_formatted);
	tcase_add_test(tc, invalid_or_taken_names_refused);
	tcase_add_test(tc, series_capped);
	tcase_add_test(tc, concurrent_increments_sum_right);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(metrics_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
