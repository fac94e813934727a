/*
 * relay_smtpc - one outbound SMTP connection (RFC 5321), the client side
 * of waxseal's delivery.
 *
 * A connection is opened to one address, reads the greeting, says EHLO
 * (HELO when EHLO is refused), upgrades with STARTTLS (RFC 3207) as the
 * TLS level asks, and then carries any number of transactions, one at a
 * time, until its owner closes it. With PIPELINING (RFC 2920) MAIL, every
 * RCPT and DATA leave in one write; without it, one command per reply.
 * The message goes out dot-stuffed, otherwise exactly as stored (signed):
 * no line is folded or rewritten. When the server offers CHUNKING (RFC
 * 3030) as well as PIPELINING, DATA gives way to one BDAT ... LAST with
 * the message as stored, not stuffed, in the same write as the envelope:
 * one round trip per transaction instead of two.
 *
 * Outcomes are per recipient: each recipient gets the reply that decided
 * its fate (the MAIL reply when MAIL failed, its RCPT reply when that
 * failed, else the reply to DATA or to the final dot). A connection lost
 * or timed out mid-transaction gives every undecided recipient a 4xx
 * reply of our own ("451 4.4.2 lost connection with HOST ...").
 *
 * TLS: level none never starts TLS; may starts it when offered and, when
 * the handshake fails, reports RELAY_SMTPC_TLS_FAILED so the owner can
 * open a new connection in plaintext; encrypt fails the connection when
 * STARTTLS is not offered or fails; verify also checks the certificate
 * chain against smtp_tls_CAfile/CApath and the name against verify_host.
 * Whatever the server sends after its 220 to STARTTLS and before the
 * handshake is discarded (the CVE-2011-0411 class, client side).
 *
 * Callbacks run on the loop thread. The owner keeps the struct until the
 * closed callback, which is the last call.
 */
#ifndef WAXSEAL_RELAY_SMTPC_H
#define WAXSEAL_RELAY_SMTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <uv.h>

#include "relay/relay_io.h"
#include "relay/relay_tls.h"

struct relay_smtpc;

/* Why a connection could not be used (the ready callback's err). */
enum relay_smtpc_fail {
	RELAY_SMTPC_OK = 0,
	RELAY_SMTPC_CONNECT,    /* TCP connect failed or timed out */
	RELAY_SMTPC_GREETING,   /* no 220, or EHLO and HELO refused */
	RELAY_SMTPC_TLS_FAILED, /* handshake failed (may: retry plain) */
	RELAY_SMTPC_TLS_NEEDED, /* encrypt/verify and no STARTTLS, or the
				 * certificate did not verify */
	RELAY_SMTPC_LOST        /* connection dropped or timed out */
};

struct relay_smtpc_opts {
	const char *helo;            /* our name in EHLO/HELO */
	const char *host;            /* peer's name: SNI, logs, verify */
	int tls_level;               /* enum conf_tls_level */
	struct relay_tls_ctx *tls;   /* client context; NULL: no TLS */
	struct relay_tls_session *resume; /* borrowed; may be NULL */
	int64_t connect_timeout;     /* ms */
	int64_t helo_timeout;        /* ms */
	int64_t mail_timeout;        /* ms */
	int64_t data_done_timeout;   /* ms */
};

/* One transaction; every pointer borrowed until the done callback. */
struct relay_smtpc_txn {
	const char *sender;          /* "" for the null sender */
	const char *const *rcpts;
	size_t nrcpt;
	const char *data;            /* the message, CRLF lines, unstuffed */
	size_t len;
	bool eightbit;               /* BODY=8BITMIME when offered */
	bool smtputf8;               /* needs SMTPUTF8 (RFC 6531) */
};

/* Per-recipient outcome; valid during the done callback only. */
struct relay_smtpc_result {
	const int *code;             /* nrcpt reply codes */
	const char *const *reply;    /* nrcpt reply texts, one line */
	bool lost;                   /* the connection is gone */
};

struct relay_smtpc_cbs {
	/* The session is ready for a transaction (err 0), or could not be
	 * set up: err says why, reply holds the server's reply or our
	 * reason. After a failure only closed follows. */
	void (*ready)(void *arg, enum relay_smtpc_fail err,
		      const char *reply);
	/* The transaction has ended; the connection is idle again unless
	 * r->lost. */
	void (*done)(void *arg, const struct relay_smtpc_result *r);
	/* An idle connection was closed by the server or timed out. */
	void (*lost)(void *arg);
	/* Freed: the last callback. */
	void (*closed)(void *arg);
};

/*
 * relay_smtpc_open - connect to addr (port set) and set the session up;
 * cbs->ready follows. opts is copied (its strings too). 0 or -errno
 * (then no callback runs).
 */
int relay_smtpc_open(struct relay_smtpc **out, struct relay_io *io,
		     uv_loop_t *loop, const struct sockaddr *addr,
		     const struct relay_smtpc_opts *opts,
		     const struct relay_smtpc_cbs *cbs, void *arg);

/*
 * relay_smtpc_send - start a transaction on a ready, idle connection;
 * cbs->done follows. 0 or -EBUSY (not idle), -ENOMEM.
 */
int relay_smtpc_send(struct relay_smtpc *c, const struct relay_smtpc_txn *t);

/* relay_smtpc_close - QUIT when idle, then close; closed follows. */
void relay_smtpc_close(struct relay_smtpc *c);

/* relay_smtpc_tls - TLS version and cipher, or NULLs in plaintext. */
void relay_smtpc_tls(const struct relay_smtpc *c, const char **version,
		     const char **cipher);

/*
 * relay_smtpc_session - the TLS session to resume on the next connection
 * to the same destination (a new reference), or NULL.
 */
struct relay_tls_session *relay_smtpc_session(struct relay_smtpc *c);

/* relay_smtpc_peer - "ip" of the connection, for logs. */
const char *relay_smtpc_peer(const struct relay_smtpc *c);

#endif
