/*
 * kafka_tool.c: winnow-kafka-tool, the Kafka client of the end-to-end tests
 * (tests/e2e/) and of scripts/bench_daemon.sh. An independent client, so
 * that the tests check winnowd with code that shares nothing with it but
 * librdkafka.
 *
 *   winnow-kafka-tool produce -b BROKERS -t TOPIC [FILE]
 *       Produces the records of FILE (stdin when none or "-") as fast as
 *       the broker takes them, acks=all, and prints one JSON line per
 *       delivered record: {"i": N, "partition": P, "offset": O} (N is the
 *       record's index in FILE). Exit 1 if any record was not delivered.
 *
 *   winnow-kafka-tool offsets -b BROKERS -t TOPIC [-g GROUP]
 *       One JSON line per partition: {"partition": P, "low": L, "high": H}
 *       and, with -g, "committed": C (-1001 when the group has none), read
 *       with rd_kafka_committed() and rd_kafka_query_watermark_offsets().
 *
 *   winnow-kafka-tool consume -b BROKERS -t TOPIC [-T TIMEOUT_MS]
 *       Reads every partition from its low to its high watermark (as they
 *       were when it started) without a group and prints one JSON line per
 *       record: {"partition", "offset", "timestamp", "key", "value",
 *       "headers": [[NAME, VALUE], ...]}, with key, value and header values
 *       in hex (null for a null key or value). Exit 1 on timeout.
 *
 * FILE format (little-endian), records back to back:
 *
 *   int32 partition (-1: librdkafka's partitioner on the key)
 *   int64 timestamp in ms since the epoch (0: now)
 *   int32 key length (-1: null key), key bytes
 *   int32 value length (-1: null value), value bytes
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS 30000 /* for each metadata, offset or flush call */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("winnow-kafka-tool: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static void usage(void)
{
	fputs("usage: winnow-kafka-tool produce -b BROKERS -t TOPIC [FILE]\n"
	      "       winnow-kafka-tool offsets -b BROKERS -t TOPIC [-g GROUP]\n"
	      "       winnow-kafka-tool consume -b BROKERS -t TOPIC [-T TIMEOUT_MS]\n",
	      stderr);
	exit(2);
}

static void set(rd_kafka_conf_t *c, const char *k, const char *v)
{
	char err[512];
	if (rd_kafka_conf_set(c, k, v, err, sizeof err) != RD_KAFKA_CONF_OK)
		die("property '%s': %s", k, err);
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *brokers,
			  const char *group, rd_kafka_conf_t *c)
{
	char err[512];
	if (!c)
		c = rd_kafka_conf_new();
	set(c, "bootstrap.servers", brokers);
	set(c, "log_level", "3");
	if (group)
		set(c, "group.id", group);
	if (type == RD_KAFKA_CONSUMER) {
		set(c, "enable.auto.commit", "false");
		set(c, "enable.partition.eof", "true");
		set(c, "fetch.message.max.bytes", "33554432");
		set(c, "receive.message.max.bytes", "100000000");
	}
	rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof err);
	if (!rk)
		die("cannot create client: %s", err);
	return rk;
}

/* Number of partitions of topic, from the broker's metadata. */
static int partition_count(rd_kafka_t *rk, const char *topic)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
	rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, t, &md, TIMEOUT_MS);
	rd_kafka_topic_destroy(t);
	if (err)
		die("cannot read metadata of '%s': %s", topic, rd_kafka_err2str(err));
	if (md->topic_cnt != 1 || md->topics[0].err)
		die("topic '%s': %s", topic,
		    rd_kafka_err2str(md->topic_cnt ? md->topics[0].err
				     : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART));
	int n = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	return n;
}

static void print_hex(const void *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *b = p;
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		putchar(digits[b[i] >> 4]);
		putchar(digits[b[i] & 15]);
	}
	putchar('"');
}

/* ---- produce ------------------------------------------------------------- */

typedef struct {
	long failed;
} produce_state_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	produce_state_t *st = opaque;
	long i = (long)(intptr_t)m->_private;
	(void)rk;
	if (m->err) {
		fprintf(stderr, "winnow-kafka-tool: record %ld not delivered: %s\n", i,
			rd_kafka_err2str(m->err));
		st->failed++;
		return;
	}
	printf("{\"i\": %ld, \"partition\": %" PRId32 ", \"offset\": %" PRId64 "}\n",
	       i, m->partition, m->offset);
}

static int read_exact(FILE *f, void *buf, size_t n, int eof_ok)
{
	size_t got = fread(buf, 1, n, f);
	if (got == n)
		return 0;
	if (got == 0 && eof_ok && feof(f))
		return 1;
	die("input ends inside a record");
}

static int32_t read_i32(FILE *f)
{
	unsigned char b[4];
	read_exact(f, b, 4, 0);
	return (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
			 (uint32_t)b[3] << 24);
}

static void *read_blob(FILE *f, int32_t *len)
{
	*len = read_i32(f);
	if (*len < 0)
		return NULL;
	void *p = malloc(*len ? (size_t)*len : 1);
	if (!p)
		die("out of memory");
	read_exact(f, p, (size_t)*len, 0);
	return p;
}

static int cmd_produce(const char *brokers, const char *topic, const char *path)
{
	FILE *f = path && strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f)
		die("cannot open '%s': %s", path, strerror(errno));
	produce_state_t st = { 0 };
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	set(c, "acks", "all");
	/* Without idempotence a retry after an injected Produce error can
	 * write a document twice, and the tests would blame winnowd. */
	set(c, "enable.idempotence", "true");
	set(c, "linger.ms", "5");
	set(c, "message.max.bytes", "16000000");
	set(c, "queue.buffering.max.messages", "1000000");
	rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
	rd_kafka_conf_set_opaque(c, &st);
	rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, brokers, NULL, c);
	long n = 0;
	for (;; n++) {
		unsigned char head[12];
		if (read_exact(f, head, 4, 1))
			break;
		read_exact(f, head + 4, 8, 0);
		int32_t part = (int32_t)((uint32_t)head[0] | (uint32_t)head[1] << 8 |
					 (uint32_t)head[2] << 16 | (uint32_t)head[3] << 24);
		int64_t ts = 0;
		for (int i = 7; i >= 0; i--)
			ts = ts << 8 | head[4 + i];
		int32_t klen, vlen;
		void *key = read_blob(f, &klen);
		void *value = read_blob(f, &vlen);
		rd_kafka_resp_err_t err;
		do {
			err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
				RD_KAFKA_V_PARTITION(part < 0 ? RD_KAFKA_PARTITION_UA : part),
				RD_KAFKA_V_KEY(key, key ? (size_t)klen : 0),
				RD_KAFKA_V_VALUE(value, value ? (size_t)vlen : 0),
				RD_KAFKA_V_TIMESTAMP(ts),
				RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
				RD_KAFKA_V_OPAQUE((void *)(intptr_t)n),
				RD_KAFKA_V_END);
			if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
				rd_kafka_poll(rk, 10);
		} while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
		if (err)
			die("cannot produce record %ld: %s", n, rd_kafka_err2str(err));
		free(key); /* the value is librdkafka's now (F_FREE); keys are copied */
		rd_kafka_poll(rk, 0);
	}
	if (f != stdin)
		fclose(f);
	rd_kafka_resp_err_t err = rd_kafka_flush(rk, 10 * TIMEOUT_MS);
	if (err)
		die("flush: %s (%d records still queued)", rd_kafka_err2str(err),
		    rd_kafka_outq_len(rk));
	rd_kafka_destroy(rk);
	fflush(stdout);
	if (st.failed)
		fprintf(stderr, "winnow-kafka-tool: %ld of %ld records not delivered\n",
			st.failed, n);
	return st.failed ? 1 : 0;
}

/* ---- offsets --------------------------------------------------------------- */

static int cmd_offsets(const char *brokers, const char *topic, const char *group)
{
	char tmp_group[64];
	if (!group) { /* a consumer needs a group id to be created; it never joins */
		snprintf(tmp_group, sizeof tmp_group, "winnow-kafka-tool.%ld", (long)getpid());
	}
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, group ? group : tmp_group, NULL);
	int n = partition_count(rk, topic);
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
	for (int p = 0; p < n; p++)
		rd_kafka_topic_partition_list_add(l, topic, p);
	if (group) {
		rd_kafka_resp_err_t err = rd_kafka_committed(rk, l, TIMEOUT_MS);
		if (err)
			die("cannot read committed offsets of group '%s': %s", group,
			    rd_kafka_err2str(err));
	}
	for (int p = 0; p < n; p++) {
		int64_t lo, hi;
		rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo,
									  &hi, TIMEOUT_MS);
		if (err)
			die("cannot read offsets of '%s'[%d]: %s", topic, p, rd_kafka_err2str(err));
		printf("{\"partition\": %d, \"low\": %" PRId64 ", \"high\": %" PRId64, p, lo, hi);
		if (group)
			printf(", \"committed\": %" PRId64 ", \"error\": \"%s\"",
			       l->elems[p].offset, rd_kafka_err2name(l->elems[p].err));
		puts("}");
	}
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_destroy(rk);
	return 0;
}

/* ---- consume --------------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmd_consume(const char *brokers, const char *topic, long timeout_ms)
{
	char group[64];
	snprintf(group, sizeof group, "winnow-kafka-tool.%ld", (long)getpid());
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, group, NULL);
	int n = partition_count(rk, topic);
	int64_t *end = calloc((size_t)n, sizeof *end);
	int left = 0;
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
	for (int p = 0; p < n; p++) {
		int64_t lo;
		rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo,
									  &end[p], TIMEOUT_MS);
		if (err)
			die("cannot read offsets of '%s'[%d]: %s", topic, p, rd_kafka_err2str(err));
		if (end[p] > lo) {
			rd_kafka_topic_partition_list_add(l, topic, p)->offset = lo;
			left++;
		}
	}
	rd_kafka_resp_err_t err = rd_kafka_assign(rk, l);
	if (err)
		die("cannot assign '%s': %s", topic, rd_kafka_err2str(err));
	rd_kafka_topic_partition_list_destroy(l);
	int64_t deadline = now_ms() + timeout_ms;
	while (left > 0) {
		if (now_ms() > deadline) {
			fprintf(stderr, "winnow-kafka-tool: timed out with %d partition(s) unread\n",
				left);
			return 1;
		}
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
		if (!m)
			continue;
		if (m->err) {
			if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
				fprintf(stderr, "winnow-kafka-tool: %s\n", rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			continue;
		}
		int p = m->partition;
		if (p >= 0 && p < n && end[p] >= 0 && m->offset < end[p]) {
			rd_kafka_timestamp_type_t tstype;
			int64_t ts = rd_kafka_message_timestamp(m, &tstype);
			printf("{\"partition\": %d, \"offset\": %" PRId64 ", \"timestamp\": %" PRId64
			       ", \"key\": ", p, m->offset, ts);
			if (m->key)
				print_hex(m->key, m->key_len);
			else
				fputs("null", stdout);
			fputs(", \"value\": ", stdout);
			if (m->payload)
				print_hex(m->payload, m->len);
			else
				fputs("null", stdout);
			fputs(", \"headers\": [", stdout);
			rd_kafka_headers_t *h = NULL;
			if (!rd_kafka_message_headers(m, &h)) {
				const char *name;
				const void *val;
				size_t len;
				for (size_t i = 0; !rd_kafka_header_get_all(h, i, &name, &val, &len); i++) {
					printf("%s[\"%s\", ", i ? ", " : "", name);
					if (val)
						print_hex(val, len);
					else
						fputs("null", stdout);
					putchar(']');
				}
			}
			puts("]}");
			if (m->offset + 1 >= end[p]) {
				end[p] = -1;
				left--;
			}
		}
		rd_kafka_message_destroy(m);
	}
	fflush(stdout);
	free(end);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *cmd = argv[1], *brokers = NULL, *topic = NULL, *group = NULL;
	long timeout_ms = 60000;
	int c;
	optind = 2;
	while ((c = getopt(argc, argv, "b:t:g:T:")) != -1) {
		switch (c) {
		case 'b': brokers = optarg; break;
		case 't': topic = optarg; break;
		case 'g': group = optarg; break;
		case 'T': timeout_ms = strtol(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (!brokers || !topic)
		usage();
	if (!strcmp(cmd, "produce") && argc - optind <= 1)
		return cmd_produce(brokers, topic, optind < argc ? argv[optind] : NULL);
	if (!strcmp(cmd, "offsets") && optind == argc)
		return cmd_offsets(brokers, topic, group);
	if (!strcmp(cmd, "consume") && optind == argc)
		return cmd_consume(brokers, topic, timeout_ms);
	usage();
}
