/*
 * test_relay_tls - client and server relay_tls talking in memory: the
 * ciphertext one produces (relay_tls_output) is fed to the other
 * (relay_tls_input) in a bounded loop. Certificates are made at test
 * time by /usr/bin/openssl in a temporary directory: a test CA, a leaf
 * for mx.test signed by it, a leaf for *.wild.test, a leaf that names
 * cn.test only in its subject CN, and a self-signed leaf for mx.test.
 * Tests are skipped, with the reason, when openssl is missing.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "relay/relay_tls.h"

#define T_OPENSSL "/usr/bin/openssl"
#define T_ROUNDS 50

/* The CA, the key parameters and the leaves made for each test. */
static char t_dir[64];

/* t_path - a file of the test directory, in static storage (4 slots). */
static const char *t_path(const char *name)
{
	static char buf[4][160];
	static int slot;
	char *p = buf[slot++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", t_dir, name);
	return p;
}

/* t_sh - run one shell command in the test directory; must succeed. */
static void t_sh(const char *cmd)
{
	char line[2048];

	snprintf(line, sizeof(line), "cd '%s' && { %s; } >/dev/null 2>&1",
		 t_dir, cmd);
	cr_assert_eq(system(line), 0, "failed: %s", cmd);
}

/* t_leaf - a key and a certificate NAME.crt signed by the test CA. */
static void t_leaf(const char *name, const char *cn, const char *san)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd),
		 T_OPENSSL " req -new -newkey ec -pkeyopt "
			   "ec_paramgen_curve:prime256v1 -nodes -keyout "
			   "%s.key -out %s.csr -subj /CN=%s",
		 name, name, cn);
	t_sh(cmd);
	snprintf(cmd, sizeof(cmd),
		 "printf '%s%s\\nbasicConstraints=CA:FALSE\\n'"
		 " > %s.ext",
		 san ? "subjectAltName=" : "", san ? san : "", name);
	t_sh(cmd);
	snprintf(cmd, sizeof(cmd),
		 T_OPENSSL
		 " x509 -req -in %s.csr -CA ca.crt -CAkey ca.key "
		 "-set_serial %ld -days 30 -extfile %s.ext -out %s.crt",
		 name, (long)(random() & 0xffffff) + 2, name, name);
	t_sh(cmd);
}

/* t_certs - make every certificate the tests use. */
static void t_certs(void)
{
	if (access(T_OPENSSL, X_OK) != 0)
		cr_skip_test("no " T_OPENSSL " here to make test certificates");
	strcpy(t_dir, "/tmp/waxseal-tls-XXXXXX");
	cr_assert_not_null(mkdtemp(t_dir));

	t_sh(T_OPENSSL " req -x509 -newkey ec -pkeyopt "
		       "ec_paramgen_curve:prime256v1 -nodes -keyout ca.key "
		       "-out ca.crt -days 30 -subj /CN=waxseal-test-CA "
		       "-addext basicConstraints=critical,CA:TRUE "
		       "-addext keyUsage=critical,keyCertSign,cRLSign");
	t_leaf("mx", "mx.test", "DNS:mx.test");
	t_leaf("wild", "other.test", "DNS:*.wild.test");
	t_leaf("cn", "cn.test", NULL);
	t_sh(T_OPENSSL " req -x509 -newkey ec -pkeyopt "
		       "ec_paramgen_curve:prime256v1 -nodes -keyout self.key "
		       "-out self.crt -days 30 -subj /CN=mx.test "
		       "-addext subjectAltName=DNS:mx.test");
}

/* t_clean - remove the test directory. */
static void t_clean(void)
{
	char cmd[128];

	if (t_dir[0] == '\0')
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
	cr_assert_eq(system(cmd), 0);
}

/*
 * t_conf - the defaults plus name=value pairs (NULL-terminated); the
 * caller frees it with conf_free.
 */
static void t_conf(struct conf *c, ...)
{
	char err[256];
	const char *n, *v;
	va_list ap;

	cr_assert_eq(conf_defaults(c), 0);
	va_start(ap, c);
	while ((n = va_arg(ap, const char *)) != NULL) {
		v = va_arg(ap, const char *);
		cr_assert_eq(conf_set(c, n, v, err, sizeof(err)), 0, "%s", err);
	}
	va_end(ap);
}

/* t_server_ctx - a server context with leaf NAME and protocols. */
static struct relay_tls_ctx *t_server_ctx(const char *name,
					  const char *protocols)
{
	struct relay_tls_ctx *ctx = NULL;
	struct conf c;
	char crt[64], key[64], err[256] = "";

	snprintf(crt, sizeof(crt), "%s.crt", name);
	snprintf(key, sizeof(key), "%s.key", name);
	t_conf(&c, "smtpd_tls_cert_file", t_path(crt), "smtpd_tls_key_file",
	       t_path(key), "smtpd_tls_protocols", protocols, NULL);
	cr_assert_eq(relay_tls_ctx_new(&ctx, &c, err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_not_null(ctx);
	conf_free(&c);
	return ctx;
}

/* t_client_ctx - a client context; with_ca loads the test CA. */
static struct relay_tls_ctx *t_client_ctx(bool with_ca, const char *protocols)
{
	struct relay_tls_ctx *ctx = NULL;
	struct conf c;
	char err[256] = "";

	t_conf(&c, "smtp_tls_CAfile", with_ca ? t_path("ca.crt") : "",
	       "smtp_tls_protocols", protocols, NULL);
	cr_assert_eq(relay_tls_client_ctx_new(&ctx, &c, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_not_null(ctx);
	conf_free(&c);
	return ctx;
}

/* t_move - a's pending ciphertext into b; the bytes moved. */
static size_t t_move(struct relay_tls *a, struct relay_tls *b)
{
	const char *p;
	size_t n = relay_tls_output(a, &p);

	if (n > 0) {
		cr_assert_eq(relay_tls_input(b, p, n), 0);
		relay_tls_consume(a, n);
	}
	return n;
}

/*
 * t_handshake - drive both sides until neither has anything to send;
 * the last results of relay_tls_handshake in *cr and *sr.
 */
static void t_handshake(struct relay_tls *cli, struct relay_tls *srv, int *cr,
			int *sr)
{
	size_t moved;
	int i;

	*cr = *sr = 0;
	for (i = 0; i < T_ROUNDS; i++) {
		moved = 0;
		if (*cr == 0)
			*cr = relay_tls_handshake(cli);
		moved += t_move(cli, srv);
		if (*sr == 0)
			*sr = relay_tls_handshake(srv);
		moved += t_move(srv, cli);
		if (moved == 0)
			break;
	}
	cr_assert_lt(i, T_ROUNDS, "the handshake did not settle");
}

/* t_send - a writes text, b must read exactly it. */
static void t_send(struct relay_tls *a, struct relay_tls *b, const char *text)
{
	char buf[256];
	size_t got = 0, len = strlen(text);
	int n, i;

	cr_assert_eq(relay_tls_write(a, text, len), 0);
	for (i = 0; i < T_ROUNDS && got < len; i++) {
		t_move(a, b);
		n = relay_tls_read(b, buf + got, sizeof(buf) - got);
		cr_assert_geq(n, 0, "relay_tls_read: %d (%s)", n,
			      relay_tls_error());
		got += (size_t)n;
		t_move(b, a);
	}
	cr_assert_eq(got, len);
	cr_assert_eq(memcmp(buf, text, len), 0);
}

/* t_pair - a client for sni/verify_host against server ctx; handshake. */
static void t_pair(struct relay_tls_ctx *cctx, struct relay_tls_ctx *sctx,
		   const char *host, struct relay_tls_session *resume,
		   struct relay_tls **cli, struct relay_tls **srv)
{
	int cr, sr;

	*cli = relay_tls_client_new(cctx, "mx.test", host, resume);
	*srv = relay_tls_new(sctx);
	cr_assert_not_null(*cli);
	cr_assert_not_null(*srv);
	t_handshake(*cli, *srv, &cr, &sr);
	cr_assert_eq(cr, 1, "client handshake %d: %s", cr, relay_tls_error());
	cr_assert_eq(sr, 1, "server handshake %d: %s", sr, relay_tls_error());
	cr_assert(relay_tls_ready(*cli));
	cr_assert(relay_tls_ready(*srv));
}

/* t_verify - handshake with server leaf NAME; relay_tls_verified's. */
static int t_verify(const char *leaf, bool with_ca, const char *host,
		    const char **why)
{
	struct relay_tls_ctx *sctx = t_server_ctx(leaf, ">=TLSv1.2");
	struct relay_tls_ctx *cctx = t_client_ctx(with_ca, ">=TLSv1.2");
	struct relay_tls *cli, *srv;
	int r;

	t_pair(cctx, sctx, host, NULL, &cli, &srv);
	r = relay_tls_verified(cli, why);
	relay_tls_free(cli);
	relay_tls_free(srv);
	relay_tls_ctx_free(cctx);
	relay_tls_ctx_free(sctx);
	return r;
}

TestSuite(relay_tls, .init = t_certs, .fini = t_clean);

Test(relay_tls, handshake_and_data_both_ways)
{
	struct relay_tls_ctx *sctx = t_server_ctx("mx", ">=TLSv1.2");
	struct relay_tls_ctx *cctx = t_client_ctx(true, ">=TLSv1.2");
	struct relay_tls *cli, *srv;
	const char *why = "unset", *version, *cipher;
	int bits;

	t_pair(cctx, sctx, "mx.test", NULL, &cli, &srv);
	cr_assert_eq(relay_tls_verified(cli, &why), 0, "%s", why);
	cr_assert_not(relay_tls_resumed(cli));

	t_send(cli, srv, "EHLO relay.test\r\n");
	t_send(srv, cli, "250-mx.test\r\n250 PIPELINING\r\n");
	t_send(cli, srv, "QUIT\r\n");

	/* The client describes its side like the server does. */
	relay_tls_params(cli, &version, &cipher, &bits);
	cr_assert_str_eq(version, "TLSv1.3");
	cr_assert_gt(bits, 0);
	cr_assert_neq(strstr(relay_tls_describe(cli), cipher), NULL, "%s",
		      relay_tls_describe(cli));
	cr_assert_eq(
	    strncmp(relay_tls_describe(cli), "TLSv1.3 with cipher ", 20), 0,
	    "%s", relay_tls_describe(cli));

	relay_tls_free(cli);
	relay_tls_free(srv);
	relay_tls_ctx_free(cctx);
	relay_tls_ctx_free(sctx);
}

Test(relay_tls, verify_passes_with_ca_and_name)
{
	const char *why = "unset";

	cr_assert_eq(t_verify("mx", true, "mx.test", &why), 0, "%s", why);
	cr_assert_eq(t_verify("mx", true, "MX.TEST", &why), 0, "%s", why);
}

Test(relay_tls, verify_fails_with_wrong_name)
{
	const char *why = NULL;

	cr_assert_eq(t_verify("mx", true, "other.test", &why), -EPERM);
	cr_assert_str_eq(why, "name mismatch");
	cr_assert_eq(t_verify("mx", true, "sub.mx.test", &why), -EPERM);
	cr_assert_str_eq(why, "name mismatch");
}

Test(relay_tls, verify_wildcard_one_leftmost_label)
{
	const char *why = "unset";

	cr_assert_eq(t_verify("wild", true, "mx1.wild.test", &why), 0, "%s",
		     why);
	cr_assert_eq(t_verify("wild", true, "a.b.wild.test", &why), -EPERM);
	cr_assert_eq(t_verify("wild", true, "wild.test", &why), -EPERM);
	cr_assert_eq(t_verify("wild", true, "other.test", &why), -EPERM,
		     "the subject CN was used");
}

Test(relay_tls, verify_ignores_subject_cn)
{
	const char *why = NULL;

	cr_assert_eq(t_verify("cn", true, "cn.test", &why), -EPERM);
	cr_assert_str_eq(why, "name mismatch");
}

Test(relay_tls, self_signed_fails_verify_but_not_handshake)
{
	const char *why = NULL;

	/* Opportunistic (no name): the handshake completes (t_pair). */
	cr_assert_eq(t_verify("self", false, NULL, &why), -EPERM);
	cr_assert_str_eq(why, "no name to verify");

	cr_assert_eq(t_verify("self", false, "mx.test", &why), -EPERM);
	cr_assert_str_eq(why, "self-signed certificate");
	cr_assert_eq(t_verify("self", true, "mx.test", &why), -EPERM);
	cr_assert_str_eq(why, "self-signed certificate");
}

Test(relay_tls, unknown_ca_fails_verify)
{
	const char *why = NULL;

	cr_assert_eq(t_verify("mx", false, "mx.test", &why), -EPERM);
	cr_assert_str_eq(why, "unknown CA");
}

/* t_resume - two connections; the second resumes the first's session. */
static void t_resume(const char *cproto, const char *version)
{
	struct relay_tls_ctx *sctx = t_server_ctx("mx", ">=TLSv1.2");
	struct relay_tls_ctx *cctx = t_client_ctx(true, cproto);
	struct relay_tls_session *sess, *next;
	struct relay_tls *cli, *srv;
	const char *why = "unset", *v, *c;
	int bits;

	t_pair(cctx, sctx, "mx.test", NULL, &cli, &srv);
	cr_assert_not(relay_tls_resumed(cli));
	relay_tls_params(cli, &v, &c, &bits);
	cr_assert_str_eq(v, version);

	/* TLS 1.3 tickets come after the handshake: read a reply first. */
	t_send(cli, srv, "EHLO relay.test\r\n");
	t_send(srv, cli, "250 mx.test\r\n");
	sess = relay_tls_session_get(cli);
	cr_assert_not_null(sess, "no session to resume");
	relay_tls_free(cli);
	relay_tls_free(srv);

	t_pair(cctx, sctx, "mx.test", sess, &cli, &srv);
	cr_assert(relay_tls_resumed(cli), "the client did not resume");
	cr_assert(relay_tls_resumed(srv), "the server did not resume");
	relay_tls_params(cli, &v, &c, &bits);
	cr_assert_str_eq(v, version);
	cr_assert_eq(relay_tls_verified(cli, &why), 0, "%s", why);
	t_send(cli, srv, "QUIT\r\n");
	t_send(srv, cli, "221 bye\r\n");

	/* The resumed connection offers a session for the next one. */
	next = relay_tls_session_get(cli);
	cr_assert_not_null(next);
	relay_tls_session_put(next);
	relay_tls_session_put(sess);

	relay_tls_free(cli);
	relay_tls_free(srv);
	relay_tls_ctx_free(cctx);
	relay_tls_ctx_free(sctx);
}

Test(relay_tls, resume_tls12)
{
	t_resume("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1, !TLSv1.3", "TLSv1.2");
}

Test(relay_tls, resume_tls13)
{
	t_resume(">=TLSv1.3", "TLSv1.3");
}

Test(relay_tls, resumed_session_checks_name_again)
{
	struct relay_tls_ctx *sctx = t_server_ctx("mx", ">=TLSv1.2");
	struct relay_tls_ctx *cctx = t_client_ctx(true, ">=TLSv1.2");
	struct relay_tls_session *sess;
	struct relay_tls *cli, *srv;
	const char *why = NULL;

	/* First without a name (opportunistic), then resumed with one. */
	t_pair(cctx, sctx, NULL, NULL, &cli, &srv);
	t_send(srv, cli, "220 mx.test\r\n");
	sess = relay_tls_session_get(cli);
	cr_assert_not_null(sess);
	relay_tls_free(cli);
	relay_tls_free(srv);

	t_pair(cctx, sctx, "wrong.test", sess, &cli, &srv);
	cr_assert(relay_tls_resumed(cli));
	cr_assert_eq(relay_tls_verified(cli, &why), -EPERM);
	cr_assert_str_eq(why, "name mismatch");
	relay_tls_free(cli);
	relay_tls_free(srv);
	relay_tls_session_put(sess);
	relay_tls_ctx_free(cctx);
	relay_tls_ctx_free(sctx);
}

Test(relay_tls, client_tls13_only_against_server_tls12_only_fails)
{
	struct relay_tls_ctx *sctx =
	    t_server_ctx("mx", "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1, !TLSv1.3");
	struct relay_tls_ctx *cctx = t_client_ctx(true, ">=TLSv1.3");
	struct relay_tls *cli, *srv;
	int cr, sr;

	cli = relay_tls_client_new(cctx, "mx.test", NULL, NULL);
	srv = relay_tls_new(sctx);
	cr_assert_not_null(cli);
	cr_assert_not_null(srv);
	t_handshake(cli, srv, &cr, &sr);
	cr_assert_eq(sr, -EPROTO, "server handshake: %d", sr);
	cr_assert_eq(cr, -EPROTO, "client handshake: %d", cr);
	cr_assert_not(relay_tls_ready(cli));
	relay_tls_free(cli);
	relay_tls_free(srv);
	relay_tls_ctx_free(cctx);
	relay_tls_ctx_free(sctx);
}

Test(relay_tls_ctx, client_ctx_errors)
{
	struct relay_tls_ctx *ctx = (struct relay_tls_ctx *)1;
	struct conf c;
	char err[256] = "";

	/* An unreadable CA file names the file. */
	t_conf(&c, "smtp_tls_CAfile", "/nonexistent/waxseal-ca.pem", NULL);
	cr_assert_eq(relay_tls_client_ctx_new(&ctx, &c, err, sizeof(err)),
		     -EINVAL);
	cr_assert_null(ctx);
	cr_assert_eq(strncmp(err, "/nonexistent/waxseal-ca.pem: ", 29), 0, "%s",
		     err);
	conf_free(&c);

	/* A protocol setting that means nothing. */
	err[0] = '\0';
	t_conf(&c, "smtp_tls_protocols", ">=TLSv9", NULL);
	cr_assert_eq(relay_tls_client_ctx_new(&ctx, &c, err, sizeof(err)),
		     -EINVAL);
	cr_assert_neq(strstr(err, "smtp_tls_protocols"), NULL, "%s", err);
	conf_free(&c);

	/* Nothing configured: still a context. */
	t_conf(&c, NULL);
	cr_assert_eq(relay_tls_client_ctx_new(&ctx, &c, err, sizeof(err)), 0);
	cr_assert_not_null(ctx);
	relay_tls_ctx_free(ctx);
	conf_free(&c);
}
