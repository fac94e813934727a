/*
 * relay_smtpc - see relay_smtpc.h.
 *
 * The connection is a state and a reply parser. Every reply the server
 * sends is matched, in order, with the command that asked for it; with
 * PIPELINING several commands are in flight and their replies are taken
 * one by one from the same queue (RFC 2920 section 3.1: replies come back
 * in command order). One uv timer watches whatever reply is awaited.
 */
#include "relay/relay_smtpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf.h"
#include "relay/relay_log.h"

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets; be generous. */
#define SMTPC_LINE_MAX 4096
/* What we keep of one (maybe multi-line) reply for logs and bounces. */
#define SMTPC_REPLY_MAX 512
/* Message data goes out in pieces of this size after dot-stuffing. */
#define SMTPC_CHUNK 65536

enum smtpc_state {
	SMTPC_CONNECT,
	SMTPC_BANNER,
	SMTPC_EHLO,
	SMTPC_HELO,
	SMTPC_STARTTLS,
	SMTPC_HANDSHAKE,
	SMTPC_IDLE,
	SMTPC_TXN,
	SMTPC_QUIT,
	SMTPC_DEAD
};

/* Which reply of a transaction comes next. */
enum smtpc_phase { TX_MAIL, TX_RCPT, TX_DATA, TX_DOT, TX_RSET, TX_LOCAL };

struct relay_smtpc {
	struct relay_io *io;
	uv_loop_t *loop;
	struct relay_sock *sock;
	struct relay_tls *tls;
	uv_timer_t timer;
	int closes;            /* handles still to close before freeing */

	struct relay_smtpc_opts o;
	char *helo, *host;
	struct relay_smtpc_cbs cbs;
	void *arg;

	enum smtpc_state state;
	char peer[INET6_ADDRSTRLEN];
	char *in;
	size_t inlen, incap;
	char *out;             /* dot-stuffing buffer, SMTPC_CHUNK + 8 */

	/* The reply being read. */
	int code;
	char reply[SMTPC_REPLY_MAX];
	size_t replylen, nlines;

	/* What the server offered in EHLO. */
	bool pipelining, starttls, eightbitmime, smtputf8, size, chunking;

	/* The transaction under way. */
	struct relay_smtpc_txn t;
	enum smtpc_phase phase;
	bool bdat;             /* the message goes in one BDAT LAST */
	size_t rcpt_next;      /* next RCPT whose reply is awaited */
	size_t rcpt_sent;      /* RCPTs sent (without pipelining) */
	size_t accepted;
	int mail_code, data_code;
	char *mail_reply, *data_reply;
	int *codes;
	char **replies;
	size_t cap;
};

static void smtpc_fail_setup(struct relay_smtpc *c, enum relay_smtpc_fail f,
			     const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void smtpc_txn_end(struct relay_smtpc *c, bool lost, const char *why);
static void smtpc_shutdown(struct relay_smtpc *c);

/* smtpc_maybe_free - free once the socket and the timer are closed. */
static void smtpc_maybe_free(struct relay_smtpc *c)
{
	size_t i;

	if (--c->closes > 0)
		return;
	if (c->cbs.closed)
		c->cbs.closed(c->arg);
	relay_tls_free(c->tls);
	for (i = 0; i < c->cap; i++)
		free(c->replies[i]);
	free(c->replies);
	free(c->codes);
	free(c->mail_reply);
	free(c->data_reply);
	free(c->in);
	free(c->out);
	free(c->helo);
	free(c->host);
	relay_tls_ctx_free(c->o.tls);
	free(c);
}

static void smtpc_timer_closed_cb(uv_handle_t *h)
{
	smtpc_maybe_free(h->data);
}

static void smtpc_sock_closed_cb(void *arg)
{
	struct relay_smtpc *c = arg;

	c->sock = NULL;
	smtpc_maybe_free(c);
}

/* smtpc_shutdown - close the socket (if any) and the timer; no more
 * callbacks but closed. */
static void smtpc_shutdown(struct relay_smtpc *c)
{
	bool connecting = c->state == SMTPC_CONNECT;

	if (c->state == SMTPC_DEAD)
		return;
	c->state = SMTPC_DEAD;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, smtpc_timer_closed_cb);
	if (c->sock) {
		relay_sock_read_stop(c->sock);
		relay_sock_close(c->sock);
	} else if (!connecting) {
		smtpc_maybe_free(c);
	}
	/* While connecting, smtpc_connected_cb drops the last part. */
}

/* smtpc_write - send plaintext, through TLS when it is on. */
static void smtpc_write(struct relay_smtpc *c, const char *buf, size_t len)
{
	const char *p;
	size_t n;

	if (c->sock == NULL || len == 0)
		return;
	if (c->tls == NULL || !relay_tls_ready(c->tls)) {
		relay_sock_write(c->sock, buf, len);
		return;
	}
	if (relay_tls_write(c->tls, buf, len) < 0)
		return;
	while ((n = relay_tls_output(c->tls, &p)) > 0) {
		relay_sock_write(c->sock, p, n);
		relay_tls_consume(c->tls, n);
	}
}

/* smtpc_cmd - format and send one command line. */
static void smtpc_cmd(struct relay_smtpc *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void smtpc_cmd(struct relay_smtpc *c, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf) - 2)
		n = sizeof(buf) - 3;
	buf[n++] = '\r';
	buf[n++] = '\n';
	smtpc_write(c, buf, (size_t)n);
}

/* smtpc_wait - (re)arm the timer for the reply now awaited. */
static void smtpc_timeout_cb(uv_timer_t *h);
static void smtpc_wait(struct relay_smtpc *c, int64_t ms)
{
	uv_timer_start(&c->timer, smtpc_timeout_cb, (uint64_t)ms, 0);
}

/* smtpc_fail_setup - the session could not be made ready. */
static void smtpc_fail_setup(struct relay_smtpc *c, enum relay_smtpc_fail f,
			     const char *fmt, ...)
{
	char why[SMTPC_REPLY_MAX + 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	smtpc_shutdown(c);
	c->cbs.ready(c->arg, f, why);
}

/* smtpc_ready - the session may carry transactions. */
static void smtpc_ready(struct relay_smtpc *c)
{
	c->state = SMTPC_IDLE;
	uv_timer_stop(&c->timer);
	c->cbs.ready(c->arg, RELAY_SMTPC_OK, NULL);
}

/* smtpc_ehlo - say EHLO (again after TLS: RFC 3207 4.2 forgets all). */
static void smtpc_ehlo(struct relay_smtpc *c)
{
	c->pipelining = c->starttls = c->eightbitmime = false;
	c->smtputf8 = c->size = c->chunking = false;
	c->state = SMTPC_EHLO;
	smtpc_cmd(c, "EHLO %s", c->helo);
	smtpc_wait(c, c->o.helo_timeout);
}

/* smtpc_ehlo_line - note one extension keyword of the EHLO reply. */
static void smtpc_ehlo_line(struct relay_smtpc *c, const char *kw, size_t n)
{
	size_t k = 0;

	while (k < n && kw[k] != ' ')
		k++;
#define SMTPC_KW(s) (k == sizeof(s) - 1 && strncasecmp(kw, s, k) == 0)
	if (SMTPC_KW("PIPELINING"))
		c->pipelining = true;
	else if (SMTPC_KW("STARTTLS"))
		c->starttls = true;
	else if (SMTPC_KW("8BITMIME"))
		c->eightbitmime = true;
	else if (SMTPC_KW("SMTPUTF8"))
		c->smtputf8 = true;
	else if (SMTPC_KW("SIZE"))
		c->size = true;
	else if (SMTPC_KW("CHUNKING"))
		c->chunking = true;
#undef SMTPC_KW
}

/* smtpc_start_tls - the server said 220 to STARTTLS. */
static void smtpc_start_tls(struct relay_smtpc *c)
{
	const char *p;
	size_t n;
	int r;

	/* Anything sent with or after the 220 was sent in plaintext before
	 * the handshake: it must not be read as if it came over TLS. */
	c->inlen = 0;

	c->tls = relay_tls_client_new(
		c->o.tls, c->host,
		c->o.tls_level == CONF_TLS_VERIFY ? c->host : NULL,
		c->o.resume);
	if (c->tls == NULL) {
		smtpc_fail_setup(c, RELAY_SMTPC_LOST, "out of memory");
		return;
	}
	c->state = SMTPC_HANDSHAKE;
	r = relay_tls_handshake(c->tls);
	while ((n = relay_tls_output(c->tls, &p)) > 0) {
		relay_sock_write(c->sock, p, n);
		relay_tls_consume(c->tls, n);
	}
	if (r < 0)
		smtpc_fail_setup(c,
				 c->o.tls_level == CONF_TLS_MAY
					 ? RELAY_SMTPC_TLS_FAILED
					 : RELAY_SMTPC_TLS_NEEDED,
				 "TLS handshake with %s failed: %s", c->host,
				 relay_tls_error());
	else
		smtpc_wait(c, c->o.helo_timeout);
}

/* smtpc_after_ehlo - STARTTLS when wanted and offered, else ready. */
static void smtpc_after_ehlo(struct relay_smtpc *c)
{
	bool have_tls = c->tls != NULL && relay_tls_ready(c->tls);

	if (!have_tls && c->o.tls_level != CONF_TLS_NONE && c->o.tls &&
	    c->starttls) {
		c->state = SMTPC_STARTTLS;
		smtpc_cmd(c, "STARTTLS");
		smtpc_wait(c, c->o.helo_timeout);
		return;
	}
	if (!have_tls && c->o.tls_level >= CONF_TLS_ENCRYPT) {
		smtpc_fail_setup(c, RELAY_SMTPC_TLS_NEEDED,
				 "TLS is required, but %s offers no STARTTLS",
				 c->host);
		return;
	}
	smtpc_ready(c);
}

/* smtpc_setup_reply - a reply while the session is being set up. */
static void smtpc_setup_reply(struct relay_smtpc *c)
{
	const char *why;

	switch (c->state) {
	case SMTPC_BANNER:
		if (c->code != 220) {
			smtpc_fail_setup(c, RELAY_SMTPC_GREETING,
					 "host %s refused to talk to us: %s",
					 c->host, c->reply);
			return;
		}
		smtpc_ehlo(c);
		return;
	case SMTPC_EHLO:
		if (c->code / 100 == 2) {
			smtpc_after_ehlo(c);
			return;
		}
		c->state = SMTPC_HELO;
		smtpc_cmd(c, "HELO %s", c->helo);
		smtpc_wait(c, c->o.helo_timeout);
		return;
	case SMTPC_HELO:
		if (c->code / 100 != 2) {
			smtpc_fail_setup(c, RELAY_SMTPC_GREETING,
					 "host %s refused HELO: %s", c->host,
					 c->reply);
			return;
		}
		smtpc_after_ehlo(c);
		return;
	case SMTPC_STARTTLS:
		if (c->code == 220) {
			smtpc_start_tls(c);
			return;
		}
		if (c->o.tls_level >= CONF_TLS_ENCRYPT) {
			smtpc_fail_setup(c, RELAY_SMTPC_TLS_NEEDED,
					 "host %s refused STARTTLS: %s",
					 c->host, c->reply);
			return;
		}
		smtpc_ready(c);
		return;
	case SMTPC_HANDSHAKE:
		/* A reply before the handshake finished: nonsense. */
		why = "a reply in the middle of the TLS handshake";
		smtpc_fail_setup(c, RELAY_SMTPC_LOST, "%s from %s", why,
				 c->host);
		return;
	default:
		return;
	}
}

/* smtpc_dup_reply - "code text" of the current reply, malloc'd. */
static char *smtpc_dup_reply(struct relay_smtpc *c)
{
	return strdup(c->reply);
}

/* smtpc_send_data - the message, dot-stuffed, and the final dot. */
static void smtpc_send_data(struct relay_smtpc *c)
{
	const char *p = c->t.data, *end = p + c->t.len, *dot;
	size_t n = 0, k, m;
	char *buf = c->out;

	/* One buffer per connection, kept for its next messages. */
	if (buf == NULL && (buf = c->out = malloc(SMTPC_CHUNK + 8)) == NULL) {
		smtpc_txn_end(c, true, "out of memory");
		return;
	}

	/* RFC 5321 4.5.2: a line that starts with "." gets one more. The
	 * runs between such lines are copied whole, in chunks. */
	while (p < end) {
		if (*p == '.' && (p == c->t.data || p[-1] == '\n'))
			buf[n++] = '.';
		dot = memmem(p + 1, (size_t)(end - p - 1), "\n.", 2);
		k = dot ? (size_t)(dot + 1 - p) : (size_t)(end - p);
		while (k > 0) {
			m = SMTPC_CHUNK - n < k ? SMTPC_CHUNK - n : k;
			memcpy(buf + n, p, m);
			n += m;
			p += m;
			k -= m;
			if (n == SMTPC_CHUNK) {
				smtpc_write(c, buf, n);
				n = 0;
			}
		}
	}
	if (c->t.len > 0 && end[-1] != '\n') {
		buf[n++] = '\r';
		buf[n++] = '\n';
	}
	memcpy(buf + n, ".\r\n", 3);
	n += 3;
	smtpc_write(c, buf, n);
	c->phase = TX_DOT;
	smtpc_wait(c, c->o.data_done_timeout);
}

/*
 * smtpc_send_bdat - the message as one chunk (RFC 3030): BDAT with its
 * exact size and LAST, then the octets as stored, not dot-stuffed, with
 * the final CRLF the stored message might lack. Sent with the envelope;
 * the reply to BDAT plays the part of the reply to the final dot.
 */
static void smtpc_send_bdat(struct relay_smtpc *c)
{
	bool crlf = c->t.len > 0 && c->t.data[c->t.len - 1] != '\n';

	smtpc_cmd(c, "BDAT %zu LAST", c->t.len + (crlf ? 2 : 0));
	smtpc_write(c, c->t.data, c->t.len);
	if (crlf)
		smtpc_write(c, "\r\n", 2);
}

/* smtpc_send_rcpt - the next RCPT (without pipelining). */
static void smtpc_send_rcpt(struct relay_smtpc *c)
{
	smtpc_cmd(c, "RCPT TO:<%s>", c->t.rcpts[c->rcpt_sent++]);
	smtpc_wait(c, c->o.mail_timeout);
}

/* smtpc_txn_reply - a reply inside a transaction. */
static void smtpc_txn_reply(struct relay_smtpc *c)
{
	bool ok = c->code / 100 == 2;

	switch (c->phase) {
	case TX_MAIL:
		c->mail_code = c->code;
		c->mail_reply = smtpc_dup_reply(c);
		if (c->t.nrcpt == 0) {
			smtpc_txn_end(c, false, NULL);
			return;
		}
		c->phase = TX_RCPT;
		if (!c->pipelining) {
			if (!ok) {
				smtpc_txn_end(c, false, NULL);
				return;
			}
			smtpc_send_rcpt(c);
			return;
		}
		smtpc_wait(c, c->o.mail_timeout); /* the first RCPT's reply */
		return;
	case TX_RCPT:
		c->codes[c->rcpt_next] = c->code;
		c->replies[c->rcpt_next] = smtpc_dup_reply(c);
		if (ok && c->mail_code / 100 == 2)
			c->accepted++;
		if (++c->rcpt_next < c->t.nrcpt) {
			if (!c->pipelining)
				smtpc_send_rcpt(c);
			else
				smtpc_wait(c, c->o.mail_timeout);
			return;
		}
		if (c->bdat) {
			c->phase = TX_DOT;
			smtpc_wait(c, c->o.data_done_timeout);
			return;
		}
		if (c->pipelining) {
			c->phase = TX_DATA;
			smtpc_wait(c, c->o.mail_timeout);
			return;
		}
		if (c->accepted == 0) {
			/* Nobody to send to: end the transaction. */
			c->phase = TX_RSET;
			smtpc_cmd(c, "RSET");
			smtpc_wait(c, c->o.mail_timeout);
			return;
		}
		c->phase = TX_DATA;
		smtpc_cmd(c, "DATA");
		smtpc_wait(c, c->o.mail_timeout);
		return;
	case TX_DATA:
		c->data_code = c->code;
		c->data_reply = smtpc_dup_reply(c);
		if (c->code != 354 && c->mail_code / 100 == 2) {
			/* MAIL was taken but no message followed: end the
			 * transaction before the connection is used again,
			 * or the next MAIL would be a nested one. */
			c->phase = TX_RSET;
			smtpc_cmd(c, "RSET");
			smtpc_wait(c, c->o.mail_timeout);
			return;
		}
		if (c->code != 354) {
			smtpc_txn_end(c, false, NULL);
			return;
		}
		if (c->accepted == 0 || c->mail_code / 100 != 2) {
			/* RFC 2920 3.1: the server said 354 anyway; end
			 * the empty message at once. */
			smtpc_cmd(c, ".");
			c->phase = TX_DOT;
			smtpc_wait(c, c->o.data_done_timeout);
			return;
		}
		smtpc_send_data(c);
		return;
	case TX_DOT:
		if (c->bdat) {
			c->data_code = c->code;
			c->data_reply = smtpc_dup_reply(c);

			/* As after a refused DATA: no transaction left open. */
			if (!ok && c->mail_code / 100 == 2) {
				c->phase = TX_RSET;
				smtpc_cmd(c, "RSET");
				smtpc_wait(c, c->o.mail_timeout);
				return;
			}
			smtpc_txn_end(c, false, NULL);
			return;
		}
		if (c->data_code == 354) {
			c->data_code = c->code;
			free(c->data_reply);
			c->data_reply = smtpc_dup_reply(c);
		}
		smtpc_txn_end(c, false, NULL);
		return;
	case TX_RSET:
	case TX_LOCAL:
		smtpc_txn_end(c, false, NULL);
		return;
	}
}

/* smtpc_reply - a complete reply has been read. */
static void smtpc_reply(struct relay_smtpc *c)
{
	uv_timer_stop(&c->timer);

	/* A 421 closes the session whatever it answers (RFC 5321 3.8). */
	if (c->code == 421 && c->state == SMTPC_TXN) {
		smtpc_txn_end(c, true, c->reply);
		return;
	}
	switch (c->state) {
	case SMTPC_TXN:
		smtpc_txn_reply(c);
		break;
	case SMTPC_QUIT:
		smtpc_shutdown(c);
		break;
	case SMTPC_IDLE:
		/* Unasked: a 421 before the server closes, say. The
		 * connection is no use any more. */
		relay_debug(NULL, "smtpc-unexpected host=%s reply=\"%s\"",
			    c->host, c->reply);
		smtpc_shutdown(c);
		if (c->cbs.lost)
			c->cbs.lost(c->arg);
		break;
	default:
		smtpc_setup_reply(c);
		break;
	}
}

/* smtpc_line - one reply line "ddd-text" or "ddd text". */
static void smtpc_line(struct relay_smtpc *c, const char *l, size_t n)
{
	int code;
	bool last;
	size_t k;

	if (n < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' ||
	    l[2] < '0' || l[2] > '9') {
		smtpc_fail_setup(c, RELAY_SMTPC_LOST,
				 "malformed reply from %s", c->host);
		return;
	}
	code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	last = n == 3 || l[3] == ' ';
	if (c->replylen == 0) {
		c->code = code;
		k = n < sizeof(c->reply) - 1 ? n : sizeof(c->reply) - 1;
		memcpy(c->reply, l, k);
		c->replylen = k;
	} else if (n > 4 && c->replylen + 2 < sizeof(c->reply)) {
		/* Later lines join the first: "550-a" "550 b" -> "550 a b". */
		k = n - 4;
		if (k > sizeof(c->reply) - 2 - c->replylen)
			k = sizeof(c->reply) - 2 - c->replylen;
		c->reply[c->replylen++] = ' ';
		memcpy(c->reply + c->replylen, l + 4, k);
		c->replylen += k;
	}
	c->reply[c->replylen] = '\0';
	if (c->reply[3] == '-')
		c->reply[3] = ' ';
	/* EHLO: every line after the greeting names an extension. */
	if (c->state == SMTPC_EHLO && c->nlines > 0 && n > 4 && code == 250)
		smtpc_ehlo_line(c, l + 4, n - 4);
	c->nlines++;
	if (!last)
		return;
	c->replylen = 0;
	c->nlines = 0;
	smtpc_reply(c);
}

/* smtpc_feed - plaintext from the server: split lines, take replies. */
static void smtpc_feed(struct relay_smtpc *c, const char *buf, size_t len)
{
	size_t off = 0;
	char *nl;

	if (c->inlen + len > c->incap) {
		size_t cap = c->incap ? c->incap : 1024;
		char *p;

		while (cap < c->inlen + len)
			cap *= 2;
		if (cap > 4 * SMTPC_LINE_MAX + len)
			cap = 4 * SMTPC_LINE_MAX + len;
		p = realloc(c->in, cap);
		if (p == NULL) {
			smtpc_fail_setup(c, RELAY_SMTPC_LOST, "out of memory");
			return;
		}
		c->in = p;
		c->incap = cap;
	}
	memcpy(c->in + c->inlen, buf, len);
	c->inlen += len;

	while (c->state != SMTPC_DEAD && c->state != SMTPC_HANDSHAKE &&
	       (nl = memchr(c->in + off, '\n', c->inlen - off)) != NULL) {
		size_t n = (size_t)(nl - (c->in + off));
		const char *l = c->in + off;

		off += n + 1;
		if (n > 0 && l[n - 1] == '\r')
			n--;
		smtpc_line(c, l, n);
		if (c->inlen == 0) /* STARTTLS dropped the rest */
			return;
	}
	if (c->state == SMTPC_DEAD)
		return;
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	if (c->inlen > SMTPC_LINE_MAX)
		smtpc_fail_setup(c, RELAY_SMTPC_LOST,
				 "reply line too long from %s", c->host);
}

/* smtpc_tls_input - ciphertext: handshake, then plaintext replies. */
static void smtpc_tls_input(struct relay_smtpc *c, const char *buf,
			    size_t len)
{
	char plain[16384];
	const char *p, *why;
	size_t n;
	int r = 0;

	if (relay_tls_input(c->tls, buf, len) < 0) {
		smtpc_fail_setup(c, RELAY_SMTPC_LOST, "out of memory");
		return;
	}
	if (c->state == SMTPC_HANDSHAKE) {
		r = relay_tls_handshake(c->tls);
		while ((n = relay_tls_output(c->tls, &p)) > 0) {
			relay_sock_write(c->sock, p, n);
			relay_tls_consume(c->tls, n);
		}
		if (r < 0) {
			smtpc_fail_setup(c,
					 c->o.tls_level == CONF_TLS_MAY
						 ? RELAY_SMTPC_TLS_FAILED
						 : RELAY_SMTPC_TLS_NEEDED,
					 "TLS handshake with %s failed: %s",
					 c->host, relay_tls_error());
			return;
		}
		if (r == 0)
			return;
		if (c->o.tls_level == CONF_TLS_VERIFY &&
		    relay_tls_verified(c->tls, &why) < 0) {
			smtpc_fail_setup(c, RELAY_SMTPC_TLS_NEEDED,
					 "certificate of %s not verified: %s",
					 c->host, why);
			return;
		}
		smtpc_ehlo(c);
	}
	while (c->state != SMTPC_DEAD &&
	       (r = relay_tls_read(c->tls, plain, sizeof(plain))) > 0)
		smtpc_feed(c, plain, (size_t)r);
	if (r < 0 && c->state != SMTPC_DEAD) {
		if (c->state == SMTPC_TXN) {
			smtpc_txn_end(c, true, "TLS session failed");
		} else if (c->state == SMTPC_IDLE || c->state == SMTPC_QUIT) {
			bool idle = c->state == SMTPC_IDLE;

			smtpc_shutdown(c);
			if (idle && c->cbs.lost)
				c->cbs.lost(c->arg);
		} else {
			smtpc_fail_setup(c, RELAY_SMTPC_LOST,
					 "TLS session with %s failed",
					 c->host);
		}
	}
}

static void smtpc_read_cb(void *arg, const char *buf, size_t len)
{
	struct relay_smtpc *c = arg;

	if (c->state == SMTPC_DEAD)
		return;
	if (c->tls)
		smtpc_tls_input(c, buf, len);
	else
		smtpc_feed(c, buf, len);
}

/* smtpc_gone - the connection broke or timed out (why says how). */
static void smtpc_gone(struct relay_smtpc *c, const char *why)
{
	switch (c->state) {
	case SMTPC_DEAD:
		return;
	case SMTPC_TXN:
		smtpc_txn_end(c, true, why);
		return;
	case SMTPC_IDLE:
	case SMTPC_QUIT: {
		bool idle = c->state == SMTPC_IDLE;

		smtpc_shutdown(c);
		if (idle && c->cbs.lost)
			c->cbs.lost(c->arg);
		return;
	}
	case SMTPC_HANDSHAKE:
		smtpc_fail_setup(c,
				 c->o.tls_level == CONF_TLS_MAY
					 ? RELAY_SMTPC_TLS_FAILED
					 : RELAY_SMTPC_TLS_NEEDED,
				 "%s during the TLS handshake with %s", why,
				 c->host);
		return;
	default:
		smtpc_fail_setup(c, RELAY_SMTPC_LOST, "%s with %s", why,
				 c->host);
		return;
	}
}

static void smtpc_eof_cb(void *arg, int err)
{
	struct relay_smtpc *c = arg;

	smtpc_gone(c, err ? "connection failed" : "lost connection");
}

static void smtpc_timeout_cb(uv_timer_t *h)
{
	struct relay_smtpc *c = h->data;

	smtpc_gone(c, "timed out");
}

static void smtpc_connected_cb(void *arg, struct relay_sock *s, int status)
{
	static const struct relay_sock_cbs cbs = {
		.read = smtpc_read_cb,
		.eof = smtpc_eof_cb,
		.closed = smtpc_sock_closed_cb,
	};
	struct relay_smtpc *c = arg;

	if (c->state == SMTPC_DEAD) {
		/* Closed while connecting: nobody wants this socket. */
		if (s) {
			c->sock = s;
			relay_sock_set_cbs(s, &cbs, c);
			relay_sock_close(s);
		} else {
			smtpc_maybe_free(c);
		}
		return;
	}
	uv_timer_stop(&c->timer);
	if (status < 0) {
		c->state = SMTPC_BANNER; /* no socket to wait for */
		smtpc_fail_setup(c, RELAY_SMTPC_CONNECT,
				 "connect to %s[%s] failed: %s", c->host,
				 c->peer, strerror(-status));
		return;
	}
	c->sock = s;
	relay_sock_set_cbs(s, &cbs, c);
	c->state = SMTPC_BANNER;
	relay_sock_read_start(s);
	smtpc_wait(c, c->o.helo_timeout);
}

int relay_smtpc_open(struct relay_smtpc **out, struct relay_io *io,
		     uv_loop_t *loop, const struct sockaddr *addr,
		     const struct relay_smtpc_opts *opts,
		     const struct relay_smtpc_cbs *cbs, void *arg)
{
	struct relay_smtpc *c = calloc(1, sizeof(*c));
	const void *a;
	int r;

	if (c == NULL)
		return -ENOMEM;
	c->io = io;
	c->loop = loop;
	c->o = *opts;
	c->o.tls = relay_tls_ctx_ref(opts->tls);
	c->cbs = *cbs;
	c->arg = arg;
	c->helo = strdup(opts->helo ? opts->helo : "localhost");
	c->host = strdup(opts->host ? opts->host : "");
	if (c->helo == NULL || c->host == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	a = addr->sa_family == AF_INET6
		    ? (const void *)&((const struct sockaddr_in6 *)addr)
			      ->sin6_addr
		    : (const void *)&((const struct sockaddr_in *)addr)
			      ->sin_addr;
	inet_ntop(addr->sa_family, a, c->peer, sizeof(c->peer));

	r = relay_io_connect(io, addr, opts->connect_timeout,
			     smtpc_connected_cb, c);
	if (r < 0)
		goto fail;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->closes = 2; /* the timer, and the connect or its socket */
	c->state = SMTPC_CONNECT;
	*out = c;
	return 0;

fail:
	free(c->helo);
	free(c->host);
	relay_tls_ctx_free(c->o.tls);
	free(c);
	return r;
}

/* smtpc_grow - room for n recipients' outcomes. */
static int smtpc_grow(struct relay_smtpc *c, size_t n)
{
	int *codes;
	char **replies;

	if (n <= c->cap)
		return 0;
	codes = realloc(c->codes, n * sizeof(*codes));
	if (codes == NULL)
		return -ENOMEM;
	c->codes = codes;
	replies = realloc(c->replies, n * sizeof(*replies));
	if (replies == NULL)
		return -ENOMEM;
	memset(replies + c->cap, 0, (n - c->cap) * sizeof(*replies));
	c->replies = replies;
	c->cap = n;
	return 0;
}

static void smtpc_local_cb(uv_timer_t *h)
{
	struct relay_smtpc *c = h->data;

	smtpc_txn_end(c, false, NULL);
}

int relay_smtpc_send(struct relay_smtpc *c, const struct relay_smtpc_txn *t)
{
	char param[64] = "";
	size_t i, n = 0;

	if (c->state != SMTPC_IDLE)
		return -EBUSY;
	if (smtpc_grow(c, t->nrcpt) < 0)
		return -ENOMEM;
	for (i = 0; i < t->nrcpt; i++) {
		c->codes[i] = 0;
		free(c->replies[i]);
		c->replies[i] = NULL;
	}
	free(c->mail_reply);
	free(c->data_reply);
	c->mail_reply = c->data_reply = NULL;
	c->mail_code = c->data_code = 0;
	c->t = *t;
	c->rcpt_next = c->rcpt_sent = c->accepted = 0;
	c->bdat = false;
	c->state = SMTPC_TXN;

	/* RFC 6531 3.4: no SMTPUTF8 at the server, no delivery. */
	if (t->smtputf8 && !c->smtputf8) {
		c->phase = TX_LOCAL;
		c->mail_code = 553;
		c->mail_reply = strdup("553 5.6.7 the server does not offer "
				       "SMTPUTF8, which the message needs");
		uv_timer_start(&c->timer, smtpc_local_cb, 0, 0);
		return 0;
	}

	if (c->size)
		n += (size_t)snprintf(param + n, sizeof(param) - n,
				      " SIZE=%zu", t->len);
	if (t->eightbit && c->eightbitmime)
		n += (size_t)snprintf(param + n, sizeof(param) - n,
				      " BODY=8BITMIME");
	if (t->smtputf8)
		snprintf(param + n, sizeof(param) - n, " SMTPUTF8");
	c->phase = TX_MAIL;
	c->bdat = c->pipelining && c->chunking && t->nrcpt > 0;
	smtpc_cmd(c, "MAIL FROM:<%s>%s", t->sender, param);
	if (c->pipelining) {
		/* RFC 2920: the whole envelope and DATA in one write; with
		 * CHUNKING, the message too (RFC 3030 section 4.2). */
		for (i = 0; i < t->nrcpt; i++)
			smtpc_cmd(c, "RCPT TO:<%s>", t->rcpts[i]);
		if (c->bdat)
			smtpc_send_bdat(c);
		else if (t->nrcpt > 0)
			smtpc_cmd(c, "DATA");
	}
	smtpc_wait(c, c->o.mail_timeout);
	return 0;
}

/* smtpc_txn_end - give every recipient its outcome; lost says the
 * connection is gone (why: our reason, for the undecided ones). */
static void smtpc_txn_end(struct relay_smtpc *c, bool lost, const char *why)
{
	struct relay_smtpc_result r;
	char own[SMTPC_REPLY_MAX];
	size_t i;

	uv_timer_stop(&c->timer);
	if (lost) {
		if (why && why[0] >= '2' && why[0] <= '5')
			snprintf(own, sizeof(own), "%s", why);
		else
			snprintf(own, sizeof(own),
				 "451 4.4.2 %s with %s[%s] during the "
				 "transaction",
				 why ? why : "lost connection", c->host,
				 c->peer);
	}
	for (i = 0; i < c->t.nrcpt; i++) {
		const char *rep = NULL;
		int code = 0;

		if (c->mail_code && c->mail_code / 100 != 2) {
			code = c->mail_code;
			rep = c->mail_reply;
		} else if (c->codes[i] && c->codes[i] / 100 != 2) {
			code = c->codes[i];
			rep = c->replies[i];
		} else if (c->codes[i] && c->data_code &&
			   c->data_code != 354) {
			code = c->data_code;
			rep = c->data_reply;
		}
		if (code == 0 && lost) {
			code = atoi(own);
			rep = own;
		}
		if (code == 0) {
			code = 451;
			rep = "451 4.3.0 no reply for this recipient";
		}
		if (rep != c->replies[i]) {
			free(c->replies[i]);
			c->replies[i] = strdup(rep ? rep : "");
		}
		c->codes[i] = code;
	}
	r.code = c->codes;
	r.reply = (const char *const *)c->replies;
	r.lost = lost;
	if (lost)
		smtpc_shutdown(c);
	else
		c->state = SMTPC_IDLE;
	c->cbs.done(c->arg, &r);
}

void relay_smtpc_close(struct relay_smtpc *c)
{
	if (c->state == SMTPC_DEAD)
		return;
	if (c->state == SMTPC_IDLE && c->sock) {
		c->state = SMTPC_QUIT;
		smtpc_cmd(c, "QUIT");
		smtpc_wait(c, 5000);
		return;
	}
	smtpc_shutdown(c);
}

void relay_smtpc_tls(const struct relay_smtpc *c, const char **version,
		     const char **cipher)
{
	int bits;

	*version = *cipher = NULL;
	if (c->tls && relay_tls_ready(c->tls))
		relay_tls_params(c->tls, version, cipher, &bits);
}

struct relay_tls_session *relay_smtpc_session(struct relay_smtpc *c)
{
	if (c->tls == NULL || !relay_tls_ready(c->tls))
		return NULL;
	return relay_tls_session_get(c->tls);
}

const char *relay_smtpc_peer(const struct relay_smtpc *c)
{
	return c->peer;
}
