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
 * Both sides: the server side (relay_tls_ctx_new, relay_tls_new) for
 * smtpd's STARTTLS, the client side (relay_tls_client_ctx_new,
 * relay_tls_client_new) for delivery. Everything below relay_tls_free
 * works for either.
 *
 * Client certificate checks never fail the handshake: the chain is always
 * checked against the CAs and the result kept, and the caller that needs
 * a verified peer (smtp_tls_security_level = verify) asks
 * relay_tls_verified() once the handshake is done and hangs up itself.
 * Opportunistic TLS (may, encrypt) thus works with self-signed servers.
 *
 * Threads: a relay_tls and a relay_tls_ctx are used by one thread at a
 * time (the loop's); relay_tls_session references may be taken and
 * dropped from any thread.
 *
 * smtpd_tls_protocols takes Postfix's forms: ">=TLSv1.2", or a list such
 * as "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1". smtpd_tls_ciphers takes
 * Postfix's grades "high" and "medium" (both: BoringSSL's secure default
 * set), or else an OpenSSL cipher string. smtp_tls_protocols and
 * smtp_tls_ciphers take the same forms for the client.
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
 * configured. -EINVAL with "FILE: reason" in err otherwise (-ENOMEM,
 * also with err filled, when memory ran out).
 */
int relay_tls_ctx_new(struct relay_tls_ctx **out, const struct conf *c,
		      char *err, size_t errlen);

/*
 * relay_tls_ctx_ref - one more reference to ctx (may be NULL), returned;
 * relay_tls_ctx_free drops one, and the last frees the context. A
 * connection that keeps the context takes one, so that a reload may
 * replace it while the connection lives.
 */
struct relay_tls_ctx *relay_tls_ctx_ref(struct relay_tls_ctx *ctx);
void relay_tls_ctx_free(struct relay_tls_ctx *ctx);

/*
 * relay_tls_client_ctx_new - the client context from smtp_tls_protocols,
 * smtp_tls_ciphers, smtp_tls_CAfile and smtp_tls_CApath (loaded when
 * set; an unreadable file is -EINVAL with "FILE: reason" in err). Always
 * makes a context: 0, -EINVAL (bad file or setting, err filled) or
 * -ENOMEM. Freed with relay_tls_ctx_free().
 */
int relay_tls_client_ctx_new(struct relay_tls_ctx **out, const struct conf *c,
			     char *err, size_t errlen);

/*
 * A saved client session, for resumption (RFC 5077 tickets or a TLS 1.2
 * session ID, RFC 8446 section 2.2 PSK). Refcounted: every reference a
 * function hands out is dropped with relay_tls_session_put(). Immutable.
 */
struct relay_tls_session;

/* relay_tls_new - server-side TLS for one connection; NULL on ENOMEM. */
struct relay_tls *relay_tls_new(struct relay_tls_ctx *ctx);

/*
 * relay_tls_client_new - client TLS for one connection, ctx from
 * relay_tls_client_ctx_new: SNI = sni (may be NULL); when verify_host is
 * set, the chain is checked against the CAs and the certificate against
 * that name (RFC 6125: DNS names in subjectAltName, one leftmost wildcard
 * label; the subject CN is never used); resume may be NULL or a session
 * saved from an earlier connection to the same destination (t takes a
 * reference of its own; the caller keeps its). sni and verify_host are
 * copied. NULL on ENOMEM.
 */
struct relay_tls *relay_tls_client_new(struct relay_tls_ctx *ctx,
				       const char *sni,
				       const char *verify_host,
				       struct relay_tls_session *resume);

/* relay_tls_free - release t (either side); NULL is allowed. */
void relay_tls_free(struct relay_tls *t);

/*
 * relay_tls_handshake - drive the handshake (the client's first call
 * produces the ClientHello: send relay_tls_output after every call and
 * after every relay_tls_input). 1 when complete, 0 when more input is
 * needed, -EPROTO when it failed (relay_tls_error says why; an alert for
 * the peer may then be waiting in relay_tls_output). Works for the server
 * side too; relay_tls_read also completes a handshake on its way.
 */
int relay_tls_handshake(struct relay_tls *t);

/*
 * relay_tls_verified - client, after the handshake: 0 when the peer's
 * chain and name were verified, -EPERM with a static reason in *why
 * otherwise ("self-signed certificate", "unknown CA", "certificate
 * expired", "name mismatch", "no certificate", "no name to verify" when
 * verify_host was NULL, or BoringSSL's text for rarer chain errors). A
 * resumed session keeps its first handshake's chain result; the name is
 * checked again on every call.
 */
int relay_tls_verified(struct relay_tls *t, const char **why);

/* relay_tls_resumed - the handshake resumed a saved session. */
bool relay_tls_resumed(const struct relay_tls *t);

/*
 * relay_tls_session_get - client: the session to resume next time (a new
 * reference) or NULL. The newest usable one: a TLS 1.3 server sends its
 * tickets after the handshake, and they are taken in by relay_tls_read,
 * so ask after the first reply has been read (for SMTP: the EHLO reply
 * after STARTTLS). relay_tls_session_put - drop a reference (NULL is
 * allowed).
 */
struct relay_tls_session *relay_tls_session_get(struct relay_tls *t);
void relay_tls_session_put(struct relay_tls_session *s);

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
