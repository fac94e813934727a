/*
 * sign_verify - DKIM verification: tag lists, key records, signatures,
 * and TXT look-ups with c-ares.
 */
#include "sign/sign_verify.h"

#include <ares.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>
#include <time.h>

#include "sign/sign_canon.h"

/* verify_fws - white space that FWS may be made of. */
static bool verify_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* verify_alpha - ALPHA of RFC 5234. */
static bool verify_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* sign_verify_tags - tag-spec *( ";" tag-spec ) [ ";" ]. */
int sign_verify_tags(const char *s, size_t len, struct sign_tag *t, size_t max)
{
	size_t i = 0, n = 0, j;

	for (;;) {
		struct sign_tag tag;
		size_t vend;

		while (i < len && verify_fws(s[i]))
			i++;
		if (i == len)
			return (int)n;

		/* tag-name = ALPHA *ALNUMPUNC */
		if (!verify_alpha(s[i]))
			return -EINVAL;
		tag.name = s + i;
		while (i < len && (verify_alpha(s[i]) ||
				   (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			i++;
		tag.nlen = (size_t)(s + i - tag.name);
		while (i < len && verify_fws(s[i]))
			i++;
		if (i == len || s[i] != '=')
			return -EINVAL;
		i++;
		while (i < len && verify_fws(s[i]))
			i++;

		/* tag-value: VALCHARs (%x21-3A / %x3C-7E) and FWS. */
		tag.v = s + i;
		while (i < len && s[i] != ';') {
			unsigned char c = (unsigned char)s[i];

			if (!verify_fws((char)c) && (c < 0x21 || c > 0x7e))
				return -EINVAL;
			i++;
		}
		vend = i;
		while (vend > (size_t)(tag.v - s) && verify_fws(s[vend - 1]))
			vend--;
		tag.vlen = vend - (size_t)(tag.v - s);

		for (j = 0; j < n; j++)
			if (t[j].nlen == tag.nlen &&
			    memcmp(t[j].name, tag.name, tag.nlen) == 0)
				return -EINVAL;
		if (n == max)
			return -E2BIG;
		t[n++] = tag;
		if (i == len)
			return (int)n;
		i++;
	}
}

/* sign_verify_tag - by name, case-sensitive as RFC 6376 3.2 says. */
const struct sign_tag *sign_verify_tag(const struct sign_tag *t, size_t n,
				       const char *name)
{
	size_t i, l = strlen(name);

	for (i = 0; i < n; i++)
		if (t[i].nlen == l && memcmp(t[i].name, name, l) == 0)
			return &t[i];
	return NULL;
}

/* verify_is - whether tag value equals word (case-insensitive). */
static bool verify_is(const struct sign_tag *t, const char *word)
{
	return t && t->vlen == strlen(word) &&
	       strncasecmp(t->v, word, t->vlen) == 0;
}

/* verify_list_has - whether a ':'-separated list holds word. */
static bool verify_list_has(const char *v, size_t vlen, const char *word)
{
	size_t i = 0, wl = strlen(word);

	while (i <= vlen) {
		size_t s = i, e;

		while (i < vlen && v[i] != ':')
			i++;
		e = i;
		while (s < e && verify_fws(v[s]))
			s++;
		while (e > s && verify_fws(v[e - 1]))
			e--;
		if (e - s == wl && strncasecmp(v + s, word, wl) == 0)
			return true;
		i++;
	}
	return false;
}

/* sign_verify_record - RFC 6376 3.6.1, with k=ed25519 of RFC 8463. */
int sign_verify_record(const char *txt, size_t len, struct sign_pubkey *pk,
		       char *why, size_t whylen)
{
	struct sign_tag t[SIGN_TAGS_MAX];
	const struct sign_tag *v, *k, *p, *h, *s;
	uint8_t *der = NULL;
	size_t dl;
	int n, type, r;

	n = sign_verify_tags(txt, len, t, SIGN_TAGS_MAX);
	if (n < 0) {
		snprintf(why, whylen, "key record syntax");
		return -EINVAL;
	}
	v = sign_verify_tag(t, (size_t)n, "v");
	k = sign_verify_tag(t, (size_t)n, "k");
	p = sign_verify_tag(t, (size_t)n, "p");
	h = sign_verify_tag(t, (size_t)n, "h");
	s = sign_verify_tag(t, (size_t)n, "s");
	if ((v && (v != &t[0] || !verify_is(v, "DKIM1"))) || !p) {
		snprintf(why, whylen, "not a DKIM1 key record");
		return -EINVAL;
	}
	if (h && !verify_list_has(h->v, h->vlen, "sha256")) {
		snprintf(why, whylen, "key record does not allow sha256");
		return -EINVAL;
	}
	if (s && !verify_list_has(s->v, s->vlen, "*") &&
	    !verify_list_has(s->v, s->vlen, "email")) {
		snprintf(why, whylen, "key not for email");
		return -EINVAL;
	}
	if (!k || verify_is(k, "rsa")) {
		type = SIGN_KEY_RSA;
	} else if (verify_is(k, "ed25519")) {
		type = SIGN_KEY_ED25519;
	} else {
		snprintf(why, whylen, "unknown key type");
		return -EINVAL;
	}
	if (p->vlen == 0) {
		snprintf(why, whylen, "key revoked");
		return -EKEYREVOKED;
	}
	r = sign_b64_decode(p->v, p->vlen, &der, &dl);
	if (r == 0)
		r = sign_pubkey_from_der(pk, type, der, dl);
	free(der);
	if (r < 0)
		snprintf(why, whylen, "bad public key");
	return r;
}

/* sign_verify_strip_b - the field as signed: b= value deleted. */
long sign_verify_strip_b(const char *field, size_t len, char *out)
{
	struct sign_tag t[SIGN_TAGS_MAX];
	const struct sign_tag *b;
	const char *colon = memchr(field, ':', len);
	size_t off, vo;
	int n;

	if (!colon)
		return -EINVAL;
	off = (size_t)(colon + 1 - field);
	n = sign_verify_tags(colon + 1, len - off, t, SIGN_TAGS_MAX);
	if (n < 0)
		return -EINVAL;
	b = sign_verify_tag(t, (size_t)n, "b");
	if (!b)
		return -EINVAL;
	vo = (size_t)(b->v - field);
	memcpy(out, field, vo);
	memcpy(out + vo, b->v + b->vlen, len - vo - b->vlen);
	return (long)(len - b->vlen);
}

/* verify_copy - a tag value as a C string into a fixed buffer. */
static void verify_copy(char *dst, size_t dlen, const struct sign_tag *t)
{
	snprintf(dst, dlen, "%.*s", t ? (int)t->vlen : 0, t ? t->v : "");
}

/* verify_res - set status and reason; returns the status. */
static int verify_res(struct sign_verify_result *res, int status,
		      const char *reason)
{
	res->status = status;
	snprintf(res->reason, sizeof(res->reason), "%s", reason);
	return status;
}

/* verify_body_hash - canonicalise the body and compare with bh=. */
static int verify_body_hash(const char *body, size_t blen, int bcanon,
			    const struct sign_tag *bh)
{
	struct sign_canon_body cb;
	uint8_t md[32], *want = NULL;
	size_t wl;
	int ok;

	sign_canon_body_init(&cb, bcanon);
	sign_canon_body_update(&cb, body, blen);
	sign_canon_body_final(&cb, md);
	if (sign_b64_decode(bh->v, bh->vlen, &want, &wl) < 0)
		return 0;
	ok = wl == 32 && memcmp(want, md, 32) == 0;
	free(want);
	return ok;
}

/*
 * verify_header_hash - the fields named by h=, bottom-up (RFC 6376
 * 5.4.2), then the signature field with b= emptied and no final CRLF.
 */
static int verify_header_hash(struct sign_hdr_field *f, size_t nf, size_t sig,
			      int hcanon, const struct sign_tag *h,
			      uint8_t md[32])
{
	SHA256_CTX sha;
	char *buf, *strip;
	size_t i = 0, maxl = 0, n;
	long sl;

	for (n = 0; n < nf; n++) {
		f[n].used = false;
		if (f[n].len > maxl)
			maxl = f[n].len;
	}
	buf = malloc(maxl + 3);
	strip = malloc(f[sig].len + 1);
	if (!buf || !strip) {
		free(buf);
		free(strip);
		return -ENOMEM;
	}

	SHA256_Init(&sha);
	while (i <= h->vlen) {
		size_t s = i, e;
		struct sign_hdr_field *p;

		while (i < h->vlen && h->v[i] != ':')
			i++;
		e = i++;
		while (s < e && verify_fws(h->v[s]))
			s++;
		while (e > s && verify_fws(h->v[e - 1]))
			e--;
		p = sign_hdr_pick(f, nf, h->v + s, e - s);
		if (p) {
			n = sign_canon_header(hcanon, p->p, p->len, buf);
			SHA256_Update(&sha, buf, n);
		}
	}
	free(buf);

	sl = sign_verify_strip_b(f[sig].p, f[sig].len, strip);
	buf = malloc((size_t)sl + 3);
	if (!buf) {
		free(strip);
		return -ENOMEM;
	}
	n = sign_canon_header(hcanon, strip, (size_t)sl, buf);
	SHA256_Update(&sha, buf, n - 2);
	SHA256_Final(md, &sha);
	free(buf);
	free(strip);
	return 0;
}

/* sign_verify_header_digest - parse c= and h=, then hash. */
int sign_verify_header_digest(struct sign_hdr_field *f, size_t nf, size_t sig,
			      uint8_t md[32])
{
	struct sign_tag t[SIGN_TAGS_MAX];
	const struct sign_tag *c, *h;
	const char *val;
	char cbuf[32];
	size_t vlen;
	int n, hc, bc;

	sign_hdr_value(&f[sig], &val, &vlen);
	n = sign_verify_tags(val, vlen, t, SIGN_TAGS_MAX);
	if (n < 0)
		return -EINVAL;
	c = sign_verify_tag(t, (size_t)n, "c");
	h = sign_verify_tag(t, (size_t)n, "h");
	verify_copy(cbuf, sizeof(cbuf), c);
	if (!h || sign_canon_parse(c ? cbuf : "simple", &hc, &bc) < 0)
		return -EINVAL;
	return verify_header_hash(f, nf, sig, hc, h, md);
}

/* verify_tags_check - the required tags and their values (6.1.1). */
static int verify_tags_check(const struct sign_tag *t, size_t n, int *alg,
			     int *hc, int *bc, struct sign_verify_result *res)
{
	const struct sign_tag *v = sign_verify_tag(t, n, "v");
	const struct sign_tag *a = sign_verify_tag(t, n, "a");
	const struct sign_tag *c = sign_verify_tag(t, n, "c");
	const struct sign_tag *d = sign_verify_tag(t, n, "d");
	const struct sign_tag *h = sign_verify_tag(t, n, "h");
	const struct sign_tag *i = sign_verify_tag(t, n, "i");
	const struct sign_tag *q = sign_verify_tag(t, n, "q");
	const struct sign_tag *x = sign_verify_tag(t, n, "x");
	char cbuf[32];

	if (!v || !verify_is(v, "1"))
		return verify_res(res, SIGN_VERIFY_PERMERROR, "bad v= tag");
	if (!a || !sign_verify_tag(t, n, "b") || !sign_verify_tag(t, n, "bh") ||
	    !d || !h || !sign_verify_tag(t, n, "s"))
		return verify_res(res, SIGN_VERIFY_PERMERROR,
				  "missing required tag");
	if (verify_is(a, "rsa-sha256"))
		*alg = SIGN_KEY_RSA;
	else if (verify_is(a, "ed25519-sha256"))
		*alg = SIGN_KEY_ED25519;
	else if (verify_is(a, "rsa-sha1"))
		return verify_res(res, SIGN_VERIFY_FAIL,
				  "rsa-sha1 unsupported, RFC 8301");
	else
		return verify_res(res, SIGN_VERIFY_PERMERROR,
				  "unknown algorithm");
	verify_copy(cbuf, sizeof(cbuf), c);
	if (sign_canon_parse(c ? cbuf : "simple/simple", hc, bc) < 0)
		return verify_res(res, SIGN_VERIFY_PERMERROR,
				  "unknown canonicalization");
	if (!verify_list_has(h->v, h->vlen, "from"))
		return verify_res(res, SIGN_VERIFY_PERMERROR,
				  "From not signed");
	if (q && !verify_list_has(q->v, q->vlen, "dns/txt"))
		return verify_res(res, SIGN_VERIFY_PERMERROR,
				  "no dns/txt in q=");
	if (sign_verify_tag(t, n, "l"))
		return verify_res(res, SIGN_VERIFY_PERMERROR,
				  "l= not supported");
	if (i) {
		const char *at = memchr(i->v, '@', i->vlen);
		size_t il = at ? i->vlen - (size_t)(at + 1 - i->v) : 0;

		if (!at || il < d->vlen ||
		    strncasecmp(at + 1 + il - d->vlen, d->v, d->vlen) != 0 ||
		    (il > d->vlen && at[il - d->vlen] != '.'))
			return verify_res(res, SIGN_VERIFY_PERMERROR,
					  "i= not within d=");
	}
	if (x && strtoll(x->v, NULL, 10) < (long long)time(NULL))
		return verify_res(res, SIGN_VERIFY_FAIL, "signature expired");
	return SIGN_VERIFY_PASS;
}

/* sign_verify_sig - RFC 6376 6.1: tags, key, body hash, signature. */
int sign_verify_sig(struct sign_hdr_field *f, size_t nf, size_t sig,
		    const char *body, size_t blen, sign_verify_key_fn fn,
		    void *arg, struct sign_verify_result *res)
{
	struct sign_tag t[SIGN_TAGS_MAX];
	struct sign_pubkey pk;
	const char *val;
	char *txt = NULL, why[96];
	uint8_t md[32], *sigb = NULL;
	size_t vlen, sl;
	int n, alg = -1, hc = 0, bc = 0, r;

	memset(res, 0, sizeof(*res));
	memset(&pk, 0, sizeof(pk));
	sign_hdr_value(&f[sig], &val, &vlen);
	n = sign_verify_tags(val, vlen, t, SIGN_TAGS_MAX);
	if (n < 0)
		return verify_res(res, SIGN_VERIFY_PERMERROR, "tag syntax");
	verify_copy(res->d, sizeof(res->d), sign_verify_tag(t, n, "d"));
	verify_copy(res->s, sizeof(res->s), sign_verify_tag(t, n, "s"));
	verify_copy(res->a, sizeof(res->a), sign_verify_tag(t, n, "a"));
	r = verify_tags_check(t, (size_t)n, &alg, &hc, &bc, res);
	if (r != SIGN_VERIFY_PASS)
		return r;

	/* The key: its type must be the algorithm's (RFC 8463 4). */
	r = fn(arg, res->d, res->s, &txt);
	if (r == -ENOENT)
		return verify_res(res, SIGN_VERIFY_PERMERROR, "no key");
	if (r < 0)
		return verify_res(res, SIGN_VERIFY_TEMPERROR,
				  "key lookup failed");
	r = sign_verify_record(txt, strlen(txt), &pk, why, sizeof(why));
	free(txt);
	if (r < 0)
		return verify_res(res, SIGN_VERIFY_PERMERROR, why);
	if (pk.type != alg) {
		sign_pubkey_clear(&pk);
		return verify_res(res, SIGN_VERIFY_PERMERROR,
				  "key type does not match a=");
	}

	if (!verify_body_hash(body, blen, bc, sign_verify_tag(t, n, "bh"))) {
		sign_pubkey_clear(&pk);
		return verify_res(res, SIGN_VERIFY_FAIL, "body hash mismatch");
	}
	r = verify_header_hash(f, nf, sig, hc, sign_verify_tag(t, n, "h"), md);
	if (r == 0) {
		const struct sign_tag *b = sign_verify_tag(t, n, "b");

		r = sign_b64_decode(b->v, b->vlen, &sigb, &sl);
	}
	if (r < 0) {
		sign_pubkey_clear(&pk);
		if (r == -ENOMEM)
			return r;
		return verify_res(res, SIGN_VERIFY_PERMERROR, "bad b= value");
	}
	r = sign_pubkey_verify(&pk, md, sigb, sl);
	free(sigb);
	sign_pubkey_clear(&pk);
	if (!r)
		return verify_res(res, SIGN_VERIFY_FAIL, "signature mismatch");
	return verify_res(res, SIGN_VERIFY_PASS, "");
}

/* The answer of one TXT query. */
struct verify_dns {
	int status;
	char *txt;
};

/* verify_dns_cb - join the strings of the first record. */
static void verify_dns_cb(void *arg, int status, int timeouts,
			  unsigned char *abuf, int alen)
{
	struct verify_dns *q = arg;
	struct ares_txt_ext *txt = NULL, *p;
	size_t len = 0;
	int records = 0;

	(void)timeouts;
	q->status = status;
	if (status != ARES_SUCCESS)
		return;
	q->status = ares_parse_txt_reply_ext(abuf, alen, &txt);
	if (q->status != ARES_SUCCESS)
		return;
	for (p = txt; p; p = p->next) {
		records += p->record_start;
		if (records > 1)
			break;
		len += p->length;
	}
	q->txt = malloc(len + 1);
	if (q->txt) {
		len = 0;
		records = 0;
		for (p = txt; p; p = p->next) {
			records += p->record_start;
			if (records > 1)
				break;
			memcpy(q->txt + len, p->txt, p->length);
			len += p->length;
		}
		q->txt[len] = '\0';
	} else {
		q->status = ARES_ENOMEM;
	}
	ares_free_data(txt);
}

/* sign_verify_dns_txt - one query, run to completion with select(). */
int sign_verify_dns_txt(const char *server, const char *name, char **txt)
{
	struct verify_dns q = {.status = -1, .txt = NULL};
	struct ares_options opt;
	ares_channel ch;
	int r;

	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
		return -EAGAIN;
	memset(&opt, 0, sizeof(opt));
	opt.timeout = 2000;
	opt.tries = 2;
	if (ares_init_options(&ch, &opt, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES) !=
	    ARES_SUCCESS) {
		ares_library_cleanup();
		return -EAGAIN;
	}
	if (server && ares_set_servers_ports_csv(ch, server) != ARES_SUCCESS) {
		r = -EINVAL;
		goto fail;
	}
	ares_query(ch, name, 1 /* IN */, 16 /* TXT */, verify_dns_cb, &q);
	for (;;) {
		struct timeval tv, *tvp;
		fd_set rd, wr;
		int nfds;

		FD_ZERO(&rd);
		FD_ZERO(&wr);
		nfds = ares_fds(ch, &rd, &wr);
		if (nfds == 0)
			break;
		tvp = ares_timeout(ch, NULL, &tv);
		select(nfds, &rd, &wr, NULL, tvp);
		ares_process(ch, &rd, &wr);
	}
	if (q.status == ARES_SUCCESS && q.txt) {
		*txt = q.txt;
		r = 0;
	} else if (q.status == ARES_ENOTFOUND || q.status == ARES_ENODATA) {
		r = -ENOENT;
	} else {
		r = -EAGAIN;
	}
	if (r)
		free(q.txt);

fail:
	ares_destroy(ch);
	ares_library_cleanup();
	return r;
}
