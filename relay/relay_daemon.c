/*
 * relay_daemon - see relay_daemon.h.
 */
#include <stddef.h>

#include "relay/relay_daemon.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "relay/relay_ctl.h"
#include "relay/relay_io.h"
#include "relay/relay_log.h"
#include "relay/relay_sched.h"
#include "relay/relay_smtpd.h"
#include "relay/relay_tls.h"
#include "sign/sign.h"

struct relay_daemon {
	uv_loop_t loop;
	const char *path;
	char **overrides;
	int noverride;

	struct relay_io *io;
	struct queue_spool *spool;
	struct sign_pool *pool;
	struct relay_smtpd *smtpd;
	struct relay_sched *sched;
	struct relay_ctl *ctl;
	struct relay_gen *sched_gen;
	struct relay_gen *start_gen; /* what the daemon started with */

	/*
	 * The sign pool's eventfd is polled by one of two handles: after a
	 * reload changed sign_threads, the other one polls the new pool
	 * while the old one finishes its jobs (old_pool) and is closed.
	 */
	uv_poll_t pool_poll[2];
	int pool_slot;		    /* the handle of pool */
	struct sign_pool *old_pool; /* draining after a resize */
	bool old_slot_busy;	    /* the other handle is not free yet */
	uv_timer_t commit_timer; /* the end of a commit delay */
	uv_signal_t sigterm, sigint, sighup, sigusr1;
	bool stopping, sessions_done, sched_done;
};

int relay_daemon_load(struct conf *c, const char *path, char **overrides,
		      int noverride, char *err, size_t errlen)
{
	int i, r;

	r = conf_load(c, path, err, errlen);
	if (r < 0)
		return r;
	for (i = 0; i < noverride; i++) {
		char name[128];
		const char *eq = strchr(overrides[i], '=');
		size_t n = eq ? (size_t)(eq - overrides[i]) : 0;

		if (eq == NULL || n == 0 || n >= sizeof(name)) {
			snprintf(err, errlen, "-o %s: not name=value",
				 overrides[i]);
			conf_free(c);
			return -EINVAL;
		}
		memcpy(name, overrides[i], n);
		name[n] = '\0';
		while (n > 0 && name[n - 1] == ' ')
			name[--n] = '\0';
		eq++;
		while (*eq == ' ')
			eq++;
		r = conf_set(c, name, eq, err, errlen);
		if (r < 0) {
			conf_free(c);
			return r;
		}
	}
	return 0;
}

/*
 * relay_daemon_gen - a new configuration generation: the file, the DKIM
 * keys, the TLS context. NULL with the reason in err.
 */
static struct relay_gen *relay_daemon_gen(struct relay_daemon *d, char *err,
					  size_t errlen, int *code)
{
	struct relay_gen *g = calloc(1, sizeof(*g));
	struct conf *c;
	int r;

	*code = 1;
	if (g == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	g->refs = 1;
	c = &g->conf;
	r = relay_daemon_load(c, d->path, d->overrides, d->noverride, err,
			      errlen);
	if (r < 0) {
		*code = 2;
		free(g);
		return NULL;
	}
	if (c->smtpd_tls_security_level == CONF_TLS_VERIFY) {
		snprintf(err, errlen,
			 "%s: smtpd_tls_security_level: verify "
			 "is for the SMTP client; use none, may or encrypt",
			 c->path);
		*code = 2;
		goto fail;
	}
	r = sign_keys_load(&g->keys, c, err, errlen);
	if (r < 0)
		goto fail;
	if (c->smtpd_tls_security_level != CONF_TLS_NONE) {
		r = relay_tls_ctx_new(&g->tls, c, err, errlen);
		if (r < 0)
			goto fail;
		if (g->tls == NULL &&
		    c->smtpd_tls_security_level == CONF_TLS_ENCRYPT) {
			snprintf(err, errlen,
				 "%s: smtpd_tls_security_level "
				 "= encrypt needs smtpd_tls_cert_file",
				 c->path);
			*code = 2;
			goto fail;
		}
	}
	return g;

fail:
	relay_gen_put(g);
	return NULL;
}

/* relay_daemon_commit_cb - a commit delay is over; prepare flushes. */
static void relay_daemon_commit_cb(uv_timer_t *h)
{
	(void)h;
}

/* relay_daemon_old_closed_cb - the old pool's handle is free again. */
static void relay_daemon_old_closed_cb(uv_handle_t *h)
{
	struct relay_daemon *d = h->data;

	d->old_slot_busy = false;
}

/*
 * relay_daemon_pool_retire - free the pool a resize replaced, once every
 * job it had is back: its workers then wait on an empty queue, so
 * joining them is quick.
 */
static void relay_daemon_pool_retire(struct relay_daemon *d)
{
	uv_poll_t *h = &d->pool_poll[1 - d->pool_slot];

	if (d->old_pool == NULL || sign_pool_outstanding(d->old_pool) > 0)
		return;
	uv_poll_stop(h);
	sign_pool_free(d->old_pool);
	d->old_pool = NULL;
	uv_close((uv_handle_t *)h, relay_daemon_old_closed_cb);
	relay_info(NULL, "sign-pool-retired");
}

/* relay_daemon_old_pool_cb - jobs of the replaced pool came back. */
static void relay_daemon_old_pool_cb(uv_poll_t *h, int status, int events)
{
	struct relay_daemon *d = h->data;

	sign_pool_reap(d->old_pool);
	relay_daemon_pool_retire(d);
}

/*
 * relay_daemon_commit_later - whether the batch a flush would start now
 * should wait for more (queue_commit_delay): only while messages are out
 * for signing, whose appends will follow within about one signature, and
 * only until the batch's first record is queue_commit_delay old. With RSA,
 * signatures finish one at a time, and flushing each at once made almost
 * one fdatasync per message; the wait costs a message at most the delay.
 */
static bool relay_daemon_commit_later(struct relay_daemon *d)
{
	uint64_t delay, since, now;

	if (d->sched_gen == NULL || d->pool == NULL || d->stopping)
		return false;
	delay = (uint64_t)d->sched_gen->conf.queue_commit_delay;
	if (delay == 0 ||
	    sign_pool_outstanding(d->pool) +
		    (d->old_pool ? sign_pool_outstanding(d->old_pool) : 0) ==
		0)
		return false;
	since = queue_spool_pending_since(d->spool);
	if (since == 0)
		return false;
	now = uv_hrtime() / 1000;
	if (now >= since + delay * 1000)
		return false;
	if (!uv_is_active((uv_handle_t *)&d->commit_timer))
		uv_timer_start(&d->commit_timer, relay_daemon_commit_cb,
			       (since + delay * 1000 - now + 999) / 1000, 0);
	return true;
}

/* relay_daemon_prepare - once per loop iteration: finished signatures,
 * group commit, exit. */
static void relay_daemon_prepare(void *arg)
{
	struct relay_daemon *d = arg;

	/* Signatures finished since the eventfd was last read: their
	 * appends join this iteration's batch (the pool does not wake the
	 * loop for each RSA signature). */
	if (d->pool)
		sign_pool_reap_ready(d->pool);
	if (d->old_pool) {
		sign_pool_reap_ready(d->old_pool);
		relay_daemon_pool_retire(d);
	}
	if (!relay_daemon_commit_later(d))
		queue_spool_flush(d->spool);

	/* The loop may sleep next: what this iteration logged goes out. */
	if (d->sched)
		relay_sched_flush_log(d->sched);
	relay_log_flush();
	if (d->stopping && d->sessions_done && d->sched_done &&
	    queue_spool_idle(d->spool))
		uv_stop(&d->loop);
}

/* relay_daemon_sessions_done_cb - the last session has ended. */
static void relay_daemon_sessions_done_cb(void *arg)
{
	struct relay_daemon *d = arg;

	d->sessions_done = true;
}

/* relay_daemon_sched_done_cb - every delivery connection is closed. */
static void relay_daemon_sched_done_cb(void *arg)
{
	struct relay_daemon *d = arg;

	d->sched_done = true;
}

/* relay_daemon_queued_cb - a new durable message: deliver it. */
static void relay_daemon_queued_cb(void *arg, const char *id)
{
	struct relay_daemon *d = arg;

	if (d->sched)
		relay_sched_queued(d->sched, id);
}

/* relay_daemon_reopen_cb - SIGUSR1: reopen the delivery log. */
static void relay_daemon_reopen_cb(uv_signal_t *h, int signum)
{
	struct relay_daemon *d = h->data;

	relay_sched_reopen_log(d->sched);
	relay_info(NULL, "delivery-log-reopened");
}

/* relay_daemon_pool_cb - finished sign jobs wait on the eventfd. */
static void relay_daemon_pool_cb(uv_poll_t *h, int status, int events)
{
	struct relay_daemon *d = h->data;

	sign_pool_reap(d->pool);
}

/* relay_daemon_stop_cb - SIGTERM or SIGINT. */
static void relay_daemon_stop_cb(uv_signal_t *h, int signum)
{
	struct relay_daemon *d = h->data;

	if (d->stopping)
		return;
	relay_info(NULL, "stopping signal=%s",
		   signum == SIGTERM ? "TERM" : "INT");
	d->stopping = true;
	relay_io_stop_listening(d->io);
	relay_smtpd_shutdown(d->smtpd, relay_daemon_sessions_done_cb, d);
	if (d->ctl) {
		relay_ctl_close(d->ctl);
		d->ctl = NULL;
	}
	relay_sched_shutdown(d->sched, relay_daemon_sched_done_cb, d);
}

/* relay_daemon_list_eq - whether two lists hold the same words. */
static bool relay_daemon_list_eq(const struct conf_list *a,
				 const struct conf_list *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i], b->v[i]) != 0)
			return false;
	return true;
}

/* relay_daemon_str_ne - whether two strings (NULL: "") differ. */
static bool relay_daemon_str_ne(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") != 0;
}

/* relay_daemon_note - add name to the comma list names when changed. */
static void relay_daemon_note(char *names, size_t cap, bool changed,
			      const char *name)
{
	size_t n = strlen(names);

	if (changed)
		snprintf(names + n, cap - n, "%s%s", n ? "," : "", name);
}

/*
 * relay_daemon_restart_only - warn about the parameters that differ from
 * what the daemon started with and that a reload cannot apply: the
 * listening sockets, the spool's directory, I/O backend and segment
 * size, the control socket and the resolver are made once, at start
 * (Postfix, too, needs a stop and start for inet_interfaces).
 */
static void relay_daemon_restart_only(const struct conf *old,
				      const struct conf *c)
{
	char names[256] = "";

	relay_daemon_note(
	    names, sizeof(names),
	    !relay_daemon_list_eq(&old->smtpd_listen, &c->smtpd_listen),
	    "smtpd_listen");
	relay_daemon_note(
	    names, sizeof(names),
	    relay_daemon_str_ne(old->queue_directory, c->queue_directory),
	    "queue_directory");
	relay_daemon_note(names, sizeof(names),
			  old->io_backend != c->io_backend, "io_backend");
	relay_daemon_note(names, sizeof(names),
			  old->queue_segment_size != c->queue_segment_size,
			  "queue_segment_size");
	relay_daemon_note(
	    names, sizeof(names),
	    relay_daemon_str_ne(old->control_socket, c->control_socket),
	    "control_socket");
	relay_daemon_note(
	    names, sizeof(names),
	    !relay_daemon_list_eq(&old->dns_servers, &c->dns_servers),
	    "dns_servers");
	if (names[0] != '\0')
		relay_warn(NULL,
			   "reload-needs-restart params=%s reason=\"changed, "
			   "but used as they were until a restart\"",
			   names);
}

/*
 * relay_daemon_pool_resize - a reload changed sign_threads: new messages
 * go to a new pool of that size, and the running one is freed when its
 * jobs are back (relay_daemon_pool_retire).
 */
static void relay_daemon_pool_resize(struct relay_daemon *d,
				     const struct conf *c)
{
	int n = sign_pool_size((int)c->sign_threads), other = 1 - d->pool_slot;
	struct sign_pool *np;

	if (n == sign_pool_threads(d->pool))
		return;
	if (d->old_slot_busy) {
		relay_warn(NULL,
			   "sign-pool-resize-later threads=%d reason=\"the "
			   "pool replaced before is still finishing its jobs; "
			   "reload again\"",
			   n);
		return;
	}
	np = sign_pool_new(n);
	if (np == NULL) {
		relay_warn(NULL,
			   "sign-pool-resize-failed threads=%d reason=\"cannot "
			   "start threads\"",
			   n);
		return;
	}

	/* The running pool's handle now drains it; the other polls np. */
	uv_poll_init(&d->loop, &d->pool_poll[other], sign_pool_fd(np));
	d->pool_poll[other].data = d;
	uv_poll_start(&d->pool_poll[other], UV_READABLE, relay_daemon_pool_cb);
	uv_poll_start(&d->pool_poll[d->pool_slot], UV_READABLE,
		      relay_daemon_old_pool_cb);
	relay_info(NULL, "sign-pool-resized threads=%d was=%d", n,
		   sign_pool_threads(d->pool));
	d->old_pool = d->pool;
	d->old_slot_busy = true;
	d->pool = np;
	d->pool_slot = other;
	relay_smtpd_set_pool(d->smtpd, np);
	relay_daemon_pool_retire(d);
}

/* relay_daemon_reload_cb - SIGHUP: new configuration for new sessions. */
static void relay_daemon_reload_cb(uv_signal_t *h, int signum)
{
	struct relay_daemon *d = h->data;
	struct queue_limits lim = {0};
	struct relay_gen *g;
	char err[512] = "";
	int code;

	g = relay_daemon_gen(d, err, sizeof(err), &code);
	if (g == NULL) {
		relay_err(NULL, "reload-failed reason=\"%s\"", err);
		return;
	}

	/* Delivery first: if its maps or TLS files fail, nothing changes. */
	if (relay_sched_reload(d->sched, &g->conf, err, sizeof(err)) < 0) {
		relay_err(NULL, "reload-failed reason=\"%s\"", err);
		relay_gen_put(g);
		return;
	}
	relay_daemon_restart_only(&d->start_gen->conf, &g->conf);
	g->refs++;
	relay_gen_put(d->sched_gen);
	d->sched_gen = g;

	lim.max_size = (uint64_t)g->conf.queue_max_size;
	lim.minfree = (uint64_t)g->conf.queue_minfree;
	queue_spool_set_limits(d->spool, &lim);
	relay_daemon_pool_resize(d, &g->conf);
	relay_log_level = g->conf.log_level;
	relay_smtpd_set_gen(d->smtpd, g);
	relay_info(NULL, "reloaded config=%s", d->path);
}

/* relay_daemon_start - everything but the loop itself. */
static int relay_daemon_start(struct relay_daemon *d, struct relay_gen *g)
{
	const struct conf *c = &g->conf;
	struct queue_limits lim;
	struct queue_stats st;
	const char *why = NULL;
	char err[512] = "";
	size_t i;
	int r;

	/*
	 * The name goes into HELO and Received: many receivers refuse a
	 * HELO that is not a fully qualified domain name (Postfix's
	 * reject_non_fqdn_helo_hostname).
	 */
	if (c->myhostname != NULL && strchr(c->myhostname, '.') == NULL)
		relay_warn(
		    NULL,
		    "myhostname-not-fqdn name=%s reason=\"remote servers "
		    "may refuse HELO %s; set myhostname\"",
		    c->myhostname, c->myhostname);

	r = relay_io_new(&d->io, &d->loop, c->io_backend, &why);
	if (r < 0) {
		relay_err(NULL, "io-failed backend=io_uring reason=\"%s: %s\"",
			  why, strerror(-r));
		return 1;
	}
	if (why)
		relay_info(NULL, "io backend=%s fallback=\"%s\"",
			   relay_io_name(d->io), why);
	else
		relay_info(NULL, "io backend=%s", relay_io_name(d->io));

	if (mkdir(c->queue_directory, 0700) < 0 && errno != EEXIST) {
		relay_err(NULL, "spool-failed dir=%s reason=\"%s\"",
			  c->queue_directory, strerror(errno));
		return 1;
	}
	lim.segment_size = (uint64_t)c->queue_segment_size;
	lim.zero_fill = true;
	lim.max_size = (uint64_t)c->queue_max_size;
	lim.minfree = (uint64_t)c->queue_minfree;
	r = queue_spool_open(&d->spool, c->queue_directory, &lim,
			     relay_io_file(d->io), err, sizeof(err));
	if (r < 0) {
		relay_err(NULL, "spool-failed dir=%s reason=\"%s\"",
			  c->queue_directory, err);
		return 1;
	}
	queue_spool_stats(d->spool, &st);
	relay_info(NULL,
		   "spool dir=%s messages=%zu cut_bytes=%llu "
		   "corrupt_records=%llu",
		   c->queue_directory, queue_spool_count(d->spool),
		   (unsigned long long)st.recovered_cut_bytes,
		   (unsigned long long)st.corrupt_records);

	/*
	 * A torn tail follows any crash; skipped records mean damage on
	 * disk, or a crash that left a hole in its last batch.
	 */
	if (st.corrupt_records > 0)
		relay_warn(NULL,
			   "spool-damaged dir=%s corrupt_records=%llu "
			   "reason=\"records failed their checksum or could "
			   "not be decoded and were skipped: damage on disk, "
			   "or a crash in the middle of a write\"",
			   c->queue_directory,
			   (unsigned long long)st.corrupt_records);
	relay_io_on_prepare(d->io, relay_daemon_prepare, d);

	d->pool = sign_pool_new((int)c->sign_threads);
	if (d->pool == NULL) {
		relay_err(NULL, "sign-pool-failed reason=\"cannot start "
				"threads\"");
		return 1;
	}
	relay_info(NULL, "sign-pool threads=%d sign_threads=%lld",
		   sign_pool_threads(d->pool), (long long)c->sign_threads);
	uv_timer_init(&d->loop, &d->commit_timer);
	uv_poll_init(&d->loop, &d->pool_poll[0], sign_pool_fd(d->pool));
	d->pool_poll[0].data = d;
	uv_poll_start(&d->pool_poll[0], UV_READABLE, relay_daemon_pool_cb);

	/*
	 * Delivery holds a generation of its own, replaced on reload; the
	 * first one is kept to compare what a reload cannot change.
	 */
	g->refs += 2;
	d->sched_gen = g;
	d->start_gen = g;
	r = relay_sched_new(&d->sched, &d->loop, d->io, d->spool, c, err,
			    sizeof(err));
	if (r < 0) {
		relay_err(NULL, "delivery-failed reason=\"%s\"", err);
		return 2;
	}

	d->smtpd = relay_smtpd_new(&d->loop, d->spool, d->pool, g);
	if (d->smtpd == NULL)
		return 1;
	relay_smtpd_on_queued(d->smtpd, relay_daemon_queued_cb, d);
	relay_sched_start(d->sched);
	r = relay_ctl_new(&d->ctl, &d->loop, c->control_socket, d->sched,
			  err, sizeof(err));
	if (r < 0) {
		relay_err(NULL, "control-failed reason=\"%s\"", err);
		return 1;
	}
	for (i = 0; i < c->smtpd_listen.n; i++) {
		r = relay_io_listen(d->io, c->smtpd_listen.v[i],
				    relay_smtpd_accept_cb, d->smtpd, &why);
		if (r < 0) {
			relay_err(NULL,
				  "listen-failed addr=%s reason=\"%s: "
				  "%s\"",
				  c->smtpd_listen.v[i], why, strerror(-r));
			return 1;
		}
		relay_info(NULL, "listening addr=%s", c->smtpd_listen.v[i]);
	}

	uv_signal_init(&d->loop, &d->sigterm);
	uv_signal_init(&d->loop, &d->sigint);
	uv_signal_init(&d->loop, &d->sighup);
	uv_signal_init(&d->loop, &d->sigusr1);
	d->sigterm.data = d->sigint.data = d->sighup.data = d;
	d->sigusr1.data = d;
	uv_signal_start(&d->sigusr1, relay_daemon_reopen_cb, SIGUSR1);
	uv_signal_start(&d->sigterm, relay_daemon_stop_cb, SIGTERM);
	uv_signal_start(&d->sigint, relay_daemon_stop_cb, SIGINT);
	uv_signal_start(&d->sighup, relay_daemon_reload_cb, SIGHUP);
	return 0;
}

/* relay_daemon_close_walk_cb - close every handle still open at exit. */
static void relay_daemon_close_walk_cb(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int relay_daemon_run(const char *path, char **overrides, int noverride)
{
	struct relay_daemon d;
	struct relay_gen *g;
	char err[512] = "";
	struct queue_stats st;
	int code;

	memset(&d, 0, sizeof(d));
	d.path = path;
	d.overrides = overrides;
	d.noverride = noverride;
	signal(SIGPIPE, SIG_IGN);

	g = relay_daemon_gen(&d, err, sizeof(err), &code);
	if (g == NULL) {
		fprintf(stderr, "waxseal: %s\n", err);
		return code;
	}
	relay_log_level = g->conf.log_level;
	relay_log_buffer(1);
	uv_loop_init(&d.loop);

	code = relay_daemon_start(&d, g);
	if (code == 0) {
		uv_run(&d.loop, UV_RUN_DEFAULT);
		queue_spool_stats(d.spool, &st);
		relay_info(NULL, "stopped messages=%llu fsyncs=%llu",
			   (unsigned long long)st.messages,
			   (unsigned long long)st.fsyncs);
	} else if (d.smtpd == NULL) {
		relay_gen_put(g);
	}

	/* Tear down in reverse order; the loop finishes the closes. */
	if (d.ctl)
		relay_ctl_close(d.ctl);
	if (code != 0 && d.sched)
		relay_sched_shutdown(d.sched, NULL, NULL);
	if (d.pool) {
		uv_poll_stop(&d.pool_poll[d.pool_slot]);
		sign_pool_reap(d.pool);
		sign_pool_free(d.pool);
	}
	if (d.old_pool) {
		uv_poll_stop(&d.pool_poll[1 - d.pool_slot]);
		sign_pool_reap(d.old_pool);
		sign_pool_free(d.old_pool);
	}
	if (d.smtpd)
		relay_smtpd_free(d.smtpd);

	if (d.spool)
		queue_spool_close(d.spool);
	if (d.io) {
		relay_io_stop_listening(d.io);
		relay_io_free(d.io);
	}
	uv_walk(&d.loop, relay_daemon_close_walk_cb, NULL);
	uv_run(&d.loop, UV_RUN_DEFAULT);
	if (d.sched)
		relay_sched_free(d.sched);
	if (d.sched_gen)
		relay_gen_put(d.sched_gen);
	if (d.start_gen)
		relay_gen_put(d.start_gen);
	uv_loop_close(&d.loop);
	relay_log_buffer(0);
	return code;
}
