/*
 * relay_log - see relay_log.h.
 */
#include "relay/relay_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int relay_log_level = CONF_LOG_INFO;

static const char *const relay_log_names[] = {"error", "warning", "info",
					      "debug"};

/* relay_log_write - one line: time, level, id, the formatted event. */
void relay_log_write(int level, const char *id, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	size_t n;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s ",
		     ts.tv_nsec / 1000000, relay_log_names[level],
		     id ? id : "-");
	n += r > 0 ? (size_t)r : 0;

	va_start(ap, fmt);
	r = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (r < 0)
		r = 0;
	n += (size_t)r;

	/* A line cut at the buffer's end still ends in a newline. */
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* Nowhere left to report it. */
	}
}
