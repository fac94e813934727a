/*
 * relay_io - the daemon's socket and file I/O, with two backends behind
 * one interface, chosen at start (io_backend = auto | io_uring | libuv):
 *
 *   io_uring - a ring attached to the libuv loop. Completions signal an
 *     eventfd that the loop polls; everything queued during one loop
 *     iteration reaches the kernel in one io_uring_submit(), made from a
 *     uv_prepare handle just before the loop blocks. Accept (multishot),
 *     connect, recv, send, write and fdatasync go through the ring.
 *   libuv - libuv's own TCP streams and threadpool file operations, for
 *     kernels or container profiles without io_uring. auto falls back to
 *     it when the ring cannot be set up.
 *
 * Timers, signals and wake-ups always come from libuv.
 *
 * Sockets: a relay_sock is created by the backend on accept (or when an
 * outbound connection is made) and handed to the accept (or connect)
 * callback, which sets its callbacks and starts reading. Both kinds
 * behave alike from then on, TCP_NODELAY set on each. Data
 * given to relay_sock_write() is copied: the caller's buffer is free again
 * when the call returns. Reads arrive in the backend's buffer, valid only
 * during the read callback. relay_sock_close() sends what is still queued,
 * then closes; the closed callback is the last call for that socket, after
 * which it is freed.
 *
 * Errors are negative errno.
 */
#ifndef WAXSEAL_RELAY_IO_H
#define WAXSEAL_RELAY_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "queue/queue.h"

struct relay_io;
struct relay_sock;

struct relay_sock_cbs {
	/* Bytes from the peer; buf is valid during the call only. */
	void (*read)(void *arg, const char *buf, size_t len);
	/* The peer closed (err 0) or the socket failed (-errno). */
	void (*eof)(void *arg, int err);
	/* The socket is closed and freed; the last callback. */
	void (*closed)(void *arg);
};

/* Called for each accepted connection; the socket is not reading yet. */
typedef void (*relay_accept_cb)(void *arg, struct relay_sock *s);

/*
 * Called once with a connected socket (status 0; not reading yet, like
 * an accepted one: set callbacks, then relay_sock_read_start) or with
 * s NULL and -errno (-ECONNREFUSED, -ETIMEDOUT, -ENETUNREACH, ...).
 */
typedef void (*relay_connect_cb)(void *arg, struct relay_sock *s, int status);

/*
 * relay_io_new - set up the backend on loop. backend is an enum
 * conf_io_backend; with CONF_IO_AUTO the ring is tried first. The
 * reason for a fallback goes to *why (static string) or NULL.
 */
int relay_io_new(struct relay_io **out, uv_loop_t *loop, int backend,
		 const char **why);

/* relay_io_name - "io_uring" or "libuv". */
const char *relay_io_name(const struct relay_io *io);

/*
 * relay_io_listen - listen on "host:port" or "[v6]:port"; cb for every
 * connection. 0 or -errno (-EINVAL for a bad address, with *why).
 */
int relay_io_listen(struct relay_io *io, const char *addr,
		    relay_accept_cb cb, void *arg, const char **why);

/*
 * relay_io_connect - open a TCP connection to dst (AF_INET or AF_INET6,
 * port set; copied); give up after timeout_ms (> 0) with -ETIMEDOUT. cb
 * never runs before the call returns, and runs exactly once when the call
 * returned 0: every failure of the attempt itself, even one seen at once,
 * goes to cb. 0 when started, or -errno (-EINVAL: timeout_ms <= 0 or no
 * cb; -EAFNOSUPPORT; -EMFILE and others from socket(); -ENOMEM; -EBUSY:
 * the ring has no room).
 */
int relay_io_connect(struct relay_io *io, const struct sockaddr *dst,
		     int64_t timeout_ms, relay_connect_cb cb, void *arg);

/* relay_io_stop_listening - close every listener; open sockets stay. */
void relay_io_stop_listening(struct relay_io *io);

/*
 * relay_io_on_prepare - fn(arg) runs once per loop iteration, just before
 * the backend hands queued I/O to the kernel and the loop blocks: the
 * place for the spool's group commit.
 */
void relay_io_on_prepare(struct relay_io *io, void (*fn)(void *), void *arg);

/* relay_io_file - the asynchronous file I/O the spool uses. */
const struct queue_io *relay_io_file(struct relay_io *io);

/*
 * relay_io_free - release the backend; every socket must be closed,
 * every file operation finished and every connect's callback run (the
 * loop has run until then; a connect's timeout bounds that wait). The
 * io_uring backend finishes from the loop's close callbacks: run the loop
 * once more afterwards.
 */
void relay_io_free(struct relay_io *io);

/* relay_sock_set_cbs - callbacks and their argument. */
void relay_sock_set_cbs(struct relay_sock *s, const struct relay_sock_cbs *c,
			void *arg);

/* relay_sock_read_start / _stop - start or pause delivering reads. */
void relay_sock_read_start(struct relay_sock *s);
void relay_sock_read_stop(struct relay_sock *s);

/* relay_sock_write - queue len bytes for sending (copied). 0 or -errno. */
int relay_sock_write(struct relay_sock *s, const void *buf, size_t len);

/* relay_sock_pending - bytes queued and not yet sent. */
size_t relay_sock_pending(const struct relay_sock *s);

/* relay_sock_close - send what is queued, then close; closed cb follows. */
void relay_sock_close(struct relay_sock *s);

/*
 * relay_sock_memory - a socket without a descriptor, for tests and fuzz
 * targets: what is written to it goes to sink(arg, ...) at once, and
 * relay_sock_inject() plays the peer's side. Hand it to an accept
 * callback like an accepted socket. NULL on ENOMEM.
 */
struct relay_sock *relay_sock_memory(struct relay_io *io,
				     const struct sockaddr *peer,
				     void (*sink)(void *, const char *, size_t),
				     void *arg);

/*
 * relay_sock_inject - bytes from the peer of a memory socket; held while
 * the owner is not reading. relay_sock_inject_eof - the peer closes.
 */
void relay_sock_inject(struct relay_sock *s, const char *buf, size_t len);
void relay_sock_inject_eof(struct relay_sock *s);

/*
 * relay_sock_memory_open - false once a memory socket has been closed
 * (its closed callback has run). relay_sock_memory_free - release a
 * closed memory socket; the owner of the test frees it, never waxseal.
 */
bool relay_sock_memory_open(const struct relay_sock *s);
void relay_sock_memory_free(struct relay_sock *s);

/* relay_sock_peer / _local - the addresses of the connection. */
const struct sockaddr *relay_sock_peer(const struct relay_sock *s);
const struct sockaddr *relay_sock_local(const struct relay_sock *s);

#endif
