/*
 * broker.h: the parts of winnow-broker, the test broker (README.md beside
 * this file says what it is for and what it cannot do).
 *
 *   winnow_broker.c     options, the mock cluster's lifetime, the event loop
 *   broker_commands.c   the fault-injection commands read from stdin
 *   fixed_port.c        -p: the first mock broker's port (librdkafka 2.0.x
 *                       cannot choose one)
 */
#ifndef WINNOW_BROKER_H
#define WINNOW_BROKER_H

#include <stddef.h>
#include <stdio.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* A topic created at start; commands may name only these. */
struct broker_topic {
	char *name;             /* owned */
	int partitions;
};

struct broker {
	rd_kafka_t *rk;                    /* the handle the cluster lives in */
	rd_kafka_mock_cluster_t *mcluster; /* brokers 1..broker_cnt */
	int broker_cnt;
	struct broker_topic *topics;       /* owned, topic_cnt of them */
	int topic_cnt;
	int quit;                          /* set by the "quit" command */
};

/*
 * Writes one line "TIMESTAMP winnow-broker: MESSAGE" to stderr with a single
 * write(2), so lines from librdkafka's threads never interleave.
 */
void broker_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Runs one command line (without its newline; modified in place). Returns 0
 * on success, or -1 with the reason in errstr. "help" writes its text to out,
 * each line starting with "# ", before the caller's "ok". Blank lines and
 * lines starting with '#' are not commands: the caller skips them.
 */
int broker_command_run(struct broker *b, char *line, FILE *out,
		       char *errstr, size_t errstr_size);

/*
 * fixed_port.c: make the next bind() of an IPv4 socket to 127.0.0.1:0, in
 * this process, bind to 127.0.0.1:port instead. Arm just before
 * rd_kafka_mock_cluster_new(), which binds broker 1 first; disarm right
 * after. fixed_port_disarm() returns 1 when the port was taken by such a
 * bind, 0 when no bind came. A failing bind of the armed port ends the
 * process with exit code 2 (see fixed_port.c for why).
 */
void fixed_port_arm(int port);
int fixed_port_disarm(void);

#endif /* WINNOW_BROKER_H */
