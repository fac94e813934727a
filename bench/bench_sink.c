/*
 * bench_sink - `waxseal-bench sink`, the destination emulator; see
 * bench_sink.h for what it promises.
 *
 * A connection's life: accepted -> greeted (220, or 421 and closed) ->
 * EHLO -> transactions -> QUIT, with STARTTLS sending it back to the
 * state before EHLO (RFC 3207 4.2). Input is read into the connection's
 * own buffer and parsed in place: commands line by line, DATA as a byte
 * stream through a small state machine that removes the leading dot of
 * stuffed lines and finds CRLF.CRLF whatever the read boundaries, and a
 * BDAT chunk (CHUNKING, RFC 3030) as exactly the octets it announced.
 *
 * Output: replies are appended to the connection's wire buffer (through
 * the TLS object first when STARTTLS is on); when no write is in flight
 * the wire buffer and the in-flight buffer swap places and the in-flight
 * one goes to uv_write. Both buffers live as long as the connection, so
 * the steady state allocates nothing. Reading stops while the client does
 * not take its replies (more than BENCH_SINK_OUT_HIGH bytes queued),
 * while a latency timer holds the reply to a final dot (the rest of the
 * pipelined input waits in the buffer, so replies stay in order), and
 * after QUIT.
 *
 * TLS runs over memory BIOs: ciphertext read from the socket goes into
 * the SSL object's read BIO, plaintext comes out of SSL_read into the
 * same input buffer the plain path uses, and what the SSL object writes
 * into its write BIO is appended to the wire buffer.
 *
 * XXX: a 421 greeting, a QUIT or the end of a run closes the connection
 * without a TLS close_notify; clients of a benchmark do not mind, a
 * strict TLS client would log a truncation.
 *
 * XXX: MAIL and RCPT parameters (SIZE=, BODY=, SMTPUTF8) are not looked
 * at: a message over the announced SIZE is refused only at its end, and
 * an address is never checked, so a client bug there goes unnoticed.
 *
 * XXX: a line longer than the input buffer closes the connection after a
 * 500 reply instead of being skipped, which is harsher than a real MTA.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "bench/bench_sink.h"
#include "sign/sign_hdr.h"
#include "sign/sign_key.h"
#include "sign/sign_verify.h"

#define BENCH_SINK_INBUF 16384
#define BENCH_SINK_CIPHERBUF 65536
/* Announced in SIZE; larger messages get 552 at their end. */
#define BENCH_SINK_SIZE_MAX (50u * 1024 * 1024)
#define BENCH_SINK_OUT_HIGH (256u * 1024)
#define BENCH_SINK_MAX_DURATION 3600.0
#define BENCH_SINK_DEFAULT_DURATION 600.0
#define BENCH_SINK_MAX_LISTEN 4096
#define BENCH_SINK_MAX_KEYS 256
#define BENCH_SINK_MAX_LATENCY_MS 600000u
#define BENCH_SINK_MAX_RCPT 100000u
#define BENCH_SINK_KEYFILE_MAX 65536
/* How long replies already queued may still go out after the stop. */
#define BENCH_SINK_GRACE_MS 1000
#define BENCH_SINK_IDLE_TICK_MS 100
#define BENCH_SINK_BACKLOG 1024
#define BENCH_SINK_HOSTNAME "sink.test"

const char bench_sink_summary[] =
    "sink      emulate many destination SMTP servers and measure what "
    "they receive";

/* Connection states; BS_ stands for bench_sink. */
enum bench_sink_state {
	BS_GREETED, /* before EHLO/HELO */
	BS_READY,   /* after EHLO, no transaction or one in progress */
	BS_DATA,    /* reading a message */
	BS_BDAT,    /* reading a BDAT chunk */
};

/* Where the DATA reader stands in the byte stream. */
enum bench_sink_dstate {
	BS_D_BOL,   /* at the start of a line */
	BS_D_MID,   /* inside a line */
	BS_D_CR,    /* after a CR inside a line */
	BS_D_DOT,   /* after a dot at the start of a line */
	BS_D_DOTCR, /* after "." CR at the start of a line */
	BS_D_END,   /* CRLF.CRLF seen */
};

struct bench_sink;

/* One simulated destination: a listener and what it has seen. */
struct bench_sink_dest {
	char listen[80]; /* ADDR:PORT as given */
	struct sockaddr_storage addr;
	unsigned latency_ms;
	double tempfail, permfail, reject421, drop; /* fractions, 0..1 */
	uv_tcp_t tcp;
	int bound;
	struct bench_sink *sk;

	uint64_t rcpt_seq, conn_seq, data_seq; /* positions for shares */
	uint64_t messages, recipients, connections, tls_sessions;
	uint64_t dkim_pass, dkim_fail, dropped, rejected, tempfails;
	uint64_t permfails;
	unsigned open, max_concurrent;
};

/* A byte buffer that only grows, kept for a connection's life. */
struct bench_sink_buf {
	char *p;
	size_t len, cap;
};

struct bench_sink_conn {
	uv_tcp_t tcp;
	uv_timer_t timer; /* latency; initialised when the dest has one */
	uv_write_t wreq;
	struct bench_sink_dest *d;
	struct bench_sink_conn *prev, *next;
	int handles; /* libuv handles still to be closed */

	enum bench_sink_state state;
	int mail;	  /* MAIL accepted, transaction open */
	unsigned rcpt_ok; /* recipients accepted in it */
	enum bench_sink_dstate dstate;
	uint64_t msize;
	uint64_t bdat_left; /* octets of the chunk still to read */
	int bdat_last;	    /* it ends the message */
	int bdat_chunks;    /* of the message so far */
	const char *bdat_err; /* the chunk is refused with this reply */
	int drop_this, verify_this;

	int paused;  /* a latency timer holds the final dot's reply */
	int quit;    /* close once the replies are out */
	int discard; /* drop the rest of the input (STARTTLS) */
	int reading, closing, wbusy;

	SSL *tls; /* NULL before STARTTLS; owns its two memory BIOs */
	int tls_ready;

	/* wire: bytes for the socket; inflight: owned by libuv if wbusy. */
	struct bench_sink_buf wire, inflight, rep, copy;
	size_t ilen;
	char in[BENCH_SINK_INBUF];
};

/* A verification key: the TXT record text for DOMAIN:SELECTOR. */
struct bench_sink_key {
	char d[256], s[128];
	char *txt;
};

struct bench_sink_opts {
	const char *listen[BENCH_SINK_MAX_LISTEN];
	size_t nlisten;
	const char *keys[BENCH_SINK_MAX_KEYS];
	size_t nkeys;
	int tls, json, allow_remote;
	long verify_every; /* -1: not given */
	uint64_t messages; /* 0: no limit */
	double duration, idle_exit;
	const char *report_file, *ready_file;
};

struct bench_sink {
	struct bench_sink_opts o;
	uv_loop_t *loop;
	struct bench_sink_dest *dests;
	size_t ndest;
	struct bench_sink_key *keys;
	size_t nkeys;
	unsigned long verify_every;
	SSL_CTX *tls_ctx;
	struct bench_sink_conn *conns;

	uv_timer_t deadline, idle, grace;
	uv_signal_t sigterm, sigint;
	int stopping;
	const char *stop_reason;

	uint64_t t0, t_first, t_last, t_stop;
	uint64_t messages, recipients, bytes, connections, dropped;
	uint64_t replies[6];
	uint64_t data_seq;
	uint64_t verified, dkim_pass, dkim_fail, dkim_none;

	char cipher[BENCH_SINK_CIPHERBUF]; /* one read at a time */
};

static void bench_sink_flush(struct bench_sink_conn *c);
static void bench_sink_pump(struct bench_sink_conn *c);
static void bench_sink_stop(struct bench_sink *sk, const char *reason);

/* bench_sink_usage - print the subcommand's help. */
static void bench_sink_usage(FILE *f)
{
	fprintf(f,
		"usage: waxseal-bench sink --listen ADDR:PORT[,key=value...] "
		"[options]\n"
		"\n"
		"Stand in for many destination mail servers: accept SMTP on "
		"every\n"
		"--listen address, measure what arrives, and report at the "
		"end.\n"
		"\n"
		"  --listen ADDR:PORT[,key=value...]  one destination "
		"(repeatable);\n"
		"                         127.0.0.10:2526 or [::1]:2600; "
		"keys:\n"
		"      latency=MS         delay before the reply to the "
		"final dot\n"
		"      tempfail=PCT       share of RCPT answered 451 4.3.0\n"
		"      permfail=PCT       share of RCPT answered 550 5.1.1\n"
		"      reject421=PCT      share of connections greeted 421 "
		"4.7.0\n"
		"      drop=PCT           share of messages cut off mid-DATA\n"
		"  --tls                  offer STARTTLS (self-signed, "
		"sink.test)\n"
		"  --dkim-key DOMAIN:SELECTOR:FILE  key to verify "
		"DKIM-Signatures with\n"
		"                         (PEM public key or genkey .txt "
		"record; repeatable)\n"
		"  --verify-every N       verify every Nth message (default 1 "
		"with keys); 0: none\n"
		"  --messages N           exit after N messages in all\n"
		"  --duration SECONDS     exit after this long (default 600, "
		"at most 3600)\n"
		"  --idle-exit SECONDS    exit when nothing arrived for this "
		"long after\n"
		"                         the first message\n"
		"  --report-file PATH     also write the JSON report there\n"
		"  --ready-file PATH      create PATH once every listener is "
		"bound\n"
		"  --json                 print the report as JSON\n"
		"  --allow-remote         allow addresses outside 127.0.0.0/8 "
		"and ::1\n"
		"  --help                 this text\n");
}

/* bench_sink_now - the loop's monotonic clock in nanoseconds. */
static uint64_t bench_sink_now(void)
{
	return uv_hrtime();
}

/*
 * bench_sink_share - whether event number k falls in a share frac (0..1)
 * that starts at lo: the fractional parts of k times the golden ratio are
 * spread evenly over [0, 1), so every window of events sees its share.
 */
static int bench_sink_share(uint64_t k, double lo, double frac)
{
	double u = (double)(k * 0x9E3779B97F4A7C15ull) / 18446744073709551616.0;

	return u >= lo && u < lo + frac;
}

/* bench_sink_buf_reserve - room for n more bytes in b. 0 or -ENOMEM. */
static int bench_sink_buf_reserve(struct bench_sink_buf *b, size_t n)
{
	size_t cap;
	char *np;

	if (b->len + n <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 1024;
	while (cap < b->len + n)
		cap *= 2;
	np = realloc(b->p, cap);
	if (np == NULL)
		return -ENOMEM;
	b->p = np;
	b->cap = cap;
	return 0;
}

/* bench_sink_buf_add - append n bytes to b. 0 or -ENOMEM. */
static int bench_sink_buf_add(struct bench_sink_buf *b, const void *p, size_t n)
{
	if (bench_sink_buf_reserve(b, n) < 0)
		return -ENOMEM;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

/* bench_sink_close_cb - free the connection once its handles are closed. */
static void bench_sink_close_cb(uv_handle_t *h)
{
	struct bench_sink_conn *c = h->data;

	if (--c->handles > 0)
		return;
	if (c->tls)
		SSL_free(c->tls);
	free(c->wire.p);
	free(c->inflight.p);
	free(c->rep.p);
	free(c->copy.p);
	free(c);
}

/* bench_sink_close - hang up now; what is still queued is dropped. */
static void bench_sink_close(struct bench_sink_conn *c)
{
	struct bench_sink *sk = c->d->sk;

	if (c->closing)
		return;
	c->closing = 1;
	c->d->open--;

	if (c->prev)
		c->prev->next = c->next;
	else
		sk->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;

	uv_close((uv_handle_t *)&c->tcp, bench_sink_close_cb);
	if (c->d->latency_ms)
		uv_close((uv_handle_t *)&c->timer, bench_sink_close_cb);
}

/* bench_sink_reply - queue a reply; counted when count is set. */
static void bench_sink_reply(struct bench_sink_conn *c, const char *s,
			     int count)
{
	struct bench_sink_buf *b = c->tls ? &c->rep : &c->wire;

	if (count && s[0] >= '2' && s[0] <= '5')
		c->d->sk->replies[s[0] - '0']++;
	if (bench_sink_buf_add(b, s, strlen(s)) < 0)
		bench_sink_close(c);
}

/* bench_sink_reset - forget the transaction (RSET, EHLO, end of DATA). */
static void bench_sink_reset(struct bench_sink_conn *c)
{
	c->mail = 0;
	c->rcpt_ok = 0;
	c->drop_this = 0;
	c->verify_this = 0;
	c->bdat_chunks = 0;
	if (c->state == BS_DATA || c->state == BS_BDAT)
		c->state = BS_READY;
}

/* bench_sink_cmd_ehlo - EHLO: the extensions (RFC 5321 4.1.1.1). */
static void bench_sink_cmd_ehlo(struct bench_sink_conn *c, const char *arg)
{
	char r[400];

	if (*arg == '\0') {
		bench_sink_reply(c, "501 5.5.4 EHLO needs a name\r\n", 0);
		return;
	}
	bench_sink_reset(c);
	c->state = BS_READY;
	snprintf(r, sizeof(r),
		 "250-" BENCH_SINK_HOSTNAME "\r\n"
		 "250-PIPELINING\r\n"
		 "250-SIZE %u\r\n"
		 "250-8BITMIME\r\n"
		 "250-SMTPUTF8\r\n"
		 "250-CHUNKING\r\n"
		 "%s"
		 "250 ENHANCEDSTATUSCODES\r\n",
		 BENCH_SINK_SIZE_MAX,
		 c->d->sk->tls_ctx && !c->tls ? "250-STARTTLS\r\n" : "");
	bench_sink_reply(c, r, 0);
}

/* bench_sink_cmd_helo - HELO: plain SMTP. */
static void bench_sink_cmd_helo(struct bench_sink_conn *c, const char *arg)
{
	if (*arg == '\0') {
		bench_sink_reply(c, "501 5.5.4 HELO needs a name\r\n", 0);
		return;
	}
	bench_sink_reset(c);
	c->state = BS_READY;
	bench_sink_reply(c, "250 " BENCH_SINK_HOSTNAME "\r\n", 0);
}

/* bench_sink_cmd_mail - MAIL FROM: opens a transaction. */
static void bench_sink_cmd_mail(struct bench_sink_conn *c, const char *arg)
{
	if (c->state != BS_READY) {
		bench_sink_reply(c, "503 5.5.1 send EHLO first\r\n", 0);
		return;
	}
	if (c->mail) {
		bench_sink_reply(c, "503 5.5.1 nested MAIL command\r\n", 0);
		return;
	}
	if (strncasecmp(arg, "FROM:", 5) != 0) {
		bench_sink_reply(c, "501 5.5.4 syntax: MAIL FROM:<address>\r\n",
				 0);
		return;
	}
	c->mail = 1;
	bench_sink_reply(c, "250 2.1.0 ok\r\n", 0);
}

/* bench_sink_cmd_rcpt - RCPT TO: accepted, deferred or refused. */
static void bench_sink_cmd_rcpt(struct bench_sink_conn *c, const char *arg)
{
	struct bench_sink_dest *d = c->d;
	uint64_t k;

	if (!c->mail) {
		bench_sink_reply(c, "503 5.5.1 need MAIL first\r\n", 0);
		return;
	}
	if (strncasecmp(arg, "TO:", 3) != 0) {
		bench_sink_reply(c, "501 5.5.4 syntax: RCPT TO:<address>\r\n",
				 0);
		return;
	}
	if (c->rcpt_ok >= BENCH_SINK_MAX_RCPT) {
		bench_sink_reply(c, "452 4.5.3 too many recipients\r\n", 1);
		return;
	}

	/* One position in the sequence decides between the two shares. */
	k = ++d->rcpt_seq;
	if (bench_sink_share(k, 0, d->tempfail)) {
		d->tempfails++;
		bench_sink_reply(c, "451 4.3.0 try again later\r\n", 1);
		return;
	}
	if (bench_sink_share(k, d->tempfail, d->permfail)) {
		d->permfails++;
		bench_sink_reply(c, "550 5.1.1 no such user\r\n", 1);
		return;
	}
	c->rcpt_ok++;
	bench_sink_reply(c, "250 2.1.5 ok\r\n", 1);
}

/* bench_sink_message_start - a message begins: shares, counters. */
static void bench_sink_message_start(struct bench_sink_conn *c)
{
	struct bench_sink *sk = c->d->sk;

	c->msize = 0;
	c->copy.len = 0;
	c->drop_this = bench_sink_share(++c->d->data_seq, 0, c->d->drop);
	sk->data_seq++;
	c->verify_this = sk->verify_every && !c->drop_this &&
			 sk->data_seq % sk->verify_every == 0;
}

static void bench_sink_body(struct bench_sink_conn *c, const char *p,
			    size_t n);
static void bench_sink_message_end(struct bench_sink_conn *c);
static size_t bench_sink_bdat(struct bench_sink_conn *c, const char *p,
			      size_t n);

/* bench_sink_cmd_data - DATA: start reading a message. */
static void bench_sink_cmd_data(struct bench_sink_conn *c, const char *arg)
{
	if (!c->mail) {
		bench_sink_reply(c, "503 5.5.1 need MAIL first\r\n", 0);
		return;
	}

	/* RFC 2920 3.1: with every RCPT refused, DATA fails too. */
	if (c->rcpt_ok == 0) {
		bench_sink_reply(c, "554 5.5.1 no valid recipients\r\n", 0);
		return;
	}

	bench_sink_message_start(c);
	c->state = BS_DATA;
	c->dstate = BS_D_BOL;
	bench_sink_reply(c, "354 3.0.0 end data with <CR><LF>.<CR><LF>\r\n", 0);
}

/*
 * bench_sink_cmd_bdat - BDAT SIZE [LAST] (RFC 3030 section 2): the next
 * SIZE octets are message content, read whatever they hold; the reply
 * comes after them. Refused chunks are read and dropped all the same.
 */
static void bench_sink_cmd_bdat(struct bench_sink_conn *c, const char *arg)
{
	unsigned long long n;
	char *end;

	errno = 0;
	n = strtoull(arg, &end, 10);
	if (end == arg || errno || (*end != '\0' && *end != ' ')) {
		/* Without the size the stream cannot be followed. */
		bench_sink_reply(c, "501 5.5.4 BDAT needs a size\r\n", 0);
		c->quit = 1;
		return;
	}
	while (*end == ' ')
		end++;
	c->bdat_last = strcasecmp(end, "LAST") == 0;
	if (*end != '\0' && !c->bdat_last) {
		bench_sink_reply(c, "501 5.5.4 BDAT SIZE [LAST]\r\n", 0);
		c->quit = 1;
		return;
	}

	c->bdat_err = !c->mail		 ? "503 5.5.1 need MAIL first\r\n"
		      : c->rcpt_ok == 0 ? "554 5.5.1 no valid recipients\r\n"
					 : NULL;
	if (c->bdat_err == NULL && c->bdat_chunks++ == 0)
		bench_sink_message_start(c);
	c->bdat_left = n;
	c->state = BS_BDAT;

	/* An empty chunk has no octets to wait for. */
	if (n == 0)
		bench_sink_bdat(c, "", 0);
}

/*
 * bench_sink_bdat - take up to n octets of the chunk; at its end, reply:
 * the message's at LAST, the chunk's otherwise.
 */
static size_t bench_sink_bdat(struct bench_sink_conn *c, const char *p,
			      size_t n)
{
	size_t k = n < c->bdat_left ? n : (size_t)c->bdat_left;

	if (c->bdat_err == NULL && k > 0)
		bench_sink_body(c, p, k);
	c->bdat_left -= k;
	if (c->bdat_left > 0)
		return k;

	c->state = BS_READY;
	if (c->bdat_err != NULL) {
		bench_sink_reply(c, c->bdat_err, 1);
		if (c->bdat_last)
			bench_sink_reset(c);
	} else if (c->bdat_last) {
		bench_sink_message_end(c);
	} else {
		bench_sink_reply(c, "250 2.0.0 chunk ok\r\n", 0);
	}
	return k;
}

/* bench_sink_cmd_rset - RSET. */
static void bench_sink_cmd_rset(struct bench_sink_conn *c, const char *arg)
{
	bench_sink_reset(c);
	bench_sink_reply(c, "250 2.0.0 ok\r\n", 0);
}

/* bench_sink_cmd_noop - NOOP. */
static void bench_sink_cmd_noop(struct bench_sink_conn *c, const char *arg)
{
	bench_sink_reply(c, "250 2.0.0 ok\r\n", 0);
}

/* bench_sink_cmd_quit - QUIT: reply, then close once it is out. */
static void bench_sink_cmd_quit(struct bench_sink_conn *c, const char *arg)
{
	bench_sink_reply(c, "221 2.0.0 bye\r\n", 0);
	c->quit = 1;
}

/* bench_sink_cmd_vrfy - VRFY: neither confirmed nor denied (RFC 5321). */
static void bench_sink_cmd_vrfy(struct bench_sink_conn *c, const char *arg)
{
	bench_sink_reply(c, "252 2.5.2 cannot VRFY, send some mail\r\n", 0);
}

/*
 * bench_sink_cmd_starttls - STARTTLS (RFC 3207): the reply goes out in
 * plain text, then everything is TLS. Input the client pipelined behind
 * the command is thrown away (RFC 3207 5: it could be an injection), and
 * the session starts over before EHLO (4.2).
 */
static void bench_sink_cmd_starttls(struct bench_sink_conn *c, const char *arg)
{
	struct bench_sink *sk = c->d->sk;
	BIO *rb, *wb;

	if (sk->tls_ctx == NULL) {
		bench_sink_reply(c, "502 5.5.1 STARTTLS not offered\r\n", 0);
		return;
	}
	if (c->tls) {
		bench_sink_reply(c, "503 5.5.1 TLS already active\r\n", 0);
		return;
	}
	if (c->mail) {
		bench_sink_reply(c, "503 5.5.1 not inside a transaction\r\n",
				 0);
		return;
	}

	c->tls = SSL_new(sk->tls_ctx);
	rb = BIO_new(BIO_s_mem());
	wb = BIO_new(BIO_s_mem());
	if (c->tls == NULL || rb == NULL || wb == NULL) {
		BIO_free(rb);
		BIO_free(wb);
		if (c->tls)
			SSL_free(c->tls);
		c->tls = NULL;
		bench_sink_reply(c, "454 4.7.0 TLS not available\r\n", 0);
		return;
	}
	SSL_set_bio(c->tls, rb, wb);
	SSL_set_accept_state(c->tls);

	/* Written straight to the wire: the last plain-text bytes. */
	if (bench_sink_buf_add(&c->wire, "220 2.0.0 ready to start TLS\r\n",
			       30) < 0)
		bench_sink_close(c);
	c->state = BS_GREETED;
	c->discard = 1;
}

/* bench_sink_cmd_help - HELP. */
static void bench_sink_cmd_help(struct bench_sink_conn *c, const char *arg)
{
	bench_sink_reply(c, "214 2.0.0 waxseal-bench sink\r\n", 0);
}

typedef void bench_sink_cmd_fn(struct bench_sink_conn *c, const char *arg);

static const struct bench_sink_cmd {
	const char *name;
	size_t len;
	bench_sink_cmd_fn *run;
} bench_sink_cmds[] = {
    {"MAIL", 4, bench_sink_cmd_mail},	      /* RFC 5321 4.1.1.2 */
    {"RCPT", 4, bench_sink_cmd_rcpt},	      /* 4.1.1.3 */
    {"DATA", 4, bench_sink_cmd_data},	      /* 4.1.1.4 */
    {"BDAT", 4, bench_sink_cmd_bdat},	      /* RFC 3030 2 */
    {"RSET", 4, bench_sink_cmd_rset},	      /* 4.1.1.5 */
    {"EHLO", 4, bench_sink_cmd_ehlo},	      /* 4.1.1.1 */
    {"HELO", 4, bench_sink_cmd_helo},	      /* 4.1.1.1 */
    {"NOOP", 4, bench_sink_cmd_noop},	      /* 4.1.1.9 */
    {"QUIT", 4, bench_sink_cmd_quit},	      /* 4.1.1.10 */
    {"STARTTLS", 8, bench_sink_cmd_starttls}, /* RFC 3207 4 */
    {"VRFY", 4, bench_sink_cmd_vrfy},	      /* RFC 5321 4.1.1.6 */
    {"HELP", 4, bench_sink_cmd_help},	      /* 4.1.1.8 */
};

/* bench_sink_command - one command line, without its CRLF, NUL-ended. */
static void bench_sink_command(struct bench_sink_conn *c, char *line,
			       size_t len)
{
	const struct bench_sink_cmd *cmd;
	size_t i;

	for (i = 0; i < sizeof(bench_sink_cmds) / sizeof(*bench_sink_cmds);
	     i++) {
		cmd = &bench_sink_cmds[i];
		if (len < cmd->len || strncasecmp(line, cmd->name, cmd->len))
			continue;
		if (line[cmd->len] != '\0' && line[cmd->len] != ' ')
			continue;
		line += cmd->len;
		while (*line == ' ')
			line++;
		cmd->run(c, line);
		return;
	}
	bench_sink_reply(c, "500 5.5.2 command unrecognized\r\n", 0);
}

/* bench_sink_body - count (and for a sampled message, copy) content. */
static void bench_sink_body(struct bench_sink_conn *c, const char *p, size_t n)
{
	c->msize += n;
	if (!c->verify_this)
		return;

	/* Too big to be checked: measured only. */
	if (c->copy.len + n > BENCH_SINK_SIZE_MAX ||
	    bench_sink_buf_add(&c->copy, p, n) < 0)
		c->verify_this = 0;
}

/*
 * bench_sink_data - feed n bytes of DATA to the reader; returns how many
 * were taken, which is fewer than n only when CRLF.CRLF ended the message
 * (dstate is then BS_D_END). The CRLF before the final dot belongs to the
 * message; a dot that starts a line is removed (RFC 5321 4.5.2). A bare
 * LF never ends a line here, so <LF>.<LF> and the like are content.
 */
static size_t bench_sink_data(struct bench_sink_conn *c, const char *p,
			      size_t n)
{
	const char *cr;
	size_t i = 0, end;

	while (i < n) {
		switch (c->dstate) {
		case BS_D_MID:
			cr = memchr(p + i, '\r', n - i);
			end = cr ? (size_t)(cr - p) + 1 : n;
			bench_sink_body(c, p + i, end - i);
			i = end;
			if (cr)
				c->dstate = BS_D_CR;
			break;
		case BS_D_CR:
			bench_sink_body(c, p + i, 1);
			c->dstate = p[i] == '\n'   ? BS_D_BOL
				    : p[i] == '\r' ? BS_D_CR
						   : BS_D_MID;
			i++;
			break;
		case BS_D_BOL:
			if (p[i] == '.') {
				c->dstate = BS_D_DOT;
				i++;
			} else {
				c->dstate = BS_D_MID;
			}
			break;
		case BS_D_DOT:
			if (p[i] == '\r') {
				c->dstate = BS_D_DOTCR;
				i++;
			} else {
				c->dstate = BS_D_MID;
			}
			break;
		case BS_D_DOTCR:
			if (p[i] == '\n') {
				c->dstate = BS_D_END;
				return i + 1;
			}

			/* A stuffed dot before a CR that ends nothing. */
			bench_sink_body(c, "\r", 1);
			c->dstate = BS_D_CR;
			break;
		case BS_D_END:
			return i;
		}
	}
	return i;
}

/* bench_sink_key_cb - the record given with --dkim-key; DNS never. */
static int bench_sink_key_cb(void *arg, const char *d, const char *s,
			     char **txt)
{
	struct bench_sink *sk = arg;
	size_t i;

	for (i = 0; i < sk->nkeys; i++) {
		if (strcasecmp(sk->keys[i].d, d) != 0 ||
		    strcasecmp(sk->keys[i].s, s) != 0)
			continue;
		*txt = strdup(sk->keys[i].txt);
		return *txt ? 0 : -ENOMEM;
	}
	return -ENOENT;
}

/*
 * bench_sink_verify - check the copied message's DKIM-Signatures: pass
 * when one verifies, none when there is none, fail otherwise.
 */
static void bench_sink_verify(struct bench_sink_conn *c)
{
	struct bench_sink_dest *d = c->d;
	struct bench_sink *sk = d->sk;
	struct sign_hdr_field *f = NULL;
	struct sign_verify_result res;
	const char *m = c->copy.p ? c->copy.p : "", *body, *sep;
	size_t len = c->copy.len, hlen, blen, nf = 0, i, nsig = 0;
	int pass = 0;

	/* The header block runs through the CRLF before the empty line. */
	if (len >= 2 && m[0] == '\r' && m[1] == '\n') {
		hlen = 0;
		body = m + 2;
		blen = len - 2;
	} else if ((sep = memmem(m, len, "\r\n\r\n", 4)) != NULL) {
		hlen = (size_t)(sep - m) + 2;
		body = sep + 4;
		blen = len - hlen - 2;
	} else {
		hlen = len;
		body = m + len;
		blen = 0;
	}

	sk->verified++;
	if (sign_hdr_split(m, hlen, &f, &nf) == 0) {
		for (i = 0; i < nf && !pass; i++) {
			if (!sign_hdr_is(&f[i], "DKIM-Signature", 14))
				continue;
			nsig++;
			pass = sign_verify_sig(f, nf, i, body, blen,
					       bench_sink_key_cb, sk,
					       &res) == SIGN_VERIFY_PASS;
		}
	} else {
		nsig = 1; /* out of memory: not a pass */
	}
	free(f);

	if (nsig == 0) {
		sk->dkim_none++;
	} else if (pass) {
		sk->dkim_pass++;
		d->dkim_pass++;
	} else {
		sk->dkim_fail++;
		d->dkim_fail++;
	}
}

/* bench_sink_latency_cb - the held reply to a final dot goes out. */
static void bench_sink_latency_cb(uv_timer_t *t)
{
	struct bench_sink_conn *c = t->data;

	c->paused = 0;
	bench_sink_reply(c, "250 2.0.0 ok, not kept\r\n", 1);
	bench_sink_pump(c);
}

/* bench_sink_message_end - CRLF.CRLF: count, check, reply. */
static void bench_sink_message_end(struct bench_sink_conn *c)
{
	struct bench_sink_dest *d = c->d;
	struct bench_sink *sk = d->sk;

	if (c->msize > BENCH_SINK_SIZE_MAX) {
		bench_sink_reset(c);
		bench_sink_reply(c, "552 5.3.4 message too big\r\n", 1);
		return;
	}

	d->messages++;
	d->recipients += c->rcpt_ok;
	sk->messages++;
	sk->recipients += c->rcpt_ok;
	sk->bytes += c->msize;
	sk->t_last = bench_sink_now();
	if (c->verify_this)
		bench_sink_verify(c);
	bench_sink_reset(c);

	if (d->latency_ms) {
		c->paused = 1;
		uv_timer_start(&c->timer, bench_sink_latency_cb, d->latency_ms,
			       0);
	} else {
		bench_sink_reply(c, "250 2.0.0 ok, not kept\r\n", 1);
	}

	if (sk->o.messages && sk->messages >= sk->o.messages)
		bench_sink_stop(sk, "messages");
}

/* bench_sink_process - act on what is in the input buffer. */
static void bench_sink_process(struct bench_sink_conn *c)
{
	size_t pos = 0, len;
	char *line, *nl;

	while (pos < c->ilen && !c->paused && !c->closing && !c->quit) {
		/* The connection is cut with the body on its way. */
		if ((c->state == BS_DATA || c->state == BS_BDAT) &&
		    c->drop_this) {
			c->d->dropped++;
			c->d->sk->dropped++;
			bench_sink_close(c);
			return;
		}
		if (c->state == BS_BDAT) {
			pos += bench_sink_bdat(c, c->in + pos, c->ilen - pos);
			continue;
		}
		if (c->state == BS_DATA) {
			pos += bench_sink_data(c, c->in + pos, c->ilen - pos);
			if (c->dstate == BS_D_END)
				bench_sink_message_end(c);
			continue;
		}

		nl = memchr(c->in + pos, '\n', c->ilen - pos);
		if (nl == NULL)
			break;
		line = c->in + pos;
		len = (size_t)(nl - line);
		pos += len + 1;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		line[len] = '\0';
		bench_sink_command(c, line, len);

		if (c->discard) {
			c->discard = 0;
			pos = c->ilen;
		}
	}
	if (c->closing)
		return;

	memmove(c->in, c->in + pos, c->ilen - pos);
	c->ilen -= pos;
	if (c->ilen == sizeof(c->in) && c->state != BS_DATA &&
	    c->state != BS_BDAT) {
		bench_sink_reply(c, "500 5.5.2 line too long\r\n", 0);
		c->ilen = 0;
		c->quit = 1;
	}
}

/* bench_sink_write_cb - the in-flight buffer is written. */
static void bench_sink_write_cb(uv_write_t *req, int status)
{
	struct bench_sink_conn *c = req->data;

	c->wbusy = 0;
	c->inflight.len = 0;
	if (status < 0) {
		bench_sink_close(c);
		return;
	}
	bench_sink_flush(c);
}

/* bench_sink_alloc_cb - where the next read goes. */
static void bench_sink_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct bench_sink_conn *c = h->data;

	/* Ciphertext goes through one loop-wide buffer into the BIO. */
	if (c->tls) {
		*buf = uv_buf_init(c->d->sk->cipher, sizeof(c->d->sk->cipher));
		return;
	}
	*buf =
	    uv_buf_init(c->in + c->ilen, (unsigned)(sizeof(c->in) - c->ilen));
}

/* bench_sink_read_cb - bytes from the client. */
static void bench_sink_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct bench_sink_conn *c = s->data;

	if (n < 0) {
		bench_sink_close(c);
		return;
	}
	if (n == 0)
		return;

	if (c->tls) {
		if (BIO_write(SSL_get_rbio(c->tls), buf->base, (int)n) != n) {
			bench_sink_close(c);
			return;
		}
	} else {
		c->ilen += (size_t)n;
	}
	bench_sink_pump(c);
}

/* bench_sink_reading - read only while replies can be taken in order. */
static void bench_sink_reading(struct bench_sink_conn *c)
{
	int want = !c->closing && !c->paused && !c->quit &&
		   c->wire.len + c->inflight.len < BENCH_SINK_OUT_HIGH;

	if (want == c->reading)
		return;
	c->reading = want;
	if (want)
		uv_read_start((uv_stream_t *)&c->tcp, bench_sink_alloc_cb,
			      bench_sink_read_cb);
	else
		uv_read_stop((uv_stream_t *)&c->tcp);
}

/* bench_sink_flush - encrypt queued replies and start a write. */
static void bench_sink_flush(struct bench_sink_conn *c)
{
	struct bench_sink_buf t;
	uv_buf_t b;
	BIO *wb;
	size_t n;

	if (c->closing)
		return;

	/* A memory BIO takes every byte: SSL_write is all or nothing. */
	if (c->tls && c->rep.len) {
		if (SSL_write(c->tls, c->rep.p, (int)c->rep.len) <= 0) {
			bench_sink_close(c);
			return;
		}
		c->rep.len = 0;
	}
	if (c->tls) {
		wb = SSL_get_wbio(c->tls);
		while ((n = BIO_pending(wb)) > 0) {
			if (bench_sink_buf_reserve(&c->wire, n) < 0) {
				bench_sink_close(c);
				return;
			}
			c->wire.len += (size_t)BIO_read(
			    wb, c->wire.p + c->wire.len, (int)n);
		}
	}

	if (!c->wbusy && c->wire.len) {
		t = c->inflight;
		c->inflight = c->wire;
		c->wire = t;
		c->wire.len = 0;
		b = uv_buf_init(c->inflight.p, (unsigned)c->inflight.len);
		c->wreq.data = c;
		if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1,
			     bench_sink_write_cb) < 0) {
			bench_sink_close(c);
			return;
		}
		c->wbusy = 1;
	} else if (!c->wbusy && c->quit) {
		bench_sink_close(c);
		return;
	}
	bench_sink_reading(c);
}

/*
 * bench_sink_handshake - move the TLS handshake on. 1 when done, 0 when
 * it needs more input, -EPROTO when it failed.
 */
static int bench_sink_handshake(struct bench_sink_conn *c)
{
	int r = SSL_do_handshake(c->tls);

	if (r == 1) {
		c->tls_ready = 1;
		c->d->tls_sessions++;
		return 1;
	}
	switch (SSL_get_error(c->tls, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	default:
		return -EPROTO;
	}
}

/*
 * bench_sink_pump - process the input buffer and, with TLS, decrypt more
 * into it until the SSL object runs dry; then send what was queued.
 */
static void bench_sink_pump(struct bench_sink_conn *c)
{
	int r;

	for (;;) {
		if (c->tls && !c->tls_ready) {
			r = bench_sink_handshake(c);
			if (r < 0) {
				bench_sink_close(c);
				return;
			}
			if (r == 0)
				break;
		}

		bench_sink_process(c);
		if (c->closing)
			return;
		if (c->paused || c->quit || !c->tls || c->ilen == sizeof(c->in))
			break;

		r = SSL_read(c->tls, c->in + c->ilen,
			     (int)(sizeof(c->in) - c->ilen));
		if (r <= 0) {
			if (SSL_get_error(c->tls, r) == SSL_ERROR_WANT_READ)
				break;
			bench_sink_close(c);
			return;
		}
		c->ilen += (size_t)r;
	}
	bench_sink_flush(c);
}

/* bench_sink_accept_cb - a new connection to one destination. */
static void bench_sink_accept_cb(uv_stream_t *server, int status)
{
	struct bench_sink_dest *d = server->data;
	struct bench_sink *sk = d->sk;
	struct bench_sink_conn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return;
	uv_tcp_init(sk->loop, &c->tcp);
	c->tcp.data = c;
	c->d = d;
	c->handles = 1;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		c->closing = 1;
		uv_close((uv_handle_t *)&c->tcp, bench_sink_close_cb);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (d->latency_ms) {
		uv_timer_init(sk->loop, &c->timer);
		c->timer.data = c;
		c->handles++;
	}

	c->next = sk->conns;
	if (sk->conns)
		sk->conns->prev = c;
	sk->conns = c;
	d->connections++;
	sk->connections++;
	if (++d->open > d->max_concurrent)
		d->max_concurrent = d->open;
	if (sk->t_first == 0)
		sk->t_first = bench_sink_now();

	if (bench_sink_share(++d->conn_seq, 0, d->reject421)) {
		d->rejected++;
		bench_sink_reply(c, "421 4.7.0 busy\r\n", 1);
		c->quit = 1;
	} else {
		bench_sink_reply(c,
				 "220 " BENCH_SINK_HOSTNAME
				 " ESMTP waxseal-bench sink\r\n",
				 0);
	}
	bench_sink_flush(c);
}

/* bench_sink_grace_cb - the stop's grace is over: hang up on everyone. */
static void bench_sink_grace_cb(uv_timer_t *t)
{
	struct bench_sink *sk = t->data;

	while (sk->conns)
		bench_sink_close(sk->conns);
	uv_close((uv_handle_t *)t, NULL);
}

/*
 * bench_sink_stop - end the run: the report's clock stops, listeners and
 * timers close, connections close once their queued replies are out
 * (at most BENCH_SINK_GRACE_MS later), and uv_run then returns.
 */
static void bench_sink_stop(struct bench_sink *sk, const char *reason)
{
	struct bench_sink_conn *c, *next;
	size_t i;

	if (sk->stopping)
		return;
	sk->stopping = 1;
	sk->stop_reason = reason;
	sk->t_stop = bench_sink_now();

	for (i = 0; i < sk->ndest; i++)
		if (sk->dests[i].bound)
			uv_close((uv_handle_t *)&sk->dests[i].tcp, NULL);
	uv_close((uv_handle_t *)&sk->deadline, NULL);
	uv_close((uv_handle_t *)&sk->idle, NULL);
	uv_close((uv_handle_t *)&sk->sigterm, NULL);
	uv_close((uv_handle_t *)&sk->sigint, NULL);

	for (c = sk->conns; c; c = next) {
		next = c->next;
		c->quit = 1;
		/* A held reply goes out now, without its latency. */
		if (c->paused) {
			uv_timer_stop(&c->timer);
			c->paused = 0;
			bench_sink_reply(c, "250 2.0.0 ok, not kept\r\n", 1);
		}
		bench_sink_flush(c);
	}

	/* Unreferenced: the loop ends as soon as the connections are gone. */
	uv_timer_init(sk->loop, &sk->grace);
	sk->grace.data = sk;
	uv_timer_start(&sk->grace, bench_sink_grace_cb, BENCH_SINK_GRACE_MS, 0);
	uv_unref((uv_handle_t *)&sk->grace);
}

/* bench_sink_deadline_cb - --duration is over. */
static void bench_sink_deadline_cb(uv_timer_t *t)
{
	bench_sink_stop(t->data, "duration");
}

/* bench_sink_idle_cb - --idle-exit: stop once mail stopped coming. */
static void bench_sink_idle_cb(uv_timer_t *t)
{
	struct bench_sink *sk = t->data;

	if (sk->t_last &&
	    (double)(bench_sink_now() - sk->t_last) / 1e9 >= sk->o.idle_exit)
		bench_sink_stop(sk, "idle");
}

/* bench_sink_signal_cb - SIGTERM or SIGINT. */
static void bench_sink_signal_cb(uv_signal_t *s, int signum)
{
	bench_sink_stop(s->data, "signal");
}

/* bench_sink_parse_u64 - a decimal number within [min, max]. */
static int bench_sink_parse_u64(const char *s, uint64_t min, uint64_t max,
				uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* bench_sink_parse_seconds - a time in seconds, > 0 and <= max. */
static int bench_sink_parse_seconds(const char *s, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* bench_sink_is_loopback - whether an address is 127.0.0.0/8 or ::1. */
static int bench_sink_is_loopback(const struct sockaddr_storage *ss)
{
	const struct sockaddr_in *in = (const void *)ss;
	const struct sockaddr_in6 *in6 = (const void *)ss;

	if (ss->ss_family == AF_INET)
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	return ss->ss_family == AF_INET6 &&
	       IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
}

/* bench_sink_parse_addr - "127.0.0.10:2526" or "[::1]:2600", numeric. */
static int bench_sink_parse_addr(const char *s, size_t len,
				 struct sockaddr_storage *out)
{
	char host[64], port[8];
	const char *colon, *hs;
	size_t hlen, plen;
	uint64_t p;

	if (len == 0 || len >= 80)
		return -EINVAL;
	if (*s == '[') {
		colon = memchr(s, ']', len);
		if (colon == NULL || colon + 1 >= s + len || colon[1] != ':')
			return -EINVAL;
		hlen = (size_t)(colon - s - 1);
		hs = s + 1;
		colon++;
	} else {
		colon = memrchr(s, ':', len);
		if (colon == NULL)
			return -EINVAL;
		hlen = (size_t)(colon - s);
		hs = s;
	}
	plen = len - (size_t)(colon + 1 - s);
	if (hlen == 0 || hlen >= sizeof(host) || plen == 0 ||
	    plen >= sizeof(port))
		return -EINVAL;
	memcpy(host, hs, hlen);
	host[hlen] = '\0';
	memcpy(port, colon + 1, plen);
	port[plen] = '\0';

	/* The runner picks the ports: 0 would leave it guessing. */
	if (bench_sink_parse_u64(port, 1, 65535, &p) < 0)
		return -ERANGE;
	if (*s == '[')
		return uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)out)
			   ? -EINVAL
			   : 0;
	return uv_ip4_addr(host, (int)p, (struct sockaddr_in *)out) ? -EINVAL
								    : 0;
}

/* bench_sink_parse_pct - a share in percent, 0 to 100, as a fraction. */
static int bench_sink_parse_pct(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0) || v > 100)
		return -ERANGE;
	*out = v / 100;
	return 0;
}

/*
 * bench_sink_parse_listen - one --listen: the address, then key=value
 * items after commas. 0, or -EINVAL with the reason in err.
 */
static int bench_sink_parse_listen(struct bench_sink_dest *d, const char *arg,
				   char *err, size_t errlen)
{
	char item[128], *eq;
	const char *p, *comma;
	size_t alen, n;
	uint64_t v;
	int r;

	comma = strchr(arg, ',');
	alen = comma ? (size_t)(comma - arg) : strlen(arg);
	if (bench_sink_parse_addr(arg, alen, &d->addr) < 0) {
		snprintf(err, errlen,
			 "--listen %s: want ADDR:PORT with a numeric address "
			 "and a port from 1 to 65535",
			 arg);
		return -EINVAL;
	}
	memcpy(d->listen, arg, alen);
	d->listen[alen] = '\0';

	for (p = comma; p && *p; p = comma) {
		p++;
		comma = strchr(p, ',');
		n = comma ? (size_t)(comma - p) : strlen(p);
		if (n == 0 || n >= sizeof(item))
			goto bad;
		memcpy(item, p, n);
		item[n] = '\0';
		eq = strchr(item, '=');
		if (eq == NULL)
			goto bad;
		*eq++ = '\0';

		if (!strcmp(item, "latency")) {
			r = bench_sink_parse_u64(eq, 0,
						 BENCH_SINK_MAX_LATENCY_MS, &v);
			d->latency_ms = (unsigned)v;
		} else if (!strcmp(item, "tempfail")) {
			r = bench_sink_parse_pct(eq, &d->tempfail);
		} else if (!strcmp(item, "permfail")) {
			r = bench_sink_parse_pct(eq, &d->permfail);
		} else if (!strcmp(item, "reject421")) {
			r = bench_sink_parse_pct(eq, &d->reject421);
		} else if (!strcmp(item, "drop")) {
			r = bench_sink_parse_pct(eq, &d->drop);
		} else {
			r = -EINVAL;
		}
		if (r < 0)
			goto bad;
	}
	if (d->tempfail + d->permfail > 1) {
		snprintf(err, errlen,
			 "--listen %s: tempfail and permfail add up to more "
			 "than 100",
			 arg);
		return -EINVAL;
	}
	return 0;

bad:
	snprintf(err, errlen,
		 "--listen %s: options are latency=MS, tempfail=PCT, "
		 "permfail=PCT, reject421=PCT, drop=PCT",
		 arg);
	return -EINVAL;
}

/* bench_sink_read_file - up to max bytes of a file, NUL-ended, malloc'ed. */
static int bench_sink_read_file(const char *path, size_t max, char **out)
{
	FILE *f = fopen(path, "rb");
	char *b;
	size_t n;
	int r;

	if (f == NULL)
		return -errno;
	b = malloc(max + 1);
	if (b == NULL) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(b, 1, max, f);
	r = ferror(f) ? -EIO : !feof(f) ? -EFBIG : 0;
	fclose(f);
	if (r < 0) {
		free(b);
		return r;
	}
	b[n] = '\0';
	*out = b;
	return 0;
}

/* bench_sink_pem_record - a "PUBLIC KEY" PEM as a DKIM key record. */
static int bench_sink_pem_record(const char *pem, char **txt)
{
	struct sign_pubkey pk;
	uint8_t *der = NULL;
	char *b64 = NULL;
	int dl, r = -EINVAL;

	if (sign_pubkey_from_pem(&pk, pem, strlen(pem)) < 0)
		return -EINVAL;
	if (pk.type == SIGN_KEY_ED25519) {
		b64 = sign_b64_encode(pk.ed, sizeof(pk.ed));
	} else {
		dl = i2d_PUBKEY(pk.pkey, &der);
		b64 = dl > 0 ? sign_b64_encode(der, (size_t)dl) : NULL;
		OPENSSL_free(der);
	}
	if (b64 == NULL)
		goto fail;

	*txt = malloc(strlen(b64) + 40);
	if (*txt == NULL)
		goto fail;
	sprintf(*txt, "v=DKIM1; k=%s; p=%s",
		pk.type == SIGN_KEY_ED25519 ? "ed25519" : "rsa", b64);
	r = 0;

fail:
	free(b64);
	sign_pubkey_clear(&pk);
	return r;
}

/*
 * bench_sink_zone_record - the record of a zone-file line as genkey
 * writes it: the quoted strings joined (RFC 6376 3.6.2.2), up to a ';'
 * comment outside quotes; a file without quotes is the record itself.
 */
static void bench_sink_zone_record(char *b)
{
	char *o = b, *p;
	int in = 0;

	if (strchr(b, '"') == NULL) {
		for (p = b; *p; p++)
			if (*p != '\n' && *p != '\r')
				*o++ = *p;
		*o = '\0';
		return;
	}
	for (p = b; *p; p++) {
		if (*p == '"')
			in = !in;
		else if (!in && *p == ';')
			break;
		else if (in)
			*o++ = *p;
	}
	*o = '\0';
}

/*
 * bench_sink_key_load - one --dkim-key DOMAIN:SELECTOR:FILE, checked now
 * so that a bad key stops the start. 0, or -EINVAL with err filled.
 */
static int bench_sink_key_load(struct bench_sink_key *k, const char *spec,
			       char *err, size_t errlen)
{
	struct sign_pubkey pk;
	const char *c1, *c2;
	char why[160], *b = NULL;
	int r;

	c1 = strchr(spec, ':');
	c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (c2 == NULL || c1 == spec || c2 == c1 + 1 || c2[1] == '\0' ||
	    (size_t)(c1 - spec) >= sizeof(k->d) ||
	    (size_t)(c2 - c1 - 1) >= sizeof(k->s)) {
		snprintf(err, errlen,
			 "--dkim-key %s: want DOMAIN:SELECTOR:FILE", spec);
		return -EINVAL;
	}
	memcpy(k->d, spec, (size_t)(c1 - spec));
	k->d[c1 - spec] = '\0';
	memcpy(k->s, c1 + 1, (size_t)(c2 - c1 - 1));
	k->s[c2 - c1 - 1] = '\0';

	r = bench_sink_read_file(c2 + 1, BENCH_SINK_KEYFILE_MAX, &b);
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", c2 + 1, strerror(-r));
		return -EINVAL;
	}
	if (strstr(b, "-----BEGIN PUBLIC KEY-----")) {
		r = bench_sink_pem_record(b, &k->txt);
		free(b);
		if (r < 0) {
			snprintf(err, errlen, "%s: not a usable public key",
				 c2 + 1);
			return -EINVAL;
		}
	} else {
		bench_sink_zone_record(b);
		k->txt = b;
	}

	if (sign_verify_record(k->txt, strlen(k->txt), &pk, why, sizeof(why)) <
	    0) {
		snprintf(err, errlen, "%s: %s", c2 + 1, why);
		free(k->txt);
		k->txt = NULL;
		return -EINVAL;
	}
	sign_pubkey_clear(&pk);
	return 0;
}

/*
 * bench_sink_tls_ctx - a server context with a fresh P-256 key and a
 * self-signed certificate for sink.test (subject CN and a DNS
 * subjectAltName), valid from a day ago for a year. NULL on failure.
 */
static SSL_CTX *bench_sink_tls_ctx(void)
{
	GENERAL_NAMES *names = NULL;
	GENERAL_NAME *gn = NULL;
	ASN1_IA5STRING *ia5 = NULL;
	EVP_PKEY *pkey = NULL;
	EC_KEY *ec = NULL;
	X509_NAME *nm;
	X509 *x = NULL;
	SSL_CTX *ctx = NULL;
	uint64_t serial;

	ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	pkey = EVP_PKEY_new();
	if (ec == NULL || pkey == NULL || !EC_KEY_generate_key(ec) ||
	    !EVP_PKEY_assign_EC_KEY(pkey, ec))
		goto fail;
	ec = NULL; /* pkey owns it now */

	x = X509_new();
	RAND_bytes((uint8_t *)&serial, sizeof(serial));
	if (x == NULL || !X509_set_version(x, X509_VERSION_3) ||
	    !ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial >> 1) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -86400) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400))
		goto fail;
	nm = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
					(const uint8_t *)BENCH_SINK_HOSTNAME,
					-1, -1, 0) ||
	    !X509_set_issuer_name(x, nm) || !X509_set_pubkey(x, pkey))
		goto fail;

	names = GENERAL_NAMES_new();
	gn = GENERAL_NAME_new();
	ia5 = ASN1_IA5STRING_new();
	if (names == NULL || gn == NULL || ia5 == NULL ||
	    !ASN1_STRING_set(ia5, BENCH_SINK_HOSTNAME, -1))
		goto fail;
	GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
	ia5 = NULL;
	if (!sk_GENERAL_NAME_push(names, gn))
		goto fail;
	gn = NULL;
	if (!X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0,
			       X509V3_ADD_DEFAULT) ||
	    !X509_sign(x, pkey, EVP_sha256()))
		goto fail;

	ctx = SSL_CTX_new(TLS_method());
	if (ctx == NULL ||
	    !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_use_certificate(ctx, x) ||
	    !SSL_CTX_use_PrivateKey(ctx, pkey)) {
		SSL_CTX_free(ctx);
		ctx = NULL;
	}

fail:
	GENERAL_NAMES_free(names);
	GENERAL_NAME_free(gn);
	ASN1_IA5STRING_free(ia5);
	X509_free(x);
	EVP_PKEY_free(pkey);
	EC_KEY_free(ec);
	return ctx;
}

/* bench_sink_getopt - fill the options from the command line. */
static int bench_sink_getopt(struct bench_sink_opts *o, int argc, char **argv)
{
	enum {
		OPT_LISTEN = 256,
		OPT_TLS,
		OPT_DKIM_KEY,
		OPT_VERIFY_EVERY,
		OPT_MESSAGES,
		OPT_DURATION,
		OPT_IDLE_EXIT,
		OPT_REPORT_FILE,
		OPT_READY_FILE,
		OPT_JSON,
		OPT_ALLOW_REMOTE,
		OPT_HELP,
	};
	static const struct option longopts[] = {
	    {"listen", required_argument, NULL, OPT_LISTEN},
	    {"tls", no_argument, NULL, OPT_TLS},
	    {"dkim-key", required_argument, NULL, OPT_DKIM_KEY},
	    {"verify-every", required_argument, NULL, OPT_VERIFY_EVERY},
	    {"messages", required_argument, NULL, OPT_MESSAGES},
	    {"duration", required_argument, NULL, OPT_DURATION},
	    {"idle-exit", required_argument, NULL, OPT_IDLE_EXIT},
	    {"report-file", required_argument, NULL, OPT_REPORT_FILE},
	    {"ready-file", required_argument, NULL, OPT_READY_FILE},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"allow-remote", no_argument, NULL, OPT_ALLOW_REMOTE},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	uint64_t v;
	int ch, err;

	*o = (struct bench_sink_opts){
	    .verify_every = -1,
	    .duration = BENCH_SINK_DEFAULT_DURATION,
	};

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		err = 0;
		switch (ch) {
		case OPT_LISTEN:
			if (o->nlisten == BENCH_SINK_MAX_LISTEN)
				err = -E2BIG;
			else
				o->listen[o->nlisten++] = optarg;
			break;
		case OPT_TLS:
			o->tls = 1;
			break;
		case OPT_DKIM_KEY:
			if (o->nkeys == BENCH_SINK_MAX_KEYS)
				err = -E2BIG;
			else
				o->keys[o->nkeys++] = optarg;
			break;
		case OPT_VERIFY_EVERY:
			err = bench_sink_parse_u64(optarg, 0, 1000000000, &v);
			o->verify_every = (long)v;
			break;
		case OPT_MESSAGES:
			err = bench_sink_parse_u64(optarg, 1, 1000000000000ull,
						   &v);
			o->messages = v;
			break;
		case OPT_DURATION:
			err = bench_sink_parse_seconds(
			    optarg, BENCH_SINK_MAX_DURATION, &o->duration);
			break;
		case OPT_IDLE_EXIT:
			err = bench_sink_parse_seconds(
			    optarg, BENCH_SINK_MAX_DURATION, &o->idle_exit);
			break;
		case OPT_REPORT_FILE:
			o->report_file = optarg;
			break;
		case OPT_READY_FILE:
			o->ready_file = optarg;
			break;
		case OPT_JSON:
			o->json = 1;
			break;
		case OPT_ALLOW_REMOTE:
			o->allow_remote = 1;
			break;
		case OPT_HELP:
		case 'h':
			bench_sink_usage(stdout);
			return 1;
		default:
			bench_sink_usage(stderr);
			return -EINVAL;
		}
		if (err) {
			fprintf(stderr,
				"waxseal-bench sink: --%s %s: out of range "
				"(--help lists the limits)\n",
				longopts[ch - OPT_LISTEN].name, optarg);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "waxseal-bench sink: unexpected %s\n",
			argv[optind]);
		return -EINVAL;
	}
	if (o->nlisten == 0) {
		fprintf(stderr, "waxseal-bench sink: at least one --listen "
				"is needed\n");
		return -EINVAL;
	}
	return 0;
}

/* bench_sink_write_atomic - write text to path through a renamed file. */
static int bench_sink_write_atomic(const char *path, const char *text,
				   size_t len)
{
	char tmp[4096];
	FILE *f;
	int r = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "w");
	if (f == NULL)
		return -errno;
	if (fwrite(text, 1, len, f) != len)
		r = -EIO;
	if (fclose(f) != 0 && r == 0)
		r = -EIO;
	if (r == 0 && rename(tmp, path) != 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

/* bench_sink_rates - elapsed, active seconds and messages per second. */
static void bench_sink_rates(const struct bench_sink *sk, double *elapsed,
			     double *active, double *rate)
{
	*elapsed = (double)(sk->t_stop - sk->t0) / 1e9;
	*active = sk->t_first && sk->t_last > sk->t_first
		      ? (double)(sk->t_last - sk->t_first) / 1e9
		      : 0;
	*rate = *active > 0 ? (double)sk->messages / *active : 0;
}

/* bench_sink_json - the report as one JSON object into f. */
static void bench_sink_json(const struct bench_sink *sk, FILE *f)
{
	const struct bench_sink_dest *d;
	double elapsed, active, rate;
	size_t i;

	bench_sink_rates(sk, &elapsed, &active, &rate);
	fprintf(f,
		"{\"tool\": \"waxseal-bench sink\", \"elapsed_s\": %.3f, "
		"\"active_s\": %.3f, \"stop_reason\": \"%s\",\n"
		" \"messages\": %" PRIu64 ", \"recipients\": %" PRIu64
		", \"bytes\": %" PRIu64 ", \"messages_per_s\": %.1f,\n"
		" \"connections\": %" PRIu64 ", \"dropped\": %" PRIu64 ",\n"
		" \"replies\": {\"2xx\": %" PRIu64 ", \"4xx\": %" PRIu64
		", \"5xx\": %" PRIu64 "},\n"
		" \"dkim\": {\"verified\": %" PRIu64 ", \"pass\": %" PRIu64
		", \"fail\": %" PRIu64 ", \"none\": %" PRIu64 "},\n"
		" \"destinations\": [",
		elapsed, active, sk->stop_reason, sk->messages, sk->recipients,
		sk->bytes, rate, sk->connections, sk->dropped, sk->replies[2],
		sk->replies[4], sk->replies[5], sk->verified, sk->dkim_pass,
		sk->dkim_fail, sk->dkim_none);
	for (i = 0; i < sk->ndest; i++) {
		d = &sk->dests[i];
		fprintf(f,
			"%s\n  {\"listen\": \"%s\", \"messages\": %" PRIu64
			", \"recipients\": %" PRIu64
			", \"connections\": %" PRIu64
			", \"max_concurrent\": %u,\n"
			"   \"tls_sessions\": %" PRIu64
			", \"dkim_pass\": %" PRIu64 ", \"dkim_fail\": %" PRIu64
			", \"dropped\": %" PRIu64 ", \"rejected_421\": %" PRIu64
			",\n   \"tempfails\": %" PRIu64
			", \"permfails\": %" PRIu64 "}",
			i ? "," : "", d->listen, d->messages, d->recipients,
			d->connections, d->max_concurrent, d->tls_sessions,
			d->dkim_pass, d->dkim_fail, d->dropped, d->rejected,
			d->tempfails, d->permfails);
	}
	fprintf(f, "]}\n");
}

/* bench_sink_text - the report for people. */
static void bench_sink_text(const struct bench_sink *sk, FILE *f)
{
	const struct bench_sink_dest *d;
	double elapsed, active, rate;
	size_t i;

	bench_sink_rates(sk, &elapsed, &active, &rate);
	fprintf(f,
		"waxseal-bench sink: stopped by %s after %.3f s\n"
		"messages      %" PRIu64 " (%.1f/s over %.3f s active), "
		"%" PRIu64 " recipients, %" PRIu64 " bytes\n"
		"connections   %" PRIu64 ", %" PRIu64 " cut mid-DATA\n"
		"replies       2xx %" PRIu64 "  4xx %" PRIu64 "  5xx %" PRIu64
		"\n"
		"dkim          verified %" PRIu64 ": pass %" PRIu64
		"  fail %" PRIu64 "  none %" PRIu64 "\n",
		sk->stop_reason, elapsed, sk->messages, rate, active,
		sk->recipients, sk->bytes, sk->connections, sk->dropped,
		sk->replies[2], sk->replies[4], sk->replies[5], sk->verified,
		sk->dkim_pass, sk->dkim_fail, sk->dkim_none);
	fprintf(f, "%-24s %9s %9s %6s %6s %6s %6s %6s\n", "destination",
		"messages", "rcpts", "conns", "maxcon", "tls", "dkim+",
		"dkim-");
	for (i = 0; i < sk->ndest; i++) {
		d = &sk->dests[i];
		fprintf(f,
			"%-24s %9" PRIu64 " %9" PRIu64 " %6" PRIu64
			" %6u %6" PRIu64 " %6" PRIu64 " %6" PRIu64 "\n",
			d->listen, d->messages, d->recipients, d->connections,
			d->max_concurrent, d->tls_sessions, d->dkim_pass,
			d->dkim_fail);
	}
}

/* bench_sink_report - print the report and write --report-file. */
static int bench_sink_report(const struct bench_sink *sk)
{
	char *text = NULL;
	size_t len = 0;
	FILE *m;
	int r = 0;

	if (sk->o.json)
		bench_sink_json(sk, stdout);
	else
		bench_sink_text(sk, stdout);
	fflush(stdout);
	if (sk->o.report_file == NULL)
		return 0;

	m = open_memstream(&text, &len);
	if (m == NULL)
		return -ENOMEM;
	bench_sink_json(sk, m);
	fclose(m);
	r = bench_sink_write_atomic(sk->o.report_file, text, len);
	if (r < 0)
		fprintf(stderr, "waxseal-bench sink: %s: %s\n",
			sk->o.report_file, strerror(-r));
	free(text);
	return r;
}

/* bench_sink_listen - bind and listen on every destination. */
static int bench_sink_listen(struct bench_sink *sk)
{
	struct bench_sink_dest *d;
	size_t i;
	int r;

	for (i = 0; i < sk->ndest; i++) {
		d = &sk->dests[i];
		d->sk = sk;
		uv_tcp_init(sk->loop, &d->tcp);
		d->tcp.data = d;
		d->bound = 1;
		r = uv_tcp_bind(&d->tcp, (struct sockaddr *)&d->addr, 0);
		if (r == 0)
			r = uv_listen((uv_stream_t *)&d->tcp,
				      BENCH_SINK_BACKLOG, bench_sink_accept_cb);
		if (r < 0) {
			fprintf(stderr, "waxseal-bench sink: listen %s: %s\n",
				d->listen, uv_strerror(r));
			return r;
		}
	}
	return 0;
}

/* bench_sink_setup - everything the run needs, before the loop starts. */
static int bench_sink_setup(struct bench_sink *sk)
{
	char err[512];
	size_t i;

	sk->dests = calloc(sk->o.nlisten, sizeof(*sk->dests));
	sk->keys = calloc(sk->o.nkeys ? sk->o.nkeys : 1, sizeof(*sk->keys));
	if (sk->dests == NULL || sk->keys == NULL)
		return -ENOMEM;
	sk->ndest = sk->o.nlisten;
	for (i = 0; i < sk->ndest; i++) {
		if (bench_sink_parse_listen(&sk->dests[i], sk->o.listen[i], err,
					    sizeof(err)) < 0) {
			fprintf(stderr, "waxseal-bench sink: %s\n", err);
			return -EINVAL;
		}
		if (!sk->o.allow_remote &&
		    !bench_sink_is_loopback(&sk->dests[i].addr)) {
			fprintf(stderr,
				"waxseal-bench sink: %s is not a loopback "
				"address; give --allow-remote to listen "
				"there\n",
				sk->dests[i].listen);
			return -EINVAL;
		}
	}

	for (i = 0; i < sk->o.nkeys; i++, sk->nkeys++)
		if (bench_sink_key_load(&sk->keys[i], sk->o.keys[i], err,
					sizeof(err)) < 0) {
			fprintf(stderr, "waxseal-bench sink: %s\n", err);
			return -EINVAL;
		}
	if (sk->o.verify_every >= 0)
		sk->verify_every = (unsigned long)sk->o.verify_every;
	else
		sk->verify_every = sk->nkeys ? 1 : 0;

	if (sk->o.tls) {
		sk->tls_ctx = bench_sink_tls_ctx();
		if (sk->tls_ctx == NULL) {
			fprintf(stderr,
				"waxseal-bench sink: cannot make the TLS "
				"certificate: %s\n",
				ERR_reason_error_string(ERR_get_error()));
			return -EIO;
		}
	}
	return 0;
}

/* bench_sink_raise_nofile - as many descriptors as the hard limit allows. */
static void bench_sink_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* bench_sink_free - release what setup made (after the loop is closed). */
static void bench_sink_free(struct bench_sink *sk)
{
	size_t i;

	for (i = 0; i < sk->nkeys; i++)
		free(sk->keys[i].txt);
	free(sk->keys);
	free(sk->dests);
	SSL_CTX_free(sk->tls_ctx);
}

/*
 * bench_sink_run - start the timers and signals, announce readiness, run
 * the loop until the stop and report. Returns the exit status.
 */
static int bench_sink_run(struct bench_sink *sk)
{
	char pid[32];
	int r;

	sk->t0 = bench_sink_now();
	uv_timer_init(sk->loop, &sk->deadline);
	sk->deadline.data = sk;
	uv_timer_start(&sk->deadline, bench_sink_deadline_cb,
		       (uint64_t)(sk->o.duration * 1000), 0);
	uv_timer_init(sk->loop, &sk->idle);
	sk->idle.data = sk;
	if (sk->o.idle_exit > 0)
		uv_timer_start(&sk->idle, bench_sink_idle_cb,
			       BENCH_SINK_IDLE_TICK_MS,
			       BENCH_SINK_IDLE_TICK_MS);
	uv_signal_init(sk->loop, &sk->sigterm);
	sk->sigterm.data = sk;
	uv_signal_start(&sk->sigterm, bench_sink_signal_cb, SIGTERM);
	uv_signal_init(sk->loop, &sk->sigint);
	sk->sigint.data = sk;
	uv_signal_start(&sk->sigint, bench_sink_signal_cb, SIGINT);

	/* The runner waits for this file: every listener is bound now. */
	if (sk->o.ready_file) {
		snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
		r = bench_sink_write_atomic(sk->o.ready_file, pid, strlen(pid));
		if (r < 0) {
			fprintf(stderr, "waxseal-bench sink: %s: %s\n",
				sk->o.ready_file, strerror(-r));
			bench_sink_stop(sk, "error");
			uv_run(sk->loop, UV_RUN_DEFAULT);
			return 1;
		}
	}

	uv_run(sk->loop, UV_RUN_DEFAULT);
	return bench_sink_report(sk) < 0 ? 1 : 0;
}

/* bench_sink_unlisten - close the listeners of a run that never ran. */
static void bench_sink_unlisten(struct bench_sink *sk)
{
	size_t i;

	for (i = 0; i < sk->ndest; i++)
		if (sk->dests[i].bound)
			uv_close((uv_handle_t *)&sk->dests[i].tcp, NULL);
	uv_run(sk->loop, UV_RUN_DEFAULT);
}

/* bench_sink_main - parse, set up, run, report; the exit status. */
int bench_sink_main(int argc, char **argv)
{
	struct bench_sink *sk;
	int r, code = 2;

	/* Big (the cipher buffer): on the heap, not the stack. */
	sk = calloc(1, sizeof(*sk));
	if (sk == NULL)
		return 1;
	r = bench_sink_getopt(&sk->o, argc, argv);
	if (r != 0) {
		code = r > 0 ? 0 : 2;
		goto fail;
	}
	r = bench_sink_setup(sk);
	if (r < 0) {
		code = r == -EINVAL ? 2 : 1;
		goto fail;
	}

	signal(SIGPIPE, SIG_IGN);
	bench_sink_raise_nofile();
	sk->loop = uv_default_loop();
	if (bench_sink_listen(sk) < 0) {
		bench_sink_unlisten(sk);
		code = 1;
	} else {
		code = bench_sink_run(sk);
	}
	uv_loop_close(sk->loop);

fail:
	bench_sink_free(sk);
	free(sk);
	return code;
}
