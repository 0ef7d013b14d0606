/*
 * kafka_io.c: the consumer loop, producer, offsets, rebalances and replay
 * of winnowd (kafka_io.h).
 *
 * Threads: the main thread runs the loop: it polls the consumer (and so
 * serves rebalances), submits to the pipeline, serves the producer's
 * delivery reports and owns the offset tracker. The pipeline's output
 * thread builds records and produces them (librdkafka's produce is
 * thread-safe); the only state it shares with the main thread is the
 * assignment generation of each partition, under assign_lock, and the
 * metrics.
 */
#include "kafka_io.h"
#include "daemon_metrics.h"
#include "log.h"
#include "notify.h"
#include "offsets.h"
#include "record.h"

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One consumed message on its way to an acknowledged record. */
typedef struct {
	rd_kafka_message_t *msg;   /* the input, kept for the dead letter */
	int32_t partition;
	int64_t offset;
	uint32_t generation;       /* of the partition's assignment */
	uint64_t t_consumed;
	/* The record to produce (kept to produce again after a failure). */
	char *value;               /* output JSON (owned), or NULL: dead letter */
	size_t value_len;
	winnow_doc_status_t status;
	char reason[256];
	int omit_value;            /* dead letter too large to carry the value */
	int attempts;              /* failed deliveries so far */
} inflight_t;

/* librdkafka already retries transient errors without end (message.timeout.ms
 * = 0); a record it reports as failed this often has a permanent problem. */
#define MAX_DELIVERY_ATTEMPTS 5

typedef struct {
	int32_t id;
	int assigned;
	uint32_t generation;
	/* The partition's own message queue, detached from the consumer
	 * queue: the loop takes from it only while the pipeline has room,
	 * and librdkafka stops fetching when it holds
	 * queued.max.messages.kbytes. Main thread only. */
	rd_kafka_queue_t *queue;
	int64_t end;               /* replay: stop before this offset */
	int done;                  /* replay: reached end */
} part_state_t;

typedef struct {
	winnow_config_t *cfg;
	const char *config_path;
	const winnow_model_t *model;
	const winnow_replay_t *replay;
	winnow_signals_t *signals;
	const char *input_topic, *output_topic;

	rd_kafka_t *consumer, *producer;
	winnow_pipeline_t *pipe;
	winnow_offsets_t *offsets;
	winnow_daemon_metrics_t *metrics;

	pthread_mutex_t assign_lock;
	part_state_t *parts;
	size_t n_parts, cap_parts;

	inflight_t **held;         /* consumed, not yet taken by the pipeline */
	size_t n_held, cap_held;
	int paused;                /* in flight reached pause_at, not yet resume_at */
	size_t next_part;          /* round robin over the partition queues */
	int stopping;

	uint64_t produced_ok, dead_lettered, dropped, delivery_failures;
	atomic_uint_fast64_t progress; /* bumps on every finished document */
} kio_t;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- partitions (shared with the output thread) --------------------------- */

static part_state_t *part_get(kio_t *k, int32_t id, int create)
{
	for (size_t i = 0; i < k->n_parts; i++)
		if (k->parts[i].id == id)
			return &k->parts[i];
	if (!create)
		return NULL;
	if (k->n_parts == k->cap_parts) {
		size_t ncap = k->cap_parts ? 2 * k->cap_parts : 16;
		part_state_t *np = realloc(k->parts, ncap * sizeof *np);
		if (!np)
			return NULL;
		k->parts = np;
		k->cap_parts = ncap;
	}
	part_state_t *p = &k->parts[k->n_parts++];
	memset(p, 0, sizeof *p);
	p->id = id;
	p->end = INT64_MAX;
	return p;
}

/* Whether a document consumed under `generation` may still be delivered. */
static int part_current(kio_t *k, int32_t id, uint32_t generation)
{
	pthread_mutex_lock(&k->assign_lock);
	part_state_t *p = part_get(k, id, 0);
	int ok = p && p->assigned && p->generation == generation;
	pthread_mutex_unlock(&k->assign_lock);
	return ok;
}

/* ---- producing ---------------------------------------------------------------- */

static void inflight_free(inflight_t *f)
{
	if (!f)
		return;
	rd_kafka_message_destroy(f->msg);
	free(f->value);
	free(f);
}

/*
 * Produces f's record: the output record when f->value is set, otherwise the
 * dead letter (original key and value, headers with the error class, reason
 * and source). Waits while the producer's queue is full.
 */
static rd_kafka_resp_err_t produce(kio_t *k, inflight_t *f)
{
	const rd_kafka_message_t *m = f->msg;
	const char *in_topic = rd_kafka_topic_name(m->rkt);
	rd_kafka_resp_err_t err;
	for (;;) {
		if (f->value) {
			err = rd_kafka_producev(k->producer,
				RD_KAFKA_V_TOPIC(k->output_topic),
				RD_KAFKA_V_KEY(m->key, m->key_len),
				RD_KAFKA_V_VALUE(f->value, f->value_len),
				RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				RD_KAFKA_V_OPAQUE(f),
				RD_KAFKA_V_END);
		} else {
			char part[16], off[24];
			snprintf(part, sizeof part, "%" PRId32, f->partition);
			snprintf(off, sizeof off, "%" PRId64, f->offset);
			rd_kafka_headers_t *h = rd_kafka_headers_new(6);
			rd_kafka_header_add(h, "winnow-error-class", -1,
					    winnow_doc_status_name(f->status), -1);
			rd_kafka_header_add(h, "winnow-error-reason", -1, f->reason, -1);
			rd_kafka_header_add(h, "winnow-source-topic", -1, in_topic, -1);
			rd_kafka_header_add(h, "winnow-source-partition", -1, part, -1);
			rd_kafka_header_add(h, "winnow-source-offset", -1, off, -1);
			if (f->omit_value) {
				char why[96];
				snprintf(why, sizeof why, "%zu bytes, too large for the dead-letter topic",
					 m->len);
				rd_kafka_header_add(h, "winnow-value-omitted", -1, why, -1);
			}
			err = rd_kafka_producev(k->producer,
				RD_KAFKA_V_TOPIC(k->cfg->kafka.dead_letter),
				RD_KAFKA_V_KEY(m->key, m->key_len),
				RD_KAFKA_V_VALUE(f->omit_value ? NULL : m->payload,
						 f->omit_value ? 0 : m->len),
				RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				RD_KAFKA_V_HEADERS(h),
				RD_KAFKA_V_OPAQUE(f),
				RD_KAFKA_V_END);
			if (err)
				rd_kafka_headers_destroy(h);
		}
		if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && !f->value &&
		    !f->omit_value) {
			/* The dead letter goes out without the value rather
			 * than not at all (headers say so). */
			f->omit_value = 1;
			continue;
		}
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			return err;
		/* The main thread serves delivery reports and frees room. */
		usleep(1000);
	}
}

/* The pipeline's callback, on its output thread. */
static void on_document(const winnow_pipeline_doc_t *doc, void *user)
{
	kio_t *k = user;
	inflight_t *f = doc->opaque;
	const rd_kafka_message_t *m = f->msg;

	if (doc->status == WINNOW_DOC_ABANDONED ||
	    !part_current(k, f->partition, f->generation)) {
		/* Revoked, or shut down before it was classified: not delivered,
		 * so never committed; the partition's next owner (or the next
		 * start) classifies it again. */
		winnow_daemon_metrics_dropped(k->metrics);
		inflight_free(f);
		return;
	}
	f->status = doc->status;
	if (doc->status == WINNOW_DOC_OK) {
		char idbuf[64];
		const char *id = m->key;
		size_t id_len = m->key_len;
		if (!m->key) { /* no key: name the document by its position */
			id_len = (size_t)snprintf(idbuf, sizeof idbuf, "%s:%" PRId32 ":%" PRId64,
						  rd_kafka_topic_name(m->rkt),
						  f->partition, f->offset);
			id = idbuf;
		}
		json_t *rec = winnow_record_json(k->model, doc->result, id, id_len);
		json_object_set_new(rec, "source",
				    json_pack("{s:s, s:i, s:I}",
					      "topic", rd_kafka_topic_name(m->rkt),
					      "partition", (int)f->partition,
					      "offset", (json_int_t)f->offset));
		f->value = winnow_record_dump(rec);
		f->value_len = f->value ? strlen(f->value) : 0;
		json_decref(rec);
		winnow_daemon_metrics_classified(k->metrics, doc->result,
						 doc->latency_ns);
	} else {
		snprintf(f->reason, sizeof f->reason, "%s", doc->reason);
		winnow_daemon_metrics_dead_letter(k->metrics,
						  winnow_doc_status_name(doc->status));
	}
	rd_kafka_resp_err_t err = produce(k, f);
	if (err) {
		/* Not produced: left unfinished, so never committed. */
		log_error("producer: cannot produce the record of %s[%" PRId32 "]@%" PRId64 ": %s",
			  rd_kafka_topic_name(m->rkt), f->partition, f->offset,
			  rd_kafka_err2str(err));
		winnow_daemon_metrics_dropped(k->metrics);
		inflight_free(f);
	}
}

/* Delivery reports, served on the main thread by rd_kafka_poll(producer). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rm, void *opaque)
{
	kio_t *k = opaque;
	inflight_t *f = rm->_private;
	(void)rk;
	if (rm->err) {
		k->delivery_failures++;
		if (!f->value && !f->omit_value &&
		    rm->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
			log_warn("producer: dead letter of %s[%" PRId32 "]@%" PRId64 " is too large for '%s'; sending it without its value",
				 rd_kafka_topic_name(f->msg->rkt), f->partition, f->offset,
				 k->cfg->kafka.dead_letter);
			f->omit_value = 1;
		} else {
			log_warn("producer: record of %s[%" PRId32 "]@%" PRId64 " not delivered (%s); producing it again",
				 rd_kafka_topic_name(f->msg->rkt), f->partition, f->offset,
				 rd_kafka_err2str(rm->err));
		}
		if (++f->attempts >= MAX_DELIVERY_ATTEMPTS) {
			/* Left unfinished: the partition's commit point stays
			 * before it, so it is classified again after a restart. */
			log_error("producer: giving up on the record of %s[%" PRId32 "]@%" PRId64 " after %d attempts; partition %" PRId32 " commits no further until a restart",
				  rd_kafka_topic_name(f->msg->rkt), f->partition, f->offset,
				  f->attempts, f->partition);
		} else if (part_current(k, f->partition, f->generation) &&
			   produce(k, f) == RD_KAFKA_RESP_ERR_NO_ERROR) {
			return;
		}
		inflight_free(f);
		return;
	}
	int64_t commit;
	if (f->value)
		k->produced_ok++;
	else
		k->dead_lettered++;
	atomic_fetch_add(&k->progress, 1);
	if (winnow_offsets_finish(k->offsets, f->partition, f->offset, &commit) == 1 &&
	    !k->replay && part_current(k, f->partition, f->generation)) {
		rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
		rd_kafka_topic_partition_list_add(l, k->input_topic, f->partition)->offset = commit;
		rd_kafka_resp_err_t err = rd_kafka_offsets_store(k->consumer, l);
		if (err)
			log_warn("consumer: cannot store offset %" PRId64 " of partition %" PRId32 ": %s",
				 commit, f->partition, rd_kafka_err2str(err));
		rd_kafka_topic_partition_list_destroy(l);
	}
	inflight_free(f);
}

/* ---- consuming ----------------------------------------------------------------- */

static void set_paused(kio_t *k, int pause)
{
	rd_kafka_topic_partition_list_t *a = NULL;
	if (rd_kafka_assignment(k->consumer, &a) || !a)
		return;
	if (a->cnt) {
		rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(k->consumer, a)
						: rd_kafka_resume_partitions(k->consumer, a);
		if (err)
			log_warn("consumer: cannot %s partitions: %s",
				 pause ? "pause" : "resume", rd_kafka_err2str(err));
	}
	rd_kafka_topic_partition_list_destroy(a);
	if (k->paused != pause)
		log_debug("consumer: %s (%u documents in flight)",
			  pause ? "paused" : "resumed",
			  winnow_pipeline_in_flight(k->pipe));
	k->paused = pause;
}

static int hold(kio_t *k, inflight_t *f)
{
	if (k->n_held == k->cap_held) {
		size_t ncap = k->cap_held ? 2 * k->cap_held : 16;
		inflight_t **nh = realloc(k->held, ncap * sizeof *nh);
		if (!nh)
			return -1;
		k->held = nh;
		k->cap_held = ncap;
	}
	k->held[k->n_held++] = f;
	return 0;
}

/* Submits held messages in order while the pipeline takes them. */
static void submit_held(kio_t *k, int timeout_ms)
{
	size_t i = 0;
	while (i < k->n_held) {
		inflight_t *f = k->held[i];
		winnow_err_t e = winnow_pipeline_submit(k->pipe, f->msg->payload,
							f->msg->len, f, timeout_ms);
		if (e == WINNOW_ERR_BUSY)
			break;
		if (e) { /* stopped */
			inflight_free(f);
		}
		i++;
		timeout_ms = 0;
	}
	memmove(k->held, k->held + i, (k->n_held - i) * sizeof *k->held);
	k->n_held -= i;
}

static void drop_held_of(kio_t *k, int32_t partition)
{
	size_t j = 0;
	for (size_t i = 0; i < k->n_held; i++) {
		if (k->held[i]->partition == partition)
			inflight_free(k->held[i]);
		else
			k->held[j++] = k->held[i];
	}
	k->n_held = j;
}

/*
 * Detaches the assigned partitions' queues from the consumer queue (after
 * an assign): their messages then wait in librdkafka, bounded, until the
 * loop has room for them, instead of pausing and resuming partitions, which
 * drops prefetched data and resumes only when the outstanding fetch
 * returns. Main thread only.
 */
static void attach_queues(kio_t *k, const rd_kafka_topic_partition_list_t *parts)
{
	for (int i = 0; i < parts->cnt; i++) {
		part_state_t *p = part_get(k, parts->elems[i].partition, 0);
		if (!p || p->queue)
			continue;
		p->queue = rd_kafka_queue_get_partition(k->consumer, parts->elems[i].topic,
							parts->elems[i].partition);
		if (p->queue)
			rd_kafka_queue_forward(p->queue, NULL);
	}
}

static void detach_queue(part_state_t *p)
{
	if (p && p->queue) {
		rd_kafka_queue_destroy(p->queue);
		p->queue = NULL;
	}
}

static void handle_message(kio_t *k, rd_kafka_message_t *m);

/* Takes up to `room` messages, one partition at a time in turn. */
static size_t consume_partitions(kio_t *k, size_t room)
{
	size_t got = 0, idle = 0;
	while (room && k->n_parts && idle < k->n_parts) {
		part_state_t *p = &k->parts[k->next_part++ % k->n_parts];
		rd_kafka_message_t *m = p->assigned && p->queue
					? rd_kafka_consume_queue(p->queue, 0) : NULL;
		if (!m) {
			idle++;
			continue;
		}
		int is_error = m->err != RD_KAFKA_RESP_ERR_NO_ERROR;
		idle = 0;
		handle_message(k, m); /* takes m */
		if (!is_error)
			room--, got++;
	}
	return got;
}

static void handle_message(kio_t *k, rd_kafka_message_t *m)
{
	if (m->err) {
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			if (k->replay) {
				part_state_t *p = part_get(k, m->partition, 0);
				if (p && m->offset >= p->end)
					p->done = 1;
			}
		} else {
			log_warn("consumer: %s", rd_kafka_message_errstr(m));
		}
		rd_kafka_message_destroy(m);
		return;
	}
	if (k->stopping) {
		rd_kafka_message_destroy(m); /* never begun: not committed */
		return;
	}
	pthread_mutex_lock(&k->assign_lock);
	part_state_t *p = part_get(k, m->partition, 0);
	uint32_t gen = p ? p->generation : 0;
	int assigned = p && p->assigned;
	int64_t end = p ? p->end : INT64_MAX;
	pthread_mutex_unlock(&k->assign_lock);
	if (!assigned || m->offset >= end) {
		if (assigned && k->replay)
			p->done = 1;
		rd_kafka_message_destroy(m);
		return;
	}
	inflight_t *f = calloc(1, sizeof *f);
	if (!f || winnow_offsets_begin(k->offsets, m->partition, m->offset)) {
		log_warn("consumer: cannot track %s[%" PRId32 "]@%" PRId64 "; it will be consumed again",
			 rd_kafka_topic_name(m->rkt), m->partition, m->offset);
		free(f);
		rd_kafka_message_destroy(m);
		return;
	}
	f->msg = m;
	f->partition = m->partition;
	f->offset = m->offset;
	f->generation = gen;
	f->t_consumed = now_ns();
	winnow_daemon_metrics_consumed(k->metrics);
	if (k->replay && m->offset + 1 >= end)
		p->done = 1;
	if (k->n_held || winnow_pipeline_submit(k->pipe, m->payload, m->len, f, 0)) {
		if (hold(k, f)) {
			log_error("consumer: out of memory holding a message");
			inflight_free(f);
		}
	}
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	kio_t *k = opaque;
	int cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		pthread_mutex_lock(&k->assign_lock);
		for (int i = 0; i < parts->cnt; i++) {
			part_state_t *p = part_get(k, parts->elems[i].partition, 1);
			if (p) {
				p->assigned = 1;
				p->generation++;
			}
			winnow_offsets_assign(k->offsets, parts->elems[i].partition);
		}
		pthread_mutex_unlock(&k->assign_lock);
		rd_kafka_error_t *e = NULL;
		if (cooperative)
			e = rd_kafka_incremental_assign(rk, parts);
		else
			rd_kafka_assign(rk, parts);
		if (e) {
			log_error("consumer: assign failed: %s", rd_kafka_error_string(e));
			rd_kafka_error_destroy(e);
		}
		attach_queues(k, parts);
		log_info("consumer: assigned %d partition(s) of '%s'", parts->cnt,
			 k->input_topic);
		winnow_daemon_metrics_assigned(k->metrics, 1);
	} else {
		/* Commit what was delivered, then forget the partitions: their
		 * in-flight results will be dropped, not committed. */
		rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, NULL, 0);
		if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
			log_warn("consumer: commit on revoke: %s", rd_kafka_err2str(cerr));
		pthread_mutex_lock(&k->assign_lock);
		for (int i = 0; i < parts->cnt; i++) {
			part_state_t *p = part_get(k, parts->elems[i].partition, 0);
			if (p) {
				p->assigned = 0;
				p->generation++;
				detach_queue(p);
			}
			winnow_offsets_revoke(k->offsets, parts->elems[i].partition);
		}
		pthread_mutex_unlock(&k->assign_lock);
		for (int i = 0; i < parts->cnt; i++)
			winnow_daemon_metrics_lag_forget(k->metrics, parts->elems[i].partition);
		for (int i = 0; i < parts->cnt; i++)
			drop_held_of(k, parts->elems[i].partition);
		if (cooperative) {
			rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
			if (e)
				rd_kafka_error_destroy(e);
		} else {
			rd_kafka_assign(rk, NULL);
		}
		log_info("consumer: revoked %d partition(s)", parts->cnt);
		if (!cooperative)
			winnow_daemon_metrics_assigned(k->metrics, 0);
	}
}

/* ---- clients --------------------------------------------------------------------- */

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
		    char *errstr, size_t errstr_size)
{
	char err[512];
	if (rd_kafka_conf_set(conf, key, value, err, sizeof err) != RD_KAFKA_CONF_OK) {
		snprintf(errstr, errstr_size, "kafka property '%s': %s", key, err);
		return -1;
	}
	return 0;
}

/*
 * Whether a property belongs to the consumer ('C'), the producer ('P') or
 * both ('*'), from the table librdkafka prints of its own properties; 0 for
 * a name it does not list. kafka.properties is one list for both clients,
 * and a consumer property set on the producer makes librdkafka log a
 * CONFWARN at every start (and the reverse).
 */
static char property_scope(const char *name)
{
	char *table = NULL, *line, *save = NULL;
	size_t size = 0, len = strlen(name);
	char scope = 0;
	FILE *f = open_memstream(&table, &size);
	if (!f)
		return 0;
	rd_kafka_conf_properties_show(f);
	fclose(f);
	/* Rows are "name   |  C  | range | ...": the global table comes first,
	 * so a name listed again among the topic properties keeps its first
	 * scope. */
	for (line = strtok_r(table, "\n", &save); line && !scope;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, name, len) || (line[len] != ' ' && line[len] != '|'))
			continue;
		char *bar = strchr(line + len, '|');
		while (bar && *++bar == ' ')
			;
		if (bar && (*bar == 'C' || *bar == 'P' || *bar == '*'))
			scope = *bar;
	}
	free(table);
	return scope;
}

/* The common settings, then those of kafka.properties that apply to this
 * client (role 'C' or 'P'), which win. */
static rd_kafka_conf_t *make_conf(kio_t *k, char role, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const winnow_config_t *c = k->cfg;
	if (conf_set(conf, "bootstrap.servers", c->kafka.brokers, errstr, errstr_size) ||
	    conf_set(conf, "client.id", c->kafka.client_id, errstr, errstr_size))
		goto out_destroy;
	for (size_t i = 0; i < c->kafka.n_properties; i++) {
		char scope = property_scope(c->kafka.properties[i].name);
		if (scope == (role == 'C' ? 'P' : 'C'))
			continue;
		if (conf_set(conf, c->kafka.properties[i].name,
			     c->kafka.properties[i].value, errstr, errstr_size))
			goto out_destroy;
	}
	return conf;
out_destroy:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

static int has_property(const winnow_config_t *c, const char *key)
{
	for (size_t i = 0; i < c->kafka.n_properties; i++)
		if (!strcmp(c->kafka.properties[i].name, key))
			return 1;
	return 0;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	winnow_log(level <= 3 ? WINNOW_LOG_ERROR : level <= 4 ? WINNOW_LOG_WARN
		   : level <= 6 ? WINNOW_LOG_INFO : WINNOW_LOG_DEBUG,
		   "librdkafka: %s: %s", fac, buf);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	(void)opaque;
	log_warn("kafka: %s: %s", rd_kafka_err2name(err), reason);
}

static int make_clients(kio_t *k, char *errstr, size_t errstr_size)
{
	const winnow_config_t *c = k->cfg;
	char err[512];
	char max_bytes[32];
	snprintf(max_bytes, sizeof max_bytes, "%" PRIu64,
		 (uint64_t)c->limits.max_input_bytes + 65536);

	/* Producer: idempotent, acks=all, retries until delivered. */
	rd_kafka_conf_t *pc = make_conf(k, 'P', errstr, errstr_size);
	if (!pc)
		return -1;
	if ((!has_property(c, "enable.idempotence") &&
	     conf_set(pc, "enable.idempotence", "true", errstr, errstr_size)) ||
	    (!has_property(c, "acks") && conf_set(pc, "acks", "all", errstr, errstr_size)) ||
	    (!has_property(c, "message.timeout.ms") &&
	     conf_set(pc, "message.timeout.ms", "0", errstr, errstr_size)) ||
	    /* The broker decides what it takes: a dead letter carries the
	     * input's value, which may exceed any local cap. */
	    (!has_property(c, "message.max.bytes") &&
	     conf_set(pc, "message.max.bytes", "1000000000", errstr, errstr_size)) ||
	    (!has_property(c, "linger.ms") && conf_set(pc, "linger.ms", "5", errstr, errstr_size))) {
		rd_kafka_conf_destroy(pc);
		return -1;
	}
	rd_kafka_conf_set_opaque(pc, k);
	rd_kafka_conf_set_dr_msg_cb(pc, on_delivery);
	rd_kafka_conf_set_log_cb(pc, on_log);
	rd_kafka_conf_set_error_cb(pc, on_error);
	k->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err);
	if (!k->producer) {
		snprintf(errstr, errstr_size, "cannot create producer: %s", err);
		return -1;
	}

	/* Consumer: offsets stored by hand, after delivery; auto-committed. */
	rd_kafka_conf_t *cc = make_conf(k, 'C', errstr, errstr_size);
	if (!cc)
		return -1;
	char group[512];
	if (k->replay)
		snprintf(group, sizeof group, "%s.replay.%ld", c->kafka.group, (long)getpid());
	else
		snprintf(group, sizeof group, "%s", c->kafka.group);
	if (conf_set(cc, "group.id", group, errstr, errstr_size) ||
	    conf_set(cc, "enable.auto.offset.store", "false", errstr, errstr_size) ||
	    (!has_property(c, "auto.offset.reset") &&
	     conf_set(cc, "auto.offset.reset", "earliest", errstr, errstr_size)) ||
	    (!has_property(c, "fetch.message.max.bytes") &&
	     conf_set(cc, "fetch.message.max.bytes", max_bytes, errstr, errstr_size)) ||
	    /* Prefetch per partition queue; librdkafka's default is 64 MB. */
	    (!has_property(c, "queued.max.messages.kbytes") &&
	     conf_set(cc, "queued.max.messages.kbytes", "8192", errstr, errstr_size)) ||
	    (k->replay && (conf_set(cc, "enable.auto.commit", "false", errstr, errstr_size) ||
			   conf_set(cc, "enable.partition.eof", "true", errstr, errstr_size)))) {
		rd_kafka_conf_destroy(cc);
		return -1;
	}
	rd_kafka_conf_set_opaque(cc, k);
	if (!k->replay)
		rd_kafka_conf_set_rebalance_cb(cc, on_rebalance);
	rd_kafka_conf_set_log_cb(cc, on_log);
	rd_kafka_conf_set_error_cb(cc, on_error);
	k->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof err);
	if (!k->consumer) {
		snprintf(errstr, errstr_size, "cannot create consumer: %s", err);
		return -1;
	}
	rd_kafka_poll_set_consumer(k->consumer);
	return 0;
}

/* ---- replay ------------------------------------------------------------------------ */

/* Assigns every partition of the replayed topic from its start to the end
 * offsets read now (DESIGN.md, Replay). Returns the partitions to read. */
static int replay_assign(kio_t *k, char *errstr, size_t errstr_size)
{
	const winnow_replay_t *r = k->replay;
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *t = rd_kafka_topic_new(k->consumer, r->topic, NULL);
	rd_kafka_resp_err_t err = rd_kafka_metadata(k->consumer, 0, t, &md, 10000);
	rd_kafka_topic_destroy(t);
	if (err || md->topic_cnt != 1 || md->topics[0].err) {
		snprintf(errstr, errstr_size, "cannot read metadata of topic '%s': %s",
			 r->topic, rd_kafka_err2str(err ? err : md->topics[0].err));
		if (md)
			rd_kafka_metadata_destroy(md);
		return -1;
	}
	int n = md->topics[0].partition_cnt, active = 0;
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
	for (int i = 0; i < n; i++) {
		int32_t id = md->topics[0].partitions[i].id;
		int64_t lo, hi;
		err = rd_kafka_query_watermark_offsets(k->consumer, r->topic, id, &lo, &hi, 10000);
		if (err) {
			snprintf(errstr, errstr_size, "cannot read offsets of '%s'[%d]: %s",
				 r->topic, id, rd_kafka_err2str(err));
			goto out_fail;
		}
		int64_t start = lo, end = hi;
		if (r->from_offset >= 0)
			start = r->from_offset > lo ? r->from_offset : lo;
		rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_new(2);
		if (r->from_time_ms >= 0)
			rd_kafka_topic_partition_list_add(q, r->topic, id)->offset = r->from_time_ms;
		if (q->cnt) {
			err = rd_kafka_offsets_for_times(k->consumer, q, 10000);
			if (err || q->elems[0].err) {
				snprintf(errstr, errstr_size, "cannot look up --from-time in '%s'[%d]: %s",
					 r->topic, id, rd_kafka_err2str(err ? err : q->elems[0].err));
				rd_kafka_topic_partition_list_destroy(q);
				goto out_fail;
			}
			start = q->elems[0].offset < 0 ? hi : q->elems[0].offset;
		}
		rd_kafka_topic_partition_list_destroy(q);
		if (r->to_time_ms >= 0) {
			q = rd_kafka_topic_partition_list_new(1);
			rd_kafka_topic_partition_list_add(q, r->topic, id)->offset = r->to_time_ms;
			err = rd_kafka_offsets_for_times(k->consumer, q, 10000);
			if (err || q->elems[0].err) {
				snprintf(errstr, errstr_size, "cannot look up --to-time in '%s'[%d]: %s",
					 r->topic, id, rd_kafka_err2str(err ? err : q->elems[0].err));
				rd_kafka_topic_partition_list_destroy(q);
				goto out_fail;
			}
			if (q->elems[0].offset >= 0 && q->elems[0].offset < end)
				end = q->elems[0].offset;
			rd_kafka_topic_partition_list_destroy(q);
		}
		pthread_mutex_lock(&k->assign_lock);
		part_state_t *p = part_get(k, id, 1);
		if (p) {
			p->assigned = 1;
			p->generation = 1;
			p->end = end;
			p->done = start >= end;
		}
		pthread_mutex_unlock(&k->assign_lock);
		if (!p) {
			snprintf(errstr, errstr_size, "out of memory");
			goto out_fail;
		}
		winnow_offsets_assign(k->offsets, id);
		if (!p->done) {
			rd_kafka_topic_partition_list_add(l, r->topic, id)->offset = start;
			active++;
		}
		log_info("replay: '%s'[%d] offsets %" PRId64 "..%" PRId64, r->topic, id, start, end);
	}
	rd_kafka_metadata_destroy(md);
	md = NULL;
	if (l->cnt && (err = rd_kafka_assign(k->consumer, l))) {
		snprintf(errstr, errstr_size, "cannot assign '%s': %s", r->topic,
			 rd_kafka_err2str(err));
		goto out_fail;
	}
	attach_queues(k, l);
	rd_kafka_topic_partition_list_destroy(l);
	return active;
out_fail:
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_partition_list_destroy(l);
	return -1;
}

static int replay_consumed_all(kio_t *k)
{
	for (size_t i = 0; i < k->n_parts; i++)
		if (!k->parts[i].done)
			return 0;
	return 1;
}

/* ---- the loop ---------------------------------------------------------------------- */

static winnow_pipeline_params_t pipeline_params(const winnow_config_t *c)
{
	winnow_pipeline_params_t pp = winnow_pipeline_default_params();
	pp.workers = c->pipeline.workers;
	pp.threads_per_worker = c->pipeline.threads_per_worker;
	pp.max_documents = c->pipeline.max_documents;
	pp.batch_tokens = c->pipeline.batch_tokens;
	pp.batch_windows = c->pipeline.batch_windows;
	pp.max_input_bytes = (size_t)c->limits.max_input_bytes;
	pp.max_document_bytes = (size_t)c->limits.max_document_bytes;
	pp.zstd_window_log_max = c->limits.zstd_window_log_max;
	pp.doc.stride = c->windows.stride;
	pp.doc.aggregate = c->windows.aggregate_max ? WINNOW_AGGREGATE_MAX
						    : WINNOW_AGGREGATE_MEAN;
	pp.doc.truncate = c->windows.truncate;
	pp.doc.top_k = c->explain.top_k;
	return pp;
}

static void reload(kio_t *k)
{
	winnow_config_t fresh;
	char err[1024];
	winnow_notify_reloading();
	if (winnow_config_load(k->config_path, &fresh, err, sizeof err)) {
		log_error("reload: %s; keeping the running configuration", err);
	} else if (winnow_config_reload_check(k->cfg, &fresh, err, sizeof err)) {
		log_error("reload: %s; keeping the running configuration", err);
		winnow_config_free(&fresh);
	} else {
		winnow_config_apply_live(k->cfg, &fresh);
		winnow_log_set_level(k->cfg->log_level);
		winnow_config_free(&fresh);
		log_info("reload: applied log.level, shutdown_timeout and the pause/resume marks");
	}
	winnow_notify_ready();
}

/*
 * Stop intake, let the pipeline finish and the producer deliver within the
 * shutdown timeout, then commit what was delivered.
 */
static void drain(kio_t *k)
{
	uint64_t deadline = now_ms() + (uint64_t)(k->cfg->shutdown_timeout * 1000);
	k->stopping = 1;
	winnow_notify_stopping();
	set_paused(k, 1);
	for (size_t i = 0; i < k->n_held; i++)
		inflight_free(k->held[i]);
	k->n_held = 0;
	log_info("shutdown: draining %u documents in flight (timeout %.0f s)",
		 winnow_pipeline_in_flight(k->pipe), k->cfg->shutdown_timeout);
	while (winnow_offsets_open(k->offsets, -1) && now_ms() < deadline) {
		rd_kafka_poll(k->producer, 20);
		rd_kafka_message_t *m = rd_kafka_consumer_poll(k->consumer, 0);
		if (m)
			handle_message(k, m);
	}
	int timed_out = winnow_offsets_open(k->offsets, -1) != 0;
	winnow_pipeline_stop(k->pipe, !timed_out);
	uint64_t now = now_ms();
	rd_kafka_flush(k->producer, now < deadline ? (int)(deadline - now) : 0);
	rd_kafka_poll(k->producer, 0);
	if (timed_out)
		log_warn("shutdown: timed out with %zu documents unfinished; they will be classified again after a restart",
			 winnow_offsets_open(k->offsets, -1));
	if (!k->replay) {
		rd_kafka_resp_err_t err = rd_kafka_commit(k->consumer, NULL, 0);
		if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
			log_warn("shutdown: commit failed: %s", rd_kafka_err2str(err));
	}
}

static void update_gauges(kio_t *k)
{
	winnow_pipeline_stats_t st;
	winnow_pipeline_stats(k->pipe, &st);
	winnow_daemon_metrics_pipeline(k->metrics, &st, k->n_held,
				       winnow_offsets_open(k->offsets, -1));
	if (k->replay)
		return;
	rd_kafka_topic_partition_list_t *a = NULL;
	if (rd_kafka_assignment(k->consumer, &a) || !a)
		return;
	rd_kafka_position(k->consumer, a);
	for (int i = 0; i < a->cnt; i++) {
		int64_t lo, hi;
		if (rd_kafka_get_watermark_offsets(k->consumer, a->elems[i].topic,
						   a->elems[i].partition, &lo, &hi))
			continue;
		int64_t pos = a->elems[i].offset >= 0 ? a->elems[i].offset : lo;
		winnow_daemon_metrics_lag(k->metrics, a->elems[i].partition,
					  hi >= pos ? hi - pos : 0);
	}
	rd_kafka_topic_partition_list_destroy(a);
}

int winnow_kafka_run(winnow_config_t *cfg, const char *config_path,
		     const winnow_model_t *model, const winnow_replay_t *replay,
		     winnow_signals_t *signals)
{
	kio_t k = { .cfg = cfg, .config_path = config_path, .model = model,
		    .replay = replay, .signals = signals };
	char err[1024];
	const char **labels = NULL;
	int rc = 1;

	pthread_mutex_init(&k.assign_lock, NULL);
	atomic_init(&k.progress, 0);
	k.input_topic = replay ? replay->topic : cfg->kafka.input;
	k.output_topic = replay && replay->output_topic ? replay->output_topic
						      : cfg->kafka.output;
	k.offsets = winnow_offsets_new();
	/* A replay runs beside the live daemon, often with its config: it
	 * serves no endpoint of its own. */
	k.metrics = winnow_daemon_metrics_new(replay ? "" : cfg->http.listen,
					      err, sizeof err);
	if (!k.offsets || !k.metrics) {
		log_error("%s", k.metrics ? "out of memory" : err);
		goto out;
	}
	winnow_daemon_metrics_model_loaded(k.metrics, 1);
	const winnow_model_config_t *mc = winnow_model_config(model);
	labels = calloc(mc->num_labels, sizeof *labels);
	if (!labels) {
		log_error("out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < mc->num_labels; i++)
		labels[i] = winnow_model_label(model, i);
	winnow_daemon_metrics_labels(k.metrics, labels, mc->num_labels);
	winnow_pipeline_params_t pp = pipeline_params(cfg);
	k.pipe = winnow_pipeline_new(model, &pp, on_document, &k, err, sizeof err);
	if (!k.pipe) {
		log_error("%s", err);
		goto out;
	}
	if (make_clients(&k, err, sizeof err)) {
		log_error("%s", err);
		goto out;
	}
	if (replay) {
		int active = replay_assign(&k, err, sizeof err);
		if (active < 0) {
			log_error("replay: %s", err);
			goto out;
		}
	} else {
		rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
		rd_kafka_topic_partition_list_add(sub, cfg->kafka.input, RD_KAFKA_PARTITION_UA);
		rd_kafka_resp_err_t e = rd_kafka_subscribe(k.consumer, sub);
		rd_kafka_topic_partition_list_destroy(sub);
		if (e) {
			log_error("consumer: cannot subscribe to '%s': %s", cfg->kafka.input,
				  rd_kafka_err2str(e));
			goto out;
		}
	}
	log_info("winnowd: %s '%s' -> '%s' (dead letters: '%s'), group '%s'",
		 replay ? "replaying" : "consuming", k.input_topic, k.output_topic,
		 cfg->kafka.dead_letter, cfg->kafka.group);
	winnow_notify_ready();

	uint64_t watchdog_ms = winnow_notify_watchdog_usec() / 2000;
	uint64_t last_ping = now_ms(), last_progress_seen = 0, last_gauges = 0;
	uint64_t t_start = now_ms();
	while (!signals->stop) {
		if (signals->reload) {
			signals->reload = 0;
			reload(&k);
		}
		rd_kafka_poll(k.producer, 0);
		if (k.n_held)
			submit_held(&k, 5);
		/* Until its record is acknowledged a document holds its consumed
		 * message (and the fetch buffer behind it): count it. Taking
		 * stops at pause_at and starts again at resume_at. */
		size_t flight = winnow_offsets_open(k.offsets, -1) + k.n_held;
		if (!k.paused && flight >= cfg->pipeline.pause_at) {
			k.paused = 1;
			log_debug("consumer: holding intake (%zu documents in flight)", flight);
		} else if (k.paused && flight <= cfg->pipeline.resume_at) {
			k.paused = 0;
			log_debug("consumer: taking again (%zu documents in flight)", flight);
		}
		size_t got = 0;
		if (!k.paused && !k.n_held)
			got = consume_partitions(&k, cfg->pipeline.pause_at - flight);
		/* Rebalances and errors arrive here; messages do not (their
		 * partition queues are detached). */
		rd_kafka_message_t *m = rd_kafka_consumer_poll(k.consumer,
							       got || k.n_held ? 0 : 5);
		if (m)
			handle_message(&k, m);

		uint64_t now = now_ms();
		winnow_daemon_metrics_heartbeat(k.metrics);
		/* The watchdog is fed from here, and only while documents move
		 * or nothing is waiting: a stuck pipeline stops the pings. */
		uint64_t progress = atomic_load(&k.progress);
		int idle = winnow_offsets_open(k.offsets, -1) == 0;
		if (watchdog_ms && now - last_ping >= watchdog_ms &&
		    (idle || progress != last_progress_seen)) {
			winnow_notify_watchdog();
			last_ping = now;
			last_progress_seen = progress;
		}
		if (now - last_gauges >= 1000) {
			update_gauges(&k);
			winnow_daemon_metrics_producer_connected(k.metrics, 1);
			last_gauges = now;
		}
		if (replay && replay_consumed_all(&k) && !k.n_held &&
		    winnow_offsets_open(k.offsets, -1) == 0)
			break;
	}
	drain(&k);
	if (replay) {
		printf("replay: topic '%s' -> '%s': %" PRIu64 " classified, %" PRIu64 " dead-lettered in %.1f s; the group's committed offsets were not touched\n",
		       replay->topic, k.output_topic, k.produced_ok, k.dead_lettered,
		       (double)(now_ms() - t_start) / 1000.0);
		fflush(stdout);
	}
	log_info("winnowd: stopped: %" PRIu64 " records, %" PRIu64 " dead letters, %" PRIu64 " delivery retries",
		 k.produced_ok, k.dead_lettered, k.delivery_failures);
	rc = 0;
out:
	for (size_t i = 0; i < k.n_held; i++)
		inflight_free(k.held[i]);
	free(k.held);
	if (k.pipe)
		winnow_pipeline_stop(k.pipe, 0);
	for (size_t i = 0; i < k.n_parts; i++)
		detach_queue(&k.parts[i]);
	if (k.consumer) {
		if (!replay)
			rd_kafka_consumer_close(k.consumer);
		rd_kafka_destroy(k.consumer);
	}
	winnow_pipeline_destroy(k.pipe);
	if (k.producer) {
		rd_kafka_flush(k.producer, 1000);
		rd_kafka_destroy(k.producer);
	}
	winnow_daemon_metrics_destroy(k.metrics);
	free(labels);
	winnow_offsets_destroy(k.offsets);
	free(k.parts);
	pthread_mutex_destroy(&k.assign_lock);
	return rc;
}
