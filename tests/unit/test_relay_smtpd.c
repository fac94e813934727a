/*
 * test_relay_smtpd - scripted SMTP conversations with the server, over a
 * memory socket and a real spool in a temporary directory.
 *
 * A script (tests/data/smtpd/NAME.smtp) is read line by line:
 *	# text          a comment
 *	= name = value  a configuration line, before the first exchange
 *	@ ADDRESS       the client's IPv4 address (default 127.0.0.1)
 *	> text          the client sends text and CRLF (">" alone: CRLF)
 *	>> text         the client sends text as is; \r \n \t \0 \\ and
 *	                \xHH are escapes
 *	< text          the next reply line must be exactly text
 *	<~ text         the next reply line must start with text
 *	<. text         skip reply lines until one that starts with text
 *	! closed        the server must have closed the connection
 *	! queued N      the spool must hold N messages
 *	! stored TEXT   the last queued message must contain TEXT
 * Client text is sent when the script first waits for a reply, so every
 * line between two replies goes out in one read, as a pipelining client
 * would send it.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "relay/relay_io.h"
#include "relay/relay_log.h"
#include "relay/relay_smtpd.h"
#include "sign/sign.h"

struct script_run {
	uv_loop_t loop;
	struct relay_io *io;
	struct queue_spool *spool;
	struct sign_pool *pool;
	struct relay_smtpd *srv;
	struct relay_sock *sock;
	uv_poll_t pool_poll;
	char dir[64];

	char *out; /* server output not yet matched */
	size_t outlen;
	char *in; /* client bytes not yet sent */
	size_t inlen;
	char last_id[QUEUE_ID_LEN + 1];
};

/* script_sink - the server's output. */
static void script_sink(void *arg, const char *buf, size_t len)
{
	struct script_run *r = arg;

	r->out = realloc(r->out, r->outlen + len + 1);
	cr_assert(r->out != NULL);
	memcpy(r->out + r->outlen, buf, len);
	r->outlen += len;
	r->out[r->outlen] = '\0';
}

/* script_prepare - group commit, as the daemon does it. */
static void script_prepare(void *arg)
{
	struct script_run *r = arg;

	queue_spool_flush(r->spool);
}

/* script_pool_cb - finished sign jobs. */
static void script_pool_cb(uv_poll_t *h, int status, int events)
{
	struct script_run *r = h->data;

	sign_pool_reap(r->pool);
}

/* script_settle - run the loop until the server has nothing left to do. */
static void script_settle(struct script_run *r)
{
	int i;

	for (i = 0; i < 500 && !queue_spool_idle(r->spool); i++)
		uv_run(&r->loop, UV_RUN_ONCE);
	for (i = 0; i < 8; i++)
		uv_run(&r->loop, UV_RUN_NOWAIT);
}

/* script_send - hand the pending client bytes to the server. */
static void script_send(struct script_run *r)
{
	if (r->inlen == 0)
		return;
	if (relay_sock_memory_open(r->sock))
		relay_sock_inject(r->sock, r->in, r->inlen);
	r->inlen = 0;
	script_settle(r);
}

/* script_add - queue client bytes. */
static void script_add(struct script_run *r, const char *p, size_t n)
{
	r->in = realloc(r->in, r->inlen + n + 1);
	cr_assert(r->in != NULL);
	memcpy(r->in + r->inlen, p, n);
	r->inlen += n;
}

/* script_unescape - \r \n \t \0 \\ \xHH in place; the new length. */
static size_t script_unescape(char *s)
{
	char *w = s, *p = s;

	while (*p) {
		if (*p != '\\' || p[1] == '\0') {
			*w++ = *p++;
			continue;
		}
		p++;
		switch (*p) {
		case 'r':
			*w++ = '\r';
			p++;
			break;
		case 'n':
			*w++ = '\n';
			p++;
			break;
		case 't':
			*w++ = '\t';
			p++;
			break;
		case '0':
			*w++ = '\0';
			p++;
			break;
		case 'x': {
			char hex[3] = {p[1], p[2], 0};

			*w++ = (char)strtol(hex, NULL, 16);
			p += 3;
			break;
		}
		default:
			*w++ = *p++;
			break;
		}
	}
	return (size_t)(w - s);
}

/* script_reply - take the next reply line off the output, or NULL. */
static char *script_reply(struct script_run *r)
{
	char *nl = r->out ? memchr(r->out, '\n', r->outlen) : NULL;
	size_t n;
	char *line;

	if (nl == NULL)
		return NULL;
	n = (size_t)(nl - r->out);
	line = strndup(r->out, n > 0 && r->out[n - 1] == '\r' ? n - 1 : n);
	memmove(r->out, nl + 1, r->outlen - n - 1);
	r->outlen -= n + 1;
	r->out[r->outlen] = '\0';
	return line;
}

/* script_last_cb - remember the newest message's ID. */
static int script_last_cb(void *arg, const struct queue_msg *m)
{
	struct script_run *r = arg;

	memcpy(r->last_id, m->id, sizeof(r->last_id));
	return 0;
}

/* script_start - server, spool and client connection for one script. */
static void script_start(struct script_run *r, const char *conftext,
			 uint32_t client)
{
	struct queue_limits lim = {.segment_size = 1 << 20};
	struct relay_gen *g = calloc(1, sizeof(*g));
	struct sockaddr_in peer;
	const char *why;
	char err[512];

	cr_assert(g != NULL);
	snprintf(r->dir, sizeof(r->dir), "/tmp/waxseal-smtpd-XXXXXX");
	cr_assert(mkdtemp(r->dir) != NULL);
	uv_loop_init(&r->loop);
	cr_assert(relay_io_new(&r->io, &r->loop, CONF_IO_LIBUV, &why) == 0);
	cr_assert(queue_spool_open(&r->spool, r->dir, &lim,
				   relay_io_file(r->io), err, sizeof(err)) == 0,
		  "%s", err);
	relay_io_on_prepare(r->io, script_prepare, r);

	g->refs = 1;
	cr_assert(conf_parse_buf(&g->conf, "script.conf", conftext,
				 strlen(conftext), err, sizeof(err)) == 0,
		  "%s", err);
	cr_assert(sign_keys_load(&g->keys, &g->conf, err, sizeof(err)) == 0,
		  "%s", err);
	relay_log_level = CONF_LOG_ERROR;
	r->pool = sign_pool_new(1);
	cr_assert(r->pool != NULL);
	uv_poll_init(&r->loop, &r->pool_poll, sign_pool_fd(r->pool));
	r->pool_poll.data = r;
	uv_poll_start(&r->pool_poll, UV_READABLE, script_pool_cb);
	r->srv = relay_smtpd_new(&r->loop, r->spool, r->pool, g);
	cr_assert(r->srv != NULL);

	memset(&peer, 0, sizeof(peer));
	peer.sin_family = AF_INET;
	peer.sin_addr.s_addr = htonl(client);
	r->sock =
	    relay_sock_memory(r->io, (struct sockaddr *)&peer, script_sink, r);
	cr_assert(r->sock != NULL);
	relay_smtpd_accept_cb(r->srv, r->sock);
	script_settle(r);
}

/* script_walk_cb - close what is left at the end. */
static void script_walk_cb(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* script_stop - end the connection and check that nothing is left. */
static void script_stop(struct script_run *r)
{
	char cmd[128];
	int i;

	if (relay_sock_memory_open(r->sock))
		relay_sock_inject_eof(r->sock);
	for (i = 0; i < 100 && relay_sock_memory_open(r->sock); i++)
		uv_run(&r->loop, UV_RUN_ONCE);
	cr_assert(!relay_sock_memory_open(r->sock),
		  "the session did not close after the client left");
	relay_sock_memory_free(r->sock);
	script_settle(r);

	uv_poll_stop(&r->pool_poll);
	sign_pool_free(r->pool);
	relay_smtpd_free(r->srv);
	queue_spool_close(r->spool);
	relay_io_free(r->io);
	uv_walk(&r->loop, script_walk_cb, NULL);
	uv_run(&r->loop, UV_RUN_DEFAULT);
	cr_assert(uv_loop_close(&r->loop) == 0);
	free(r->out);
	free(r->in);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
	cr_assert(system(cmd) == 0);
}

/* script_check - one "!" line. */
static void script_check(struct script_run *r, const char *what, int lineno)
{
	if (strcmp(what, "closed") == 0) {
		cr_assert(!relay_sock_memory_open(r->sock),
			  "line %d: the connection is still open", lineno);
	} else if (strncmp(what, "queued ", 7) == 0) {
		size_t want = strtoul(what + 7, NULL, 10);

		cr_assert_eq(queue_spool_count(r->spool), want,
			     "line %d: %zu messages queued, not %zu", lineno,
			     queue_spool_count(r->spool), want);
	} else if (strncmp(what, "stored ", 7) == 0) {
		char *buf, *text = strdup(what + 7);
		size_t len, tl = script_unescape(text);

		queue_spool_foreach(r->spool, script_last_cb, r);
		cr_assert(queue_spool_read(r->spool, r->last_id, &buf, &len) ==
			      0,
			  "line %d: cannot read %s", lineno, r->last_id);
		cr_assert(memmem(buf, len, text, tl) != NULL,
			  "line %d: stored message lacks \"%s\":\n%.*s", lineno,
			  what + 7, (int)len, buf);
		free(buf);
		free(text);
	} else {
		cr_assert_fail("line %d: unknown check %s", lineno, what);
	}
}

/* script_run_file - play tests/data/smtpd/NAME.smtp. */
static void script_run_file(const char *name)
{
	char path[512], line[4096],
	    conftext[4096] = "myhostname = relay.test\n"
			     "log_level = error\n";
	struct script_run r;
	uint32_t client = 0x7f000001;
	bool started = false;
	int lineno = 0;
	FILE *f;

	memset(&r, 0, sizeof(r));
	snprintf(path, sizeof(path), "%s/smtpd/%s.smtp", WAXSEAL_TESTDATA,
		 name);
	f = fopen(path, "r");
	cr_assert(f != NULL, "cannot open %s", path);

	while (fgets(line, sizeof(line), f)) {
		size_t n = strlen(line);
		char *reply;

		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		if (line[0] == '=') {
			cr_assert(!started, "line %d: config after start",
				  lineno);
			strncat(conftext, line + 2,
				sizeof(conftext) - strlen(conftext) - 2);
			strcat(conftext, "\n");
			continue;
		}
		if (line[0] == '@') {
			struct in_addr a;

			cr_assert(inet_pton(AF_INET, line + 2, &a) == 1);
			client = ntohl(a.s_addr);
			continue;
		}
		if (!started) {
			script_start(&r, conftext, client);
			started = true;
		}

		if (strncmp(line, ">> ", 3) == 0) {
			script_add(&r, line + 3, script_unescape(line + 3));
		} else if (strncmp(line, "> ", 2) == 0 ||
			   strcmp(line, ">") == 0) {
			if (n > 2)
				script_add(&r, line + 2, n - 2);
			script_add(&r, "\r\n", 2);
		} else if (line[0] == '<') {
			bool prefix = line[1] == '~' || line[1] == '.';
			const char *want = line + (prefix ? 3 : 2);

			script_send(&r);
			for (;;) {
				reply = script_reply(&r);
				cr_assert(reply != NULL,
					  "line %d: no reply, wanted \"%s\"",
					  lineno, want);
				if (line[1] != '.' ||
				    strncmp(reply, want, strlen(want)) == 0)
					break;
				free(reply);
			}
			if (prefix)
				cr_assert(
				    strncmp(reply, want, strlen(want)) == 0,
				    "line %d: got \"%s\", wanted \"%s...\"",
				    lineno, reply, want);
			else
				cr_assert_str_eq(reply, want,
						 "line %d: got \"%s\", wanted "
						 "\"%s\"",
						 lineno, reply, want);
			free(reply);
		} else if (line[0] == '!') {
			script_send(&r);
			script_check(&r, line + 2, lineno);
		} else {
			cr_assert_fail("%s:%d: cannot parse", path, lineno);
		}
	}
	fclose(f);
	cr_assert(started, "%s: empty script", path);
	script_send(&r);

	/* Every reply the server sent must have been expected. */
	cr_assert(r.outlen == 0, "%s: unexpected replies:\n%.*s", name,
		  (int)r.outlen, r.out);
	script_stop(&r);
}

Test(relay_smtpd, basic)
{
	script_run_file("basic");
}
Test(relay_smtpd, pipelining)
{
	script_run_file("pipelining");
}
Test(relay_smtpd, errors)
{
	script_run_file("errors");
}
Test(relay_smtpd, no_open_relay)
{
	script_run_file("relay");
}
Test(relay_smtpd, bdat)
{
	script_run_file("bdat");
}
Test(relay_smtpd, smuggling)
{
	script_run_file("smuggling");
}
Test(relay_smtpd, smuggling_reject)
{
	script_run_file("smuggling-reject");
}
Test(relay_smtpd, limits)
{
	script_run_file("limits");
}
Test(relay_smtpd, headers)
{
	script_run_file("headers");
}
