/*
 * relay_smtpd - see relay_smtpd.h.
 *
 * Session lifetime: a session holds references for its socket, its timer
 * and each sign job or spool append it waits for; it is freed when the
 * last is dropped. A client that disconnects while its message is being
 * signed or written therefore cannot free state a callback still needs.
 */
#include "relay/relay_smtpd.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "relay/relay_addr.h"
#include "relay/relay_data.h"
#include "relay/relay_log.h"

/* RFC 5321 section 4.5.3.1.4: a command line is at most 512 octets. */
#define SMTPD_LINE_MAX 512
/* Input held while a transaction completes, before reads pause. */
#define SMTPD_IN_PAUSE (256 * 1024)

enum smtpd_state {
	SMTPD_INIT,  /* before EHLO/HELO */
	SMTPD_READY, /* greeted, no transaction */
	SMTPD_MAIL,  /* MAIL accepted */
	SMTPD_RCPT,  /* at least one RCPT accepted */
	SMTPD_DATA,  /* reading a DATA message */
	SMTPD_BDAT,  /* reading BDAT chunks */
	SMTPD_BUSY,  /* waiting for the signer or the spool */
};

struct smtpd_buf {
	char *p;
	size_t off, len, cap;
};

struct relay_smtpd {
	uv_loop_t *loop;
	struct queue_spool *spool;
	struct sign_pool *pool;
	struct relay_gen *gen;
	size_t nsessions;
	struct smtpd_session *sessions;
	struct smtpd_client *clients[256];
	uint64_t next_id;
	bool stopping;
	void (*done)(void *);
	void *done_arg;
	void (*queued)(void *, const char *);
	void *queued_arg;
};

struct smtpd_session {
	struct relay_smtpd *srv;
	struct relay_gen *gen;
	const struct conf *c;
	struct relay_sock *sock;
	struct relay_tls *tls;
	uv_timer_t timer;
	int refs;
	char id[20];
	char addr[INET6_ADDRSTRLEN + 8]; /* "[IPv6:...]" */
	bool trusted;

	enum smtpd_state state;
	bool esmtp;
	bool closing;
	bool skip_line; /* discarding the rest of a too-long line */
	bool sleeping;	/* smtpd_error_sleep_time delay running */
	char helo[256];
	int errors, slept;
	struct smtpd_session *prev, *next;
	struct smtpd_client *client;

	struct smtpd_buf in, out;

	/* The transaction. */
	char *sender;
	char **rcpts;
	size_t nrcpt, rcptcap;
	bool body8, smtputf8;
	bool bdat_used;
	struct relay_data data;
	struct sign_msg *sm;
	bool hdrs_seen;	 /* header block given to the signer */
	size_t hdr_len;	 /* original header block length */
	size_t body_fed; /* bytes of data already hashed */
	char extra[320]; /* Message-ID / Date we add */
	size_t extra_len;
	char msgid[256];
	int hops;

	/* BDAT chunk being read. */
	uint64_t bdat_left;
	bool bdat_last;
	bool bdat_discard; /* the chunk belongs to a failed command */
};

/*
 * Per-client counters for smtpd_client_connection_count_limit and
 * smtpd_client_connection_rate_limit (connections per minute), which,
 * as in Postfix with its default smtpd_client_event_limit_exceptions,
 * never apply to clients in mynetworks.
 */
struct smtpd_client {
	char addr[INET6_ADDRSTRLEN + 8];
	int conns;
	int rate_count;
	uint64_t rate_start; /* ms, start of the current minute */
	struct smtpd_client *next;
};

struct smtpd_cmd {
	const char *name;
	void (*run)(struct smtpd_session *s, const char *arg, size_t len);
};

static void smtpd_process(struct smtpd_session *s);
static void smtpd_close(struct smtpd_session *s);
static void smtpd_bdat_chunk_end(struct smtpd_session *s);
static void smtpd_client_drop(struct relay_smtpd *srv, struct smtpd_client *c);

/* ---- buffers and replies ---- */

/* smtpd_buf_add - append to a buffer. 0 or -ENOMEM. */
static int smtpd_buf_add(struct smtpd_buf *b, const char *p, size_t n)
{
	if (b->off > 0 && b->off == b->len)
		b->off = b->len = 0;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *q;

		/* Reclaim consumed space before growing. */
		if (b->off > 0) {
			memmove(b->p, b->p + b->off, b->len - b->off);
			b->len -= b->off;
			b->off = 0;
		}
		while (cap < b->len + n)
			cap *= 2;
		if (cap != b->cap) {
			q = realloc(b->p, cap);
			if (q == NULL)
				return -ENOMEM;
			b->p = q;
			b->cap = cap;
		}
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

/* smtpd_reply - queue one reply line (CRLF added); counts errors. */
static void smtpd_reply(struct smtpd_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void smtpd_reply(struct smtpd_session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	if (line[0] == '4' || line[0] == '5')
		s->errors++;
	relay_debug(s->id, "reply text=\"%.*s\"", n, line);
	line[n++] = '\r';
	line[n++] = '\n';
	if (smtpd_buf_add(&s->out, line, (size_t)n) < 0)
		s->closing = true;
}

/* smtpd_flush - send queued replies, through TLS when it is on. */
static void smtpd_flush(struct smtpd_session *s)
{
	const char *p;
	size_t n;

	if (s->sock == NULL)
		return;
	if (s->tls && s->out.len > s->out.off) {
		if (relay_tls_write(s->tls, s->out.p + s->out.off,
				    s->out.len - s->out.off) < 0)
			s->closing = true;
		s->out.off = s->out.len = 0;
	}
	if (s->tls) {
		while ((n = relay_tls_output(s->tls, &p)) > 0) {
			relay_sock_write(s->sock, p, n);
			relay_tls_consume(s->tls, n);
		}
		return;
	}
	if (s->out.len > s->out.off)
		relay_sock_write(s->sock, s->out.p + s->out.off,
				 s->out.len - s->out.off);
	s->out.off = s->out.len = 0;
}

/* ---- transaction state ---- */

/* smtpd_reset - forget the transaction (RSET, HELO, after a message). */
static void smtpd_reset(struct smtpd_session *s)
{
	size_t i;

	free(s->sender);
	s->sender = NULL;
	for (i = 0; i < s->nrcpt; i++)
		free(s->rcpts[i]);
	s->nrcpt = 0;
	s->body8 = s->smtputf8 = false;
	s->bdat_used = false;
	if (s->sm) {
		char why[8], dom[8];
		struct sign_job *job = NULL;

		/* Finishing is the only way to release a sign_msg. */
		if (sign_msg_finish(s->sm, &job, why, sizeof(why), dom,
				    sizeof(dom)) == SIGN_JOB)
			sign_job_free(job);
		s->sm = NULL;
	}
	s->hdrs_seen = false;
	s->hdr_len = s->body_fed = s->extra_len = 0;
	s->msgid[0] = '\0';
	s->hops = 0;
	if (s->state != SMTPD_INIT)
		s->state = SMTPD_READY;
}

/* smtpd_unref - drop a reference; the last one frees the session. */
static void smtpd_unref(struct smtpd_session *s)
{
	struct relay_smtpd *srv = s->srv;

	if (--s->refs > 0)
		return;
	smtpd_reset(s);
	free(s->rcpts);
	relay_data_free(&s->data);
	relay_tls_free(s->tls);
	free(s->in.p);
	free(s->out.p);
	relay_gen_put(s->gen);

	if (s->client && --s->client->conns == 0 &&
	    s->c->smtpd_client_connection_rate_limit <= 0)
		smtpd_client_drop(srv, s->client);
	if (s->prev)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);

	srv->nsessions--;
	if (srv->stopping && srv->nsessions == 0 && srv->done)
		srv->done(srv->done_arg);
}

/* ---- timers ---- */

/* smtpd_timer_cb - the client was silent too long. */
static void smtpd_timer_cb(uv_timer_t *t)
{
	struct smtpd_session *s = t->data;

	if (s->state == SMTPD_BUSY)
		return;
	relay_info(s->id, "timeout state=%d client=%s", s->state, s->addr);
	smtpd_reply(s, "421 4.4.2 %s Error: timeout exceeded",
		    s->c->myhostname);
	smtpd_close(s);
}

/* smtpd_timer_arm - restart the timeout for what we wait for now. */
static void smtpd_timer_arm(struct smtpd_session *s)
{
	int64_t ms = s->state == SMTPD_DATA || s->state == SMTPD_BDAT
			 ? s->c->smtpd_data_timeout
		     : s->state == SMTPD_READY || s->state == SMTPD_INIT
			 ? s->c->smtpd_idle_timeout
			 : s->c->smtpd_timeout;

	if (ms > 0 && !s->closing)
		uv_timer_start(&s->timer, smtpd_timer_cb, (uint64_t)ms, 0);
}

/* smtpd_timer_closed_cb - the timer's reference ends here. */
static void smtpd_timer_closed_cb(uv_handle_t *h)
{
	smtpd_unref(h->data);
}

/* smtpd_close - flush and close the connection; the session follows. */
static void smtpd_close(struct smtpd_session *s)
{
	if (s->sock == NULL)
		return;
	smtpd_flush(s);
	s->closing = true;
	relay_sock_close(s->sock);
}

/* ---- message assembly ---- */

/* smtpd_rfc5322_date - the current time as an RFC 5322 date-time. */
static void smtpd_rfc5322_date(char *buf, size_t len)
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/* smtpd_hdr_is - whether the field at p (line start) is named name. */
static bool smtpd_hdr_is(const char *p, size_t n, const char *name)
{
	size_t l = strlen(name);

	return n > l && p[l] == ':' && strncasecmp(p, name, l) == 0;
}

/*
 * smtpd_headers - the header block is complete: count Received fields,
 * note Message-ID, add what RFC 5322 wants and is missing (Message-ID,
 * Date; RFC 5321 section 6.4 lets a relay add them), and give the block
 * to the signer. The added fields go after the client's, and are signed.
 */
static void smtpd_headers(struct smtpd_session *s)
{
	const char *base = s->data.buf ? s->data.buf : "", *p = base, *end;
	bool has_date = false, has_msgid = false;
	size_t hlen;
	char *block;

	s->hdrs_seen = true;
	hlen = s->data.hdr_end ? s->data.hdr_end - 2 : s->data.len;
	s->hdr_len = hlen;
	s->body_fed = s->data.hdr_end ? s->data.hdr_end : s->data.len;
	end = p + hlen;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (smtpd_hdr_is(p, n, "Received"))
			s->hops++;
		else if (smtpd_hdr_is(p, n, "Date"))
			has_date = true;
		else if (smtpd_hdr_is(p, n, "Message-ID")) {
			const char *v = p + 11;
			size_t vl = n - 11;

			has_msgid = true;
			while (vl > 0 && (*v == ' ' || *v == '\t'))
				v++, vl--;
			while (vl > 0 && (v[vl - 1] == '\r'))
				vl--;
			snprintf(s->msgid, sizeof(s->msgid), "%.*s", (int)vl,
				 v);
		}
		p = nl ? nl + 1 : end;
	}

	s->extra_len = 0;
	if (!has_msgid) {
		struct timespec ts;
		int n;

		clock_gettime(CLOCK_REALTIME, &ts);
		snprintf(s->msgid, sizeof(s->msgid), "<%llx.%s.%lx@%.180s>",
			 (unsigned long long)ts.tv_sec, s->id,
			 (unsigned long)ts.tv_nsec, s->c->myhostname);
		n = snprintf(s->extra, sizeof(s->extra), "Message-ID: %s\r\n",
			     s->msgid);
		s->extra_len = (size_t)n < sizeof(s->extra) ? (size_t)n : 0;
	}
	if (!has_date) {
		char date[64];
		int n;

		smtpd_rfc5322_date(date, sizeof(date));
		n = snprintf(s->extra + s->extra_len,
			     sizeof(s->extra) - s->extra_len, "Date: %s\r\n",
			     date);
		if (n > 0 && (size_t)n < sizeof(s->extra) - s->extra_len)
			s->extra_len += (size_t)n;
	}

	if (s->sm == NULL)
		return;
	if (s->extra_len == 0) {
		sign_msg_headers(s->sm, base, hlen);
		return;
	}
	block = malloc(hlen + s->extra_len);
	if (block == NULL)
		return;
	memcpy(block, base, hlen);
	memcpy(block + hlen, s->extra, s->extra_len);
	sign_msg_headers(s->sm, block, hlen + s->extra_len);
	free(block);
}

/* smtpd_stream - after each read: hash the body bytes that arrived. */
static void smtpd_stream(struct smtpd_session *s)
{
	if (s->data.err != RELAY_DATA_OK)
		return;
	if (!s->hdrs_seen) {
		if (s->data.hdr_end == 0)
			return;
		smtpd_headers(s);
	}
	if (s->sm && s->data.len > s->body_fed) {
		sign_msg_body(s->sm, s->data.buf + s->body_fed,
			      s->data.len - s->body_fed);
		s->body_fed = s->data.len;
	}
}

/* smtpd_received - the Received field we prepend (RFC 5321 4.4). */
static size_t smtpd_received(struct smtpd_session *s, char *buf, size_t len)
{
	char date[64], tlsinfo[160] = "", forpart[300] = "";
	const char *proto;
	int n;

	smtpd_rfc5322_date(date, sizeof(date));
	if (s->tls) {
		const char *ver, *cipher;
		int bits;

		relay_tls_params(s->tls, &ver, &cipher, &bits);
		snprintf(tlsinfo, sizeof(tlsinfo),
			 "\r\n\t(using %s with cipher"
			 " %s (%d bits))",
			 ver, cipher, bits);
	}

	/* RFC 3848 protocol names; RFC 6531 section 3.7.3 for UTF8. */
	if (s->smtputf8)
		proto = s->tls ? "UTF8SMTPS" : "UTF8SMTP";
	else if (!s->esmtp)
		proto = "SMTP";
	else
		proto = s->tls ? "ESMTPS" : "ESMTP";
	if (s->nrcpt == 1 && strlen(s->rcpts[0]) < 250)
		snprintf(forpart, sizeof(forpart), "\r\n\tfor <%s>",
			 s->rcpts[0]);

	n = snprintf(buf, len,
		     "Received: from %.100s (%s)%s\r\n\tby %.100s (waxseal) "
		     "with %s%s;\r\n\t%s\r\n",
		     s->helo[0] ? s->helo : "unknown", s->addr, tlsinfo,
		     s->c->myhostname, proto, forpart, date);
	return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

/*
 * smtpd_resume - a transaction has its answer: forget it, go on with the
 * commands that waited behind it, and drop the reference the signer or
 * the spool held.
 */
static void smtpd_resume(struct smtpd_session *s)
{
	smtpd_reset(s);
	if (s->sock) {
		smtpd_process(s);
		if (s->sock && !s->closing)
			relay_sock_read_start(s->sock);
	}
	smtpd_unref(s);
}

/* smtpd_queued_cb - the spool has the message on disk (or failed). */
static void smtpd_queued_cb(void *arg, int res, const char *id)
{
	struct smtpd_session *s = arg;

	if (s->sock && !s->closing) {
		if (res == 0)
			smtpd_reply(s, "250 2.0.0 Ok: queued as %s", id);
		else if (res == -ENOSPC)
			smtpd_reply(s, "452 4.3.1 Insufficient system storage");
		else
			smtpd_reply(s, "451 4.3.0 Error: queue file write "
				       "error");
	}
	if (res == 0) {
		relay_info(id,
			   "queued from=<%s> nrcpt=%zu size=%zu msgid=%s "
			   "session=%s",
			   s->sender ? s->sender : "", s->nrcpt, s->data.len,
			   s->msgid, s->id);
		if (s->srv->queued)
			s->srv->queued(s->srv->queued_arg, id);
	}
	else
		relay_warn(id, "queue-failed session=%s reason=%s", s->id,
			   strerror(-res));

	smtpd_resume(s);
}

/*
 * smtpd_store - hand the finished message to the spool: our Received
 * field, the signatures, the client's header block, the fields we added,
 * then the blank line and body, as one record.
 */
static void smtpd_store(struct smtpd_session *s, const char *sig, size_t siglen)
{
	char received[1024], id[QUEUE_ID_LEN + 1];
	struct iovec iov[5];
	struct queue_msg_in m;
	int r;

	iov[0].iov_base = received;
	iov[0].iov_len = smtpd_received(s, received, sizeof(received));
	iov[1].iov_base = (void *)sig;
	iov[1].iov_len = siglen;
	iov[2].iov_base = s->data.buf ? s->data.buf : "";
	iov[2].iov_len = s->hdr_len;
	iov[3].iov_base = s->extra;
	iov[3].iov_len = s->extra_len;
	iov[4].iov_base = (char *)iov[2].iov_base + s->hdr_len;
	iov[4].iov_len = s->data.len - s->hdr_len;

	memset(&m, 0, sizeof(m));
	m.sender = s->sender ? s->sender : "";
	m.rcpts = (const char *const *)s->rcpts;
	m.nrcpt = s->nrcpt;
	m.data = iov;
	m.ndata = 5;
	m.arrival_ms = (int64_t)time(NULL) * 1000;
	m.flags = (s->body8 ? QUEUE_F_8BITMIME : 0) |
		  (s->smtputf8 ? QUEUE_F_SMTPUTF8 : 0);

	/* The spool's callback holds its own reference. */
	s->refs++;
	r = queue_spool_append(s->srv->spool, &m, smtpd_queued_cb, s, id);
	if (r < 0)
		smtpd_queued_cb(s, r, "-");
}

/* smtpd_signed_cb - a sign job finished on a worker; we are on the loop. */
static void smtpd_signed_cb(void *arg, struct sign_job *job, int res)
{
	struct smtpd_session *s = arg;
	const char *sig = NULL;
	size_t len = 0;

	if (res == 0)
		sig = sign_job_result(job, &len);
	if (res < 0) {
		relay_warn(s->id, "sign-failed reason=%s", strerror(-res));
		if (s->sock)
			smtpd_reply(s, "451 4.7.0 Error: signing failed");
		sign_job_free(job);
		smtpd_resume(s);
		return;
	}
	smtpd_store(s, sig, len);
	sign_job_free(job);
	smtpd_unref(s);
}

/*
 * smtpd_message - the client has sent the whole message: check it, sign
 * it on the pool (or not, as policy says), then store it.
 */
static void smtpd_message(struct smtpd_session *s)
{
	struct sign_job *job = NULL;
	char why[200] = "", domain[256] = "";
	struct sign_msg *sm;
	int r;

	if (s->data.err != RELAY_DATA_OK) {
		smtpd_reply(s, "%s", relay_data_reply(s->data.err));
		relay_info(s->id, "reject stage=data reason=\"%s\"",
			   relay_data_reply(s->data.err));
		smtpd_reset(s);
		return;
	}
	if (!s->hdrs_seen)
		smtpd_headers(s);
	smtpd_stream(s);

	if (s->hops > s->c->hopcount_limit) {
		smtpd_reply(s, "554 5.4.6 Too many hops");
		relay_info(s->id,
			   "reject stage=data reason=\"too many hops\" "
			   "hops=%d",
			   s->hops);
		smtpd_reset(s);
		return;
	}

	sm = s->sm;
	s->sm = NULL;
	r = sm ? sign_msg_finish(sm, &job, why, sizeof(why), domain,
				 sizeof(domain))
	       : -ENOMEM;
	switch (r) {
	case SIGN_JOB:
		s->state = SMTPD_BUSY;
		s->refs++;
		r = sign_pool_submit(s->srv->pool, job, smtpd_signed_cb, s);
		if (r < 0) {
			s->refs--;
			sign_job_free(job);
			smtpd_reply(s, "451 4.3.0 Error: signing unavailable");
			smtpd_reset(s);
		}
		return;
	case SIGN_UNSIGNED_ACCEPT:
		relay_info(s->id, "unsigned from_domain=%s reason=\"%s\"",
			   domain[0] ? domain : "-", why);
		s->state = SMTPD_BUSY;
		s->refs++;
		smtpd_store(s, "", 0);
		smtpd_unref(s);
		return;
	case SIGN_UNSIGNED_DEFER:
		smtpd_reply(s, "451 4.7.5 No DKIM key for %s", domain);
		break;
	case SIGN_UNSIGNED_REJECT:
		smtpd_reply(s, "550 5.7.5 No DKIM key for %s", domain);
		break;
	case SIGN_REFUSE:
		smtpd_reply(s, "550 5.7.1 %s", why);
		break;
	default:
		smtpd_reply(s, "451 4.3.0 Error: out of memory");
		break;
	}
	relay_info(s->id, "reject stage=data from_domain=%s reason=\"%s\"",
		   domain[0] ? domain : "-", why);
	smtpd_reset(s);
}

/* smtpd_begin_message - start reading a DATA or BDAT message. */
static int smtpd_begin_message(struct smtpd_session *s, bool bdat)
{
	relay_data_begin(&s->data, (uint64_t)s->c->message_size_limit,
			 s->c->smtpd_forbid_bare_newline == CONF_BARE_LF_REJECT,
			 bdat);
	s->sm = sign_msg_new(s->gen->keys);
	if (s->sm == NULL)
		return -ENOMEM;
	s->hdrs_seen = false;
	s->hdr_len = s->body_fed = 0;
	return 0;
}

/* smtpd_spool_check - 0, or a 4xx reply when the spool is full. */
static int smtpd_spool_check(struct smtpd_session *s, uint64_t size)
{
	int r = queue_spool_can_accept(s->srv->spool, size);

	if (r == -ENOSPC)
		smtpd_reply(s, "452 4.3.1 Insufficient system storage");
	else if (r < 0)
		smtpd_reply(s, "451 4.3.0 Error: queue file write error");
	return r;
}

/* ---- commands ---- */

/* smtpd_ehlo_check - the domain or address literal after EHLO/HELO. */
static bool smtpd_ehlo_check(struct smtpd_session *s, const char *a, size_t n)
{
	size_t i;

	if (n == 0 || n >= sizeof(s->helo)) {
		smtpd_reply(s, "501 5.5.4 Syntax: EHLO hostname");
		return false;
	}
	for (i = 0; i < n; i++) {
		if ((unsigned char)a[i] <= ' ' || a[i] == 0x7f) {
			smtpd_reply(s, "501 5.5.4 Syntax: EHLO hostname");
			return false;
		}
	}
	memcpy(s->helo, a, n);
	s->helo[n] = '\0';
	return true;
}

/* smtpd_greet - EHLO or HELO: a new start, as after RSET. */
static bool smtpd_greet(struct smtpd_session *s, const char *a, size_t n,
			bool esmtp)
{
	if (!smtpd_ehlo_check(s, a, n))
		return false;
	smtpd_reset(s);
	s->state = SMTPD_READY;
	s->esmtp = esmtp;
	return true;
}

/* smtpd_do_ehlo - greet and list the extensions. */
static void smtpd_do_ehlo(struct smtpd_session *s, const char *a, size_t n)
{
	if (!smtpd_greet(s, a, n, true))
		return;
	smtpd_reply(s, "250-%s", s->c->myhostname);
	smtpd_reply(s, "250-PIPELINING");
	smtpd_reply(s, "250-SIZE %" PRId64, s->c->message_size_limit);
	if (s->gen->tls && s->tls == NULL &&
	    s->c->smtpd_tls_security_level != CONF_TLS_NONE)
		smtpd_reply(s, "250-STARTTLS");
	smtpd_reply(s, "250-ENHANCEDSTATUSCODES");
	smtpd_reply(s, "250-8BITMIME");
	smtpd_reply(s, "250-SMTPUTF8");
	smtpd_reply(s, "250 CHUNKING");
}

/* smtpd_do_helo - RFC 821 greeting: no extensions. */
static void smtpd_do_helo(struct smtpd_session *s, const char *a, size_t n)
{
	if (smtpd_greet(s, a, n, false))
		smtpd_reply(s, "250 %s", s->c->myhostname);
}

/* smtpd_keyword - a "FROM:"/"TO:" keyword, case-insensitive; past it. */
static const char *smtpd_keyword(const char *a, size_t n, const char *kw)
{
	const char *end = a + n;
	size_t l = strlen(kw);

	if (n < l || strncasecmp(a, kw, l) != 0)
		return NULL;
	a += l;

	/* RFC 5321 has no space here; clients commonly send one anyway.
	 * The argument may have lost its trailing blanks: stay inside it. */
	while (a < end && *a == ' ')
		a++;
	return a;
}

/* smtpd_do_mail - MAIL FROM:<path> [params]. */
static void smtpd_do_mail(struct smtpd_session *s, const char *a, size_t n)
{
	char path[RELAY_ADDR_PATH_MAX + 1];
	struct relay_addr_params p;
	const char *rest, *why, *end = a + n;
	int r;

	if (s->state == SMTPD_MAIL || s->state == SMTPD_RCPT ||
	    s->state == SMTPD_BDAT) {
		smtpd_reply(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	/* RFC 5321 section 4.1.4: a transaction starts after the greeting. */
	if (s->state == SMTPD_INIT) {
		smtpd_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->c->smtpd_tls_security_level == CONF_TLS_ENCRYPT &&
	    s->tls == NULL) {
		smtpd_reply(s, "530 5.7.0 Must issue a STARTTLS command first");
		return;
	}
	a = smtpd_keyword(a, n, "FROM:");
	if (a == NULL) {
		smtpd_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	r = relay_addr_parse_path(a, (size_t)(end - a), true, true, path, &rest,
				  &why);
	if (r < 0) {
		smtpd_reply(s, "501 5.1.7 Bad sender address syntax: %s", why);
		return;
	}
	r = relay_addr_parse_params(rest, (size_t)(end - rest), true, &p, &why);
	if (r == -ENOTSUP) {
		smtpd_reply(s, "555 5.5.4 Unsupported option: %s", why);
		return;
	}
	if (r < 0) {
		smtpd_reply(s, "501 5.5.4 Bad MAIL parameter: %s", why);
		return;
	}
	if (relay_addr_has_8bit(path, strlen(path)) && !p.smtputf8) {
		smtpd_reply(s, "553 5.6.7 Non-ASCII address needs SMTPUTF8");
		return;
	}
	if (p.size > 0 && s->c->message_size_limit > 0 &&
	    p.size > s->c->message_size_limit) {
		smtpd_reply(s, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	if (smtpd_spool_check(s, p.size > 0 ? (uint64_t)p.size : 0) < 0)
		return;

	s->sender = strdup(path);
	if (s->sender == NULL) {
		smtpd_reply(s, "451 4.3.0 Error: out of memory");
		return;
	}
	s->body8 = p.body == 8;
	s->smtputf8 = p.smtputf8;
	s->state = SMTPD_MAIL;
	smtpd_reply(s, "250 2.1.0 Ok");
}

/* smtpd_do_rcpt - RCPT TO:<path> [params]. */
static void smtpd_do_rcpt(struct smtpd_session *s, const char *a, size_t n)
{
	char path[RELAY_ADDR_PATH_MAX + 1];
	struct relay_addr_params p;
	const char *rest, *why, *end = a + n;
	char **v;
	int r;

	if (s->state == SMTPD_BDAT) {
		smtpd_reply(s, "503 5.5.1 Error: BDAT transfer in progress");
		return;
	}
	if (s->state != SMTPD_MAIL && s->state != SMTPD_RCPT) {
		smtpd_reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	a = smtpd_keyword(a, n, "TO:");
	if (a == NULL) {
		smtpd_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (!s->smtputf8 && relay_addr_has_8bit(a, (size_t)(end - a))) {
		smtpd_reply(s, "553 5.6.7 Non-ASCII address needs SMTPUTF8");
		return;
	}
	r = relay_addr_parse_path(a, (size_t)(end - a), false, s->smtputf8,
				  path, &rest, &why);
	if (r < 0) {
		smtpd_reply(s, "501 5.1.3 Bad recipient address syntax: %s",
			    why);
		return;
	}
	r = relay_addr_parse_params(rest, (size_t)(end - rest), false, &p,
				    &why);
	if (r == -ENOTSUP) {
		smtpd_reply(s, "555 5.5.4 Unsupported option: %s", why);
		return;
	}
	if (r < 0) {
		smtpd_reply(s, "501 5.5.4 Bad RCPT parameter: %s", why);
		return;
	}

	/* Relaying is decided by the client's address, nothing else. */
	if (!s->trusted) {
		smtpd_reply(s, "554 5.7.1 <%s>: Relay access denied", path);
		relay_info(s->id,
			   "reject stage=rcpt client=%s rcpt=<%s> "
			   "reason=\"relay access denied\"",
			   s->addr, path);
		return;
	}
	if (s->c->smtpd_recipient_limit > 0 &&
	    s->nrcpt >= (size_t)s->c->smtpd_recipient_limit) {
		smtpd_reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (s->nrcpt == s->rcptcap) {
		size_t cap = s->rcptcap ? s->rcptcap * 2 : 8;

		v = realloc(s->rcpts, cap * sizeof(*v));
		if (v == NULL) {
			smtpd_reply(s, "451 4.3.0 Error: out of memory");
			return;
		}
		s->rcpts = v;
		s->rcptcap = cap;
	}
	s->rcpts[s->nrcpt] = strdup(path);
	if (s->rcpts[s->nrcpt] == NULL) {
		smtpd_reply(s, "451 4.3.0 Error: out of memory");
		return;
	}
	s->nrcpt++;
	s->state = SMTPD_RCPT;
	smtpd_reply(s, "250 2.1.5 Ok");
}

/* smtpd_data_ok - whether a message may start now; replies if not. */
static bool smtpd_data_ok(struct smtpd_session *s)
{
	if (s->state == SMTPD_MAIL) {
		smtpd_reply(s, "554 5.5.1 Error: no valid recipients");
		return false;
	}
	if (s->state != SMTPD_RCPT && s->state != SMTPD_BDAT) {
		smtpd_reply(s, "503 5.5.1 Error: need RCPT command");
		return false;
	}
	return true;
}

/* smtpd_do_data - DATA: the message follows, dot-terminated. */
static void smtpd_do_data(struct smtpd_session *s, const char *a, size_t n)
{
	if (n > 0) {
		smtpd_reply(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (!smtpd_data_ok(s))
		return;
	if (s->bdat_used) {
		smtpd_reply(s, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	if (smtpd_spool_check(s, 0) < 0)
		return;
	if (smtpd_begin_message(s, false) < 0) {
		smtpd_reply(s, "451 4.3.0 Error: out of memory");
		return;
	}
	s->state = SMTPD_DATA;
	smtpd_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* smtpd_do_bdat - BDAT size [LAST] (RFC 3030): a counted chunk follows. */
static void smtpd_do_bdat(struct smtpd_session *s, const char *a, size_t n)
{
	const char *end = a + n;
	uint64_t size = 0;
	bool last = false;
	const char *p = a;

	/* The chunk follows whatever we answer: parse its size first. */
	if (p == end || !isdigit((unsigned char)*p)) {
		smtpd_reply(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		return;
	}
	while (p < end && isdigit((unsigned char)*p)) {
		if (size > UINT64_C(1) << 40) {
			smtpd_reply(s, "501 5.5.4 BDAT size too large");
			s->closing = true;
			return;
		}
		size = size * 10 + (uint64_t)(*p++ - '0');
	}
	while (p < end && *p == ' ')
		p++;
	if (p < end) {
		if ((size_t)(end - p) == 4 && strncasecmp(p, "LAST", 4) == 0) {
			last = true;
		} else {
			/* Without a valid size we cannot resynchronise. */
			smtpd_reply(s, "501 5.5.4 Syntax: BDAT size [LAST]");
			s->bdat_left = size;
			s->bdat_discard = true;
			return;
		}
	}

	s->bdat_left = size;
	s->bdat_last = last;
	s->bdat_discard = false;
	if (s->state != SMTPD_BDAT) {
		if (!smtpd_data_ok(s) || smtpd_spool_check(s, 0) < 0) {
			s->bdat_discard = true;
		} else if (smtpd_begin_message(s, true) < 0) {
			smtpd_reply(s, "451 4.3.0 Error: out of memory");
			s->bdat_discard = true;
		} else {
			s->bdat_used = true;
			s->state = SMTPD_BDAT;
		}
	}

	/* An empty chunk ends here; others end in smtpd_feed(). */
	if (size == 0)
		smtpd_bdat_chunk_end(s);
}

/* smtpd_bdat_chunk_end - the chunk's octets are all in. */
static void smtpd_bdat_chunk_end(struct smtpd_session *s)
{
	if (s->bdat_discard) {
		s->bdat_discard = false;
		return;
	}
	smtpd_stream(s);
	if (s->bdat_last) {
		relay_data_finish(&s->data);
		smtpd_message(s);
		return;
	}
	if (s->data.err != RELAY_DATA_OK) {
		smtpd_reply(s, "%s", relay_data_reply(s->data.err));
		smtpd_reset(s);
		return;
	}
	smtpd_reply(s, "250 2.0.0 Ok: %zu octets", s->data.len);
}

/* smtpd_do_rset - RSET: abandon the transaction. */
static void smtpd_do_rset(struct smtpd_session *s, const char *a, size_t n)
{
	smtpd_reset(s);
	smtpd_reply(s, "250 2.0.0 Ok");
}

/* smtpd_do_noop - NOOP. */
static void smtpd_do_noop(struct smtpd_session *s, const char *a, size_t n)
{
	smtpd_reply(s, "250 2.0.0 Ok");
}

/* smtpd_do_vrfy - VRFY: RFC 5321 section 3.5.3's "cannot verify". */
static void smtpd_do_vrfy(struct smtpd_session *s, const char *a, size_t n)
{
	if (n == 0) {
		smtpd_reply(s, "501 5.5.4 Syntax: VRFY address");
		return;
	}
	smtpd_reply(s, "252 2.5.2 Cannot VRFY user, but will accept message "
		       "and attempt delivery");
}

/* smtpd_do_help - HELP. */
static void smtpd_do_help(struct smtpd_session *s, const char *a, size_t n)
{
	smtpd_reply(s, "214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT "
		       "RSET NOOP VRFY HELP QUIT STARTTLS");
	smtpd_reply(s, "214 2.0.0 waxseal relays mail for trusted clients");
}

/* smtpd_do_quit - QUIT. */
static void smtpd_do_quit(struct smtpd_session *s, const char *a, size_t n)
{
	smtpd_reply(s, "221 2.0.0 Bye");
	smtpd_close(s);
}

/* smtpd_do_starttls - STARTTLS (RFC 3207). */
static void smtpd_do_starttls(struct smtpd_session *s, const char *a, size_t n)
{
	if (n > 0) {
		smtpd_reply(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->gen->tls == NULL ||
	    s->c->smtpd_tls_security_level == CONF_TLS_NONE) {
		smtpd_reply(s, "502 5.5.1 Error: command not implemented");
		return;
	}
	if (s->tls) {
		smtpd_reply(s, "554 5.5.1 Error: TLS already active");
		return;
	}
	if (s->state != SMTPD_READY && s->state != SMTPD_INIT) {
		smtpd_reply(s, "503 5.5.1 Error: transaction in progress");
		return;
	}
	smtpd_reply(s, "220 2.0.0 Ready to start TLS");
	smtpd_flush(s);

	/*
	 * Whatever the client sent after STARTTLS in plaintext must not be
	 * taken as commands of the TLS session (CVE-2011-0411).
	 */
	s->in.off = s->in.len = 0;
	s->tls = relay_tls_new(s->gen->tls);
	if (s->tls == NULL) {
		smtpd_close(s);
		return;
	}

	/* RFC 3207 section 4.2: forget everything, even the EHLO. */
	smtpd_reset(s);
	s->state = SMTPD_INIT;
	s->helo[0] = '\0';
	s->esmtp = false;
}

/* smtpd_do_expn - EXPN: no lists to expand here. */
static void smtpd_do_expn(struct smtpd_session *s, const char *a, size_t n)
{
	smtpd_reply(s, "502 5.5.1 Error: command not implemented");
}

static const struct smtpd_cmd smtpd_cmds[] = {
    {"EHLO", smtpd_do_ehlo}, {"HELO", smtpd_do_helo},
    {"MAIL", smtpd_do_mail}, {"RCPT", smtpd_do_rcpt},
    {"DATA", smtpd_do_data}, {"BDAT", smtpd_do_bdat},
    {"RSET", smtpd_do_rset}, {"NOOP", smtpd_do_noop},
    {"VRFY", smtpd_do_vrfy}, {"HELP", smtpd_do_help},
    {"QUIT", smtpd_do_quit}, {"STARTTLS", smtpd_do_starttls},
    {"EXPN", smtpd_do_expn},
};

/* smtpd_command - one complete command line (without its line end). */
static void smtpd_command(struct smtpd_session *s, const char *line, size_t n)
{
	size_t vl = 0, i;
	const char *arg;

	relay_debug(s->id, "command text=\"%.*s\"", (int)(n > 200 ? 200 : n),
		    line);
	if (memchr(line, '\0', n)) {
		smtpd_reply(s, "500 5.5.2 Error: NUL character in command");
		return;
	}
	while (vl < n && line[vl] != ' ')
		vl++;
	arg = line + vl;
	while (arg < line + n && *arg == ' ')
		arg++;

	for (i = 0; i < sizeof(smtpd_cmds) / sizeof(smtpd_cmds[0]); i++) {
		if (strlen(smtpd_cmds[i].name) == vl &&
		    strncasecmp(smtpd_cmds[i].name, line, vl) == 0) {
			/* Trailing spaces are not part of an argument. */
			size_t al = (size_t)(line + n - arg);

			while (al > 0 && arg[al - 1] == ' ')
				al--;
			smtpd_cmds[i].run(s, arg, al);
			return;
		}
	}
	smtpd_reply(s, "500 5.5.2 Error: command not recognized");
}

/* smtpd_take_line - the next command line from the input; false if none. */
static bool smtpd_take_line(struct smtpd_session *s)
{
	char *p = s->in.p + s->in.off;
	size_t avail = s->in.len - s->in.off, n;
	char *nl = memchr(p, '\n', avail);

	if (nl == NULL) {
		/* A line that cannot fit is answered once and skipped. */
		if (avail > SMTPD_LINE_MAX) {
			if (!s->skip_line)
				smtpd_reply(s, "500 5.5.2 Error: line too "
					       "long");
			s->skip_line = true;
			s->in.off = s->in.len = 0;
		}
		return false;
	}
	n = (size_t)(nl - p);
	s->in.off += n + 1;
	if (s->skip_line) {
		s->skip_line = false;
		return true;
	}
	if (n + 1 > SMTPD_LINE_MAX) {
		smtpd_reply(s, "500 5.5.2 Error: line too long");
		return true;
	}
	if (n > 0 && p[n - 1] == '\r') {
		n--;
	} else if (s->c->smtpd_forbid_bare_newline == CONF_BARE_LF_REJECT) {
		smtpd_reply(s, "500 5.5.2 Error: bare <LF> received");
		return true;
	}
	smtpd_command(s, p, n);
	return true;
}

/* smtpd_feed - input for a DATA message or a BDAT chunk. */
static void smtpd_feed(struct smtpd_session *s)
{
	char *p = s->in.p + s->in.off;
	size_t avail = s->in.len - s->in.off, used;

	if (s->state == SMTPD_DATA) {
		if (relay_data_feed(&s->data, p, avail, &used) ==
		    RELAY_DATA_END) {
			s->in.off += used;
			smtpd_message(s);
			return;
		}
		s->in.off += used;
		smtpd_stream(s);
		return;
	}

	/* A BDAT chunk: exactly bdat_left octets are its content. */
	used = avail < s->bdat_left ? avail : (size_t)s->bdat_left;
	if (!s->bdat_discard)
		relay_data_feed(&s->data, p, used, &used);
	s->in.off += used;
	s->bdat_left -= used;
	if (s->bdat_left == 0)
		smtpd_bdat_chunk_end(s);
	else if (!s->bdat_discard)
		smtpd_stream(s);
}

/* smtpd_sleep_cb - the error delay is over: carry on with the input. */
static void smtpd_sleep_cb(uv_timer_t *t)
{
	struct smtpd_session *s = t->data;

	s->sleeping = false;
	smtpd_process(s);
}

/*
 * smtpd_error_sleep - Postfix's smtpd_error_sleep_time: once a client has
 * made more than smtpd_soft_error_limit errors, each further error reply
 * is delayed. Off by default: trusted senders are never slowed.
 */
static void smtpd_error_sleep(struct smtpd_session *s)
{
	if (s->c->smtpd_error_sleep_time <= 0 || s->errors <= s->slept ||
	    s->errors <= s->c->smtpd_soft_error_limit || s->closing)
		return;
	s->slept = s->errors;
	s->sleeping = true;
	uv_timer_start(&s->timer, smtpd_sleep_cb,
		       (uint64_t)s->c->smtpd_error_sleep_time, 0);
}

/* smtpd_process - work through buffered input as far as we can. */
static void smtpd_process(struct smtpd_session *s)
{
	while (s->sock && !s->closing && s->state != SMTPD_BUSY &&
	       !s->sleeping) {
		if (s->in.off == s->in.len)
			break;
		if (s->state == SMTPD_DATA || s->bdat_left > 0)
			smtpd_feed(s);
		else if (!smtpd_take_line(s))
			break;

		if (s->c->smtpd_hard_error_limit > 0 &&
		    s->errors >= s->c->smtpd_hard_error_limit) {
			smtpd_reply(s, "421 4.7.0 %s Error: too many errors",
				    s->c->myhostname);
			relay_info(s->id, "too-many-errors client=%s errors=%d",
				   s->addr, s->errors);
			smtpd_close(s);
			break;
		}
		smtpd_error_sleep(s);
	}
	if (s->in.off == s->in.len)
		s->in.off = s->in.len = 0;

	if (s->srv->stopping && s->sock && !s->closing &&
	    (s->state == SMTPD_READY || s->state == SMTPD_INIT)) {
		smtpd_reply(s, "421 4.3.2 %s Service shutting down",
			    s->c->myhostname);
		smtpd_close(s);
	}
	smtpd_flush(s);
	if (s->sock && !s->closing && !s->sleeping) {
		smtpd_timer_arm(s);
		if (s->state == SMTPD_BUSY &&
		    s->in.len - s->in.off > SMTPD_IN_PAUSE)
			relay_sock_read_stop(s->sock);
	}
}

/* ---- client limits ---- */

/* smtpd_client_slot - the hash chain of addr. */
static struct smtpd_client **smtpd_client_slot(struct relay_smtpd *srv,
					       const char *addr)
{
	unsigned h = 5381;

	while (*addr)
		h = h * 33 + (unsigned char)*addr++;
	return &srv->clients[h % 256];
}

/* smtpd_client_drop - forget a client with no connections left. */
static void smtpd_client_drop(struct relay_smtpd *srv, struct smtpd_client *c)
{
	struct smtpd_client **pp = smtpd_client_slot(srv, c->addr);

	while (*pp && *pp != c)
		pp = &(*pp)->next;
	if (*pp)
		*pp = c->next;
	free(c);
}

/*
 * smtpd_client_limit - count this connection against its client; the
 * reason when a limit is passed, else NULL.
 */
static const char *smtpd_client_limit(struct smtpd_session *s)
{
	const struct conf *c = s->c;
	struct smtpd_client **pp, *cl;
	uint64_t now = uv_now(s->srv->loop);

	if (c->smtpd_client_connection_count_limit <= 0 &&
	    c->smtpd_client_connection_rate_limit <= 0)
		return NULL;
	/* Forget clients of this chain whose minute is over and who left. */
	pp = smtpd_client_slot(s->srv, s->addr);
	while (*pp) {
		cl = *pp;
		if (cl->conns == 0 && now - cl->rate_start >= 60000) {
			*pp = cl->next;
			free(cl);
			continue;
		}
		pp = &cl->next;
	}
	pp = smtpd_client_slot(s->srv, s->addr);
	for (cl = *pp; cl && strcmp(cl->addr, s->addr) != 0; cl = cl->next)
		;
	if (cl == NULL) {
		cl = calloc(1, sizeof(*cl));
		if (cl == NULL)
			return "out of memory";
		snprintf(cl->addr, sizeof(cl->addr), "%s", s->addr);
		cl->rate_start = now;
		cl->next = *pp;
		*pp = cl;
	}
	s->client = cl;
	cl->conns++;
	if (now - cl->rate_start >= 60000) {
		cl->rate_start = now;
		cl->rate_count = 0;
	}
	cl->rate_count++;

	if (c->smtpd_client_connection_count_limit > 0 &&
	    cl->conns > c->smtpd_client_connection_count_limit)
		return "too many connections from your address";
	if (c->smtpd_client_connection_rate_limit > 0 &&
	    cl->rate_count > c->smtpd_client_connection_rate_limit)
		return "too many connections per minute from your address";
	return NULL;
}

/* ---- socket callbacks ---- */

/* smtpd_read_cb - bytes from the client (ciphertext under TLS). */
static void smtpd_read_cb(void *arg, const char *buf, size_t len)
{
	struct smtpd_session *s = arg;
	char plain[16384];
	int n;

	if (s->tls == NULL) {
		if (smtpd_buf_add(&s->in, buf, len) < 0) {
			smtpd_close(s);
			return;
		}
		smtpd_process(s);
		return;
	}

	if (relay_tls_input(s->tls, buf, len) < 0) {
		smtpd_close(s);
		return;
	}
	while ((n = relay_tls_read(s->tls, plain, sizeof(plain))) > 0) {
		if (smtpd_buf_add(&s->in, plain, (size_t)n) < 0) {
			smtpd_close(s);
			return;
		}
	}
	if (n < 0) {
		relay_info(s->id, "tls-failed client=%s reason=\"%s\"", s->addr,
			   n == -EPIPE ? "closed" : relay_tls_error());
		smtpd_flush(s);
		smtpd_close(s);
		return;
	}
	if (relay_tls_ready(s->tls) && s->helo[0] == '\0' &&
	    s->state == SMTPD_INIT && s->in.len == 0)
		relay_debug(s->id, "tls %s", relay_tls_describe(s->tls));
	smtpd_process(s);
}

/* smtpd_eof_cb - the client went away or the socket failed. */
static void smtpd_eof_cb(void *arg, int err)
{
	struct smtpd_session *s = arg;

	if (s->state != SMTPD_READY && s->state != SMTPD_INIT)
		relay_info(s->id, "lost-connection client=%s state=%d", s->addr,
			   s->state);
	smtpd_close(s);
}

/* smtpd_closed_cb - the socket is gone. */
static void smtpd_closed_cb(void *arg)
{
	struct smtpd_session *s = arg;

	s->sock = NULL;
	relay_debug(s->id, "disconnect client=%s", s->addr);
	uv_close((uv_handle_t *)&s->timer, smtpd_timer_closed_cb);
	smtpd_unref(s);
}

static const struct relay_sock_cbs smtpd_sock_cbs = {
    .read = smtpd_read_cb,
    .eof = smtpd_eof_cb,
    .closed = smtpd_closed_cb,
};

/* smtpd_format_addr - "[192.0.2.1]" or "[IPv6:2001:db8::1]". */
static void smtpd_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		snprintf(buf, len, "[IPv6:%s]", a);
	} else {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(buf, len, "[%s]", a);
	}
}

void relay_smtpd_accept_cb(void *arg, struct relay_sock *sock)
{
	struct relay_smtpd *srv = arg;
	struct smtpd_session *s = calloc(1, sizeof(*s));
	const char *limit;

	if (s == NULL) {
		relay_sock_close(sock);
		return;
	}
	relay_sock_set_cbs(sock, &smtpd_sock_cbs, s);
	s->srv = srv;
	s->gen = srv->gen;
	s->gen->refs++;
	s->c = &s->gen->conf;
	s->sock = sock;
	s->refs = 2; /* socket and timer */
	snprintf(s->id, sizeof(s->id), "S%07" PRIX64, ++srv->next_id);
	smtpd_format_addr(relay_sock_peer(sock), s->addr, sizeof(s->addr));
	s->trusted = conf_cidr_match(&s->c->mynetworks, relay_sock_peer(sock));
	uv_timer_init(srv->loop, &s->timer);
	s->timer.data = s;
	srv->nsessions++;
	s->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = s;
	srv->sessions = s;

	limit = s->trusted ? NULL : smtpd_client_limit(s);
	if (limit) {
		relay_warn(s->id,
			   "reject stage=connect client=%s reason=\"%s\"",
			   s->addr, limit);
		smtpd_reply(s, "421 4.7.0 %s Error: %s", s->c->myhostname,
			    limit);
		smtpd_close(s);
		return;
	}

	if (s->c->smtpd_max_connections > 0 &&
	    srv->nsessions > (size_t)s->c->smtpd_max_connections) {
		relay_warn(s->id,
			   "reject stage=connect client=%s "
			   "reason=\"too many connections\"",
			   s->addr);
		smtpd_reply(s,
			    "421 4.3.2 %s Service not available, too many "
			    "connections",
			    s->c->myhostname);
		smtpd_close(s);
		return;
	}
	if (srv->stopping) {
		smtpd_reply(s, "421 4.3.2 %s Service shutting down",
			    s->c->myhostname);
		smtpd_close(s);
		return;
	}

	relay_debug(s->id, "connect client=%s trusted=%s", s->addr,
		    s->trusted ? "yes" : "no");
	smtpd_reply(s, "220 %s", s->c->smtpd_banner);
	smtpd_flush(s);
	smtpd_timer_arm(s);
	relay_sock_read_start(sock);
}

struct relay_smtpd *relay_smtpd_new(uv_loop_t *loop, struct queue_spool *sp,
				    struct sign_pool *pool,
				    struct relay_gen *gen)
{
	struct relay_smtpd *srv = calloc(1, sizeof(*srv));

	if (srv == NULL)
		return NULL;
	srv->loop = loop;
	srv->spool = sp;
	srv->pool = pool;
	srv->gen = gen;
	return srv;
}

void relay_smtpd_set_gen(struct relay_smtpd *srv, struct relay_gen *gen)
{
	relay_gen_put(srv->gen);
	srv->gen = gen;
}

void relay_smtpd_set_pool(struct relay_smtpd *srv, struct sign_pool *pool)
{
	srv->pool = pool;
}

void relay_smtpd_shutdown(struct relay_smtpd *srv, void (*done)(void *),
			  void *arg)
{
	struct smtpd_session *s, *next;

	srv->stopping = true;
	srv->done = done;
	srv->done_arg = arg;
	if (srv->nsessions == 0) {
		done(arg);
		return;
	}

	/* Sessions between transactions close now; the others after. */
	for (s = srv->sessions; s; s = next) {
		next = s->next;
		if (s->sock && !s->closing && s->state != SMTPD_BUSY &&
		    s->state != SMTPD_DATA && s->state != SMTPD_BDAT)
			smtpd_process(s);
	}
}

void relay_smtpd_free(struct relay_smtpd *srv)
{
	relay_gen_put(srv->gen);
	free(srv);
}

void relay_gen_put(struct relay_gen *g)
{
	if (g == NULL || --g->refs > 0)
		return;
	sign_keys_free(g->keys);
	relay_tls_ctx_free(g->tls);
	conf_free(&g->conf);
	free(g);
}

void relay_smtpd_on_queued(struct relay_smtpd *srv,
			   void (*fn)(void *, const char *), void *arg)
{
	srv->queued = fn;
	srv->queued_arg = arg;
}
