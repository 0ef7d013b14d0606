/*
 * http.h: winnowd's operations endpoint, and the health state it reports.
 *
 *   GET /metrics   200, the registry in the Prometheus text format
 *                  (Content-Type: text/plain; version=0.0.4)
 *   GET /healthz   liveness: 200 "ok" while the daemon's loop beats,
 *                  503 with the age of the last beat once it is stale
 *   GET /readyz    readiness: 200 "ready" when every ready flag is set,
 *                  503 naming the missing ones otherwise
 *   other paths    404; methods other than GET and HEAD: 405
 *
 * The server is libmicrohttpd with its own polling thread and a small
 * connection limit; it listens on the one address given, nowhere else.
 */
#ifndef WINNOW_HTTP_H
#define WINNOW_HTTP_H

#include "metrics.h"

#include <stddef.h>
#include <stdint.h>

/* ---- health state ---------------------------------------------------------- */

/*
 * What the daemon must have before it does useful work. The daemon sets and
 * clears them as things happen (a lost broker connection clears PRODUCER; a
 * revocation of everything may clear CONSUMER); /readyz reports them.
 */
typedef enum {
	WINNOW_READY_MODEL = 1u << 0,    /* "model-loaded" */
	WINNOW_READY_CONSUMER = 1u << 1, /* "consumer-assigned": joined the
					  * group and got an assignment (the
					  * daemon decides whether an empty
					  * one counts) */
	WINNOW_READY_PRODUCER = 1u << 2, /* "producer-connected" */
} winnow_ready_t;

#define WINNOW_READY_ALL \
	(WINNOW_READY_MODEL | WINNOW_READY_CONSUMER | WINNOW_READY_PRODUCER)

/* "model-loaded" etc.; "unknown" for anything else. */
const char *winnow_ready_name(winnow_ready_t flag);

/*
 * The health state: a heartbeat time and the ready flags, kept in atomics,
 * so the daemon's threads update it and the HTTP thread reads it without
 * locks. Made by the daemon, handed to winnow_http_start() (which only
 * reads it), destroyed after winnow_http_stop().
 */
typedef struct winnow_health_s winnow_health_t;

/*
 * stale_after_ms: /healthz fails once the last heartbeat is older than
 * this. Creation counts as a heartbeat, so start-up (loading the model)
 * has that long before the first beat is due. NULL when out of memory.
 */
winnow_health_t *winnow_health_new(uint32_t stale_after_ms);

/* Accepts NULL. */
void winnow_health_destroy(winnow_health_t *health);

/* Records "the loop is alive now" (CLOCK_MONOTONIC). Call it from the loop
 * that makes progress, at least a few times per stale_after_ms. */
void winnow_health_heartbeat(winnow_health_t *health);

/* Sets (on != 0) or clears one or more WINNOW_READY_* flags. */
void winnow_health_set_ready(winnow_health_t *health, unsigned flags, int on);

/* 1 when the last heartbeat is at most stale_after_ms old, else 0; the age
 * of the last heartbeat in ms goes to *age_ms if not NULL. */
int winnow_health_alive(const winnow_health_t *health, uint64_t *age_ms);

/* The WINNOW_READY_* flags not set (0 when ready). */
unsigned winnow_health_missing(const winnow_health_t *health);

/* ---- the server ------------------------------------------------------------ */

typedef struct winnow_http_s winnow_http_t;

/*
 * Starts serving on listen, "host:port" ("127.0.0.1:9465", "[::1]:9465",
 * "localhost:9465"; port 0 picks a free port, see winnow_http_port()).
 * metrics and health (neither NULL) must outlive the server, which only
 * reads them. The server's thread inherits the caller's signal mask: start
 * it after blocking the signals the daemon's loop waits for. Returns NULL with the reason in errstr on failure ("cannot listen
 * on '127.0.0.1:9465': Address already in use").
 */
winnow_http_t *winnow_http_start(const char *listen, winnow_metrics_t *metrics,
				 const winnow_health_t *health, char *errstr,
				 size_t errstr_size);

/* The port actually bound (useful with port 0). */
unsigned winnow_http_port(const winnow_http_t *http);

/* Stops serving: closes the listening socket and the open connections and
 * joins the server's thread. Accepts NULL. */
void winnow_http_stop(winnow_http_t *http);

#endif /* WINNOW_HTTP_H */
