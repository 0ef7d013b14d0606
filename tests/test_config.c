/*
 * test_config.c: winnowd's configuration loader (daemon/config.c): the
 * shipped conf/winnowd.yaml, defaults, and every kind of error with the key
 * and line it names, the pass-through of librdkafka properties and the
 * SIGHUP reload rules. Each case writes its YAML to a temporary file.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* Only the required keys; line numbers of the cases below count on it:
 * model is line 1, kafka line 2, brokers..dead_letter lines 3..7, and text
 * appended starts at line 8 (indented by two, it continues kafka). */
#define MINIMAL \
	"model: m.wnn\n" \
	"kafka:\n" \
	"  brokers: b:9092\n" \
	"  group: g\n" \
	"  input: in\n" \
	"  output: out\n" \
	"  dead_letter: dlq\n"

typedef struct {
	char path[64];
	char err[512];
} loaded_t;

/* Writes yaml (len bytes) to a fresh temporary file, loads it into c and
 * removes the file; ld keeps its path (for expected messages) and errstr. */
static int load_bytes(const char *yaml, size_t len, winnow_config_t *c, loaded_t *ld)
{
	const char *tmp = getenv("TMPDIR");
	FILE *f;
	int fd, rc;

	snprintf(ld->path, sizeof(ld->path), "%s/winnow-config-XXXXXX.yaml",
		 tmp && *tmp && strlen(tmp) < 32 ? tmp : "/tmp");
	fd = mkstemps(ld->path, 5);
	ck_assert_msg(fd >= 0, "cannot create a temporary file '%s'", ld->path);
	f = fdopen(fd, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(yaml, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	strcpy(ld->err, "(untouched)");
	rc = winnow_config_load(ld->path, c, ld->err, sizeof(ld->err));
	unlink(ld->path);
	return rc;
}

static int load_text(const char *yaml, winnow_config_t *c, loaded_t *ld)
{
	return load_bytes(yaml, strlen(yaml), c, ld);
}

static void load_ok(const char *yaml, winnow_config_t *c)
{
	loaded_t ld;

	ck_assert_msg(load_text(yaml, c, &ld) == 0, "load failed: %s", ld.err);
}

/* The load must fail with exactly "cannot load config 'PATH': <reason>",
 * and leave nothing behind in the struct. */
static void expect_error(const char *name, const char *yaml, const char *reason)
{
	winnow_config_t c;
	loaded_t ld;
	char want[600];
	int rc;

	memset(&c, 0xab, sizeof(c));  /* the loader must not rely on zeroes */
	rc = load_text(yaml, &c, &ld);
	snprintf(want, sizeof(want), "cannot load config '%s': %s", ld.path, reason);
	ck_assert_msg(rc == -1, "%s: loaded, expected: %s", name, reason);
	ck_assert_msg(!strcmp(ld.err, want), "%s:\n  got      %s\n  expected %s",
		      name, ld.err, want);
	ck_assert_ptr_null(c.model);
	ck_assert_ptr_null(c.kafka.properties);
	ck_assert_uint_eq(c.kafka.n_properties, 0);
}

typedef struct {
	const char *name, *yaml, *reason;
} error_case_t;

/* Every optional key at its default. */
static void assert_defaults(const winnow_config_t *c)
{
	ck_assert_str_eq(c->kafka.client_id, "winnowd");
	ck_assert_int_eq(c->kafka.transactional, 0);
	ck_assert_str_eq(c->http.listen, "127.0.0.1:9465");
	ck_assert_uint_eq(c->pipeline.workers, 2);
	ck_assert_uint_eq(c->pipeline.threads_per_worker, 1);
	ck_assert_uint_eq(c->pipeline.max_documents, 64);
	ck_assert_uint_eq(c->pipeline.batch_tokens, 4096);
	ck_assert_uint_eq(c->pipeline.batch_windows, 16);
	ck_assert_uint_eq(c->pipeline.pause_at, 64);
	ck_assert_uint_eq(c->pipeline.resume_at, 32);
	ck_assert_uint_eq(c->limits.max_input_bytes, 16777216);
	ck_assert_uint_eq(c->limits.max_document_bytes, 16777216);
	ck_assert_uint_eq(c->limits.zstd_window_log_max, 27);
	ck_assert_uint_eq(c->windows.stride, 0);
	ck_assert_int_eq(c->windows.aggregate_max, 0);
	ck_assert_int_eq(c->windows.truncate, 0);
	ck_assert_uint_eq(c->explain.top_k, 10);
	ck_assert_double_eq(c->shutdown_timeout, 30.0);
	ck_assert_int_eq(c->log_level, WINNOW_LOG_INFO);
}

/* ---- what loads ----------------------------------------------------------- */

/* conf/winnowd.yaml: under $WINNOW_SOURCE_DIR (set by ctest), else found
 * from this file's own path (CMake compiles it by its absolute path). */
static void shipped_config_path(char *path, size_t size)
{
	const char *src = getenv("WINNOW_SOURCE_DIR");
	const char *tail = strstr(__FILE__, "/tests/test_config.c");

	if (src && *src)
		snprintf(path, size, "%s/conf/winnowd.yaml", src);
	else if (tail)
		snprintf(path, size, "%.*s/conf/winnowd.yaml", (int)(tail - __FILE__), __FILE__);
	else
		ck_abort_msg("WINNOW_SOURCE_DIR is not set (run through ctest)");
}

START_TEST(shipped_config_loads_with_the_documented_defaults)
{
	char path[1024], err[512] = "";
	winnow_config_t c;

	shipped_config_path(path, sizeof(path));
	ck_assert_msg(winnow_config_load(path, &c, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(c.model, "model/weights/spam.wnn");
	ck_assert_str_eq(c.kafka.brokers, "127.0.0.1:9092");
	ck_assert_str_eq(c.kafka.group, "winnow");
	ck_assert_str_eq(c.kafka.input, "docs");
	ck_assert_str_eq(c.kafka.output, "labels");
	ck_assert_str_eq(c.kafka.dead_letter, "docs.dlq");
	ck_assert_uint_eq(c.kafka.n_properties, 1);
	ck_assert_str_eq(c.kafka.properties[0].name, "session.timeout.ms");
	ck_assert_str_eq(c.kafka.properties[0].value, "6000");
	assert_defaults(&c);
	winnow_config_free(&c);
	ck_assert_ptr_null(c.model);
	winnow_config_free(&c);  /* freeing twice is harmless */
}
END_TEST

START_TEST(required_keys_alone_take_every_default)
{
	winnow_config_t c;

	load_ok(MINIMAL, &c);
	ck_assert_str_eq(c.model, "m.wnn");
	ck_assert_str_eq(c.kafka.brokers, "b:9092");
	ck_assert_str_eq(c.kafka.group, "g");
	ck_assert_str_eq(c.kafka.input, "in");
	ck_assert_str_eq(c.kafka.output, "out");
	ck_assert_str_eq(c.kafka.dead_letter, "dlq");
	ck_assert_uint_eq(c.kafka.n_properties, 0);
	assert_defaults(&c);
	winnow_config_free(&c);
}
END_TEST

START_TEST(defaults_leave_required_keys_null)
{
	winnow_config_t c;

	ck_assert_int_eq(winnow_config_defaults(&c), 0);
	ck_assert_ptr_null(c.model);
	ck_assert_ptr_null(c.kafka.brokers);
	ck_assert_ptr_null(c.kafka.dead_letter);
	assert_defaults(&c);
	winnow_config_free(&c);
	winnow_config_free(NULL);
}
END_TEST

START_TEST(every_value_syntax_is_read)
{
	winnow_config_t c;

	load_ok(MINIMAL
		"  client_id: \"my-client\"\n"
		"  transactional: yes\n"
		"http:\n"
		"  listen: \"\"\n"
		"pipeline:\n"
		"  workers: 64\n"
		"  threads_per_worker: 2\n"
		"  max_documents: 65536\n"
		"  batch_tokens: 16\n"
		"  batch_windows: \"4096\"\n"
		"  pause_at: 1000\n"
		"  resume_at: 0\n"
		"limits:\n"
		"  max_input_bytes: 512 KiB\n"
		"  max_document_bytes: 2GiB\n"
		"  zstd_window_log_max: 31\n"
		"windows: {stride: 128, aggregate: max, truncate: true}\n"
		"explain:\n"
		"  top_k: 0\n"
		"shutdown_timeout: 2.5\n"
		"log:\n"
		"  level: debug\n", &c);
	ck_assert_str_eq(c.kafka.client_id, "my-client");
	ck_assert_int_eq(c.kafka.transactional, 1);
	ck_assert_str_eq(c.http.listen, "");
	ck_assert_uint_eq(c.pipeline.workers, 64);
	ck_assert_uint_eq(c.pipeline.threads_per_worker, 2);
	ck_assert_uint_eq(c.pipeline.max_documents, 65536);
	ck_assert_uint_eq(c.pipeline.batch_tokens, 16);
	ck_assert_uint_eq(c.pipeline.batch_windows, 4096);
	ck_assert_uint_eq(c.pipeline.pause_at, 1000);
	ck_assert_uint_eq(c.pipeline.resume_at, 0);
	ck_assert_uint_eq(c.limits.max_input_bytes, 512 * 1024);
	ck_assert_uint_eq(c.limits.max_document_bytes, 2147483648ull);
	ck_assert_uint_eq(c.limits.zstd_window_log_max, 31);
	ck_assert_uint_eq(c.windows.stride, 128);
	ck_assert_int_eq(c.windows.aggregate_max, 1);
	ck_assert_int_eq(c.windows.truncate, 1);
	ck_assert_uint_eq(c.explain.top_k, 0);
	ck_assert_double_eq(c.shutdown_timeout, 2.5);
	ck_assert_int_eq(c.log_level, WINNOW_LOG_DEBUG);
	winnow_config_free(&c);

	load_ok(MINIMAL "http:\n  listen: '[::1]:0'\nshutdown_timeout: 0\n"
		"limits:\n  max_input_bytes: 1\n", &c);
	ck_assert_str_eq(c.http.listen, "[::1]:0");
	ck_assert_double_eq(c.shutdown_timeout, 0.0);
	ck_assert_uint_eq(c.limits.max_input_bytes, 1);
	winnow_config_free(&c);
}
END_TEST

START_TEST(empty_sections_take_their_defaults)
{
	winnow_config_t c;

	load_ok(MINIMAL "  properties:\nexplain:\nwindows: ~\nlog: {}\n", &c);
	ck_assert_uint_eq(c.kafka.n_properties, 0);
	assert_defaults(&c);
	winnow_config_free(&c);
}
END_TEST

START_TEST(pause_and_resume_follow_max_documents_when_not_given)
{
	winnow_config_t c;

	load_ok(MINIMAL "pipeline:\n  max_documents: 10\n", &c);
	ck_assert_uint_eq(c.pipeline.pause_at, 10);
	ck_assert_uint_eq(c.pipeline.resume_at, 5);
	winnow_config_free(&c);

	load_ok(MINIMAL "pipeline:\n  max_documents: 1\n", &c);
	ck_assert_uint_eq(c.pipeline.pause_at, 1);
	ck_assert_uint_eq(c.pipeline.resume_at, 0);
	winnow_config_free(&c);

	load_ok(MINIMAL "pipeline:\n  pause_at: 20\n", &c);
	ck_assert_uint_eq(c.pipeline.pause_at, 20);
	ck_assert_uint_eq(c.pipeline.resume_at, 10);
	winnow_config_free(&c);
}
END_TEST

START_TEST(properties_pass_through_in_order_as_text)
{
	winnow_config_t c;
	static const char *const want[][2] = {
		{ "session.timeout.ms", "6000" },
		{ "enable.partition.eof", "true" },
		{ "linger.ms", "5" },
		{ "statistics.interval.ms", "0x10" },
		{ "compression.codec", "zstd" },
		{ "ssl.key.password", "it's: #not a comment" },
		{ "fetch.wait.max.ms", "1.5e2" },
		{ "api.version.request", "no" },
	};

	load_ok(MINIMAL
		"  properties:\n"
		"    session.timeout.ms: 6000\n"
		"    enable.partition.eof: true\n"
		"    linger.ms: \"5\"\n"
		"    statistics.interval.ms: 0x10\n"
		"    compression.codec: zstd   # a comment\n"
		"    ssl.key.password: 'it''s: #not a comment'\n"
		"    fetch.wait.max.ms: 1.5e2\n"
		"    api.version.request: no\n", &c);
	ck_assert_uint_eq(c.kafka.n_properties, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < c.kafka.n_properties; i++) {
		ck_assert_str_eq(c.kafka.properties[i].name, want[i][0]);
		ck_assert_str_eq(c.kafka.properties[i].value, want[i][1]);
	}
	winnow_config_free(&c);
}
END_TEST

/* ---- what does not load, and what it says --------------------------------- */

static const char *const required[] = {
	"model", "kafka.brokers", "kafka.group", "kafka.input", "kafka.output",
	"kafka.dead_letter",
};

START_TEST(each_missing_required_key_is_named)
{
	/* MINIMAL without line _i (the i-th required key; kafka is line 2). */
	static const char *const lines[] = {
		"model: m.wnn\n", "  brokers: b:9092\n", "  group: g\n",
		"  input: in\n", "  output: out\n", "  dead_letter: dlq\n",
	};
	char yaml[512] = "", reason[128];

	for (size_t i = 0; i < 6; i++) {
		if (i == 1)
			strcat(yaml, "kafka:\n");
		if (i != (size_t)_i)
			strcat(yaml, lines[i]);
	}
	snprintf(reason, sizeof(reason), "missing required key '%s'", required[_i]);
	expect_error(required[_i], yaml, reason);
}
END_TEST

static const error_case_t unknown_keys[] = {
	{ "top level", MINIMAL "modle: x\n", "line 8: unknown key 'modle'" },
	{ "in kafka", MINIMAL "  gruop: x\n", "line 8: unknown key 'kafka.gruop'" },
	{ "brief's example", "model: m.wnn\nkafka:\n  brokers: b\n  group: g\n  input: in\n"
	  "  output: out\n  gruop: x\n  dead_letter: dlq\n",
	  "line 7: unknown key 'kafka.gruop'" },
	{ "in pipeline", MINIMAL "pipeline:\n  workers: 2\n  wrokers: 3\n",
	  "line 10: unknown key 'pipeline.wrokers'" },
	{ "in http", MINIMAL "http:\n  listen: \"\"\n  port: 1\n",
	  "line 10: unknown key 'http.port'" },
	{ "in limits", MINIMAL "limits:\n  zstd: 3\n", "line 9: unknown key 'limits.zstd'" },
	{ "in windows (flow)", MINIMAL "windows: {stride: 1, overlap: 2}\n",
	  "line 8: unknown key 'windows.overlap'" },
	{ "in explain", MINIMAL "explain:\n  top: 3\n", "line 9: unknown key 'explain.top'" },
	{ "in log", MINIMAL "log:\n  lvl: debug\n", "line 9: unknown key 'log.lvl'" },
	{ "under a scalar key", MINIMAL "shutdown_timeout:\n  seconds: 3\n",
	  "line 8: 'shutdown_timeout' must be a number of seconds in 0..3600, not a mapping" },
	{ "a dotted key", MINIMAL "pipeline.workers: 4\n",
	  "line 8: 'pipeline.workers' must be written as nested keys, not as one dotted key" },
	{ "a dotted unknown key", MINIMAL "pipe.line: 4\n", "line 8: unknown key 'pipe.line'" },
	{ "a control character", MINIMAL "\"mo\\tdel\": 4\n", "line 8: unknown key 'mo?del'" },
};

START_TEST(unknown_keys_are_named_with_their_line)
{
	expect_error(unknown_keys[_i].name, unknown_keys[_i].yaml, unknown_keys[_i].reason);
}
END_TEST

static const error_case_t bad_values[] = {
	{ "a word for an integer", MINIMAL "pipeline:\n  workers: many\n",
	  "line 9: 'pipeline.workers' must be an integer in 1..64, not 'many'" },
	{ "above the range", MINIMAL "pipeline:\n  workers: 65\n",
	  "line 9: 'pipeline.workers' must be an integer in 1..64, not '65'" },
	{ "below the range", MINIMAL "pipeline:\n  workers: 0\n",
	  "line 9: 'pipeline.workers' must be an integer in 1..64, not '0'" },
	{ "negative", MINIMAL "pipeline:\n  batch_tokens: -1\n",
	  "line 9: 'pipeline.batch_tokens' must be an integer in 16..1048576, not '-1'" },
	{ "a fraction", MINIMAL "pipeline:\n  batch_windows: 2.5\n",
	  "line 9: 'pipeline.batch_windows' must be an integer in 1..4096, not '2.5'" },
	{ "octal-looking", MINIMAL "pipeline:\n  workers: 010\n",
	  "line 9: 'pipeline.workers' must be an integer in 1..64, not '010'" },
	{ "overflowing", MINIMAL "pipeline:\n  max_documents: 99999999999999999999999\n",
	  "line 9: 'pipeline.max_documents' must be an integer in 1..65536, not '99999999999999999999999'" },
	{ "a list for an integer", MINIMAL "pipeline:\n  workers: [1, 2]\n",
	  "line 9: 'pipeline.workers' must be an integer in 1..64, not a list" },
	{ "no value", MINIMAL "pipeline:\n  workers:\n",
	  "line 9: 'pipeline.workers' must be an integer in 1..64, not empty" },
	{ "pause_at above max_documents", MINIMAL "pipeline:\n  max_documents: 16\n  pause_at: 20\n",
	  "line 10: 'pipeline.pause_at' (20) must be at most 'pipeline.max_documents' (16)" },
	{ "resume_at equal to pause_at", MINIMAL "pipeline:\n  pause_at: 40\n  resume_at: 40\n",
	  "line 10: 'pipeline.resume_at' (40) must be less than 'pipeline.pause_at' (40)" },
	{ "resume_at above the default pause_at", MINIMAL "pipeline:\n  resume_at: 100\n",
	  "line 9: 'pipeline.resume_at' (100) must be less than 'pipeline.pause_at' (64)" },
	{ "aggregate: median", MINIMAL "windows:\n  aggregate: median\n",
	  "line 9: 'windows.aggregate' must be mean or max, not 'median'" },
	{ "log.level: verbose", MINIMAL "log:\n  level: verbose\n",
	  "line 9: 'log.level' must be one of error, warn, info or debug, not 'verbose'" },
	{ "a boolean", MINIMAL "windows:\n  truncate: maybe\n",
	  "line 9: 'windows.truncate' must be true or false, not 'maybe'" },
	{ "transactional", MINIMAL "  transactional: 1\n",
	  "line 8: 'kafka.transactional' must be true or false, not '1'" },
	{ "a list where a map belongs", MINIMAL "http: [a, b]\n",
	  "line 8: 'http' must be a mapping of keys, not a list" },
	{ "a block list where a map belongs", MINIMAL "explain:\n  - top_k: 3\n",
	  "line 8: 'explain' must be a mapping of keys, not a list" },
	{ "a scalar where a map belongs", MINIMAL "windows: mean\n",
	  "line 8: 'windows' must be a mapping of keys, not 'mean'" },
	{ "a map where a scalar belongs", MINIMAL "explain:\n  top_k: {a: 1}\n",
	  "line 9: 'explain.top_k' must be an integer in 0..1000, not a mapping" },
	{ "top_k", MINIMAL "explain:\n  top_k: 1001\n",
	  "line 9: 'explain.top_k' must be an integer in 0..1000, not '1001'" },
	{ "stride", MINIMAL "windows:\n  stride: 65537\n",
	  "line 9: 'windows.stride' must be an integer in 0..65536, not '65537'" },
	{ "a size too large", MINIMAL "limits:\n  max_input_bytes: 3GiB\n",
	  "line 9: 'limits.max_input_bytes' must be a size in 1..2147483648 bytes "
	  "(or with KiB, MiB, GiB), not '3GiB'" },
	{ "a decimal size suffix", MINIMAL "limits:\n  max_input_bytes: 16 MB\n",
	  "line 9: 'limits.max_input_bytes' must be a size in 1..2147483648 bytes "
	  "(or with KiB, MiB, GiB), not '16 MB'" },
	{ "a zero size", MINIMAL "limits:\n  max_document_bytes: 0MiB\n",
	  "line 9: 'limits.max_document_bytes' must be a size in 1..2147483648 bytes "
	  "(or with KiB, MiB, GiB), not '0MiB'" },
	{ "a huge size", MINIMAL "limits:\n  max_document_bytes: 18446744073709551615GiB\n",
	  "line 9: 'limits.max_document_bytes' must be a size in 1..2147483648 bytes "
	  "(or with KiB, MiB, GiB), not '18446744073709551615GiB'" },
	{ "zstd window", MINIMAL "limits:\n  zstd_window_log_max: 9\n",
	  "line 9: 'limits.zstd_window_log_max' must be an integer in 10..31, not '9'" },
	{ "seconds as a word", MINIMAL "shutdown_timeout: soon\n",
	  "line 8: 'shutdown_timeout' must be a number of seconds in 0..3600, not 'soon'" },
	{ "seconds too many", MINIMAL "shutdown_timeout: 3600.5\n",
	  "line 8: 'shutdown_timeout' must be a number of seconds in 0..3600, not '3600.5'" },
	{ "seconds negative", MINIMAL "shutdown_timeout: -1\n",
	  "line 8: 'shutdown_timeout' must be a number of seconds in 0..3600, not '-1'" },
	{ "seconds not a number", MINIMAL "shutdown_timeout: .nan\n",
	  "line 8: 'shutdown_timeout' must be a number of seconds in 0..3600, not '.nan'" },
	{ "listen without a port", MINIMAL "http:\n  listen: localhost\n",
	  "line 9: 'http.listen' must be host:port, or \"\" to disable, not 'localhost'" },
	{ "listen with a bad port", MINIMAL "http:\n  listen: 127.0.0.1:70000\n",
	  "line 9: 'http.listen' must be host:port, or \"\" to disable, not '127.0.0.1:70000'" },
	{ "listen with no value", MINIMAL "http:\n  listen:\n",
	  "line 9: 'http.listen' must be host:port, or \"\" to disable, not empty" },
	{ "an empty model", "model: \"\"\nkafka:\n  brokers: b\n",
	  "line 1: 'model' must be a non-empty string, not ''" },
	{ "a null model", "model: ~\nkafka:\n  brokers: b\n",
	  "line 1: 'model' must be a non-empty string, not empty" },
	{ "a bad topic", "model: m\nkafka:\n  brokers: b\n  group: g\n  input: my topic\n",
	  "line 5: 'kafka.input' must be a topic name (1 to 249 of a-z A-Z 0-9 . _ -), not 'my topic'" },
	{ "output is input", "model: m\nkafka:\n  brokers: b\n  group: g\n  input: in\n"
	  "  output: in\n  dead_letter: dlq\n",
	  "line 6: 'kafka.output' must differ from 'kafka.input' (both are 'in')" },
	{ "dead_letter is output", "model: m\nkafka:\n  brokers: b\n  group: g\n  input: in\n"
	  "  output: out\n  dead_letter: out\n",
	  "line 7: 'kafka.dead_letter' must differ from 'kafka.output' (both are 'out')" },
	{ "properties as a list", MINIMAL "  properties: [a]\n",
	  "line 8: 'kafka.properties' must be a mapping of librdkafka properties to values, not a list" },
	{ "a property as a map", MINIMAL "  properties:\n    linger.ms: {a: 1}\n",
	  "line 9: 'kafka.properties.linger.ms' must be a string, not a mapping" },
	{ "a property without value", MINIMAL "  properties:\n    linger.ms:\n",
	  "line 9: 'kafka.properties.linger.ms' must be a string, not empty" },
	{ "a property name", MINIMAL "  properties:\n    linger ms: 1\n",
	  "line 9: 'kafka.properties.linger ms' is not a librdkafka property name" },
	{ "a property with its own key", MINIMAL "  properties:\n    group.id: other\n",
	  "line 9: 'kafka.properties.group.id' is set by 'kafka.group': remove it from 'kafka.properties'" },
	{ "a value with a NUL", MINIMAL "  client_id: \"a\\0b\"\n",
	  "line 8: 'kafka.client_id' contains a NUL byte" },
	{ "a long value is cut", MINIMAL "log:\n  level: "
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
	  "line 9: 'log.level' must be one of error, warn, info or debug, not "
	  "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'" },
};

START_TEST(bad_values_are_named_with_their_line)
{
	expect_error(bad_values[_i].name, bad_values[_i].yaml, bad_values[_i].reason);
}
END_TEST

static const error_case_t duplicates[] = {
	{ "top level", MINIMAL "model: again\n", "line 8: duplicate key 'model' (first at line 1)" },
	{ "in a section", MINIMAL "  group: again\n",
	  "line 8: duplicate key 'kafka.group' (first at line 4)" },
	{ "a section", MINIMAL "kafka:\n  client_id: x\n",
	  "line 8: duplicate key 'kafka' (first at line 2)" },
	{ "in flow style", MINIMAL "log: {level: info, level: debug}\n",
	  "line 8: duplicate key 'log.level' (first at line 8)" },
	{ "a property", MINIMAL "  properties:\n    linger.ms: 1\n    linger.ms: 2\n",
	  "line 10: duplicate key 'kafka.properties.linger.ms' (first at line 9)" },
	{ "a quoted spelling", MINIMAL "\"model\": again\n",
	  "line 8: duplicate key 'model' (first at line 1)" },
};

START_TEST(duplicate_keys_are_refused)
{
	expect_error(duplicates[_i].name, duplicates[_i].yaml, duplicates[_i].reason);
}
END_TEST

static const error_case_t files[] = {
	{ "empty", "", "file is empty (it needs at least the required keys)" },
	{ "comments only", "# nothing here\n\n", "file is empty (it needs at least the required keys)" },
	{ "not YAML", "{: ]", "line 1: did not find expected node content (while parsing a flow node)" },
	{ "bad indentation", "model: m\n kafka: x\n",
	  "line 2: mapping values are not allowed in this context" },
	{ "a tab", MINIMAL "pipeline:\n\tworkers: 2\n",
	  "line 9: found character that cannot start any token (while scanning for the next token)" },
	{ "an unclosed list", MINIMAL "pipeline: {workers: [1\nlog: x\n",
	  "line 9: did not find expected ',' or ']' (while parsing a flow sequence at line 8)" },
	{ "an undefined alias", MINIMAL "  client_id: *nothing\n", "line 8: found undefined alias" },
	{ "a list at the top", "- model\n- kafka\n",
	  "line 1: the top level must be a mapping of keys, not a list" },
	{ "a scalar at the top", "just some text\n",
	  "line 1: the top level must be a mapping of keys, not 'just some text'" },
	{ "a list as a key", MINIMAL "? [a, b]\n: c\n", "line 8: a key must be a string, not a list" },
	{ "a second document", MINIMAL "---\nmodel: other\n",
	  "line 9: a second YAML document: the file must hold one" },
	{ "a null required section", "model: m\nkafka:\n", "missing required key 'kafka.brokers'" },
};

START_TEST(broken_files_give_clear_errors)
{
	expect_error(files[_i].name, files[_i].yaml, files[_i].reason);
}
END_TEST

START_TEST(invalid_utf8_names_the_byte)
{
	winnow_config_t c;
	loaded_t ld;
	char want[600];
	static const char yaml[] = "model: \xff\xfe\n";

	ck_assert_int_eq(load_bytes(yaml, sizeof(yaml) - 1, &c, &ld), -1);
	snprintf(want, sizeof(want),
		 "cannot load config '%s': byte 7: invalid leading UTF-8 octet", ld.path);
	ck_assert_str_eq(ld.err, want);
}
END_TEST

START_TEST(missing_file_and_directory_are_named)
{
	winnow_config_t c;
	char err[512];

	ck_assert_int_eq(winnow_config_load("/nonexistent/winnowd.yaml", &c, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "cannot load config '/nonexistent/winnowd.yaml': "
			 "No such file or directory");
	ck_assert_ptr_null(c.model);
	ck_assert_int_eq(winnow_config_load("/", &c, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "cannot load config '/': is a directory");
}
END_TEST

START_TEST(small_error_buffers_are_cut_not_overrun)
{
	winnow_config_t c;
	char err[17];

	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(winnow_config_load("/nonexistent", &c, err, 16), -1);
	ck_assert_str_eq(err, "cannot load con");
	ck_assert_int_eq(err[16], 'x');
	ck_assert_int_eq(winnow_config_load("/nonexistent", &c, NULL, 0), -1);
}
END_TEST

/* ---- SIGHUP ----------------------------------------------------------- */

START_TEST(reload_takes_live_keys)
{
	winnow_config_t running, next;
	char err[256] = "";

	load_ok(MINIMAL "  properties:\n    linger.ms: 5\n", &running);
	load_ok(MINIMAL "  properties:\n    linger.ms: \"5\"\n"
		"log:\n  level: debug\nshutdown_timeout: 0.5\n"
		"pipeline:\n  pause_at: 50\n  resume_at: 10\n", &next);
	ck_assert_msg(winnow_config_reload_check(&running, &next, err, sizeof(err)) == 0,
		      "%s", err);
	winnow_config_apply_live(&running, &next);
	ck_assert_int_eq(running.log_level, WINNOW_LOG_DEBUG);
	ck_assert_double_eq(running.shutdown_timeout, 0.5);
	ck_assert_uint_eq(running.pipeline.pause_at, 50);
	ck_assert_uint_eq(running.pipeline.resume_at, 10);
	ck_assert_str_eq(running.model, "m.wnn");   /* its own strings stay */
	ck_assert_ptr_ne(running.model, next.model);
	winnow_config_free(&next);
	ck_assert_str_eq(running.kafka.properties[0].value, "5");
	winnow_config_free(&running);
}
END_TEST

static const error_case_t restart_changes[] = {
	{ "model", "model: other.wnn\nkafka:\n  brokers: b:9092\n  group: g\n  input: in\n"
	  "  output: out\n  dead_letter: dlq\npipeline:\n  workers: 3\n",
	  "key 'model' cannot change while running: restart winnowd" },
	{ "workers", MINIMAL "pipeline:\n  workers: 3\n",
	  "key 'pipeline.workers' cannot change while running: restart winnowd" },
	{ "a default made explicit and changed", MINIMAL "http:\n  listen: \"\"\n",
	  "key 'http.listen' cannot change while running: restart winnowd" },
	{ "properties", MINIMAL "  properties:\n    linger.ms: 5\n",
	  "key 'kafka.properties' cannot change while running: restart winnowd" },
	{ "aggregate", MINIMAL "windows:\n  aggregate: max\n",
	  "key 'windows.aggregate' cannot change while running: restart winnowd" },
	{ "a size", MINIMAL "limits:\n  max_document_bytes: 1MiB\n",
	  "key 'limits.max_document_bytes' cannot change while running: restart winnowd" },
};

START_TEST(reload_refuses_other_keys_naming_the_first)
{
	winnow_config_t running, next;
	char err[256] = "";

	load_ok(MINIMAL, &running);
	load_ok(restart_changes[_i].yaml, &next);
	ck_assert_int_eq(winnow_config_reload_check(&running, &next, err, sizeof(err)), -1);
	ck_assert_str_eq(err, restart_changes[_i].reason);
	/* an unchanged file is always accepted */
	ck_assert_int_eq(winnow_config_reload_check(&next, &next, err, sizeof(err)), 0);
	winnow_config_free(&next);
	winnow_config_free(&running);
}
END_TEST

START_TEST(log_level_names)
{
	ck_assert_str_eq(winnow_log_level_name(WINNOW_LOG_ERROR), "error");
	ck_assert_str_eq(winnow_log_level_name(WINNOW_LOG_WARN), "warn");
	ck_assert_str_eq(winnow_log_level_name(WINNOW_LOG_INFO), "info");
	ck_assert_str_eq(winnow_log_level_name(WINNOW_LOG_DEBUG), "debug");
	ck_assert_str_eq(winnow_log_level_name(4), "unknown");
	ck_assert_str_eq(winnow_log_level_name(-1), "unknown");
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *load = tcase_create("load");
	TCase *errors = tcase_create("errors");
	TCase *reload = tcase_create("reload");

	tcase_add_test(load, shipped_config_loads_with_the_documented_defaults);
	tcase_add_test(load, required_keys_alone_take_every_default);
	tcase_add_test(load, defaults_leave_required_keys_null);
	tcase_add_test(load, every_value_syntax_is_read);
	tcase_add_test(load, empty_sections_take_their_defaults);
	tcase_add_test(load, pause_and_resume_follow_max_documents_when_not_given);
	tcase_add_test(load, properties_pass_through_in_order_as_text);
	suite_add_tcase(s, load);

	tcase_add_loop_test(errors, each_missing_required_key_is_named, 0, N(required));
	tcase_add_loop_test(errors, unknown_keys_are_named_with_their_line, 0, N(unknown_keys));
	tcase_add_loop_test(errors, bad_values_are_named_with_their_line, 0, N(bad_values));
	tcase_add_loop_test(errors, duplicate_keys_are_refused, 0, N(duplicates));
	tcase_add_loop_test(errors, broken_files_give_clear_errors, 0, N(files));
	tcase_add_test(errors, invalid_utf8_names_the_byte);
	tcase_add_test(errors, missing_file_and_directory_are_named);
	tcase_add_test(errors, small_error_buffers_are_cut_not_overrun);
	suite_add_tcase(s, errors);

	tcase_add_test(reload, reload_takes_live_keys);
	tcase_add_loop_test(reload, reload_refuses_other_keys_naming_the_first, 0,
			    N(restart_changes));
	tcase_add_test(reload, log_level_names);
	suite_add_tcase(s, reload);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
