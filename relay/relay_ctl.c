/*
 * relay_ctl - see relay_ctl.h.
 */
#include "relay/relay_ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "relay/relay_log.h"

/* The longest command line taken. */
#define CTL_LINE_MAX 512

struct relay_ctl {
	uv_pipe_t server;
	struct relay_sched *sched;
	char *path;
};

struct ctl_client {
	uv_pipe_t pipe;
	struct relay_ctl *ctl;
	char line[CTL_LINE_MAX];
	size_t len;
	bool answered;
	uv_write_t wr;
	char reply[128];
};

static void ctl_client_closed_cb(uv_handle_t *h)
{
	free(h->data);
}

static void ctl_written_cb(uv_write_t *req, int status)
{
	struct ctl_client *k = req->data;

	uv_close((uv_handle_t *)&k->pipe, ctl_client_closed_cb);
}

/* ctl_answer - run the command in k->line and send the reply. */
static void ctl_answer(struct ctl_client *k)
{
	struct relay_sched *s = k->ctl->sched;
	char *cmd = k->line, *arg = strchr(k->line, ' ');
	uv_buf_t b;
	int r = 0;

	if (arg)
		*arg++ = '\0';
	if (strcmp(cmd, "flush") == 0) {
		size_t n = relay_sched_flush(s, arg && *arg ? arg : NULL);

		snprintf(k->reply, sizeof(k->reply), "ok %zu\n", n);
	} else if (arg && strcmp(cmd, "hold") == 0) {
		r = relay_sched_hold(s, arg);
	} else if (arg && strcmp(cmd, "release") == 0) {
		r = relay_sched_release(s, arg);
	} else if (arg && strcmp(cmd, "delete") == 0) {
		r = relay_sched_delete(s, arg);
	} else {
		snprintf(k->reply, sizeof(k->reply),
			 "error unknown command\n");
	}
	if (k->reply[0] == '\0')
		snprintf(k->reply, sizeof(k->reply), "%s\n",
			 r == 0	       ? "ok"
			 : r == -ENOENT ? "error no such message"
					: "error cannot record it");
	k->answered = true;
	b = uv_buf_init(k->reply, (unsigned)strlen(k->reply));
	k->wr.data = k;
	if (uv_write(&k->wr, (uv_stream_t *)&k->pipe, &b, 1,
		     ctl_written_cb) < 0)
		uv_close((uv_handle_t *)&k->pipe, ctl_client_closed_cb);
}

static void ctl_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct ctl_client *k = h->data;

	buf->base = k->line + k->len;
	buf->len = sizeof(k->line) - 1 - k->len;
}

static void ctl_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct ctl_client *k = st->data;
	char *nl;

	if (k->answered)
		return;
	if (n < 0) {
		uv_close((uv_handle_t *)&k->pipe, ctl_client_closed_cb);
		return;
	}
	k->len += (size_t)n;
	k->line[k->len] = '\0';
	nl = strchr(k->line, '\n');
	if (nl == NULL && k->len < sizeof(k->line) - 1)
		return;
	if (nl)
		*nl = '\0';
	uv_read_stop(st);
	ctl_answer(k);
}

static void ctl_connection_cb(uv_stream_t *server, int status)
{
	struct relay_ctl *ctl = server->data;
	struct ctl_client *k;

	if (status < 0)
		return;
	k = calloc(1, sizeof(*k));
	if (k == NULL)
		return;
	k->ctl = ctl;
	uv_pipe_init(server->loop, &k->pipe, 0);
	k->pipe.data = k;
	if (uv_accept(server, (uv_stream_t *)&k->pipe) < 0 ||
	    uv_read_start((uv_stream_t *)&k->pipe, ctl_alloc_cb,
			  ctl_read_cb) < 0)
		uv_close((uv_handle_t *)&k->pipe, ctl_client_closed_cb);
}

int relay_ctl_new(struct relay_ctl **out, uv_loop_t *loop, const char *path,
		  struct relay_sched *sched, char *err, size_t errlen)
{
	struct relay_ctl *ctl = calloc(1, sizeof(*ctl));
	mode_t old;
	int r;

	if (ctl == NULL)
		return -ENOMEM;
	ctl->sched = sched;
	ctl->path = strdup(path);
	if (ctl->path == NULL) {
		free(ctl);
		return -ENOMEM;
	}
	uv_pipe_init(loop, &ctl->server, 0);
	ctl->server.data = ctl;

	/* A socket left by a daemon that died is in the way: replace it.
	 * The spool's lock already proved that no daemon is running here. */
	unlink(path);
	old = umask(0077);
	r = uv_pipe_bind(&ctl->server, path);
	umask(old);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&ctl->server, 16,
			      ctl_connection_cb);
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", path, uv_strerror(r));
		relay_ctl_close(ctl);
		return r;
	}
	chmod(path, 0600);
	*out = ctl;
	return 0;
}

static void ctl_closed_cb(uv_handle_t *h)
{
	struct relay_ctl *ctl = h->data;

	free(ctl->path);
	free(ctl);
}

void relay_ctl_close(struct relay_ctl *ctl)
{
	unlink(ctl->path);
	uv_close((uv_handle_t *)&ctl->server, ctl_closed_cb);
}

int relay_ctl_call(const char *path, const char *line, char *reply,
		   size_t replylen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	size_t got = 0, n = strlen(line);
	ssize_t k;
	int fd, r = 0;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    write(fd, line, n) != (ssize_t)n || write(fd, "\n", 1) != 1) {
		r = -errno;
		goto fail;
	}
	while (got + 1 < replylen &&
	       (k = read(fd, reply + got, replylen - 1 - got)) > 0)
		got += (size_t)k;
	reply[got] = '\0';
	if (got > 0 && reply[got - 1] == '\n')
		reply[got - 1] = '\0';
	if (got == 0)
		r = -EPIPE;

fail:
	close(fd);
	return r;
}
