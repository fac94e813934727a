/*
 * relay_sched - waxseal's delivery scheduler: takes the messages the
 * spool holds and hands them to destinations, within each destination's
 * concurrency window, reusing connections; records each recipient's
 * outcome, retries with backoff, expires and bounces.
 *
 * Routing. A recipient's next hop is relayhost when set; else its domain
 * in transport_maps (exact, then `.parent`); else the MX hosts of its
 * domain, port 25. A destination is one next hop: the relayhost, the map
 * entry, or the domain. A message's recipients are grouped per
 * destination into jobs of at most default_destination_recipient_limit.
 *
 * Concurrency (Postfix's feedback idea, made exact here):
 *  - a destination starts with a window of initial_destination_concurrency
 *    connections (open, opening or idle alike), never more;
 *  - every transaction that ends on a live connection widens the window by
 *    one, up to default_destination_concurrency_limit (or the
 *    destination's line in destination_concurrency_limits);
 *  - every failed connection (refused, timed out, no greeting, TLS
 *    required and missing, a 421, a DNS failure that may pass) narrows it
 *    by one, down to 1;
 *  - at a window of 1, destination_concurrency_failed_cohort_limit failed
 *    connections in a row suspend the destination for
 *    minimal_backoff_time: its waiting and new jobs are deferred at once,
 *    with the last failure as the reason, instead of hammering it. After
 *    the suspension it starts again at the initial window. `waxseal queue
 *    flush` ends every suspension.
 *
 * Outcomes: 2xx delivered, 5xx bounced, anything else deferred. When all
 * jobs of one attempt are back, a message with no recipient left leaves
 * the spool; one with deferred recipients gets its next attempt at
 * min(maximal_backoff_time, minimal_backoff_time * 2^(attempts-1)) from
 * now, unless it is older than maximal_queue_lifetime
 * (bounce_queue_lifetime for the null sender): then its remaining
 * recipients expire. Bounced and expired recipients of one attempt get one
 * DSN, queued to the envelope sender, never to <>. Every recipient
 * outcome is a line in delivery_log.
 *
 * defer_transports containing "smtp" holds all delivery: messages wait
 * in the spool until relay_sched_flush().
 *
 * Threads: the loop thread only.
 */
#ifndef WAXSEAL_RELAY_SCHED_H
#define WAXSEAL_RELAY_SCHED_H

#include <stddef.h>
#include <uv.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "relay/relay_io.h"

struct relay_sched;

/*
 * relay_sched_new - a scheduler delivering from sp. c must outlive it
 * (the daemon keeps its generation). Reads transport_maps and
 * destination_concurrency_limits, opens delivery_log, makes the TLS
 * client context and the resolver. 0, or -errno with the reason in err
 * (a map's error names the file and line).
 */
int relay_sched_new(struct relay_sched **out, uv_loop_t *loop,
		    struct relay_io *io, struct queue_spool *sp,
		    const struct conf *c, char *err, size_t errlen);

/*
 * relay_sched_reload - delivery settings from c (SIGHUP): relayhost,
 * transport_maps, destination_concurrency_limits, defer_transports,
 * delivery_log, the client's TLS settings, and every limit, timeout and
 * backoff read as it is used. c must outlive the scheduler or the next
 * reload. Connections made before end after their current transaction;
 * jobs under way go on. dns_servers needs a restart. 0, or -errno with
 * the reason in err, and then nothing changed.
 */
int relay_sched_reload(struct relay_sched *s, const struct conf *c,
		       char *err, size_t errlen);

/* relay_sched_start - schedule every live message of the spool. */
void relay_sched_start(struct relay_sched *s);

/* relay_sched_queued - a new message is durable in the spool. */
void relay_sched_queued(struct relay_sched *s, const char *id);

/*
 * relay_sched_flush - try every deferred message now (only those with a
 * recipient at domain when it is not NULL), end suspensions, and deliver
 * even while defer_transports holds delivery. The number of messages.
 */
size_t relay_sched_flush(struct relay_sched *s, const char *domain);

/* relay_sched_hold / _release - 0, -ENOENT. */
int relay_sched_hold(struct relay_sched *s, const char *id);
int relay_sched_release(struct relay_sched *s, const char *id);

/* relay_sched_delete - drop a message without a DSN. 0, -ENOENT. */
int relay_sched_delete(struct relay_sched *s, const char *id);

/* relay_sched_flush_log - write delivery_log's buffered lines. */
void relay_sched_flush_log(struct relay_sched *s);

/* relay_sched_reopen_log - SIGUSR1: reopen delivery_log. */
void relay_sched_reopen_log(struct relay_sched *s);

/*
 * relay_sched_shutdown - stop starting deliveries and close every
 * connection (a transaction cut short is tried again after a restart);
 * done(arg) once every connection is closed (maybe at once).
 */
void relay_sched_shutdown(struct relay_sched *s, void (*done)(void *),
			  void *arg);

/* relay_sched_free - release everything; after shutdown's done. */
void relay_sched_free(struct relay_sched *s);

#endif
