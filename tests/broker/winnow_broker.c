/*
 * winnow_broker.c: winnow-broker, a Kafka broker for tests and the demo.
 *
 *   winnow-broker [-b BROKERS] [-p PORT] [-f FILE] [-d DEBUG] TOPIC:PARTITIONS...
 *
 * No Kafka can be installed on winnow's machines, so tests run against
 * librdkafka's mock cluster (rdkafka_mock.h), which speaks the real Kafka
 * protocol over TCP on 127.0.0.1. This program keeps one alive as its own
 * process: it creates the topics, writes the bootstrap address to FILE
 * (atomically: a temporary file renamed into place) and prints it as the
 * first line on stdout, then answers fault-injection commands on stdin (see
 * broker_commands.c) until SIGTERM, SIGINT or "quit". EOF on stdin only
 * ends the commands, so the broker can run with stdin from /dev/null.
 * Logs go to stderr, one line per event.
 *
 * Limits, all of them the mock's in librdkafka 2.0.x (README.md has more):
 *  - nothing persists: a restarted broker is empty;
 *  - a partition keeps about 5 MB (and at most 100000 message sets); older
 *    data is dropped silently, so a slow consumer sees its offsets vanish;
 *  - no admin API (CreateTopics and the like): topics come from the command
 *    line, or are auto-created (4 partitions) when a client asks for one;
 *  - transactions are accepted but not enforced: aborted data stays visible;
 *  - a consumer-group rebalance waits session.timeout.ms - 1 s for members
 *    to rejoin (3 s for the first join): use 4000-6000 ms in tests;
 *  - "broker down" does not move partition leaders; use partition-leader;
 *  - no TLS, no SASL; 127.0.0.1 only.
 *
 * Exit codes: 0 stopped by a signal or "quit"; 1 the broker could not be
 * started or the address file written; 2 usage error or the port is in use.
 */
#include "broker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_BROKERS    32
#define MAX_PARTITIONS 1000
#define MAX_LINE       1024

void broker_log(const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	size_t len;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	len = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line + len, sizeof line - len, ".%03ldZ winnow-broker: ",
		     ts.tv_nsec / 1000000);
	len += (size_t)n;

	va_start(ap, fmt);
	n = vsnprintf(line + len, sizeof line - len - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	len += (size_t)n < sizeof line - len - 1 ? (size_t)n
						 : sizeof line - len - 2;
	line[len++] = '\n';
	if (write(STDERR_FILENO, line, len) < 0) {
		/* nowhere left to say so */
	}
}

/*
 * librdkafka's log lines (the mock's among them), from its own threads. The
 * handle that holds the cluster has no bootstrap servers on purpose, so its
 * warning about that would only mislead.
 */
static void rdkafka_log(const rd_kafka_t *rk, int level, const char *fac,
			const char *buf)
{
	if (!strcmp(fac, "CONFWARN") && strstr(buf, "`bootstrap.servers`"))
		return;
	broker_log("librdkafka %s: %s", fac, buf);
}

static void usage(FILE *f)
{
	fputs("usage: winnow-broker [-b BROKERS] [-p PORT] [-f FILE] [-d DEBUG]"
	      " TOPIC:PARTITIONS...\n"
	      "\n"
	      "A Kafka broker for tests: librdkafka's mock cluster on 127.0.0.1.\n"
	      "\n"
	      "  -b BROKERS  number of brokers (default 1); topics are replicated\n"
	      "              on min(3, BROKERS) of them\n"
	      "  -p PORT     port of broker 1 (default: any free port); exit 2 if\n"
	      "              it is in use\n"
	      "  -f FILE     write the bootstrap address (host:port,...) to FILE,\n"
	      "              atomically, once the cluster is up; removed on exit\n"
	      "  -d DEBUG    librdkafka debug contexts, e.g. mock or mock,protocol\n"
	      "\n"
	      "The bootstrap address is also the first line on stdout. Commands on\n"
	      "stdin, one per line, each answered \"ok\" or \"error: REASON\": send\n"
	      "'help' for the list. EOF on stdin ends the commands, not the broker;\n"
	      "SIGTERM or SIGINT stops it (exit 0).\n"
	      "\n"
	      "example: winnow-broker -f /tmp/addr docs:4 labels:4 docs.dlq:1 </dev/null\n",
	      f);
}

/* Kafka's topic name rules: 1..249 of [A-Za-z0-9._-], not "." or "..". */
static int topic_name_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 249 || (len == 1 && s[0] == '.') ||
	    (len == 2 && s[0] == '.' && s[1] == '.'))
		return 0;
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return 0;
	}
	return 1;
}

/* "name:partitions" into t; 0 on success, else a message on stderr. */
static int parse_topic(const char *arg, struct broker_topic *t)
{
	const char *colon = strchr(arg, ':');
	char *end;
	long parts;

	if (!colon) {
		fprintf(stderr, "winnow-broker: bad topic '%s': want "
			"NAME:PARTITIONS, e.g. docs:4\n", arg);
		return -1;
	}
	if (!topic_name_ok(arg, (size_t)(colon - arg))) {
		fprintf(stderr, "winnow-broker: bad topic name in '%s': want 1 to "
			"249 of A-Z a-z 0-9 . _ -\n", arg);
		return -1;
	}
	errno = 0;
	parts = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || parts < 1 ||
	    parts > MAX_PARTITIONS) {
		fprintf(stderr, "winnow-broker: bad partition count in '%s': "
			"want 1..%d\n", arg, MAX_PARTITIONS);
		return -1;
	}
	t->name = strndup(arg, (size_t)(colon - arg));
	t->partitions = (int)parts;
	return t->name ? 0 : -1;
}

static int parse_count(const char *opt, const char *s, long min, long max,
		       long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	if (errno || end == s || *end || *out < min || *out > max) {
		fprintf(stderr, "winnow-broker: bad %s '%s': want %ld..%ld\n",
			opt, s, min, max);
		return -1;
	}
	return 0;
}

/*
 * Binds a socket of our own to 127.0.0.1:port and lets it go. The options
 * match the mock's listener (SO_REUSEADDR), so a port that only has
 * connections in TIME_WAIT counts as free, as it will be for the mock.
 */
static int port_check_free(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd, on = 1, ret = 0;

	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		broker_log("cannot check port %d: socket: %s", port,
			   strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
		if (errno == EADDRINUSE)
			broker_log("port %d is in use", port);
		else
			broker_log("cannot listen on 127.0.0.1:%d: %s", port,
				   strerror(errno));
		ret = -1;
	}
	close(fd);
	return ret;
}

/* Writes "ADDRESS\n" to path through a temporary file and rename(2). */
static int address_file_write(const char *path, const char *address)
{
	size_t plen = strlen(path);
	char *tmp = malloc(plen + sizeof ".XXXXXX");
	size_t len = strlen(address);
	int fd, ret = -1;

	if (!tmp)
		return -1;
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".XXXXXX", sizeof ".XXXXXX");

	fd = mkstemp(tmp);
	if (fd < 0) {
		broker_log("cannot write address file '%s': %s", path,
			   strerror(errno));
		goto out_free;
	}
	if (fchmod(fd, 0644) < 0 || write(fd, address, len) != (ssize_t)len ||
	    write(fd, "\n", 1) != 1 || fsync(fd) < 0) {
		broker_log("cannot write address file '%s': %s", tmp,
			   strerror(errno));
		goto out_unlink;
	}
	if (close(fd) < 0) {
		fd = -1;
		broker_log("cannot write address file '%s': %s", tmp,
			   strerror(errno));
		goto out_unlink;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		broker_log("cannot rename '%s' to '%s': %s", tmp, path,
			   strerror(errno));
		goto out_unlink;
	}
	ret = 0;
	goto out_free;

out_unlink:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out_free:
	free(tmp);
	return ret;
}

/*
 * Opens /dev/null on any of fds 0-2 that is closed, so that neither our
 * signalfd nor a socket of librdkafka's becomes "stdin" or "stdout".
 */
static void std_fds_open(void)
{
	int fd;

	for (fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
			int null = open("/dev/null", O_RDWR);

			if (null >= 0 && null != fd) {
				dup2(null, fd);
				close(null);
			}
		}
	}
}

/* Runs one command line and answers it on stdout. */
static void command_answer(struct broker *b, char *line)
{
	char errstr[512], logged[MAX_LINE + 1];
	char *p = line;

	while (*p == ' ' || *p == '\t' || *p == '\r')
		p++;
	if (!*p || *p == '#')
		return;   /* blank lines and comments are not commands */

	snprintf(logged, sizeof logged, "%s", p);
	if (broker_command_run(b, p, stdout, errstr, sizeof errstr) == 0) {
		fputs("ok\n", stdout);
		broker_log("command '%s': ok", logged);
	} else {
		fprintf(stdout, "error: %s\n", errstr);
		broker_log("command '%s': error: %s", logged, errstr);
	}
	fflush(stdout);
}

/*
 * Serves stdin commands until a signal arrives on sigfd or "quit"; EOF or a
 * read error on stdin only stops the commands. Lines longer than MAX_LINE
 * are answered with an error and skipped.
 */
static void serve(struct broker *b, int sigfd)
{
	char buf[MAX_LINE + 1];
	size_t len = 0;
	int stdin_open = 1, skipping = 0;

	while (!b->quit) {
		struct pollfd fds[2] = {
			{ .fd = sigfd, .events = POLLIN },
			{ .fd = stdin_open ? STDIN_FILENO : -1, .events = POLLIN },
		};
		struct signalfd_siginfo si;
		ssize_t n;
		char *nl;

		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			broker_log("poll: %s; stopping", strerror(errno));
			return;
		}
		if (fds[0].revents & POLLIN) {
			if (read(sigfd, &si, sizeof si) == sizeof si)
				broker_log("stopping on %s",
					   strsignal((int)si.ssi_signo));
			return;
		}
		if (!(fds[1].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)))
			continue;

		n = read(STDIN_FILENO, buf + len, MAX_LINE - len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			if (len && !skipping) {   /* a last line without '\n' */
				buf[len] = '\0';
				command_answer(b, buf);
			}
			if (n < 0)
				broker_log("stdin: %s", strerror(errno));
			if (!b->quit)
				broker_log("stdin closed: no more commands; "
					   "stop the broker with SIGTERM or "
					   "SIGINT");
			stdin_open = 0;
			len = 0;
			continue;
		}
		len += (size_t)n;

		while (!b->quit && (nl = memchr(buf, '\n', len))) {
			size_t used = (size_t)(nl - buf) + 1;

			*nl = '\0';
			if (!skipping)
				command_answer(b, buf);
			skipping = 0;
			memmove(buf, buf + used, len - used);
			len -= used;
		}
		if (len == MAX_LINE) {
			if (!skipping) {
				fputs("error: line too long\n", stdout);
				fflush(stdout);
				broker_log("command line longer than %d bytes "
					   "skipped", MAX_LINE);
			}
			skipping = 1;
			len = 0;
		}
	}
}

int main(int argc, char **argv)
{
	struct broker b = { .broker_cnt = 1 };
	const char *addr_file = NULL, *debug = NULL, *bootstraps;
	char errstr[512];
	rd_kafka_conf_t *conf;
	sigset_t stop_signals;
	long port = 0, v;
	int opt, i, sigfd, replication, port_taken, wrote_file = 0, ret = 2;

	std_fds_open();
	while ((opt = getopt(argc, argv, "b:p:f:d:h")) != -1) {
		switch (opt) {
		case 'b':
			if (parse_count("-b", optarg, 1, MAX_BROKERS, &v))
				return 2;
			b.broker_cnt = (int)v;
			break;
		case 'p':
			if (parse_count("-p", optarg, 1, 65535, &port))
				return 2;
			break;
		case 'f':
			addr_file = optarg;
			break;
		case 'd':
			debug = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind == argc) {
		fprintf(stderr, "winnow-broker: no topics given\n");
		usage(stderr);
		return 2;
	}

	b.topic_cnt = argc - optind;
	b.topics = calloc((size_t)b.topic_cnt, sizeof *b.topics);
	if (!b.topics)
		return 1;
	/* ret is 2 until the arguments and the port have been checked */
	for (i = 0; i < b.topic_cnt; i++) {
		int j;

		if (parse_topic(argv[optind + i], &b.topics[i]))
			goto out_free_topics;
		for (j = 0; j < i; j++) {
			if (!strcmp(b.topics[j].name, b.topics[i].name)) {
				fprintf(stderr, "winnow-broker: topic '%s' given "
					"twice\n", b.topics[i].name);
				goto out_free_topics;
			}
		}
	}

	if (port && port_check_free((int)port))
		goto out_free_topics;   /* exit 2 */
	ret = 1;   /* from here on, a failure is the broker's, not the user's */

	/*
	 * Stop signals are read from a signalfd in serve(), so they must be
	 * blocked in every thread: block them before librdkafka starts any.
	 * Reset them to the default first: a shell starts background jobs
	 * with SIGINT ignored, and an ignored signal is discarded, never
	 * queued. SIGPIPE: a reader of stdout that went away must not kill
	 * the broker. SIGTTIN: reading a terminal from the background gives
	 * EIO (treated as EOF) rather than stopping the process.
	 */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTTIN, SIG_IGN);
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	sigprocmask(SIG_BLOCK, &stop_signals, NULL);
	sigfd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
	if (sigfd < 0) {
		broker_log("signalfd: %s", strerror(errno));
		goto out_free_topics;
	}

	/*
	 * The cluster needs an rd_kafka_t for its bookkeeping only; this
	 * producer is given no bootstrap servers and never connects.
	 */
	conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, rdkafka_log);
	if (rd_kafka_conf_set(conf, "client.id", "winnow-broker", errstr,
			      sizeof errstr) != RD_KAFKA_CONF_OK ||
	    (debug && rd_kafka_conf_set(conf, "debug", debug, errstr,
					sizeof errstr) != RD_KAFKA_CONF_OK)) {
		fprintf(stderr, "winnow-broker: bad -d '%s': %s\n",
			debug ? debug : "", errstr);
		rd_kafka_conf_destroy(conf);
		ret = 2;
		goto out_close_sigfd;
	}
	b.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
	if (!b.rk) {
		broker_log("cannot create librdkafka handle: %s", errstr);
		rd_kafka_conf_destroy(conf);
		goto out_close_sigfd;
	}

	if (port)
		fixed_port_arm((int)port);
	b.mcluster = rd_kafka_mock_cluster_new(b.rk, b.broker_cnt);
	port_taken = port ? fixed_port_disarm() : 1;
	if (!b.mcluster) {
		broker_log("cannot create mock cluster of %d broker(s)",
			   b.broker_cnt);
		goto out_destroy_rk;
	}
	if (!port_taken) {
		broker_log("mock broker 1 did not take port %ld", port);
		goto out_destroy_cluster;
	}

	replication = b.broker_cnt < 3 ? b.broker_cnt : 3;
	for (i = 0; i < b.topic_cnt; i++) {
		rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
			b.mcluster, b.topics[i].name, b.topics[i].partitions,
			replication);

		if (err) {
			broker_log("cannot create topic '%s': %s",
				   b.topics[i].name, rd_kafka_err2str(err));
			goto out_destroy_cluster;
		}
		broker_log("topic '%s': %d partition(s), replication %d",
			   b.topics[i].name, b.topics[i].partitions,
			   replication);
	}

	bootstraps = rd_kafka_mock_cluster_bootstraps(b.mcluster);
	if (addr_file) {
		if (address_file_write(addr_file, bootstraps))
			goto out_destroy_cluster;
		wrote_file = 1;
	}
	printf("%s\n", bootstraps);
	fflush(stdout);
	broker_log("ready: %d broker(s) at %s (pid %ld)", b.broker_cnt,
		   bootstraps, (long)getpid());

	serve(&b, sigfd);
	ret = 0;

out_destroy_cluster:
	if (wrote_file && unlink(addr_file) < 0)
		broker_log("cannot remove address file '%s': %s", addr_file,
			   strerror(errno));
	rd_kafka_mock_cluster_destroy(b.mcluster);
out_destroy_rk:
	rd_kafka_destroy(b.rk);
out_close_sigfd:
	close(sigfd);
out_free_topics:
	for (i = 0; i < b.topic_cnt; i++)
		free(b.topics[i].name);
	free(b.topics);
	if (ret == 0)
		broker_log("stopped");
	return ret;
}
