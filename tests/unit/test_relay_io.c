/*
 * test_relay_io - outbound connections (relay_io_connect) on both I/O
 * backends, against plain sockets the test makes on 127.0.0.1: bytes
 * both ways and a close; a refused connection; a connect that times out
 * against a listener whose accept queue is full (Linux drops the SYN
 * then, so the attempt stays in SYN-SENT: deterministic on loopback).
 *
 * Every uv_run is bounded by a guard timer. The io_uring cases are
 * skipped, with the reason, when the ring cannot be set up here.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "conf/conf.h"
#include "relay/relay_io.h"

#define T_UP 200000   /* bytes the client sends */
#define T_DOWN 100000 /* bytes the server sends */

struct t_run {
	uv_loop_t loop;
	struct relay_io *io;
	uv_timer_t guard;
	bool expired;

	/* The connect callback. */
	bool in_call;
	bool early;
	int ncb;
	int status;
	struct relay_sock *sock;

	/* The client side, through relay_io. */
	size_t got; /* bytes read, each checked */
	bool bad_byte;
	bool eof;
	int eof_err;
	bool closed;

	/* The server side: plain non-blocking sockets polled by uv. */
	int lfd, sfd;
	uv_poll_t lpoll, spoll;
	bool lpoll_on, spoll_on;
	size_t srv_got, srv_sent;
	bool srv_bad;
	bool srv_eof;
	struct sockaddr_in addr;
};

/* t_byte - the pattern byte at offset i of a stream (seed s). */
static char t_byte(size_t i, int s)
{
	return (char)('a' + (i * 7 + (size_t)s) % 26);
}

/* t_guard_cb - the time bound of the current wait ran out. */
static void t_guard_cb(uv_timer_t *h)
{
	struct t_run *r = h->data;

	r->expired = true;
	uv_stop(&r->loop);
}

/* t_wait - run the loop until *flag, for at most ms; false on timeout. */
static bool t_wait(struct t_run *r, const bool *flag, uint64_t ms)
{
	r->expired = false;
	uv_timer_start(&r->guard, t_guard_cb, ms, 0);
	while (!*flag && !r->expired)
		uv_run(&r->loop, UV_RUN_ONCE);
	uv_timer_stop(&r->guard);
	return *flag;
}

/* t_setup - loop, guard and backend; skips when io_uring is missing. */
static void t_setup(struct t_run *r, int backend)
{
	const char *why = NULL;
	int rc;

	memset(r, 0, sizeof(*r));
	r->lfd = r->sfd = -1;
	cr_assert_eq(uv_loop_init(&r->loop), 0);
	uv_timer_init(&r->loop, &r->guard);
	r->guard.data = r;
	rc = relay_io_new(&r->io, &r->loop, backend, &why);
	if (rc < 0 && backend == CONF_IO_URING)
		cr_skip_test("io_uring cannot be set up here: %s (%s)",
			     why ? why : "no reason", strerror(-rc));
	cr_assert_eq(rc, 0, "relay_io_new: %s", strerror(-rc));
	cr_assert_str_eq(relay_io_name(r->io),
			 backend == CONF_IO_URING ? "io_uring" : "libuv");
}

/* t_close_cb - a test handle is closed. */
static void t_close_cb(uv_handle_t *h)
{
}

/* t_teardown - free everything; the loop must end with no handle left. */
static void t_teardown(struct t_run *r)
{
	int i;

	if (r->lpoll_on)
		uv_close((uv_handle_t *)&r->lpoll, t_close_cb);
	if (r->spoll_on)
		uv_close((uv_handle_t *)&r->spoll, t_close_cb);
	relay_io_free(r->io);
	uv_close((uv_handle_t *)&r->guard, t_close_cb);
	for (i = 0; i < 10; i++)
		uv_run(&r->loop, UV_RUN_NOWAIT);
	cr_assert_eq(uv_loop_close(&r->loop), 0,
		     "a handle was left open on the loop");
	if (r->sfd >= 0)
		close(r->sfd);
	if (r->lfd >= 0)
		close(r->lfd);
}

/* t_listener - a socket bound to 127.0.0.1:0; listening with backlog. */
static int t_listener(struct t_run *r, bool listening, int backlog)
{
	socklen_t l = sizeof(r->addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	memset(&r->addr, 0, sizeof(r->addr));
	r->addr.sin_family = AF_INET;
	r->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&r->addr, sizeof(r->addr)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&r->addr, &l), 0);
	if (listening)
		cr_assert_eq(listen(fd, backlog), 0);
	r->lfd = fd;
	return fd;
}

/* t_connect_cb - the connect finished. */
static void t_connect_cb(void *arg, struct relay_sock *s, int status)
{
	struct t_run *r = arg;

	if (r->in_call)
		r->early = true;
	r->ncb++;
	r->status = status;
	r->sock = s;
}

/* t_connect - start a connect, checking the callback did not run yet. */
static void t_connect(struct t_run *r, const struct sockaddr *dst,
		      int64_t timeout_ms)
{
	int rc;

	r->in_call = true;
	rc = relay_io_connect(r->io, dst, timeout_ms, t_connect_cb, r);
	r->in_call = false;
	cr_assert_eq(rc, 0, "relay_io_connect: %s", strerror(-rc));
	cr_assert_eq(r->ncb, 0, "callback ran inside relay_io_connect");
}

/* t_done - the wait condition: the connect callback ran. */
static bool t_done(struct t_run *r)
{
	return r->ncb > 0;
}

/* t_wait_connect - wait for the connect callback (bounded). */
static void t_wait_connect(struct t_run *r, uint64_t ms)
{
	bool done = false;

	r->expired = false;
	uv_timer_start(&r->guard, t_guard_cb, ms, 0);
	while (!(done = t_done(r)) && !r->expired)
		uv_run(&r->loop, UV_RUN_ONCE);
	uv_timer_stop(&r->guard);
	cr_assert(done, "no connect callback within %llu ms",
		  (unsigned long long)ms);
	cr_assert_not(r->early, "callback ran inside relay_io_connect");
	cr_assert_eq(r->ncb, 1);
}

/* ---- the client side's socket callbacks ---- */

static void t_read(void *arg, const char *buf, size_t len)
{
	struct t_run *r = arg;
	size_t i;

	for (i = 0; i < len; i++)
		if (buf[i] != t_byte(r->got + i, 1))
			r->bad_byte = true;
	r->got += len;
}

static void t_eof(void *arg, int err)
{
	struct t_run *r = arg;

	r->eof = true;
	r->eof_err = err;
}

static void t_closed(void *arg)
{
	struct t_run *r = arg;

	r->closed = true;
}

static const struct relay_sock_cbs t_cbs = {
    .read = t_read,
    .eof = t_eof,
    .closed = t_closed,
};

/* ---- the server side ---- */

/* t_srv_cb - the accepted socket: check input, send the reply. */
static void t_srv_cb(uv_poll_t *h, int status, int events)
{
	struct t_run *r = h->data;
	char buf[16384], out[16384];
	ssize_t n;
	size_t i, want;

	if (events & UV_READABLE) {
		n = read(r->sfd, buf, sizeof(buf));
		if (n == 0) {
			r->srv_eof = true;
			uv_poll_stop(h);
			return;
		}
		for (i = 0; n > 0 && i < (size_t)n; i++)
			if (buf[i] != t_byte(r->srv_got + i, 0))
				r->srv_bad = true;
		if (n > 0)
			r->srv_got += (size_t)n;
	}

	/* Reply once everything came in; the socket may take part. */
	if (r->srv_got < T_UP || r->srv_sent >= T_DOWN) {
		uv_poll_start(h, UV_READABLE, t_srv_cb);
		return;
	}
	want = T_DOWN - r->srv_sent;
	if (want > sizeof(out))
		want = sizeof(out);
	for (i = 0; i < want; i++)
		out[i] = t_byte(r->srv_sent + i, 1);
	n = write(r->sfd, out, want);
	if (n > 0)
		r->srv_sent += (size_t)n;
	uv_poll_start(
	    h, r->srv_sent < T_DOWN ? UV_READABLE | UV_WRITABLE : UV_READABLE,
	    t_srv_cb);
}

/* t_accept_cb - the listener is readable: take the connection. */
static void t_accept_cb(uv_poll_t *h, int status, int events)
{
	struct t_run *r = h->data;

	if (r->sfd >= 0)
		return;
	r->sfd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (r->sfd < 0)
		return;
	uv_poll_stop(h);
	uv_poll_init(&r->loop, &r->spoll, r->sfd);
	r->spoll.data = r;
	r->spoll_on = true;
	uv_poll_start(&r->spoll, UV_READABLE, t_srv_cb);
}

/* t_exchange - connect, bytes both ways, close. */
static void t_exchange(int backend)
{
	struct t_run r;
	const struct sockaddr_in *peer, *local;
	char *blob;
	size_t i;
	bool done;

	t_setup(&r, backend);
	t_listener(&r, true, 16);
	fcntl(r.lfd, F_SETFL, O_NONBLOCK);
	uv_poll_init(&r.loop, &r.lpoll, r.lfd);
	r.lpoll.data = &r;
	r.lpoll_on = true;
	uv_poll_start(&r.lpoll, UV_READABLE, t_accept_cb);

	t_connect(&r, (struct sockaddr *)&r.addr, 5000);
	t_wait_connect(&r, 5000);
	cr_assert_eq(r.status, 0, "connect: %s", strerror(-r.status));
	cr_assert_not_null(r.sock);

	/* The addresses are those of the connection. */
	peer = (const struct sockaddr_in *)relay_sock_peer(r.sock);
	local = (const struct sockaddr_in *)relay_sock_local(r.sock);
	cr_assert_eq(peer->sin_family, AF_INET);
	cr_assert_eq(peer->sin_port, r.addr.sin_port);
	cr_assert_eq(local->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	cr_assert_neq(local->sin_port, 0);

	/* Client to server, in pieces, then the server's answer. */
	relay_sock_set_cbs(r.sock, &t_cbs, &r);
	relay_sock_read_start(r.sock);
	blob = malloc(T_UP);
	cr_assert_not_null(blob);
	for (i = 0; i < T_UP; i++)
		blob[i] = t_byte(i, 0);
	for (i = 0; i < T_UP; i += 50000)
		cr_assert_eq(relay_sock_write(r.sock, blob + i, 50000), 0);
	free(blob);

	r.expired = false;
	uv_timer_start(&r.guard, t_guard_cb, 10000, 0);
	while (!(done = r.got >= T_DOWN) && !r.expired && !r.eof)
		uv_run(&r.loop, UV_RUN_ONCE);
	uv_timer_stop(&r.guard);
	cr_assert(done, "client got %zu of %d bytes (server got %zu)", r.got,
		  T_DOWN, r.srv_got);
	cr_assert_eq(r.srv_got, T_UP);
	cr_assert_not(r.srv_bad, "the server got other bytes than sent");
	cr_assert_not(r.bad_byte, "the client got other bytes than sent");
	cr_assert_eq(r.got, T_DOWN);
	cr_assert_eq(relay_sock_pending(r.sock), 0);

	/* Close: the closed callback, and the server sees the end. */
	relay_sock_close(r.sock);
	cr_assert(t_wait(&r, &r.closed, 5000), "no closed callback");
	cr_assert(t_wait(&r, &r.srv_eof, 5000), "the server saw no EOF");
	cr_assert_not(r.eof, "eof callback after a clean exchange: %d",
		      r.eof_err);
	t_teardown(&r);
	cr_assert_eq(r.ncb, 1);
}

/* t_refused - a bound port that does not listen answers with a RST. */
static void t_refused(int backend)
{
	struct t_run r;

	t_setup(&r, backend);
	t_listener(&r, false, 0);
	t_connect(&r, (struct sockaddr *)&r.addr, 5000);
	t_wait_connect(&r, 5000);
	cr_assert_eq(r.status, -ECONNREFUSED, "status %d (%s)", r.status,
		     strerror(-r.status));
	cr_assert_null(r.sock);
	t_teardown(&r);
	cr_assert_eq(r.ncb, 1, "the callback ran more than once");
}

/*
 * t_timeout - listen(fd, 0) holds one connection in the accept queue;
 * the test never accepts, so the kernel drops the next SYN (the queue
 * is full) and the connect can only time out.
 */
static void t_timeout(int backend)
{
	struct timeval tv = {.tv_sec = 2};
	struct t_run r;
	uint64_t t0;
	int fill;

	t_setup(&r, backend);
	t_listener(&r, true, 0);
	fill = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fill, 0);
	setsockopt(fill, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	cr_assert_eq(connect(fill, (struct sockaddr *)&r.addr, sizeof(r.addr)),
		     0, "filling the accept queue: %s", strerror(errno));

	uv_update_time(&r.loop);
	t0 = uv_now(&r.loop);
	t_connect(&r, (struct sockaddr *)&r.addr, 300);
	t_wait_connect(&r, 5000);
	cr_assert_eq(r.status, -ETIMEDOUT, "status %d (%s)", r.status,
		     strerror(-r.status));
	cr_assert_null(r.sock);
	cr_assert_geq(uv_now(&r.loop) - t0, 250, "gave up after %llu ms",
		      (unsigned long long)(uv_now(&r.loop) - t0));
	t_teardown(&r);
	close(fill);
}

/* t_bad_args - refused before any attempt; no callback. */
static void t_bad_args(int backend)
{
	struct sockaddr_un_like {
		sa_family_t family;
		char path[32];
	} unx = {.family = AF_UNIX};
	struct t_run r;

	t_setup(&r, backend);
	t_listener(&r, false, 0);
	cr_assert_eq(relay_io_connect(r.io, (struct sockaddr *)&r.addr, 0,
				      t_connect_cb, &r),
		     -EINVAL);
	cr_assert_eq(relay_io_connect(r.io, (struct sockaddr *)&unx, 1000,
				      t_connect_cb, &r),
		     -EAFNOSUPPORT);
	t_teardown(&r);
	cr_assert_eq(r.ncb, 0);
}

/* t_refused6 - the same over ::1, when the machine has IPv6 loopback. */
static void t_refused6(int backend)
{
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
	socklen_t l = sizeof(a6);
	struct t_run r;
	int fd;

	a6.sin6_addr = in6addr_loopback;
	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a6, sizeof(a6)) < 0) {
		if (fd >= 0)
			close(fd);
		cr_skip_test("no IPv6 loopback (::1) on this machine");
	}
	getsockname(fd, (struct sockaddr *)&a6, &l);

	t_setup(&r, backend);
	r.lfd = fd;
	t_connect(&r, (struct sockaddr *)&a6, 5000);
	t_wait_connect(&r, 5000);
	cr_assert_eq(r.status, -ECONNREFUSED, "status %d (%s)", r.status,
		     strerror(-r.status));
	t_teardown(&r);
}

Test(relay_io, connect_exchange_io_uring)
{
	t_exchange(CONF_IO_URING);
}
Test(relay_io, connect_exchange_libuv)
{
	t_exchange(CONF_IO_LIBUV);
}
Test(relay_io, connect_refused_io_uring)
{
	t_refused(CONF_IO_URING);
}
Test(relay_io, connect_refused_libuv)
{
	t_refused(CONF_IO_LIBUV);
}
Test(relay_io, connect_refused_v6_io_uring)
{
	t_refused6(CONF_IO_URING);
}
Test(relay_io, connect_refused_v6_libuv)
{
	t_refused6(CONF_IO_LIBUV);
}
Test(relay_io, connect_timeout_io_uring)
{
	t_timeout(CONF_IO_URING);
}
Test(relay_io, connect_timeout_libuv)
{
	t_timeout(CONF_IO_LIBUV);
}
Test(relay_io, connect_bad_args_io_uring)
{
	t_bad_args(CONF_IO_URING);
}
Test(relay_io, connect_bad_args_libuv)
{
	t_bad_args(CONF_IO_LIBUV);
}
