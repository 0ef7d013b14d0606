/*
 * log.h: winnowd's log, one line per event on stderr (journald adds the
 * rest when run by systemd):
 *
 *   2026-11-25T03:50:01.123Z info consumer: assigned docs[0..3]
 */
#ifndef WINNOW_LOG_H
#define WINNOW_LOG_H

/* The levels are log.level's values: winnow_log_level_t (config.h). */
#include "config.h"

/* Lines above this level are dropped; changed by SIGHUP. Thread-safe. */
void winnow_log_set_level(int level);
int winnow_log_enabled(int level);

void winnow_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) winnow_log(WINNOW_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) winnow_log(WINNOW_LOG_WARN, __VA_ARGS__)
#define log_info(...) winnow_log(WINNOW_LOG_INFO, __VA_ARGS__)
#define log_debug(...) winnow_log(WINNOW_LOG_DEBUG, __VA_ARGS__)

#endif /* WINNOW_LOG_H */
