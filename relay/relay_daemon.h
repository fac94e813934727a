/*
 * relay_daemon - `waxseal run`: start-up, the loop, signals, shutdown.
 *
 * Start-up reads the configuration, loads the DKIM keys and TLS
 * certificate, chooses the I/O backend (logged once), recovers the spool,
 * starts the sign pool and listens. Anything wrong at this stage is fatal
 * with a message naming the file and parameter (exit 2 for configuration,
 * 1 otherwise).
 *
 * Signals: SIGHUP re-reads the configuration and keys (a bad new file is
 * logged and the old one kept); SIGTERM and SIGINT stop accepting, let
 * open transactions finish, flush the spool and exit 0.
 */
#ifndef WAXSEAL_RELAY_DAEMON_H
#define WAXSEAL_RELAY_DAEMON_H

/*
 * relay_daemon_run - run until stopped. overrides are "name=value"
 * strings applied after the file (`-o`), noverride of them. Returns the
 * process exit code.
 */
int relay_daemon_run(const char *path, char **overrides, int noverride);

/*
 * relay_daemon_load - read path and apply overrides into c. 0, or -errno
 * with the message in err.
 */
struct conf;
int relay_daemon_load(struct conf *c, const char *path, char **overrides,
		      int noverride, char *err, size_t errlen);

#endif
