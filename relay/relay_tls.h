/*
 * relay_tls - TLS for waxseal's SMTP sessions (RFC 3207 STARTTLS), with
 * BoringSSL over memory BIOs: the session moves ciphertext between the
 * socket and the TLS object itself, so TLS works the same on both I/O
 * backends.
 *
 * A relay_tls_ctx holds the certificate, key and protocol settings; it is
 * immutable once made and is shared by sessions (refcounted by BoringSSL's
 * SSL_CTX). A relay_tls belongs to one session.
 *
 * smtpd_tls_protocols takes Postfix's forms: ">=TLSv1.2", or a list such
 * as "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1". smtpd_tls_ciphers takes
 * Postfix's grades "high" and "medium" (both: BoringSSL's secure default
 * set), or else an OpenSSL cipher string.
 */
#ifndef WAXSEAL_RELAY_TLS_H
#define WAXSEAL_RELAY_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct conf;
struct relay_tls_ctx;
struct relay_tls;

/*
 * relay_tls_ctx_new - a server context from smtpd_tls_cert_file and
 * smtpd_tls_key_file. *out is NULL (and 0 returned) when no certificate is
 * configured. -EINVAL with "FILE: reason" in err otherwise.
 */
int relay_tls_ctx_new(struct relay_tls_ctx **out, const struct conf *c,
		      char *err, size_t errlen);
void relay_tls_ctx_free(struct relay_tls_ctx *ctx);

/* relay_tls_new - server-side TLS for one connection; NULL on ENOMEM. */
struct relay_tls *relay_tls_new(struct relay_tls_ctx *ctx);
void relay_tls_free(struct relay_tls *t);

/* relay_tls_input - ciphertext from the peer. 0 or -ENOMEM. */
int relay_tls_input(struct relay_tls *t, const char *buf, size_t len);

/*
 * relay_tls_read - plaintext into buf: > 0 bytes, 0 when more ciphertext
 * is needed (the handshake may progress meanwhile), -EPROTO when the TLS
 * session failed, -EPIPE when the peer closed it cleanly.
 */
int relay_tls_read(struct relay_tls *t, char *buf, size_t cap);

/* relay_tls_write - encrypt len bytes of plaintext. 0 or -EPROTO. */
int relay_tls_write(struct relay_tls *t, const void *buf, size_t len);

/*
 * relay_tls_output - ciphertext waiting to go to the peer: *p and the
 * length; relay_tls_consume() after sending (copying) it.
 */
size_t relay_tls_output(struct relay_tls *t, const char **p);
void relay_tls_consume(struct relay_tls *t, size_t n);

/* relay_tls_ready - the handshake has completed. */
bool relay_tls_ready(const struct relay_tls *t);

/*
 * relay_tls_describe - "TLSv1.3 with cipher TLS_AES_128_GCM_SHA256
 * (128/128 bits)" for the Received header and log; static storage in t.
 */
const char *relay_tls_describe(struct relay_tls *t);

/* relay_tls_params - protocol name, cipher name and secret bits. */
void relay_tls_params(struct relay_tls *t, const char **version,
		      const char **cipher, int *bits);

/* relay_tls_error - the last error as text, for the log. */
const char *relay_tls_error(void);

#endif
