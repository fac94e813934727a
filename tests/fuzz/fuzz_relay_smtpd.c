/*
 * fuzz_relay_smtpd - the SMTP server's command parser and state machine,
 * driven through a memory socket: the input is what a client sends, cut
 * into reads at places chosen by its first byte. Messages that get that
 * far are signed (no keys: unsigned) and stored in a spool in a temporary
 * directory, so the whole path from command to "queued" is covered.
 */
#include <arpa/inet.h>
#include <stdint.h>
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

static uv_loop_t fuzz_loop;
static struct relay_io *fuzz_io;
static struct queue_spool *fuzz_spool;
static struct sign_pool *fuzz_pool;
static struct relay_smtpd *fuzz_srv;
static uv_poll_t fuzz_pool_poll;
static size_t fuzz_out;

static const char fuzz_conf[] =
	"myhostname = fuzz.test\n"
	"message_size_limit = 65536\n"
	"smtpd_recipient_limit = 20\n"
	"smtpd_hard_error_limit = 100\n"
	"hopcount_limit = 5\n"
	"log_level = error\n";

/* fuzz_sink - the server's replies; only counted. */
static void fuzz_sink(void *arg, const char *buf, size_t len)
{
	fuzz_out += len;
}

/* fuzz_prepare - the daemon's per-iteration group commit. */
static void fuzz_prepare(void *arg)
{
	queue_spool_flush(fuzz_spool);
}

/* fuzz_pool_cb - finished sign jobs. */
static void fuzz_pool_cb(uv_poll_t *h, int status, int events)
{
	sign_pool_reap(fuzz_pool);
}

/* fuzz_init - one server for the whole run. */
static void fuzz_init(void)
{
	char dir[] = "/tmp/waxseal-fuzz-XXXXXX", err[256];
	struct queue_limits lim = {.segment_size = 1 << 20};
	struct relay_gen *g = calloc(1, sizeof(*g));
	const char *why;

	if (g == NULL || mkdtemp(dir) == NULL)
		abort();
	uv_loop_init(&fuzz_loop);
	if (relay_io_new(&fuzz_io, &fuzz_loop, CONF_IO_LIBUV, &why) < 0)
		abort();
	if (queue_spool_open(&fuzz_spool, dir, &lim, relay_io_file(fuzz_io),
			     err, sizeof(err)) < 0)
		abort();
	relay_io_on_prepare(fuzz_io, fuzz_prepare, NULL);
	g->refs = 1;
	if (conf_parse_buf(&g->conf, "fuzz.conf", fuzz_conf,
			   sizeof(fuzz_conf) - 1, err, sizeof(err)) < 0 ||
	    sign_keys_load(&g->keys, &g->conf, err, sizeof(err)) < 0)
		abort();
	relay_log_level = CONF_LOG_ERROR - 1;
	fuzz_pool = sign_pool_new(1);
	uv_poll_init(&fuzz_loop, &fuzz_pool_poll, sign_pool_fd(fuzz_pool));
	uv_poll_start(&fuzz_pool_poll, UV_READABLE, fuzz_pool_cb);
	fuzz_srv = relay_smtpd_new(&fuzz_loop, fuzz_spool, fuzz_pool, g);
}

/* fuzz_settle - run the loop until nothing more happens, bounded. */
static void fuzz_settle(void)
{
	int i;

	for (i = 0; i < 200 && !queue_spool_idle(fuzz_spool); i++)
		uv_run(&fuzz_loop, UV_RUN_ONCE);
	for (i = 0; i < 4; i++)
		uv_run(&fuzz_loop, UV_RUN_NOWAIT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct sockaddr_in peer;
	struct relay_sock *s;
	size_t off = 1, chunk;

	if (!ready) {
		fuzz_init();
		ready = 1;
	}
	if (size < 1)
		return 0;

	/* Byte 0: read size (1..256) and whether the client is trusted. */
	memset(&peer, 0, sizeof(peer));
	peer.sin_family = AF_INET;
	peer.sin_addr.s_addr = htonl((data[0] & 0x80) ? 0x7f000001 : 0xc0000201);
	chunk = (size_t)(data[0] & 0x7f) * 2 + 1;

	s = relay_sock_memory(fuzz_io, (struct sockaddr *)&peer, fuzz_sink,
			      NULL);
	if (s == NULL)
		return 0;
	relay_smtpd_accept_cb(fuzz_srv, s);
	while (off < size && relay_sock_memory_open(s)) {
		size_t n = size - off < chunk ? size - off : chunk;

		relay_sock_inject(s, (const char *)data + off, n);
		off += n;
		fuzz_settle();
	}
	if (relay_sock_memory_open(s))
		relay_sock_inject_eof(s);
	fuzz_settle();
	for (off = 0; off < 100 && relay_sock_memory_open(s); off++)
		uv_run(&fuzz_loop, UV_RUN_ONCE);
	if (relay_sock_memory_open(s))
		abort();        /* a session that never closes is a bug */
	relay_sock_memory_free(s);
	return 0;
}
