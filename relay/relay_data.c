/*
 * relay_data - the DATA and BDAT message reader; see relay_data.h for the
 * contract.
 *
 * The reader is a small state machine over the input bytes. Its state
 * says where in a line the previous byte left it:
 *
 *   BOL     at the start of a line (real_crlf: the line end before it was
 *           a <CR><LF> the client sent, or the DATA command's own)
 *   TEXT    inside a line
 *   CR      a <CR> was read; the next byte decides whether it was the
 *           first half of a line end or a bare <CR>
 *   DOT     a "." was read at the start of a line that followed a real
 *           <CR><LF>
 *   DOT_CR  "." then <CR>: a <LF> now ends the message
 *   DONE    the end-of-data line was read (or BDAT finished)
 *
 * A <CR> is never stored when it is read, only once the next byte is
 * known, so a line end split across two feed calls is seen as one. Runs
 * of ordinary bytes inside a line are found eight bytes at a time and
 * appended with one copy.
 */
#include "relay/relay_data.h"

#include <stdlib.h>
#include <string.h>

enum {
	RELAY_DATA_ST_BOL,
	RELAY_DATA_ST_TEXT,
	RELAY_DATA_ST_CR,
	RELAY_DATA_ST_DOT,
	RELAY_DATA_ST_DOT_CR,
	RELAY_DATA_ST_DONE,
};

/*
 * Longest line content: 1000 octets with the CRLF (RFC 5321 section
 * 4.5.3.1.6), not counting a dot removed by unstuffing.
 */
#define RELAY_DATA_LINE_MAX 998

/* First allocation of the message buffer. */
#define RELAY_DATA_CAP_MIN 4096

/* relay_data_special - bytes that end a run of ordinary line content. */
static const unsigned char relay_data_special[256] = {
    ['\0'] = 1,
    ['\n'] = 1,
    ['\r'] = 1,
};

/* relay_data_fail - record the first error of the message. */
static void relay_data_fail(struct relay_data *d, enum relay_data_err err)
{
	if (d->err == RELAY_DATA_OK)
		d->err = err;
}

/* relay_data_reserve - make room for n more bytes; false when out of memory. */
static bool relay_data_reserve(struct relay_data *d, size_t n)
{
	size_t cap;
	char *buf;

	if (d->cap - d->len >= n)
		return true;

	/* Double, but never far past the size limit: len stays <= max_size. */
	cap = d->cap ? d->cap : RELAY_DATA_CAP_MIN;
	while (cap - d->len < n) {
		if (cap > SIZE_MAX / 2)
			goto fail;
		cap *= 2;
	}
	if (d->max_size && cap > d->max_size && d->len + n <= d->max_size)
		cap = (size_t)d->max_size;

	buf = realloc(d->buf, cap);
	if (buf == NULL)
		goto fail;
	d->buf = buf;
	d->cap = cap;
	return true;

fail:
	relay_data_fail(d, RELAY_DATA_E_NOMEM);
	return false;
}

/* relay_data_append - copy n bytes of line content to the buffer. */
static void relay_data_append(struct relay_data *d, const char *p, size_t n)
{
	if (n == 0 || !relay_data_reserve(d, n))
		return;
	memcpy(d->buf + d->len, p, n);
	d->len += n;
	d->line_len += n;
}

/*
 * relay_data_put - append n bytes of line content. The first byte that
 * would break a limit fails the message, and what came before it is kept,
 * so that the stored bytes do not depend on how the input was split; a
 * byte that breaks both limits counts as a long line.
 */
static void relay_data_put(struct relay_data *d, const char *p, size_t n)
{
	size_t line_at = SIZE_MAX, size_at = SIZE_MAX;

	if (d->err != RELAY_DATA_OK)
		return;

	if (d->line_len + n > RELAY_DATA_LINE_MAX)
		line_at = RELAY_DATA_LINE_MAX - d->line_len;
	if (d->max_size && d->len + n > d->max_size)
		size_at = (size_t)(d->max_size - d->len);
	if (line_at == SIZE_MAX && size_at == SIZE_MAX) {
		relay_data_append(d, p, n);
		return;
	}

	/* The limit is the answer even if the prefix found no memory. */
	if (size_at < line_at) {
		relay_data_append(d, p, size_at);
		d->err = RELAY_DATA_E_SIZE;
	} else {
		relay_data_append(d, p, line_at);
		d->err = RELAY_DATA_E_LINE;
	}
}

/* relay_data_put_crlf - append a line end; note the end of the headers. */
static void relay_data_put_crlf(struct relay_data *d)
{
	if (d->err != RELAY_DATA_OK)
		return;

	if (d->max_size && d->len + 2 > d->max_size) {
		relay_data_fail(d, RELAY_DATA_E_SIZE);
		return;
	}
	if (!relay_data_reserve(d, 2))
		return;
	d->buf[d->len++] = '\r';
	d->buf[d->len++] = '\n';

	/* The first empty stored line separates header and body (RFC 5322
	 * section 2.1). */
	if (d->line_len == 0 && d->hdr_end == 0)
		d->hdr_end = d->len;
	d->line_len = 0;
}

/* relay_data_newline - enter the next line; real: after a sent CRLF. */
static void relay_data_newline(struct relay_data *d, bool real)
{
	d->state = d->bdat ? RELAY_DATA_ST_TEXT : RELAY_DATA_ST_BOL;
	d->real_crlf = real;
}

/* relay_data_bare_lf - a <LF> without <CR> before it. */
static void relay_data_bare_lf(struct relay_data *d)
{
	if (d->reject_bare)
		relay_data_fail(d, RELAY_DATA_E_BARE_LF);
	else
		relay_data_put_crlf(d);

	/* A line starts here for unstuffing, but it never follows a real
	 * CRLF, so "<LF>.<CR><LF>" cannot end the message. */
	relay_data_newline(d, false);
}

/* relay_data_bare_cr - a <CR> that was not followed by <LF>. */
static void relay_data_bare_cr(struct relay_data *d)
{
	if (d->reject_bare)
		relay_data_fail(d, RELAY_DATA_E_BARE_LF);
	else
		relay_data_put(d, "\r", 1);
	d->state = RELAY_DATA_ST_TEXT;
}

/* relay_data_run - length of the run of bytes at p that need no care. */
static size_t relay_data_run(const char *p, size_t n)
{
	const uint64_t ones = 0x0101010101010101ull;
	const uint64_t highs = 0x8080808080808080ull;
	uint64_t w, cr, lf;
	size_t i = 0;

	/* A word holds a NUL, CR or LF exactly when one of w, w^CR, w^LF
	 * has a zero byte; the tail loop then finds which byte it is. */
	for (; n - i >= 8; i += 8) {
		memcpy(&w, p + i, 8);
		cr = w ^ (ones * '\r');
		lf = w ^ (ones * '\n');
		if ((((w - ones) & ~w) | ((cr - ones) & ~cr) |
		     ((lf - ones) & ~lf)) &
		    highs)
			break;
	}
	while (i < n && !relay_data_special[(unsigned char)p[i]])
		i++;
	return i;
}

/* relay_data_text - consume line content up to a special byte. */
static const char *relay_data_text(struct relay_data *d, const char *p,
				   const char *end)
{
	size_t n;

	n = relay_data_run(p, (size_t)(end - p));
	relay_data_put(d, p, n);
	p += n;
	if (p == end)
		return p;

	switch (*p) {
	case '\r':
		d->state = RELAY_DATA_ST_CR;
		break;
	case '\n':
		relay_data_bare_lf(d);
		break;
	default:
		/* RFC 5321 section 4.5.2 leaves NUL undefined; refuse it. */
		relay_data_fail(d, RELAY_DATA_E_NUL);
		break;
	}
	return p + 1;
}

void relay_data_begin(struct relay_data *d, uint64_t max_size, bool reject_bare,
		      bool bdat)
{
	d->max_size = max_size;
	d->reject_bare = reject_bare;
	d->bdat = bdat;
	d->len = 0;
	d->hdr_end = 0;
	d->err = RELAY_DATA_OK;
	d->line_len = 0;

	/* DATA starts at the start of a line: the DATA command's own CRLF
	 * comes before it, so ".<CR><LF>" at once is an empty message. */
	relay_data_newline(d, true);
}

enum relay_data_status relay_data_feed(struct relay_data *d, const char *in,
				       size_t len, size_t *used)
{
	const char *p = in, *end = in + len;

	if (d->state == RELAY_DATA_ST_DONE) {
		*used = 0;
		return RELAY_DATA_END;
	}

	while (p < end) {
		switch (d->state) {
		case RELAY_DATA_ST_BOL:
			/* RFC 5321 section 4.5.2: a leading dot is removed;
			 * only one after a real CRLF may start the end. */
			d->state = RELAY_DATA_ST_TEXT;
			if (*p == '.') {
				p++;
				if (d->real_crlf)
					d->state = RELAY_DATA_ST_DOT;
			}
			break;
		case RELAY_DATA_ST_TEXT:
			p = relay_data_text(d, p, end);
			break;
		case RELAY_DATA_ST_CR:
			if (*p == '\n') {
				p++;
				relay_data_put_crlf(d);
				relay_data_newline(d, true);
			} else {
				relay_data_bare_cr(d);
			}
			break;
		case RELAY_DATA_ST_DOT:
			/* The dot is dropped; what follows is content, a
			 * bare <LF> included ("<CR><LF>.<LF>"). */
			d->state = RELAY_DATA_ST_TEXT;
			if (*p == '\r') {
				p++;
				d->state = RELAY_DATA_ST_DOT_CR;
			}
			break;
		case RELAY_DATA_ST_DOT_CR:
			if (*p == '\n') {
				d->state = RELAY_DATA_ST_DONE;
				*used = (size_t)(p + 1 - in);
				return RELAY_DATA_END;
			}

			/* "<CR><LF>.<CR>" and anything but <LF>: the <CR>
			 * was bare, the line goes on. */
			relay_data_bare_cr(d);
			break;
		default:
			*used = (size_t)(p - in);
			return RELAY_DATA_END;
		}
	}

	*used = len;
	return RELAY_DATA_MORE;
}

void relay_data_finish(struct relay_data *d)
{
	if (!d->bdat || d->state == RELAY_DATA_ST_DONE)
		return;

	/* A <CR> at the very end has no <LF> after it: it is bare. */
	if (d->state == RELAY_DATA_ST_CR)
		relay_data_bare_cr(d);

	/* An empty message stays empty; otherwise the last line is closed. */
	if (d->line_len > 0)
		relay_data_put_crlf(d);
	d->state = RELAY_DATA_ST_DONE;
}

char *relay_data_take(struct relay_data *d, size_t *len)
{
	char *buf = d->buf;

	/* A caller that frees what it got needs a pointer even for an empty
	 * message. */
	if (buf == NULL)
		buf = malloc(1);
	*len = buf ? d->len : 0;

	d->buf = NULL;
	d->len = 0;
	d->cap = 0;
	d->hdr_end = 0;
	return buf;
}

void relay_data_free(struct relay_data *d)
{
	free(d->buf);
	d->buf = NULL;
	d->len = 0;
	d->cap = 0;
}

const char *relay_data_reply(enum relay_data_err err)
{
	switch (err) {
	case RELAY_DATA_OK:
		return NULL;
	case RELAY_DATA_E_SIZE:
		return "552 5.3.4 Message size exceeds fixed limit";
	case RELAY_DATA_E_LINE:
		return "500 5.5.2 Line too long";
	case RELAY_DATA_E_NUL:
		return "500 5.5.2 Message contains NUL characters";
	case RELAY_DATA_E_BARE_LF:
		return "550 5.5.2 Message contains bare <CR> or <LF>";
	case RELAY_DATA_E_NOMEM:
		return "451 4.3.0 Out of memory";
	}
	return "451 4.3.0 Error in processing";
}
