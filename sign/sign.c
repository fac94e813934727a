/*
 * sign - DKIM signing for waxseal: the sign.h interface. Loading keys and
 * tables, the per-message state that hashes the body as it streams in,
 * the policy decision, and the job that the pool runs.
 *
 * What each signature carries (RFC 6376 3.5): v, a, c, d, s, t, x (when
 * dkim_signature_ttl is set), i (only when the SigningTable names a
 * signer), h, bh, b. No l= (a body length invites appended content) and
 * no rsa-sha1 (RFC 8301).
 */
#include "sign/sign.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "conf/conf.h"
#include "sign/sign_canon.h"
#include "sign/sign_fold.h"
#include "sign/sign_hdr.h"
#include "sign/sign_job.h"
#include "sign/sign_key.h"
#include "sign/sign_table.h"

/* One header name for h=, from dkim_sign_headers/dkim_oversign_headers. */
struct sign_hname {
	char *name;
	size_t len;
	bool over; /* one more instance than present */
};

struct sign_keys {
	struct sign_table t;
	struct sign_key **key; /* parallel to t.keys */
	struct sign_hname *h;
	size_t nh;
	int hcanon, bcanon;
	bool multiple;
	int unsigned_action; /* enum conf_unsigned */
	int64_t ttl;	     /* seconds, 0: no x= */
	bool none;	     /* no tables: nothing is signed */
};

struct sign_msg {
	const struct sign_keys *k;
	struct sign_canon_body body;
	bool have_hdr;
	size_t nfrom;
	int from_err;
	char addr[512];
	char dom[256];
	char *hdata; /* canonicalised fields for h= */
	size_t hlen;
	const struct sign_hname **hl; /* h= names in order */
	size_t nhl;
	long long t; /* t= value; -1: the clock */
	bool nobody; /* the message cannot be signed: skip the body hash */
};

/* keys_add_name - add one header name unless present; over ORs in. */
static int keys_add_name(struct sign_keys *k, const char *name, bool over)
{
	struct sign_hname *nh;
	size_t i;

	for (i = 0; i < k->nh; i++) {
		if (strcasecmp(k->h[i].name, name) == 0) {
			k->h[i].over |= over;
			return 0;
		}
	}
	nh = realloc(k->h, (k->nh + 1) * sizeof(*nh));
	if (!nh)
		return -ENOMEM;
	k->h = nh;
	k->h[k->nh].name = strdup(name);
	if (!k->h[k->nh].name)
		return -ENOMEM;
	k->h[k->nh].len = strlen(name);
	k->h[k->nh].over = over;
	k->nh++;
	return 0;
}

/*
 * keys_names - the h= candidates: From first (RFC 6376 5.4 says it MUST
 * be signed), then dkim_sign_headers, then oversigned names not already
 * listed.
 */
static int keys_names(struct sign_keys *k, const struct conf *c)
{
	size_t i;
	int r;

	r = keys_add_name(k, "From", false);
	for (i = 0; r == 0 && i < c->dkim_sign_headers.n; i++)
		r = keys_add_name(k, c->dkim_sign_headers.v[i], false);
	for (i = 0; r == 0 && i < c->dkim_oversign_headers.n; i++)
		r = keys_add_name(k, c->dkim_oversign_headers.v[i], true);
	return r;
}

/* sign_keys_load - settings, tables, then every key file. */
int sign_keys_load(struct sign_keys **out, const struct conf *c, char *err,
		   size_t errlen)
{
	const char *kt = c->dkim_key_table ? c->dkim_key_table : "";
	const char *st = c->dkim_signing_table ? c->dkim_signing_table : "";
	const char *canon = c->dkim_canonicalization;
	struct sign_keys *k;
	size_t i;
	int r;

	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	if (!canon || !*canon)
		canon = "relaxed/relaxed";
	r = sign_canon_parse(canon, &k->hcanon, &k->bcanon);
	if (r < 0) {
		snprintf(err, errlen, "dkim_canonicalization: bad value: %s",
			 canon);
		goto fail;
	}
	r = keys_names(k, c);
	if (r < 0)
		goto fail;
	k->multiple = c->dkim_multiple_signatures;
	k->unsigned_action = c->dkim_unsigned_action;
	k->ttl = c->dkim_signature_ttl / 1000;

	/* Without tables waxseal relays unsigned, as policy says. */
	if (!*kt && !*st) {
		k->none = true;
		*out = k;
		return 0;
	}
	if (!*kt || !*st) {
		snprintf(err, errlen,
			 "dkim_key_table and dkim_signing_table "
			 "must be set together");
		r = -EINVAL;
		goto fail;
	}
	r = sign_table_load(&k->t, kt, st, err, errlen);
	if (r < 0)
		goto fail;

	k->key = calloc(k->t.nkeys ? k->t.nkeys : 1, sizeof(*k->key));
	if (!k->key) {
		r = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < k->t.nkeys; i++) {
		r = sign_key_load(&k->key[i], k->t.keys[i].path, err, errlen);
		if (r < 0)
			goto fail;
	}
	*out = k;
	return 0;

fail:
	sign_keys_free(k);
	return r;
}

/* sign_keys_free - keys, tables, names. */
void sign_keys_free(struct sign_keys *k)
{
	size_t i;

	if (!k)
		return;
	if (k->key)
		for (i = 0; i < k->t.nkeys; i++)
			sign_key_free(k->key[i]);
	free(k->key);
	sign_table_free(&k->t);
	for (i = 0; i < k->nh; i++)
		free(k->h[i].name);
	free(k->h);
	free(k);
}

/* sign_msg_new - empty state; the body hash starts now. */
struct sign_msg *sign_msg_new(const struct sign_keys *k)
{
	struct sign_msg *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->k = k;
	m->t = -1;
	sign_canon_body_init(&m->body, k->bcanon);
	return m;
}

/* sign_msg_set_time - a fixed t=. */
void sign_msg_set_time(struct sign_msg *m, long long t)
{
	m->t = t;
}

/* msg_from - count From fields and take the address of the only one. */
static void msg_from(struct sign_msg *m, const struct sign_hdr_field *f,
		     size_t nf)
{
	const struct sign_hdr_field *from = NULL;
	const char *val;
	size_t i, vlen;

	m->nfrom = 0;
	for (i = 0; i < nf; i++) {
		if (sign_hdr_is(&f[i], "From", 4)) {
			m->nfrom++;
			from = &f[i];
		}
	}
	m->addr[0] = m->dom[0] = '\0';
	if (m->nfrom != 1)
		return;
	sign_hdr_value(from, &val, &vlen);
	m->from_err = sign_hdr_from_addr(val, vlen, m->addr, sizeof(m->addr),
					 m->dom, sizeof(m->dom));
}

/*
 * sign_msg_headers - everything about the header is settled here, so
 * the block need not be kept: the From address, the h= list and the
 * canonicalised fields it covers, chosen bottom-up (RFC 6376 5.4.2).
 */
int sign_msg_headers(struct sign_msg *m, const char *hdr, size_t len)
{
	const struct sign_keys *k = m->k;
	struct sign_hdr_field *f = NULL, *p;
	size_t nf = 0, i, j, cnt, total = 0;
	int r;

	free(m->hdata);
	free(m->hl);
	m->hdata = NULL;
	m->hl = NULL;
	m->hlen = m->nhl = 0;

	r = sign_hdr_split(hdr, len, &f, &nf);
	if (r < 0)
		return r;
	msg_from(m, f, nf);

	/*
	 * Without tables, or without exactly one usable From, finish can
	 * only refuse or leave the message unsigned: canonicalising the
	 * header and hashing the body would be work thrown away.
	 */
	if (k->none || m->nfrom != 1 || m->from_err) {
		m->nobody = true;
		m->have_hdr = true;
		free(f);
		return 0;
	}

	for (i = 0; i < k->nh; i++)
		total += sign_hdr_count(f, nf, k->h[i].name, k->h[i].len) +
			 k->h[i].over;
	m->hl = malloc((total ? total : 1) * sizeof(*m->hl));
	m->hdata = malloc(len + 3 * nf + 1);
	if (!m->hl || !m->hdata) {
		r = -ENOMEM;
		goto fail;
	}

	for (i = 0; i < k->nh; i++) {
		cnt = sign_hdr_count(f, nf, k->h[i].name, k->h[i].len) +
		      k->h[i].over;
		for (j = 0; j < cnt; j++) {
			m->hl[m->nhl++] = &k->h[i];
			p = sign_hdr_pick(f, nf, k->h[i].name, k->h[i].len);
			if (p)
				m->hlen +=
				    sign_canon_header(k->hcanon, p->p, p->len,
						      m->hdata + m->hlen);
		}
	}
	m->have_hdr = true;
	free(f);
	return 0;

fail:
	free(f);
	return r;
}

/* sign_msg_body - straight into the streaming canonicaliser. */
void sign_msg_body(struct sign_msg *m, const char *body, size_t len)
{
	if (!m->nobody)
		sign_canon_body_update(&m->body, body, len);
}

/* msg_free - release the per-message state. */
static void msg_free(struct sign_msg *m)
{
	free(m->hdata);
	free(m->hl);
	free(m);
}

/* msg_unsigned - the configured outcome for mail no key matches. */
static int msg_unsigned(const struct sign_keys *k)
{
	switch (k->unsigned_action) {
	case CONF_UNSIGNED_DEFER:
		return SIGN_UNSIGNED_DEFER;
	case CONF_UNSIGNED_REJECT:
		return SIGN_UNSIGNED_REJECT;
	default:
		return SIGN_UNSIGNED_ACCEPT;
	}
}

/*
 * msg_signer - the i= value: "%" replaced by the From domain, kept only
 * when its domain is d= or a subdomain of it (RFC 6376 3.5, i=).
 */
static bool msg_signer(const char *tmpl, const char *fromdom, const char *d,
		       char *out, size_t outlen)
{
	const char *at, *pct = strchr(tmpl, '%');
	size_t il, dl = strlen(d);

	if (pct)
		snprintf(out, outlen, "%.*s%s%s", (int)(pct - tmpl), tmpl,
			 fromdom, pct + 1);
	else
		snprintf(out, outlen, "%s", tmpl);
	at = strrchr(out, '@');
	if (!at)
		return false;
	at++;
	il = strlen(at);
	if (strcasecmp(at, d) == 0)
		return true;
	return il > dl && at[il - dl - 1] == '.' &&
	       strcasecmp(at + il - dl, d) == 0;
}

/* msg_template - one DKIM-Signature field up to and including "b=". */
static int msg_template(const struct sign_msg *m, struct sign_job_sig *s,
			const struct sign_key *key, const char *d,
			const char *sel, const char *ident, const char *bh,
			long long t)
{
	struct sign_fold f = {0};
	char w[600];
	size_t i;
	int n;

	sign_fold_raw(&f, "DKIM-Signature: v=1;", 20);
	n = snprintf(w, sizeof(w), "a=%s;", sign_key_alg(key));
	sign_fold_word(&f, w, (size_t)n);
	n = snprintf(w, sizeof(w), "c=%s/%s;", sign_canon_name(m->k->hcanon),
		     sign_canon_name(m->k->bcanon));
	sign_fold_word(&f, w, (size_t)n);
	n = snprintf(w, sizeof(w), "d=%s;", d);
	sign_fold_word(&f, w, (size_t)n);
	if (ident) {
		n = snprintf(w, sizeof(w), "i=%s;", ident);
		sign_fold_word(&f, w, (size_t)n);
	}
	n = snprintf(w, sizeof(w), "s=%s;", sel);
	sign_fold_word(&f, w, (size_t)n);
	n = snprintf(w, sizeof(w), "t=%lld;", t);
	sign_fold_word(&f, w, (size_t)n);
	if (m->k->ttl > 0) {
		n = snprintf(w, sizeof(w), "x=%lld;", t + (long long)m->k->ttl);
		sign_fold_word(&f, w, (size_t)n);
	}

	/* h= folds before a colon, where RFC 6376 3.5 allows FWS. */
	for (i = 0; i < m->nhl; i++) {
		n = snprintf(w, sizeof(w), "%s%s%s",
			     i ? ":" : "h=", m->hl[i]->name,
			     i + 1 == m->nhl ? ";" : "");
		if (i == 0)
			sign_fold_word(&f, w, (size_t)n);
		else
			sign_fold_glue(&f, w, (size_t)n);
	}
	n = snprintf(w, sizeof(w), "bh=%s;", bh);
	sign_fold_word(&f, w, (size_t)n);

	/* b= on a line of its own, so its value always starts right
	 * after the "=" whatever the width left. */
	sign_fold_raw(&f, "\r\n\tb=", 5);
	f.col = 3;
	if (f.err) {
		free(f.buf);
		return f.err;
	}
	s->key = key;
	s->tmpl = f.buf;
	s->tlen = f.len;
	s->col = f.col;
	return 0;
}

/* msg_job_sigs - a template per SigningTable match that names a key. */
static int msg_job_sigs(struct sign_msg *m, struct sign_job *job,
			const char *bh, long long t)
{
	const struct sign_keys *k = m->k;
	size_t idx[SIGN_JOB_MAX], n, i;
	char ident[600];
	int r;

	n = sign_table_lookup(&k->t, m->addr, idx,
			      k->multiple ? SIGN_JOB_MAX : 1);
	for (i = 0; i < n; i++) {
		const struct sign_table_sig *ts = &k->t.sigs[idx[i]];
		const char *kn = ts->keyname, *d;
		const struct sign_table_key *tk;
		long ki;
		bool id;

		/* A NAME of "%" is the From domain (opendkim.conf(5)). */
		ki = sign_table_find_key(&k->t,
					 strcmp(kn, "%") == 0 ? m->dom : kn);
		if (ki < 0)
			continue;
		tk = &k->t.keys[ki];
		d = strcmp(tk->domain, "%") == 0 ? m->dom : tk->domain;
		id = ts->signer &&
		     msg_signer(ts->signer, m->dom, d, ident, sizeof(ident));
		r = msg_template(m, &job->sig[job->nsig], k->key[ki], d,
				 tk->selector, id ? ident : NULL, bh, t);
		if (r < 0)
			return r;
		job->nsig++;
	}
	return 0;
}

/* sign_msg_finish - policy first, then the job. */
int sign_msg_finish(struct sign_msg *m, struct sign_job **job, char *why,
		    size_t whylen, char *domain, size_t domainlen)
{
	const struct sign_keys *k = m->k;
	uint8_t md[32];
	struct sign_job *j = NULL;
	char *bh = NULL;
	long long t;
	int r;

	*job = NULL;
	sign_canon_body_final(&m->body, md);
	if (domainlen)
		snprintf(domain, domainlen, "%s", m->dom);

	/* RFC 6376 5.4 makes From mandatory in h=; with two, a verifier
	 * could show one while we signed the other (RFC 6376 8.15). */
	if (!m->have_hdr || m->nfrom == 0) {
		snprintf(why, whylen, "message has no From header");
		r = SIGN_REFUSE;
		goto out;
	}
	if (m->nfrom > 1) {
		snprintf(why, whylen, "message has more than one From header");
		r = SIGN_REFUSE;
		goto out;
	}
	if (m->from_err) {
		snprintf(why, whylen,
			 "From header has no address with a "
			 "domain");
		r = msg_unsigned(k);
		goto out;
	}
	if (k->none) {
		snprintf(why, whylen, "no DKIM tables configured");
		r = msg_unsigned(k);
		goto out;
	}

	j = calloc(1, sizeof(*j));
	bh = sign_b64_encode(md, sizeof(md));
	if (!j || !bh) {
		r = -ENOMEM;
		goto out;
	}
	t = m->t >= 0 ? m->t : (long long)time(NULL);
	r = msg_job_sigs(m, j, bh, t);
	if (r < 0)
		goto out;
	if (j->nsig == 0) {
		snprintf(why, whylen, "no signing table entry for %s", m->addr);
		r = msg_unsigned(k);
		goto out;
	}
	j->hcanon = k->hcanon;
	j->hdata = m->hdata;
	j->hlen = m->hlen;
	m->hdata = NULL;
	*job = j;
	j = NULL;
	r = SIGN_JOB;

out:
	free(bh);
	sign_job_free(j);
	msg_free(m);
	return r;
}

/*
 * sign_job_run - per signature: hash the h= fields and then the field
 * itself with an empty b= and no final CRLF (RFC 6376 3.7), sign, and
 * append the base64 value folded.
 */
int sign_job_run(struct sign_job *job)
{
	struct sign_fold out = {0};
	uint8_t md[32], sig[SIGN_KEY_SIG_MAX];
	SHA256_CTX sha;
	size_t i, n, sl;
	char *canon, *b64;
	int r = 0;

	for (i = 0; i < job->nsig && r == 0; i++) {
		struct sign_job_sig *s = &job->sig[i];

		canon = malloc(s->tlen + 3);
		if (!canon) {
			r = -ENOMEM;
			break;
		}
		n = sign_canon_header(job->hcanon, s->tmpl, s->tlen, canon);
		SHA256_Init(&sha);
		SHA256_Update(&sha, job->hdata, job->hlen);
		SHA256_Update(&sha, canon, n - 2);
		SHA256_Final(md, &sha);
		free(canon);

		r = sign_key_sign(s->key, md, sig, &sl);
		if (r < 0)
			break;
		b64 = sign_b64_encode(sig, sl);
		if (!b64) {
			r = -ENOMEM;
			break;
		}
		sign_fold_raw(&out, s->tmpl, s->tlen);
		out.col = s->col;
		sign_fold_b64(&out, b64, strlen(b64));
		sign_fold_raw(&out, "\r\n", 2);
		free(b64);
	}
	if (r == 0 && out.err)
		r = out.err;
	if (r < 0) {
		free(out.buf);
		return r;
	}
	free(job->res);
	job->res = out.buf;
	job->rlen = out.len;
	return 0;
}

/* sign_job_result - the fields sign_job_run made; NULL before. */
const char *sign_job_result(const struct sign_job *job, size_t *len)
{
	*len = job->rlen;
	return job->res;
}

/* sign_job_free - everything the job owns; the keys are not its. */
void sign_job_free(struct sign_job *job)
{
	size_t i;

	if (!job)
		return;
	for (i = 0; i < job->nsig; i++)
		free(job->sig[i].tmpl);
	free(job->hdata);
	free(job->res);
	free(job);
}
