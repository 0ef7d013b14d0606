/*
 * config.h: winnowd's configuration file (YAML; conf/winnowd.yaml documents
 * every key with its default).
 *
 * The file is parsed with libyaml into winnow_config_t, a plain struct of
 * values, and validated completely before the caller sees any of it: an
 * unknown key, a duplicate key, a value of the wrong type or out of range,
 * a missing required key or two keys that contradict each other make the
 * whole load fail with one reason, worded like git and naming the key by its
 * dotted path and its line:
 *
 *   cannot load config 'winnowd.yaml': line 7: unknown key 'kafka.gruop'
 *   cannot load config 'winnowd.yaml': line 12: 'pipeline.workers' must be
 *     an integer in 1..64, not 'many'
 *
 * On SIGHUP the daemon loads the file again into a second struct, asks
 * winnow_config_reload_check whether the difference can be applied while
 * running, and if so copies the live keys over with winnow_config_apply_live.
 */
#ifndef WINNOW_CONFIG_H
#define WINNOW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* log.level; a message is logged when its level <= the configured one. */
typedef enum {
	WINNOW_LOG_ERROR = 0,
	WINNOW_LOG_WARN = 1,
	WINNOW_LOG_INFO = 2,
	WINNOW_LOG_DEBUG = 3,
} winnow_log_level_t;

/* "error", "warn", "info", "debug"; "unknown" for anything else. */
const char *winnow_log_level_name(int level);

/* One kafka.properties entry: a librdkafka property and its value, as text
 * (an unquoted 6000 or true in the file keeps its spelling). */
typedef struct {
	char *name;
	char *value;
} winnow_config_property_t;

/*
 * A loaded configuration. Plain data: every char * is owned by the struct
 * (freed by winnow_config_free) and non-NULL after a successful load;
 * http.listen may be "" (endpoint disabled).
 */
typedef struct {
	char *model;                  /* path of the .wnn model */
	struct {
		char *brokers;        /* bootstrap.servers */
		char *group;          /* group.id */
		char *input;          /* input topic */
		char *output;         /* output topic */
		char *dead_letter;    /* dead-letter topic */
		char *client_id;      /* client.id */
		int transactional;    /* 1: transactional producer */
		/* Passed to librdkafka in file order, after the keys above. */
		winnow_config_property_t *properties;
		size_t n_properties;
	} kafka;
	struct {
		char *listen;         /* host:port, or "" for none */
	} http;
	struct {
		uint32_t workers;
		uint32_t threads_per_worker;
		uint32_t max_documents;
		uint32_t batch_tokens;
		uint32_t batch_windows;
		uint32_t pause_at;    /* resume_at < pause_at <= max_documents */
		uint32_t resume_at;
	} pipeline;
	struct {
		uint64_t max_input_bytes;
		uint64_t max_document_bytes;
		uint32_t zstd_window_log_max;
	} limits;
	struct {
		uint32_t stride;
		int aggregate_max;    /* 0: mean, 1: max (= winnow_aggregate_t) */
		int truncate;
	} windows;
	struct {
		uint32_t top_k;
	} explain;
	double shutdown_timeout;      /* seconds */
	int log_level;                /* winnow_log_level_t */
} winnow_config_t;

/*
 * Fills c with the defaults of every optional key; the required keys
 * (model and kafka's brokers, group, input, output, dead_letter) are left
 * NULL. c need not be initialised. 0, or -1 when out of memory (c is then
 * safe to pass to winnow_config_free).
 */
int winnow_config_defaults(winnow_config_t *c);

/*
 * Loads and validates the YAML file at path into *out, which need not be
 * initialised and is owned by the caller afterwards (winnow_config_free).
 * Returns 0, or -1 with the reason in errstr (errstr_size bytes, always
 * NUL-terminated) and *out zeroed: nothing of a bad file is ever used.
 */
int winnow_config_load(const char *path, winnow_config_t *out,
		       char *errstr, size_t errstr_size);

/* Frees the strings and properties of c and zeroes it; c may be NULL. */
void winnow_config_free(winnow_config_t *c);

/*
 * Whether a running daemon configured with old can take new without a
 * restart: only log.level, shutdown_timeout, pipeline.pause_at and
 * pipeline.resume_at can change live. Returns 0 if every other key is
 * equal, else -1 naming the first key that differs:
 *   key 'model' cannot change while running: restart winnowd
 * Both must be loaded (validated) configurations.
 */
int winnow_config_reload_check(const winnow_config_t *old,
			       const winnow_config_t *new_config,
			       char *errstr, size_t errstr_size);

/* Copies the live keys (above) of new_config into running. Call it only
 * after winnow_config_reload_check said 0. */
void winnow_config_apply_live(winnow_config_t *running,
			      const winnow_config_t *new_config);

#ifdef __cplusplus
}
#endif

#endif /* WINNOW_CONFIG_H */
