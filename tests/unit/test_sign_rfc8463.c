/*
 * test_sign_rfc8463 - the worked example of RFC 8463 Appendix A: the
 * RFC's keys and signed message (tests/data/rfc8463/). Both signatures
 * are deterministic (Ed25519, and RSASSA-PKCS1-v1_5), so waxseal must
 * reproduce their b= and bh= values byte for byte, and its own signer
 * must produce signatures that verify with the RFC's public keys.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "sign/sign.h"
#include "sign/sign_canon.h"
#include "sign/sign_hdr.h"
#include "sign/sign_key.h"
#include "sign/sign_verify.h"

#define D WAXSEAL_TESTDATA "/rfc8463/"

/* slurp - a whole file, NUL-terminated. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *b;
	long n;

	cr_assert_not_null(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	b = malloc((size_t)n + 1);
	cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
	b[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return b;
}

/* The message split at its blank line. */
struct msg {
	char *raw;
	size_t len, hlen;
	const char *body;
	size_t blen;
	struct sign_hdr_field *f;
	size_t nf;
};

static void msg_load(struct msg *m)
{
	const char *sep;

	m->raw = slurp(D "signed.eml", &m->len);
	sep = strstr(m->raw, "\r\n\r\n");
	cr_assert_not_null(sep);
	m->hlen = (size_t)(sep - m->raw) + 2;
	m->body = sep + 4;
	m->blen = m->len - (size_t)(m->body - m->raw);
	cr_assert_eq(sign_hdr_split(m->raw, m->hlen, &m->f, &m->nf), 0);
	cr_assert_eq(m->nf, 7);
}

static void msg_free(struct msg *m)
{
	free(m->f);
	free(m->raw);
}

/* tag_nows - a tag value of field f with white space removed. */
static char *tag_nows(const struct sign_hdr_field *f, const char *name)
{
	struct sign_tag t[SIGN_TAGS_MAX];
	const struct sign_tag *p;
	const char *val;
	size_t vlen, i, n = 0;
	char *o;
	int nt;

	sign_hdr_value(f, &val, &vlen);
	nt = sign_verify_tags(val, vlen, t, SIGN_TAGS_MAX);
	cr_assert_gt(nt, 0);
	p = sign_verify_tag(t, (size_t)nt, name);
	cr_assert_not_null(p, "no %s= tag", name);
	o = malloc(p->vlen + 1);
	for (i = 0; i < p->vlen; i++)
		if (p->v[i] != ' ' && p->v[i] != '\t' && p->v[i] != '\r' &&
		    p->v[i] != '\n')
			o[n++] = p->v[i];
	o[n] = '\0';
	return o;
}

/* rfc_key - the RFC's private key for field index i (0 ed, 1 rsa). */
static struct sign_key *rfc_key(int i)
{
	struct sign_key *k = NULL;
	char err[256] = "";
	size_t len;
	char *pem = slurp(i == 0 ? D "ed25519.private" : D "rsa.private", &len);

	cr_assert_eq(sign_key_from_pem(&k, "rfc", pem, len, err, sizeof(err)),
		     0, "%s", err);
	free(pem);
	return k;
}

Test(sign_rfc8463, body_hash)
{
	struct sign_canon_body b;
	struct msg m;
	uint8_t md[32];
	char *want, *got;

	msg_load(&m);
	sign_canon_body_init(&b, SIGN_CANON_RELAXED);
	sign_canon_body_update(&b, m.body, m.blen);
	sign_canon_body_final(&b, md);
	got = sign_b64_encode(md, 32);
	want = tag_nows(&m.f[0], "bh");
	cr_assert_str_eq(got, want);
	cr_assert_str_eq(got, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
	free(got);
	free(want);
	msg_free(&m);
}

Test(sign_rfc8463, ed25519_seed_gives_rfc_public_key)
{
	struct sign_key *k = NULL, *k2;
	uint8_t *seed;
	size_t len, sl;
	char *b64 = slurp(D "ed25519.seed", &len), *pub;

	cr_assert_eq(sign_b64_decode(b64, len, &seed, &sl), 0);
	cr_assert_eq(sl, 32);
	cr_assert_eq(sign_key_from_ed25519_seed(&k, seed), 0);
	pub = sign_key_public_b64(k);
	cr_assert_str_eq(pub, "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");

	/* The PKCS#8 file holds the same key. */
	k2 = rfc_key(0);
	cr_assert_eq(memcmp(k->ed, k2->ed, sizeof(k->ed)), 0);
	free(pub);
	free(seed);
	free(b64);
	sign_key_free(k);
	sign_key_free(k2);
}

/* Both signatures reproduced byte for byte from the RFC's keys. */
Test(sign_rfc8463, signatures_byte_for_byte)
{
	struct msg m;
	int i;

	msg_load(&m);
	for (i = 0; i < 2; i++) {
		struct sign_key *k = rfc_key(i);
		uint8_t md[32], sig[SIGN_KEY_SIG_MAX];
		size_t sl;
		char *got, *want;

		cr_assert(sign_hdr_is(&m.f[i], "DKIM-Signature", 14));
		cr_assert_eq(
		    sign_verify_header_digest(m.f, m.nf, (size_t)i, md), 0);
		cr_assert_eq(sign_key_sign(k, md, sig, &sl), 0);
		got = sign_b64_encode(sig, sl);
		want = tag_nows(&m.f[i], "b");
		cr_assert_str_eq(got, want, "signature %d differs", i);
		free(got);
		free(want);
		sign_key_free(k);
	}
	msg_free(&m);
}

/* key_file - the RFC's TXT records by selector. */
static int key_file(void *arg, const char *d, const char *s, char **txt)
{
	size_t len;
	char path[256];

	(void)arg;
	if (strcmp(d, "football.example.com") != 0)
		return -ENOENT;
	if (strcmp(s, "brisbane") != 0 && strcmp(s, "test") != 0)
		return -ENOENT;
	snprintf(path, sizeof(path), D "%s.txt", s);
	*txt = slurp(path, &len);
	return 0;
}

Test(sign_rfc8463, verify_both)
{
	struct sign_verify_result res;
	struct msg m;
	int i;

	msg_load(&m);
	for (i = 0; i < 2; i++) {
		cr_assert_eq(sign_verify_sig(m.f, m.nf, (size_t)i, m.body,
					     m.blen, key_file, NULL, &res),
			     SIGN_VERIFY_PASS, "%d: %s", i, res.reason);
		cr_assert_str_eq(res.d, "football.example.com");
	}

	/* One changed body byte fails both. */
	m.raw[m.len - 4] = 'X';
	for (i = 0; i < 2; i++)
		cr_assert_eq(sign_verify_sig(m.f, m.nf, (size_t)i, m.body,
					     m.blen, key_file, NULL, &res),
			     SIGN_VERIFY_FAIL);
	msg_free(&m);
}

/* tmpfile_with - a 0600 file holding text; path written to out. */
static void tmpfile_with(char *out, const char *tmpl, const char *text,
			 size_t len)
{
	int fd;

	strcpy(out, tmpl);
	fd = mkstemp(out);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
}

/*
 * waxseal's own signer, dual signing with the RFC's two keys: the body
 * hash is the RFC's and both signatures verify with the RFC's records.
 */
Test(sign_rfc8463, waxseal_dual_signs_rfc_message)
{
	char kt[64], st[64], edp[64], rsap[64], table[512], err[256] = "";
	char why[128], dom[128], *ed, *rsa, *out;
	char *hdrs[] = {"From", "To", "Subject", "Date", "Message-ID"};
	char *over[] = {"From", "Subject", "Date"};
	struct sign_keys *keys = NULL;
	struct sign_job *job = NULL;
	struct sign_hdr_field *f;
	struct sign_verify_result res;
	struct sign_msg *sm;
	struct conf c;
	struct msg m;
	const char *sig;
	size_t len, slen, nf, i, hoff;
	int n;

	msg_load(&m);
	ed = slurp(D "ed25519.private", &len);
	tmpfile_with(edp, "/tmp/wsed.XXXXXX", ed, len);
	rsa = slurp(D "rsa.private", &len);
	tmpfile_with(rsap, "/tmp/wsrsa.XXXXXX", rsa, len);
	n = snprintf(table, sizeof(table),
		     "ed %%:brisbane:%s\nrsa football.example.com:test:%s\n",
		     edp, rsap);
	tmpfile_with(kt, "/tmp/wskt.XXXXXX", table, (size_t)n);
	n = snprintf(table, sizeof(table),
		     "*@football.example.com ed\n*@football.example.com "
		     "rsa\n");
	tmpfile_with(st, "/tmp/wsst.XXXXXX", table, (size_t)n);

	memset(&c, 0, sizeof(c));
	snprintf(table, sizeof(table), "refile:%s", st);
	c.dkim_key_table = kt;
	c.dkim_signing_table = table;
	c.dkim_canonicalization = "relaxed/relaxed";
	c.dkim_sign_headers.v = hdrs;
	c.dkim_sign_headers.n = 5;
	c.dkim_oversign_headers.v = over;
	c.dkim_oversign_headers.n = 3;
	c.dkim_multiple_signatures = true;
	cr_assert_eq(sign_keys_load(&keys, &c, err, sizeof(err)), 0, "%s", err);

	/* The RFC's message without its two signatures. */
	hoff = (size_t)(m.f[2].p - m.raw);
	sm = sign_msg_new(keys);
	sign_msg_set_time(sm, 1528637909);
	cr_assert_eq(sign_msg_headers(sm, m.raw + hoff, m.hlen - hoff), 0);
	sign_msg_body(sm, m.body, m.blen);
	cr_assert_eq(
	    sign_msg_finish(sm, &job, why, sizeof(why), dom, sizeof(dom)),
	    SIGN_JOB);
	cr_assert_str_eq(dom, "football.example.com");
	cr_assert_eq(sign_job_run(job), 0);
	sig = sign_job_result(job, &slen);

	/* Prepend, split, verify each new signature. */
	out = malloc(slen + m.len);
	memcpy(out, sig, slen);
	memcpy(out + slen, m.raw + hoff, m.len - hoff);
	cr_assert_eq(sign_hdr_split(out, slen + m.hlen - hoff, &f, &nf), 0);
	cr_assert_eq(nf, 7);
	for (i = 0; i < 2; i++) {
		char *bh = tag_nows(&f[i], "bh");

		cr_assert_str_eq(
		    bh, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
		free(bh);
		cr_assert_eq(sign_verify_sig(f, nf, i, m.body, m.blen, key_file,
					     NULL, &res),
			     SIGN_VERIFY_PASS, "%zu: %s\n%.*s", i, res.reason,
			     (int)slen, sig);
	}
	cr_assert(strstr(sig, "a=ed25519-sha256;"));
	cr_assert(strstr(sig, "a=rsa-sha256;"));
	cr_assert(strstr(sig, "t=1528637909;"));

	free(f);
	free(out);
	sign_job_free(job);
	sign_keys_free(keys);
	unlink(kt);
	unlink(st);
	unlink(edp);
	unlink(rsap);
	free(ed);
	free(rsa);
	msg_free(&m);
}
