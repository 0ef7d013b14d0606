/*
 * broker_commands.c: the fault-injection commands winnow-broker reads on
 * stdin, one per line, each a thin wrapper over rdkafka_mock.h.
 *
 * Everything is validated here before it reaches the mock: in librdkafka
 * 2.0.x several mock calls create what they are told about (a topic named in
 * rd_kafka_mock_topic_set_error() or rd_kafka_mock_partition_set_leader()
 * springs into existence; rd_kafka_mock_coordinator_set() takes any broker
 * id), so a typo would silently change the cluster instead of failing.
 */
#include "broker.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_WORDS 8

/*
 * The Kafka APIs the 2.0.x mock implements (rdkafka_mock_handlers.c): errors
 * pushed for any other API would never be returned, so they are refused.
 */
static const struct {
	const char *name;
	int16_t key;
} mock_apis[] = {
	{ "Produce", 0 },            { "Fetch", 1 },
	{ "ListOffsets", 2 },        { "Metadata", 3 },
	{ "OffsetCommit", 8 },       { "OffsetFetch", 9 },
	{ "FindCoordinator", 10 },   { "JoinGroup", 11 },
	{ "Heartbeat", 12 },         { "LeaveGroup", 13 },
	{ "SyncGroup", 14 },         { "ApiVersions", 18 },
	{ "InitProducerId", 22 },    { "AddPartitionsToTxn", 24 },
	{ "AddOffsetsToTxn", 25 },   { "EndTxn", 26 },
	{ "TxnOffsetCommit", 28 },
};

static const char help_text[] =
	"broker down N|all                disconnect broker N's clients and refuse new ones\n"
	"broker up N|all                  accept connections again\n"
	"rtt N|all MS                     delay each response of broker N by MS ms (0: none)\n"
	"error API ERR [COUNT]            fail the next COUNT (default 1) API requests with ERR\n"
	"clear API                        drop the errors still queued for API\n"
	"topic-error TOPIC ERR            return ERR for TOPIC in Metadata (0 clears it)\n"
	"partition-leader TOPIC PART N|none\n"
	"                                 move a partition's leader to broker N (none: no leader)\n"
	"coordinator group|transaction ID N\n"
	"                                 make broker N the coordinator of group (or txn) ID\n"
	"help                             this text\n"
	"quit                             stop the broker (exit 0)\n"
	"API: Produce Fetch ListOffsets Metadata OffsetCommit OffsetFetch FindCoordinator\n"
	"     JoinGroup Heartbeat LeaveGroup SyncGroup ApiVersions InitProducerId\n"
	"     AddPartitionsToTxn AddOffsetsToTxn EndTxn TxnOffsetCommit, or the key number\n"
	"ERR: a Kafka error code by number or name: 7, REQUEST_TIMED_OUT,\n"
	"     NOT_LEADER_FOR_PARTITION, _TRANSPORT (the broker drops the connection)\n"
	"Brokers are numbered 1..N; every command answers \"ok\" or \"error: REASON\".\n";

static int fail(char *errstr, size_t errstr_size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *errstr, size_t errstr_size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errstr, errstr_size, fmt, ap);
	va_end(ap);
	return -1;
}

/* A whole decimal number in [min, max]; 0 on success. */
static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Broker id 1..broker_cnt, or -1 for "all" when all_ok. */
static int parse_broker(const struct broker *b, const char *s, int all_ok,
			int32_t *id, char *errstr, size_t errstr_size)
{
	long v;

	if (all_ok && !strcmp(s, "all")) {
		*id = -1;
		return 0;
	}
	if (parse_long(s, 1, b->broker_cnt, &v))
		return fail(errstr, errstr_size,
			    "no broker '%s': brokers are 1..%d%s", s,
			    b->broker_cnt, all_ok ? " or all" : "");
	*id = (int32_t)v;
	return 0;
}

static int parse_api(const char *s, int16_t *key,
		     char *errstr, size_t errstr_size)
{
	long v;
	size_t i;
	int by_number = !parse_long(s, 0, INT16_MAX, &v);

	for (i = 0; i < sizeof mock_apis / sizeof mock_apis[0]; i++) {
		if (by_number ? mock_apis[i].key == v
			      : !strcasecmp(mock_apis[i].name, s)) {
			*key = mock_apis[i].key;
			return 0;
		}
	}
	return fail(errstr, errstr_size,
		    "unknown API '%s': the mock implements only those listed "
		    "by 'help'", s);
}

/*
 * A Kafka or librdkafka error code, by number or by its name in
 * rd_kafka_get_err_descs(), with or without the RD_KAFKA_RESP_ERR_ prefix.
 */
static int parse_err(const char *s, rd_kafka_resp_err_t *err,
		     char *errstr, size_t errstr_size)
{
	static const char prefix[] = "RD_KAFKA_RESP_ERR_";
	const struct rd_kafka_err_desc *descs;
	size_t cnt, i;
	long v;
	int by_number = !parse_long(s, INT_MIN, INT_MAX, &v);

	if (!by_number && !strncasecmp(s, prefix, sizeof prefix - 1))
		s += sizeof prefix - 1;

	rd_kafka_get_err_descs(&descs, &cnt);
	for (i = 0; i < cnt; i++) {
		if (!descs[i].name)
			continue;   /* the table has holes */
		if (by_number ? (long)descs[i].code == v
			      : !strcasecmp(descs[i].name, s)) {
			*err = descs[i].code;
			return 0;
		}
	}
	return fail(errstr, errstr_size, "unknown error code '%s'", s);
}

static const struct broker_topic *find_topic(const struct broker *b,
					     const char *name,
					     char *errstr, size_t errstr_size)
{
	int i;

	for (i = 0; i < b->topic_cnt; i++)
		if (!strcmp(b->topics[i].name, name))
			return &b->topics[i];
	fail(errstr, errstr_size,
	     "unknown topic '%s': commands name only the topics created "
	     "at start", name);
	return NULL;
}

/* Turns a mock call's result into this file's convention. */
static int mock_result(rd_kafka_resp_err_t err, const char *what,
		       char *errstr, size_t errstr_size)
{
	if (!err)
		return 0;
	return fail(errstr, errstr_size, "%s failed: %s", what,
		    rd_kafka_err2str(err));
}

static int cmd_broker(struct broker *b, char **w, int n,
		      char *errstr, size_t errstr_size)
{
	int32_t id = 0;

	if (n != 3 || (strcmp(w[1], "down") && strcmp(w[1], "up")))
		return fail(errstr, errstr_size, "usage: broker down|up N|all");
	if (parse_broker(b, w[2], 1, &id, errstr, errstr_size))
		return -1;
	if (!strcmp(w[1], "down"))
		return mock_result(rd_kafka_mock_broker_set_down(b->mcluster, id),
				   "broker down", errstr, errstr_size);
	return mock_result(rd_kafka_mock_broker_set_up(b->mcluster, id),
			   "broker up", errstr, errstr_size);
}

static int cmd_rtt(struct broker *b, char **w, int n,
		   char *errstr, size_t errstr_size)
{
	int32_t id = 0;
	long ms;

	if (n != 3)
		return fail(errstr, errstr_size, "usage: rtt N|all MS");
	if (parse_broker(b, w[1], 1, &id, errstr, errstr_size))
		return -1;
	if (parse_long(w[2], 0, 3600 * 1000, &ms))
		return fail(errstr, errstr_size,
			    "bad rtt '%s': want milliseconds, 0..3600000", w[2]);
	return mock_result(rd_kafka_mock_broker_set_rtt(b->mcluster, id, (int)ms),
			   "rtt", errstr, errstr_size);
}

static int cmd_error(struct broker *b, char **w, int n,
		     char *errstr, size_t errstr_size)
{
	rd_kafka_resp_err_t err, *errs;
	int16_t key;
	long count = 1, i;

	if (n != 3 && n != 4)
		return fail(errstr, errstr_size, "usage: error API ERR [COUNT]");
	if (parse_api(w[1], &key, errstr, errstr_size) ||
	    parse_err(w[2], &err, errstr, errstr_size))
		return -1;
	if (n == 4 && parse_long(w[3], 1, 100000, &count))
		return fail(errstr, errstr_size,
			    "bad count '%s': want 1..100000", w[3]);

	errs = malloc(count * sizeof *errs);
	if (!errs)
		return fail(errstr, errstr_size, "out of memory");
	for (i = 0; i < count; i++)
		errs[i] = err;
	rd_kafka_mock_push_request_errors_array(b->mcluster, key, count, errs);
	free(errs);
	return 0;
}

static int cmd_clear(struct broker *b, char **w, int n,
		     char *errstr, size_t errstr_size)
{
	int16_t key;

	if (n != 2)
		return fail(errstr, errstr_size, "usage: clear API");
	if (parse_api(w[1], &key, errstr, errstr_size))
		return -1;
	rd_kafka_mock_clear_request_errors(b->mcluster, key);
	return 0;
}

static int cmd_topic_error(struct broker *b, char **w, int n,
			   char *errstr, size_t errstr_size)
{
	rd_kafka_resp_err_t err;

	if (n != 3)
		return fail(errstr, errstr_size, "usage: topic-error TOPIC ERR");
	if (!find_topic(b, w[1], errstr, errstr_size) ||
	    parse_err(w[2], &err, errstr, errstr_size))
		return -1;
	rd_kafka_mock_topic_set_error(b->mcluster, w[1], err);
	return 0;
}

static int cmd_partition_leader(struct broker *b, char **w, int n,
				char *errstr, size_t errstr_size)
{
	const struct broker_topic *t;
	int32_t id = -1;
	long part;

	if (n != 4)
		return fail(errstr, errstr_size,
			    "usage: partition-leader TOPIC PART N|none");
	if (!(t = find_topic(b, w[1], errstr, errstr_size)))
		return -1;
	if (parse_long(w[2], 0, t->partitions - 1, &part))
		return fail(errstr, errstr_size,
			    "no partition '%s' in '%s': it has 0..%d", w[2],
			    t->name, t->partitions - 1);
	if (strcmp(w[3], "none") &&
	    parse_broker(b, w[3], 0, &id, errstr, errstr_size))
		return -1;
	return mock_result(rd_kafka_mock_partition_set_leader(
				   b->mcluster, t->name, (int32_t)part, id),
			   "partition-leader", errstr, errstr_size);
}

static int cmd_coordinator(struct broker *b, char **w, int n,
			   char *errstr, size_t errstr_size)
{
	int32_t id = 0;

	if (n != 4 || (strcmp(w[1], "group") && strcmp(w[1], "transaction")))
		return fail(errstr, errstr_size,
			    "usage: coordinator group|transaction ID N");
	if (parse_broker(b, w[3], 0, &id, errstr, errstr_size))
		return -1;
	return mock_result(rd_kafka_mock_coordinator_set(b->mcluster, w[1],
							 w[2], id),
			   "coordinator", errstr, errstr_size);
}

static void print_help(FILE *out)
{
	const char *p = help_text, *nl;

	while ((nl = strchr(p, '\n'))) {
		fprintf(out, "# %.*s\n", (int)(nl - p), p);
		p = nl + 1;
	}
}

int broker_command_run(struct broker *b, char *line, FILE *out,
		       char *errstr, size_t errstr_size)
{
	char *w[MAX_WORDS + 1], *save = NULL, *tok;
	int n = 0;

	for (tok = strtok_r(line, " \t\r", &save); tok;
	     tok = strtok_r(NULL, " \t\r", &save)) {
		if (n == MAX_WORDS)
			return fail(errstr, errstr_size, "too many words");
		w[n++] = tok;
	}
	if (n == 0)
		return fail(errstr, errstr_size, "empty command");

	if (!strcmp(w[0], "broker"))
		return cmd_broker(b, w, n, errstr, errstr_size);
	if (!strcmp(w[0], "rtt"))
		return cmd_rtt(b, w, n, errstr, errstr_size);
	if (!strcmp(w[0], "error"))
		return cmd_error(b, w, n, errstr, errstr_size);
	if (!strcmp(w[0], "clear"))
		return cmd_clear(b, w, n, errstr, errstr_size);
	if (!strcmp(w[0], "topic-error"))
		return cmd_topic_error(b, w, n, errstr, errstr_size);
	if (!strcmp(w[0], "partition-leader"))
		return cmd_partition_leader(b, w, n, errstr, errstr_size);
	if (!strcmp(w[0], "coordinator"))
		return cmd_coordinator(b, w, n, errstr, errstr_size);
	if (!strcmp(w[0], "help") && n == 1) {
		print_help(out);
		return 0;
	}
	if (!strcmp(w[0], "quit") && n == 1) {
		b->quit = 1;
		return 0;
	}
	return fail(errstr, errstr_size,
		    "unknown command '%s' (try 'help')", w[0]);
}
