/*
 * test_http.c: the operations endpoint (daemon/http.h) over real sockets.
 *
 * Each test starts the server on 127.0.0.1 port 0 (the kernel picks a free
 * port, read back with winnow_http_port()) and talks to it with the plain
 * HTTP/1.1 client below, so what is checked is what Prometheus, a probe or
 * curl would see. Also run under TSan (label "pipeline").
 */
#include "http.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static winnow_metrics_t *metrics;
static winnow_health_t *health;
static winnow_http_t *http;
static unsigned port;

#define STALE_MS 1000

static void setup(void)
{
	char err[256];
	metrics = winnow_metrics_new();
	health = winnow_health_new(STALE_MS);
	ck_assert_ptr_nonnull(metrics);
	ck_assert_ptr_nonnull(health);
	http = winnow_http_start("127.0.0.1:0", metrics, health, err, sizeof err);
	ck_assert_msg(http != NULL, "%s", err);
	port = winnow_http_port(http);
	ck_assert_uint_gt(port, 0);
}

static void teardown(void)
{
	winnow_http_stop(http);
	winnow_health_destroy(health);
	winnow_metrics_destroy(metrics);
	http = NULL;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* ---- a plain HTTP/1.1 client ------------------------------------------------ */

typedef struct {
	int status;
	char head[2048];   /* status line and headers */
	char body[16384];
	size_t body_len;
} response_t;

/* Connects to addr:port; the socket or -1 (errno set). */
static int dial(const char *addr, unsigned to_port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)to_port) };
	inet_pton(AF_INET, addr, &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Sends one request (with body if not NULL) and reads the whole answer. */
static void request(const char *method, const char *path, const char *body,
		    response_t *r)
{
	char req[512];
	int n = snprintf(req, sizeof req,
			 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			 "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
			 method, path, body ? strlen(body) : 0,
			 body ? body : "");
	int fd = dial("127.0.0.1", port);
	ck_assert_msg(fd >= 0, "connect: %s", strerror(errno));
	ck_assert_int_eq(write(fd, req, (size_t)n), n);

	static char raw[sizeof r->head + sizeof r->body];
	size_t len = 0;
	ssize_t got;
	while (len < sizeof raw - 1 &&
	       (got = read(fd, raw + len, sizeof raw - 1 - len)) > 0)
		len += (size_t)got;
	close(fd);
	raw[len] = '\0';

	char *end_of_head = strstr(raw, "\r\n\r\n");
	ck_assert_msg(end_of_head != NULL, "no end of headers in '%s'", raw);
	*end_of_head = '\0';
	ck_assert_uint_lt(strlen(raw), sizeof r->head);
	strcpy(r->head, raw);
	r->body_len = len - (size_t)(end_of_head + 4 - raw);
	memcpy(r->body, end_of_head + 4, r->body_len);
	r->body[r->body_len] = '\0';
	ck_assert_int_eq(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
}

/* The value of header name (case-insensitive), or "" if absent. */
static const char *header(response_t *r, const char *name)
{
	static char value[256];
	value[0] = '\0';
	size_t n = strlen(name);
	for (char *line = strstr(r->head, "\r\n"); line;
	     line = strstr(line + 2, "\r\n")) {
		if (!strncasecmp(line + 2, name, n) && line[2 + n] == ':') {
			const char *v = line + 2 + n + 1;
			v += strspn(v, " ");
			size_t len = strcspn(v, "\r");
			if (len >= sizeof value)
				len = sizeof value - 1;
			memcpy(value, v, len);
			value[len] = '\0';
			break;
		}
	}
	return value;
}

/* ---- tests ----------------------------------------------------------------- */

START_TEST(metrics_served_as_rendered)
{
	winnow_metric_t *c = winnow_metrics_counter(metrics, "winnow_documents_total",
						    "Documents finished.", "reason");
	winnow_metric_inc(c, "ok", 41);
	winnow_metric_inc(c, "ok", 1);
	response_t r;
	request("GET", "/metrics", NULL, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(header(&r, "Content-Type"),
			 "text/plain; version=0.0.4; charset=utf-8");
	char *expected = winnow_metrics_render(metrics, NULL);
	ck_assert_str_eq(r.body, expected);
	free(expected);
	ck_assert_ptr_nonnull(strstr(r.body, "winnow_documents_total{reason=\"ok\"} 42\n"));
}
END_TEST

START_TEST(healthz_goes_stale_without_heartbeat)
{
	response_t r;
	winnow_health_heartbeat(health);
	request("GET", "/healthz", NULL, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "ok\n");

	sleep_ms(STALE_MS + 200);
	request("GET", "/healthz", NULL, &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_msg(!strncmp(r.body, "stale: last heartbeat ", 22), "%s", r.body);
	ck_assert_ptr_nonnull(strstr(r.body, "limit 1000 ms"));

	winnow_health_heartbeat(health);
	request("GET", "/healthz", NULL, &r);
	ck_assert_int_eq(r.status, 200);
}
END_TEST

START_TEST(readyz_flips_with_flags)
{
	response_t r;
	request("GET", "/readyz", NULL, &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(r.body, "not ready, missing: model-loaded "
			 "consumer-assigned producer-connected\n");

	winnow_health_set_ready(health, WINNOW_READY_MODEL, 1);
	request("GET", "/readyz", NULL, &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(r.body, "not ready, missing: consumer-assigned "
			 "producer-connected\n");

	winnow_health_set_ready(health, WINNOW_READY_CONSUMER |
				WINNOW_READY_PRODUCER, 1);
	request("GET", "/readyz", NULL, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "ready\n");

	/* Losing the broker makes it unready again; liveness is unaffected. */
	winnow_health_set_ready(health, WINNOW_READY_PRODUCER, 0);
	request("GET", "/readyz", NULL, &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(r.body, "not ready, missing: producer-connected\n");
	winnow_health_heartbeat(health);
	request("GET", "/healthz", NULL, &r);
	ck_assert_int_eq(r.status, 200);
}
END_TEST

START_TEST(unknown_paths_are_404)
{
	static const char *const paths[] = { "/", "/metricsx", "/metrics/",
					     "/health", "/readyz/x" };
	for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
		response_t r;
		request("GET", paths[i], NULL, &r);
		ck_assert_msg(r.status == 404, "%s: %d", paths[i], r.status);
	}
	/* A query string does not change the resource. */
	response_t r;
	winnow_health_heartbeat(health);
	request("GET", "/healthz?verbose=1", NULL, &r);
	ck_assert_int_eq(r.status, 200);
}
END_TEST

START_TEST(other_methods_are_405)
{
	static const char *const methods[] = { "POST", "PUT", "DELETE" };
	for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
		response_t r;
		request(methods[i], "/metrics", "x=1", &r);
		ck_assert_msg(r.status == 405, "%s: %d", methods[i], r.status);
		ck_assert_str_eq(header(&r, "Allow"), "GET, HEAD");
	}
	/* HEAD is GET without the body. */
	response_t r;
	winnow_health_heartbeat(health);
	request("HEAD", "/healthz", NULL, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(r.body_len, 0);
	ck_assert_str_eq(header(&r, "Content-Length"), "3");
}
END_TEST

START_TEST(listens_only_on_the_given_address)
{
	/* 127.0.0.2 is loopback too, but not the address we bound. */
	int fd = dial("127.0.0.2", port);
	ck_assert_int_eq(fd, -1);
	ck_assert_int_eq(errno, ECONNREFUSED);
	fd = dial("127.0.0.1", port);
	ck_assert_int_ge(fd, 0);
	close(fd);
}
END_TEST

START_TEST(start_errors_are_worded)
{
	char err[256], expected[128];
	winnow_metrics_t *m = metrics;
	ck_assert_ptr_null(winnow_http_start("127.0.0.1", m, health, err, sizeof err));
	ck_assert_str_eq(err, "invalid listen address '127.0.0.1': expected host:port");
	ck_assert_ptr_null(winnow_http_start(":9465", m, health, err, sizeof err));
	ck_assert_str_eq(err, "invalid listen address ':9465': no host "
			 "(use 0.0.0.0:PORT for every IPv4 address)");
	ck_assert_ptr_null(winnow_http_start("127.0.0.1:99999", m, health, err, sizeof err));
	ck_assert_str_eq(err, "invalid listen address '127.0.0.1:99999': "
			 "port must be a number from 0 to 65535");
	ck_assert_ptr_null(winnow_http_start("::1:80", m, health, err, sizeof err));
	ck_assert_ptr_nonnull(strstr(err, "in brackets"));
	ck_assert_ptr_null(winnow_http_start("[::1:80", m, health, err, sizeof err));
	ck_assert_ptr_nonnull(strstr(err, "expected [address]:port"));

	/* The port our server holds is taken. */
	char taken[64];
	snprintf(taken, sizeof taken, "127.0.0.1:%u", port);
	ck_assert_ptr_null(winnow_http_start(taken, m, health, err, sizeof err));
	snprintf(expected, sizeof expected,
		 "cannot listen on '%s': Address already in use", taken);
	ck_assert_str_eq(err, expected);
}
END_TEST

START_TEST(stop_frees_the_port)
{
	char err[256], address[64];
	response_t r;
	request("GET", "/healthz", NULL, &r); /* leaves a connection behind */
	snprintf(address, sizeof address, "127.0.0.1:%u", port);
	winnow_http_stop(http);
	http = winnow_http_start(address, metrics, health, err, sizeof err);
	ck_assert_msg(http != NULL, "%s", err);
	ck_assert_uint_eq(winnow_http_port(http), port);
	winnow_health_heartbeat(health);
	request("GET", "/healthz", NULL, &r);
	ck_assert_int_eq(r.status, 200);
}
END_TEST

/* Scrapes while other threads update the metrics and the health state:
 * for TSan, and for answers that stay well-formed under load. */
static atomic_int stop_updates;

static void *update_loop(void *arg)
{
	winnow_metric_t *c = arg;
	unsigned i = 0;
	while (!atomic_load(&stop_updates)) {
		char label[16];
		snprintf(label, sizeof label, "p%u", i++ % 8);
		winnow_metric_inc(c, label, 1);
		winnow_health_heartbeat(health);
		winnow_health_set_ready(health, WINNOW_READY_CONSUMER, i & 1);
	}
	return NULL;
}

START_TEST(scrapes_during_updates)
{
	winnow_metric_t *c = winnow_metrics_counter(metrics, "busy_total", "", "p");
	pthread_t threads[2];
	atomic_store(&stop_updates, 0);
	for (int t = 0; t < 2; t++)
		pthread_create(&threads[t], NULL, update_loop, c);
	for (int i = 0; i < 40; i++) {
		response_t r;
		request("GET", i % 2 ? "/metrics" : "/readyz", NULL, &r);
		ck_assert(r.status == 200 || r.status == 503);
		if (i % 2)
			ck_assert_ptr_nonnull(strstr(r.body, "# TYPE busy_total counter\n"));
	}
	atomic_store(&stop_updates, 1);
	for (int t = 0; t < 2; t++)
		pthread_join(threads[t], NULL);
}
END_TEST

static Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("endpoint");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, metrics_served_as_rendered);
	tcase_add_test(tc, healthz_goes_stale_without_heartbeat);
	tcase_add_test(tc, readyz_flips_with_flags);
	tcase_add_test(tc, unknown_paths_are_404);
	tcase_add_test(tc, other_methods_are_405);
	tcase_add_test(tc, listens_only_on_the_given_address);
	tcase_add_test(tc, start_errors_are_worded);
	tcase_add_test(tc, stop_frees_the_port);
	tcase_add_test(tc, scrapes_during_updates);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(http_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
