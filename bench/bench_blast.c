/*
 * bench_blast - `waxseal-bench blast`, the SMTP load generator; see
 * bench_blast.h for what it promises.
 *
 * A connection's life: DOWN -> CONNECTING -> GREETING -> EHLO -> READY
 * (transactions) -> QUIT -> DONE; with --starttls, EHLO -> STARTTLS ->
 * HANDSHAKE -> EHLO again before READY, with CLOSING between a close request
 * and libuv's close callback, after which the connection either waits in
 * DOWN for a reconnect timer or is DONE. The replies a connection still
 * waits for are kept, in order, in a small ring of expectations (RSET,
 * MAIL, RCPT, DATA, end of data, QUIT); each reply is handed to the
 * handler of the expectation at the ring's head.
 *
 * Pipelining (RFC 2920): "grouped", the default, sends MAIL, every RCPT
 * and DATA in one write and the body after the 354, as Postfix's smtp
 * client and newsletter applications do. "full" also writes the next
 * transaction's MAIL/RCPT/DATA right behind the body's final dot, in the
 * same write. --no-pipelining waits for each reply before the next
 * command (also used when the server does not announce PIPELINING).
 *
 * XXX: a failed transaction is counted, not retried, so a server that
 * defers a share of the mail is credited with fewer accepted messages
 * rather than made to take them all.
 *
 * XXX: each connection renders the whole message into its own buffer;
 * multi-megabyte messages over hundreds of connections cost that much
 * memory. Writing the fixed segments straight from the template would
 * avoid it at the price of more iovecs per write.
 *
 * XXX: the latency clock starts when the final dot is handed to the
 * kernel; when the socket is full it starts when the dot is queued
 * behind the bytes libuv still holds, so the wait for buffer space
 * counts as server latency.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "bench/bench_blast.h"
#include "bench/bench_msg.h"
#include "bench/bench_stats.h"

#define BENCH_BLAST_INBUF 8192
/* Ciphertext moved per read or write under TLS. */
#define BENCH_BLAST_TLSBUF 65536
#define BENCH_BLAST_MAX_CONNECTIONS 20000
#define BENCH_BLAST_MAX_RECIPIENTS 1000
#define BENCH_BLAST_MAX_SIZE (10u * 1024 * 1024)
#define BENCH_BLAST_MAX_DURATION 3600.0
/* The count that bounds a run given only --duration. */
#define BENCH_BLAST_MAX_MESSAGES 1000000000ull
/* Consecutive connection failures after which a connection gives up. */
#define BENCH_BLAST_MAX_FAILURES 10
/* How long transactions in flight may still finish after the limit. */
#define BENCH_BLAST_GRACE_MS 2000
#define BENCH_BLAST_421_DELAY_MS 100
/* Most sizes one --size-dist may name, and the largest weight. */
#define BENCH_BLAST_MAX_DIST 32
#define BENCH_BLAST_MAX_WEIGHT 1000000
/* Most files --messages-dir loads. */
#define BENCH_BLAST_MAX_FILES 10000
#define BENCH_BLAST_DEFAULT_SEED 1

const char bench_blast_summary[] =
    "blast     send pipelined SMTP load to one server and report "
    "throughput and latency";

enum bench_blast_pipe {
	BENCH_BLAST_PIPE_NONE,
	BENCH_BLAST_PIPE_GROUPED,
	BENCH_BLAST_PIPE_FULL,
};

static const char *const bench_blast_pipe_names[] = {"none", "grouped", "full"};

struct bench_blast_opts {
	struct sockaddr_storage addr;
	const char *target;
	unsigned connections;
	uint64_t messages;
	double duration;
	size_t size;
	unsigned recipients;
	unsigned rcpt_domains;
	unsigned sender_domains;
	enum bench_blast_pipe pipe;
	double rate; /* 0: closed loop */
	const char *ehlo;
	int json;
	int allow_remote;

	/* --size-dist: ndist sizes, message i drawn with weight[i]. */
	size_t dist_size[BENCH_BLAST_MAX_DIST];
	uint64_t dist_weight[BENCH_BLAST_MAX_DIST];
	unsigned ndist;
	uint64_t dist_total;
	uint64_t seed;

	const char *messages_dir;
	int starttls;
};

/* A message read from --messages-dir, ready for the wire. */
struct bench_blast_file {
	char *wire;	/* CRLF, dot-stuffed, ending in ".\r\n"; owned */
	size_t len;	/* of wire */
	size_t msg_len; /* the message itself: CRLF, unstuffed */
};

/* Connection states; BB_ stands for bench_blast. */
enum bench_blast_cstate {
	BB_DOWN,
	BB_CONNECTING,
	BB_HANDSHAKE, /* TLS after STARTTLS; no SMTP lines are parsed */
	BB_GREETING,
	BB_EHLO,
	BB_STARTTLS,
	BB_READY,
	BB_QUIT,
	BB_CLOSING,
	BB_DONE,
};

/* Replies a connection waits for. */
enum bench_blast_expect {
	BB_X_RSET,
	BB_X_MAIL,
	BB_X_RCPT,
	BB_X_DATA,
	BB_X_DOT,
	BB_X_QUIT,
};

struct bench_blast;

struct bench_blast_conn {
	uv_tcp_t tcp;
	uv_connect_t connect;
	uv_write_t write;
	uv_timer_t timer; /* reconnect backoff */
	struct bench_blast *bb;
	enum bench_blast_cstate state;
	enum bench_blast_pipe pipe; /* what this session may do */
	int reconnect_ms;	    /* after close: < 0 means never */
	unsigned failures;	    /* consecutive, reset by a 250 */
	int on_idle;
	int dying; /* a 421 came: start nothing more on this session */

	/* Output: [0, winflight) belongs to libuv while wbusy. */
	char *out;
	size_t olen, ocap, winflight;
	int wbusy;

	char in[BENCH_BLAST_INBUF];
	size_t ilen;
	int caps_pipelining;
	int caps_starttls;

	/*
	 * --starttls: from the 220 to STARTTLS until the close, ssl owns
	 * two memory BIOs. Plaintext queued in out is encrypted at flush;
	 * tout holds the ciphertext of the write in flight (wbusy), tin
	 * what a read brought. Both live as long as the connection.
	 */
	SSL *ssl;
	char *tin, *tout;

	/* Ring of expected replies. */
	uint8_t *xq;
	unsigned xhead, xcount, xcap;

	/* The transaction whose commands are out (txn set). */
	int txn;
	struct bench_msg_vars vars;
	unsigned rcpt_sent, rcpt_ok;
	int mail_ok;
	int fail_class; /* first 4 or 5 seen in this transaction, or 0 */
	int need_rset;	/* the server still holds a failed transaction */

	/* The message whose final dot is out (dot_pending set). */
	int dot_pending;
	int dot_counts; /* 0 when DATA was ended with no recipient */
	unsigned pick;	/* template or file of the transaction */
	uint64_t t_dot;
};

struct bench_blast {
	struct bench_blast_opts o;
	uv_loop_t *loop;
	struct bench_msg *msgs; /* one template per size */
	unsigned nmsgs;
	struct bench_blast_file *files; /* --messages-dir, else NULL */
	unsigned nfiles;
	size_t max_len;	    /* longest body with its dot */
	size_t typical_len; /* the first message's size, for the report */
	uint64_t bodies, body_bytes;
	size_t group_max;
	struct bench_blast_conn *conns;
	struct bench_blast_conn **idle;
	unsigned nidle;
	unsigned live; /* connections not DONE */
	int stopping, finished, tty;
	uv_timer_t deadline, grace, progress, rate;
	uv_signal_t sigint;

	uint64_t t0, t_rate, last_done;
	uint64_t started, accepted, deferred, rejected, failed;
	uint64_t rcpt_ok, rcpt_bad;
	uint64_t replies[10];
	uint64_t connects, connect_failures, conn_errors, protocol_errors;
	uint64_t reconnects, max_backlog;
	uint64_t prev_accepted;
	unsigned ticks;
	struct bench_stats lat;

	SSL_CTX *tls_ctx;	 /* --starttls */
	const char *tls_version; /* of the last handshake; static */
	int no_starttls;	 /* the target did not offer it */
};

static void bench_blast_next(struct bench_blast_conn *c);
static void bench_blast_close(struct bench_blast_conn *c, int reconnect_ms);
static void bench_blast_connect(struct bench_blast_conn *c);
static void bench_blast_stop(struct bench_blast *bb);
static int bench_blast_backoff(unsigned n);

/* bench_blast_usage - print the subcommand's help. */
static void bench_blast_usage(FILE *f)
{
	fprintf(f,
		"usage: waxseal-bench blast [options]\n"
		"\n"
		"Send newsletter-like mail over persistent SMTP connections "
		"and report\n"
		"accepted messages/s and the latency from the end of DATA "
		"to its reply.\n"
		"A run needs --messages or --duration and stops at whichever "
		"comes first.\n"
		"\n"
		"  --target HOST:PORT     server (default 127.0.0.1:2525; "
		"[::1]:PORT for IPv6)\n"
		"  --allow-remote         allow a target outside 127.0.0.0/8 "
		"and ::1\n"
		"  --connections N        parallel connections (default 50)\n"
		"  --messages N           messages to send in all\n"
		"  --duration SECONDS     time limit (default 60, at most "
		"3600); what is in\n"
		"                         flight then gets 2 s to finish\n"
		"  --size BYTES           message size (default 2048)\n"
		"  --size-dist SPEC       sizes drawn by weight, "
		"BYTES:WEIGHT,...\n"
		"                         (e.g. 2048:70,20480:25,102400:5)\n"
		"  --seed N               seed of the size draw (default 1)\n"
		"  --messages-dir DIR     send the files in DIR, each a "
		"whole message,\n"
		"                         in turn, instead of the "
		"newsletter\n"
		"  --recipients N         recipients per message (default 1)\n"
		"  --rcpt-domains N       spread recipients over "
		"example0.test.. (default 1)\n"
		"  --sender-domains N     spread senders over sender0.test.. "
		"(default 1)\n"
		"  --pipelining[=MODE]    grouped (default): MAIL/RCPT/DATA in "
		"one write,\n"
		"                         body after the 354; full: also the "
		"next\n"
		"                         transaction right behind the "
		"body's dot\n"
		"  --no-pipelining        wait for every reply\n"
		"  --rate MSGS_PER_S      open loop: start messages at this "
		"rate\n"
		"                         (default: closed loop, as fast as "
		"replies come)\n"
		"  --starttls             TLS after EHLO, no certificate "
		"check; fail if\n"
		"                         the server does not offer it\n"
		"  --ehlo NAME            EHLO name (default "
		"blast.waxseal.test)\n"
		"  --json                 print the report as JSON\n"
		"  --help                 this text\n");
}

/* bench_blast_parse_u64 - parse a decimal number within [min, max]. */
static int bench_blast_parse_u64(const char *s, uint64_t min, uint64_t max,
				 uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* bench_blast_is_loopback - whether an address is 127.0.0.0/8 or ::1. */
static int bench_blast_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		const uint8_t *b = in6->sin6_addr.s6_addr;
		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			return 1;
		return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && b[12] == 127;
	}
	return 0;
}

/* bench_blast_parse_target - resolve HOST:PORT or [HOST]:PORT. */
static int bench_blast_parse_target(const char *s, struct sockaddr_storage *out)
{
	char host[256];
	const char *port;
	struct addrinfo hints = {0}, *res = NULL;
	size_t hlen;

	/* Split at the last colon, or after the brackets of an IPv6. */
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		hlen = (size_t)(rb - s - 1);
		s++;
		port = rb + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hlen = (size_t)(colon - s);
		port = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof(host) || !*port)
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';

	/* Resolved once, before the loop starts; the run never looks up. */
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if (getaddrinfo(host, port, &hints, &res) || !res)
		return -ENOENT;
	memcpy(out, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

/*
 * bench_blast_parse_dist - parse --size-dist, a comma list of
 * BYTES:WEIGHT, into o->dist_*.
 */
static int bench_blast_parse_dist(struct bench_blast_opts *o, const char *s)
{
	char item[64];
	uint64_t size, weight;
	int err;

	o->ndist = 0;
	o->dist_total = 0;
	while (*s) {
		size_t n = strcspn(s, ",");
		char *colon;

		if (n == 0 || n >= sizeof(item) ||
		    o->ndist == BENCH_BLAST_MAX_DIST)
			return -EINVAL;
		memcpy(item, s, n);
		item[n] = '\0';
		s += n;
		if (*s == ',' && !*++s)
			return -EINVAL;

		colon = strchr(item, ':');
		if (!colon)
			return -EINVAL;
		*colon = '\0';
		err =
		    bench_blast_parse_u64(item, 1, BENCH_BLAST_MAX_SIZE, &size);
		if (err)
			return err;
		err = bench_blast_parse_u64(colon + 1, 1,
					    BENCH_BLAST_MAX_WEIGHT, &weight);
		if (err)
			return err;
		o->dist_size[o->ndist] = (size_t)size;
		o->dist_weight[o->ndist] = weight;
		o->dist_total += weight;
		o->ndist++;
	}
	return o->ndist ? 0 : -EINVAL;
}

/* bench_blast_getopt - fill the options from the command line. */
static int bench_blast_getopt(struct bench_blast_opts *o, int argc, char **argv)
{
	enum {
		OPT_TARGET = 256,
		OPT_CONNECTIONS,
		OPT_MESSAGES,
		OPT_DURATION,
		OPT_SIZE,
		OPT_RECIPIENTS,
		OPT_RCPT_DOMAINS,
		OPT_SENDER_DOMAINS,
		OPT_PIPELINING,
		OPT_NO_PIPELINING,
		OPT_RATE,
		OPT_EHLO,
		OPT_JSON,
		OPT_ALLOW_REMOTE,
		OPT_HELP,
		OPT_SIZE_DIST,
		OPT_SEED,
		OPT_MESSAGES_DIR,
		OPT_STARTTLS,
	};
	static const struct option longopts[] = {
	    {"target", required_argument, NULL, OPT_TARGET},
	    {"connections", required_argument, NULL, OPT_CONNECTIONS},
	    {"messages", required_argument, NULL, OPT_MESSAGES},
	    {"duration", required_argument, NULL, OPT_DURATION},
	    {"size", required_argument, NULL, OPT_SIZE},
	    {"recipients", required_argument, NULL, OPT_RECIPIENTS},
	    {"rcpt-domains", required_argument, NULL, OPT_RCPT_DOMAINS},
	    {"sender-domains", required_argument, NULL, OPT_SENDER_DOMAINS},
	    {"pipelining", optional_argument, NULL, OPT_PIPELINING},
	    {"no-pipelining", no_argument, NULL, OPT_NO_PIPELINING},
	    {"rate", required_argument, NULL, OPT_RATE},
	    {"ehlo", required_argument, NULL, OPT_EHLO},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"allow-remote", no_argument, NULL, OPT_ALLOW_REMOTE},
	    {"help", no_argument, NULL, OPT_HELP},
	    {"size-dist", required_argument, NULL, OPT_SIZE_DIST},
	    {"seed", required_argument, NULL, OPT_SEED},
	    {"messages-dir", required_argument, NULL, OPT_MESSAGES_DIR},
	    {"starttls", no_argument, NULL, OPT_STARTTLS},
	    {NULL, 0, NULL, 0},
	};
	int have_messages = 0, have_duration = 0, ch, err, idx;
	uint64_t v;
	char *end;

	*o = (struct bench_blast_opts){
	    .target = "127.0.0.1:2525",
	    .connections = 50,
	    .duration = 60,
	    .size = 2048,
	    .recipients = 1,
	    .rcpt_domains = 1,
	    .sender_domains = 1,
	    .pipe = BENCH_BLAST_PIPE_GROUPED,
	    .ehlo = "blast.waxseal.test",
	    .seed = BENCH_BLAST_DEFAULT_SEED,
	};

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
		err = 0;
		switch (ch) {
		case OPT_TARGET:
			o->target = optarg;
			break;
		case OPT_CONNECTIONS:
			err = bench_blast_parse_u64(
			    optarg, 1, BENCH_BLAST_MAX_CONNECTIONS, &v);
			o->connections = (unsigned)v;
			break;
		case OPT_MESSAGES:
			err = bench_blast_parse_u64(
			    optarg, 1, BENCH_BLAST_MAX_MESSAGES, &v);
			o->messages = v;
			have_messages = 1;
			break;
		case OPT_DURATION:
			o->duration = strtod(optarg, &end);
			if (*end || !(o->duration > 0) ||
			    o->duration > BENCH_BLAST_MAX_DURATION)
				err = -ERANGE;
			have_duration = 1;
			break;
		case OPT_SIZE:
			err = bench_blast_parse_u64(optarg, 1,
						    BENCH_BLAST_MAX_SIZE, &v);
			o->size = (size_t)v;
			break;
		case OPT_RECIPIENTS:
			err = bench_blast_parse_u64(
			    optarg, 1, BENCH_BLAST_MAX_RECIPIENTS, &v);
			o->recipients = (unsigned)v;
			break;
		case OPT_RCPT_DOMAINS:
			err = bench_blast_parse_u64(optarg, 1, 1000000, &v);
			o->rcpt_domains = (unsigned)v;
			break;
		case OPT_SENDER_DOMAINS:
			err = bench_blast_parse_u64(optarg, 1, 1000000, &v);
			o->sender_domains = (unsigned)v;
			break;
		case OPT_PIPELINING:
			if (!optarg || !strcmp(optarg, "grouped"))
				o->pipe = BENCH_BLAST_PIPE_GROUPED;
			else if (!strcmp(optarg, "full"))
				o->pipe = BENCH_BLAST_PIPE_FULL;
			else
				err = -EINVAL;
			break;
		case OPT_NO_PIPELINING:
			o->pipe = BENCH_BLAST_PIPE_NONE;
			break;
		case OPT_RATE:
			o->rate = strtod(optarg, &end);
			if (*end || !(o->rate > 0) || o->rate > 10e6)
				err = -ERANGE;
			break;
		case OPT_EHLO:
			o->ehlo = optarg;
			if (!*optarg || strpbrk(optarg, " \r\n") ||
			    strlen(optarg) > 255)
				err = -EINVAL;
			break;
		case OPT_SIZE_DIST:
			err = bench_blast_parse_dist(o, optarg);
			break;
		case OPT_SEED:
			err = bench_blast_parse_u64(optarg, 0, UINT64_MAX,
						    &o->seed);
			break;
		case OPT_MESSAGES_DIR:
			o->messages_dir = optarg;
			break;
		case OPT_STARTTLS:
			o->starttls = 1;
			break;
		case OPT_JSON:
			o->json = 1;
			break;
		case OPT_ALLOW_REMOTE:
			o->allow_remote = 1;
			break;
		case OPT_HELP:
		case 'h':
			bench_blast_usage(stdout);
			exit(0);
		default:
			return -EINVAL;
		}
		if (err) {
			/* Name the option, given as --opt=V or --opt V. */
			fprintf(stderr,
				"waxseal-bench blast: bad value for "
				"--%s: %s\n",
				longopts[idx].name, optarg ? optarg : "");
			return err;
		}
	}
	if (optind < argc) {
		fprintf(stderr,
			"waxseal-bench blast: unexpected argument: %s\n",
			argv[optind]);
		return -EINVAL;
	}

	/* Every run is bounded by a count and a time. */
	if (!have_messages && !have_duration) {
		fprintf(stderr, "waxseal-bench blast: refusing to run without "
				"a limit: give --messages N and/or "
				"--duration SECONDS\n");
		return -EINVAL;
	}
	if (!have_messages)
		o->messages = BENCH_BLAST_MAX_MESSAGES;
	if (o->messages_dir && o->ndist) {
		fprintf(stderr, "waxseal-bench blast: --messages-dir and "
				"--size-dist exclude each other\n");
		return -EINVAL;
	}

	if (bench_blast_parse_target(o->target, &o->addr)) {
		fprintf(stderr,
			"waxseal-bench blast: bad target %s "
			"(want HOST:PORT)\n",
			o->target);
		return -EINVAL;
	}
	if (!o->allow_remote &&
	    !bench_blast_is_loopback((struct sockaddr *)&o->addr)) {
		fprintf(stderr,
			"waxseal-bench blast: refusing non-loopback "
			"target %s without --allow-remote\n",
			o->target);
		return -EPERM;
	}
	return 0;
}

/* bench_blast_budget - whether another transaction may start. */
static int bench_blast_budget(const struct bench_blast *bb)
{
	return !bb->stopping && bb->started < bb->o.messages;
}

/* bench_blast_token - open loop: whether the rate clock allows a start. */
static int bench_blast_token(struct bench_blast *bb)
{
	uint64_t due;

	if (bb->o.rate <= 0)
		return 1;
	if (!bb->t_rate)
		bb->t_rate = uv_hrtime();
	due =
	    (uint64_t)((double)(uv_hrtime() - bb->t_rate) * bb->o.rate / 1e9) +
	    1;
	if (due > bb->started && due - bb->started > bb->max_backlog)
		bb->max_backlog = due - bb->started;
	return bb->started < due;
}

/* bench_blast_outcome - count how one transaction ended. */
static void bench_blast_outcome(struct bench_blast *bb, int cls)
{
	if (cls == 2)
		bb->accepted++;
	else if (cls == 4)
		bb->deferred++;
	else if (cls == 5)
		bb->rejected++;
	else
		bb->failed++;
	bb->last_done = uv_hrtime();
}

/* bench_blast_expect - note a reply to wait for. */
static void bench_blast_expect(struct bench_blast_conn *c, int kind)
{
	/* The ring is sized for the longest pipeline we ever build. */
	c->xq[(c->xhead + c->xcount) % c->xcap] = (uint8_t)kind;
	c->xcount++;
}

/* bench_blast_append - copy bytes behind what is queued for writing. */
static int bench_blast_append(struct bench_blast_conn *c, const char *p,
			      size_t n)
{
	if (c->olen + n > c->ocap)
		return -ENOBUFS;
	memcpy(c->out + c->olen, p, n);
	c->olen += n;
	return 0;
}

static int bench_blast_tls_send(struct bench_blast_conn *c);

/* bench_blast_tls_write_cb - a write of ciphertext is done. */
static void bench_blast_tls_write_cb(uv_write_t *req, int status)
{
	struct bench_blast_conn *c = req->data;

	c->wbusy = 0;
	if (c->state == BB_CLOSING || c->state == BB_DONE ||
	    c->state == BB_DOWN)
		return;
	if (status < 0) {
		c->bb->conn_errors++;
		bench_blast_close(c, 10);
		return;
	}
	bench_blast_tls_send(c);
}

/*
 * bench_blast_tls_send - write what the TLS engine has ready, one
 * BENCH_BLAST_TLSBUF at a time; the rest waits in its memory BIO for the
 * write callback.
 */
static int bench_blast_tls_send(struct bench_blast_conn *c)
{
	uv_buf_t buf;
	int n, err;

	if (c->wbusy)
		return 0;
	n = BIO_read(SSL_get_wbio(c->ssl), c->tout, BENCH_BLAST_TLSBUF);
	if (n <= 0)
		return 0;

	/* uv_write, not try_write: the BIO already let go of the bytes. */
	buf = uv_buf_init(c->tout, (unsigned)n);
	c->write.data = c;
	err = uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1,
		       bench_blast_tls_write_cb);
	if (err) {
		c->bb->conn_errors++;
		bench_blast_close(c, 10);
		return err;
	}
	c->wbusy = 1;
	return 0;
}

/* bench_blast_tls_flush - encrypt what is queued and send it. */
static int bench_blast_tls_flush(struct bench_blast_conn *c)
{
	/* A memory BIO grows as needed, so SSL_write takes it all. */
	if (c->olen > 0) {
		if (SSL_write(c->ssl, c->out, (int)c->olen) != (int)c->olen) {
			c->bb->protocol_errors++;
			bench_blast_close(c, 10);
			return -EPROTO;
		}
		c->olen = 0;
	}
	return bench_blast_tls_send(c);
}

/* bench_blast_write_cb - a write that the kernel did not take at once. */
static void bench_blast_write_cb(uv_write_t *req, int status)
{
	struct bench_blast_conn *c = req->data;
	int err;

	c->wbusy = 0;
	if (c->state == BB_CLOSING || c->state == BB_DONE ||
	    c->state == BB_DOWN)
		return;
	if (status < 0) {
		c->bb->conn_errors++;
		bench_blast_close(c, 10);
		return;
	}

	/* The STARTTLS went out; what follows is the TLS handshake. */
	if (c->ssl) {
		c->olen = c->winflight = 0;
		bench_blast_tls_send(c);
		return;
	}

	/* Bytes appended meanwhile move to the front and go out now. */
	memmove(c->out, c->out + c->winflight, c->olen - c->winflight);
	c->olen -= c->winflight;
	c->winflight = 0;
	if (c->olen == 0)
		return;

	uv_buf_t buf = uv_buf_init(c->out, (unsigned)c->olen);
	c->winflight = c->olen;
	err = uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1,
		       bench_blast_write_cb);
	if (err) {
		c->bb->conn_errors++;
		bench_blast_close(c, 10);
		return;
	}
	c->wbusy = 1;
}

/*
 * bench_blast_flush - write what is queued: one writev-free try_write in
 * the common case, libuv's queue only for what the socket did not take.
 */
static int bench_blast_flush(struct bench_blast_conn *c)
{
	uv_buf_t buf;
	int n, err;

	if (c->ssl)
		return bench_blast_tls_flush(c);
	if (c->wbusy || c->olen == 0)
		return 0;

	buf = uv_buf_init(c->out, (unsigned)c->olen);
	n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
	if (n == (int)c->olen) {
		c->olen = 0;
		return 0;
	}
	if (n < 0 && n != UV_EAGAIN) {
		err = n;
		goto fail;
	}
	if (n < 0)
		n = 0;

	/* The rest stays in place until bench_blast_write_cb. */
	buf = uv_buf_init(c->out + n, (unsigned)(c->olen - (size_t)n));
	c->winflight = c->olen;
	c->write.data = c;
	err = uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1,
		       bench_blast_write_cb);
	if (err)
		goto fail;
	c->wbusy = 1;
	return 0;

fail:
	c->bb->conn_errors++;
	bench_blast_close(c, 10);
	return err;
}

/* bench_blast_put_cmd - queue one command line and its expectation. */
static int bench_blast_put_cmd(struct bench_blast_conn *c, int kind,
			       const char *fmt, const char *arg)
{
	char line[600];
	int n = snprintf(line, sizeof(line), fmt, arg);

	if (n < 0 || (size_t)n >= sizeof(line))
		return -EINVAL;
	bench_blast_expect(c, kind);
	return bench_blast_append(c, line, (size_t)n);
}

/* bench_blast_put_mail - queue MAIL FROM with a per-message bounce. */
static int bench_blast_put_mail(struct bench_blast_conn *c)
{
	char from[128];

	/* A VERP-style return path, as list managers use. */
	snprintf(from, sizeof(from), "bounce-%" PRIu64 "@sender%u.test",
		 c->vars.seq, c->vars.sender);
	return bench_blast_put_cmd(c, BB_X_MAIL, "MAIL FROM:<%s>\r\n", from);
}

/* bench_blast_put_rcpt - queue the next RCPT TO of the transaction. */
static int bench_blast_put_rcpt(struct bench_blast_conn *c)
{
	const struct bench_blast_opts *o = &c->bb->o;
	uint64_t r = c->vars.rcpt + c->rcpt_sent;
	char to[128];

	bench_msg_rcpt(to, sizeof(to), r, (unsigned)(r % o->rcpt_domains));
	c->rcpt_sent++;
	return bench_blast_put_cmd(c, BB_X_RCPT, "RCPT TO:<%s>\r\n", to);
}

/* bench_blast_put_group - queue a transaction's command group. */
static int bench_blast_put_group(struct bench_blast_conn *c)
{
	unsigned i;
	int err;

	/* After a transaction that failed past MAIL the server holds it. */
	if (c->need_rset) {
		c->need_rset = 0;
		err = bench_blast_put_cmd(c, BB_X_RSET, "RSET\r\n%s", "");
		if (err || c->pipe == BENCH_BLAST_PIPE_NONE)
			return err;
	}

	err = bench_blast_put_mail(c);
	if (err || c->pipe == BENCH_BLAST_PIPE_NONE)
		return err;

	for (i = 0; i < c->bb->o.recipients && !err; i++)
		err = bench_blast_put_rcpt(c);
	if (err)
		return err;
	return bench_blast_put_cmd(c, BB_X_DATA, "DATA\r\n%s", "");
}

/* bench_blast_mix - scramble a number (splitmix64's finaliser). */
static uint64_t bench_blast_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/*
 * bench_blast_pick - which template or file message seq sends. The draw
 * depends on the seed and seq alone, so a run repeats whatever order the
 * connections start their transactions in.
 */
static unsigned bench_blast_pick(const struct bench_blast *bb, uint64_t seq)
{
	const struct bench_blast_opts *o = &bb->o;
	uint64_t r;
	unsigned i;

	if (bb->files)
		return (unsigned)(seq % bb->nfiles);
	if (bb->nmsgs < 2)
		return 0;

	/* The modulo bias is below 1e-12 for weights under 1e6 each. */
	r = bench_blast_mix(o->seed ^ bench_blast_mix(seq)) % o->dist_total;
	for (i = 0; i + 1 < bb->nmsgs; i++) {
		if (r < o->dist_weight[i])
			return i;
		r -= o->dist_weight[i];
	}
	return i;
}

/* bench_blast_start_txn - begin the next message on a connection. */
static int bench_blast_start_txn(struct bench_blast_conn *c)
{
	struct bench_blast *bb = c->bb;
	uint64_t seq = bb->started++;

	c->txn = 1;
	c->vars.seq = seq;
	c->vars.rcpt = seq * bb->o.recipients;
	c->vars.domain = (unsigned)(c->vars.rcpt % bb->o.rcpt_domains);
	c->vars.sender = (unsigned)(seq % bb->o.sender_domains);
	c->pick = bench_blast_pick(bb, seq);
	c->rcpt_sent = 0;
	c->rcpt_ok = 0;
	c->mail_ok = 0;
	c->fail_class = 0;
	return bench_blast_put_group(c);
}

/* bench_blast_txn_end - a transaction ended before its body was sent. */
static void bench_blast_txn_end(struct bench_blast_conn *c, int cls)
{
	bench_blast_outcome(c->bb, cls);
	c->need_rset = c->mail_ok;
	c->txn = 0;
	bench_blast_next(c);
}

/* bench_blast_fail - remember the first failure of a transaction. */
static void bench_blast_fail(struct bench_blast_conn *c, int code)
{
	if (!c->fail_class)
		c->fail_class = code / 100;
}

/* bench_blast_on_rset - RSET reply; unpipelined, MAIL follows it. */
static void bench_blast_on_rset(struct bench_blast_conn *c, int code)
{
	(void)code;
	if (c->pipe != BENCH_BLAST_PIPE_NONE || !c->txn)
		return;
	if (bench_blast_put_mail(c) == 0)
		bench_blast_flush(c);
}

/* bench_blast_on_mail - MAIL reply. */
static void bench_blast_on_mail(struct bench_blast_conn *c, int code)
{
	if (code / 100 == 2)
		c->mail_ok = 1;
	else
		bench_blast_fail(c, code);
	if (c->pipe != BENCH_BLAST_PIPE_NONE)
		return;

	if (!c->mail_ok) {
		bench_blast_txn_end(c, c->fail_class);
		return;
	}
	if (bench_blast_put_rcpt(c) == 0)
		bench_blast_flush(c);
}

/* bench_blast_on_rcpt - RCPT reply. */
static void bench_blast_on_rcpt(struct bench_blast_conn *c, int code)
{
	if (code / 100 == 2) {
		c->rcpt_ok++;
		c->bb->rcpt_ok++;
	} else {
		c->bb->rcpt_bad++;
		bench_blast_fail(c, code);
	}
	if (c->pipe != BENCH_BLAST_PIPE_NONE)
		return;

	/* Unpipelined: next recipient, then DATA if anyone was taken. */
	if (c->rcpt_sent < c->bb->o.recipients) {
		if (bench_blast_put_rcpt(c) == 0)
			bench_blast_flush(c);
	} else if (c->rcpt_ok) {
		if (bench_blast_put_cmd(c, BB_X_DATA, "DATA\r\n%s", "") == 0)
			bench_blast_flush(c);
	} else {
		bench_blast_txn_end(c, c->fail_class);
	}
}

/* bench_blast_put_body - queue the transaction's message and its dot. */
static void bench_blast_put_body(struct bench_blast_conn *c)
{
	struct bench_blast *bb = c->bb;

	if (bb->files) {
		const struct bench_blast_file *f = &bb->files[c->pick];

		memcpy(c->out + c->olen, f->wire, f->len);
		c->olen += f->len;
		bb->body_bytes += f->msg_len;
	} else {
		size_t n = bench_msg_render(&bb->msgs[c->pick], &c->vars,
					    c->out + c->olen);

		c->olen += n;
		bb->body_bytes += n - 3;
	}
	bb->bodies++;
}

/* bench_blast_on_data - DATA reply: send the body or give up. */
static void bench_blast_on_data(struct bench_blast_conn *c, int code)
{
	struct bench_blast *bb = c->bb;
	int err;

	if (code != 354) {
		bench_blast_fail(c, code);
		bench_blast_txn_end(c, c->fail_class ? c->fail_class : 5);
		return;
	}

	/*
	 * A 354 with no recipient taken (RFC 2920 section 3.1 lets a
	 * server do that): end DATA at once; the transaction has failed.
	 */
	if (c->olen + bb->max_len > c->ocap) {
		bb->protocol_errors++;
		bench_blast_close(c, 10);
		return;
	}
	bench_blast_expect(c, BB_X_DOT);
	if (c->mail_ok && c->rcpt_ok) {
		bench_blast_put_body(c);
		c->dot_counts = 1;
	} else {
		bench_blast_append(c, ".\r\n", 3);
		bench_blast_outcome(bb, c->fail_class ? c->fail_class : 5);
		c->dot_counts = 0;
	}
	c->txn = 0;
	c->dot_pending = 1;

	/* Full pipelining: the next group rides behind the dot. */
	if (c->pipe == BENCH_BLAST_PIPE_FULL && bench_blast_budget(bb) &&
	    bench_blast_token(bb)) {
		err = bench_blast_start_txn(c);
		if (err) {
			bb->protocol_errors++;
			bench_blast_close(c, 10);
			return;
		}
	}
	if (bench_blast_flush(c) == 0)
		c->t_dot = uv_hrtime();
}

/* bench_blast_on_dot - reply to the end of data: the message's fate. */
static void bench_blast_on_dot(struct bench_blast_conn *c, int code)
{
	struct bench_blast *bb = c->bb;
	uint64_t now = uv_hrtime();

	c->dot_pending = 0;
	if (c->dot_counts) {
		bench_stats_add(&bb->lat, now - c->t_dot);
		bench_blast_outcome(bb, code / 100);
		if (code / 100 == 2)
			c->failures = 0;
	}
	bench_blast_next(c);
}

/* bench_blast_on_quit - QUIT reply: the session is over. */
static void bench_blast_on_quit(struct bench_blast_conn *c, int code)
{
	(void)code;
	bench_blast_close(c, -1);
}

typedef void bench_blast_handler_fn(struct bench_blast_conn *c, int code);

/* Handlers by expectation; indices follow enum bench_blast_expect. */
static bench_blast_handler_fn *const bench_blast_handlers[] = {
    bench_blast_on_rset, bench_blast_on_mail, bench_blast_on_rcpt,
    bench_blast_on_data, bench_blast_on_dot,  bench_blast_on_quit,
};

/* bench_blast_backoff - delay before reconnecting after n failures. */
static int bench_blast_backoff(unsigned n)
{
	return 10 << (n < 7 ? n : 7);
}

/* bench_blast_on_session - a reply inside the session. */
static void bench_blast_on_session(struct bench_blast_conn *c, int code)
{
	struct bench_blast *bb = c->bb;
	int kind;

	if (c->xcount == 0) {
		/* A 421 may come unasked, when the server shuts down. */
		if (code != 421)
			bb->protocol_errors++;
		bench_blast_close(c, BENCH_BLAST_421_DELAY_MS);
		return;
	}

	/* RFC 5321 section 3.8: after a 421 the server closes. */
	if (code == 421)
		c->dying = 1;

	kind = c->xq[c->xhead];
	c->xhead = (c->xhead + 1) % c->xcap;
	c->xcount--;
	bench_blast_handlers[kind](c, code);

	if (code == 421 && c->state != BB_CLOSING && c->state != BB_DOWN &&
	    c->state != BB_DONE)
		bench_blast_close(c, BENCH_BLAST_421_DELAY_MS);
}

/* bench_blast_ehlo - send EHLO and forget the previous capabilities. */
static void bench_blast_ehlo(struct bench_blast_conn *c)
{
	char ehlo[300];
	int n;

	n = snprintf(ehlo, sizeof(ehlo), "EHLO %s\r\n", c->bb->o.ehlo);
	c->state = BB_EHLO;
	c->caps_pipelining = 0;
	c->caps_starttls = 0;
	if (bench_blast_append(c, ehlo, (size_t)n) == 0)
		bench_blast_flush(c);
}

/* bench_blast_ehlo_kw - whether an EHLO line announces keyword kw. */
static int bench_blast_ehlo_kw(const char *text, size_t len, const char *kw)
{
	size_t n = strlen(kw);

	return len >= 4 + n && !strncasecmp(text + 4, kw, n) &&
	       (len == 4 + n || !isalnum((unsigned char)text[4 + n]));
}

/*
 * bench_blast_no_tls - --starttls and the server will not: stop the run
 * rather than measure plaintext under a TLS label.
 */
static void bench_blast_no_tls(struct bench_blast_conn *c, int code)
{
	struct bench_blast *bb = c->bb;

	if (!bb->no_starttls) {
		bb->no_starttls = 1;
		if (code)
			fprintf(stderr,
				"waxseal-bench blast: %s refused STARTTLS "
				"with %d\n",
				bb->o.target, code);
		else
			fprintf(stderr,
				"waxseal-bench blast: %s does not offer "
				"STARTTLS; not running in plaintext\n",
				bb->o.target);
	}
	bench_blast_close(c, -1);
	bench_blast_stop(bb);
}

/*
 * bench_blast_tls_start - the server said 220 to STARTTLS: begin the
 * handshake. Whatever followed the 220 in the same read is dropped
 * (RFC 3207 section 4.2: nothing from before TLS may count after it).
 */
static void bench_blast_tls_start(struct bench_blast_conn *c)
{
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
	int r;

	c->ssl = SSL_new(c->bb->tls_ctx);
	if (!c->ssl || !rbio || !wbio) {
		BIO_free(rbio);
		BIO_free(wbio);
		c->bb->protocol_errors++;
		bench_blast_close(c, 100);
		return;
	}
	SSL_set_bio(c->ssl, rbio, wbio);
	SSL_set_connect_state(c->ssl);
	c->state = BB_HANDSHAKE;
	c->ilen = 0;

	/* Produces the ClientHello, then wants the server's answer. */
	r = SSL_do_handshake(c->ssl);
	if (r != 1 && SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
		c->bb->protocol_errors++;
		bench_blast_close(c, 100);
		return;
	}
	bench_blast_tls_send(c);
}

/* bench_blast_on_line - one reply line; code is its three digits. */
static void bench_blast_on_line(struct bench_blast_conn *c, int code,
				const char *text, size_t len, int last)
{
	struct bench_blast *bb = c->bb;

	/* EHLO keywords are on every line. */
	if (c->state == BB_EHLO && bench_blast_ehlo_kw(text, len, "PIPELINING"))
		c->caps_pipelining = 1;
	if (c->state == BB_EHLO && bench_blast_ehlo_kw(text, len, "STARTTLS"))
		c->caps_starttls = 1;
	if (!last)
		return;
	bb->replies[code / 100]++;

	switch (c->state) {
	case BB_GREETING:
		if (code / 100 != 2) {
			c->failures++;
			bench_blast_close(c, bench_blast_backoff(c->failures));
			return;
		}
		bench_blast_ehlo(c);
		return;

	case BB_EHLO:
		if (code / 100 != 2) {
			bb->protocol_errors++;
			c->failures++;
			bench_blast_close(c, bench_blast_backoff(c->failures));
			return;
		}
		if (bb->o.starttls && !c->ssl) {
			if (!c->caps_starttls) {
				bench_blast_no_tls(c, 0);
				return;
			}
			c->state = BB_STARTTLS;
			if (bench_blast_append(c, "STARTTLS\r\n", 10) == 0)
				bench_blast_flush(c);
			return;
		}
		c->pipe =
		    c->caps_pipelining ? bb->o.pipe : BENCH_BLAST_PIPE_NONE;
		c->state = BB_READY;
		bench_blast_next(c);
		return;

	case BB_STARTTLS:
		if (code != 220) {
			bench_blast_no_tls(c, code);
			return;
		}
		bench_blast_tls_start(c);
		return;

	case BB_READY:
	case BB_QUIT:
		bench_blast_on_session(c, code);
		return;

	default:
		return;
	}
}

/* bench_blast_parse - split the input into reply lines. */
static void bench_blast_parse(struct bench_blast_conn *c)
{
	size_t off = 0;

	while (c->state >= BB_GREETING && c->state <= BB_QUIT) {
		char *line = c->in + off;
		char *nl = memchr(line, '\n', c->ilen - off);
		size_t len;
		int code;

		if (!nl)
			break;
		len = (size_t)(nl - line) + 1;
		off += len;

		if (len < 4 || !isdigit((unsigned char)line[0]) ||
		    !isdigit((unsigned char)line[1]) ||
		    !isdigit((unsigned char)line[2]) || line[0] < '2' ||
		    line[0] > '5') {
			c->bb->protocol_errors++;
			bench_blast_close(c, 100);
			return;
		}
		code = (line[0] - '0') * 100 + (line[1] - '0') * 10 +
		       (line[2] - '0');

		/* Text without the CRLF, for the EHLO keyword check. */
		len -= (len >= 5 && nl[-1] == '\r') ? 2 : 1;
		bench_blast_on_line(c, code, line, len, line[3] != '-');
	}

	/* A close resets the buffer; otherwise keep the partial line. */
	if (c->state >= BB_GREETING && c->state <= BB_QUIT) {
		memmove(c->in, c->in + off, c->ilen - off);
		c->ilen -= off;
	}
}

/* bench_blast_alloc_cb - read into the connection's own buffer. */
static void bench_blast_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct bench_blast_conn *c = h->data;
	(void)hint;

	if (c->ssl) {
		*buf = uv_buf_init(c->tin, BENCH_BLAST_TLSBUF);
		return;
	}
	*buf = uv_buf_init(c->in + c->ilen,
			   (unsigned)(BENCH_BLAST_INBUF - c->ilen));
}

/* bench_blast_read_end - the connection ended or failed (nread < 0). */
static void bench_blast_read_end(struct bench_blast_conn *c, ssize_t nread)
{
	/* After QUIT the server closing is the normal end. */
	if (c->state == BB_QUIT) {
		bench_blast_close(c, -1);
		return;
	}
	if (nread == UV_ENOBUFS)
		c->bb->protocol_errors++;
	else
		c->bb->conn_errors++;
	c->failures++;
	bench_blast_close(c, bench_blast_backoff(c->failures));
}

/* bench_blast_tls_up - the handshake is done: EHLO again, over TLS. */
static void bench_blast_tls_up(struct bench_blast_conn *c)
{
	c->bb->tls_version = SSL_get_version(c->ssl);
	bench_blast_ehlo(c);
}

/*
 * bench_blast_tls_read - n bytes of ciphertext are in tin: hand them to
 * the engine, finish the handshake or decrypt replies and parse them.
 */
static void bench_blast_tls_read(struct bench_blast_conn *c, size_t n)
{
	int r, e;

	if (BIO_write(SSL_get_rbio(c->ssl), c->tin, (int)n) != (int)n) {
		bench_blast_read_end(c, UV_ENOBUFS);
		return;
	}
	if (c->state == BB_HANDSHAKE) {
		r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			e = SSL_get_error(c->ssl, r);
			if (e != SSL_ERROR_WANT_READ) {
				c->bb->protocol_errors++;
				c->failures++;
				bench_blast_close(
				    c, bench_blast_backoff(c->failures));
				return;
			}
			bench_blast_tls_send(c);
			return;
		}
		bench_blast_tls_up(c);
		if (c->state != BB_EHLO)
			return;
	}

	/* Decrypt while there is room; parse may close the connection. */
	for (;;) {
		if (c->ilen == BENCH_BLAST_INBUF) {
			bench_blast_read_end(c, UV_ENOBUFS);
			return;
		}
		r = SSL_read(c->ssl, c->in + c->ilen,
			     (int)(BENCH_BLAST_INBUF - c->ilen));
		if (r <= 0)
			break;
		c->ilen += (size_t)r;
		bench_blast_parse(c);
		if (!c->ssl || c->state < BB_GREETING || c->state > BB_QUIT)
			return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_ZERO_RETURN) {
		bench_blast_read_end(c, UV_EOF);
		return;
	}
	if (e != SSL_ERROR_WANT_READ) {
		bench_blast_read_end(c, UV_EPROTO);
		return;
	}
	bench_blast_tls_send(c);
}

/* bench_blast_read_cb - replies arrived, or the connection ended. */
static void bench_blast_read_cb(uv_stream_t *s, ssize_t nread,
				const uv_buf_t *buf)
{
	struct bench_blast_conn *c = s->data;
	(void)buf;

	if (nread == 0)
		return;
	if (nread > 0 && c->ssl) {
		bench_blast_tls_read(c, (size_t)nread);
		return;
	}
	if (nread < 0) {
		bench_blast_read_end(c, nread);
		return;
	}
	c->ilen += (size_t)nread;
	bench_blast_parse(c);
}

/* bench_blast_connect_cb - TCP handshake done or failed. */
static void bench_blast_connect_cb(uv_connect_t *req, int status)
{
	struct bench_blast_conn *c = req->data;

	if (status == UV_ECANCELED || c->state != BB_CONNECTING)
		return;
	if (status < 0) {
		c->bb->connect_failures++;
		c->failures++;
		bench_blast_close(c, bench_blast_backoff(c->failures));
		return;
	}

	c->bb->connects++;
	c->state = BB_GREETING;
	uv_tcp_nodelay(&c->tcp, 1);
	if (uv_read_start((uv_stream_t *)&c->tcp, bench_blast_alloc_cb,
			  bench_blast_read_cb)) {
		c->bb->conn_errors++;
		bench_blast_close(c, 10);
	}
}

/* bench_blast_finish - every connection is done: close the timers. */
static void bench_blast_finish(struct bench_blast *bb)
{
	unsigned i;

	if (bb->finished)
		return;
	bb->finished = 1;
	uv_close((uv_handle_t *)&bb->deadline, NULL);
	uv_close((uv_handle_t *)&bb->grace, NULL);
	uv_close((uv_handle_t *)&bb->progress, NULL);
	uv_close((uv_handle_t *)&bb->rate, NULL);
	uv_close((uv_handle_t *)&bb->sigint, NULL);
	for (i = 0; i < bb->o.connections; i++)
		uv_close((uv_handle_t *)&bb->conns[i].timer, NULL);
}

/* bench_blast_done - a connection will not come back. */
static void bench_blast_done(struct bench_blast_conn *c)
{
	c->state = BB_DONE;
	if (--c->bb->live == 0)
		bench_blast_finish(c->bb);
}

/* bench_blast_backoff_cb - time to reconnect. */
static void bench_blast_backoff_cb(uv_timer_t *t)
{
	struct bench_blast_conn *c = t->data;

	if (!bench_blast_budget(c->bb)) {
		bench_blast_done(c);
		return;
	}
	c->bb->reconnects++;
	bench_blast_connect(c);
}

/* bench_blast_close_cb - the socket is closed: reconnect or finish. */
static void bench_blast_close_cb(uv_handle_t *h)
{
	struct bench_blast_conn *c = h->data;

	if (c->reconnect_ms >= 0 && bench_blast_budget(c->bb) &&
	    c->failures < BENCH_BLAST_MAX_FAILURES) {
		c->state = BB_DOWN;
		uv_timer_start(&c->timer, bench_blast_backoff_cb,
			       (uint64_t)c->reconnect_ms, 0);
		return;
	}
	bench_blast_done(c);
}

/* bench_blast_unidle - take a connection off the idle list. */
static void bench_blast_unidle(struct bench_blast_conn *c)
{
	struct bench_blast *bb = c->bb;
	unsigned i;

	if (!c->on_idle)
		return;
	for (i = 0; i < bb->nidle; i++)
		if (bb->idle[i] == c) {
			bb->idle[i] = bb->idle[--bb->nidle];
			break;
		}
	c->on_idle = 0;
}

/*
 * bench_blast_close - close a connection; what was in flight counts as
 * failed (or by the class of a failure already seen). reconnect_ms < 0:
 * never reconnect.
 */
static void bench_blast_close(struct bench_blast_conn *c, int reconnect_ms)
{
	struct bench_blast *bb = c->bb;

	if (c->state == BB_CLOSING || c->state == BB_DONE)
		return;
	if (c->state == BB_DOWN) {
		uv_timer_stop(&c->timer);
		bench_blast_done(c);
		return;
	}

	if (c->dot_pending)
		bench_blast_outcome(bb, 0);
	if (c->txn)
		bench_blast_outcome(bb, c->fail_class);
	c->txn = 0;
	c->dot_pending = 0;
	c->need_rset = 0;
	c->xcount = 0;
	c->ilen = 0;
	c->olen = 0;
	bench_blast_unidle(c);

	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}

	c->reconnect_ms = reconnect_ms;
	c->state = BB_CLOSING;
	uv_close((uv_handle_t *)&c->tcp, bench_blast_close_cb);
}

/* bench_blast_connect - open a connection to the target. */
static void bench_blast_connect(struct bench_blast_conn *c)
{
	int err;

	uv_tcp_init(c->bb->loop, &c->tcp);
	c->tcp.data = c;
	c->connect.data = c;
	c->state = BB_CONNECTING;
	c->dying = 0;
	err = uv_tcp_connect(&c->connect, &c->tcp,
			     (const struct sockaddr *)&c->bb->o.addr,
			     bench_blast_connect_cb);
	if (err) {
		c->bb->connect_failures++;
		c->failures++;
		bench_blast_close(c, bench_blast_backoff(c->failures));
	}
}

/* bench_blast_quit - end the session politely. */
static void bench_blast_quit(struct bench_blast_conn *c)
{
	bench_blast_unidle(c);
	c->state = BB_QUIT;
	if (bench_blast_put_cmd(c, BB_X_QUIT, "QUIT\r\n%s", "") == 0)
		bench_blast_flush(c);
}

/* bench_blast_next - a connection is free: start, wait or quit. */
static void bench_blast_next(struct bench_blast_conn *c)
{
	struct bench_blast *bb = c->bb;

	if (c->state != BB_READY || c->txn || c->dot_pending || c->dying)
		return;
	if (!bench_blast_budget(bb)) {
		bench_blast_quit(c);
		return;
	}
	if (!bench_blast_token(bb)) {
		if (!c->on_idle) {
			bb->idle[bb->nidle++] = c;
			c->on_idle = 1;
		}
		return;
	}
	if (bench_blast_start_txn(c)) {
		bb->protocol_errors++;
		bench_blast_close(c, 10);
		return;
	}
	bench_blast_flush(c);
}

/* bench_blast_rate_cb - open loop tick: hand out starts to idle ones. */
static void bench_blast_rate_cb(uv_timer_t *t)
{
	struct bench_blast *bb = t->data;

	while (bb->nidle > 0 &&
	       (!bench_blast_budget(bb) || bench_blast_token(bb))) {
		struct bench_blast_conn *c = bb->idle[--bb->nidle];

		c->on_idle = 0;
		bench_blast_next(c);
	}
}

/* bench_blast_grace_cb - the grace after the limit is over. */
static void bench_blast_grace_cb(uv_timer_t *t)
{
	struct bench_blast *bb = t->data;
	unsigned i;

	for (i = 0; i < bb->o.connections; i++)
		bench_blast_close(&bb->conns[i], -1);
}

/* bench_blast_stop - time is up: start nothing, let in-flight finish. */
static void bench_blast_stop(struct bench_blast *bb)
{
	unsigned i;

	if (bb->stopping)
		return;
	bb->stopping = 1;
	uv_timer_start(&bb->grace, bench_blast_grace_cb, BENCH_BLAST_GRACE_MS,
		       0);

	for (i = 0; i < bb->o.connections; i++) {
		struct bench_blast_conn *c = &bb->conns[i];

		if (c->state == BB_READY)
			bench_blast_next(c);
		else if (c->state != BB_QUIT)
			bench_blast_close(c, -1);
	}
}

/* bench_blast_deadline_cb - the time limit. */
static void bench_blast_deadline_cb(uv_timer_t *t)
{
	bench_blast_stop(t->data);
}

/* bench_blast_sigint_cb - ^C: stop like at the limit; twice: now. */
static void bench_blast_sigint_cb(uv_signal_t *s, int signum)
{
	struct bench_blast *bb = s->data;
	(void)signum;

	if (bb->stopping)
		bench_blast_grace_cb(&bb->grace);
	else
		bench_blast_stop(bb);
}

/* bench_blast_progress_cb - once a second, a progress line. */
static void bench_blast_progress_cb(uv_timer_t *t)
{
	struct bench_blast *bb = t->data;
	double secs = (double)(uv_hrtime() - bb->t0) / 1e9;
	uint64_t delta = bb->accepted - bb->prev_accepted;

	bb->prev_accepted = bb->accepted;
	bb->ticks++;

	/* A log file gets one line every 5 s, a terminal one line kept. */
	if (!bb->tty && bb->ticks % 5)
		return;
	fprintf(stderr,
		"%sblast %5.0fs attempted %" PRIu64 " accepted %" PRIu64
		" (%" PRIu64 "/s) 4xx %" PRIu64 " 5xx %" PRIu64
		" errors %" PRIu64 " connections %u%s",
		bb->tty ? "\r" : "", secs, bb->started, bb->accepted, delta,
		bb->deferred, bb->rejected,
		bb->failed + bb->conn_errors + bb->connect_failures, bb->live,
		bb->tty ? "   " : "\n");
}

/* bench_blast_mean_size - mean size of the message bodies sent. */
static double bench_blast_mean_size(const struct bench_blast *bb)
{
	return bb->bodies ? (double)bb->body_bytes / (double)bb->bodies : 0.0;
}

/* bench_blast_json - the report as one JSON object. */
static void bench_blast_json(const struct bench_blast *bb, double elapsed)
{
	const struct bench_blast_opts *o = &bb->o;
	const struct bench_stats *l = &bb->lat;

	printf("{\"tool\": \"waxseal-bench blast\", \"target\": \"%s\", "
	       "\"connections\": %u, \"pipelining\": \"%s\", "
	       "\"rate\": %.1f, \"message_bytes\": %zu, "
	       "\"recipients_per_message\": %u,\n",
	       o->target, o->connections, bench_blast_pipe_names[o->pipe],
	       o->rate, bb->typical_len, o->recipients);
	printf(" \"messages\": {\"attempted\": %" PRIu64
	       ", \"accepted\": %" PRIu64 ", \"deferred\": %" PRIu64
	       ", \"rejected\": %" PRIu64 ", \"failed\": %" PRIu64 "},\n",
	       bb->started, bb->accepted, bb->deferred, bb->rejected,
	       bb->failed);
	printf(" \"replies\": {\"2xx\": %" PRIu64 ", \"4xx\": %" PRIu64
	       ", \"5xx\": %" PRIu64 "},\n",
	       bb->accepted, bb->deferred, bb->rejected);
	printf(" \"all_replies\": {\"2xx\": %" PRIu64 ", \"3xx\": %" PRIu64
	       ", \"4xx\": %" PRIu64 ", \"5xx\": %" PRIu64 "},\n",
	       bb->replies[2], bb->replies[3], bb->replies[4], bb->replies[5]);
	printf(" \"recipients\": {\"accepted\": %" PRIu64
	       ", \"refused\": %" PRIu64 "},\n",
	       bb->rcpt_ok, bb->rcpt_bad);
	printf(" \"errors\": {\"connect_failures\": %" PRIu64
	       ", \"connection_errors\": %" PRIu64
	       ", \"protocol_errors\": %" PRIu64 ", \"reconnects\": %" PRIu64
	       ", \"connects\": %" PRIu64 "},\n",
	       bb->connect_failures, bb->conn_errors, bb->protocol_errors,
	       bb->reconnects, bb->connects);
	printf(" \"bytes_sent\": %" PRIu64 ", \"mean_message_bytes\": %.1f, "
	       "\"seed\": %" PRIu64 ", \"tls\": %s%s%s,\n",
	       bb->body_bytes, bench_blast_mean_size(bb), o->seed,
	       bb->tls_version ? "\"" : "",
	       bb->tls_version ? bb->tls_version : "null",
	       bb->tls_version ? "\"" : "");
	printf(" \"elapsed_s\": %.6f, \"accepted_per_s\": %.1f, "
	       "\"open_loop_max_backlog\": %" PRIu64 ",\n",
	       elapsed, elapsed > 0 ? (double)bb->accepted / elapsed : 0.0,
	       bb->max_backlog);
	printf(" \"latency_ms\": {\"from\": \"end of DATA to reply\", "
	       "\"count\": %" PRIu64 ", \"mean\": %.3f, \"p50\": %.3f, "
	       "\"p90\": %.3f, \"p99\": %.3f, \"max\": %.3f}}\n",
	       l->n, bench_stats_mean(l) / 1e6,
	       (double)bench_stats_quantile(l, 0.50) / 1e6,
	       (double)bench_stats_quantile(l, 0.90) / 1e6,
	       (double)bench_stats_quantile(l, 0.99) / 1e6,
	       (double)l->max / 1e6);
}

/* bench_blast_text - the report for people. */
static void bench_blast_text(const struct bench_blast *bb, double elapsed)
{
	const struct bench_blast_opts *o = &bb->o;
	const struct bench_stats *l = &bb->lat;

	printf("target      %s, %u connections, pipelining %s, %zu-byte "
	       "messages, %u recipient(s)",
	       o->target, o->connections, bench_blast_pipe_names[o->pipe],
	       bb->typical_len, o->recipients);
	if (o->rate > 0)
		printf(", open loop at %.0f msgs/s", o->rate);
	printf("\nmessages    attempted %" PRIu64 "  accepted %" PRIu64
	       "  deferred %" PRIu64 "  rejected %" PRIu64 "  failed %" PRIu64
	       "\n",
	       bb->started, bb->accepted, bb->deferred, bb->rejected,
	       bb->failed);
	printf("replies     2xx %" PRIu64 "  4xx %" PRIu64 "  5xx %" PRIu64
	       "   (all replies: 2xx %" PRIu64 " 3xx %" PRIu64 " 4xx %" PRIu64
	       " 5xx %" PRIu64 ")\n",
	       bb->accepted, bb->deferred, bb->rejected, bb->replies[2],
	       bb->replies[3], bb->replies[4], bb->replies[5]);
	printf("errors      connect failures %" PRIu64 "  connection %" PRIu64
	       "  protocol %" PRIu64 "  reconnects %" PRIu64 "\n",
	       bb->connect_failures, bb->conn_errors, bb->protocol_errors,
	       bb->reconnects);
	if (o->starttls)
		printf("tls         %s, no certificate check\n",
		       bb->tls_version ? bb->tls_version : "none");
	printf("bytes       %" PRIu64 " sent in %" PRIu64 " messages, "
	       "mean %.1f bytes\n",
	       bb->body_bytes, bb->bodies, bench_blast_mean_size(bb));
	printf("elapsed     %.3f s  accepted %.1f msgs/s\n", elapsed,
	       elapsed > 0 ? (double)bb->accepted / elapsed : 0.0);
	printf("latency     end of DATA to reply, %" PRIu64 " samples: "
	       "p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms\n",
	       l->n, (double)bench_stats_quantile(l, 0.50) / 1e6,
	       (double)bench_stats_quantile(l, 0.90) / 1e6,
	       (double)bench_stats_quantile(l, 0.99) / 1e6,
	       (double)l->max / 1e6);
}

/* bench_blast_nofile - make room for one descriptor per connection. */
static void bench_blast_nofile(unsigned connections)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= connections + 64)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max > connections + 64)
		rl.rlim_cur = connections + 64;
	setrlimit(RLIMIT_NOFILE, &rl);
}

/*
 * bench_blast_wire - turn a message read from a file into what DATA
 * sends: LF or CRLF line ends made CRLF, lines starting with a dot
 * doubled (RFC 5321 section 4.5.2), a missing last line end added, and
 * the ".\r\n" that ends DATA. Returns 0 or -ENOMEM.
 */
static int bench_blast_wire(struct bench_blast_file *f, const char *p, size_t n)
{
	size_t i = 0, o = 0;
	char *w;

	/* Each byte grows to at most 3 (".\n" -> "..\r\n"), plus 5. */
	w = malloc(3 * n + 5);
	if (!w)
		return -ENOMEM;
	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t end = nl ? (size_t)(nl - p) : n;
		size_t len = end - i;

		if (len > 0 && p[i + len - 1] == '\r')
			len--;
		if (len > 0 && p[i] == '.')
			w[o++] = '.';
		memcpy(w + o, p + i, len);
		o += len;
		w[o++] = '\r';
		w[o++] = '\n';
		f->msg_len += len + 2;
		i = nl ? end + 1 : n;
	}
	memcpy(w + o, ".\r\n", 3);
	f->wire = w;
	f->len = o + 3;
	return 0;
}

/* bench_blast_read_file - read one regular file of at most max bytes. */
static int bench_blast_read_file(int dfd, const char *name, char **out,
				 size_t *outlen)
{
	struct stat st;
	size_t got = 0;
	char *p = NULL;
	int fd, err;

	fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		err = -errno;
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		err = -EISDIR;
		goto fail;
	}
	if (st.st_size > (off_t)BENCH_BLAST_MAX_SIZE) {
		err = -EFBIG;
		goto fail;
	}
	p = malloc((size_t)st.st_size + 1);
	if (!p) {
		err = -ENOMEM;
		goto fail;
	}

	/* Read what fstat promised; a file that grows meanwhile is cut. */
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, p + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			goto fail;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*out = p;
	*outlen = got;
	return 0;

fail:
	free(p);
	close(fd);
	return err;
}

/* bench_blast_file_filter - scandir filter: skip dot files. */
static int bench_blast_file_filter(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/*
 * bench_blast_load_dir - read every regular file of --messages-dir, in
 * name order, into bb->files. Prints what went wrong; returns 0 or a
 * negative errno (-ENOENT for a directory with no message in it).
 */
static int bench_blast_load_dir(struct bench_blast *bb)
{
	const char *dir = bb->o.messages_dir;
	struct dirent **names = NULL;
	int n, i, dfd, err = 0;

	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		err = -errno;
		fprintf(stderr, "waxseal-bench blast: cannot read %s: %s\n",
			dir, strerror(-err));
		return err;
	}
	n = scandir(dir, &names, bench_blast_file_filter, alphasort);
	if (n < 0) {
		err = -errno;
		fprintf(stderr, "waxseal-bench blast: cannot read %s: %s\n",
			dir, strerror(-err));
		close(dfd);
		return err;
	}
	bb->files = calloc((size_t)n + 1, sizeof(*bb->files));
	if (!bb->files)
		err = -ENOMEM;

	for (i = 0; i < n && !err; i++) {
		struct bench_blast_file *f = &bb->files[bb->nfiles];
		char *p = NULL;
		size_t len = 0;

		err = bench_blast_read_file(dfd, names[i]->d_name, &p, &len);
		if (err == -EISDIR || err == -ELOOP) {
			/* Not a regular file (ELOOP: a symlink): skip it. */
			err = 0;
			continue;
		}
		if (err) {
			fprintf(stderr, "waxseal-bench blast: %s/%s: %s%s\n",
				dir, names[i]->d_name, strerror(-err),
				err == -EFBIG ? " (more than 10 MB)" : "");
			break;
		}
		err = bench_blast_wire(f, p, len);
		free(p);
		if (!err && ++bb->nfiles == BENCH_BLAST_MAX_FILES)
			break;
	}
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	close(dfd);

	if (!err && bb->nfiles == 0) {
		fprintf(stderr,
			"waxseal-bench blast: %s holds no message file\n", dir);
		err = -ENOENT;
	}
	return err;
}

/*
 * bench_blast_messages - prepare what the run sends: the files of
 * --messages-dir, one template per --size-dist size, or one of --size.
 */
static int bench_blast_messages(struct bench_blast *bb)
{
	const struct bench_blast_opts *o = &bb->o;
	unsigned i;
	int err;

	if (o->messages_dir) {
		err = bench_blast_load_dir(bb);
		if (err)
			return err;
		for (i = 0; i < bb->nfiles; i++)
			if (bb->files[i].len > bb->max_len)
				bb->max_len = bb->files[i].len;
		bb->typical_len = bb->files[0].msg_len;
		return 0;
	}

	bb->nmsgs = o->ndist ? o->ndist : 1;
	bb->msgs = calloc(bb->nmsgs, sizeof(*bb->msgs));
	if (!bb->msgs)
		return -ENOMEM;
	for (i = 0; i < bb->nmsgs; i++) {
		size_t size = o->ndist ? o->dist_size[i] : o->size;

		err = bench_msg_init(&bb->msgs[i], size, uv_hrtime());
		if (err)
			return err;
		if (bb->msgs[i].max_len > bb->max_len)
			bb->max_len = bb->msgs[i].max_len;
	}
	bb->typical_len = bb->msgs[0].typical_len;
	return 0;
}

/* bench_blast_setup - allocate everything a run needs, once. */
static int bench_blast_setup(struct bench_blast *bb)
{
	const struct bench_blast_opts *o = &bb->o;
	unsigned i;
	int err;

	/* RSET, MAIL, every RCPT and DATA, each line at most 600 bytes. */
	bb->group_max = (size_t)(o->recipients + 3) * 600;

	/* A load generator on loopback: no certificate is checked. */
	if (o->starttls) {
		bb->tls_ctx = SSL_CTX_new(TLS_method());
		if (!bb->tls_ctx) {
			err = -ENOMEM;
			goto fail;
		}
		SSL_CTX_set_verify(bb->tls_ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_min_proto_version(bb->tls_ctx, TLS1_2_VERSION);
	}

	bb->conns = calloc(o->connections, sizeof(*bb->conns));
	bb->idle = calloc(o->connections, sizeof(*bb->idle));
	if (!bb->conns || !bb->idle) {
		err = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < o->connections; i++) {
		struct bench_blast_conn *c = &bb->conns[i];

		/*
		 * Room for one write in flight and one queued behind it,
		 * each at most a message, its dot and a command group.
		 */
		c->bb = bb;
		c->ocap = 2 * (bb->max_len + 2 * bb->group_max);
		c->out = malloc(c->ocap);
		c->xcap = o->recipients + 8;
		c->xq = malloc(c->xcap);
		if (o->starttls) {
			c->tin = malloc(BENCH_BLAST_TLSBUF);
			c->tout = malloc(BENCH_BLAST_TLSBUF);
		}
		if (!c->out || !c->xq ||
		    (o->starttls && (!c->tin || !c->tout))) {
			err = -ENOMEM;
			goto fail;
		}
		uv_timer_init(bb->loop, &c->timer);
		c->timer.data = c;
	}
	return 0;

fail:
	return err;
}

/* bench_blast_teardown - release what bench_blast_setup allocated. */
static void bench_blast_teardown(struct bench_blast *bb)
{
	unsigned i;

	for (i = 0; bb->conns && i < bb->o.connections; i++) {
		SSL_free(bb->conns[i].ssl);
		free(bb->conns[i].out);
		free(bb->conns[i].xq);
		free(bb->conns[i].tin);
		free(bb->conns[i].tout);
	}
	SSL_CTX_free(bb->tls_ctx);
	free(bb->conns);
	free(bb->idle);
	for (i = 0; bb->msgs && i < bb->nmsgs; i++)
		bench_msg_free(&bb->msgs[i]);
	free(bb->msgs);
	for (i = 0; bb->files && i < bb->nfiles; i++)
		free(bb->files[i].wire);
	free(bb->files);
}

/* bench_blast_main - run `waxseal-bench blast`. */
int bench_blast_main(int argc, char **argv)
{
	static struct bench_blast bb;
	uint64_t end;
	double elapsed;
	unsigned i;
	int err;

	if (bench_blast_getopt(&bb.o, argc, argv))
		return 2;
	bench_blast_nofile(bb.o.connections);
	signal(SIGPIPE, SIG_IGN);

	/* A directory with nothing to send is a usage error. */
	err = bench_blast_messages(&bb);
	if (err) {
		if (err == -ENOMEM)
			fprintf(stderr, "waxseal-bench blast: setup: %s\n",
				strerror(-err));
		bench_blast_teardown(&bb);
		return err == -ENOMEM ? 1 : 2;
	}

	bb.loop = uv_default_loop();
	bench_stats_init(&bb.lat);
	err = bench_blast_setup(&bb);
	if (err) {
		fprintf(stderr, "waxseal-bench blast: setup: %s\n",
			strerror(-err));
		bench_blast_teardown(&bb);
		return 1;
	}
	bb.tty = isatty(STDERR_FILENO);

	uv_timer_init(bb.loop, &bb.deadline);
	uv_timer_init(bb.loop, &bb.grace);
	uv_timer_init(bb.loop, &bb.progress);
	uv_timer_init(bb.loop, &bb.rate);
	uv_signal_init(bb.loop, &bb.sigint);
	bb.deadline.data = bb.grace.data = bb.progress.data = &bb;
	bb.rate.data = bb.sigint.data = &bb;
	uv_timer_start(&bb.deadline, bench_blast_deadline_cb,
		       (uint64_t)(bb.o.duration * 1000), 0);
	uv_timer_start(&bb.progress, bench_blast_progress_cb, 1000, 1000);
	if (bb.o.rate > 0)
		uv_timer_start(&bb.rate, bench_blast_rate_cb, 1, 1);
	uv_signal_start(&bb.sigint, bench_blast_sigint_cb, SIGINT);

	/* All connections start together; the clock starts with them. */
	bb.t0 = uv_hrtime();
	bb.live = bb.o.connections;
	for (i = 0; i < bb.o.connections; i++)
		bench_blast_connect(&bb.conns[i]);
	uv_run(bb.loop, UV_RUN_DEFAULT);

	end = bb.last_done ? bb.last_done : uv_hrtime();
	elapsed = (double)(end - bb.t0) / 1e9;
	if (bb.tty && bb.ticks)
		fputc('\n', stderr);
	if (bb.o.json)
		bench_blast_json(&bb, elapsed);
	else
		bench_blast_text(&bb, elapsed);
	fflush(stdout);

	uv_loop_close(bb.loop);
	bench_blast_teardown(&bb);
	return bb.accepted == 0 || bb.no_starttls ? 1 : 0;
}
