/*
 * test_sign_msg - the sign.h flow: header selection (repeated and
 * oversigned fields, bottom-up), policy outcomes, From parsing, folding,
 * and the pool's eventfd completion.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "sign/sign.h"
#include "sign/sign_hdr.h"
#include "sign/sign_key.h"
#include "sign/sign_verify.h"

static char dir[64], kt[256], st[300], stspec[320], pub[1024];
static struct sign_keys *keys;
static char *hdrs_default[] = {"From", "To", "Subject", "Received"};
static int ktype = SIGN_KEY_ED25519; /* of the next load_table */
static unsigned kbits;		     /* for rsa */
static char **sign_hdrs = hdrs_default;
static size_t nsign_hdrs = 4;
static char *over_default[] = {"From", "List-Unsubscribe"};
static char **over = over_default;
static size_t nover = 2;

/*
 * load_table - a key of type ktype for every domain; sigtext is the refile:
 * SigningTable; action for unsigned mail.
 */
static void load_table(int action, bool withtables, const char *sigtext)
{
	struct sign_key *k = NULL;
	char kp[256], line[512], err[256] = "", *pem, *p;
	struct conf c;
	size_t len;
	FILE *f;

	strcpy(dir, "/tmp/wsmsg.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(sign_key_generate(&k, ktype, kbits), 0);
	cr_assert_eq(sign_key_write_pem(k, &pem, &len), 0);
	p = sign_key_public_b64(k);
	snprintf(pub, sizeof(pub), "%s", p);
	free(p);
	snprintf(kp, sizeof(kp), "%s/k.private", dir);
	f = fopen(kp, "w");
	fwrite(pem, 1, len, f);
	fclose(f);
	chmod(kp, 0600);
	free(pem);
	sign_key_free(k);
	snprintf(kt, sizeof(kt), "%s/kt", dir);
	snprintf(line, sizeof(line), "k %%:sel:%s\n", kp);
	f = fopen(kt, "w");
	fputs(line, f);
	fclose(f);
	snprintf(st, sizeof(st), "%s/st", dir);
	f = fopen(st, "w");
	fputs(sigtext, f);
	fclose(f);
	snprintf(stspec, sizeof(stspec), "refile:%s", st);

	memset(&c, 0, sizeof(c));
	if (withtables) {
		c.dkim_key_table = kt;
		c.dkim_signing_table = stspec;
	}
	c.dkim_canonicalization = "simple/simple";
	c.dkim_sign_headers.v = sign_hdrs;
	c.dkim_sign_headers.n = nsign_hdrs;
	c.dkim_oversign_headers.v = over;
	c.dkim_oversign_headers.n = nover;
	c.dkim_unsigned_action = action;
	c.dkim_signature_ttl = 3600 * 1000;
	cr_assert_eq(sign_keys_load(&keys, &c, err, sizeof(err)), 0, "%s", err);
}

/* load - tables for *@example.com and its subdomains; action u. */
static void load(int action, bool withtables)
{
	load_table(action, withtables, "*@example.com k\n*@*.example.com k\n");
}

static void done(void)
{
	char cmd[128];

	sign_keys_free(keys);
	keys = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

/*
 * run_t - sign hdr+body at time t (now if t < 0); returns the outcome,
 * result in *sig if signed.
 */
static int run_t(long long t, const char *hdr, const char *body, char **sig,
		 char *why, char *dom)
{
	struct sign_job *job = NULL;
	struct sign_msg *m = sign_msg_new(keys);
	const char *res;
	size_t len;
	int r;

	cr_assert_not_null(m);
	if (t >= 0)
		sign_msg_set_time(m, t);
	cr_assert_eq(sign_msg_headers(m, hdr, strlen(hdr)), 0);
	sign_msg_body(m, body, strlen(body));
	r = sign_msg_finish(m, &job, why, 200, dom, 200);
	if (r == SIGN_JOB) {
		cr_assert_eq(sign_job_run(job), 0);
		res = sign_job_result(job, &len);
		*sig = strndup(res, len);
		sign_job_free(job);
	}
	return r;
}

/* run - run_t() now. */
static int run(const char *hdr, const char *body, char **sig, char *why,
	       char *dom)
{
	return run_t(-1, hdr, body, sig, why, dom);
}

/* run_at - run_t() that must produce a signature. */
static void run_at(long long t, const char *hdr, const char *body, char **sig,
		   char *why, char *dom)
{
	cr_assert_eq(run_t(t, hdr, body, sig, why, dom), SIGN_JOB, "%s", why);
}

/* key_cb - the one test key. */
static int key_cb(void *arg, const char *d, const char *s, char **txt)
{
	(void)arg;
	(void)d;
	if (strcmp(s, "sel") != 0)
		return -ENOENT;
	*txt = malloc(sizeof(pub) + 32);
	snprintf(*txt, sizeof(pub) + 32, "v=DKIM1; k=%s; p=%s",
		 ktype == SIGN_KEY_RSA ? "rsa" : "ed25519", pub);
	return 0;
}

/* verify - prepend sig to hdr and check it; returns the status. */
static int verify(const char *sig, const char *hdr, const char *body)
{
	struct sign_hdr_field *f;
	struct sign_verify_result res;
	size_t nf;
	char *all;
	int r;

	cr_assert_geq(asprintf(&all, "%s%s", sig, hdr), 0);
	cr_assert_eq(sign_hdr_split(all, strlen(all), &f, &nf), 0);
	r = sign_verify_sig(f, nf, 0, body, strlen(body), key_cb, NULL, &res);
	free(f);
	free(all);
	return r;
}

/* h_value - the h= list of sig, white space removed. */
static void h_value(const char *sig, char *out)
{
	const char *p = strstr(sig, "h=") + 2;
	size_t n = 0;

	for (; *p != ';'; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			out[n++] = *p;
	out[n] = '\0';
}

static const char H[] = "Received: one\r\n"
			"From: Ann <ann@Example.COM>\r\n"
			"Received: two\r\n"
			"To: b@example.net\r\n"
			"Subject: hi\r\n";

Test(sign_msg, repeated_and_oversigned_headers, .fini = done)
{
	char *sig = NULL, why[200], dom[200], h[512];
	char *moved;

	load(CONF_UNSIGNED_ACCEPT, true);
	cr_assert_eq(run(H, "body\r\n", &sig, why, dom), SIGN_JOB);
	cr_assert_str_eq(dom, "example.com");
	h_value(sig, h);
	cr_assert_str_eq(h, "From:From:To:Subject:Received:Received:"
			    "List-Unsubscribe");
	cr_assert(strstr(sig, "d=example.com;"));
	cr_assert(strstr(sig, "c=simple/simple;"));
	cr_assert(strstr(sig, " x="));
	cr_assert_eq(verify(sig, H, "body\r\n"), SIGN_VERIFY_PASS);

	/* Bottom-up order matters: swapping the two Received fails. */
	moved = strdup(H);
	memcpy(strstr(moved, "one"), "two", 3);
	memcpy(strstr(moved + 20, "two"), "one", 3);
	cr_assert_eq(verify(sig, moved, "body\r\n"), SIGN_VERIFY_FAIL);
	free(moved);

	/* Oversigning: an added From or List-Unsubscribe breaks it. */
	{
		char *added;

		cr_assert_geq(
		    asprintf(&added, "From: evil@example.org\r\n%s", H), 0);
		cr_assert_eq(verify(sig, added, "body\r\n"), SIGN_VERIFY_FAIL);
		free(added);

		cr_assert_geq(
		    asprintf(&added, "%sList-Unsubscribe: <x>\r\n", H), 0);
		cr_assert_eq(verify(sig, added, "body\r\n"), SIGN_VERIFY_FAIL);
		free(added);
	}

	/* A changed body fails. */
	cr_assert_eq(verify(sig, H, "bodY\r\n"), SIGN_VERIFY_FAIL);
	free(sig);
}

/* unfolded - sig with its folding white space removed. */
static char *unfolded(const char *sig)
{
	char *u = malloc(strlen(sig) + 1), *o = u;

	for (; *sig; sig++)
		if (*sig != '\r' && *sig != '\n' && *sig != '\t' && *sig != ' ')
			*o++ = *sig;
	*o = '\0';
	return u;
}

Test(sign_msg, times_and_expiry, .fini = done)
{
	long long now = (long long)time(NULL);
	char *sig = NULL, *u, why[200], dom[200], want[64];
	struct sign_hdr_field *f;
	struct sign_verify_result res;
	size_t nf;
	char *all;

	/* t= is the signing time, x= t= plus dkim_signature_ttl (1 h). */
	load(CONF_UNSIGNED_ACCEPT, true);
	run_at(now, H, "body\r\n", &sig, why, dom);
	u = unfolded(sig);
	snprintf(want, sizeof(want), "t=%lld;x=%lld;", now, now + 3600);
	cr_assert(strstr(u, want), "%s lacks %s", u, want);
	cr_assert_eq(verify(sig, H, "body\r\n"), SIGN_VERIFY_PASS);
	free(u);
	free(sig);

	/* Signed two hours ago: expired an hour ago. */
	run_at(now - 7200, H, "body\r\n", &sig, why, dom);
	cr_assert_geq(asprintf(&all, "%s%s", sig, H), 0);
	cr_assert_eq(sign_hdr_split(all, strlen(all), &f, &nf), 0);
	cr_assert_eq(
	    sign_verify_sig(f, nf, 0, "body\r\n", 6, key_cb, NULL, &res),
	    SIGN_VERIFY_FAIL);
	cr_assert_str_eq(res.reason, "signature expired");
	free(f);
	free(all);
	free(sig);
}

Test(sign_msg, agent_identifier, .fini = done)
{
	char *sig = NULL, *u, why[200], dom[200];

	/* SIGNER "@%": i= is the From domain, which is d=. */
	load_table(CONF_UNSIGNED_ACCEPT, true,
		   "*@example.com k @%\n"
		   "*@news.example.com k newsletter@example.com\n"
		   "*@other.example k someone@example.com\n");
	run_at((long long)time(NULL), H, "body\r\n", &sig, why, dom);
	u = unfolded(sig);
	cr_assert(strstr(u, "i=@example.com;"), "%s", u);
	cr_assert(strstr(u, "d=example.com;"), "%s", u);
	cr_assert_eq(verify(sig, H, "body\r\n"), SIGN_VERIFY_PASS);
	free(u);
	free(sig);

	/* d= is the From domain, news.example.com; an i= in its parent
	 * example.com would not be within d=, so none is written. */
	run_at((long long)time(NULL),
	       "From: a@news.example.com\r\nSubject: s\r\n", "b\r\n", &sig, why,
	       dom);
	u = unfolded(sig);
	cr_assert(strstr(u, "d=news.example.com;"), "%s", u);
	cr_assert_null(strstr(u, "i="), "%s", u);
	free(u);
	free(sig);
	done();

	/* A signer in a subdomain of d= is kept. */
	load_table(CONF_UNSIGNED_ACCEPT, true,
		   "*@example.com k list@lists.%\n");
	run_at((long long)time(NULL), H, "body\r\n", &sig, why, dom);
	u = unfolded(sig);
	cr_assert(strstr(u, "i=list@lists.example.com;"), "%s", u);
	cr_assert_eq(verify(sig, H, "body\r\n"), SIGN_VERIFY_PASS);
	free(u);
	free(sig);
}

Test(sign_msg, folded_under_78, .fini = done)
{
	char *sig = NULL, why[200], dom[200], *line, *save;

	load(CONF_UNSIGNED_ACCEPT, true);
	cr_assert_eq(run(H, "", &sig, why, dom), SIGN_JOB);
	for (line = strtok_r(sig, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save))
		cr_assert_leq(strlen(line), 78, "line too long: %s", line);
	free(sig);
}

Test(sign_msg, folded_under_78_rsa4096_all_headers, .fini = done)
{
	static char *all[] = {"From",
			      "Reply-To",
			      "Subject",
			      "Date",
			      "To",
			      "Cc",
			      "Resent-Date",
			      "Resent-From",
			      "Resent-Sender",
			      "Resent-To",
			      "Resent-Cc",
			      "In-Reply-To",
			      "References",
			      "List-Id",
			      "List-Help",
			      "List-Unsubscribe",
			      "List-Subscribe",
			      "List-Post",
			      "List-Owner",
			      "List-Archive",
			      "Message-ID",
			      "MIME-Version",
			      "Content-Type",
			      "Content-Transfer-Encoding",
			      "List-Unsubscribe-Post"};
	static char *over3[] = {"From", "List-Unsubscribe",
				"List-Unsubscribe-Post"};
	static const char hdr[] =
	    "From: a@example.com\r\nReply-To: r@example.com\r\n"
	    "Subject: s\r\nDate: Fri, 4 Dec 2026 21:00:00 +0000\r\n"
	    "To: b@example.net\r\nCc: c@example.net\r\n"
	    "Resent-Date: Fri, 4 Dec 2026 21:01:00 +0000\r\n"
	    "Resent-From: d@example.com\r\n"
	    "Resent-Sender: e@example.com\r\n"
	    "Resent-To: f@example.net\r\nResent-Cc: g@example.net\r\n"
	    "In-Reply-To: <0@example.com>\r\n"
	    "References: <0@example.com>\r\n"
	    "List-Id: <news.example.com>\r\n"
	    "List-Help: <mailto:help@example.com>\r\n"
	    "List-Unsubscribe: <https://example.com/u>\r\n"
	    "List-Subscribe: <https://example.com/s>\r\n"
	    "List-Post: NO\r\n"
	    "List-Owner: <mailto:owner@example.com>\r\n"
	    "List-Archive: <https://example.com/a>\r\n"
	    "Message-ID: <1@example.com>\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: text/plain\r\n"
	    "Content-Transfer-Encoding: 7bit\r\n"
	    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n";
	char *sig = NULL, why[200], dom[200], *line, *save, *copy;
	int lines = 0;

	ktype = SIGN_KEY_RSA;
	kbits = 4096;
	sign_hdrs = all;
	nsign_hdrs = sizeof(all) / sizeof(all[0]);
	over = over3;
	nover = 3;
	/* Criterion runs each test in its own process: no reset needed. */
	load(CONF_UNSIGNED_ACCEPT, true);

	run_at((long long)time(NULL), hdr, "b\r\n", &sig, why, dom);
	cr_assert_eq(verify(sig, hdr, "b\r\n"), SIGN_VERIFY_PASS);
	copy = strdup(sig);
	for (line = strtok_r(copy, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		size_t len = strlen(line);

		/* Every line ends in CRLF; count what is before it. */
		cr_assert(len >= 1 && line[len - 1] == '\r', "%s", line);
		cr_assert_lt(len - 1, 78, "line too long: %s", line);
		lines++;
	}
	/* h= names all 25 and the 3 oversigned again (326 characters); a
	 * 4096-bit b= alone is 684 base64 characters. */
	cr_assert_gt(lines, 15, "%s", sig);
	{
		char h[1024];

		h_value(sig, h);
		cr_assert_eq(strlen(h), 326, "%s", h);
	}
	free(copy);
	free(sig);
}

Test(sign_msg, policy, .fini = done)
{
	char *sig = NULL, why[200], dom[200];

	load(CONF_UNSIGNED_DEFER, true);
	cr_assert_eq(run("To: a@b\r\n", "", &sig, why, dom), SIGN_REFUSE);
	cr_assert(strstr(why, "no From"), "%s", why);
	cr_assert_eq(run("From: a@example.com\r\nFrom: b@example.com\r\n", "",
			 &sig, why, dom),
		     SIGN_REFUSE);
	cr_assert(strstr(why, "more than one From"), "%s", why);
	cr_assert_eq(run("From: a@other.org\r\n", "", &sig, why, dom),
		     SIGN_UNSIGNED_DEFER);
	cr_assert_str_eq(dom, "other.org");
	cr_assert(strstr(why, "a@other.org"), "%s", why);

	/* A subdomain matches the second pattern; % makes it d=. */
	cr_assert_eq(run("From: a@news.example.com\r\n", "", &sig, why, dom),
		     SIGN_JOB);
	cr_assert(strstr(sig, "d=news.example.com;"), "%s", sig);
	free(sig);
}

Test(sign_msg, unsigned_actions, .fini = done)
{
	char *sig = NULL, why[200], dom[200];

	load(CONF_UNSIGNED_REJECT, true);
	cr_assert_eq(run("From: a@other.org\r\n", "", &sig, why, dom),
		     SIGN_UNSIGNED_REJECT);
	sign_keys_free(keys);
	keys = NULL;
	done();
	load(CONF_UNSIGNED_ACCEPT, false);
	cr_assert_eq(run("From: a@example.com\r\n", "", &sig, why, dom),
		     SIGN_UNSIGNED_ACCEPT);
	cr_assert_str_eq(dom, "example.com");
}

/* from - sign_hdr_from_addr on v, expecting addr (NULL: error). */
static void from(const char *v, const char *addr, const char *dom)
{
	char a[256], d[256];
	int r = sign_hdr_from_addr(v, strlen(v), a, sizeof(a), d, sizeof(d));

	if (!addr) {
		cr_assert_lt(r, 0, "%s parsed as %s", v, a);
		return;
	}
	cr_assert_eq(r, 0, "%s", v);
	cr_assert_str_eq(a, addr, "%s", v);
	cr_assert_str_eq(d, dom, "%s", v);
}

Test(sign_msg, from_parsing)
{
	from(" joe@Example.com", "joe@example.com", "example.com");
	from(" \"Smith, Joe <x@y>\" <joe@example.com>", "joe@example.com",
	     "example.com");
	from(" Joe (the <boss@evil.org> one) <joe@example.com>",
	     "joe@example.com", "example.com");
	from(" joe@example.com (Joe (nested) Smith)", "joe@example.com",
	     "example.com");
	from(" =?UTF-8?B?Sm/DqQ==?= <news@list.example.com>",
	     "news@list.example.com", "list.example.com");
	from(" Team: ann@a.example, bob@b.example;", "ann@a.example",
	     "a.example");
	from(" \"odd@local\"@example.com", "\"odd@local\"@example.com",
	     "example.com");
	from(" <@relay.example:joe@example.com>", "joe@example.com",
	     "example.com");
	from(" Joe\r\n <joe@example.com>", "joe@example.com", "example.com");
	from(" undisclosed-recipients:;", NULL, NULL);
	from(" no address here", NULL, NULL);
	from(" <joe@>", NULL, NULL);
}

/* pool_cb - count completions. */
static void pool_cb(void *arg, struct sign_job *job, int res)
{
	int *n = arg;

	cr_assert_eq(res, 0);
	(*n)++;
	sign_job_free(job);
}

Test(sign_msg, pool_completes_via_eventfd, .fini = done)
{
	struct sign_pool *p;
	struct pollfd pfd;
	char why[200], dom[200];
	int i, n = 0;

	load(CONF_UNSIGNED_ACCEPT, true);
	p = sign_pool_new(3);
	cr_assert_not_null(p);
	for (i = 0; i < 50; i++) {
		struct sign_msg *m = sign_msg_new(keys);
		struct sign_job *job = NULL;

		sign_msg_headers(m, H, strlen(H));
		cr_assert_eq(sign_msg_finish(m, &job, why, sizeof(why), dom,
					     sizeof(dom)),
			     SIGN_JOB);
		cr_assert_eq(sign_pool_submit(p, job, pool_cb, &n), 0);
	}
	cr_assert_eq(sign_pool_outstanding(p), 50);
	pfd.fd = sign_pool_fd(p);
	pfd.events = POLLIN;
	while (n < 50) {
		cr_assert_gt(poll(&pfd, 1, 5000), 0, "pool stalled at %d", n);
		sign_pool_reap(p);
		cr_assert_eq(sign_pool_outstanding(p), (size_t)(50 - n));
	}
	cr_assert_eq(n, 50);
	sign_pool_free(p);
}

/* make_job - a finished ed25519 job for H. */
static struct sign_job *make_job(void)
{
	struct sign_msg *m = sign_msg_new(keys);
	struct sign_job *job = NULL;
	char why[200], dom[200];

	cr_assert_not_null(m);
	sign_msg_headers(m, H, strlen(H));
	cr_assert_eq(sign_msg_finish(m, &job, why, sizeof(why), dom,
				     sizeof(dom)),
		     SIGN_JOB);
	return job;
}

/*
 * The pool holds finished jobs back to wake the loop once per batch; a
 * lone job must still come back at once (the worker finds nothing else
 * to do), round after round.
 */
Test(sign_msg, pool_lone_job_is_not_held_back, .fini = done)
{
	struct sign_pool *p;
	struct pollfd pfd;
	int i, n = 0;

	load(CONF_UNSIGNED_ACCEPT, true);
	p = sign_pool_new(2);
	cr_assert_not_null(p);
	pfd.fd = sign_pool_fd(p);
	pfd.events = POLLIN;
	for (i = 0; i < 20; i++) {
		cr_assert_eq(sign_pool_submit(p, make_job(), pool_cb, &n), 0);
		while (n < i + 1) {
			cr_assert_gt(poll(&pfd, 1, 5000), 0,
				     "job %d held back", i);
			sign_pool_reap(p);
		}
	}
	cr_assert_eq(n, 20);
	sign_pool_free(p);
}

/* The order the pool hands jobs back in, one worker: submission order. */
struct order_run {
	struct sign_job *sent[100];
	int n;
};

static void order_cb(void *arg, struct sign_job *job, int res)
{
	struct order_run *r = arg;

	cr_assert_eq(res, 0);
	cr_assert_eq(job, r->sent[r->n], "job %d came back out of order",
		     r->n);
	r->n++;
	sign_job_free(job);
}

Test(sign_msg, pool_batches_keep_completion_order, .fini = done)
{
	struct order_run run = {.n = 0};
	struct sign_pool *p;
	struct pollfd pfd;
	int i;

	load(CONF_UNSIGNED_ACCEPT, true);
	p = sign_pool_new(1);
	cr_assert_not_null(p);
	for (i = 0; i < 100; i++) {
		run.sent[i] = make_job();
		cr_assert_eq(sign_pool_submit(p, run.sent[i], order_cb, &run),
			     0);
	}
	pfd.fd = sign_pool_fd(p);
	pfd.events = POLLIN;
	while (run.n < 100) {
		cr_assert_gt(poll(&pfd, 1, 5000), 0, "pool stalled at %d",
			     run.n);
		sign_pool_reap(p);
	}
	sign_pool_free(p);
}

/* now_ms - monotonic milliseconds, for the test's own deadline. */
static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * sign_pool_reap_ready, called by a loop that is awake anyway, hands back
 * what has finished without the eventfd, and nothing twice: what the
 * eventfd still signals afterwards reaps nothing more.
 */
Test(sign_msg, pool_reap_ready_in_passing, .fini = done)
{
	struct sign_pool *p;
	struct pollfd pfd;
	long long until;
	int i, n = 0;

	load(CONF_UNSIGNED_ACCEPT, true);
	p = sign_pool_new(2);
	cr_assert_not_null(p);

	/* Nothing submitted: nothing to do. */
	sign_pool_reap_ready(p);
	cr_assert_eq(n, 0);

	for (i = 0; i < 30; i++)
		cr_assert_eq(sign_pool_submit(p, make_job(), pool_cb, &n), 0);
	until = now_ms() + 10000;
	while (n < 30 && now_ms() < until) {
		sign_pool_reap_ready(p);
		cr_assert_eq(sign_pool_outstanding(p), (size_t)(30 - n));
		usleep(200);
	}
	cr_assert_eq(n, 30, "only %d of 30 jobs came back in passing", n);

	pfd.fd = sign_pool_fd(p);
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 100) > 0)
		sign_pool_reap(p);
	cr_assert_eq(n, 30);
	cr_assert_eq(sign_pool_outstanding(p), 0);
	sign_pool_free(p);
}
