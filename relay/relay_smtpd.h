/*
 * relay_smtpd - waxseal's SMTP server (RFC 5321 with PIPELINING, SIZE,
 * 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8, CHUNKING and STARTTLS).
 *
 * One relay_smtpd serves every listener of the loop. Each connection is a
 * session: a state, an input buffer, and one checker-and-doer per command
 * from a table. Pipelined commands are answered in order; replies made
 * while one read is processed go out in one write. A transaction ends
 * when the message is signed (sign pool) and durable (spool): only then
 * does the client get "250 2.0.0 Ok: queued as ID". While that is under
 * way the session reads no further commands.
 *
 * Clients whose address is in mynetworks may relay; every other client
 * gets "554 5.7.1 Relay access denied" for every recipient. Nobody is
 * tarpitted unless smtpd_error_sleep_time is set.
 *
 * Configuration generations: a struct relay_gen holds one loaded
 * configuration with its DKIM keys and TLS context. A session keeps the
 * generation it started with until it ends, so SIGHUP never changes
 * settings under an open session.
 */
#ifndef WAXSEAL_RELAY_SMTPD_H
#define WAXSEAL_RELAY_SMTPD_H

#include <stddef.h>
#include <uv.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "relay/relay_io.h"
#include "relay/relay_tls.h"
#include "sign/sign.h"

struct relay_gen {
	struct conf conf;
	struct sign_keys *keys;
	struct relay_tls_ctx *tls;
	int refs;
};

/* relay_gen_put - drop a reference; the last frees everything. */
void relay_gen_put(struct relay_gen *g);

struct relay_smtpd;

/*
 * relay_smtpd_new - a server on loop. spool and pool are borrowed and must
 * outlive it; gen's reference is taken over. NULL on ENOMEM.
 */
struct relay_smtpd *relay_smtpd_new(uv_loop_t *loop, struct queue_spool *sp,
				    struct sign_pool *pool,
				    struct relay_gen *gen);

/* relay_smtpd_accept_cb - the relay_accept_cb to give relay_io_listen. */
void relay_smtpd_accept_cb(void *arg, struct relay_sock *s);

/* relay_smtpd_set_gen - new sessions use gen (reference taken over). */
void relay_smtpd_set_gen(struct relay_smtpd *srv, struct relay_gen *gen);

/*
 * relay_smtpd_set_pool - messages finished from now on are signed on pool
 * (borrowed); jobs already on the old one come back from it as before.
 */
void relay_smtpd_set_pool(struct relay_smtpd *srv, struct sign_pool *pool);

/*
 * relay_smtpd_shutdown - sessions between transactions get "421" and
 * close; sessions inside one finish it first. done(arg) runs when the last
 * session is gone (maybe at once).
 */
void relay_smtpd_shutdown(struct relay_smtpd *srv, void (*done)(void *),
			  void *arg);

/*
 * relay_smtpd_on_queued - fn(arg, id) for every message that has become
 * durable (after its 250), for the delivery scheduler.
 */
void relay_smtpd_on_queued(struct relay_smtpd *srv,
			   void (*fn)(void *, const char *), void *arg);

/* relay_smtpd_free - release the server; no session may remain. */
void relay_smtpd_free(struct relay_smtpd *srv);

#endif
