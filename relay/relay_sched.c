/*
 * relay_sched - see relay_sched.h.
 *
 * Objects:
 *  - sched_msg: a message with an attempt under way: its data (read from
 *    the spool once per attempt), its envelope copied, and what this
 *    attempt found (bounces, deferrals). refs counts its jobs still out.
 *  - sched_job: up to the recipient limit of one message's recipients for
 *    one destination; waits in its destination's FIFO, then rides one
 *    connection's transaction.
 *  - sched_dest: a next hop with its window, its FIFO of jobs, its idle
 *    connections and its saved TLS session.
 *  - sched_conn: one connection in the making or in use: the DNS answer
 *    it tries address by address, and the relay_smtpc of the moment.
 *
 * Deferred messages wait in a binary heap ordered by next attempt; one
 * uv timer fires for the earliest. A heap entry is only a hint: when it
 * comes due the spool's index decides (held, gone, rescheduled).
 *
 * XXX: the message is read with queue_spool_read(), a synchronous pread
 * on the loop thread; from the page cache that is cheap, but a cold
 * spool on a slow disk stalls every session for the read.
 *
 * XXX: the DSN lists the recipients that failed in one attempt; a
 * message whose recipients fail in different attempts gets one DSN per
 * such attempt, not one in all.
 *
 * A destination with nothing queued, no connection and no suspension is
 * forgotten after destination_idle_time_limit (window, failure count and
 * TLS session with it), so that a relay sending to millions of domains
 * over weeks holds only those it has talked to lately. The hash of
 * destinations doubles as they grow in number.
 */
#include "relay/relay_sched.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "relay/relay_addr.h"
#include "relay/relay_dlog.h"
#include "relay/relay_dns.h"
#include "relay/relay_dsn.h"
#include "relay/relay_log.h"
#include "relay/relay_map.h"
#include "relay/relay_smtpc.h"
#include "relay/relay_tls.h"

/* Addresses one connection tries before it counts as failed. */
#define SCHED_MAX_TRIES 8
/* How often idle connections and suspensions are looked at. */
#define SCHED_SWEEP_MS 250
/* Idle destinations are looked for every this many sweeps. */
#define SCHED_DEST_SWEEPS 4

struct sched_dest;

struct sched_msg {
	struct sched_msg *hnext;
	char id[QUEUE_ID_LEN + 1];
	int refs;
	char *data;
	size_t len;
	char *sender;
	char **rcpts;
	size_t nrcpt;
	int64_t arrival_ms;
	uint32_t flags, attempts;
	char msgid[256];

	/* What this attempt found. */
	struct relay_dsn_rcpt *bounced;
	size_t nbounced, capbounced;
	bool deferred;
	char defer_reason[512];
};

struct sched_job {
	struct sched_job *next;
	struct sched_msg *m;
	struct sched_dest *d;
	size_t n;
	const char **rcpts;      /* n addresses, for the client */
	size_t idx[];
};

struct sched_conn;

struct sched_dest {
	struct sched_dest *hnext;
	struct relay_sched *s;
	char *key;
	struct relay_map_hop hop;
	struct sched_job *head, *tail;
	size_t njobs;
	int window, limit;
	int nconn, nopening, hiwater;
	int nlinks;           /* sched_conn objects, gone ones included */
	int64_t empty_since;  /* ms; 0: in use at the last look */
	int fails1;
	int64_t suspended_until;
	char reason[512];
	struct sched_conn *idle;
	struct relay_tls_session *session;

	/* destination_rate_limit: no job starts before next_send_ms. */
	int64_t next_send_ms;
	uv_timer_t *rate_timer;
};

enum conn_state { C_RESOLVE, C_OPEN, C_READY, C_BUSY, C_GONE };

struct sched_conn {
	struct sched_conn *next; /* idle list, or all conns */
	struct sched_conn *anext;
	struct sched_dest *d;
	struct relay_smtpc *c;
	int nlive;               /* relay_smtpc objects not yet closed */
	enum conn_state st;
	struct sched_job *job;
	struct relay_dns_host *hosts;
	size_t nhost, hi, ai;
	int tries;
	bool plain;
	bool stale; /* made before a reload: no transaction after this */
	int64_t idle_since;
	char last[512];
	struct sockaddr_storage addr;
};

struct sched_heap_ent {
	int64_t at;
	char id[QUEUE_ID_LEN + 1];
};

struct relay_sched {
	uv_loop_t *loop;
	struct relay_io *io;
	struct queue_spool *sp;
	const struct conf *c;
	struct relay_dns *dns;
	struct relay_dlog *dlog;
	struct relay_tls_ctx *tls;
	struct relay_map *transport, *limits;
	struct relay_map_hop relayhost;
	bool have_relayhost, hold_all, stopping;

	struct sched_msg **msgs;       /* hash of attempts under way */
	size_t nmsgbuckets, nmsgs;
	struct sched_dest **dests;     /* hash of destinations */
	size_t ndestbuckets, ndests;
	struct sched_conn *conns;      /* every connection */

	struct sched_heap_ent *heap;
	size_t nheap, capheap;
	uv_timer_t heap_timer, sweep_timer;
	unsigned sweeps;
	int closes;

	void (*done)(void *);
	void *done_arg;
};

static void sched_pump(struct sched_dest *d);
static void sched_msg_unref(struct relay_sched *s, struct sched_msg *m);
static void sched_conn_try(struct sched_conn *k);
static void sched_conn_take(struct sched_conn *k);
static void sched_heap_arm(struct relay_sched *s);
static void sched_msg_start(struct relay_sched *s, const char *id,
			    bool force);
static void sched_maybe_done(struct relay_sched *s);

/* sched_now - Unix time in milliseconds. */
static int64_t sched_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* sched_hash - FNV-1a of a key, case-insensitive. */
static size_t sched_hash(const char *k)
{
	uint64_t h = 1469598103934665603ull;

	for (; *k; k++) {
		h ^= (unsigned char)tolower((unsigned char)*k);
		h *= 1099511628211ull;
	}
	return (size_t)h;
}

/* ---- messages under way ---- */

static struct sched_msg *sched_msg_find(struct relay_sched *s,
					const char *id)
{
	struct sched_msg *m;

	for (m = s->msgs[sched_hash(id) % s->nmsgbuckets]; m; m = m->hnext)
		if (strcmp(m->id, id) == 0)
			return m;
	return NULL;
}

static void sched_msg_unlink(struct relay_sched *s, struct sched_msg *m)
{
	struct sched_msg **pp = &s->msgs[sched_hash(m->id) % s->nmsgbuckets];

	while (*pp && *pp != m)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = m->hnext;
	s->nmsgs--;
}

static void sched_msg_free(struct sched_msg *m)
{
	size_t i;

	for (i = 0; i < m->nbounced; i++) {
		free((char *)m->bounced[i].diag);
		free((char *)m->bounced[i].remote_mta);
		free((char *)m->bounced[i].status);
	}
	free(m->bounced);
	for (i = 0; i < m->nrcpt; i++)
		free(m->rcpts[i]);
	free(m->rcpts);
	free(m->sender);
	free(m->data);
	free(m);
}

/* sched_find_msgid - the Message-ID field's value, for the log. */
static void sched_find_msgid(struct sched_msg *m)
{
	const char *p = m->data, *end = m->data + m->len;

	m->msgid[0] = '\0';
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);

		if (n == 0 || (n == 1 && p[0] == '\r'))
			return; /* end of the header section */
		if (n > 11 && strncasecmp(p, "Message-ID:", 11) == 0) {
			const char *v = p + 11, *ve = p + n;

			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && isspace((unsigned char)ve[-1]))
				ve--;
			n = (size_t)(ve - v);
			if (n >= sizeof(m->msgid))
				n = sizeof(m->msgid) - 1;
			memcpy(m->msgid, v, n);
			m->msgid[n] = '\0';
			return;
		}
		if (eol == NULL)
			return;
		p = eol + 1;
	}
}

/* ---- destinations ---- */

static void sched_rate_closed_cb(uv_handle_t *h);

/* sched_dest_limit - d's concurrency limit from the configuration. */
static void sched_dest_limit(struct sched_dest *d)
{
	const char *lim = relay_map_get(d->s->limits, d->key);

	d->limit = (int)d->s->c->default_destination_concurrency_limit;
	if (lim && atoi(lim) > 0)
		d->limit = atoi(lim);
	if (d->limit < 1)
		d->limit = 1;
}

/* sched_dests_grow - twice the buckets, every destination rehashed. */
static void sched_dests_grow(struct relay_sched *s)
{
	size_t nb = s->ndestbuckets * 2, b;
	struct sched_dest **nv = calloc(nb, sizeof(*nv)), *d, *dn;

	if (nv == NULL)
		return; /* longer chains, still correct */
	for (b = 0; b < s->ndestbuckets; b++) {
		for (d = s->dests[b]; d; d = dn) {
			dn = d->hnext;
			d->hnext = nv[sched_hash(d->key) % nb];
			nv[sched_hash(d->key) % nb] = d;
		}
	}
	free(s->dests);
	s->dests = nv;
	s->ndestbuckets = nb;
}

static struct sched_dest *sched_dest_get(struct relay_sched *s,
					 const char *key,
					 const struct relay_map_hop *hop)
{
	size_t b = sched_hash(key) % s->ndestbuckets;
	struct sched_dest *d;

	for (d = s->dests[b]; d; d = d->hnext)
		if (strcasecmp(d->key, key) == 0)
			return d;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	d->key = strdup(key);
	if (d->key == NULL) {
		free(d);
		return NULL;
	}
	d->s = s;
	d->hop = *hop;
	sched_dest_limit(d);
	d->window = (int)s->c->initial_destination_concurrency;
	if (d->window > d->limit)
		d->window = d->limit;
	if (d->window < 1)
		d->window = 1;
	d->hnext = s->dests[b];
	s->dests[b] = d;
	s->ndests++;
	if (s->ndests > s->ndestbuckets)
		sched_dests_grow(s);
	return d;
}

/* sched_dest_idle - whether nothing refers to d but the hash. */
static bool sched_dest_idle(const struct sched_dest *d, int64_t now)
{
	return d->njobs == 0 && d->nlinks == 0 && d->suspended_until <= now &&
	       (d->rate_timer == NULL ||
		!uv_is_active((const uv_handle_t *)d->rate_timer));
}

/* sched_dest_free - release d, already out of the hash. */
static void sched_dest_free(struct sched_dest *d)
{
	if (d->rate_timer != NULL)
		uv_close((uv_handle_t *)d->rate_timer, sched_rate_closed_cb);
	relay_tls_session_put(d->session);
	free(d->key);
	free(d);
}

/*
 * sched_dests_sweep - forget the destinations idle for longer than
 * destination_idle_time_limit (see the top of this file).
 */
static void sched_dests_sweep(struct relay_sched *s, int64_t now)
{
	int64_t limit = s->c->destination_idle_time_limit;
	struct sched_dest **pp, *d;
	size_t b, n = 0;

	for (b = 0; b < s->ndestbuckets; b++) {
		for (pp = &s->dests[b]; (d = *pp) != NULL;) {
			if (!sched_dest_idle(d, now)) {
				d->empty_since = 0;
			} else if (d->empty_since == 0) {
				d->empty_since = now;
			} else if (now - d->empty_since >= limit) {
				*pp = d->hnext;
				relay_debug(NULL, "dest-forget dest=%s",
					    d->key);
				sched_dest_free(d);
				s->ndests--;
				n++;
				continue;
			}
			pp = &d->hnext;
		}
	}
	if (n > 0)
		relay_debug(NULL, "dest-sweep forgot=%zu kept=%zu", n,
			    s->ndests);
}

/* sched_route - the destination of a recipient, or NULL with a bounce
 * reason in why. */
static struct sched_dest *sched_route(struct relay_sched *s,
				      const char *rcpt, char *why,
				      size_t whylen)
{
	const char *at = strrchr(rcpt, '@'), *v;
	struct relay_map_hop hop;
	char dom[256];
	size_t i, n;

	if (s->have_relayhost)
		return sched_dest_get(s, s->c->relayhost, &s->relayhost);
	if (at == NULL || at[1] == '\0' || strlen(at + 1) >= sizeof(dom)) {
		snprintf(why, whylen, "550 5.1.3 bad recipient address syntax");
		return NULL;
	}
	n = strlen(at + 1);
	for (i = 0; i < n; i++)
		dom[i] = (char)tolower((unsigned char)at[1 + i]);
	dom[n] = '\0';
	if (dom[0] == '[') {
		/* An address literal (RFC 5321 4.1.3): no MX lookup. */
		if (relay_map_hop_parse(&hop, dom) < 0) {
			snprintf(why, whylen,
				 "550 5.1.2 bad address literal %s", dom);
			return NULL;
		}
		return sched_dest_get(s, dom, &hop);
	}
	v = relay_map_domain(s->transport, dom);
	if (v) {
		if (relay_map_hop_parse(&hop, v) == 0)
			return sched_dest_get(s, v, &hop);
		snprintf(why, whylen, "451 4.3.5 bad transport_maps entry %s",
			 v);
		return NULL;
	}
	snprintf(hop.host, sizeof(hop.host), "%s", dom);
	hop.port = 25;
	hop.mx = true;
	return sched_dest_get(s, dom, &hop);
}

/* ---- outcomes ---- */

/* sched_outcome - one recipient's fate: log it and remember it. */
static void sched_outcome(struct relay_sched *s, struct sched_msg *m,
			  struct sched_dest *d, struct sched_conn *k,
			  size_t idx, const char *reply, const char *status)
{
	struct relay_dlog_rec r = {0};
	const char *ver = NULL, *cipher = NULL;
	int64_t now = sched_now();

	if (k && k->c && k->st == C_BUSY)
		relay_smtpc_tls(k->c, &ver, &cipher);
	r.time_ms = now;
	r.queue_id = m->id;
	r.message_id = m->msgid[0] ? m->msgid : NULL;
	r.sender = m->sender;
	r.recipient = m->rcpts[idx];
	r.destination = d ? d->key : NULL;
	if (k && k->hosts && k->hi < k->nhost && k->st == C_BUSY) {
		r.mx = k->hosts[k->hi].name;
		r.ip = relay_smtpc_peer(k->c);
	}
	r.tls_version = ver;
	r.tls_cipher = cipher;
	r.reply = reply;
	r.status = status;
	r.attempt = m->attempts + 1;
	r.delay_ms = now - m->arrival_ms;
	relay_dlog_write(s->dlog, &r);
	relay_info(m->id, "%s to=<%s> relay=%s%s%s delay=%.1f reply=\"%s\"",
		   status, m->rcpts[idx], d ? d->key : "none",
		   r.ip ? "/" : "", r.ip ? r.ip : "",
		   (double)r.delay_ms / 1000, reply);

	if (strcmp(status, "deferred") == 0) {
		m->deferred = true;
		snprintf(m->defer_reason, sizeof(m->defer_reason), "%s",
			 reply);
		return;
	}
	queue_spool_rcpt_done(s->sp, m->id, &idx, 1);
	if (strcmp(status, "delivered") == 0)
		return;

	/* Bounced or expired: the DSN of this attempt lists it. */
	if (m->nbounced == m->capbounced) {
		size_t cap = m->capbounced ? 2 * m->capbounced : 4;
		struct relay_dsn_rcpt *b =
			realloc(m->bounced, cap * sizeof(*b));

		if (b == NULL)
			return;
		m->bounced = b;
		m->capbounced = cap;
	}
	{
		struct relay_dsn_rcpt *b = &m->bounced[m->nbounced++];
		char code[16];

		memset(b, 0, sizeof(*b));
		relay_dsn_status(reply, code);
		if (strcmp(status, "expired") == 0)
			snprintf(code, sizeof(code), "4.4.7");
		b->rcpt = m->rcpts[idx];
		b->action = "failed";
		b->status = strdup(code);
		b->diag = strdup(reply);
		b->remote_mta = r.mx ? strdup(r.mx) : NULL;
		b->last_attempt_ms = now;
	}
}

/* sched_status_of - delivered, bounced or deferred for a reply code. */
static const char *sched_status_of(int code)
{
	if (code / 100 == 2)
		return "delivered";
	if (code / 100 == 5)
		return "bounced";
	return "deferred";
}

/* sched_job_fail - every recipient of the job gets reply. */
static void sched_job_fail(struct relay_sched *s, struct sched_job *j,
			   struct sched_conn *k, const char *reply)
{
	const char *status = sched_status_of(atoi(reply));
	size_t i;

	for (i = 0; i < j->n; i++)
		sched_outcome(s, j->m, j->d, k, j->idx[i], reply, status);
	sched_msg_unref(s, j->m);
	free(j);
}

/* sched_dest_pop - the next waiting job, or NULL. */
static struct sched_job *sched_dest_pop(struct sched_dest *d)
{
	struct sched_job *j = d->head;

	if (j) {
		d->head = j->next;
		if (d->head == NULL)
			d->tail = NULL;
		d->njobs--;
	}
	return j;
}

/* sched_dest_fail_all - every waiting job gets reply. */
static void sched_dest_fail_all(struct sched_dest *d, const char *reply)
{
	struct sched_job *j;

	while ((j = sched_dest_pop(d)) != NULL)
		sched_job_fail(d->s, j, NULL, reply);
}

/* sched_dest_suspend - too many failures: stop trying for a while. */
static void sched_dest_suspend(struct sched_dest *d, const char *reason)
{
	d->suspended_until = sched_now() + d->s->c->minimal_backoff_time;
	snprintf(d->reason, sizeof(d->reason), "%s", reason);
	relay_warn(NULL, "destination-suspended dest=%s for=%llds reason=\"%s\"",
		   d->key,
		   (long long)(d->s->c->minimal_backoff_time / 1000), reason);
	sched_dest_fail_all(d, d->reason);
}

/* ---- connections ---- */

/* sched_conn_maybe_free - free a finished connection. */
static void sched_conn_maybe_free(struct sched_conn *k)
{
	struct relay_sched *s = k->d->s;
	struct sched_conn **pp;

	if (k->st != C_GONE || k->nlive > 0)
		return;
	for (pp = &s->conns; *pp && *pp != k; pp = &(*pp)->anext)
		;
	if (*pp)
		*pp = k->anext;
	k->d->nlinks--;
	free(k->hosts);
	free(k);
	sched_maybe_done(s);
}

/* sched_conn_unidle - take k off its destination's idle list. */
static void sched_conn_unidle(struct sched_conn *k)
{
	struct sched_conn **pp;

	for (pp = &k->d->idle; *pp; pp = &(*pp)->next) {
		if (*pp == k) {
			*pp = k->next;
			k->next = NULL;
			return;
		}
	}
}

/* sched_conn_gone - the connection no longer counts for its dest. */
static void sched_conn_gone(struct sched_conn *k)
{
	struct sched_dest *d = k->d;

	if (k->st == C_GONE)
		return;
	if (k->st == C_RESOLVE || k->st == C_OPEN)
		d->nopening--;
	if (k->st == C_READY)
		sched_conn_unidle(k);
	k->st = C_GONE;
	d->nconn--;
	if (k->c)
		relay_smtpc_close(k->c);
	k->c = NULL;
}

/* sched_conn_failed - the connection could not be made: feedback. */
static void sched_conn_failed(struct sched_conn *k, const char *reason)
{
	struct sched_dest *d = k->d;

	sched_conn_gone(k);
	if (d->s->stopping) {
		sched_conn_maybe_free(k);
		return;
	}
	if (d->window > 1) {
		d->window--;
	} else if (++d->fails1 >=
		   d->s->c->destination_concurrency_failed_cohort_limit) {
		sched_dest_suspend(d, reason);
	}
	snprintf(d->reason, sizeof(d->reason), "%s", reason);
	relay_debug(NULL, "connect-failed dest=%s window=%d reason=\"%s\"",
		    d->key, d->window, reason);

	/* With nothing left trying, the jobs cannot wait for ever. */
	if (d->nconn == 0 && d->njobs > 0 && d->window == 1 &&
	    d->suspended_until == 0)
		sched_dest_fail_all(d, reason);
	sched_conn_maybe_free(k);
	sched_pump(d);
}

static void sched_smtpc_ready_cb(void *arg, enum relay_smtpc_fail err,
				 const char *reply);
static void sched_smtpc_done_cb(void *arg,
				const struct relay_smtpc_result *r);
static void sched_smtpc_lost_cb(void *arg);
static void sched_smtpc_closed_cb(void *arg);

/* sched_conn_open - open an SMTP session to the current address. */
static int sched_conn_open(struct sched_conn *k)
{
	static const struct relay_smtpc_cbs cbs = {
		.ready = sched_smtpc_ready_cb,
		.done = sched_smtpc_done_cb,
		.lost = sched_smtpc_lost_cb,
		.closed = sched_smtpc_closed_cb,
	};
	struct relay_sched *s = k->d->s;
	const struct conf *c = s->c;
	struct relay_smtpc_opts o = {0};
	struct relay_dns_host *h = &k->hosts[k->hi];
	int r;

	memcpy(&k->addr, &h->addr[k->ai], sizeof(k->addr));
	if (k->addr.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&k->addr)->sin6_port =
			htons((uint16_t)k->d->hop.port);
	else
		((struct sockaddr_in *)&k->addr)->sin_port =
			htons((uint16_t)k->d->hop.port);
	o.helo = c->smtp_helo_name;
	o.host = h->name;
	o.tls_level = k->plain ? CONF_TLS_NONE : c->smtp_tls_security_level;
	o.tls = s->tls;
	o.resume = k->d->session;
	o.connect_timeout = c->smtp_connect_timeout;
	o.helo_timeout = c->smtp_helo_timeout;
	o.mail_timeout = c->smtp_mail_timeout;
	o.data_done_timeout = c->smtp_data_done_timeout;
	r = relay_smtpc_open(&k->c, s->io, s->loop,
			     (struct sockaddr *)&k->addr, &o, &cbs, k);
	if (r == 0)
		k->nlive++;
	k->tries++;
	return r;
}

/* sched_conn_next - advance to the next address; false when none. */
static bool sched_conn_next(struct sched_conn *k)
{
	if (k->tries >= SCHED_MAX_TRIES)
		return false;
	if (++k->ai < k->hosts[k->hi].naddr)
		return true;
	k->ai = 0;
	while (++k->hi < k->nhost)
		if (k->hosts[k->hi].naddr > 0)
			return true;
	return false;
}

/* sched_conn_try - open on the current address, or the next ones. */
static void sched_conn_try(struct sched_conn *k)
{
	int r;

	k->st = C_OPEN;
	while ((r = sched_conn_open(k)) < 0) {
		snprintf(k->last, sizeof(k->last),
			 "451 4.4.1 cannot connect to %s: %s",
			 k->hosts[k->hi].name, strerror(-r));
		if (!sched_conn_next(k)) {
			sched_conn_failed(k, k->last);
			return;
		}
	}
}

static void sched_smtpc_ready_cb(void *arg, enum relay_smtpc_fail err,
				 const char *reply)
{
	struct sched_conn *k = arg;
	struct sched_dest *d = k->d;

	if (k->st != C_OPEN)
		return;
	if (err == RELAY_SMTPC_OK) {
		k->st = C_READY;
		d->nopening--;
		sched_conn_take(k);
		return;
	}

	/* This session is over; its closed callback follows. */
	k->c = NULL;
	if (reply && reply[0] >= '2' && reply[0] <= '5')
		snprintf(k->last, sizeof(k->last), "%s", reply);
	else
		snprintf(k->last, sizeof(k->last), "451 4.4.1 %s",
			 reply ? reply : "connection failed");
	if (d->s->stopping) {
		sched_conn_failed(k, k->last);
		return;
	}
	if (err == RELAY_SMTPC_TLS_FAILED && !k->plain) {
		/* smtp_tls_security_level = may: the same host, plaintext. */
		relay_info(NULL, "tls-fallback dest=%s host=%s reason=\"%s\"",
			   d->key, k->hosts[k->hi].name, k->last);
		k->plain = true;
		sched_conn_try(k);
		return;
	}
	k->plain = false;
	if (!sched_conn_next(k)) {
		sched_conn_failed(k, k->last);
		return;
	}
	sched_conn_try(k);
}

static void sched_rate_cb(uv_timer_t *h)
{
	sched_pump(h->data);
}

static void sched_rate_closed_cb(uv_handle_t *h)
{
	free(h);
}

/*
 * sched_rate_ok - whether d may start a job now under
 * destination_rate_limit; when not, its timer pumps d when it may.
 */
static bool sched_rate_ok(struct sched_dest *d)
{
	struct relay_sched *s = d->s;
	int64_t now, wait;

	if (s->c->destination_rate_limit <= 0)
		return true;
	now = sched_now();
	if (now >= d->next_send_ms)
		return true;
	if (d->rate_timer == NULL) {
		d->rate_timer = malloc(sizeof(*d->rate_timer));
		if (d->rate_timer == NULL)
			return true;
		uv_timer_init(s->loop, d->rate_timer);
		d->rate_timer->data = d;
	}
	wait = d->next_send_ms - now;
	if (!uv_is_active((uv_handle_t *)d->rate_timer))
		uv_timer_start(d->rate_timer, sched_rate_cb, (uint64_t)wait, 0);
	return false;
}

/* sched_rate_spend - a job starts now: the next may start 1/rate later. */
static void sched_rate_spend(struct sched_dest *d)
{
	int64_t rate = d->s->c->destination_rate_limit, now;

	if (rate <= 0)
		return;
	now = sched_now();
	if (d->next_send_ms < now)
		d->next_send_ms = now;
	d->next_send_ms += 1000 / rate > 0 ? 1000 / rate : 1;
}

/* sched_conn_take - a ready connection takes the next job or idles. */
static void sched_conn_take(struct sched_conn *k)
{
	struct sched_dest *d = k->d;
	struct relay_smtpc_txn t = {0};
	struct sched_job *j;
	size_t i;
	int r;

	/* A connection made under the settings before a reload ends here;
	 * the pump opens a new one if jobs wait. */
	if (k->stale && !d->s->stopping) {
		sched_conn_gone(k);
		sched_conn_maybe_free(k);
		sched_pump(d);
		return;
	}
	if (d->s->stopping || d->suspended_until || !sched_rate_ok(d) ||
	    (j = sched_dest_pop(d)) == NULL) {
		if (d->s->stopping) {
			sched_conn_gone(k);
			sched_conn_maybe_free(k);
			return;
		}
		k->st = C_READY;
		k->idle_since = sched_now();
		k->next = d->idle;
		d->idle = k;
		return;
	}
	/* The client reads the addresses until done: they live on the job. */
	for (i = 0; i < j->n; i++)
		j->rcpts[i] = j->m->rcpts[j->idx[i]];
	t.sender = j->m->sender;
	t.rcpts = j->rcpts;
	t.nrcpt = j->n;
	t.data = j->m->data;
	t.len = j->m->len;
	t.eightbit = (j->m->flags & QUEUE_F_8BITMIME) != 0;
	t.smtputf8 = (j->m->flags & QUEUE_F_SMTPUTF8) != 0;
	k->st = C_BUSY;
	k->job = j;
	sched_rate_spend(d);
	r = relay_smtpc_send(k->c, &t);
	if (r < 0) {
		k->job = NULL;
		sched_job_fail(d->s, j, NULL, "451 4.3.0 cannot send");
		sched_conn_gone(k);
		sched_conn_maybe_free(k);
		sched_pump(d);
	}
}

static void sched_smtpc_done_cb(void *arg, const struct relay_smtpc_result *r)
{
	struct sched_conn *k = arg;
	struct sched_dest *d = k->d;
	struct relay_sched *s = d->s;
	struct sched_job *j = k->job;
	size_t i;

	for (i = 0; i < j->n; i++)
		sched_outcome(s, j->m, d, k, j->idx[i], r->reply[i],
			      sched_status_of(r->code[i]));
	if (d->session == NULL && !r->lost)
		d->session = relay_smtpc_session(k->c);
	k->job = NULL;
	sched_msg_unref(s, j->m);
	free(j);

	/* Feedback: a transaction on a live connection widens the window;
	 * a 421 or a dropped connection narrows it. */
	if (r->lost) {
		k->c = NULL; /* the client closes itself */
		if (d->window > 1)
			d->window--;
		sched_conn_gone(k);
		sched_conn_maybe_free(k);
		sched_pump(d);
		return;
	}
	d->fails1 = 0;
	if (d->window < d->limit)
		d->window++;
	sched_conn_take(k);
	sched_pump(d);
}

static void sched_smtpc_lost_cb(void *arg)
{
	struct sched_conn *k = arg;
	struct sched_dest *d = k->d;

	k->c = NULL;
	sched_conn_gone(k);
	sched_conn_maybe_free(k);
	sched_pump(d);
}

static void sched_smtpc_closed_cb(void *arg)
{
	struct sched_conn *k = arg;

	k->nlive--;
	sched_conn_maybe_free(k);
}

static void sched_dns_cb(void *arg, const struct relay_dns_answer *a)
{
	struct sched_conn *k = arg;
	struct sched_dest *d = k->d;
	char why[512];
	size_t i;

	if (a->status == -ECANCELED || d->s->stopping) {
		sched_conn_gone(k);
		sched_conn_maybe_free(k);
		return;
	}
	if (a->status == -ENOENT || a->status == -EHOSTUNREACH) {
		/* Permanent: every job waiting here bounces. */
		if (a->status == -EHOSTUNREACH)
			snprintf(why, sizeof(why),
				 "556 5.1.10 domain %s accepts no mail "
				 "(null MX)",
				 d->hop.host);
		else
			snprintf(why, sizeof(why),
				 "550 5.1.2 host or domain name not found: "
				 "%s",
				 d->hop.host);
		sched_conn_gone(k);
		sched_dest_fail_all(d, why);
		sched_conn_maybe_free(k);
		return;
	}
	if (a->status < 0 || a->nhost == 0) {
		snprintf(why, sizeof(why),
			 "451 4.4.3 temporary failure looking up %s",
			 d->hop.host);
		sched_conn_failed(k, why);
		return;
	}
	k->hosts = malloc(a->nhost * sizeof(*k->hosts));
	if (k->hosts == NULL) {
		sched_conn_failed(k, "451 4.3.0 out of memory");
		return;
	}
	for (i = 0; i < a->nhost; i++)
		k->hosts[i] = a->host[i];
	k->nhost = a->nhost;
	k->hi = k->ai = 0;
	while (k->hi < k->nhost && k->hosts[k->hi].naddr == 0)
		k->hi++;
	if (k->hi == k->nhost) {
		sched_conn_failed(k, "451 4.4.3 no address for the next hop");
		return;
	}
	sched_conn_try(k);
}

/* sched_conn_new - open one more connection to d. */
static void sched_conn_new(struct sched_dest *d)
{
	struct relay_sched *s = d->s;
	struct sched_conn *k = calloc(1, sizeof(*k));
	int r;

	if (k == NULL)
		return;
	k->d = d;
	d->nlinks++;
	k->st = C_RESOLVE;
	k->anext = s->conns;
	s->conns = k;
	d->nconn++;
	d->nopening++;
	if (d->nconn > d->hiwater)
		d->hiwater = d->nconn;
	if (d->hop.mx)
		r = relay_dns_mx(s->dns, d->hop.host, sched_dns_cb, k);
	else
		r = relay_dns_host(s->dns, d->hop.host, sched_dns_cb, k);
	if (r < 0) {
		char why[300];

		snprintf(why, sizeof(why), "451 4.4.3 cannot look up %s: %s",
			 d->hop.host, strerror(-r));
		sched_conn_failed(k, why);
	}
}

/* sched_pump - give d's waiting jobs to connections, within the window. */
static void sched_pump(struct sched_dest *d)
{
	struct relay_sched *s = d->s;

	if (s->stopping || d->njobs == 0)
		return;
	if (d->suspended_until) {
		if (sched_now() < d->suspended_until) {
			sched_dest_fail_all(d, d->reason);
			return;
		}
		d->suspended_until = 0;
		d->fails1 = 0;
		d->window = (int)s->c->initial_destination_concurrency;
		if (d->window > d->limit)
			d->window = d->limit;
	}
	while (d->njobs > 0 && d->idle && sched_rate_ok(d)) {
		struct sched_conn *k = d->idle;

		d->idle = k->next;
		k->next = NULL;
		sched_conn_take(k);
	}
	while (d->njobs > (size_t)d->nopening && d->nconn < d->window &&
	       !d->suspended_until)
		sched_conn_new(d);
}

/* ---- attempts ---- */

static void sched_dsn_queued_cb(void *arg, int res, const char *id)
{
	struct relay_sched *s = arg;

	if (res < 0) {
		relay_err(id, "bounce-failed reason=\"%s\"", strerror(-res));
		return;
	}
	relay_sched_queued(s, id);
}

/* sched_bounce - queue one DSN for this attempt's failed recipients. */
static void sched_bounce(struct relay_sched *s, struct sched_msg *m)
{
	struct relay_dsn_in in = {0};
	struct queue_msg_in q = {0};
	const char *to[1];
	struct iovec iov;
	char id[QUEUE_ID_LEN + 1];
	char *dsn;
	size_t len;
	int r;

	if (m->nbounced == 0 || m->sender[0] == '\0')
		return; /* never bounce a bounce */
	in.myhostname = s->c->myhostname;
	in.queue_id = m->id;
	in.sender = m->sender;
	in.arrival_ms = m->arrival_ms;
	in.now_ms = sched_now();
	in.rcpt = m->bounced;
	in.nrcpt = m->nbounced;
	in.orig = m->data;
	in.origlen = m->len;
	in.smtputf8 = (m->flags & QUEUE_F_SMTPUTF8) != 0;
	r = relay_dsn_build(&in, &dsn, &len);
	if (r < 0) {
		relay_err(m->id, "bounce-failed reason=\"%s\"", strerror(-r));
		return;
	}
	to[0] = m->sender;
	iov.iov_base = dsn;
	iov.iov_len = len;
	q.sender = "";
	q.rcpts = to;
	q.nrcpt = 1;
	q.data = &iov;
	q.ndata = 1;
	q.arrival_ms = in.now_ms;

	/*
	 * UTF-8 in the notification's header (a UTF-8 sender in To:) needs
	 * SMTPUTF8 (RFC 6531); UTF-8 in its parts only needs 8BITMIME (RFC
	 * 6533 section 6).
	 */
	if (relay_addr_has_8bit(m->sender, strlen(m->sender)))
		q.flags |= QUEUE_F_SMTPUTF8;
	if (relay_addr_has_8bit(dsn, len))
		q.flags |= QUEUE_F_8BITMIME;
	r = queue_spool_append(s->sp, &q, sched_dsn_queued_cb, s, id);
	free(dsn);
	if (r < 0)
		relay_err(m->id, "bounce-failed reason=\"%s\"", strerror(-r));
	else
		relay_info(m->id, "bounce to=<%s> dsn=%s nrcpt=%zu",
			   m->sender, id, m->nbounced);
}

/* sched_heap_push - remember that id is due at at. */
static void sched_heap_push(struct relay_sched *s, const char *id, int64_t at)
{
	size_t i;

	if (s->nheap == s->capheap) {
		size_t cap = s->capheap ? 2 * s->capheap : 64;
		struct sched_heap_ent *h =
			realloc(s->heap, cap * sizeof(*h));

		if (h == NULL) {
			relay_err(id, "schedule-failed reason=\"out of "
				      "memory\"");
			return;
		}
		s->heap = h;
		s->capheap = cap;
	}
	i = s->nheap++;
	while (i > 0 && s->heap[(i - 1) / 2].at > at) {
		s->heap[i] = s->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->heap[i].at = at;
	memcpy(s->heap[i].id, id, QUEUE_ID_LEN + 1);
}

/* sched_heap_pop - remove the earliest entry into *e. */
static void sched_heap_pop(struct relay_sched *s, struct sched_heap_ent *e)
{
	struct sched_heap_ent last;
	size_t i = 0, c;

	*e = s->heap[0];
	last = s->heap[--s->nheap];
	while ((c = 2 * i + 1) < s->nheap) {
		if (c + 1 < s->nheap && s->heap[c + 1].at < s->heap[c].at)
			c++;
		if (s->heap[c].at >= last.at)
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	s->heap[i] = last;
}

static void sched_heap_cb(uv_timer_t *h)
{
	struct relay_sched *s = h->data;
	int64_t now = sched_now();
	struct sched_heap_ent e;

	while (s->nheap > 0 && s->heap[0].at <= now && !s->stopping) {
		sched_heap_pop(s, &e);
		sched_msg_start(s, e.id, false);
	}
	sched_heap_arm(s);
}

/* sched_heap_arm - the timer for the earliest entry. */
static void sched_heap_arm(struct relay_sched *s)
{
	int64_t wait;

	if (s->nheap == 0 || s->stopping) {
		uv_timer_stop(&s->heap_timer);
		return;
	}
	wait = s->heap[0].at - sched_now();
	if (wait < 0)
		wait = 0;
	uv_timer_start(&s->heap_timer, sched_heap_cb, (uint64_t)wait, 0);
}

/* sched_msg_finish - every job of the attempt is back. */
static void sched_msg_finish(struct relay_sched *s, struct sched_msg *m)
{
	const struct queue_msg *q = queue_spool_find(s->sp, m->id);
	int64_t now = sched_now(), life, wait;
	uint32_t n;
	size_t i;

	sched_msg_unlink(s, m);
	if (q == NULL) {
		/* Deleted meanwhile. */
		sched_msg_free(m);
		return;
	}
	if (q->npending > 0) {
		life = m->sender[0] ? s->c->maximal_queue_lifetime
				    : s->c->bounce_queue_lifetime;
		if (now - m->arrival_ms >= life) {
			char why[700];

			snprintf(why, sizeof(why),
				 "message expired after %llds in the queue: "
				 "%s",
				 (long long)((now - m->arrival_ms) / 1000),
				 m->defer_reason[0] ? m->defer_reason
						    : "not delivered");
			for (i = 0; i < m->nrcpt && i < q->nrcpt; i++)
				if (!q->rcpt_done[i])
					sched_outcome(s, m, NULL, NULL, i, why,
						      "expired");
		}
	}
	sched_bounce(s, m);
	q = queue_spool_find(s->sp, m->id);
	if (q && q->npending == 0) {
		queue_spool_done(s->sp, m->id);
		relay_info(m->id, "removed");
	} else if (q) {
		n = q->attempts + 1;
		wait = s->c->minimal_backoff_time;
		for (i = 1; i < n && wait < s->c->maximal_backoff_time; i++)
			wait *= 2;
		if (wait > s->c->maximal_backoff_time)
			wait = s->c->maximal_backoff_time;
		queue_spool_defer(s->sp, m->id, now + wait, n);
		if (!s->hold_all) {
			sched_heap_push(s, m->id, now + wait);
			sched_heap_arm(s);
		}
	}
	sched_msg_free(m);
}

static void sched_msg_unref(struct relay_sched *s, struct sched_msg *m)
{
	if (--m->refs == 0)
		sched_msg_finish(s, m);
}

/* sched_msg_load - a new attempt's message from the spool. */
static struct sched_msg *sched_msg_load(struct relay_sched *s,
					const struct queue_msg *q)
{
	struct sched_msg *m = calloc(1, sizeof(*m));
	size_t i;
	int r;

	if (m == NULL)
		return NULL;
	memcpy(m->id, q->id, sizeof(m->id));
	r = queue_spool_read(s->sp, q->id, &m->data, &m->len);
	if (r < 0) {
		relay_err(q->id, "read-failed reason=\"%s\"", strerror(-r));
		free(m);
		return NULL;
	}
	m->sender = strdup(q->sender);
	m->rcpts = calloc(q->nrcpt, sizeof(*m->rcpts));
	if (m->sender == NULL || m->rcpts == NULL)
		goto fail;
	m->nrcpt = q->nrcpt;
	for (i = 0; i < q->nrcpt; i++)
		if ((m->rcpts[i] = strdup(q->rcpts[i])) == NULL)
			goto fail;
	m->arrival_ms = q->arrival_ms;
	m->flags = q->flags;
	m->attempts = q->attempts;
	sched_find_msgid(m);
	return m;

fail:
	sched_msg_free(m);
	return NULL;
}

/* sched_job_new - an empty job of m for d with room for cap. */
static struct sched_job *sched_job_new(struct sched_msg *m,
				       struct sched_dest *d, size_t cap)
{
	struct sched_job *j = malloc(sizeof(*j) + cap * sizeof(j->idx[0]) +
				     cap * sizeof(j->rcpts[0]));

	if (j) {
		j->rcpts = (const char **)(void *)&j->idx[cap];
		j->next = NULL;
		j->m = m;
		j->d = d;
		j->n = 0;
		m->refs++;
	}
	return j;
}

/* sched_job_queue - put j at the end of its destination's FIFO. */
static void sched_job_queue(struct sched_job *j)
{
	struct sched_dest *d = j->d;

	if (d->tail)
		d->tail->next = j;
	else
		d->head = j;
	d->tail = j;
	d->njobs++;
}

/* sched_msg_start - begin an attempt for id (force: despite holds). */
static void sched_msg_start(struct relay_sched *s, const char *id,
			    bool force)
{
	const struct queue_msg *q = queue_spool_find(s->sp, id);
	size_t limit = (size_t)s->c->default_destination_recipient_limit;
	struct { struct sched_dest *d; struct sched_job *j; } open[64];
	size_t nopen = 0, i, k;
	struct sched_msg *m;
	char why[512];

	if (s->stopping || q == NULL || q->held || !q->durable)
		return;
	if (s->hold_all && !force)
		return;
	if (!force && q->next_ms > sched_now())
		return;
	if (sched_msg_find(s, id))
		return;
	if (q->npending == 0) {
		queue_spool_done(s->sp, id);
		return;
	}
	m = sched_msg_load(s, q);
	if (m == NULL)
		return;
	{
		size_t b = sched_hash(m->id) % s->nmsgbuckets;

		m->hnext = s->msgs[b];
		s->msgs[b] = m;
		s->nmsgs++;
	}
	if (limit < 1)
		limit = 1;

	/* One guard reference while the jobs are being made, so that a job
	 * failing at once cannot finish the attempt under our feet. */
	m->refs = 1;
	for (i = 0; i < m->nrcpt && i < q->nrcpt; i++) {
		struct sched_dest *d;

		if (q->rcpt_done[i])
			continue;
		d = sched_route(s, m->rcpts[i], why, sizeof(why));
		if (d == NULL) {
			sched_outcome(s, m, NULL, NULL, i, why,
				      sched_status_of(atoi(why)));
			continue;
		}
		for (k = 0; k < nopen && open[k].d != d; k++)
			;
		if (k == nopen) {
			if (nopen == sizeof(open) / sizeof(open[0])) {
				/* Full: send the oldest on its way. */
				sched_job_queue(open[0].j);
				sched_pump(open[0].d);
				memmove(open, open + 1,
					--nopen * sizeof(open[0]));
				k = nopen;
			}
			open[k].d = d;
			open[k].j = sched_job_new(m, d, limit);
			if (open[k].j == NULL)
				continue;
			nopen++;
		}
		open[k].j->idx[open[k].j->n++] = i;
		if (open[k].j->n == limit) {
			sched_job_queue(open[k].j);
			open[k].j = sched_job_new(m, d, limit);
			if (open[k].j == NULL) {
				open[k] = open[--nopen];
				continue;
			}
		}
	}
	for (k = 0; k < nopen; k++) {
		if (open[k].j->n == 0) {
			m->refs--;
			free(open[k].j);
		} else {
			sched_job_queue(open[k].j);
		}
	}
	for (k = 0; k < nopen; k++)
		sched_pump(open[k].d);
	sched_msg_unref(s, m);
}

/* ---- idle connections, suspensions ---- */

static void sched_sweep_cb(uv_timer_t *h)
{
	struct relay_sched *s = h->data;
	int64_t now = sched_now();
	struct sched_conn *k, *next;

	for (k = s->conns; k; k = next) {
		next = k->anext;
		if (k->st == C_READY &&
		    now - k->idle_since >=
			    s->c->smtp_connection_cache_time_limit) {
			sched_conn_gone(k);
			sched_conn_maybe_free(k);
		}
	}
	if (++s->sweeps % SCHED_DEST_SWEEPS == 0)
		sched_dests_sweep(s, now);
}

/* ---- the public side ---- */

/* What relay_sched_new and relay_sched_reload read from a configuration. */
struct sched_settings {
	struct relay_map *transport, *limits;
	struct relay_tls_ctx *tls;
	struct relay_map_hop relayhost;
	bool have_relayhost, hold_all;
};

/* sched_settings_free - what sched_settings_load made. */
static void sched_settings_free(struct sched_settings *set)
{
	relay_map_free(set->transport);
	relay_map_free(set->limits);
	relay_tls_ctx_free(set->tls);
}

/*
 * sched_settings_load - parse relayhost and defer_transports, load the
 * maps and make the client TLS context. 0, or -errno with the reason in
 * err and nothing left to free.
 */
static int sched_settings_load(struct sched_settings *set,
			       const struct conf *c, char *err, size_t errlen)
{
	size_t i;
	int r;

	memset(set, 0, sizeof(*set));
	for (i = 0; i < c->defer_transports.n; i++)
		if (strcasecmp(c->defer_transports.v[i], "smtp") == 0)
			set->hold_all = true;
	if (c->relayhost[0]) {
		if (relay_map_hop_parse(&set->relayhost, c->relayhost) < 0) {
			snprintf(err, errlen, "%s: relayhost: bad next hop: %s",
				 c->path, c->relayhost);
			return -EINVAL;
		}
		set->have_relayhost = true;
	}
	r = relay_map_load(&set->transport, c->transport_maps, err, errlen);
	if (r == 0)
		r = relay_map_load(&set->limits,
				   c->destination_concurrency_limits, err,
				   errlen);
	if (r == 0)
		r = relay_tls_client_ctx_new(&set->tls, c, err, errlen);
	if (r < 0)
		sched_settings_free(set);
	return r;
}

/* sched_settings_take - s uses set from now on; set's old owner is s. */
static void sched_settings_take(struct relay_sched *s,
				const struct sched_settings *set)
{
	s->transport = set->transport;
	s->limits = set->limits;
	s->tls = set->tls;
	s->relayhost = set->relayhost;
	s->have_relayhost = set->have_relayhost;
	s->hold_all = set->hold_all;
}

int relay_sched_new(struct relay_sched **out, uv_loop_t *loop,
		    struct relay_io *io, struct queue_spool *sp,
		    const struct conf *c, char *err, size_t errlen)
{
	struct relay_sched *s = calloc(1, sizeof(*s));
	struct sched_settings set;
	int r;

	if (s == NULL)
		return -ENOMEM;
	s->loop = loop;
	s->io = io;
	s->sp = sp;
	s->c = c;
	s->nmsgbuckets = 4096;
	s->ndestbuckets = 64;
	s->msgs = calloc(s->nmsgbuckets, sizeof(*s->msgs));
	s->dests = calloc(s->ndestbuckets, sizeof(*s->dests));
	if (s->msgs == NULL || s->dests == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	r = sched_settings_load(&set, c, err, errlen);
	if (r < 0)
		goto fail;
	sched_settings_take(s, &set);
	r = relay_dlog_open(&s->dlog, c->delivery_log);
	if (r < 0) {
		snprintf(err, errlen, "%s: delivery_log: %s: %s", c->path,
			 c->delivery_log, strerror(-r));
		goto fail;
	}
	r = relay_dns_new(&s->dns, loop, &c->dns_servers, err, errlen);
	if (r < 0)
		goto fail;
	uv_timer_init(loop, &s->heap_timer);
	uv_timer_init(loop, &s->sweep_timer);
	s->heap_timer.data = s->sweep_timer.data = s;
	uv_timer_start(&s->sweep_timer, sched_sweep_cb, SCHED_SWEEP_MS,
		       SCHED_SWEEP_MS);
	*out = s;
	return 0;

fail:
	relay_map_free(s->transport);
	relay_map_free(s->limits);
	if (s->tls)
		relay_tls_ctx_free(s->tls);
	if (s->dlog)
		relay_dlog_close(s->dlog);
	free(s->msgs);
	free(s->dests);
	free(s);
	return r;
}

/* sched_collect - the ids of live messages (foreach must not change the
 * index, starting may). */
struct sched_ids {
	char (*v)[QUEUE_ID_LEN + 1];
	int64_t *at;
	size_t n, cap;
	const char *domain;
};

static int sched_collect_fn(void *arg, const struct queue_msg *m)
{
	struct sched_ids *ids = arg;
	size_t i;

	if (ids->domain) {
		size_t dl = strlen(ids->domain);
		bool hit = false;

		for (i = 0; i < m->nrcpt && !hit; i++) {
			const char *at = strrchr(m->rcpts[i], '@');

			hit = !m->rcpt_done[i] && at &&
			      strlen(at + 1) == dl &&
			      strcasecmp(at + 1, ids->domain) == 0;
		}
		if (!hit)
			return 0;
	}
	if (ids->n == ids->cap) {
		size_t cap = ids->cap ? 2 * ids->cap : 256;
		void *v = realloc(ids->v, cap * sizeof(*ids->v));
		void *at;

		if (v == NULL)
			return -ENOMEM;
		ids->v = v;
		at = realloc(ids->at, cap * sizeof(*ids->at));
		if (at == NULL)
			return -ENOMEM;
		ids->at = at;
		ids->cap = cap;
	}
	memcpy(ids->v[ids->n], m->id, QUEUE_ID_LEN + 1);
	ids->at[ids->n++] = m->held ? -1 : m->next_ms;
	return 0;
}

void relay_sched_start(struct relay_sched *s)
{
	struct sched_ids ids = {0};
	int64_t now = sched_now();
	size_t i;

	queue_spool_foreach(s->sp, sched_collect_fn, &ids);
	relay_info(NULL, "delivery messages=%zu%s", ids.n,
		   s->hold_all ? " held=defer_transports" : "");
	for (i = 0; i < ids.n && !s->hold_all; i++) {
		if (ids.at[i] < 0)
			continue;
		if (ids.at[i] <= now)
			sched_msg_start(s, ids.v[i], false);
		else
			sched_heap_push(s, ids.v[i], ids.at[i]);
	}
	sched_heap_arm(s);
	free(ids.v);
	free(ids.at);
}

int relay_sched_reload(struct relay_sched *s, const struct conf *c,
		       char *err, size_t errlen)
{
	struct sched_settings set, old;
	struct relay_dlog *dlog = NULL;
	bool was_held = s->hold_all;
	struct sched_conn *k, *next;
	struct sched_dest *d;
	size_t b;
	int r;

	/* Everything that can fail first, so that a failure changes nothing. */
	r = sched_settings_load(&set, c, err, errlen);
	if (r < 0)
		return r;
	if (strcmp(c->delivery_log, s->c->delivery_log) != 0) {
		r = relay_dlog_open(&dlog, c->delivery_log);
		if (r < 0) {
			snprintf(err, errlen, "%s: delivery_log: %s: %s",
				 c->path, c->delivery_log, strerror(-r));
			sched_settings_free(&set);
			return r;
		}
	}

	/* Connections keep their reference to the old TLS context. */
	old = (struct sched_settings){.transport = s->transport,
				      .limits = s->limits,
				      .tls = s->tls};
	sched_settings_free(&old);
	sched_settings_take(s, &set);
	if (dlog) {
		relay_dlog_close(s->dlog);
		s->dlog = dlog;
	}
	s->c = c;

	/* Destinations take the new limits and forget sessions made under
	 * the old TLS settings; connections made before end after their
	 * transaction (idle ones at once), so that new settings apply. */
	for (b = 0; b < s->ndestbuckets; b++) {
		for (d = s->dests[b]; d; d = d->hnext) {
			sched_dest_limit(d);
			if (d->window > d->limit)
				d->window = d->limit;
			relay_tls_session_put(d->session);
			d->session = NULL;
		}
	}
	for (k = s->conns; k; k = next) {
		next = k->anext;
		k->stale = true;
		if (k->st == C_READY) {
			sched_conn_gone(k);
			sched_conn_maybe_free(k);
		}
	}
	relay_info(NULL, "delivery-reloaded relayhost=%s transport_maps=%s%s",
		   c->relayhost[0] ? c->relayhost : "-",
		   c->transport_maps[0] ? c->transport_maps : "-",
		   s->hold_all ? " held=defer_transports" : "");
	if (was_held && !s->hold_all)
		relay_sched_start(s);
	return 0;
}

void relay_sched_queued(struct relay_sched *s, const char *id)
{
	sched_msg_start(s, id, false);
}

size_t relay_sched_flush(struct relay_sched *s, const char *domain)
{
	struct sched_ids ids = {.domain = domain};
	const struct queue_msg *q;
	size_t i, b, n = 0;
	struct sched_dest *d;

	for (b = 0; b < s->ndestbuckets; b++)
		for (d = s->dests[b]; d; d = d->hnext)
			if (domain == NULL || strcasecmp(d->key, domain) == 0)
				d->suspended_until = 0;
	queue_spool_foreach(s->sp, sched_collect_fn, &ids);
	for (i = 0; i < ids.n; i++) {
		q = queue_spool_find(s->sp, ids.v[i]);
		if (q == NULL || q->held || sched_msg_find(s, ids.v[i]))
			continue;
		queue_spool_defer(s->sp, ids.v[i], 0, q->attempts);
		sched_msg_start(s, ids.v[i], true);
		n++;
	}
	free(ids.v);
	free(ids.at);
	relay_info(NULL, "flush domain=%s messages=%zu",
		   domain ? domain : "all", n);
	return n;
}

int relay_sched_hold(struct relay_sched *s, const char *id)
{
	int r = queue_spool_hold(s->sp, id, true);

	if (r == 0)
		relay_info(id, "hold");
	return r;
}

int relay_sched_release(struct relay_sched *s, const char *id)
{
	int r = queue_spool_hold(s->sp, id, false);

	if (r < 0)
		return r;
	relay_info(id, "release");
	sched_msg_start(s, id, false);
	return 0;
}

int relay_sched_delete(struct relay_sched *s, const char *id)
{
	int r = queue_spool_done(s->sp, id);

	if (r == 0)
		relay_info(id, "deleted");
	return r;
}

void relay_sched_flush_log(struct relay_sched *s)
{
	relay_dlog_flush(s->dlog);
}

void relay_sched_reopen_log(struct relay_sched *s)
{
	int r = relay_dlog_reopen(s->dlog);

	if (r < 0)
		relay_err(NULL, "delivery-log-reopen-failed path=%s "
				"reason=\"%s\"",
			  s->c->delivery_log, strerror(-r));
}

static void sched_timer_closed_cb(uv_handle_t *h)
{
	struct relay_sched *s = h->data;

	s->closes--;
	sched_maybe_done(s);
}

/* sched_maybe_done - shutdown finished: tell the daemon once. */
static void sched_maybe_done(struct relay_sched *s)
{
	void (*done)(void *) = s->done;

	if (!s->stopping || s->conns || s->closes > 0 || done == NULL)
		return;
	s->done = NULL;
	done(s->done_arg);
}

/* sched_close_rate_timers - close every destination's rate timer. */
static void sched_close_rate_timers(struct relay_sched *s)
{
	struct sched_dest *d;
	size_t b;

	for (b = 0; b < s->ndestbuckets; b++) {
		for (d = s->dests[b]; d; d = d->hnext) {
			if (d->rate_timer == NULL)
				continue;
			uv_close((uv_handle_t *)d->rate_timer,
				 sched_rate_closed_cb);
			d->rate_timer = NULL;
		}
	}
}

void relay_sched_shutdown(struct relay_sched *s, void (*done)(void *),
			  void *arg)
{
	struct sched_conn *k, *next;

	s->stopping = true;
	s->done = done;
	s->done_arg = arg;
	s->closes = 2;
	uv_close((uv_handle_t *)&s->heap_timer, sched_timer_closed_cb);
	uv_close((uv_handle_t *)&s->sweep_timer, sched_timer_closed_cb);
	for (k = s->conns; k; k = next) {
		next = k->anext;
		if (k->st == C_RESOLVE)
			continue; /* relay_dns_free cancels it */
		sched_conn_gone(k);
		sched_conn_maybe_free(k);
	}
	relay_dns_free(s->dns);
	s->dns = NULL;
	sched_close_rate_timers(s);
	sched_maybe_done(s);
}

void relay_sched_free(struct relay_sched *s)
{
	struct sched_dest *d, *dn;
	struct sched_msg *m, *mn;
	struct sched_job *j;
	size_t b;

	/* Jobs still queued belong to attempts cut short: drop them; the
	 * spool keeps their messages for the next start. */
	for (b = 0; b < s->ndestbuckets; b++) {
		for (d = s->dests[b]; d; d = dn) {
			dn = d->hnext;
			while ((j = sched_dest_pop(d)) != NULL)
				free(j);
			sched_dest_free(d);
		}
	}
	for (b = 0; b < s->nmsgbuckets; b++) {
		for (m = s->msgs[b]; m; m = mn) {
			mn = m->hnext;
			sched_msg_free(m);
		}
	}
	relay_map_free(s->transport);
	relay_map_free(s->limits);
	relay_tls_ctx_free(s->tls);
	relay_dlog_close(s->dlog);
	free(s->heap);
	free(s->msgs);
	free(s->dests);
	free(s);
}
