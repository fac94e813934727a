/*
 * bench_msg - newsletter template and per-recipient rendering; see
 * bench_msg.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_msg.h"

/* Longest formatted variable; the header promises max_len from it. */
#define BENCH_MSG_VAR_MAX 96

/* A variable in the template text: this byte, then its letter. */
#define BENCH_MSG_MARK '\001'

#define BENCH_MSG_BOUNDARY "=_waxseal_bench_7d41c0"

/* Prose for the padding; no line of it may start with a dot. */
static const char bench_msg_prose[] =
    "This week the relay team moved the spool to append-only segments "
    "and measured how many messages one disk flush can carry. Readers "
    "asked why a newsletter needs its own outbound relay: the answer is "
    "that every destination sets its own pace, and a sender that keeps "
    "to it is a sender whose mail arrives. In other news, the signing "
    "pool now keeps one key per thread, the scheduler learned to back "
    "off politely after a temporary failure, and our benchmark grew a "
    "load generator that speaks pipelined SMTP over many persistent "
    "connections. Thank you for reading, and see you next week with "
    "more notes from the machine room. ";

struct bench_msg_buf {
	char *p;
	size_t len, cap;
	int err;
};

/* bench_msg_put - append formatted text to the template being built. */
static void bench_msg_put(struct bench_msg_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->err)
		return;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->err = -EINVAL;
			return;
		}
		if ((size_t)n < b->cap - b->len)
			break;

		/* Grow and format again. */
		size_t cap = (b->cap + (size_t)n + 1) * 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	b->len += (size_t)n;
}

/*
 * bench_msg_fill - append exactly n bytes (n == 1 gives none) of prose
 * lines of at most 76 characters, each ending in CRLF; lines break at
 * words except the last, which is cut to make the size exact.
 */
static void bench_msg_fill(struct bench_msg_buf *b, size_t n)
{
	const size_t plen = sizeof(bench_msg_prose) - 1;
	size_t pos = 0;
	char line[80];

	while (n >= 2) {
		size_t want = n - 2 > 76 ? 76 : n - 2;
		size_t i;

		/* Start lines on a word, never on a dot (no dot-stuffing). */
		while (strchr(" .,:", bench_msg_prose[pos % plen]))
			pos++;
		for (i = 0; i < want; i++)
			line[i] = bench_msg_prose[(pos + i) % plen];

		/* Break at a word unless this is the last line. */
		if (n - 2 > 76) {
			size_t cut = want;
			while (cut > 40 && line[cut - 1] != ' ')
				cut--;
			if (cut > 40)
				want = cut - 1;
		}

		/* Leave no lone byte behind: a CRLF needs two. */
		if (n - 2 - want == 1)
			want--;
		if (want > 0 && line[want - 1] == ' ')
			line[want - 1] = '.';
		pos += want;
		bench_msg_put(b, "%.*s\r\n", (int)want, line);
		n -= want + 2;
	}
}

/* bench_msg_build - write the template text with the given padding. */
static void bench_msg_build(struct bench_msg_buf *b, size_t pad_text,
			    size_t pad_html)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;

	/* One Date for the run: a newsletter goes out as one mailing. */
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);

	bench_msg_put(b,
		      "From: \"Waxseal Weekly\" <news@\001S>\r\n"
		      "To: <\001T>\r\n"
		      "Subject: Waxseal Weekly: notes from the machine room\r\n"
		      "Date: %s\r\n"
		      "Message-ID: <\001M>\r\n"
		      "MIME-Version: 1.0\r\n"
		      "List-Unsubscribe: <https://news.\001S/u/\001K>,\r\n"
		      " <mailto:unsubscribe+\001K@\001S>\r\n"
		      "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
		      "Content-Type: multipart/alternative;\r\n"
		      " boundary=\"" BENCH_MSG_BOUNDARY "\"\r\n"
		      "\r\n"
		      "This is a multi-part message in MIME format.\r\n"
		      "\r\n",
		      date);

	bench_msg_put(b, "--" BENCH_MSG_BOUNDARY "\r\n"
			 "Content-Type: text/plain; charset=utf-8\r\n"
			 "Content-Transfer-Encoding: 7bit\r\n"
			 "\r\n"
			 "Hello \001T,\r\n"
			 "\r\n");
	bench_msg_fill(b, pad_text);
	bench_msg_put(b, "\r\n"
			 "Unsubscribe: https://news.\001S/u/\001K\r\n"
			 "\r\n");

	bench_msg_put(b, "--" BENCH_MSG_BOUNDARY "\r\n"
			 "Content-Type: text/html; charset=utf-8\r\n"
			 "Content-Transfer-Encoding: 7bit\r\n"
			 "\r\n"
			 "<!DOCTYPE html>\r\n"
			 "<html><head><meta charset=\"utf-8\">"
			 "<title>Waxseal Weekly</title></head>\r\n"
			 "<body>\r\n"
			 "<p>Hello \001T,</p>\r\n"
			 "<p>\r\n");
	bench_msg_fill(b, pad_html);
	bench_msg_put(b, "</p>\r\n"
			 "<p><a href=\"https://news.\001S/u/\001K\">"
			 "Unsubscribe</a></p>\r\n"
			 "</body></html>\r\n"
			 "\r\n"
			 "--" BENCH_MSG_BOUNDARY "--\r\n");
}

/* bench_msg_split - cut the template text into segments at its marks. */
static int bench_msg_split(struct bench_msg *m, size_t len)
{
	size_t i, start = 0, n = 0, nvars = 0;

	for (i = 0; i < len; i++)
		if (m->text[i] == BENCH_MSG_MARK)
			nvars++;
	m->segs = calloc(2 * nvars + 1, sizeof(*m->segs));
	if (!m->segs)
		return -ENOMEM;

	for (i = 0; i < len; i++) {
		if (m->text[i] != BENCH_MSG_MARK)
			continue;
		if (i > start)
			m->segs[n++] = (struct bench_msg_seg){
			    m->text + start, (uint32_t)(i - start), 0};
		m->segs[n++] = (struct bench_msg_seg){NULL, 0, m->text[i + 1]};
		start = i + 2;
		i++;
	}
	if (len > start)
		m->segs[n++] = (struct bench_msg_seg){
		    m->text + start, (uint32_t)(len - start), 0};
	m->nsegs = n;

	/* Fixed bytes, every variable at its longest, and ".\r\n". */
	m->max_len = len - 2 * nvars + nvars * BENCH_MSG_VAR_MAX + 3;
	return 0;
}

/* bench_msg_mix - scramble a number into an unsubscribe token. */
static uint64_t bench_msg_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* bench_msg_rcpt - format one recipient address. */
int bench_msg_rcpt(char *out, size_t outlen, uint64_t r, unsigned domain)
{
	return snprintf(out, outlen, "user%" PRIu64 "@example%u.test", r,
			domain);
}

/* bench_msg_render - write one personalised message and ".\r\n". */
size_t bench_msg_render(const struct bench_msg *m,
			const struct bench_msg_vars *v, char *out)
{
	char to[BENCH_MSG_VAR_MAX], tok[BENCH_MSG_VAR_MAX];
	char mid[BENCH_MSG_VAR_MAX], snd[BENCH_MSG_VAR_MAX];
	size_t tolen, toklen, midlen, sndlen, len = 0, i;
	uint64_t t = bench_msg_mix(v->seq ^ m->seed);

	/* Format each variable once; some appear several times. */
	tolen = (size_t)bench_msg_rcpt(to, sizeof(to), v->rcpt, v->domain);
	toklen = (size_t)snprintf(tok, sizeof(tok), "%016" PRIx64, t);
	sndlen = (size_t)snprintf(snd, sizeof(snd), "sender%u.test", v->sender);
	midlen =
	    (size_t)snprintf(mid, sizeof(mid), "%" PRIu64 ".%08" PRIx32 "@%s",
			     v->seq, (uint32_t)t, snd);

	for (i = 0; i < m->nsegs; i++) {
		const struct bench_msg_seg *s = &m->segs[i];
		const char *p = s->p;
		size_t n = s->len;

		switch (s->var) {
		case 'T':
			p = to, n = tolen;
			break;
		case 'K':
			p = tok, n = toklen;
			break;
		case 'M':
			p = mid, n = midlen;
			break;
		case 'S':
			p = snd, n = sndlen;
			break;
		}
		memcpy(out + len, p, n);
		len += n;
	}
	memcpy(out + len, ".\r\n", 3);
	return len + 3;
}

/* bench_msg_make - build and split a template with the given padding. */
static int bench_msg_make(struct bench_msg *m, size_t pad_text, size_t pad_html)
{
	struct bench_msg_buf b = {0};
	struct bench_msg_vars v = {123456, 123456, 7, 3};
	char *tmp = NULL;
	int err;

	bench_msg_build(&b, pad_text, pad_html);
	if (b.err) {
		err = b.err;
		goto fail;
	}
	m->text = b.p;
	b.p = NULL;
	err = bench_msg_split(m, b.len);
	if (err)
		goto fail;

	/* Measure a typical message, without the ".\r\n" that ends DATA. */
	tmp = malloc(m->max_len);
	if (!tmp) {
		err = -ENOMEM;
		goto fail;
	}
	m->typical_len = bench_msg_render(m, &v, tmp) - 3;
	free(tmp);
	return 0;

fail:
	free(b.p);
	bench_msg_free(m);
	return err;
}

/* bench_msg_init - build the template for messages of about size bytes. */
int bench_msg_init(struct bench_msg *m, size_t size, uint64_t seed)
{
	size_t pad;
	int err;

	memset(m, 0, sizeof(*m));
	m->seed = seed;

	/* Build once unpadded to learn how much prose the size needs. */
	err = bench_msg_make(m, 0, 0);
	if (err)
		return err;
	if (size <= m->typical_len)
		return 0;

	pad = size - m->typical_len;
	bench_msg_free(m);
	m->seed = seed;
	return bench_msg_make(m, pad / 2, pad - pad / 2);
}

/* bench_msg_free - release the template. */
void bench_msg_free(struct bench_msg *m)
{
	free(m->text);
	free(m->segs);
	m->text = NULL;
	m->segs = NULL;
	m->nsegs = 0;
}
