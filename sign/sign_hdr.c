/*
 * sign_hdr - header fields for DKIM: splitting, choosing for h=, and the
 * From address.
 */
#include "sign/sign_hdr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* hdr_line_end - offset just past the LF of the line at i, or len. */
static size_t hdr_line_end(const char *b, size_t len, size_t i)
{
	const char *lf = memchr(b + i, '\n', len - i);

	return lf ? (size_t)(lf - b) + 1 : len;
}

/* sign_hdr_split - one pass, each field with its continuation lines. */
int sign_hdr_split(const char *blk, size_t len, struct sign_hdr_field **out,
		   size_t *n)
{
	struct sign_hdr_field *v = NULL, *nv;
	size_t cap = 0, cnt = 0, i = 0;

	while (i < len) {
		size_t start = i, end = hdr_line_end(blk, len, i);
		const char *colon;

		/* Continuation lines belong to this field (RFC 5322
		 * 2.2.3). */
		while (end < len && (blk[end] == ' ' || blk[end] == '\t'))
			end = hdr_line_end(blk, len, end);
		i = end;
		colon = memchr(blk + start, ':', end - start);
		if (!colon || blk[start] == ' ' || blk[start] == '\t')
			continue;

		if (cnt == cap) {
			cap = cap ? cap * 2 : 32;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				goto fail;
			v = nv;
		}
		v[cnt].p = blk + start;
		v[cnt].len = end - start;
		v[cnt].nlen = (size_t)(colon - (blk + start));
		while (v[cnt].nlen && (v[cnt].p[v[cnt].nlen - 1] == ' ' ||
				       v[cnt].p[v[cnt].nlen - 1] == '\t'))
			v[cnt].nlen--;
		v[cnt].used = false;
		cnt++;
	}
	*out = v;
	*n = cnt;
	return 0;

fail:
	free(v);
	return -ENOMEM;
}

/* sign_hdr_is - name comparison, ASCII case-insensitive. */
bool sign_hdr_is(const struct sign_hdr_field *f, const char *name, size_t nlen)
{
	return f->nlen == nlen && strncasecmp(f->p, name, nlen) == 0;
}

/* sign_hdr_count - occurrences of name. */
size_t sign_hdr_count(const struct sign_hdr_field *v, size_t n,
		      const char *name, size_t nlen)
{
	size_t i, c = 0;

	for (i = 0; i < n; i++)
		c += sign_hdr_is(&v[i], name, nlen);
	return c;
}

/* sign_hdr_pick - bottom-up, each instance once. */
struct sign_hdr_field *sign_hdr_pick(struct sign_hdr_field *v, size_t n,
				     const char *name, size_t nlen)
{
	size_t i;

	for (i = n; i-- > 0;) {
		if (!v[i].used && sign_hdr_is(&v[i], name, nlen)) {
			v[i].used = true;
			return &v[i];
		}
	}
	return NULL;
}

/* sign_hdr_value - the bytes after the colon, final CRLF excluded. */
void sign_hdr_value(const struct sign_hdr_field *f, const char **val,
		    size_t *vlen)
{
	const char *colon = memchr(f->p, ':', f->len);
	size_t l;

	*val = colon + 1;
	l = f->len - (size_t)(*val - f->p);
	if (l && (*val)[l - 1] == '\n')
		l--;
	if (l && (*val)[l - 1] == '\r')
		l--;
	*vlen = l;
}

/*
 * hdr_strip_comments - copy val without comments (nested, with quoted
 * pairs; RFC 5322 3.2.2) and without CR/LF; quoted strings are copied
 * as they are, quotes included, so that what they hold is never taken
 * for syntax. Each comment becomes one space.
 */
static size_t hdr_strip_comments(const char *val, size_t vlen, char *out)
{
	size_t i, n = 0;
	int depth = 0;
	bool quoted = false;

	for (i = 0; i < vlen; i++) {
		char c = val[i];

		if (c == '\r' || c == '\n')
			continue;
		if (c == '\\' && i + 1 < vlen) {
			if (!depth) {
				out[n++] = c;
				out[n++] = val[i + 1];
			}
			i++;
			continue;
		}
		if (quoted) {
			out[n++] = c;
			if (c == '"')
				quoted = false;
			continue;
		}
		if (c == '(') {
			if (!depth++)
				out[n++] = ' ';
			continue;
		}
		if (depth) {
			if (c == ')')
				depth--;
			continue;
		}
		if (c == '"')
			quoted = true;
		out[n++] = c;
	}
	out[n] = '\0';
	return n;
}

/* hdr_find - first c in s[0..n) outside quoted strings, or NULL. */
static char *hdr_find(char *s, size_t n, char c)
{
	bool quoted = false;
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n) {
			i++;
			continue;
		}
		if (s[i] == '"')
			quoted = !quoted;
		else if (!quoted && s[i] == c)
			return s + i;
	}
	return NULL;
}

/* hdr_rfind - last c in s[0..n) outside quoted strings, or NULL. */
static char *hdr_rfind(char *s, size_t n, char c)
{
	bool quoted = false;
	char *last = NULL;
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n) {
			i++;
			continue;
		}
		if (s[i] == '"')
			quoted = !quoted;
		else if (!quoted && s[i] == c)
			last = s + i;
	}
	return last;
}

/* hdr_trim - drop white space at both ends of s[0..*n). */
static char *hdr_trim(char *s, size_t *n)
{
	while (*n && (*s == ' ' || *s == '\t')) {
		s++;
		(*n)--;
	}
	while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
		(*n)--;
	return s;
}

/* hdr_lower - ASCII lower case in place. */
static void hdr_lower(char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] >= 'A' && s[i] <= 'Z')
			s[i] = (char)(s[i] + 32);
}

/* sign_hdr_from_addr - see sign_hdr.h for what is handled. */
int sign_hdr_from_addr(const char *val, size_t vlen, char *addr, size_t addrlen,
		       char *dom, size_t domlen)
{
	char *buf, *s, *p, *at;
	size_t n, dl;
	int r = -EINVAL;

	buf = malloc(vlen * 2 + 2);
	if (!buf)
		return -ENOMEM;
	n = hdr_strip_comments(val, vlen, buf);
	s = buf;

	/* An angle-addr wins over everything around it; otherwise skip
	 * a group's display name ("Team: a@b, c@d;") and take the first
	 * mailbox of the list. */
	p = hdr_find(s, n, '<');
	if (p) {
		char *gt = hdr_find(p + 1, n - (size_t)(p + 1 - s), '>');

		if (!gt)
			goto fail;
		n = (size_t)(gt - (p + 1));
		s = p + 1;
	} else {
		p = hdr_find(s, n, ':');
		if (p) {
			n -= (size_t)(p + 1 - s);
			s = p + 1;
		}
		p = hdr_find(s, n, ',');
		if (p)
			n = (size_t)(p - s);
		p = hdr_find(s, n, ';');
		if (p)
			n = (size_t)(p - s);
	}

	/* An obsolete source route "@a,@b:" precedes the addr-spec. */
	p = hdr_rfind(s, n, ':');
	if (p) {
		n -= (size_t)(p + 1 - s);
		s = p + 1;
	}
	s = hdr_trim(s, &n);
	at = hdr_rfind(s, n, '@');
	if (!at || at == s)
		goto fail;

	/* The domain: no white space, no empty labels at the ends. */
	p = at + 1;
	dl = n - (size_t)(p - s);
	p = hdr_trim(p, &dl);
	while (dl && p[dl - 1] == '.')
		dl--;
	if (!dl || memchr(p, ' ', dl) || memchr(p, '\t', dl) || *p == '.')
		goto fail;
	if (dl + 1 > domlen || (size_t)(at - s) + 1 + dl + 1 > addrlen) {
		r = -ENAMETOOLONG;
		goto fail;
	}
	hdr_lower(p, dl);
	memcpy(dom, p, dl);
	dom[dl] = '\0';
	hdr_lower(s, (size_t)(at - s));
	memcpy(addr, s, (size_t)(at - s) + 1);
	memcpy(addr + (at - s) + 1, p, dl);
	addr[(at - s) + 1 + dl] = '\0';
	r = 0;

fail:
	free(buf);
	return r;
}
