/*
 * relay_log - the daemon's log: one line per event on standard error,
 * `LEVEL queue-id event key=value ... reason=...` (the queue ID, or the
 * session ID when there is no message yet, or "-"). Lines are written
 * whole with one write(2), so threads never interleave within a line.
 *
 * Unbuffered by default (the command-line tools). The daemon turns on
 * buffering and calls relay_log_flush() once per loop iteration, so a
 * busy loop writes its lines in one write(2) per iteration instead of
 * one per line; error lines are written at once, behind the buffer.
 * A crash loses at most what the last iteration logged.
 *
 * Levels follow conf.h's enum conf_log_level; lines above the current
 * level cost one comparison.
 */
#ifndef WAXSEAL_RELAY_LOG_H
#define WAXSEAL_RELAY_LOG_H

#include "conf/conf.h"

extern int relay_log_level;

/* relay_log_write - format and write one line; use the macros below. */
void relay_log_write(int level, const char *id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * relay_log_buffer - on: keep lines for relay_log_flush() (0, or -1 when
 * out of memory: lines stay unbuffered); off: flush and stop buffering.
 */
int relay_log_buffer(int on);

/* relay_log_flush - write the buffered lines now. */
void relay_log_flush(void);

#define relay_log(level, id, ...)                                          \
	do {                                                               \
		if ((level) <= relay_log_level)                            \
			relay_log_write((level), (id), __VA_ARGS__);      \
	} while (0)

#define relay_err(id, ...) relay_log(CONF_LOG_ERROR, id, __VA_ARGS__)
#define relay_warn(id, ...) relay_log(CONF_LOG_WARNING, id, __VA_ARGS__)
#define relay_info(id, ...) relay_log(CONF_LOG_INFO, id, __VA_ARGS__)
#define relay_debug(id, ...) relay_log(CONF_LOG_DEBUG, id, __VA_ARGS__)

#endif
