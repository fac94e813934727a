/*
 * relay_io - see relay_io.h.
 *
 * io_uring lifetimes. Every SQE's user_data is a pointer to a struct
 * relay_op, whose first member says what it is:
 *   - a socket's recv and send ops live inside its struct relay_sock; at
 *     most one of each is in flight, and the socket is not freed while
 *     either is (s->inflight counts them);
 *   - a listener's accept op lives in its struct relay_listener; it is
 *     multishot (one SQE, a CQE per connection) and re-armed when a CQE
 *     comes without IORING_CQE_F_MORE;
 *   - file ops are malloc'd per call and freed on completion;
 *   - an outbound connect is two linked SQEs, IORING_OP_CONNECT then
 *     IORING_OP_LINK_TIMEOUT, whose user_data point at two relay_ops
 *     inside one malloc'd struct relay_conn; it owns the destination
 *     sockaddr and the timespec, and is freed only when both CQEs have
 *     arrived (whichever comes first), so nothing the kernel may still
 *     read goes away early. The socket is non-blocking for the connect
 *     and made blocking again afterwards, like an accepted one;
 *   - cancel SQEs carry user_data 0 and their CQEs are ignored.
 * Buffers: recv fills s->rbuf, owned by the socket, untouched by anyone
 * else while the recv is in flight. A send reads s->out[s->cur], which is
 * never written to while in flight: new data goes to the other buffer and
 * the two swap when the send completes. A short send is re-submitted for
 * the rest. io_uring gives no -EAGAIN for sockets (the kernel waits
 * internally), but a recv may end with -ECANCELED when the socket closes.
 */
#include "relay/relay_io.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "conf/conf.h"

#define RELAY_IO_RBUF 16384
#define RELAY_IO_RING 4096

enum relay_op_kind {
	RELAY_OP_ACCEPT = 1,
	RELAY_OP_RECV,
	RELAY_OP_SEND,
	RELAY_OP_WRITE,
	RELAY_OP_FSYNC,
	RELAY_OP_CONNECT,
	RELAY_OP_CONNECT_TIMEOUT,
};

struct relay_op {
	enum relay_op_kind kind;
};

struct relay_buf {
	char *p;
	size_t len, cap;
};

struct relay_sock {
	struct relay_io *io;
	int fd;
	const struct relay_sock_cbs *cbs;
	void *arg;
	struct sockaddr_storage peer, local;

	bool reading;	 /* the owner wants reads */
	bool closing;	 /* relay_sock_close() was called */
	bool dead;	 /* peer gone or error: drop output */
	bool sending;	 /* a send (or uv_write) is in flight */
	bool recv_armed; /* io_uring recv in flight */
	bool memory;	 /* no descriptor: relay_sock_memory() */
	bool gone;	 /* memory socket closed, not yet freed */
	bool due;	 /* out[cur] waits for the end of the iteration */
	int inflight;	 /* io_uring ops in flight */
	struct relay_sock *due_prev, *due_next; /* relay_io.due */

	/* Output: out[cur] is being sent, out[!cur] collects new data. */
	struct relay_buf out[2];
	int cur;
	size_t sent; /* of out[cur] */

	struct relay_op recv_op, send_op;
	uv_tcp_t tcp; /* libuv backend */
	uv_write_t wreq;

	/* Memory sockets: output sink, input not yet delivered, and the
	 * handle whose close callback frees the socket outside any of its
	 * own callbacks. */
	void (*sink)(void *, const char *, size_t);
	void *sink_arg;
	struct relay_buf pending;
	uv_idle_t reaper;

	char rbuf[RELAY_IO_RBUF];
};

struct relay_listener {
	struct relay_op op;
	struct relay_io *io;
	int fd;
	uv_tcp_t tcp; /* libuv backend */
	relay_accept_cb cb;
	void *arg;
	struct relay_listener *next;
};

struct relay_fop {
	struct relay_op op;
	queue_io_cb cb;
	void *arg;
	uv_fs_t req; /* libuv backend */
};

/*
 * One outbound connection attempt, from relay_io_connect() until its
 * callback has run. io_uring: op and tmo_op are the user_data of the
 * connect SQE and of its linked timeout; the struct (with dst, which the
 * connect reads, and ts) is freed when both CQEs are in. libuv: req and
 * timer; freed from the timer's close callback, after the owner's
 * callback.
 */
struct relay_conn {
	struct relay_op op;	/* RELAY_OP_CONNECT */
	struct relay_op tmo_op; /* RELAY_OP_CONNECT_TIMEOUT */
	struct relay_io *io;
	relay_connect_cb cb;
	void *arg;
	int fd;
	struct sockaddr_storage dst;
	socklen_t dstlen;
	struct __kernel_timespec ts;
	int cqes; /* io_uring: CQEs still to come */
	int res;  /* io_uring: the connect's result */

	struct relay_sock *sock; /* libuv: the handle being connected */
	uv_connect_t req;
	uv_timer_t timer;
	bool timed_out; /* libuv: the timer closed the handle */
	int early;	/* libuv: uv_tcp_connect's own failure */
};

struct relay_io {
	uv_loop_t *loop;
	bool uring;
	struct io_uring ring;
	int efd;
	uv_poll_t poll;
	uv_prepare_t prepare;
	struct relay_listener *listeners;
	struct queue_io file;
	void (*hook)(void *);
	void *hook_arg;
	int closing;   /* handles still to close in relay_io_free */
	struct relay_sock *due; /* sockets with output to send, see below */
};

static void relay_sock_send_more(struct relay_sock *s);
void relay_sock_inject(struct relay_sock *s, const char *buf, size_t len);
static void relay_sock_maybe_finish(struct relay_sock *s);
static void relay_uring_on_connect(struct relay_conn *c);

/* relay_io_sqe - a free SQE, submitting queued ones if the ring is full. */
static struct io_uring_sqe *relay_io_sqe(struct relay_io *io)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);

	if (sqe == NULL) {
		io_uring_submit(&io->ring);
		sqe = io_uring_get_sqe(&io->ring);
	}
	return sqe;
}

/* relay_io_fill_addrs - record peer and local addresses of fd. */
static void relay_io_fill_addrs(struct relay_sock *s)
{
	socklen_t l = sizeof(s->peer);
	int one = 1;

	getpeername(s->fd, (struct sockaddr *)&s->peer, &l);
	l = sizeof(s->local);
	getsockname(s->fd, (struct sockaddr *)&s->local, &l);

	/* Replies and pipelined commands are small: never wait for Nagle,
	 * on accepted and outbound connections alike. */
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* relay_sock_new - a socket object for an accepted connection. */
static struct relay_sock *relay_sock_new(struct relay_io *io)
{
	struct relay_sock *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->io = io;
	s->fd = -1;
	s->recv_op.kind = RELAY_OP_RECV;
	s->send_op.kind = RELAY_OP_SEND;
	s->tcp.data = s;
	s->wreq.data = s;
	return s;
}

/* relay_sock_undue - take s off its io's list of output to send. */
static void relay_sock_undue(struct relay_sock *s)
{
	if (!s->due)
		return;
	if (s->due_prev)
		s->due_prev->due_next = s->due_next;
	else
		s->io->due = s->due_next;
	if (s->due_next)
		s->due_next->due_prev = s->due_prev;
	s->due_prev = s->due_next = NULL;
	s->due = false;
}

/* relay_sock_destroy - free a socket whose I/O has all finished. */
static void relay_sock_destroy(struct relay_sock *s)
{
	const struct relay_sock_cbs *cbs = s->cbs;
	void *arg = s->arg;

	relay_sock_undue(s);
	free(s->out[0].p);
	free(s->out[1].p);
	free(s->pending.p);
	free(s);
	if (cbs && cbs->closed)
		cbs->closed(arg);
}

/* ---- io_uring backend ---- */

/* relay_uring_arm_recv - submit a recv into the socket's buffer. */
static void relay_uring_arm_recv(struct relay_sock *s)
{
	struct io_uring_sqe *sqe;

	if (s->recv_armed || !s->reading || s->closing || s->dead)
		return;
	sqe = relay_io_sqe(s->io);
	if (sqe == NULL)
		return;
	io_uring_prep_recv(sqe, s->fd, s->rbuf, sizeof(s->rbuf), 0);
	io_uring_sqe_set_data(sqe, &s->recv_op);
	s->recv_armed = true;
	s->inflight++;
}

/* relay_uring_send - submit the unsent rest of out[cur]. */
static void relay_uring_send(struct relay_sock *s)
{
	struct relay_buf *b = &s->out[s->cur];
	struct io_uring_sqe *sqe = relay_io_sqe(s->io);

	if (sqe == NULL) {
		s->dead = true;
		return;
	}
	io_uring_prep_send(sqe, s->fd, b->p + s->sent, b->len - s->sent,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data(sqe, &s->send_op);
	s->sending = true;
	s->inflight++;
}

/* relay_uring_arm_accept - (re)start the multishot accept of l. */
static void relay_uring_arm_accept(struct relay_listener *l)
{
	struct io_uring_sqe *sqe = relay_io_sqe(l->io);

	if (sqe == NULL)
		return;
	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, &l->op);
}

/* relay_uring_on_accept - a new connection, or an accept failure. */
static void relay_uring_on_accept(struct relay_listener *l,
				  struct io_uring_cqe *cqe)
{
	struct relay_sock *s;

	if (l->fd < 0) {
		/* Listener closed; a connection still raced in. */
		if (cqe->res >= 0)
			close(cqe->res);
		return;
	}
	if (!(cqe->flags & IORING_CQE_F_MORE))
		relay_uring_arm_accept(l);
	if (cqe->res < 0)
		return;

	s = relay_sock_new(l->io);
	if (s == NULL) {
		close(cqe->res);
		return;
	}
	s->fd = cqe->res;
	relay_io_fill_addrs(s);
	l->cb(l->arg, s);
}

/*
 * relay_uring_on_recv - data, end of stream or error on a socket. The op
 * stays counted in s->inflight until the callbacks have returned, so a
 * callback that closes the socket cannot free it under our feet.
 */
static void relay_uring_on_recv(struct relay_sock *s, int res)
{
	s->recv_armed = false;
	if (!s->closing && !s->dead) {
		if (res > 0) {
			s->cbs->read(s->arg, s->rbuf, (size_t)res);
		} else if (res != -EINTR && res != -EAGAIN) {
			s->dead = true;
			s->cbs->eof(s->arg, res);
		}
	}
	s->inflight--;
	if (s->closing) {
		relay_sock_maybe_finish(s);
		return;
	}
	relay_uring_arm_recv(s);
}

/* relay_uring_on_send - a send finished, maybe short. */
static void relay_uring_on_send(struct relay_sock *s, int res)
{
	s->sending = false;
	if (res < 0) {
		if (!s->dead && !s->closing) {
			s->dead = true;
			s->cbs->eof(s->arg, res);
		}
		s->dead = true;
		s->inflight--;
		relay_sock_maybe_finish(s);
		return;
	}
	s->inflight--;
	s->sent += (size_t)res;
	relay_sock_send_more(s);
}

/* relay_uring_reap_cb - eventfd readable: process every completion. */
static void relay_uring_reap_cb(uv_poll_t *h, int status, int events)
{
	struct relay_io *io = h->data;
	struct io_uring_cqe *cqe;
	uint64_t v;
	unsigned head, n = 0;

	if (read(io->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: a completion already drained by an earlier pass. */
	}

	io_uring_for_each_cqe(&io->ring, head, cqe)
	{
		struct relay_op *op = io_uring_cqe_get_data(cqe);
		struct relay_fop *f;
		struct relay_conn *c;

		n++;
		if (op == NULL)
			continue;
		switch (op->kind) {
		case RELAY_OP_ACCEPT:
			relay_uring_on_accept((struct relay_listener *)op, cqe);
			break;
		case RELAY_OP_RECV:
			relay_uring_on_recv(
			    (struct relay_sock *)((char *)op -
						  offsetof(struct relay_sock,
							   recv_op)),
			    cqe->res);
			break;
		case RELAY_OP_SEND:
			relay_uring_on_send(
			    (struct relay_sock *)((char *)op -
						  offsetof(struct relay_sock,
							   send_op)),
			    cqe->res);
			break;
		case RELAY_OP_CONNECT:
			c = (struct relay_conn *)op;
			c->res = cqe->res;
			relay_uring_on_connect(c);
			break;
		case RELAY_OP_CONNECT_TIMEOUT:
			c = (struct relay_conn *)((char *)op -
						  offsetof(struct relay_conn,
							   tmo_op));
			relay_uring_on_connect(c);
			break;
		case RELAY_OP_WRITE:
		case RELAY_OP_FSYNC:
			f = (struct relay_fop *)op;
			f->cb(f->arg, cqe->res);
			free(f);
			break;
		}
	}
	io_uring_cq_advance(&io->ring, n);
}

/*
 * relay_io_send_due - start the sends that the iteration's writes asked
 * for: one send per socket of all it was given since its last send, where
 * a send per write would cost a system call (or an SQE) and a TCP segment
 * each, and as many reads at the peer (a pipelined envelope is three
 * writes, the replies to it as many).
 */
static void relay_io_send_due(struct relay_io *io)
{
	struct relay_sock *s;

	while ((s = io->due) != NULL) {
		relay_sock_undue(s);
		if (!s->sending)
			relay_sock_send_more(s);
	}
}

/* relay_uring_prepare_cb - once per loop iteration, before it waits: the
 * due sends, then (io_uring) one submit for everything queued. */
static void relay_uring_prepare_cb(uv_prepare_t *h)
{
	struct relay_io *io = h->data;

	/* The hook (the spool's group commit) queues before we submit. */
	if (io->hook)
		io->hook(io->hook_arg);
	relay_io_send_due(io);
	if (io->uring && io_uring_sq_ready(&io->ring) > 0)
		io_uring_submit(&io->ring);
}

/* relay_uring_fop - queue a file write (RWF_DSYNC when sync) or an
 * fdatasync. */
static int relay_uring_fop(struct relay_io *io, enum relay_op_kind kind, int fd,
			   const void *buf, size_t len, uint64_t off, bool sync,
			   queue_io_cb cb, void *arg)
{
	struct relay_fop *f = malloc(sizeof(*f));
	struct io_uring_sqe *sqe;

	if (f == NULL)
		return -ENOMEM;
	sqe = relay_io_sqe(io);
	if (sqe == NULL) {
		free(f);
		return -EBUSY;
	}
	f->op.kind = kind;
	f->cb = cb;
	f->arg = arg;
	if (kind == RELAY_OP_WRITE) {
		io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
		if (sync)
			sqe->rw_flags = RWF_DSYNC;
	} else
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data(sqe, &f->op);
	return 0;
}

/* relay_uring_pwrite - struct queue_io pwrite through the ring. */
static int relay_uring_pwrite(void *ctx, int fd, const void *buf, size_t len,
			      uint64_t off, queue_io_cb cb, void *arg)
{
	return relay_uring_fop(ctx, RELAY_OP_WRITE, fd, buf, len, off, false,
			       cb, arg);
}

/* relay_uring_pwrite_sync - struct queue_io pwrite_sync: RWF_DSYNC. */
static int relay_uring_pwrite_sync(void *ctx, int fd, const void *buf,
				   size_t len, uint64_t off, queue_io_cb cb,
				   void *arg)
{
	return relay_uring_fop(ctx, RELAY_OP_WRITE, fd, buf, len, off, true,
			       cb, arg);
}

/* relay_uring_fdatasync - struct queue_io fdatasync through the ring. */
static int relay_uring_fdatasync(void *ctx, int fd, queue_io_cb cb, void *arg)
{
	return relay_uring_fop(ctx, RELAY_OP_FSYNC, fd, NULL, 0, 0, false, cb,
			       arg);
}

/* relay_uring_setup - create the ring and attach it to the loop. */
static int relay_uring_setup(struct relay_io *io, const char **why)
{
	struct io_uring_params p;
	int r;

	/*
	 * Only the loop thread touches the ring (SINGLE_ISSUER, Linux
	 * 6.0). The task-work flags are left out on purpose: with
	 * DEFER_TASKRUN (6.1) or COOP_TASKRUN (5.19) a completion waits
	 * until the thread enters the kernel for the ring, but this thread
	 * sleeps in libuv's epoll_wait, so the eventfd fired late (measured
	 * on 6.18: p90 accept latency 48 ms and 1,500 messages/s instead of
	 * 1.5 ms and 28,000/s). Older kernels refuse the flags: then the
	 * ring runs without them.
	 */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER;
	r = io_uring_queue_init_params(RELAY_IO_RING, &io->ring, &p);
	if (r == -EINVAL) {
		memset(&p, 0, sizeof(p));
		r = io_uring_queue_init_params(RELAY_IO_RING, &io->ring, &p);
	}
	if (r < 0) {
		*why = "io_uring_setup failed (kernel or seccomp profile)";
		return r;
	}

	/* Multishot accept needs IORING_FEAT_FAST_POLL kernels (5.19+). */
	if (!(p.features & IORING_FEAT_FAST_POLL) ||
	    !(p.features & IORING_FEAT_NODROP)) {
		*why = "kernel io_uring lacks fast poll or nodrop";
		r = -ENOTSUP;
		goto fail_ring;
	}

	io->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (io->efd < 0) {
		r = -errno;
		*why = "eventfd failed";
		goto fail_ring;
	}
	r = io_uring_register_eventfd(&io->ring, io->efd);
	if (r < 0) {
		*why = "io_uring_register_eventfd failed";
		goto fail_efd;
	}

	uv_poll_init(io->loop, &io->poll, io->efd);
	io->poll.data = io;
	uv_poll_start(&io->poll, UV_READABLE, relay_uring_reap_cb);
	io->uring = true;
	io->file.ctx = io;
	io->file.pwrite = relay_uring_pwrite;
	io->file.fdatasync = relay_uring_fdatasync;
	io->file.pwrite_sync = relay_uring_pwrite_sync;
	return 0;

fail_efd:
	close(io->efd);
	io->efd = -1;
fail_ring:
	io_uring_queue_exit(&io->ring);
	return r;
}

/* ---- libuv backend ---- */

/* relay_uv_alloc_cb - every read lands in the socket's own buffer. */
static void relay_uv_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct relay_sock *s = h->data;

	buf->base = s->rbuf;
	buf->len = sizeof(s->rbuf);
}

/* relay_uv_read_cb - data, end of stream or error. */
static void relay_uv_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct relay_sock *s = st->data;

	if (n > 0) {
		s->cbs->read(s->arg, b->base, (size_t)n);
		return;
	}
	if (n == 0)
		return;
	uv_read_stop(st);
	s->dead = true;
	s->cbs->eof(s->arg, n == UV_EOF ? 0 : (int)n);
}

/* relay_uv_write_cb - uv_write completes whole, or fails. */
static void relay_uv_write_cb(uv_write_t *req, int status)
{
	struct relay_sock *s = req->data;

	s->sending = false;
	if (status < 0) {
		if (!s->dead && !s->closing)
			s->cbs->eof(s->arg, status);
		s->dead = true;
		relay_sock_maybe_finish(s);
		return;
	}
	s->sent = s->out[s->cur].len;
	relay_sock_send_more(s);
}

/* relay_uv_send - write the rest of out[cur]. */
static void relay_uv_send(struct relay_sock *s)
{
	struct relay_buf *b = &s->out[s->cur];
	uv_buf_t ub = uv_buf_init(b->p + s->sent, (unsigned)(b->len - s->sent));

	if (uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &ub, 1,
		     relay_uv_write_cb) < 0) {
		s->dead = true;
		return;
	}
	s->sending = true;
}

/* relay_uv_close_cb - the handle is gone: free the socket. */
static void relay_uv_close_cb(uv_handle_t *h)
{
	relay_sock_destroy(h->data);
}

/*
 * relay_mem_closed_cb - a memory socket is closed: tell the owner, but
 * leave the struct to relay_sock_memory_free(), so the test driving it
 * can still look at it.
 */
static void relay_mem_closed_cb(uv_handle_t *h)
{
	struct relay_sock *s = h->data;

	s->dead = true;
	s->gone = true;
	if (s->cbs && s->cbs->closed)
		s->cbs->closed(s->arg);
}

/* relay_uv_connection_cb - accept one connection on a listener. */
static void relay_uv_connection_cb(uv_stream_t *server, int status)
{
	struct relay_listener *l = server->data;
	struct relay_sock *s;
	uv_os_fd_t fd;

	if (status < 0)
		return;
	s = relay_sock_new(l->io);
	if (s == NULL)
		return;
	uv_tcp_init(l->io->loop, &s->tcp);
	if (uv_accept(server, (uv_stream_t *)&s->tcp) < 0) {
		uv_close((uv_handle_t *)&s->tcp, relay_uv_close_cb);
		return;
	}
	uv_fileno((uv_handle_t *)&s->tcp, &fd);
	s->fd = fd;
	relay_io_fill_addrs(s);
	l->cb(l->arg, s);
}

/* relay_uv_fs_cb - a threadpool file operation finished. */
static void relay_uv_fs_cb(uv_fs_t *req)
{
	struct relay_fop *f = req->data;
	int res = (int)req->result;

	uv_fs_req_cleanup(req);
	f->cb(f->arg, res);
	free(f);
}

/* relay_uv_pwrite - struct queue_io pwrite on libuv's threadpool. */
static int relay_uv_pwrite(void *ctx, int fd, const void *buf, size_t len,
			   uint64_t off, queue_io_cb cb, void *arg)
{
	struct relay_io *io = ctx;
	struct relay_fop *f = malloc(sizeof(*f));
	uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
	int r;

	if (f == NULL)
		return -ENOMEM;
	f->cb = cb;
	f->arg = arg;
	f->req.data = f;
	r = uv_fs_write(io->loop, &f->req, fd, &b, 1, (int64_t)off,
			relay_uv_fs_cb);
	if (r < 0)
		free(f);
	return r;
}

/* relay_uv_fdatasync - struct queue_io fdatasync on the threadpool. */
static int relay_uv_fdatasync(void *ctx, int fd, queue_io_cb cb, void *arg)
{
	struct relay_io *io = ctx;
	struct relay_fop *f = malloc(sizeof(*f));
	int r;

	if (f == NULL)
		return -ENOMEM;
	f->cb = cb;
	f->arg = arg;
	f->req.data = f;
	r = uv_fs_fdatasync(io->loop, &f->req, fd, relay_uv_fs_cb);
	if (r < 0)
		free(f);
	return r;
}

/* ---- outbound connections ---- */

/*
 * relay_conn_done - a connect attempt is over: hand the socket (status 0)
 * or the error to the owner. The attempt's struct is freed by the caller.
 */
static void relay_conn_done(struct relay_conn *c, struct relay_sock *s,
			    int status)
{
	if (s) {
		s->fd = c->fd;
		relay_io_fill_addrs(s);
	}
	c->cb(c->arg, s, status);
}

/*
 * relay_uring_on_connect - one of the attempt's two CQEs: the connect's
 * or its linked timeout's. When both are in, the attempt is over:
 *   connect 0           connected (the timeout: -ECANCELED)
 *   connect -ECANCELED  the timeout fired (-ETIME, or -EALREADY when it
 *                       caught the connect mid-way): -ETIMEDOUT, since
 *                       nothing else ever cancels a connect
 *   connect -errno      failed (the timeout: -ECANCELED)
 */
static void relay_uring_on_connect(struct relay_conn *c)
{
	struct relay_sock *s = NULL;
	int status = c->res;
	int fl;

	if (--c->cqes > 0)
		return;

	if (status == -ECANCELED)
		status = -ETIMEDOUT;
	if (status == 0) {
		s = relay_sock_new(c->io);
		if (s == NULL)
			status = -ENOMEM;
	}
	if (status == 0) {
		/* From here the socket is an accepted one: blocking, its
		 * recv and send waiting inside the ring. */
		fl = fcntl(c->fd, F_GETFL);
		if (fl >= 0)
			fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
	} else {
		close(c->fd);
		c->fd = -1;
	}
	relay_conn_done(c, s, status);
	free(c);
}

/*
 * relay_uring_connect - queue IORING_OP_CONNECT linked to an
 * IORING_OP_LINK_TIMEOUT (Linux 5.5). The two SQEs must reach the kernel
 * in the same io_uring_submit() for the link to hold, so room for both is
 * made first.
 */
static int relay_uring_connect(struct relay_conn *c)
{
	struct io_uring *ring = &c->io->ring;
	struct io_uring_sqe *sqe, *tmo;
	int fd;

	fd = socket(c->dst.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	c->fd = fd;

	if (io_uring_sq_space_left(ring) < 2)
		io_uring_submit(ring);
	if (io_uring_sq_space_left(ring) < 2) {
		close(fd);
		c->fd = -1;
		return -EBUSY;
	}
	sqe = io_uring_get_sqe(ring);
	tmo = io_uring_get_sqe(ring);

	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&c->dst, c->dstlen);
	io_uring_sqe_set_data(sqe, &c->op);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_prep_link_timeout(tmo, &c->ts, 0);
	io_uring_sqe_set_data(tmo, &c->tmo_op);
	c->cqes = 2;
	return 0;
}

/* relay_uv_conn_free_cb - the attempt's timer is closed: free it. */
static void relay_uv_conn_free_cb(uv_handle_t *h)
{
	free(h->data);
}

/* relay_uv_connect_cb - uv_tcp_connect finished, failed or was cancelled. */
static void relay_uv_connect_cb(uv_connect_t *req, int status)
{
	struct relay_conn *c = req->data;
	struct relay_sock *s = c->sock;
	uv_os_fd_t fd;

	uv_timer_stop(&c->timer);
	if (status == UV_ECANCELED && c->timed_out)
		status = -ETIMEDOUT;

	if (status == 0) {
		uv_fileno((uv_handle_t *)&s->tcp, &fd);
		c->fd = fd;
	} else {
		/* The handle may already be closing (the timeout closed it):
		 * its close callback frees s, which has no owner's
		 * callbacks yet. */
		if (!uv_is_closing((uv_handle_t *)&s->tcp))
			uv_close((uv_handle_t *)&s->tcp, relay_uv_close_cb);
		s = NULL;
	}
	relay_conn_done(c, s, status);
	uv_close((uv_handle_t *)&c->timer, relay_uv_conn_free_cb);
}

/*
 * relay_uv_conn_timer_cb - the timeout fired, or a failure detected when
 * the connect was started is being reported (never from inside
 * relay_io_connect).
 */
static void relay_uv_conn_timer_cb(uv_timer_t *h)
{
	struct relay_conn *c = h->data;

	if (c->early < 0) {
		/* uv_tcp_connect never started: no connect callback. */
		uv_close((uv_handle_t *)&c->sock->tcp, relay_uv_close_cb);
		relay_conn_done(c, NULL, c->early);
		uv_close((uv_handle_t *)&c->timer, relay_uv_conn_free_cb);
		return;
	}

	/* Closing the handle cancels the request: its callback follows
	 * with UV_ECANCELED, before the handle's close callback. */
	c->timed_out = true;
	uv_close((uv_handle_t *)&c->sock->tcp, relay_uv_close_cb);
}

/* relay_uv_connect - uv_tcp_connect under a uv timer. */
static int relay_uv_connect(struct relay_conn *c, int64_t timeout_ms)
{
	struct relay_sock *s = relay_sock_new(c->io);
	int r;

	if (s == NULL)
		return -ENOMEM;
	r = uv_tcp_init(c->io->loop, &s->tcp);
	if (r < 0) {
		free(s);
		return r;
	}
	c->sock = s;
	uv_timer_init(c->io->loop, &c->timer);
	c->timer.data = c;
	c->req.data = c;

	/*
	 * libuv reports some failures (-ENETUNREACH, -EADDRNOTAVAIL, ...)
	 * from uv_tcp_connect itself; they go to the callback too, from a
	 * zero timer, so that the owner sees every failure one way.
	 */
	r = uv_tcp_connect(&c->req, &s->tcp, (struct sockaddr *)&c->dst,
			   relay_uv_connect_cb);
	if (r < 0) {
		c->early = r;
		timeout_ms = 0;
	}
	uv_timer_start(&c->timer, relay_uv_conn_timer_cb, (uint64_t)timeout_ms,
		       0);
	return 0;
}

int relay_io_connect(struct relay_io *io, const struct sockaddr *dst,
		     int64_t timeout_ms, relay_connect_cb cb, void *arg)
{
	struct relay_conn *c;
	int r;

	if (dst == NULL || timeout_ms <= 0 || cb == NULL)
		return -EINVAL;
	if (dst->sa_family != AF_INET && dst->sa_family != AF_INET6)
		return -EAFNOSUPPORT;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;

	c->io = io;
	c->fd = -1;
	c->cb = cb;
	c->arg = arg;
	c->op.kind = RELAY_OP_CONNECT;
	c->tmo_op.kind = RELAY_OP_CONNECT_TIMEOUT;
	c->dstlen = dst->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					       : sizeof(struct sockaddr_in);
	memcpy(&c->dst, dst, c->dstlen);
	c->ts.tv_sec = timeout_ms / 1000;
	c->ts.tv_nsec = (timeout_ms % 1000) * 1000000;

	r = io->uring ? relay_uring_connect(c)
		      : relay_uv_connect(c, timeout_ms);
	if (r < 0)
		free(c);
	return r;
}

/* ---- common ---- */

/* relay_sock_send_more - after a send: continue, swap buffers, or finish. */
static void relay_sock_send_more(struct relay_sock *s)
{
	struct relay_buf *b = &s->out[s->cur];

	if (s->dead) {
		relay_sock_maybe_finish(s);
		return;
	}
	if (s->sent < b->len) {
		if (s->io->uring)
			relay_uring_send(s);
		else
			relay_uv_send(s);
		return;
	}

	/* out[cur] is done; what was queued meanwhile goes next. */
	b->len = 0;
	s->sent = 0;
	s->cur = !s->cur;
	if (s->out[s->cur].len > 0) {
		relay_sock_send_more(s);
		return;
	}
	relay_sock_maybe_finish(s);
}

/*
 * relay_sock_maybe_finish - close a closing socket once its output is
 * sent (or can no longer be) and, on io_uring, nothing is in flight.
 */
static void relay_sock_maybe_finish(struct relay_sock *s)
{
	struct io_uring_sqe *sqe;

	/* Output still due goes first; the prepare callback comes back. */
	if (!s->closing || s->sending || s->due)
		return;
	if (s->memory) {
		if (!uv_is_closing((uv_handle_t *)&s->reaper))
			uv_close((uv_handle_t *)&s->reaper,
				 relay_mem_closed_cb);
		return;
	}
	if (!s->dead && s->out[!s->cur].len > 0) {
		relay_sock_send_more(s);
		return;
	}

	if (!s->io->uring) {
		if (!uv_is_closing((uv_handle_t *)&s->tcp))
			uv_close((uv_handle_t *)&s->tcp, relay_uv_close_cb);
		return;
	}

	if (s->recv_armed) {
		/* The recv would wait for the peer: cancel it, then finish. */
		sqe = relay_io_sqe(s->io);
		if (sqe) {
			io_uring_prep_cancel(sqe, &s->recv_op, 0);
			io_uring_sqe_set_data(sqe, NULL);
		}
		shutdown(s->fd, SHUT_RDWR);
		return;
	}
	if (s->inflight > 0)
		return;
	close(s->fd);
	relay_sock_destroy(s);
}

void relay_sock_set_cbs(struct relay_sock *s, const struct relay_sock_cbs *c,
			void *arg)
{
	s->cbs = c;
	s->arg = arg;
}

void relay_sock_read_start(struct relay_sock *s)
{
	if (s->reading || s->dead || s->closing)
		return;
	s->reading = true;
	if (s->memory)
		relay_sock_inject(s, NULL, 0);
	else if (s->io->uring)
		relay_uring_arm_recv(s);
	else
		uv_read_start((uv_stream_t *)&s->tcp, relay_uv_alloc_cb,
			      relay_uv_read_cb);
}

void relay_sock_read_stop(struct relay_sock *s)
{
	if (!s->reading)
		return;
	s->reading = false;

	/* io_uring: an armed recv completes and is simply not re-armed. */
	if (!s->io->uring && !s->dead && !s->memory)
		uv_read_stop((uv_stream_t *)&s->tcp);
}

int relay_sock_write(struct relay_sock *s, const void *buf, size_t len)
{
	struct relay_buf *b;
	size_t cap;
	char *p;

	if (s->dead)
		return -EPIPE;
	if (len == 0)
		return 0;
	if (s->memory) {
		s->sink(s->sink_arg, buf, len);
		return 0;
	}

	/* Idle: write into out[cur] and send at once; else queue behind. */
	b = s->sending ? &s->out[!s->cur] : &s->out[s->cur];
	if (b->len + len > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < b->len + len)
			cap *= 2;
		p = realloc(b->p, cap);
		if (p == NULL)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, buf, len);
	b->len += len;

	/* Sent before the loop waits, with whatever else comes meanwhile. */
	if (!s->sending && !s->due) {
		s->due = true;
		s->due_prev = NULL;
		s->due_next = s->io->due;
		if (s->io->due)
			s->io->due->due_prev = s;
		s->io->due = s;
	}
	return 0;
}

size_t relay_sock_pending(const struct relay_sock *s)
{
	return s->out[0].len + s->out[1].len - s->sent;
}

void relay_sock_close(struct relay_sock *s)
{
	if (s->closing)
		return;
	s->closing = true;
	s->reading = false;
	if (!s->io->uring && !s->dead && !s->memory)
		uv_read_stop((uv_stream_t *)&s->tcp);
	relay_sock_maybe_finish(s);
}

struct relay_sock *relay_sock_memory(struct relay_io *io,
				     const struct sockaddr *peer,
				     void (*sink)(void *, const char *, size_t),
				     void *arg)
{
	struct relay_sock *s = relay_sock_new(io);

	if (s == NULL)
		return NULL;
	s->memory = true;
	s->sink = sink;
	s->sink_arg = arg;
	memcpy(&s->peer, peer,
	       peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					   : sizeof(struct sockaddr_in));
	memcpy(&s->local, &s->peer, sizeof(s->local));
	uv_idle_init(io->loop, &s->reaper);
	s->reaper.data = s;
	return s;
}

void relay_sock_inject(struct relay_sock *s, const char *buf, size_t len)
{
	struct relay_buf *p = &s->pending;
	size_t n;

	if (s->closing || s->dead)
		return;
	if (len > 0) {
		if (p->len + len > p->cap) {
			char *q = realloc(p->p, p->len + len);

			if (q == NULL)
				return;
			p->p = q;
			p->cap = p->len + len;
		}
		memcpy(p->p + p->len, buf, len);
		p->len += len;
	}

	/* Deliver in read-sized pieces while the owner keeps reading. */
	while (s->reading && !s->closing && p->len > 0) {
		n = p->len < sizeof(s->rbuf) ? p->len : sizeof(s->rbuf);
		memcpy(s->rbuf, p->p, n);
		memmove(p->p, p->p + n, p->len - n);
		p->len -= n;
		s->cbs->read(s->arg, s->rbuf, n);
	}
}

bool relay_sock_memory_open(const struct relay_sock *s)
{
	return !s->gone;
}

void relay_sock_memory_free(struct relay_sock *s)
{
	if (!s->gone)
		return;
	free(s->out[0].p);
	free(s->out[1].p);
	free(s->pending.p);
	free(s);
}

void relay_sock_inject_eof(struct relay_sock *s)
{
	if (s->closing || s->dead)
		return;
	s->dead = true;
	s->cbs->eof(s->arg, 0);
}

const struct sockaddr *relay_sock_peer(const struct relay_sock *s)
{
	return (const struct sockaddr *)&s->peer;
}

const struct sockaddr *relay_sock_local(const struct relay_sock *s)
{
	return (const struct sockaddr *)&s->local;
}

/* relay_io_parse_addr - "host:port" or "[v6]:port" into ss. */
static int relay_io_parse_addr(const char *addr, struct sockaddr_storage *ss)
{
	char host[64];
	const char *colon, *h = addr;
	size_t hl;
	char *end;
	long port;

	if (*addr == '[') {
		colon = strstr(addr, "]:");
		if (colon == NULL)
			return -EINVAL;
		h = addr + 1;
		hl = (size_t)(colon - h);
		colon++;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL)
			return -EINVAL;
		hl = (size_t)(colon - addr);
	}
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port <= 0 || port > 65535)
		return -EINVAL;

	memset(ss, 0, sizeof(*ss));
	if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
		return 0;
	if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	return -EINVAL;
}

int relay_io_listen(struct relay_io *io, const char *addr, relay_accept_cb cb,
		    void *arg, const char **why)
{
	struct sockaddr_storage ss;
	struct relay_listener *l;
	int fd = -1, one = 1, r;

	r = relay_io_parse_addr(addr, &ss);
	if (r < 0) {
		*why = "not host:port or [ipv6]:port";
		return r;
	}
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;

	fd =
	    socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = -errno;
		*why = "socket failed";
		goto fail;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss,
		 ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					  : sizeof(struct sockaddr_in)) < 0) {
		r = -errno;
		*why = "bind failed";
		goto fail;
	}
	if (listen(fd, 4096) < 0) {
		r = -errno;
		*why = "listen failed";
		goto fail;
	}

	l->io = io;
	l->fd = fd;
	l->cb = cb;
	l->arg = arg;
	l->op.kind = RELAY_OP_ACCEPT;
	l->tcp.data = l;
	if (io->uring) {
		relay_uring_arm_accept(l);
	} else {
		uv_tcp_init(io->loop, &l->tcp);
		r = uv_tcp_open(&l->tcp, fd);
		if (r == 0)
			r = uv_listen((uv_stream_t *)&l->tcp, 4096,
				      relay_uv_connection_cb);
		if (r < 0) {
			*why = "uv_listen failed";
			uv_close((uv_handle_t *)&l->tcp, NULL);
			l->fd = -1;
			l->next = io->listeners;
			io->listeners = l;
			return r;
		}
	}
	l->next = io->listeners;
	io->listeners = l;
	return 0;

fail:
	if (fd >= 0)
		close(fd);
	free(l);
	return r;
}

void relay_io_stop_listening(struct relay_io *io)
{
	struct relay_listener *l;
	struct io_uring_sqe *sqe;

	for (l = io->listeners; l; l = l->next) {
		if (l->fd < 0)
			continue;
		if (io->uring) {
			sqe = relay_io_sqe(io);
			if (sqe) {
				io_uring_prep_cancel(sqe, &l->op, 0);
				io_uring_sqe_set_data(sqe, NULL);
			}
			close(l->fd);
		} else {
			uv_close((uv_handle_t *)&l->tcp, NULL);
		}
		l->fd = -1;
	}
}

void relay_io_on_prepare(struct relay_io *io, void (*fn)(void *), void *arg)
{
	io->hook = fn;
	io->hook_arg = arg;
}

const struct queue_io *relay_io_file(struct relay_io *io)
{
	return &io->file;
}

const char *relay_io_name(const struct relay_io *io)
{
	return io->uring ? "io_uring" : "libuv";
}

int relay_io_new(struct relay_io **out, uv_loop_t *loop, int backend,
		 const char **why)
{
	struct relay_io *io = calloc(1, sizeof(*io));
	int r;

	*why = NULL;
	if (io == NULL)
		return -ENOMEM;
	io->loop = loop;
	io->efd = -1;

	if (backend != CONF_IO_LIBUV) {
		r = relay_uring_setup(io, why);
		if (r < 0 && backend == CONF_IO_URING) {
			free(io);
			return r;
		}
	}
	if (!io->uring) {
		io->file.ctx = io;
		io->file.pwrite = relay_uv_pwrite;
		io->file.fdatasync = relay_uv_fdatasync;
	}
	uv_prepare_init(io->loop, &io->prepare);
	io->prepare.data = io;
	uv_prepare_start(&io->prepare, relay_uring_prepare_cb);
	*out = io;
	return 0;
}

/* relay_io_handle_closed_cb - the last of the ring's handles is closed. */
static void relay_io_handle_closed_cb(uv_handle_t *h)
{
	struct relay_io *io = h->data;

	/* libuv runs close callbacks in no promised order: count them. */
	if (--io->closing > 0)
		return;
	if (io->uring) {
		io_uring_queue_exit(&io->ring);
		close(io->efd);
	}
	free(io);
}

void relay_io_free(struct relay_io *io)
{
	struct relay_listener *l, *next;

	/* Output still due is sent now: no iteration will come for it. */
	relay_io_send_due(io);
	if (io->uring && io_uring_sq_ready(&io->ring) > 0)
		io_uring_submit(&io->ring);

	for (l = io->listeners; l; l = next) {
		next = l->next;
		free(l);
	}
	/* The last of the handles' close callbacks frees io. */
	io->closing = io->uring ? 2 : 1;
	if (io->uring)
		uv_close((uv_handle_t *)&io->poll, relay_io_handle_closed_cb);
	uv_close((uv_handle_t *)&io->prepare, relay_io_handle_closed_cb);
}
