/*
 * relay_tls - see relay_tls.h.
 */
#include "relay/relay_tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conf/conf.h"

struct relay_tls_ctx {
	SSL_CTX *ssl;
};

struct relay_tls {
	SSL *ssl;
	BIO *rbio, *wbio; /* owned by ssl */
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

int relay_tls_ctx_new(struct relay_tls_ctx **out, const struct conf *c,
		      char *err, size_t errlen)
{
	struct relay_tls_ctx *ctx;
	const char *ciphers = c->smtpd_tls_ciphers;
	int min, max;

	*out = NULL;
	if (c->smtpd_tls_cert_file == NULL || *c->smtpd_tls_cert_file == '\0')
		return 0;
	if (relay_tls_protocols(c->smtpd_tls_protocols, &min, &max) < 0) {
		snprintf(err, errlen, "smtpd_tls_protocols: not understood: %s",
			 c->smtpd_tls_protocols);
		return -EINVAL;
	}

	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return -ENOMEM;
	ctx->ssl = SSL_CTX_new(TLS_method());
	if (ctx->ssl == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx->ssl, (uint16_t)min);
	SSL_CTX_set_max_proto_version(ctx->ssl, (uint16_t)max);

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

	/* Postfix's grades map onto BoringSSL's default (secure) list. */
	if (ciphers && *ciphers && strcmp(ciphers, "high") != 0 &&
	    strcmp(ciphers, "medium") != 0 &&
	    SSL_CTX_set_strict_cipher_list(ctx->ssl, ciphers) != 1) {
		snprintf(err, errlen, "smtpd_tls_ciphers: not understood: %s",
			 ciphers);
		goto fail;
	}
	*out = ctx;
	return 0;

fail:
	if (ctx->ssl)
		SSL_CTX_free(ctx->ssl);
	free(ctx);
	if (err[0] == '\0')
		snprintf(err, errlen, "TLS setup failed: %s",
			 relay_tls_error());
	return -EINVAL;
}

void relay_tls_ctx_free(struct relay_tls_ctx *ctx)
{
	if (ctx == NULL)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx);
}

struct relay_tls *relay_tls_new(struct relay_tls_ctx *ctx)
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
	SSL_set_accept_state(t->ssl);
	return t;
}

void relay_tls_free(struct relay_tls *t)
{
	if (t == NULL)
		return;
	SSL_free(t->ssl);
	free(t);
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
