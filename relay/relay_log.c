/*
 * relay_log - see relay_log.h.
 */
#include "relay/relay_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int relay_log_level = CONF_LOG_INFO;

/* Whole lines waiting for relay_log_flush(); NULL: unbuffered. */
#define RELAY_LOG_BUF 65536
static pthread_mutex_t relay_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char *relay_log_buf;
static size_t relay_log_len;

/* relay_log_out - write n octets to standard error; nothing to report. */
static void relay_log_out(const char *p, size_t n)
{
	if (n && write(STDERR_FILENO, p, n) < 0) {
		/* Nowhere left to report it. */
	}
}

/* relay_log_flush_locked - write the buffer; relay_log_mu held. */
static void relay_log_flush_locked(void)
{
	relay_log_out(relay_log_buf, relay_log_len);
	relay_log_len = 0;
}

/* relay_log_flush - see relay_log.h. */
void relay_log_flush(void)
{
	pthread_mutex_lock(&relay_log_mu);
	if (relay_log_buf)
		relay_log_flush_locked();
	pthread_mutex_unlock(&relay_log_mu);
}

/* relay_log_buffer - see relay_log.h. */
int relay_log_buffer(int on)
{
	int r = 0;

	pthread_mutex_lock(&relay_log_mu);
	if (on && relay_log_buf == NULL) {
		relay_log_buf = malloc(RELAY_LOG_BUF);
		r = relay_log_buf ? 0 : -1;
	} else if (!on && relay_log_buf) {
		relay_log_flush_locked();
		free(relay_log_buf);
		relay_log_buf = NULL;
	}
	pthread_mutex_unlock(&relay_log_mu);
	return r;
}

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

	/*
	 * Errors go out at once, behind what is buffered, so that the line
	 * that explains an exit is never left in memory.
	 */
	pthread_mutex_lock(&relay_log_mu);
	if (relay_log_buf && relay_log_len + n > RELAY_LOG_BUF)
		relay_log_flush_locked();
	if (relay_log_buf && level > CONF_LOG_ERROR) {
		memcpy(relay_log_buf + relay_log_len, line, n);
		relay_log_len += n;
	} else {
		if (relay_log_buf)
			relay_log_flush_locked();
		relay_log_out(line, n);
	}
	pthread_mutex_unlock(&relay_log_mu);
}
