/*
 * sign_cli - `waxseal sign`, `verify`, `genkey` and `sign-bench`.
 *
 * sign and verify read one message on standard input, LF or CRLF line
 * ends; bare LFs become CRLF first, as they would on the wire (RFC 5322
 * 2.3), and the signed output is written with CRLF.
 */
#include "sign/sign_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/mem.h>
#include <openssl/x509.h>

#include "conf/conf.h"
#include "sign/sign.h"
#include "sign/sign_hdr.h"
#include "sign/sign_key.h"
#include "sign/sign_verify.h"

/* A message read from standard input, CRLF-normalised. */
struct cli_msg {
	char *buf;
	size_t len;
	size_t hlen; /* header block, through its last CRLF */
	const char *body;
	size_t blen;
};

/* cli_read_all - everything from fd, malloc'ed. */
static int cli_read_all(int fd, char **out, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *b = malloc(cap), *nb;
	ssize_t r;

	if (!b)
		return -ENOMEM;
	for (;;) {
		if (n == cap) {
			nb = realloc(b, cap *= 2);
			if (!nb) {
				free(b);
				return -ENOMEM;
			}
			b = nb;
		}
		r = read(fd, b + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(b);
			return -errno;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*out = b;
	*len = n;
	return 0;
}

/* cli_msg_read - stdin, bare LF made CRLF, split at the blank line. */
static int cli_msg_read(struct cli_msg *m)
{
	char *raw, *sep;
	size_t rl, i, n = 0;
	int r;

	r = cli_read_all(0, &raw, &rl);
	if (r < 0)
		return r;
	m->buf = malloc(rl * 2 + 3);
	if (!m->buf) {
		free(raw);
		return -ENOMEM;
	}
	for (i = 0; i < rl; i++) {
		if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r'))
			m->buf[n++] = '\r';
		m->buf[n++] = raw[i];
	}
	free(raw);
	m->buf[n] = '\0';
	m->len = n;

	/* A message that starts with the blank line has no header. */
	if (n >= 2 && m->buf[0] == '\r' && m->buf[1] == '\n') {
		m->hlen = 0;
		m->body = m->buf + 2;
	} else if ((sep = strstr(m->buf, "\r\n\r\n"))) {
		m->hlen = (size_t)(sep - m->buf) + 2;
		m->body = sep + 4;
	} else {
		m->hlen = n;
		m->body = m->buf + n;
	}
	m->blen = n - (size_t)(m->body - m->buf);
	return 0;
}

/* cli_write_all - the whole buffer to fd. */
static int cli_write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* cli_sign_usage - help for `waxseal sign`. */
static void cli_sign_usage(FILE *f)
{
	fprintf(f, "usage: waxseal sign -c FILE [-t UNIXTIME] < msg > signed\n"
		   "  Signs the message on standard input with the keys of\n"
		   "  the dkim_key_table and dkim_signing_table in FILE and\n"
		   "  writes the DKIM-Signature field(s) and the message\n"
		   "  (CRLF line ends). Exit 0 signed (or unsigned when\n"
		   "  dkim_unsigned_action = accept), 1 not signed, 2 usage\n"
		   "  or a FILE that does not parse.\n"
		   "  -t fixes t= (for reproducible output).\n");
}

/* sign_cli_sign - one message through the same path as the server. */
int sign_cli_sign(int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	const char *cf = NULL;
	struct sign_keys *keys = NULL;
	struct sign_job *job = NULL;
	struct sign_msg *sm;
	struct cli_msg m = {0};
	struct conf c;
	char err[512] = "", why[256] = "", dom[256] = "";
	const char *sig;
	long long t = -1;
	size_t slen;
	int o, r, code = 1;

	optind = 1;
	while ((o = getopt_long(argc, argv, "c:t:h", lo, NULL)) != -1) {
		switch (o) {
		case 'c':
			cf = optarg;
			break;
		case 't':
			t = strtoll(optarg, NULL, 10);
			break;
		case 'h':
			cli_sign_usage(stdout);
			return 0;
		default:
			cli_sign_usage(stderr);
			return 2;
		}
	}
	if (!cf || optind != argc) {
		cli_sign_usage(stderr);
		return 2;
	}
	/* As `waxseal run`: 2 for the file itself, 1 for what it names. */
	r = conf_load(&c, cf, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "waxseal sign: %s\n", err);
		return 2;
	}
	r = sign_keys_load(&keys, &c, err, sizeof(err));
	conf_free(&c);
	if (r < 0) {
		fprintf(stderr, "waxseal sign: %s\n", err);
		return 1;
	}
	if (cli_msg_read(&m) < 0) {
		fprintf(stderr, "waxseal sign: cannot read the message\n");
		goto out;
	}

	sm = sign_msg_new(keys);
	if (!sm || sign_msg_headers(sm, m.buf, m.hlen) < 0) {
		fprintf(stderr, "waxseal sign: out of memory\n");
		goto out;
	}
	if (t >= 0)
		sign_msg_set_time(sm, t);
	sign_msg_body(sm, m.body, m.blen);
	r = sign_msg_finish(sm, &job, why, sizeof(why), dom, sizeof(dom));
	switch (r) {
	case SIGN_JOB:
		r = sign_job_run(job);
		if (r < 0) {
			fprintf(stderr, "waxseal sign: signing failed: %s\n",
				strerror(-r));
			goto out;
		}
		sig = sign_job_result(job, &slen);
		if (cli_write_all(1, sig, slen) < 0 ||
		    cli_write_all(1, m.buf, m.len) < 0)
			goto out;
		code = 0;
		break;
	case SIGN_UNSIGNED_ACCEPT:
		fprintf(stderr, "waxseal sign: not signed: %s\n", why);
		code = cli_write_all(1, m.buf, m.len) < 0;
		break;
	default:
		fprintf(stderr, "waxseal sign: not signed: %s\n",
			r < 0 ? strerror(-r) : why);
		break;
	}

out:
	sign_job_free(job);
	sign_keys_free(keys);
	free(m.buf);
	return code;
}

/* One --key option. */
struct cli_key {
	char *d, *s, *file;
};

struct cli_keys {
	struct cli_key *v;
	size_t n;
	const char *dns;
};

/*
 * cli_txt_from_file - a key record from a file: a PEM public key
 * ("PUBLIC KEY"), a zone line as genkey writes it (the quoted strings
 * joined), or a bare "v=DKIM1; ..." record.
 */
static int cli_txt_from_file(const char *path, char **txt)
{
	struct sign_pubkey pk;
	char *b, *o, *p;
	size_t len, n = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ENOENT;
	r = cli_read_all(fd, &b, &len);
	close(fd);
	if (r < 0)
		return r;
	o = malloc(len + 64);
	if (!o) {
		free(b);
		return -ENOMEM;
	}

	if (strstr(b, "-----BEGIN PUBLIC KEY-----")) {
		r = sign_pubkey_from_pem(&pk, b, len);
		free(b);
		if (r < 0) {
			free(o);
			return -ENOENT;
		}
		free(o);
		if (pk.type == SIGN_KEY_ED25519) {
			p = sign_b64_encode(pk.ed, 32);
		} else {
			uint8_t *der = NULL;
			int dl = i2d_PUBKEY(pk.pkey, &der);

			p = dl > 0 ? sign_b64_encode(der, (size_t)dl) : NULL;
			OPENSSL_free(der);
		}
		sign_pubkey_clear(&pk);
		if (!p)
			return -ENOMEM;
		o = malloc(strlen(p) + 40);
		if (o)
			sprintf(o, "v=DKIM1; k=%s; p=%s",
				pk.type == SIGN_KEY_ED25519 ? "ed25519" : "rsa",
				p);
		free(p);
		*txt = o;
		return o ? 0 : -ENOMEM;
	}

	/* Quoted character-strings are joined, as DNS does (RFC 6376
	 * 3.6.2.2); without quotes the file is the record itself. */
	if (strchr(b, '"')) {
		bool in = false;

		for (p = b; *p; p++) {
			if (*p == '"') {
				in = !in;
				continue;
			}
			if (!in && *p == ';')
				break;
			if (in)
				o[n++] = *p;
		}
	} else {
		for (p = b; *p; p++)
			if (*p != '\n' && *p != '\r')
				o[n++] = *p;
	}
	o[n] = '\0';
	free(b);
	*txt = o;
	return 0;
}

/* cli_key_cb - --key first, else DNS at SELECTOR._domainkey.DOMAIN. */
static int cli_key_cb(void *arg, const char *d, const char *s, char **txt)
{
	struct cli_keys *k = arg;
	char name[512];
	size_t i;

	for (i = 0; i < k->n; i++)
		if (strcasecmp(k->v[i].d, d) == 0 &&
		    strcasecmp(k->v[i].s, s) == 0)
			return cli_txt_from_file(k->v[i].file, txt);
	snprintf(name, sizeof(name), "%s._domainkey.%s", s, d);
	return sign_verify_dns_txt(k->dns, name, txt);
}

/* cli_verify_usage - help for `waxseal verify`. */
static void cli_verify_usage(FILE *f)
{
	fprintf(f,
		"usage: waxseal verify [--key DOMAIN:SELECTOR:FILE]... "
		"[--dns HOST:PORT] < msg\n"
		"  Checks every DKIM-Signature (rsa-sha256, ed25519-sha256)\n"
		"  and prints one line per signature. Keys come from --key\n"
		"  (FILE: a PEM public key or a TXT record file as genkey\n"
		"  writes it) or from DNS TXT at SELECTOR._domainkey.DOMAIN\n"
		"  (the --dns server, else resolv.conf). Exit 0 only if\n"
		"  there is a signature and all pass.\n");
}

/* cli_verify_status - the Authentication-Results word (RFC 8601). */
static const char *cli_verify_status(int st)
{
	switch (st) {
	case SIGN_VERIFY_PASS:
		return "pass";
	case SIGN_VERIFY_FAIL:
		return "fail";
	case SIGN_VERIFY_TEMPERROR:
		return "temperror";
	default:
		return "permerror";
	}
}

/* sign_cli_verify - every DKIM-Signature of the message on stdin. */
int sign_cli_verify(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"key", required_argument, NULL, 'k'},
	    {"dns", required_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	struct cli_keys keys = {0};
	struct sign_hdr_field *f = NULL;
	struct sign_verify_result res;
	struct cli_msg m = {0};
	size_t nf = 0, i, nsig = 0, npass = 0;
	int o, r, code = 2;

	optind = 1;
	while ((o = getopt_long(argc, argv, "k:n:h", lo, NULL)) != -1) {
		char *c1, *c2;
		struct cli_key *nv;

		switch (o) {
		case 'k':
			c1 = strchr(optarg, ':');
			c2 = c1 ? strchr(c1 + 1, ':') : NULL;
			if (!c2) {
				fprintf(stderr, "waxseal verify: --key wants "
						"DOMAIN:SELECTOR:FILE\n");
				goto out;
			}
			nv = realloc(keys.v, (keys.n + 1) * sizeof(*nv));
			if (!nv)
				goto out;
			keys.v = nv;
			*c1 = *c2 = '\0';
			keys.v[keys.n].d = optarg;
			keys.v[keys.n].s = c1 + 1;
			keys.v[keys.n].file = c2 + 1;
			keys.n++;
			break;
		case 'n':
			keys.dns = optarg;
			break;
		case 'h':
			cli_verify_usage(stdout);
			code = 0;
			goto out;
		default:
			cli_verify_usage(stderr);
			goto out;
		}
	}
	if (optind != argc) {
		cli_verify_usage(stderr);
		goto out;
	}
	code = 1;
	if (cli_msg_read(&m) < 0 ||
	    sign_hdr_split(m.buf, m.hlen, &f, &nf) < 0) {
		fprintf(stderr, "waxseal verify: cannot read the message\n");
		goto out;
	}

	for (i = 0; i < nf; i++) {
		if (!sign_hdr_is(&f[i], "DKIM-Signature", 14))
			continue;
		nsig++;
		r = sign_verify_sig(f, nf, i, m.body, m.blen, cli_key_cb, &keys,
				    &res);
		if (r < 0) {
			fprintf(stderr, "waxseal verify: out of memory\n");
			goto out;
		}
		npass += r == SIGN_VERIFY_PASS;
		printf("dkim=%s%s%s%s header.d=%s header.s=%s header.a=%s\n",
		       cli_verify_status(r), res.reason[0] ? " (" : "",
		       res.reason, res.reason[0] ? ")" : "",
		       res.d[0] ? res.d : "-", res.s[0] ? res.s : "-",
		       res.a[0] ? res.a : "-");
	}
	if (nsig == 0)
		printf("dkim=none (no signatures)\n");
	code = nsig > 0 && npass == nsig ? 0 : 1;

out:
	fflush(stdout);
	free(f);
	free(m.buf);
	free(keys.v);
	return code;
}

/* cli_genkey_usage - help for `waxseal genkey`. */
static void cli_genkey_usage(FILE *f)
{
	fprintf(f, "usage: waxseal genkey -d DOMAIN -s SELECTOR "
		   "[-t rsa|ed25519] [-b BITS] [-D DIR]\n"
		   "  Writes DIR/SELECTOR.private (PKCS#8 PEM, mode 0600) and\n"
		   "  DIR/SELECTOR.txt, the DNS record in the layout of\n"
		   "  opendkim-genkey. rsa of 2048 bits by default (1024 to\n"
		   "  4096, a multiple of 128); ed25519 publishes the raw key\n"
		   "  (RFC 8463).\n");
}

/* cli_write_file - create path with mode and write text. */
static int cli_write_file(const char *path, const char *text, size_t len,
			  mode_t mode)
{
	int fd, r;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;

	/* An existing file keeps its mode under O_CREAT; set it. */
	if (fchmod(fd, mode) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	r = cli_write_all(fd, text, len);
	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r;
}

/*
 * cli_txt_record - the zone line: the record split into strings of at
 * most 250 characters, since one DNS character-string holds 255.
 */
static char *cli_txt_record(const char *sel, const char *dom, const char *k,
			    const char *p)
{
	size_t pl = strlen(p), i, n = 0;
	char *o = malloc(pl + 2 * strlen(sel) + strlen(dom) + 256 +
			 (pl / 250 + 2) * 8);

	if (!o)
		return NULL;
	n += (size_t)sprintf(o,
			     "%s._domainkey\tIN\tTXT\t( \"v=DKIM1; "
			     "h=sha256; k=%s; \"\n\t  \"p=",
			     sel, k);
	for (i = 0; i < pl; i += 250) {
		size_t c = pl - i < 250 ? pl - i : 250;

		if (i)
			n += (size_t)sprintf(o + n, "\"\n\t  \"");
		memcpy(o + n, p + i, c);
		n += c;
	}

	/* opendkim-genkey ends a key that fills its last string with an
	 * empty one; so does this, for tools that compare the files. */
	if (pl > 0 && pl % 250 == 0)
		n += (size_t)sprintf(o + n, "\"\n\t  \"");
	sprintf(o + n, "\" )  ; ----- DKIM key %s for %s\n", sel, dom);
	return o;
}

/* sign_cli_genkey - a key pair and its DNS record. */
int sign_cli_genkey(int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	const char *dom = NULL, *sel = NULL, *dir = ".", *type = "rsa";
	struct sign_key *k = NULL;
	char path[4096], *pem = NULL, *pub = NULL, *txt = NULL;
	const char *bits_arg = NULL;
	unsigned bits = 2048;
	size_t pl;
	int o, r, code = 1, t;

	optind = 1;
	while ((o = getopt_long(argc, argv, "d:s:t:b:D:h", lo, NULL)) != -1) {
		switch (o) {
		case 'd':
			dom = optarg;
			break;
		case 's':
			sel = optarg;
			break;
		case 't':
			type = optarg;
			break;
		case 'b':
			bits_arg = optarg;
			break;
		case 'D':
			dir = optarg;
			break;
		case 'h':
			cli_genkey_usage(stdout);
			return 0;
		default:
			cli_genkey_usage(stderr);
			return 2;
		}
	}
	if (!dom || !sel || optind != argc ||
	    (strcmp(type, "rsa") != 0 && strcmp(type, "ed25519") != 0)) {
		cli_genkey_usage(stderr);
		return 2;
	}
	t = strcmp(type, "rsa") == 0 ? SIGN_KEY_RSA : SIGN_KEY_ED25519;
	if (bits_arg && t == SIGN_KEY_ED25519) {
		fprintf(stderr, "waxseal genkey: -b is for rsa keys; an "
				"ed25519 key has no size to choose\n");
		return 2;
	}
	if (bits_arg) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(bits_arg, &end, 10);
		if (errno || end == bits_arg || *end || *bits_arg == '-' ||
		    v > SIGN_KEY_RSA_MAX)
			v = 0;
		bits = (unsigned)v;
	}
	r = sign_key_generate(&k, t, bits);
	if (r == -EINVAL) {
		fprintf(stderr,
			"waxseal genkey: rsa bits must be %d to %d in steps "
			"of %d (the sizes BoringSSL makes), e.g. 1024, 2048, "
			"3072 or 4096\n",
			SIGN_KEY_RSA_MIN, SIGN_KEY_RSA_MAX, SIGN_KEY_RSA_STEP);
		return 2;
	}
	if (r < 0 || sign_key_write_pem(k, &pem, &pl) < 0 ||
	    !(pub = sign_key_public_b64(k)) ||
	    !(txt = cli_txt_record(sel, dom, type, pub))) {
		fprintf(stderr, "waxseal genkey: out of memory\n");
		goto out;
	}

	snprintf(path, sizeof(path), "%s/%s.private", dir, sel);
	r = cli_write_file(path, pem, pl, 0600);
	if (r == 0) {
		snprintf(path, sizeof(path), "%s/%s.txt", dir, sel);
		r = cli_write_file(path, txt, strlen(txt), 0600);
	}
	if (r < 0) {
		fprintf(stderr, "waxseal genkey: %s: %s\n", path, strerror(-r));
		goto out;
	}
	code = 0;

out:
	if (pem)
		OPENSSL_cleanse(pem, pl);
	free(pem);
	free(pub);
	free(txt);
	sign_key_free(k);
	return code;
}

/* cli_now - monotonic seconds. */
static double cli_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One raw private-key loop thread. */
struct cli_raw {
	const struct sign_key *k;
	double until;
	long ops;
};

/* cli_raw_main - sign a fixed digest until the deadline. */
static void *cli_raw_main(void *arg)
{
	struct cli_raw *w = arg;
	uint8_t md[32] = {1}, sig[SIGN_KEY_SIG_MAX];
	size_t sl;

	while (cli_now() < w->until) {
		md[0]++;
		if (sign_key_sign(w->k, md, sig, &sl) < 0)
			break;
		w->ops++;
	}
	return NULL;
}

/* cli_bench_raw - signatures/s of threads raw loops. */
static double cli_bench_raw(const struct sign_key *k, int threads, double sec)
{
	struct cli_raw w[64];
	pthread_t tid[64];
	double t0 = cli_now(), t1;
	long ops = 0;
	int i;

	for (i = 0; i < threads; i++) {
		w[i].k = k;
		w[i].until = t0 + sec;
		w[i].ops = 0;
		pthread_create(&tid[i], NULL, cli_raw_main, &w[i]);
	}
	for (i = 0; i < threads; i++) {
		pthread_join(tid[i], NULL);
		ops += w[i].ops;
	}
	t1 = cli_now();
	return (double)ops / (t1 - t0);
}

/* Jobs per thread in flight in the pool runs, and cycled through in the
 * direct run, so that both work on the same amount of data (-q). */
#define CLI_BENCH_DEPTH 16
#define CLI_BENCH_DEPTH_MAX 64

/* The pool run's shared counters, touched only on this thread. */
struct cli_pool_run {
	long done, inflight, failed;
};

/* cli_pool_cb - a job came back. */
static void cli_pool_cb(void *arg, struct sign_job *job, int res)
{
	struct cli_pool_run *r = arg;

	r->done++;
	r->inflight--;
	r->failed += res < 0;
	sign_job_free(job);
}

/* A small newsletter-like message. */
static const char cli_bench_hdr[] =
    "From: News <news@bench.example>\r\n"
    "To: reader@example.net\r\n"
    "Subject: This week at the bench\r\n"
    "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
    "Message-ID: <bench@bench.example>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "List-Unsubscribe: <https://bench.example/u/1>\r\n"
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n";

/*
 * cli_bench_pool - the server's path: per message build the state, hash
 * a 4 KiB body, finish, submit; keep 16 jobs per thread in flight and
 * reap from the eventfd like the loop does.
 */
static double cli_bench_pool(const struct sign_keys *keys, int threads,
			     int depth, double sec, long *failed)
{
	struct cli_pool_run run = {0};
	struct sign_pool *p = sign_pool_new(threads);
	struct pollfd pfd;
	char body[4096], why[64], dom[64];
	double t0, t1;

	if (!p)
		return 0;
	memset(body, 'x', sizeof(body));
	for (size_t i = 76; i < sizeof(body); i += 78) {
		body[i] = '\r';
		body[i + 1] = '\n';
	}
	pfd.fd = sign_pool_fd(p);
	pfd.events = POLLIN;
	t0 = cli_now();
	while (cli_now() < t0 + sec) {
		while (run.inflight < (long)depth * threads) {
			struct sign_msg *m = sign_msg_new(keys);
			struct sign_job *job = NULL;

			if (!m)
				break;
			sign_msg_headers(m, cli_bench_hdr,
					 sizeof(cli_bench_hdr) - 1);
			sign_msg_body(m, body, sizeof(body));
			if (sign_msg_finish(m, &job, why, sizeof(why), dom,
					    sizeof(dom)) != SIGN_JOB)
				break;
			if (sign_pool_submit(p, job, cli_pool_cb, &run) < 0) {
				sign_job_free(job);
				break;
			}
			run.inflight++;
		}
		if (poll(&pfd, 1, 100) > 0)
			sign_pool_reap(p);
	}
	t1 = cli_now();
	while (run.inflight > 0)
		if (poll(&pfd, 1, 100) > 0)
			sign_pool_reap(p);
	sign_pool_free(p);
	*failed = run.failed;
	return (double)run.done / (t1 - t0);
}

/* The queue-only run: jobs come back to a stack to be sent again. */
struct cli_queue_run {
	struct sign_job *ready[CLI_BENCH_DEPTH_MAX * 64];
	int nready;
	long done, failed;
};

/* cli_queue_cb - a job came back: count it, keep it for the next round. */
static void cli_queue_cb(void *arg, struct sign_job *job, int res)
{
	struct cli_queue_run *r = arg;

	r->done++;
	r->failed += res < 0;
	r->ready[r->nready++] = job;
}

/*
 * cli_bench_queue - the pool alone: the same jobs, built once before the
 * clock starts, submitted again as soon as they come back, so that what
 * is measured is the private-key work plus the queue, the eventfd and
 * the thread hand-over, without the per-message work of the loop thread.
 */
static double cli_bench_queue(const struct sign_keys *keys, int threads,
			      int depth, double sec, long *failed)
{
	struct cli_queue_run run = {0};
	struct sign_pool *p = sign_pool_new(threads);
	int njobs = depth * threads, i;
	char body[] = "hello\r\n", why[64], dom[64];
	struct pollfd pfd;
	double t0, t1;
	long out = 0;

	if (!p || njobs > (int)(sizeof(run.ready) / sizeof(run.ready[0])))
		goto fail;
	for (i = 0; i < njobs; i++) {
		struct sign_msg *m = sign_msg_new(keys);
		struct sign_job *job = NULL;

		if (!m)
			goto fail;
		sign_msg_headers(m, cli_bench_hdr, sizeof(cli_bench_hdr) - 1);
		sign_msg_body(m, body, sizeof(body) - 1);
		if (sign_msg_finish(m, &job, why, sizeof(why), dom,
				    sizeof(dom)) != SIGN_JOB)
			goto fail;
		run.ready[run.nready++] = job;
	}
	pfd.fd = sign_pool_fd(p);
	pfd.events = POLLIN;
	t0 = cli_now();
	while (cli_now() < t0 + sec) {
		while (run.nready > 0) {
			struct sign_job *job = run.ready[--run.nready];

			if (sign_pool_submit(p, job, cli_queue_cb, &run) < 0) {
				run.ready[run.nready++] = job;
				break;
			}
			out++;
		}
		if (poll(&pfd, 1, 100) > 0)
			sign_pool_reap(p);
	}
	t1 = cli_now();
	while (run.done < out)
		if (poll(&pfd, 1, 100) > 0)
			sign_pool_reap(p);
	*failed += run.failed;
	sign_pool_free(p);
	for (i = 0; i < run.nready; i++)
		sign_job_free(run.ready[i]);
	return (double)run.done / (t1 - t0);

fail:
	for (i = 0; i < run.nready; i++)
		sign_job_free(run.ready[i]);
	if (p)
		sign_pool_free(p);
	return 0;
}

/* One thread running prebuilt jobs in turn, without the pool. */
struct cli_direct {
	struct sign_job *job[CLI_BENCH_DEPTH_MAX];
	int depth;
	double until;
	long ops;
};

/* cli_direct_main - sign_job_run until the deadline. */
static void *cli_direct_main(void *arg)
{
	struct cli_direct *w = arg;

	while (cli_now() < w->until) {
		if (sign_job_run(w->job[w->ops % w->depth]) < 0)
			break;
		w->ops++;
	}
	return NULL;
}

/*
 * cli_bench_direct - signatures/s of threads each running the whole DKIM
 * signature of one prebuilt job (header hash, key operation, base64,
 * folding) in a loop: what the pool's workers do, minus the pool.
 */
static double cli_bench_direct(const struct sign_keys *keys, int threads,
			       int depth, double sec)
{
	struct cli_direct w[64];
	pthread_t tid[64];
	char body[] = "hello\r\n", why[64], dom[64];
	double t0, t1;
	long ops = 0;
	int i, made = 0;

	memset(w, 0, sizeof(w));
	for (i = 0; i < threads; i++) {
		int j;

		w[i].depth = depth;
		for (j = 0; j < depth; j++) {
			struct sign_msg *m = sign_msg_new(keys);

			if (!m)
				break;
			sign_msg_headers(m, cli_bench_hdr,
					 sizeof(cli_bench_hdr) - 1);
			sign_msg_body(m, body, sizeof(body) - 1);
			if (sign_msg_finish(m, &w[i].job[j], why, sizeof(why),
					    dom, sizeof(dom)) != SIGN_JOB)
				break;
		}
		if (j < depth)
			break;
		made++;
	}
	t0 = cli_now();
	for (i = 0; i < made; i++) {
		w[i].until = t0 + sec;
		w[i].ops = 0;
		pthread_create(&tid[i], NULL, cli_direct_main, &w[i]);
	}
	for (i = 0; i < made; i++) {
		pthread_join(tid[i], NULL);
		ops += w[i].ops;
	}
	t1 = cli_now();
	for (i = 0; i < threads; i++)
		for (int j = 0; j < depth; j++)
			sign_job_free(w[i].job[j]);
	return made == threads ? (double)ops / (t1 - t0) : 0;
}

/* cli_bench_keys - a KeyTable and SigningTable for one key in dir. */
static int cli_bench_keys(struct sign_keys **out, const char *dir,
			  const struct sign_key *k, const char *name)
{
	char kp[4200], kt[4200], st[4200], text[8400], err[512];
	static char *hdrs[] = {"From",	      "To",	    "Subject",
			       "Date",	      "Message-ID", "MIME-Version",
			       "Content-Type"};
	static char *over[] = {"From", "List-Unsubscribe",
			       "List-Unsubscribe-Post"};
	struct conf c;
	char *pem;
	size_t pl;
	int r;

	if (sign_key_write_pem(k, &pem, &pl) < 0)
		return -ENOMEM;
	snprintf(kp, sizeof(kp), "%s/%s.private", dir, name);
	r = cli_write_file(kp, pem, pl, 0600);
	free(pem);
	snprintf(kt, sizeof(kt), "%s/%s.keys", dir, name);
	snprintf(text, sizeof(text), "k bench.example:%s:%s\n", name, kp);
	if (r == 0)
		r = cli_write_file(kt, text, strlen(text), 0600);
	snprintf(st, sizeof(st), "%s/%s.signing", dir, name);
	if (r == 0)
		r = cli_write_file(st, "*@bench.example k\n", 18, 0600);
	if (r < 0)
		return r;
	memset(&c, 0, sizeof(c));
	snprintf(text, sizeof(text), "refile:%s", st);
	c.dkim_key_table = kt;
	c.dkim_signing_table = text;
	c.dkim_canonicalization = "relaxed/relaxed";
	c.dkim_sign_headers.v = hdrs;
	c.dkim_sign_headers.n = sizeof(hdrs) / sizeof(hdrs[0]);
	c.dkim_oversign_headers.v = over;
	c.dkim_oversign_headers.n = sizeof(over) / sizeof(over[0]);
	r = sign_keys_load(out, &c, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "waxseal sign-bench: %s\n", err);
	unlink(kp);
	unlink(kt);
	unlink(st);
	return r;
}

/* cli_cmp_double - qsort order for doubles. */
static int cli_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* cli_median - the median of v[0..n), which it sorts. */
static double cli_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cli_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* cli_bench_usage - help for `waxseal sign-bench`. */
static void cli_bench_usage(FILE *f)
{
	fprintf(f, "usage: waxseal sign-bench [-d SECONDS] [-j MAXTHREADS] "
		   "[-r ROUNDS] [-q DEPTH]\n"
		   "  Signatures per second for rsa-2048 and ed25519, for 1\n"
		   "  to MAXTHREADS threads (default: CPUs), SECONDS per cell\n"
		   "  (default 2); each cell is measured ROUNDS times\n"
		   "  (default 3), the four ways taking turns, and the\n"
		   "  median printed. DEPTH jobs per thread are in flight\n"
		   "  in the server and pool ways (default 16, at most 64).\n"
		   "  The four ways: server (the daemon's path: one\n"
		   "  thread builds each message's state and body hash and\n"
		   "  submits it), pool (jobs built beforehand and sent round\n"
		   "  again through the pool), direct (the same jobs run by\n"
		   "  each thread in a loop, no pool: pool/dir is the pool's\n"
		   "  own cost) and raw (a bare private-key loop per thread:\n"
		   "  dir/raw is what a whole DKIM signature adds to the key\n"
		   "  operation).\n");
}

/* sign_cli_bench - the table of pool against raw throughput. */
int sign_cli_bench(int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	const char *names[2] = {"rsa-2048", "ed25519"};
	char dir[] = "/tmp/waxseal-bench.XXXXXX";
	double sec = 2;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN), failed = 0;
	int maxt = cpus > 0 ? (int)cpus : 1, rounds = 3, o, a, t;
	int depth = CLI_BENCH_DEPTH;

	optind = 1;
	while ((o = getopt_long(argc, argv, "d:j:r:q:h", lo, NULL)) != -1) {
		switch (o) {
		case 'd':
			sec = strtod(optarg, NULL);
			break;
		case 'j':
			maxt = atoi(optarg);
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		case 'q':
			depth = atoi(optarg);
			break;
		case 'h':
			cli_bench_usage(stdout);
			return 0;
		default:
			cli_bench_usage(stderr);
			return 2;
		}
	}
	if (sec <= 0 || maxt < 1 || maxt > 64 || rounds < 1 || rounds > 99 ||
	    depth < 1 || depth > CLI_BENCH_DEPTH_MAX || optind != argc) {
		cli_bench_usage(stderr);
		return 2;
	}
	if (!mkdtemp(dir)) {
		perror("waxseal sign-bench: mkdtemp");
		return 1;
	}

	printf("%-10s %7s %10s %10s %10s %10s %10s %10s\n", "key",
	       "threads", "server/s", "pool/s", "direct/s", "raw/s",
	       "pool/dir", "dir/raw");
	for (a = 0; a < 2; a++) {
		struct sign_key *k = NULL;
		struct sign_keys *keys = NULL;

		if (sign_key_generate(&k, a ? SIGN_KEY_ED25519 : SIGN_KEY_RSA,
				      2048) < 0 ||
		    cli_bench_keys(&keys, dir, k, a ? "ed" : "rsa") < 0) {
			sign_key_free(k);
			rmdir(dir);
			return 1;
		}
		for (t = 1; t <= maxt; t++) {
			double m[4][99], srv, pool, dir, raw;

			/* Rounds take turns so that a slow spell of the
			 * machine spreads over all four ways. */
			for (int r = 0; r < rounds; r++) {
				m[0][r] = cli_bench_pool(keys, t, depth, sec,
							 &failed);
				m[1][r] = cli_bench_queue(keys, t, depth, sec,
							  &failed);
				m[2][r] = cli_bench_direct(keys, t, depth, sec);
				m[3][r] = cli_bench_raw(k, t, sec);
			}
			srv = cli_median(m[0], rounds);
			pool = cli_median(m[1], rounds);
			dir = cli_median(m[2], rounds);
			raw = cli_median(m[3], rounds);

			printf("%-10s %7d %10.0f %10.0f %10.0f %10.0f %9.0f%% "
			       "%9.0f%%\n",
			       names[a], t, srv, pool, dir, raw,
			       dir > 0 ? 100 * pool / dir : 0,
			       raw > 0 ? 100 * dir / raw : 0);
			fflush(stdout);
		}
		sign_keys_free(keys);
		sign_key_free(k);
	}
	rmdir(dir);
	if (failed)
		fprintf(stderr, "waxseal sign-bench: %ld jobs failed\n",
			failed);
	return failed ? 1 : 0;
}
