/*
 * relay_dlog - the delivery log: one JSON object (RFC 8259) per line,
 * one line per recipient outcome, for newsletter software to read
 * bounces and deliveries from (delivery_log in waxseal.conf).
 *
 * A line holds, in this order: time (RFC 3339 UTC with milliseconds,
 * "2026-12-04T05:52:33.123Z"), queue_id, message_id, sender, recipient,
 * destination, mx, ip, tls_version, tls_cipher, reply, status (strings;
 * a NULL field is JSON null), attempt (a number) and delay (seconds
 * since arrival, a number with 3 decimals; a negative delay, after the
 * clock stepped back, is written as 0.000). Strings are escaped per RFC
 * 8259 section 7: quote and backslash with a backslash, control
 * characters as \u00XX. Octets that are not well-formed UTF-8 (RFC 3629
 * section 4) are replaced by U+FFFD, one per maximal ill-formed
 * subpart, so every line is valid JSON whatever a recipient or a remote
 * reply holds.
 *
 * Threads: a log is used by one thread at a time (the loop thread).
 * Lines wait in the log's buffer until relay_dlog_flush() (the daemon
 * calls it once per loop iteration, before it waits for events), then go
 * to the file in one write(2) of whole lines on an O_APPEND descriptor,
 * so other writers of the same file never split a line. A crash of the
 * process loses what the last iteration logged; the mail itself is in
 * the spool and its outcome is logged again when it is retried.
 */
#ifndef WAXSEAL_RELAY_DLOG_H
#define WAXSEAL_RELAY_DLOG_H

#include <stddef.h>
#include <stdint.h>

/* An open delivery log; private. */
struct relay_dlog;

/* One recipient outcome. Strings are NUL-terminated, borrowed. */
struct relay_dlog_rec {
	int64_t time_ms;
	const char *queue_id, *message_id, *sender, *recipient;
	const char *destination; /* next hop: domain or relayhost */
	const char *mx, *ip;	 /* NULL when no connection was made */
	const char *tls_version, *tls_cipher; /* NULL: no TLS */
	const char *reply;  /* the remote reply or our reason */
	const char *status; /* delivered|deferred|bounced|expired */
	unsigned attempt;
	int64_t delay_ms; /* since arrival */
};

/*
 * relay_dlog_open - a log appending to path (created 0640, less the
 * umask); "" gives a log that writes nothing. *out is the caller's,
 * for relay_dlog_close(). 0, or -errno from open(2) (*out is NULL then),
 * or -ENOMEM.
 */
int relay_dlog_open(struct relay_dlog **out, const char *path);

/*
 * relay_dlog_write - append the line for r to the buffer; a full buffer
 * is written first. A failed or short write is reported once with
 * relay_log (and once more when writing works again, with the number of
 * lines lost), never to the caller: delivery goes on without its log. A
 * short write keeps the whole lines it wrote and cuts off the rest, so
 * the file holds whole lines only.
 */
void relay_dlog_write(struct relay_dlog *l, const struct relay_dlog_rec *r);

/* relay_dlog_flush - write the buffered lines now; NULL is ignored. */
void relay_dlog_flush(struct relay_dlog *l);

/*
 * relay_dlog_reopen - open the path again, flush the buffer to the old
 * file and close it (on SIGUSR1, after logrotate moved it away). 0, or
 * -errno when the path cannot be opened: the old file stays in use.
 */
int relay_dlog_reopen(struct relay_dlog *l);

/* relay_dlog_close - flush, close the file, free l; NULL is ignored. */
void relay_dlog_close(struct relay_dlog *l);

/*
 * relay_dlog_format - the line for r, its '\n' included, into buf (as
 * snprintf: NUL-terminated when cap > 0, cut to cap - 1 octets). Returns
 * the line's length without the NUL, or the length needed when that is
 * cap or more.
 */
size_t relay_dlog_format(const struct relay_dlog_rec *r, char *buf, size_t cap);

#endif
