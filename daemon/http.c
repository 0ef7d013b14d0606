/*
 * http.c: the health state and the libmicrohttpd server of http.h.
 *
 * We bind the listening socket ourselves and hand it to libmicrohttpd
 * (MHD_OPTION_LISTEN_SOCKET): the bind error then reaches errstr with its
 * errno instead of libmicrohttpd's log, port 0 is read back with
 * getsockname(), and an IPv6 address is bound IPv6-only, so the server
 * listens on exactly the address it was given. libmicrohttpd owns the
 * socket from then on and closes it in MHD_stop_daemon().
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Scrapes and probes are few; anything beyond this waits in the backlog. */
#define HTTP_MAX_CONNECTIONS 16u
#define HTTP_TIMEOUT_SEC 10u
#define HTTP_BACKLOG 16

/* ---- health state ---------------------------------------------------------- */

struct winnow_health_s {
	_Atomic uint64_t heartbeat_ms; /* CLOCK_MONOTONIC of the last beat */
	_Atomic unsigned ready;        /* WINNOW_READY_* set so far */
	uint32_t stale_after_ms;       /* fixed at creation */
};

static uint64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *winnow_ready_name(winnow_ready_t flag)
{
	switch (flag) {
	case WINNOW_READY_MODEL:
		return "model-loaded";
	case WINNOW_READY_CONSUMER:
		return "consumer-assigned";
	case WINNOW_READY_PRODUCER:
		return "producer-connected";
	}
	return "unknown";
}

winnow_health_t *winnow_health_new(uint32_t stale_after_ms)
{
	winnow_health_t *health = calloc(1, sizeof *health);
	if (!health)
		return NULL;
	atomic_init(&health->heartbeat_ms, monotonic_ms());
	atomic_init(&health->ready, 0u);
	health->stale_after_ms = stale_after_ms;
	return health;
}

void winnow_health_destroy(winnow_health_t *health)
{
	free(health);
}

void winnow_health_heartbeat(winnow_health_t *health)
{
	atomic_store(&health->heartbeat_ms, monotonic_ms());
}

void winnow_health_set_ready(winnow_health_t *health, unsigned flags, int on)
{
	if (on)
		atomic_fetch_or(&health->ready, flags);
	else
		atomic_fetch_and(&health->ready, ~flags);
}

int winnow_health_alive(const winnow_health_t *health, uint64_t *age_ms)
{
	uint64_t beat = atomic_load(&health->heartbeat_ms);
	uint64_t now = monotonic_ms();
	uint64_t age = now > beat ? now - beat : 0; /* a beat after our clock read */
	if (age_ms)
		*age_ms = age;
	return age <= health->stale_after_ms;
}

unsigned winnow_health_missing(const winnow_health_t *health)
{
	return WINNOW_READY_ALL & ~atomic_load(&health->ready);
}

/* ---- the server ------------------------------------------------------------ */

struct winnow_http_s {
	struct MHD_Daemon *mhd;
	winnow_metrics_t *metrics;
	const winnow_health_t *health;
	unsigned port;
};

#define CONTENT_TEXT "text/plain; charset=utf-8"
#define CONTENT_PROMETHEUS "text/plain; version=0.0.4; charset=utf-8"

/* Queues a response. body is copied unless must_free, in which case the
 * response takes it over (and it is freed here if that fails). */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status,
			     const char *content_type, char *body, size_t len,
			     int must_free)
{
	struct MHD_Response *response = MHD_create_response_from_buffer(
		len, body, must_free ? MHD_RESPMEM_MUST_FREE :
				       MHD_RESPMEM_MUST_COPY);
	if (!response) {
		if (must_free)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
				content_type);
	MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL,
				"no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW,
					"GET, HEAD");
	enum MHD_Result ret = MHD_queue_response(conn, status, response);
	MHD_destroy_response(response);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn,
				  unsigned status, const char *text)
{
	return reply(conn, status, CONTENT_TEXT, (char *)text, strlen(text), 0);
}

static enum MHD_Result serve_metrics(struct MHD_Connection *conn,
				     winnow_metrics_t *metrics)
{
	size_t len;
	char *text = winnow_metrics_render(metrics, &len);
	if (!text)
		return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
				  "cannot render metrics: out of memory\n");
	return reply(conn, MHD_HTTP_OK, CONTENT_PROMETHEUS, text, len, 1);
}

static enum MHD_Result serve_healthz(struct MHD_Connection *conn,
				     const winnow_health_t *health)
{
	uint64_t age_ms;
	if (winnow_health_alive(health, &age_ms))
		return reply_text(conn, MHD_HTTP_OK, "ok\n");
	char text[160];
	snprintf(text, sizeof text,
		 "stale: last heartbeat %llu ms ago, limit %u ms\n",
		 (unsigned long long)age_ms, (unsigned)health->stale_after_ms);
	return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, text);
}

static enum MHD_Result serve_readyz(struct MHD_Connection *conn,
				    const winnow_health_t *health)
{
	unsigned missing = winnow_health_missing(health);
	if (!missing)
		return reply_text(conn, MHD_HTTP_OK, "ready\n");
	char text[160] = "not ready, missing:";
	for (unsigned flag = 1; flag <= WINNOW_READY_ALL; flag <<= 1) {
		if (missing & flag) {
			strncat(text, " ", sizeof text - strlen(text) - 1);
			strncat(text, winnow_ready_name(flag),
				sizeof text - strlen(text) - 1);
		}
	}
	strncat(text, "\n", sizeof text - strlen(text) - 1);
	return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, text);
}

/* libmicrohttpd's access handler; runs on its polling thread. A request
 * body, if any, is never read: every answer is given on the first call. */
static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn,
				      const char *url, const char *method,
				      const char *version,
				      const char *upload_data,
				      size_t *upload_data_size, void **req_cls)
{
	const winnow_http_t *http = cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET) &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				  "method not allowed\n");
	if (!strcmp(url, "/metrics"))
		return serve_metrics(conn, http->metrics);
	if (!strcmp(url, "/healthz"))
		return serve_healthz(conn, http->health);
	if (!strcmp(url, "/readyz"))
		return serve_readyz(conn, http->health);
	return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
}

/* Splits "host:port" or "[v6]:port" into host and port (digits only). */
static int split_listen(const char *address, char *host, size_t host_size,
			char *port, size_t port_size, char *errstr,
			size_t errstr_size)
{
	const char *colon, *host_start = address, *host_end;
	if (address[0] == '[') {
		host_start = address + 1;
		host_end = strchr(host_start, ']');
		if (!host_end || host_end[1] != ':') {
			snprintf(errstr, errstr_size,
				 "invalid listen address '%s': expected [address]:port",
				 address);
			return -1;
		}
		colon = host_end + 1;
	} else {
		colon = strrchr(address, ':');
		if (!colon) {
			snprintf(errstr, errstr_size,
				 "invalid listen address '%s': expected host:port",
				 address);
			return -1;
		}
		if (memchr(address, ':', (size_t)(colon - address))) {
			snprintf(errstr, errstr_size,
				 "invalid listen address '%s': write an IPv6 address in brackets, as [::1]:9465",
				 address);
			return -1;
		}
		host_end = colon;
	}
	size_t host_len = (size_t)(host_end - host_start);
	const char *p = colon + 1;
	size_t port_len = strlen(p);
	int port_ok = port_len > 0 && port_len < port_size &&
		      strspn(p, "0123456789") == port_len && atol(p) <= 65535;
	if (host_len == 0 || host_len >= host_size || !port_ok) {
		snprintf(errstr, errstr_size,
			 "invalid listen address '%s': %s", address,
			 !port_ok ? "port must be a number from 0 to 65535" :
			 host_len == 0 ? "no host (use 0.0.0.0:PORT for every IPv4 address)" :
			 "host name too long");
		return -1;
	}
	memcpy(host, host_start, host_len);
	host[host_len] = '\0';
	memcpy(port, p, port_len + 1);
	return 0;
}

/* Binds and listens on address; returns the socket, or -1 with errstr. */
static int open_listener(const char *address, unsigned *bound_port,
			 char *errstr, size_t errstr_size)
{
	char host[256], port[8];
	if (split_listen(address, host, sizeof host, port, sizeof port, errstr,
			 errstr_size))
		return -1;

	struct addrinfo hints = { 0 }, *ai;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		snprintf(errstr, errstr_size, "cannot resolve '%s': %s", host,
			 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}

	int one = 1;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto out_error;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    (ai->ai_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one)) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) ||
	    listen(fd, HTTP_BACKLOG))
		goto out_close_fd;

	struct sockaddr_storage sa;
	socklen_t sa_len = sizeof sa;
	if (getsockname(fd, (struct sockaddr *)&sa, &sa_len))
		goto out_close_fd;
	*bound_port = ntohs(sa.ss_family == AF_INET6 ?
			    ((struct sockaddr_in6 *)&sa)->sin6_port :
			    ((struct sockaddr_in *)&sa)->sin_port);
	freeaddrinfo(ai);
	return fd;

out_close_fd:
	rc = errno;
	close(fd);
	errno = rc;
out_error:
	snprintf(errstr, errstr_size, "cannot listen on '%s': %s", address,
		 strerror(errno));
	freeaddrinfo(ai);
	return -1;
}

winnow_http_t *winnow_http_start(const char *address, winnow_metrics_t *metrics,
				 const winnow_health_t *health, char *errstr,
				 size_t errstr_size)
{
	winnow_http_t *http = calloc(1, sizeof *http);
	if (!http) {
		snprintf(errstr, errstr_size, "cannot start http server: out of memory");
		return NULL;
	}
	http->metrics = metrics;
	http->health = health;

	int fd = open_listener(address, &http->port, errstr, errstr_size);
	if (fd < 0)
		goto out_free;

	/* No MHD_USE_ERROR_LOG: a client that hangs up is not news. */
	http->mhd = MHD_start_daemon(
		MHD_USE_AUTO_INTERNAL_THREAD, 0, NULL, NULL,
		handle_request, http,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		MHD_OPTION_CONNECTION_LIMIT, HTTP_MAX_CONNECTIONS,
		MHD_OPTION_CONNECTION_TIMEOUT, HTTP_TIMEOUT_SEC,
		MHD_OPTION_END);
	if (!http->mhd) {
		snprintf(errstr, errstr_size,
			 "cannot start http server on '%s': libmicrohttpd refused to start",
			 address);
		goto out_close_fd;
	}
	return http;

out_close_fd:
	close(fd);
out_free:
	free(http);
	return NULL;
}

unsigned winnow_http_port(const winnow_http_t *http)
{
	return http->port;
}

void winnow_http_stop(winnow_http_t *http)
{
	if (!http)
		return;
	MHD_stop_daemon(http->mhd);
	free(http);
}
