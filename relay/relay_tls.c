/*
 * relay_tls - see relay_tls.h.
 *
 * struct relay_tls_session is never defined: a pointer to one is a
 * BoringSSL SSL_SESSION, whose reference count (thread-safe) is the
 * session's. relay_tls_sess() and relay_tls_handle() convert.
 */
#include "relay/relay_tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "conf/conf.h"

struct relay_tls_ctx {
	SSL_CTX *ssl;
	int refs; /* references beyond the first */
};

struct relay_tls {
	SSL *ssl;
	BIO *rbio, *wbio;     /* owned by ssl */
	SSL_SESSION *session; /* client: newest resumable session, owned */
	char *verify_host;    /* client: the name to check, or NULL */
	char desc[160];
};

/* relay_tls_version - a protocol name as Postfix writes it, or -1. */
static int relay_tls_version(const char *w, size_t n)
{
	static const struct {
		const char *name;
		int v;
	} names[] = {
	    {"TLSv1", TLS1_VERSION},
	    {"TLSv1.1", TLS1_1_VERSION},
	    {"TLSv1.2", TLS1_2_VERSION},
	    {"TLSv1.3", TLS1_3_VERSION},
	    {"SSLv2", 0},
	    {"SSLv3", SSL3_VERSION},
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == n &&
		    strncmp(names[i].name, w, n) == 0)
			return names[i].v;
	return -1;
}

/*
 * relay_tls_protocols - min and max versions from ">=TLSv1.2" or a list
 * of exclusions "!TLSv1, !TLSv1.1". 0 or -EINVAL.
 */
static int relay_tls_protocols(const char *spec, int *min, int *max)
{
	const char *p = spec;
	int v;

	*min = TLS1_2_VERSION;
	*max = TLS1_3_VERSION;
	if (spec == NULL || *spec == '\0')
		return 0;
	if (strncmp(spec, ">=", 2) == 0) {
		v = relay_tls_version(spec + 2, strlen(spec + 2));
		if (v <= 0)
			return -EINVAL;
		*min = v;
		return 0;
	}

	/* Exclusions: the lowest version not excluded is the minimum. */
	*min = TLS1_VERSION;
	while (*p) {
		size_t n;

		while (*p == ' ' || *p == ',' || *p == ':')
			p++;
		if (*p == '\0')
			break;
		n = strcspn(p, " ,:");
		if (*p != '!')
			v = relay_tls_version(p, n);
		else
			v = relay_tls_version(p + 1, n - 1);
		if (v < 0)
			return -EINVAL;
		if (*p == '!' && v == *min && v < TLS1_3_VERSION)
			*min = v == TLS1_VERSION     ? TLS1_1_VERSION
			       : v == TLS1_1_VERSION ? TLS1_2_VERSION
						     : TLS1_3_VERSION;
		if (*p == '!' && v == TLS1_3_VERSION)
			*max = TLS1_2_VERSION;
		p += n;
	}
	return *min <= *max ? 0 : -EINVAL;
}

/*
 * relay_tls_ctx_alloc - a context with the protocol range and cipher
 * list of one side; param names the side's parameters in messages
 * ("smtpd" or "smtp"). 0, or -EINVAL/-ENOMEM with err filled.
 */
static int relay_tls_ctx_alloc(struct relay_tls_ctx **out, const char *param,
			       const char *protocols, const char *ciphers,
			       char *err, size_t errlen)
{
	struct relay_tls_ctx *ctx;
	int min, max;

	if (relay_tls_protocols(protocols, &min, &max) < 0) {
		snprintf(err, errlen, "%s_tls_protocols: not understood: %s",
			 param, protocols);
		return -EINVAL;
	}
	ctx = calloc(1, sizeof(*ctx));
	if (ctx != NULL)
		ctx->ssl = SSL_CTX_new(TLS_method());
	if (ctx == NULL || ctx->ssl == NULL) {
		snprintf(err, errlen, "TLS setup failed: %s",
			 relay_tls_error());
		free(ctx);
		return -ENOMEM;
	}
	SSL_CTX_set_min_proto_version(ctx->ssl, (uint16_t)min);
	SSL_CTX_set_max_proto_version(ctx->ssl, (uint16_t)max);

	/* Postfix's grades map onto BoringSSL's default (secure) list. */
	if (ciphers && *ciphers && strcmp(ciphers, "high") != 0 &&
	    strcmp(ciphers, "medium") != 0 &&
	    SSL_CTX_set_strict_cipher_list(ctx->ssl, ciphers) != 1) {
		snprintf(err, errlen, "%s_tls_ciphers: not understood: %s",
			 param, ciphers);
		relay_tls_ctx_free(ctx);
		return -EINVAL;
	}
	*out = ctx;
	return 0;
}

int relay_tls_ctx_new(struct relay_tls_ctx **out, const struct conf *c,
		      char *err, size_t errlen)
{
	struct relay_tls_ctx *ctx = NULL;
	int r;

	*out = NULL;
	if (c->smtpd_tls_cert_file == NULL || *c->smtpd_tls_cert_file == '\0')
		return 0;
	r = relay_tls_ctx_alloc(&ctx, "smtpd", c->smtpd_tls_protocols,
				c->smtpd_tls_ciphers, err, errlen);
	if (r < 0)
		return r;

	if (SSL_CTX_use_certificate_chain_file(ctx->ssl,
					       c->smtpd_tls_cert_file) != 1) {
		snprintf(err, errlen, "%s: cannot load certificate: %s",
			 c->smtpd_tls_cert_file, relay_tls_error());
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx->ssl,
					c->smtpd_tls_key_file &&
						*c->smtpd_tls_key_file
					    ? c->smtpd_tls_key_file
					    : c->smtpd_tls_cert_file,
					SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx->ssl) != 1) {
		snprintf(err, errlen, "%s: cannot load private key: %s",
			 c->smtpd_tls_key_file, relay_tls_error());
		goto fail;
	}
	*out = ctx;
	return 0;

fail:
	relay_tls_ctx_free(ctx);
	return -EINVAL;
}

/*
 * relay_tls_new_session_cb - the client got a resumable session: at the
 * end of a TLS 1.2 handshake, or a TLS 1.3 NewSessionTicket read after
 * it (RFC 8446 section 4.6.1). Keep the newest on the relay_tls; the
 * reference BoringSSL passes becomes ours (return 1).
 */
static int relay_tls_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct relay_tls *t = SSL_get_app_data(ssl);

	if (t == NULL)
		return 0;
	if (t->session)
		SSL_SESSION_free(t->session);
	t->session = sess;
	return 1;
}

int relay_tls_client_ctx_new(struct relay_tls_ctx **out, const struct conf *c,
			     char *err, size_t errlen)
{
	struct relay_tls_ctx *ctx = NULL;
	const char *file = c->smtp_tls_CAfile, *path = c->smtp_tls_CApath;
	int r;

	*out = NULL;
	r = relay_tls_ctx_alloc(&ctx, "smtp", c->smtp_tls_protocols,
				c->smtp_tls_ciphers, err, errlen);
	if (r < 0)
		return r;

	/*
	 * The chain is always verified, never fatally (SSL_VERIFY_NONE
	 * keeps the result for SSL_get_verify_result): opportunistic TLS
	 * must work with self-signed servers, and a client that requires
	 * verification asks relay_tls_verified() and hangs up itself.
	 */
	SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_NONE, NULL);
	if (file && *file &&
	    SSL_CTX_load_verify_locations(ctx->ssl, file, NULL) != 1) {
		snprintf(err, errlen, "%s: cannot load CA certificates: %s",
			 file, relay_tls_error());
		goto fail;
	}
	if (path && *path &&
	    SSL_CTX_load_verify_locations(ctx->ssl, NULL, path) != 1) {
		snprintf(err, errlen, "%s: cannot use CA directory: %s", path,
			 relay_tls_error());
		goto fail;
	}

	/* Sessions are kept by the caller per destination, not in ctx. */
	SSL_CTX_set_session_cache_mode(
	    ctx->ssl, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(ctx->ssl, relay_tls_new_session_cb);
	*out = ctx;
	return 0;

fail:
	relay_tls_ctx_free(ctx);
	return -EINVAL;
}

struct relay_tls_ctx *relay_tls_ctx_ref(struct relay_tls_ctx *ctx)
{
	if (ctx != NULL)
		ctx->refs++;
	return ctx;
}

void relay_tls_ctx_free(struct relay_tls_ctx *ctx)
{
	if (ctx == NULL)
		return;
	if (ctx->refs > 0) {
		ctx->refs--;
		return;
	}
	SSL_CTX_free(ctx->ssl);
	free(ctx);
}

/* relay_tls_sess - the SSL_SESSION behind a relay_tls_session. */
static SSL_SESSION *relay_tls_sess(struct relay_tls_session *s)
{
	return (SSL_SESSION *)(void *)s;
}

/* relay_tls_handle - the relay_tls_session for an SSL_SESSION. */
static struct relay_tls_session *relay_tls_handle(SSL_SESSION *s)
{
	return (struct relay_tls_session *)(void *)s;
}

/* relay_tls_alloc - an SSL over two memory BIOs, in neither state. */
static struct relay_tls *relay_tls_alloc(struct relay_tls_ctx *ctx)
{
	struct relay_tls *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->ssl = SSL_new(ctx->ssl);
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
		if (t->ssl)
			SSL_free(t->ssl);
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		free(t);
		return NULL;
	}
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	SSL_set_app_data(t->ssl, t);
	return t;
}

struct relay_tls *relay_tls_new(struct relay_tls_ctx *ctx)
{
	struct relay_tls *t = relay_tls_alloc(ctx);

	if (t == NULL)
		return NULL;
	SSL_set_accept_state(t->ssl);
	return t;
}

struct relay_tls *relay_tls_client_new(struct relay_tls_ctx *ctx,
				       const char *sni, const char *verify_host,
				       struct relay_tls_session *resume)
{
	struct relay_tls *t = relay_tls_alloc(ctx);

	if (t == NULL)
		return NULL;
	SSL_set_connect_state(t->ssl);

	if (sni && *sni && SSL_set_tlsext_host_name(t->ssl, sni) != 1)
		goto fail;
	if (verify_host) {
		t->verify_host = strdup(verify_host);
		if (t->verify_host == NULL)
			goto fail;
	}

	/* SSL_set_session takes a reference of its own. */
	if (resume && SSL_set_session(t->ssl, relay_tls_sess(resume)) != 1)
		goto fail;
	return t;

fail:
	relay_tls_free(t);
	return NULL;
}

void relay_tls_free(struct relay_tls *t)
{
	if (t == NULL)
		return;
	SSL_free(t->ssl);
	if (t->session)
		SSL_SESSION_free(t->session);
	free(t->verify_host);
	free(t);
}

int relay_tls_handshake(struct relay_tls *t)
{
	int r = SSL_do_handshake(t->ssl);

	if (r == 1)
		return 1;
	switch (SSL_get_error(t->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	default:
		return -EPROTO;
	}
}

/* relay_tls_chain_why - a verify error as a short static reason. */
static const char *relay_tls_chain_why(long v)
{
	switch (v) {
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		return "self-signed certificate";
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
		return "unknown CA";
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return "certificate expired";
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return "certificate not yet valid";
	default:
		return X509_verify_cert_error_string(v);
	}
}

int relay_tls_verified(struct relay_tls *t, const char **why)
{
	X509 *cert;
	long v;
	int r;

	if (!SSL_is_init_finished(t->ssl)) {
		*why = "handshake not complete";
		return -EPERM;
	}
	if (t->verify_host == NULL) {
		*why = "no name to verify";
		return -EPERM;
	}
	cert = SSL_get_peer_certificate(t->ssl);
	if (cert == NULL) {
		*why = "no certificate";
		return -EPERM;
	}

	/*
	 * The chain result comes from the handshake (or, when resuming,
	 * from the session's first handshake). The name is checked here
	 * every time, so that a session made opportunistically, without a
	 * name, cannot pass for a verified one. RFC 6125 section 6.4: DNS
	 * names of subjectAltName only, never the subject CN; a wildcard
	 * only as the whole leftmost label (BoringSSL's only form).
	 */
	v = SSL_get_verify_result(t->ssl);
	if (v != X509_V_OK) {
		*why = relay_tls_chain_why(v);
		r = -EPERM;
	} else if (X509_check_host(cert, t->verify_host, strlen(t->verify_host),
				   X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
				   NULL) != 1) {
		*why = "name mismatch";
		r = -EPERM;
	} else {
		*why = NULL;
		r = 0;
	}
	X509_free(cert);
	return r;
}

bool relay_tls_resumed(const struct relay_tls *t)
{
	return SSL_session_reused(t->ssl) == 1;
}

struct relay_tls_session *relay_tls_session_get(struct relay_tls *t)
{
	SSL_SESSION *s = t->session;

	/*
	 * The new-session callback's is the newest (a TLS 1.3 ticket read
	 * after the handshake). Without one, a resumed TLS 1.2 session
	 * is still good for the next connection.
	 */
	if (s && SSL_SESSION_is_resumable(s)) {
		SSL_SESSION_up_ref(s);
		return relay_tls_handle(s);
	}
	s = SSL_get1_session(t->ssl);
	if (s && SSL_SESSION_is_resumable(s))
		return relay_tls_handle(s);
	if (s)
		SSL_SESSION_free(s);
	return NULL;
}

void relay_tls_session_put(struct relay_tls_session *s)
{
	if (s)
		SSL_SESSION_free(relay_tls_sess(s));
}

int relay_tls_input(struct relay_tls *t, const char *buf, size_t len)
{
	return BIO_write(t->rbio, buf, (int)len) == (int)len ? 0 : -ENOMEM;
}

int relay_tls_read(struct relay_tls *t, char *buf, size_t cap)
{
	int n = SSL_read(t->ssl, buf, (int)cap);

	if (n > 0)
		return n;
	switch (SSL_get_error(t->ssl, n)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		return -EPIPE;
	default:
		return -EPROTO;
	}
}

int relay_tls_write(struct relay_tls *t, const void *buf, size_t len)
{
	/* Memory BIOs never push back, so a write completes whole. */
	if (len == 0)
		return 0;
	return SSL_write(t->ssl, buf, (int)len) == (int)len ? 0 : -EPROTO;
}

size_t relay_tls_output(struct relay_tls *t, const char **p)
{
	const uint8_t *data;
	size_t len;

	if (!BIO_mem_contents(t->wbio, &data, &len))
		return 0;
	*p = (const char *)data;
	return len;
}

void relay_tls_consume(struct relay_tls *t, size_t n)
{
	char sink[4096];

	while (n > 0) {
		int r = BIO_read(t->wbio, sink,
				 (int)(n < sizeof(sink) ? n : sizeof(sink)));
		if (r <= 0)
			break;
		n -= (size_t)r;
	}
}

bool relay_tls_ready(const struct relay_tls *t)
{
	return SSL_is_init_finished(t->ssl);
}

const char *relay_tls_describe(struct relay_tls *t)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
	int alg = 0;
	int bits = c ? SSL_CIPHER_get_bits(c, &alg) : 0;

	snprintf(t->desc, sizeof(t->desc), "%s with cipher %s (%d/%d bits)",
		 SSL_get_version(t->ssl), c ? SSL_CIPHER_get_name(c) : "none",
		 bits, alg);
	return t->desc;
}

void relay_tls_params(struct relay_tls *t, const char **version,
		      const char **cipher, int *bits)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);

	*version = SSL_get_version(t->ssl);
	*cipher = c ? SSL_CIPHER_get_name(c) : "none";
	*bits = c ? SSL_CIPHER_get_bits(c, NULL) : 0;
}

const char *relay_tls_error(void)
{
	static __thread char buf[200];
	unsigned long e = ERR_get_error();

	if (e == 0)
		return "no detail";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}
