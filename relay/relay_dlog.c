/*
 * relay_dlog - the JSON delivery log; see relay_dlog.h for the contract.
 *
 * A line is formatted straight into the log's buffer of whole lines (a
 * heap buffer only for the rare line longer than all of it, such as a
 * long multi-line reply), which relay_dlog_flush() writes with one
 * write(2): the daemon flushes once per loop iteration,
 * so a burst of deliveries costs one system call instead of one per
 * recipient. The formatter counts every octet it would write, whether or
 * not it fits, so one pass tells the length needed.
 */
#include "relay/relay_dlog.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "relay/relay_log.h"

/* Whole lines waiting for relay_dlog_flush(). */
#define RELAY_DLOG_BUF 65536

struct relay_dlog {
	int fd;	      /* -1: a log that writes nothing */
	char *path;   /* for reopen */
	bool failing; /* the last write failed; it was reported */
	uint64_t lost; /* lines not written since failing began */
	char *buf;    /* RELAY_DLOG_BUF octets when fd >= 0 */
	size_t len;   /* of buf, whole lines */
};

/* Output that counts past its end: len may exceed cap. */
struct relay_dlog_out {
	char *buf;
	size_t cap, len;
};

/* relay_dlog_put - append n octets, or count them when out of room. */
static void relay_dlog_put(struct relay_dlog_out *o, const char *s, size_t n)
{
	size_t room;

	if (o->len < o->cap) {
		room = o->cap - o->len;
		memcpy(o->buf + o->len, s, n < room ? n : room);
	}
	o->len += n;
}

/* relay_dlog_puts - append a string. */
static void relay_dlog_puts(struct relay_dlog_out *o, const char *s)
{
	relay_dlog_put(o, s, strlen(s));
}

/*
 * relay_dlog_utf8 - length of the well-formed UTF-8 character at p
 * (RFC 3629 section 4: no overlong forms, no surrogates, nothing above
 * U+10FFFF) as a positive number, or minus the length of its maximal
 * ill-formed subpart (Unicode 15 section 3.9, "U+FFFD substitution of
 * maximal subparts"), which is at least one octet.
 */
static int relay_dlog_utf8(const unsigned char *p, const unsigned char *end)
{
	unsigned char lo = 0x80, hi = 0xbf;
	int need, i;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		need = 1;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		need = 2;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		need = 3;
	else
		return -1;

	/* The second octet's range excludes overlongs and surrogates. */
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;

	for (i = 1; i <= need; i++) {
		if (p + i >= end || p[i] < lo || p[i] > hi)
			return -i;
		lo = 0x80;
		hi = 0xbf;
	}
	return need + 1;
}

/* relay_dlog_str - a JSON string for s, or null. */
static void relay_dlog_str(struct relay_dlog_out *o, const char *s)
{
	const unsigned char *p = (const unsigned char *)s, *end, *run;
	char esc[8];
	int n;

	if (s == NULL) {
		relay_dlog_puts(o, "null");
		return;
	}
	end = p + strlen(s);

	relay_dlog_put(o, "\"", 1);
	run = p;
	while (p < end) {
		/* Plain octets are copied in runs. */
		if (*p >= 0x20 && *p != '"' && *p != '\\' && *p < 0x80) {
			p++;
			continue;
		}
		relay_dlog_put(o, (const char *)run, (size_t)(p - run));

		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			relay_dlog_put(o, esc, 2);
			p++;
		} else if (*p < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			relay_dlog_put(o, esc, 6);
			p++;
		} else {
			n = relay_dlog_utf8(p, end);
			if (n > 0) {
				relay_dlog_put(o, (const char *)p, (size_t)n);
				p += n;
			} else {
				/* U+REPLACEMENT CHARACTER */
				relay_dlog_put(o, "\xef\xbf\xbd", 3);
				p += -n;
			}
		}
		run = p;
	}
	relay_dlog_put(o, (const char *)run, (size_t)(p - run));
	relay_dlog_put(o, "\"", 1);
}

/* relay_dlog_key - ,"key": before a value (no comma for the first). */
static void relay_dlog_key(struct relay_dlog_out *o, const char *key)
{
	relay_dlog_puts(o, o->len > 1 ? ",\"" : "\"");
	relay_dlog_puts(o, key);
	relay_dlog_put(o, "\":", 2);
}

/* relay_dlog_time - RFC 3339 UTC time with milliseconds. */
static void relay_dlog_time(struct relay_dlog_out *o, int64_t ms)
{
	int64_t sec = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
	time_t t = (time_t)sec;
	char buf[48];
	struct tm tm;
	int n;

	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	n = snprintf(buf, sizeof(buf),
		     "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		     tm.tm_min, tm.tm_sec, (int)(ms - sec * 1000));
	relay_dlog_put(o, buf, (size_t)n);
}

/* relay_dlog_format - see relay_dlog.h. */
size_t relay_dlog_format(const struct relay_dlog_rec *r, char *buf, size_t cap)
{
	struct relay_dlog_out o = {buf, cap, 0};
	int64_t delay = r->delay_ms > 0 ? r->delay_ms : 0;
	char num[64];
	int n;

	relay_dlog_put(&o, "{", 1);
	relay_dlog_key(&o, "time");
	relay_dlog_time(&o, r->time_ms);
	relay_dlog_key(&o, "queue_id");
	relay_dlog_str(&o, r->queue_id);
	relay_dlog_key(&o, "message_id");
	relay_dlog_str(&o, r->message_id);
	relay_dlog_key(&o, "sender");
	relay_dlog_str(&o, r->sender);
	relay_dlog_key(&o, "recipient");
	relay_dlog_str(&o, r->recipient);
	relay_dlog_key(&o, "destination");
	relay_dlog_str(&o, r->destination);
	relay_dlog_key(&o, "mx");
	relay_dlog_str(&o, r->mx);
	relay_dlog_key(&o, "ip");
	relay_dlog_str(&o, r->ip);
	relay_dlog_key(&o, "tls_version");
	relay_dlog_str(&o, r->tls_version);
	relay_dlog_key(&o, "tls_cipher");
	relay_dlog_str(&o, r->tls_cipher);
	relay_dlog_key(&o, "reply");
	relay_dlog_str(&o, r->reply);
	relay_dlog_key(&o, "status");
	relay_dlog_str(&o, r->status);

	n = snprintf(num, sizeof(num),
		     ",\"attempt\":%u,\"delay\":%" PRId64 ".%03d}\n",
		     r->attempt, delay / 1000, (int)(delay % 1000));
	relay_dlog_put(&o, num, (size_t)n);

	/* NUL-terminated like snprintf, cut when out of room. */
	if (cap > 0)
		buf[o.len < cap ? o.len : cap - 1] = '\0';
	return o.len;
}

/* relay_dlog_open_fd - the descriptor for path, or -errno. */
static int relay_dlog_open_fd(const char *path)
{
	int fd;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	return fd < 0 ? -errno : fd;
}

/* relay_dlog_open - see relay_dlog.h. */
int relay_dlog_open(struct relay_dlog **out, const char *path)
{
	struct relay_dlog *l;
	int err = -ENOMEM;

	*out = NULL;
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		goto fail;
	l->fd = -1;
	l->path = strdup(path);
	if (l->path == NULL)
		goto fail;

	if (path[0] != '\0') {
		l->buf = malloc(RELAY_DLOG_BUF);
		if (l->buf == NULL)
			goto fail;
		l->fd = relay_dlog_open_fd(path);
		if (l->fd < 0) {
			err = l->fd;
			goto fail;
		}
	}

	*out = l;
	return 0;

fail:
	if (l != NULL) {
		free(l->buf);
		free(l->path);
	}
	free(l);
	return err;
}

/* relay_dlog_fail - report err once per run of failures (id: a queue ID
 * for a single line, NULL for a buffer of them); lost lines are counted. */
static void relay_dlog_fail(struct relay_dlog *l, const char *id, int err,
			    uint64_t lost)
{
	if (!l->failing)
		relay_warn(id, "delivery_log write failed path=%s reason=%s",
			   l->path, strerror(-err));
	l->failing = true;
	l->lost += lost;
}

/* relay_dlog_lines - the number of line ends in p[0..n). */
static uint64_t relay_dlog_lines(const char *p, size_t n)
{
	uint64_t k = 0;

	for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))); p++)
		k++;
	return k;
}

/*
 * relay_dlog_cut - after a short write of w octets of p, cut the line it
 * left unfinished off the end of the file, so that a reader sees whole
 * lines only. The daemon is the file's one writer (O_APPEND): its end is
 * where the short write stopped.
 */
static void relay_dlog_cut(struct relay_dlog *l, const char *p, size_t w)
{
	size_t whole = w;
	off_t end;

	while (whole > 0 && p[whole - 1] != '\n')
		whole--;
	if (whole == w)
		return;
	end = lseek(l->fd, 0, SEEK_END);
	if (end >= (off_t)(w - whole) &&
	    ftruncate(l->fd, end - (off_t)(w - whole)) == 0)
		return;
	relay_warn(NULL,
		   "delivery_log cannot cut a partial line path=%s "
		   "reason=%s",
		   l->path,
		   end < (off_t)(w - whole) && end >= 0 ? "file shrank"
							: strerror(errno));
}

/* relay_dlog_out - write n octets of whole lines; see relay_dlog_fail. */
static void relay_dlog_out(struct relay_dlog *l, const char *p, size_t n,
			   const char *id)
{
	ssize_t w;

	/*
	 * Not retried on failure: the loop thread must not wait on the disk,
	 * and a full disk fails again. A short write keeps its whole lines
	 * and cuts the unfinished one; the lines not written are lost, and
	 * counted in the "resumed" line.
	 */
	w = write(l->fd, p, n);
	if (w < 0 || (size_t)w < n) {
		int err = w < 0 ? -errno : -ENOSPC;

		if (w < 0)
			w = 0;
		relay_dlog_cut(l, p, (size_t)w);

		/* The cut line ends past w, so it is counted here. */
		relay_dlog_fail(l, id, err,
				relay_dlog_lines(p + w, n - (size_t)w));
		return;
	}
	if (l->failing)
		relay_info(id, "delivery_log resumed path=%s lost=%" PRIu64,
			   l->path, l->lost);
	l->failing = false;
	l->lost = 0;
}

/* relay_dlog_flush - see relay_dlog.h. */
void relay_dlog_flush(struct relay_dlog *l)
{
	if (l == NULL || l->fd < 0 || l->len == 0)
		return;
	relay_dlog_out(l, l->buf, l->len, NULL);
	l->len = 0;
}

/* relay_dlog_write - see relay_dlog.h. */
void relay_dlog_write(struct relay_dlog *l, const struct relay_dlog_rec *r)
{
	size_t n, room;
	char *line;

	if (l->fd < 0)
		return;

	/*
	 * Formatted in place behind the buffered lines; a line that does not
	 * fit (the formatter says how long it is) waits for a flush, and one
	 * longer than the whole buffer is formatted into the heap and written
	 * alone. Lines stay whole and in order.
	 */
	room = RELAY_DLOG_BUF - l->len;
	n = relay_dlog_format(r, l->buf + l->len, room);
	if (n < room) {
		l->len += n;
		return;
	}
	relay_dlog_flush(l);
	n = relay_dlog_format(r, l->buf, RELAY_DLOG_BUF);
	if (n < RELAY_DLOG_BUF) {
		l->len = n;
		return;
	}
	line = malloc(n + 1);
	if (line == NULL) {
		relay_dlog_fail(l, r->queue_id, -ENOMEM, 1);
		return;
	}
	relay_dlog_format(r, line, n + 1);
	relay_dlog_out(l, line, n, r->queue_id);
	free(line);
}

/* relay_dlog_reopen - see relay_dlog.h. */
int relay_dlog_reopen(struct relay_dlog *l)
{
	int fd;

	if (l->path[0] == '\0')
		return 0;

	fd = relay_dlog_open_fd(l->path);
	if (fd < 0)
		return fd;

	/* What was logged before the reopen belongs in the old file. */
	relay_dlog_flush(l);
	if (l->fd >= 0)
		close(l->fd);
	l->fd = fd;

	/* A run of failures ends here: say what it cost. */
	if (l->failing)
		relay_info(NULL, "delivery_log reopened path=%s lost=%" PRIu64,
			   l->path, l->lost);
	l->failing = false;
	l->lost = 0;
	return 0;
}

/* relay_dlog_close - see relay_dlog.h. */
void relay_dlog_close(struct relay_dlog *l)
{
	if (l == NULL)
		return;
	relay_dlog_flush(l);
	if (l->fd >= 0)
		close(l->fd);
	free(l->buf);
	free(l->path);
	free(l);
}
