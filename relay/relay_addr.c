/*
 * relay_addr - syntax of MAIL FROM / RCPT TO paths and their ESMTP
 * parameters; see relay_addr.h for the contract.
 *
 * The parsers walk the argument once, left to right, with a cursor and
 * an end pointer; nothing is copied until the whole path is known to be
 * good. Grammar references are to RFC 5321 section 4.1.2 unless said
 * otherwise; RFC 6531 section 3.3 adds UTF8-non-ascii to atext,
 * qtextSMTP and sub-domain when SMTPUTF8 is in force.
 */
#include "relay/relay_addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Cursor over the argument. */
struct relay_addr_cur {
	const char *p, *end;
	bool utf8;
	const char *why;
};

/* Longest label of a domain name (RFC 1035 section 2.3.4). */
#define RELAY_ADDR_LABEL_MAX 63

/* relay_addr_fail - note why parsing stopped; returns -EINVAL. */
static int relay_addr_fail(struct relay_addr_cur *c, const char *why)
{
	c->why = why;
	return -EINVAL;
}

/* relay_addr_alpha - ALPHA of RFC 5234. */
static bool relay_addr_alpha(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* relay_addr_letdig - Let-dig: ALPHA / DIGIT. */
static bool relay_addr_letdig(unsigned char ch)
{
	return relay_addr_alpha(ch) || (ch >= '0' && ch <= '9');
}

/* relay_addr_atext - atext of RFC 5322 section 3.2.3, ASCII part. */
static bool relay_addr_atext(unsigned char ch)
{
	return relay_addr_letdig(ch) ||
	       (ch != 0 && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL);
}

/*
 * relay_addr_utf8 - length of the well-formed UTF-8 sequence of a
 * non-ASCII character at p (RFC 3629 section 4: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0.
 */
static size_t relay_addr_utf8(const char *p, const char *end)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t n, i, left = (size_t)(end - p);
	unsigned char lo = 0x80, hi = 0xbf;

	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		if (s[0] == 0xe0)
			lo = 0xa0;
		else if (s[0] == 0xed)
			hi = 0x9f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		if (s[0] == 0xf0)
			lo = 0x90;
		else if (s[0] == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (left < n)
		return 0;

	/* Only the second byte has a narrowed range. */
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/*
 * relay_addr_8bit - step over one non-ASCII character at the cursor:
 * 0, or -EINVAL when SMTPUTF8 is off or the bytes are not UTF-8.
 */
static int relay_addr_8bit(struct relay_addr_cur *c)
{
	size_t n;

	if (!c->utf8)
		return relay_addr_fail(c, "non-ASCII address without SMTPUTF8");
	n = relay_addr_utf8(c->p, c->end);
	if (n == 0)
		return relay_addr_fail(c, "malformed UTF-8 in address");
	c->p += n;
	return 0;
}

/* relay_addr_dot_string - Dot-string: Atom *("." Atom). */
static int relay_addr_dot_string(struct relay_addr_cur *c)
{
	const char *atom;
	int rc;

	for (;;) {
		atom = c->p;
		while (c->p < c->end) {
			unsigned char ch = (unsigned char)*c->p;

			if (ch >= 0x80) {
				rc = relay_addr_8bit(c);
				if (rc < 0)
					return rc;
			} else if (relay_addr_atext(ch)) {
				c->p++;
			} else {
				break;
			}
		}

		/* An empty atom is a leading, trailing or doubled dot. */
		if (c->p == atom)
			return relay_addr_fail(c, "bad local part");
		if (c->p == c->end || *c->p != '.')
			return 0;
		c->p++;
	}
}

/*
 * relay_addr_quoted - Quoted-string: DQUOTE *(qtextSMTP /
 * quoted-pairSMTP) DQUOTE; "@", "%" and "!" are ordinary qtext here.
 */
static int relay_addr_quoted(struct relay_addr_cur *c)
{
	unsigned char ch;
	int rc;

	c->p++;
	while (c->p < c->end) {
		ch = (unsigned char)*c->p;
		if (ch == '"') {
			c->p++;
			return 0;
		}

		if (ch == '\\') {
			/* quoted-pairSMTP = %d92 %d32-126 */
			c->p++;
			if (c->p == c->end || *c->p < 32 || *c->p > 126)
				return relay_addr_fail(c, "bad quoted pair");
			c->p++;
		} else if (ch >= 0x80) {
			rc = relay_addr_8bit(c);
			if (rc < 0)
				return rc;
		} else if (ch >= 32 && ch <= 126) {
			c->p++;
		} else {
			return relay_addr_fail(c, "bad character in quotes");
		}
	}
	return relay_addr_fail(c, "unterminated quoted string");
}

/* relay_addr_cp - the code point of the valid UTF-8 sequence at s. */
static uint32_t relay_addr_cp(const unsigned char *s, size_t n)
{
	static const uint8_t lead[5] = {0, 0x7f, 0x1f, 0x0f, 0x07};
	uint32_t cp = s[0] & lead[n];

	for (size_t i = 1; i < n; i++)
		cp = cp << 6 | (s[i] & 0x3fu);
	return cp;
}

/* relay_addr_adapt - RFC 3492 section 6.1's bias adaptation. */
static uint32_t relay_addr_adapt(uint32_t delta, uint32_t npoints, bool first)
{
	uint32_t k = 0;

	delta = first ? delta / 700 : delta / 2;
	delta += delta / npoints;
	while (delta > (36 - 1) * 26 / 2) {
		delta /= 36 - 1;
		k += 36;
	}
	return k + 36 * delta / (delta + 38);
}

/*
 * relay_addr_alabel_len - the length of the A-label ("xn--" and the
 * Punycode of RFC 3492) of the U-label s[0..n), valid UTF-8; more than
 * RELAY_ADDR_LABEL_MAX when it cannot fit. Only the length is computed:
 * the encoder of section 6.3, counting what it would write.
 */
static size_t relay_addr_alabel_len(const char *s, size_t n)
{
	uint32_t cp[RELAY_ADDR_LABEL_MAX], m, next = 0x80, delta = 0;
	uint32_t bias = 72, h, b = 0;
	size_t ncp = 0, out, i, len;

	/* Every code point costs at least one octet of the A-label. */
	for (i = 0; i < n; i += len) {
		len = (unsigned char)s[i] < 0x80
			  ? 1
			  : relay_addr_utf8(s + i, s + n);
		if (ncp == RELAY_ADDR_LABEL_MAX - 4 || len == 0)
			return RELAY_ADDR_LABEL_MAX + 1;
		cp[ncp] = relay_addr_cp((const unsigned char *)s + i, len);
		b += cp[ncp++] < 0x80;
	}

	/* The basic code points, then "-" when there were any. */
	out = 4 + b + (b > 0);
	h = b;
	while (h < ncp) {
		/* The next code point to insert, and its deltas. */
		m = UINT32_MAX;
		for (i = 0; i < ncp; i++)
			if (cp[i] >= next && cp[i] < m)
				m = cp[i];
		delta += (m - next) * (h + 1);
		next = m;
		for (i = 0; i < ncp; i++) {
			uint32_t q, k, t;

			if (cp[i] < next)
				delta++;
			if (cp[i] != next)
				continue;

			/* One variable-length integer for delta. */
			for (q = delta, k = 36;; k += 36) {
				t = k <= bias	     ? 1
				    : k >= bias + 26 ? 26
						     : k - bias;
				if (q < t)
					break;
				out++;
				q = (q - t) / (36 - t);
			}
			out++;
			bias = relay_addr_adapt(delta, h + 1, h == b);
			delta = 0;
			h++;
		}
		delta++;
		next++;
	}
	return out;
}

/*
 * relay_addr_label - one sub-domain: Let-dig [Ldh-str], or a U-label
 * (RFC 6531) under SMTPUTF8; no hyphen at either end. *wire is its
 * length in the DNS: the A-label's for a U-label (RFC 5890 section
 * 2.3.2.1 limits that form to 63 octets).
 * XXX: a U-label is not checked against IDNA2008 (RFC 5891), so some
 * invalid ones pass.
 */
static int relay_addr_label(struct relay_addr_cur *c, size_t *wire)
{
	const char *start = c->p;
	unsigned char ch;
	bool u = false;
	int rc;

	while (c->p < c->end) {
		ch = (unsigned char)*c->p;
		if (ch >= 0x80) {
			rc = relay_addr_8bit(c);
			if (rc < 0)
				return rc;
			u = true;
		} else if (relay_addr_letdig(ch) || ch == '-') {
			c->p++;
		} else {
			break;
		}
	}

	if (c->p == start)
		return relay_addr_fail(c, "bad domain");
	*wire = u ? relay_addr_alabel_len(start, (size_t)(c->p - start))
		  : (size_t)(c->p - start);
	if (*wire > RELAY_ADDR_LABEL_MAX)
		return relay_addr_fail(c, "domain label too long");
	if (*start == '-' || c->p[-1] == '-')
		return relay_addr_fail(c, "bad domain");
	return 0;
}

/* relay_addr_domain_name - Domain: sub-domain *("." sub-domain). */
static int relay_addr_domain_name(struct relay_addr_cur *c)
{
	size_t wire, total = 0;
	int rc;

	/* The limit is on the name as the DNS carries it (A-labels). */
	for (;;) {
		rc = relay_addr_label(c, &wire);
		if (rc < 0)
			return rc;
		total += wire;
		if (c->p == c->end || *c->p != '.')
			break;
		c->p++;
		total++;
	}

	if (total > RELAY_ADDR_DOMAIN_MAX)
		return relay_addr_fail(c, "domain too long");
	return 0;
}

/*
 * relay_addr_literal - address-literal: "[" IPv4 "]" or "[IPv6:" IPv6
 * "]", checked with inet_pton. General-address-literal (a registered
 * tag) names no transport waxseal can reach, so it is refused.
 */
static int relay_addr_literal(struct relay_addr_cur *c)
{
	char addr[INET6_ADDRSTRLEN];
	unsigned char bin[16];
	const char *close, *s;
	size_t n;
	int af = AF_INET;

	c->p++;
	close = memchr(c->p, ']', (size_t)(c->end - c->p));
	if (close == NULL)
		return relay_addr_fail(c, "unterminated address literal");

	/* The "IPv6:" tag is an ABNF string, so case-insensitive. */
	s = c->p;
	n = (size_t)(close - s);
	if (n >= 5 && strncasecmp(s, "IPv6:", 5) == 0) {
		af = AF_INET6;
		s += 5;
		n -= 5;
	}
	if (n == 0 || n >= sizeof(addr))
		return relay_addr_fail(c, "bad address literal");

	/* inet_pton stops at a NUL: only address characters may reach it. */
	if (strspn(s, "0123456789abcdefABCDEF.:") < n)
		return relay_addr_fail(c, "bad address literal");
	memcpy(addr, s, n);
	addr[n] = '\0';
	if (inet_pton(af, addr, bin) != 1)
		return relay_addr_fail(c, "bad address literal");

	c->p = close + 1;
	return 0;
}

/* relay_addr_mailbox - Mailbox: Local-part "@" (Domain / literal). */
static int relay_addr_mailbox(struct relay_addr_cur *c)
{
	const char *start = c->p;
	int rc;

	if (c->p < c->end && *c->p == '"')
		rc = relay_addr_quoted(c);
	else
		rc = relay_addr_dot_string(c);
	if (rc < 0)
		return rc;

	/* RFC 5321 section 4.5.3.1.1, the local part as written. */
	if (c->p - start > RELAY_ADDR_LOCAL_MAX)
		return relay_addr_fail(c, "local part too long");

	if (c->p == c->end || *c->p != '@')
		return relay_addr_fail(c, "missing '@' in address");
	c->p++;

	if (c->p < c->end && *c->p == '[')
		return relay_addr_literal(c);
	return relay_addr_domain_name(c);
}

/*
 * relay_addr_route - A-d-l ":": At-domain *( "," At-domain ) ":",
 * accepted and dropped (section 3.3, Appendix C).
 */
static int relay_addr_route(struct relay_addr_cur *c)
{
	int rc;

	for (;;) {
		if (c->p == c->end || *c->p != '@')
			return relay_addr_fail(c, "bad source route");
		c->p++;
		rc = relay_addr_domain_name(c);
		if (rc < 0)
			return rc;
		if (c->p < c->end && *c->p == ',') {
			c->p++;
			continue;
		}
		if (c->p < c->end && *c->p == ':') {
			c->p++;
			return 0;
		}
		return relay_addr_fail(c, "bad source route");
	}
}

/*
 * relay_addr_postmaster - whether s[0..n) is "Postmaster", which RCPT
 * takes without a domain (section 4.1.1.3).
 */
static bool relay_addr_postmaster(const char *s, size_t n)
{
	return n == 10 && strncasecmp(s, "postmaster", 10) == 0;
}

int relay_addr_parse_path(const char *s, size_t len, bool allow_null, bool utf8,
			  char *out, const char **rest, const char **why)
{
	struct relay_addr_cur c = {s, s + len, utf8, NULL};
	const char *box, *close;
	size_t n;
	int rc;

	out[0] = '\0';
	*rest = s;
	if (len == 0 || *s != '<') {
		rc = relay_addr_fail(&c, "missing '<'");
		goto fail;
	}
	c.p++;

	/* The null reverse-path "<>" (section 4.5.5). */
	if (c.p < c.end && *c.p == '>') {
		if (!allow_null) {
			rc = relay_addr_fail(&c, "null path not allowed");
			goto fail;
		}
		c.p++;
		goto done;
	}

	if (c.p < c.end && *c.p == '@') {
		rc = relay_addr_route(&c);
		if (rc < 0)
			goto fail;
	}

	/* "<Postmaster>" alone, for RCPT only; no route before it. */
	box = c.p;
	close = memchr(box, '>', (size_t)(c.end - box));
	if (!allow_null && box == s + 1 && close != NULL &&
	    relay_addr_postmaster(box, (size_t)(close - box))) {
		c.p = close;
	} else {
		rc = relay_addr_mailbox(&c);
		if (rc < 0)
			goto fail;
	}

	if (c.p == c.end || *c.p != '>') {
		rc = relay_addr_fail(&c, "missing '>'");
		goto fail;
	}
	n = (size_t)(c.p - box);
	c.p++;

	/* Section 4.5.3.1.3: the path with its punctuation and route. */
	if (c.p - s > RELAY_ADDR_PATH_MAX) {
		rc = relay_addr_fail(&c, "path too long");
		goto fail;
	}
	memcpy(out, box, n);
	out[n] = '\0';

done:
	/* Parameters are separated from the path by SP (section 4.1.1.2). */
	if (c.p < c.end && *c.p != ' ') {
		out[0] = '\0';
		rc = relay_addr_fail(&c, "junk after '>'");
		goto fail;
	}
	*rest = c.p;
	return 0;

fail:
	*why = c.why;
	return rc;
}

/*
 * relay_addr_value_ok - esmtp-value: 1*(%d33-60 / %d62-126), any CHAR
 * but "=", SP and controls (section 4.1.2).
 */
static bool relay_addr_value_ok(const char *v, size_t n)
{
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)v[i] < 33 || (unsigned char)v[i] > 126 ||
		    v[i] == '=')
			return false;
	return true;
}

/* relay_addr_keyword_ok - esmtp-keyword: (ALPHA / DIGIT) *(.. / "-"). */
static bool relay_addr_keyword_ok(const char *k, size_t n)
{
	size_t i;

	if (n == 0 || !relay_addr_letdig((unsigned char)k[0]))
		return false;
	for (i = 1; i < n; i++)
		if (!relay_addr_letdig((unsigned char)k[i]) && k[i] != '-')
			return false;
	return true;
}

/* relay_addr_is - whether s[0..n) is word, ignoring case. */
static bool relay_addr_is(const char *s, size_t n, const char *word)
{
	return n == strlen(word) && strncasecmp(s, word, n) == 0;
}

/*
 * relay_addr_size - SIZE=1*20DIGIT (RFC 1870 section 4) into *out;
 * -EINVAL past INT64_MAX.
 */
static int relay_addr_size(const char *v, size_t n, int64_t *out)
{
	int64_t size = 0;
	size_t i;

	if (n == 0 || n > 20)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EINVAL;
		if (size > (INT64_MAX - (v[i] - '0')) / 10)
			return -EINVAL;
		size = size * 10 + (v[i] - '0');
	}
	*out = size;
	return 0;
}

/*
 * relay_addr_param - apply one esmtp-param; key[0..kn), val[0..vn) or
 * val NULL when there was no "=".
 */
static int relay_addr_param(const char *key, size_t kn, const char *val,
			    size_t vn, bool mail, struct relay_addr_params *p,
			    const char **why)
{
	/* waxseal offers no RCPT parameters (no DSN); SIZE (RFC 1870),
	 * BODY (RFC 6152) and SMTPUTF8 (RFC 6531) belong to MAIL. */
	if (mail && relay_addr_is(key, kn, "SIZE")) {
		if (p->size >= 0)
			goto repeated;
		if (val == NULL || relay_addr_size(val, vn, &p->size) < 0) {
			*why = "bad SIZE value";
			return -EINVAL;
		}
		return 0;
	}

	if (mail && relay_addr_is(key, kn, "BODY")) {
		if (p->body != 0)
			goto repeated;
		if (val != NULL && relay_addr_is(val, vn, "7BIT"))
			p->body = 7;
		else if (val != NULL && relay_addr_is(val, vn, "8BITMIME"))
			p->body = 8;
		else if (val != NULL && relay_addr_is(val, vn, "BINARYMIME"))
			goto unsupported;
		else
			goto bad_body;
		return 0;
	}

	if (mail && relay_addr_is(key, kn, "SMTPUTF8")) {
		if (p->smtputf8)
			goto repeated;
		if (val != NULL) {
			*why = "SMTPUTF8 takes no value";
			return -EINVAL;
		}
		p->smtputf8 = true;
		return 0;
	}

unsupported:
	*why = "unsupported parameter";
	return -ENOTSUP;

bad_body:
	*why = "bad BODY value";
	return -EINVAL;

repeated:
	*why = "repeated parameter";
	return -EINVAL;
}

int relay_addr_parse_params(const char *s, size_t len, bool mail,
			    struct relay_addr_params *p, const char **why)
{
	const char *end = s + len, *word, *eq, *val;
	size_t wn, kn, vn;
	int rc;

	p->size = -1;
	p->body = 0;
	p->smtputf8 = false;

	for (;;) {
		/* Parameters are SP-separated; extra SP is tolerated. */
		while (s < end && *s == ' ')
			s++;
		if (s == end)
			return 0;

		word = s;
		while (s < end && *s != ' ')
			s++;
		wn = (size_t)(s - word);

		eq = memchr(word, '=', wn);
		kn = eq ? (size_t)(eq - word) : wn;
		val = eq ? eq + 1 : NULL;
		vn = eq ? wn - kn - 1 : 0;

		/* Syntax first: a malformed parameter is a 501 even when
		 * its keyword is unknown. */
		if (!relay_addr_keyword_ok(word, kn)) {
			*why = "bad parameter keyword";
			return -EINVAL;
		}
		if (val != NULL && !relay_addr_value_ok(val, vn)) {
			*why = "bad parameter value";
			return -EINVAL;
		}

		rc = relay_addr_param(word, kn, val, vn, mail, p, why);
		if (rc < 0)
			return rc;
	}
}

const char *relay_addr_domain(const char *mailbox)
{
	const char *at = NULL, *s;
	bool quoted = false;

	for (s = mailbox; *s != '\0'; s++) {
		if (quoted && *s == '\\' && s[1] != '\0')
			s++;
		else if (*s == '"')
			quoted = !quoted;
		else if (*s == '@' && !quoted)
			at = s;
	}
	return at ? at + 1 : NULL;
}

bool relay_addr_has_8bit(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}
