/*
 * sign_canon - DKIM canonicalisation, simple and relaxed, for header
 * fields and for a streamed body (RFC 6376 section 3.4).
 */
#include "sign/sign_canon.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

/* Bytes are gathered here before SHA256_Update, which is slow per byte. */
#define CANON_OBUF 4096

struct canon_out {
	struct sign_canon_body *b;
	size_t n;
	uint8_t buf[CANON_OBUF];
};

/* sign_canon_parse - split "hdr/body" into algorithm numbers. */
int sign_canon_parse(const char *s, int *hdr, int *body)
{
	const char *slash = strchr(s, '/');
	size_t hl = slash ? (size_t)(slash - s) : strlen(s);
	int a[2] = {SIGN_CANON_SIMPLE, SIGN_CANON_SIMPLE};
	const char *w[2] = {s, slash ? slash + 1 : NULL};
	size_t wl[2] = {hl, slash ? strlen(slash + 1) : 0};
	int i;

	for (i = 0; i < 2; i++) {
		if (!w[i])
			continue;
		if (wl[i] == 6 && strncasecmp(w[i], "simple", 6) == 0)
			a[i] = SIGN_CANON_SIMPLE;
		else if (wl[i] == 7 && strncasecmp(w[i], "relaxed", 7) == 0)
			a[i] = SIGN_CANON_RELAXED;
		else
			return -EINVAL;
	}
	*hdr = a[0];
	*body = a[1];
	return 0;
}

/* sign_canon_name - the c= word for alg. */
const char *sign_canon_name(int alg)
{
	return alg == SIGN_CANON_RELAXED ? "relaxed" : "simple";
}

/* sign_canon_body_init - empty state, hash started. */
void sign_canon_body_init(struct sign_canon_body *b, int alg)
{
	memset(b, 0, sizeof(*b));
	b->alg = alg;
	SHA256_Init(&b->sha);
}

/* canon_flush - hand the gathered bytes to the hash. */
static void canon_flush(struct canon_out *o)
{
	if (o->n) {
		SHA256_Update(&o->b->sha, o->buf, o->n);
		o->b->out += o->n;
		o->n = 0;
	}
}

/* canon_put - gather one byte. */
static void canon_put(struct canon_out *o, uint8_t c)
{
	if (o->n == CANON_OBUF)
		canon_flush(o);
	o->buf[o->n++] = c;
}

/*
 * canon_content - a byte that belongs to a line's content: the line ends
 * and white space held back so far are now known not to be trailing, so
 * they are hashed first (relaxed turns the white space run into one SP).
 */
static void canon_content(struct canon_out *o, uint8_t c)
{
	struct sign_canon_body *b = o->b;

	for (; b->crlf; b->crlf--) {
		canon_put(o, '\r');
		canon_put(o, '\n');
	}
	if (b->wsp) {
		canon_put(o, ' ');
		b->wsp = false;
	}
	canon_put(o, c);
	b->content = true;
}

/* sign_canon_body_update - one pass over the chunk, state kept in b. */
void sign_canon_body_update(struct sign_canon_body *b, const void *p,
			    size_t len)
{
	const uint8_t *s = p;
	struct canon_out o;
	size_t i;

	o.b = b;
	o.n = 0;
	for (i = 0; i < len; i++) {
		uint8_t c = s[i];

		/* A CR is only known to end a line when the LF follows,
		 * possibly in the next chunk. */
		if (b->cr) {
			b->cr = false;
			if (c == '\n') {
				/* Relaxed ignores white space at line end
				 * (RFC 6376 3.4.4 a); both hold empty
				 * lines back until content follows (3.4.3,
				 * 3.4.4 b). */
				b->wsp = false;
				b->crlf++;
				continue;
			}
			canon_content(&o, '\r');
		}
		if (c == '\r') {
			b->cr = true;
			continue;
		}
		if (b->alg == SIGN_CANON_RELAXED && (c == ' ' || c == '\t')) {
			b->wsp = true;
			continue;
		}
		canon_content(&o, c);
	}
	canon_flush(&o);
}

/*
 * sign_canon_body_final - settle what is held back: a pending CR is
 * content; trailing empty lines are dropped; a body with content ends in
 * exactly one CRLF (added if missing); an empty body is one CRLF under
 * simple (3.4.3) and nothing under relaxed (3.4.4).
 */
void sign_canon_body_final(struct sign_canon_body *b, uint8_t md[32])
{
	struct canon_out o;

	o.b = b;
	o.n = 0;
	if (b->cr) {
		b->cr = false;
		canon_content(&o, '\r');
	}
	b->wsp = false;
	b->crlf = 0;
	if (b->content || b->alg == SIGN_CANON_SIMPLE) {
		canon_put(&o, '\r');
		canon_put(&o, '\n');
	}
	canon_flush(&o);
	SHA256_Final(md, &b->sha);
}

/* canon_wsp - white space as RFC 5234 WSP. */
static bool canon_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* canon_header_relaxed - RFC 6376 3.4.2, steps in order. */
static size_t canon_header_relaxed(const char *f, size_t len, char *out)
{
	const char *colon = memchr(f, ':', len);
	size_t nlen = colon ? (size_t)(colon - f) : len;
	size_t i, n = 0;
	bool wsp = false, started = false;

	/* The name, lower-cased, without white space before the colon. */
	while (nlen && canon_wsp(f[nlen - 1]))
		nlen--;
	for (i = 0; i < nlen; i++) {
		char c = f[i];

		out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
	}
	out[n++] = ':';
	if (!colon)
		goto done;

	/* The value unfolded (CRLFs removed), runs of white space made
	 * one SP, none kept at either end. */
	for (i = (size_t)(colon - f) + 1; i < len; i++) {
		char c = f[i];

		if (c == '\r' && i + 1 < len && f[i + 1] == '\n')
			continue;
		if (c == '\n')
			continue;
		if (canon_wsp(c)) {
			wsp = true;
			continue;
		}
		if (wsp && started)
			out[n++] = ' ';
		wsp = false;
		started = true;
		out[n++] = c;
	}

done:
	out[n++] = '\r';
	out[n++] = '\n';
	return n;
}

/* sign_canon_header - one field, either algorithm. */
size_t sign_canon_header(int alg, const char *field, size_t len, char *out)
{
	if (alg == SIGN_CANON_RELAXED)
		return canon_header_relaxed(field, len, out);
	memcpy(out, field, len);
	if (len < 2 || field[len - 2] != '\r' || field[len - 1] != '\n') {
		out[len++] = '\r';
		out[len++] = '\n';
	}
	return len;
}
