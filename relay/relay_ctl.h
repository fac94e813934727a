/*
 * relay_ctl - the daemon's control socket: a UNIX stream socket at
 * control_socket, mode 0600 (only the owner may steer the queue), where
 * `waxseal queue` sends one command line and reads one reply line:
 *
 *	flush [DOMAIN]   -> "ok N" (messages tried now)
 *	hold ID | release ID | delete ID -> "ok" or "error no such message"
 *
 * Anything else is answered "error unknown command". The connection
 * closes after the reply. Commands act through relay_sched, on the loop
 * thread, without stopping delivery.
 */
#ifndef WAXSEAL_RELAY_CTL_H
#define WAXSEAL_RELAY_CTL_H

#include <stddef.h>
#include <uv.h>

#include "relay/relay_sched.h"

struct relay_ctl;

/*
 * relay_ctl_new - listen on path (a stale socket file is replaced).
 * 0 or -errno with the reason in err.
 */
int relay_ctl_new(struct relay_ctl **out, uv_loop_t *loop, const char *path,
		  struct relay_sched *sched, char *err, size_t errlen);

/* relay_ctl_close - stop listening, remove the socket file, and free
 * once the loop has closed the handles. */
void relay_ctl_close(struct relay_ctl *ctl);

/*
 * relay_ctl_call - the client side: send line to the daemon at path and
 * read its reply into reply. 0, or -errno (-ENOENT/-ECONNREFUSED: no
 * daemon is running).
 */
int relay_ctl_call(const char *path, const char *line, char *reply,
		   size_t replylen);

#endif
