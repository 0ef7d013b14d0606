/* log.c: leveled one-line log records on stderr (log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

static atomic_int level = WINNOW_LOG_INFO;

void winnow_log_set_level(int l)
{
	atomic_store(&level, l);
}

int winnow_log_enabled(int l)
{
	return l <= atomic_load(&level);
}

void winnow_log(int l, const char *fmt, ...)
{
	if (!winnow_log_enabled(l))
		return;
	char line[2048], stamp[32];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
	int n = snprintf(line, sizeof line, "%s.%03ldZ %s ", stamp,
			 ts.tv_nsec / 1000000, winnow_log_level_name(l));
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof line)
		vsnprintf(line + n, sizeof line - n, fmt, ap);
	va_end(ap);
	/* One write per line, so lines of several threads do not mix. */
	fprintf(stderr, "%s\n", line);
}
