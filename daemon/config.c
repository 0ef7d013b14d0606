/*
 * config.c: loading and validating winnowd's YAML configuration.
 *
 * libyaml's document API gives the file as a tree of nodes, each with the
 * mark (0-based line) where it starts. The keys winnowd knows are one flat
 * table, keys[] below, by dotted path ("pipeline.workers"): their type,
 * range, default, whether they are required and whether they can change on
 * SIGHUP. Loading walks the tree against that table, so that defaults,
 * validation, reload checks and freeing all follow from the same list; a
 * new key is one line in keys[], one field in winnow_config_t and its
 * documentation in conf/winnowd.yaml.
 *
 * The first error ends the load; the caller gets the whole configuration
 * or nothing.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

/* ---- the schema --------------------------------------------------------- */

typedef enum {
	KEY_STRING,     /* non-empty text: char * */
	KEY_TOPIC,      /* a legal Kafka topic name: char * */
	KEY_LISTEN,     /* host:port or "": char * */
	KEY_U32,        /* decimal integer in min..max: uint32_t */
	KEY_SIZE,       /* bytes, optionally KiB/MiB/GiB, in min..max: uint64_t */
	KEY_BOOL,       /* true/false/yes/no: int */
	KEY_SECONDS,    /* decimal number in min..max: double */
	KEY_ENUM,       /* one of names[], stored as its index: int */
	KEY_PROPERTIES, /* mapping of librdkafka properties */
} key_type_t;

typedef struct {
	const char *name;          /* dotted path */
	key_type_t type;
	size_t offset;             /* of the field in winnow_config_t */
	int required;
	int live;                  /* may change on SIGHUP */
	uint64_t min, max;         /* KEY_U32, KEY_SIZE, KEY_SECONDS */
	uint64_t def;              /* numeric default (enum: index) */
	const char *def_str;       /* string default; NULL if required */
	const char *const *names;  /* KEY_ENUM, NULL-terminated */
} config_key_t;

static const char *const aggregate_names[] = { "mean", "max", NULL };
static const char *const log_level_names[] = { "error", "warn", "info", "debug", NULL };

#define FIELD(member) offsetof(winnow_config_t, member)

/*
 * pipeline.pause_at and pipeline.resume_at default to max_documents and half
 * of pause_at when not given (64 and 32 with the default max_documents), so
 * that changing max_documents alone never makes the file invalid.
 */
static const config_key_t keys[] = {
	{ .name = "model", .type = KEY_STRING, .offset = FIELD(model), .required = 1 },
	{ .name = "kafka.brokers", .type = KEY_STRING, .offset = FIELD(kafka.brokers), .required = 1 },
	{ .name = "kafka.group", .type = KEY_STRING, .offset = FIELD(kafka.group), .required = 1 },
	{ .name = "kafka.input", .type = KEY_TOPIC, .offset = FIELD(kafka.input), .required = 1 },
	{ .name = "kafka.output", .type = KEY_TOPIC, .offset = FIELD(kafka.output), .required = 1 },
	{ .name = "kafka.dead_letter", .type = KEY_TOPIC, .offset = FIELD(kafka.dead_letter), .required = 1 },
	{ .name = "kafka.client_id", .type = KEY_STRING, .offset = FIELD(kafka.client_id), .def_str = "winnowd" },
	{ .name = "kafka.transactional", .type = KEY_BOOL, .offset = FIELD(kafka.transactional), .def = 0 },
	{ .name = "kafka.properties", .type = KEY_PROPERTIES, .offset = FIELD(kafka.properties) },
	{ .name = "http.listen", .type = KEY_LISTEN, .offset = FIELD(http.listen), .def_str = "127.0.0.1:9465" },
	{ .name = "pipeline.workers", .type = KEY_U32, .offset = FIELD(pipeline.workers), .min = 1, .max = 64, .def = 2 },
	{ .name = "pipeline.threads_per_worker", .type = KEY_U32, .offset = FIELD(pipeline.threads_per_worker), .min = 1, .max = 64, .def = 1 },
	{ .name = "pipeline.max_documents", .type = KEY_U32, .offset = FIELD(pipeline.max_documents), .min = 1, .max = 65536, .def = 64 },
	{ .name = "pipeline.batch_tokens", .type = KEY_U32, .offset = FIELD(pipeline.batch_tokens), .min = 16, .max = 1048576, .def = 4096 },
	{ .name = "pipeline.batch_windows", .type = KEY_U32, .offset = FIELD(pipeline.batch_windows), .min = 1, .max = 4096, .def = 16 },
	{ .name = "pipeline.pause_at", .type = KEY_U32, .offset = FIELD(pipeline.pause_at), .live = 1, .min = 1, .max = 65536, .def = 64 },
	{ .name = "pipeline.resume_at", .type = KEY_U32, .offset = FIELD(pipeline.resume_at), .live = 1, .min = 0, .max = 65535, .def = 32 },
	{ .name = "limits.max_input_bytes", .type = KEY_SIZE, .offset = FIELD(limits.max_input_bytes), .min = 1, .max = 1ull << 31, .def = 16u << 20 },
	{ .name = "limits.max_document_bytes", .type = KEY_SIZE, .offset = FIELD(limits.max_document_bytes), .min = 1, .max = 1ull << 31, .def = 16u << 20 },
	{ .name = "limits.zstd_window_log_max", .type = KEY_U32, .offset = FIELD(limits.zstd_window_log_max), .min = 10, .max = 31, .def = 27 },
	{ .name = "windows.stride", .type = KEY_U32, .offset = FIELD(windows.stride), .min = 0, .max = 65536, .def = 0 },
	{ .name = "windows.aggregate", .type = KEY_ENUM, .offset = FIELD(windows.aggregate_max), .def = 0, .names = aggregate_names },
	{ .name = "windows.truncate", .type = KEY_BOOL, .offset = FIELD(windows.truncate), .def = 0 },
	{ .name = "explain.top_k", .type = KEY_U32, .offset = FIELD(explain.top_k), .min = 0, .max = 1000, .def = 10 },
	{ .name = "shutdown_timeout", .type = KEY_SECONDS, .offset = FIELD(shutdown_timeout), .live = 1, .min = 0, .max = 3600, .def = 30 },
	{ .name = "log.level", .type = KEY_ENUM, .offset = FIELD(log_level), .live = 1, .def = WINNOW_LOG_INFO, .names = log_level_names },
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* Properties that have their own key: setting them twice is refused. */
static const struct {
	const char *property, *key;
} property_keys[] = {
	{ "bootstrap.servers", "kafka.brokers" },
	{ "metadata.broker.list", "kafka.brokers" },
	{ "group.id", "kafka.group" },
	{ "client.id", "kafka.client_id" },
};

static const config_key_t *key_find(const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (!strcmp(keys[i].name, name))
			return &keys[i];
	return NULL;
}

static size_t key_index(const config_key_t *k)
{
	return (size_t)(k - keys);
}

static void *field(winnow_config_t *c, const config_key_t *k)
{
	return (char *)c + k->offset;
}

static const void *cfield(const winnow_config_t *c, const config_key_t *k)
{
	return (const char *)c + k->offset;
}

static int key_is_string(const config_key_t *k)
{
	return k->type == KEY_STRING || k->type == KEY_TOPIC || k->type == KEY_LISTEN;
}

const char *winnow_log_level_name(int level)
{
	if (level >= WINNOW_LOG_ERROR && level <= WINNOW_LOG_DEBUG)
		return log_level_names[level];
	return "unknown";
}

/* ---- defaults and freeing ----------------------------------------------- */

void winnow_config_free(winnow_config_t *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < N_KEYS; i++)
		if (key_is_string(&keys[i]))
			free(*(char **)field(c, &keys[i]));
	for (size_t i = 0; i < c->kafka.n_properties; i++) {
		free(c->kafka.properties[i].name);
		free(c->kafka.properties[i].value);
	}
	free(c->kafka.properties);
	memset(c, 0, sizeof(*c));
}

int winnow_config_defaults(winnow_config_t *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < N_KEYS; i++) {
		const config_key_t *k = &keys[i];
		void *f = field(c, k);

		switch (k->type) {
		case KEY_STRING:
		case KEY_TOPIC:
		case KEY_LISTEN:
			if (k->def_str && !(*(char **)f = strdup(k->def_str))) {
				winnow_config_free(c);
				return -1;
			}
			break;
		case KEY_U32: *(uint32_t *)f = (uint32_t)k->def; break;
		case KEY_SIZE: *(uint64_t *)f = k->def; break;
		case KEY_BOOL:
		case KEY_ENUM: *(int *)f = (int)k->def; break;
		case KEY_SECONDS: *(double *)f = (double)k->def; break;
		case KEY_PROPERTIES: break;
		}
	}
	return 0;
}

/* ---- loading ------------------------------------------------------------ */

typedef struct {
	const char *path;
	yaml_document_t *doc;
	winnow_config_t *c;
	size_t line[N_KEYS];       /* 1-based line where each key was set; 0 = not */
	size_t properties_cap;
	char *errstr;
	size_t errstr_size;
} loader_t;

/* Writes "cannot load config 'PATH': line N: MESSAGE" (no line if line 0). */
static int fail(loader_t *ld, size_t line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line)
		snprintf(ld->errstr, ld->errstr_size, "cannot load config '%s': line %zu: %s",
			 ld->path, line, msg);
	else
		snprintf(ld->errstr, ld->errstr_size, "cannot load config '%s': %s",
			 ld->path, msg);
	return -1;
}

static size_t line_of(const yaml_node_t *n)
{
	return n->start_mark.line + 1;
}

static const char *text(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* A scalar of the file, made safe to quote in a one-line message: control
 * characters become '?', and long values are cut at a character boundary. */
static const char *shown(const char *s, size_t len, char *buf, size_t size)
{
	const size_t max = 60;
	size_t n = 0;

	if (len > max) {
		len = max;
		while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
			len--;
	}
	for (size_t i = 0; i < len && n + 4 < size; i++)
		buf[n++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	if (len < strlen(s) && n + 4 < size) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

/* YAML's null: an unquoted empty value, ~ or null. Sections may be null
 * (all defaults); values may not. */
static int is_null(const yaml_node_t *n)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };

	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
		if (!strcmp(text(n), nulls[i]))
			return 1;
	return 0;
}

/* "'many'", "empty", "a list" or "a mapping", for "must be X, not Y". */
static const char *describe(const yaml_node_t *n, char *buf, size_t size)
{
	char s[128];

	if (n->type == YAML_SEQUENCE_NODE)
		return "a list";
	if (n->type == YAML_MAPPING_NODE)
		return "a mapping";
	if (is_null(n))
		return "empty";
	snprintf(buf, size, "'%s'", shown(text(n), n->data.scalar.length, s, sizeof(s)));
	return buf;
}

/* What a key's value must be, for "must be X, not Y". */
static const char *expected(const config_key_t *k, char *buf, size_t size)
{
	size_t n;

	switch (k->type) {
	case KEY_STRING: return "a non-empty string";
	case KEY_TOPIC: return "a topic name (1 to 249 of a-z A-Z 0-9 . _ -)";
	case KEY_LISTEN: return "host:port, or \"\" to disable";
	case KEY_U32:
		snprintf(buf, size, "an integer in %llu..%llu",
			 (unsigned long long)k->min, (unsigned long long)k->max);
		return buf;
	case KEY_SIZE:
		snprintf(buf, size, "a size in %llu..%llu bytes (or with KiB, MiB, GiB)",
			 (unsigned long long)k->min, (unsigned long long)k->max);
		return buf;
	case KEY_BOOL: return "true or false";
	case KEY_SECONDS:
		snprintf(buf, size, "a number of seconds in %llu..%llu",
			 (unsigned long long)k->min, (unsigned long long)k->max);
		return buf;
	case KEY_ENUM:
		/* "mean or max"; "one of error, warn, info or debug" */
		for (n = 0; k->names[n]; n++)
			;
		buf[0] = '\0';
		if (n > 2)
			snprintf(buf, size, "one of ");
		for (size_t i = 0; i < n; i++) {
			size_t used = strlen(buf);

			snprintf(buf + used, size - used, "%s%s",
				 i == 0 ? "" : i == n - 1 ? " or " : ", ", k->names[i]);
		}
		return buf;
	case KEY_PROPERTIES: return "a mapping of librdkafka properties to values";
	}
	return "valid";
}

static int fail_value(loader_t *ld, const config_key_t *k, const yaml_node_t *key,
		      const yaml_node_t *value)
{
	char want[128], got[160];

	return fail(ld, line_of(key), "'%s' must be %s, not %s", k->name,
		    expected(k, want, sizeof(want)), describe(value, got, sizeof(got)));
}

/* Canonical decimal: digits, no sign, no leading zero (YAML 1.1 reads 010
 * as octal; refuse rather than guess). */
static const char *parse_decimal(const char *s, uint64_t *v)
{
	uint64_t x = 0;
	const char *p = s;

	if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
		return NULL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (x > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return NULL;
		x = x * 10 + (uint64_t)(*p - '0');
	}
	*v = x;
	return p;
}

static int parse_u64(const char *s, uint64_t *v)
{
	const char *end = parse_decimal(s, v);

	return end && *end == '\0' ? 0 : -1;
}

/* "16777216", "16MiB", "16 MiB", "512KiB", "2GiB". */
static int parse_size(const char *s, uint64_t *v)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = { { "", 0 }, { "KiB", 10 }, { "MiB", 20 }, { "GiB", 30 } };
	const char *end = parse_decimal(s, v);

	if (!end)
		return -1;
	if (*end == ' ' && end[1] != '\0')
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].suffix))
			continue;
		if (*v > (UINT64_MAX >> units[i].shift))
			return -1;
		*v <<= units[i].shift;
		return 0;
	}
	return -1;
}

/* "30", "2.5", "0.25": digits with an optional fraction. Parsed by hand so
 * that the result does not depend on the locale's decimal point. */
static int parse_seconds(const char *s, double *v)
{
	uint64_t whole;
	const char *p = parse_decimal(s, &whole);
	double x, scale = 1;

	if (!p)
		return -1;
	x = (double)whole;
	if (*p == '.') {
		if (p[1] < '0' || p[1] > '9')
			return -1;
		for (p++; *p >= '0' && *p <= '9'; p++) {
			scale /= 10;
			x += (*p - '0') * scale;
		}
	}
	if (*p != '\0')
		return -1;
	*v = x;
	return 0;
}

static int parse_bool(const char *s, int *v)
{
	if (!strcmp(s, "true") || !strcmp(s, "yes"))
		*v = 1;
	else if (!strcmp(s, "false") || !strcmp(s, "no"))
		*v = 0;
	else
		return -1;
	return 0;
}

/* Kafka's rule: 1..249 of [a-zA-Z0-9._-], and not "." or "..". */
static int valid_topic(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 249 || !strcmp(s, ".") || !strcmp(s, ".."))
		return 0;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return 0;
	return 1;
}

/* "" (disabled), or HOST:PORT with HOST a name, an IPv4 address or a
 * bracketed IPv6 address, and PORT 0..65535 (0: any free port). */
static int valid_listen(const char *s)
{
	const char *colon = strrchr(s, ':');
	uint64_t port;

	if (*s == '\0')
		return 1;
	if (!colon || colon == s || parse_u64(colon + 1, &port) || port > 65535)
		return 0;
	if (*s == '[')
		return colon[-1] == ']' && colon - s > 2;
	for (const char *p = s; p < colon; p++)
		if (*p == ':' || *p == '[' || *p == ']' || (unsigned char)*p <= ' ')
			return 0;
	return 1;
}

/* The earlier key of mapping m equal to the key of pair `at`, or NULL. */
static const yaml_node_t *duplicate_of(loader_t *ld, const yaml_node_t *m,
				       const yaml_node_pair_t *at)
{
	const yaml_node_t *key = yaml_document_get_node(ld->doc, at->key);

	for (const yaml_node_pair_t *p = m->data.mapping.pairs.start; p < at; p++) {
		const yaml_node_t *other = yaml_document_get_node(ld->doc, p->key);

		if (other->type == YAML_SCALAR_NODE &&
		    other->data.scalar.length == key->data.scalar.length &&
		    !memcmp(other->data.scalar.value, key->data.scalar.value,
			    key->data.scalar.length))
			return other;
	}
	return NULL;
}

/* Checks the key of a pair (a scalar without NULs, not seen before in its
 * mapping); path_prefix names the mapping in the messages. */
static int check_key(loader_t *ld, const yaml_node_t *m, const yaml_node_pair_t *pair,
		     const char *path_prefix)
{
	const yaml_node_t *key = yaml_document_get_node(ld->doc, pair->key);
	const yaml_node_t *first;
	char got[160], s[128];

	if (key->type != YAML_SCALAR_NODE)
		return fail(ld, line_of(key), "a key must be a string, not %s",
			    describe(key, got, sizeof(got)));
	if (strlen(text(key)) != key->data.scalar.length)
		return fail(ld, line_of(key), "key '%s%s' contains a NUL byte", path_prefix,
			    shown(text(key), key->data.scalar.length, s, sizeof(s)));
	first = duplicate_of(ld, m, pair);
	if (first)
		return fail(ld, line_of(key), "duplicate key '%s%s' (first at line %zu)",
			    path_prefix, shown(text(key), key->data.scalar.length, s, sizeof(s)),
			    line_of(first));
	return 0;
}

static int load_properties(loader_t *ld, const config_key_t *k, const yaml_node_t *key,
			   const yaml_node_t *m)
{
	winnow_config_t *c = ld->c;
	char prefix[64], s[128], got[160];

	if (is_null(m))
		return 0;
	if (m->type != YAML_MAPPING_NODE)
		return fail_value(ld, k, key, m);
	snprintf(prefix, sizeof(prefix), "%s.", k->name);
	for (yaml_node_pair_t *pair = m->data.mapping.pairs.start;
	     pair < m->data.mapping.pairs.top; pair++) {
		const yaml_node_t *name = yaml_document_get_node(ld->doc, pair->key);
		const yaml_node_t *value = yaml_document_get_node(ld->doc, pair->value);
		winnow_config_property_t *prop;

		if (check_key(ld, m, pair, prefix))
			return -1;
		shown(text(name), name->data.scalar.length, s, sizeof(s));
		if (!valid_topic(text(name)))  /* the same alphabet as property names */
			return fail(ld, line_of(name), "'%s%s' is not a librdkafka property name",
				    prefix, s);
		for (size_t i = 0; i < sizeof(property_keys) / sizeof(property_keys[0]); i++)
			if (!strcmp(text(name), property_keys[i].property))
				return fail(ld, line_of(name),
					    "'%s%s' is set by '%s': remove it from '%s'",
					    prefix, s, property_keys[i].key, k->name);
		if (value->type != YAML_SCALAR_NODE || is_null(value))
			return fail(ld, line_of(name), "'%s%s' must be a string, not %s",
				    prefix, s, describe(value, got, sizeof(got)));
		if (strlen(text(value)) != value->data.scalar.length)
			return fail(ld, line_of(name), "'%s%s' contains a NUL byte", prefix, s);

		if (c->kafka.n_properties == ld->properties_cap) {
			size_t cap = ld->properties_cap ? 2 * ld->properties_cap : 8;
			winnow_config_property_t *grown =
				realloc(c->kafka.properties, cap * sizeof(*grown));

			if (!grown)
				return fail(ld, 0, "out of memory");
			c->kafka.properties = grown;
			ld->properties_cap = cap;
		}
		prop = &c->kafka.properties[c->kafka.n_properties];
		prop->name = strdup(text(name));
		prop->value = strdup(text(value));
		c->kafka.n_properties++;   /* counted now, so that free frees both */
		if (!prop->name || !prop->value)
			return fail(ld, 0, "out of memory");
	}
	return 0;
}

/* Validates the value of key k (written at `key`) and stores it. */
static int load_value(loader_t *ld, const config_key_t *k, const yaml_node_t *key,
		      const yaml_node_t *value)
{
	void *f = field(ld->c, k);
	const char *s;
	uint64_t u;
	double d;
	int b;

	ld->line[key_index(k)] = line_of(key);
	if (k->type == KEY_PROPERTIES)
		return load_properties(ld, k, key, value);
	if (value->type != YAML_SCALAR_NODE || is_null(value))
		return fail_value(ld, k, key, value);
	s = text(value);
	if (strlen(s) != value->data.scalar.length)
		return fail(ld, line_of(key), "'%s' contains a NUL byte", k->name);

	switch (k->type) {
	case KEY_STRING:
	case KEY_TOPIC:
	case KEY_LISTEN:
		if ((k->type == KEY_STRING && *s == '\0') ||
		    (k->type == KEY_TOPIC && !valid_topic(s)) ||
		    (k->type == KEY_LISTEN && !valid_listen(s)))
			return fail_value(ld, k, key, value);
		free(*(char **)f);
		if (!(*(char **)f = strdup(s)))
			return fail(ld, 0, "out of memory");
		return 0;
	case KEY_U32:
		if (parse_u64(s, &u) || u < k->min || u > k->max)
			return fail_value(ld, k, key, value);
		*(uint32_t *)f = (uint32_t)u;
		return 0;
	case KEY_SIZE:
		if (parse_size(s, &u) || u < k->min || u > k->max)
			return fail_value(ld, k, key, value);
		*(uint64_t *)f = u;
		return 0;
	case KEY_BOOL:
		if (parse_bool(s, &b))
			return fail_value(ld, k, key, value);
		*(int *)f = b;
		return 0;
	case KEY_SECONDS:
		if (parse_seconds(s, &d) || d < (double)k->min || d > (double)k->max)
			return fail_value(ld, k, key, value);
		*(double *)f = d;
		return 0;
	case KEY_ENUM:
		for (int i = 0; k->names[i]; i++) {
			if (!strcmp(s, k->names[i])) {
				*(int *)f = i;
				return 0;
			}
		}
		return fail_value(ld, k, key, value);
	case KEY_PROPERTIES:
		break;
	}
	return 0;
}

/* Whether some key lives under section path ("kafka" -> "kafka.brokers"). */
static int is_section(const char *path)
{
	size_t n = strlen(path);

	for (size_t i = 0; i < N_KEYS; i++)
		if (!strncmp(keys[i].name, path, n) && keys[i].name[n] == '.')
			return 1;
	return 0;
}

static int fail_unknown(loader_t *ld, const yaml_node_t *key, const char *path_prefix)
{
	char s[128];

	return fail(ld, line_of(key), "unknown key '%s%s'", path_prefix,
		    shown(text(key), key->data.scalar.length, s, sizeof(s)));
}

/* Walks mapping m, whose keys are under path_prefix ("" or "kafka."). */
static int load_mapping(loader_t *ld, const yaml_node_t *m, const char *path_prefix)
{
	for (yaml_node_pair_t *pair = m->data.mapping.pairs.start;
	     pair < m->data.mapping.pairs.top; pair++) {
		const yaml_node_t *key = yaml_document_get_node(ld->doc, pair->key);
		const yaml_node_t *value = yaml_document_get_node(ld->doc, pair->value);
		const config_key_t *k;
		char path[128], got[160];
		int len;

		if (check_key(ld, m, pair, path_prefix))
			return -1;
		len = snprintf(path, sizeof(path), "%s%s", path_prefix, text(key));
		if (len < 0 || (size_t)len >= sizeof(path))
			return fail_unknown(ld, key, path_prefix);
		/* Each key is one name: "kafka.group: x" does not reach a
		 * section, and would escape the duplicate check if it did. */
		if (strchr(text(key), '.')) {
			if (key_find(path) || is_section(path))
				return fail(ld, line_of(key),
					    "'%s' must be written as nested keys, not as one dotted key",
					    path);
			return fail_unknown(ld, key, path_prefix);
		}
		k = key_find(path);
		if (k) {
			if (load_value(ld, k, key, value))
				return -1;
			continue;
		}
		if (!is_section(path))
			return fail_unknown(ld, key, path_prefix);
		if (is_null(value))
			continue;           /* "explain:" with nothing under it */
		if (value->type != YAML_MAPPING_NODE)
			return fail(ld, line_of(key), "'%s' must be a mapping of keys, not %s",
				    path, describe(value, got, sizeof(got)));
		strcat(path, ".");  /* fits: path is a known section name */
		if (load_mapping(ld, value, path))
			return -1;
	}
	return 0;
}

static size_t line_at(const loader_t *ld, const char *name)
{
	return ld->line[key_index(key_find(name))];
}

/* What no single key can check: required keys, and keys that must agree. */
static int check_whole(loader_t *ld)
{
	winnow_config_t *c = ld->c;
	static const char *const topics[] = { "kafka.input", "kafka.output", "kafka.dead_letter" };

	for (size_t i = 0; i < N_KEYS; i++)
		if (keys[i].required && !ld->line[i])
			return fail(ld, 0, "missing required key '%s'", keys[i].name);

	if (!line_at(ld, "pipeline.pause_at"))
		c->pipeline.pause_at = c->pipeline.max_documents;
	if (!line_at(ld, "pipeline.resume_at"))
		c->pipeline.resume_at = c->pipeline.pause_at / 2;
	if (c->pipeline.pause_at > c->pipeline.max_documents)
		return fail(ld, line_at(ld, "pipeline.pause_at"),
			    "'pipeline.pause_at' (%u) must be at most 'pipeline.max_documents' (%u)",
			    c->pipeline.pause_at, c->pipeline.max_documents);
	if (c->pipeline.resume_at >= c->pipeline.pause_at)
		return fail(ld, line_at(ld, "pipeline.resume_at"),
			    "'pipeline.resume_at' (%u) must be less than 'pipeline.pause_at' (%u)",
			    c->pipeline.resume_at, c->pipeline.pause_at);

	/* A topic that is both read and written would feed winnowd its own
	 * output (or its dead letters) forever. */
	for (size_t i = 1; i < 3; i++) {
		for (size_t j = 0; j < i; j++) {
			const char *a = *(char **)field(c, key_find(topics[i]));
			const char *b = *(char **)field(c, key_find(topics[j]));

			if (!strcmp(a, b))
				return fail(ld, line_at(ld, topics[i]),
					    "'%s' must differ from '%s' (both are '%s')",
					    topics[i], topics[j], a);
		}
	}
	return 0;
}

static int parser_error(loader_t *ld, const yaml_parser_t *p)
{
	if (p->error == YAML_MEMORY_ERROR)
		return fail(ld, 0, "out of memory");
	if (p->error == YAML_READER_ERROR)
		return fail(ld, 0, "byte %zu: %s", p->problem_offset,
			    p->problem ? p->problem : "cannot read");
	if (p->context && p->context_mark.line != p->problem_mark.line)
		return fail(ld, p->problem_mark.line + 1, "%s (%s at line %zu)",
			    p->problem, p->context, p->context_mark.line + 1);
	if (p->context)
		return fail(ld, p->problem_mark.line + 1, "%s (%s)", p->problem, p->context);
	return fail(ld, p->problem_mark.line + 1, "%s",
		    p->problem ? p->problem : "not valid YAML");
}

int winnow_config_load(const char *path, winnow_config_t *out,
		       char *errstr, size_t errstr_size)
{
	loader_t ld = { .path = path, .c = out, .errstr = errstr,
			.errstr_size = errstr_size };
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	const yaml_node_t *root;
	struct stat st;
	char got[160];
	FILE *f;
	int rc = -1;

	if (errstr_size)
		errstr[0] = '\0';
	if (winnow_config_defaults(out))
		return fail(&ld, 0, "out of memory");

	f = fopen(path, "rb");
	if (!f) {
		fail(&ld, 0, "%s", strerror(errno));
		goto out_free;
	}
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fail(&ld, 0, "is a directory");
		goto out_close;
	}
	if (!yaml_parser_initialize(&parser)) {
		fail(&ld, 0, "out of memory");
		goto out_close;
	}
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &doc)) {
		parser_error(&ld, &parser);
		goto out_parser;
	}
	ld.doc = &doc;

	root = yaml_document_get_root_node(&doc);
	if (!root) {
		fail(&ld, 0, "file is empty (it needs at least the required keys)");
		goto out_doc;
	}
	if (root->type != YAML_MAPPING_NODE) {
		fail(&ld, line_of(root), "the top level must be a mapping of keys, not %s",
		     describe(root, got, sizeof(got)));
		goto out_doc;
	}
	if (load_mapping(&ld, root, "") || check_whole(&ld))
		goto out_doc;

	/* One document per file: a second one would be silently ignored. */
	if (!yaml_parser_load(&parser, &extra)) {
		parser_error(&ld, &parser);
		goto out_doc;
	}
	root = yaml_document_get_root_node(&extra);
	if (root)
		fail(&ld, line_of(root), "a second YAML document: the file must hold one");
	else
		rc = 0;
	yaml_document_delete(&extra);
out_doc:
	yaml_document_delete(&doc);
out_parser:
	yaml_parser_delete(&parser);
out_close:
	fclose(f);
out_free:
	if (rc)
		winnow_config_free(out);
	return rc;
}

/* ---- SIGHUP ------------------------------------------------------------- */

static int same_value(const config_key_t *k, const winnow_config_t *a, const winnow_config_t *b)
{
	const void *fa = cfield(a, k), *fb = cfield(b, k);

	switch (k->type) {
	case KEY_STRING:
	case KEY_TOPIC:
	case KEY_LISTEN:
		return !strcmp(*(char *const *)fa, *(char *const *)fb);
	case KEY_U32: return *(const uint32_t *)fa == *(const uint32_t *)fb;
	case KEY_SIZE: return *(const uint64_t *)fa == *(const uint64_t *)fb;
	case KEY_BOOL:
	case KEY_ENUM: return *(const int *)fa == *(const int *)fb;
	case KEY_SECONDS: return *(const double *)fa == *(const double *)fb;
	case KEY_PROPERTIES:
		if (a->kafka.n_properties != b->kafka.n_properties)
			return 0;
		for (size_t i = 0; i < a->kafka.n_properties; i++)
			if (strcmp(a->kafka.properties[i].name, b->kafka.properties[i].name) ||
			    strcmp(a->kafka.properties[i].value, b->kafka.properties[i].value))
				return 0;
		return 1;
	}
	return 0;
}

int winnow_config_reload_check(const winnow_config_t *old,
			       const winnow_config_t *new_config,
			       char *errstr, size_t errstr_size)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		if (keys[i].live || same_value(&keys[i], old, new_config))
			continue;
		snprintf(errstr, errstr_size,
			 "key '%s' cannot change while running: restart winnowd", keys[i].name);
		return -1;
	}
	return 0;
}

void winnow_config_apply_live(winnow_config_t *running, const winnow_config_t *new_config)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		const config_key_t *k = &keys[i];
		size_t size = k->type == KEY_U32 ? sizeof(uint32_t)
			    : k->type == KEY_SECONDS ? sizeof(double)
			    : k->type == KEY_ENUM || k->type == KEY_BOOL ? sizeof(int) : 0;

		/* Live keys are plain numbers: nothing to free or duplicate. */
		if (k->live && size)
			memcpy(field(running, k), cfield(new_config, k), size);
	}
}
