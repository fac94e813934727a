/*
 * bench_run - `waxseal-bench run SCENARIO`; see bench_run.h for what it
 * promises, the scenario format and the report.
 *
 * The runner is one thread that polls: children are started with fork
 * and exec and reaped with wait4(WNOHANG) every few milliseconds, files
 * that grow (waxseal's log, its delivery log) are read from where the
 * last look stopped. Nothing here waits without a deadline.
 *
 * XXX: free ports are found by binding port 0 and closing the socket; a
 * process that takes the port between then and the child's bind fails
 * the run instead of being retried with another port.
 *
 * XXX: the JSON reader understands the reports of blast and sink (objects,
 * arrays, strings without escapes that matter, numbers), not JSON at
 * large.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* timegm, mkdtemp */
#endif
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_run.h"

#define BENCH_RUN_MAX_LINES 256
#define BENCH_RUN_MAX_DEST 200
#define BENCH_RUN_MAX_KEYS 8
#define BENCH_RUN_MAX_SENDERS 1000
#define BENCH_RUN_MAX_SWEEP 32
#define BENCH_RUN_MAX_ARGS 512
#define BENCH_RUN_START_MS 20000
#define BENCH_RUN_STOP_MS 20000
#define BENCH_RUN_GENKEY_MS 60000
#define BENCH_RUN_DRAIN_S 120
#define BENCH_RUN_IDLE_EXIT_S 10
#define BENCH_RUN_POLL_MS 20
/* Work directories are shorter than this, so DIR/NAME fits PATH_MAX. */
#define BENCH_RUN_DIR_MAX (PATH_MAX / 2)

const char bench_run_summary[] =
    "run       start waxseal and sinks from a scenario, blast, wait for "
    "delivery, report";

/* Blast options a sweep may vary; any other name is a waxseal parameter. */
static const char *const bench_run_blast_params[] = {
    "connections",    "size", "recipients", "rcpt-domains",
    "sender-domains", "rate", "pipelining", "messages",
};

/* bench_run_is_blast_param - whether a swept name is blast's. */
static int bench_run_is_blast_param(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(bench_run_blast_params) /
			    sizeof(bench_run_blast_params[0]);
	     i++)
		if (!strcmp(name, bench_run_blast_params[i]))
			return 1;
	return 0;
}

struct bench_run_kv {
	char *key;
	char *value;
};

struct bench_run_key {
	char selector[64];
	char type[16]; /* rsa or ed25519 */
	unsigned bits;
};

struct bench_run_scenario {
	char name[128];
	struct bench_run_kv blast[BENCH_RUN_MAX_LINES];
	unsigned nblast;
	char *waxseal[BENCH_RUN_MAX_LINES];
	unsigned nwaxseal;
	struct bench_run_key keys[BENCH_RUN_MAX_KEYS];
	unsigned nkeys;
	unsigned destinations;
	char *options;
	char *dest_options[BENCH_RUN_MAX_DEST];
	int tls;
	unsigned verify_every;
	unsigned drain_s;
	uint64_t messages;
	double duration;
	unsigned rcpt_domains, sender_domains;
};

struct bench_run_opts {
	const char *scenario;
	const char *waxseal;
	const char *bench;
	const char *target;
	const char *keep;
	const char *chart;
	const char *sweep_param;
	char *sweep_values[BENCH_RUN_MAX_SWEEP];
	unsigned nsweep;
	uint64_t messages;
	double duration;
	unsigned drain_s;
	unsigned sink_port;
	int json;
};

struct bench_run_child {
	const char *name;
	pid_t pid; /* 0: not running */
	int status;
	struct rusage ru;
};

struct bench_run_dest {
	char listen[64];
	double messages, recipients, connections, max_concurrent;
	double tls_sessions, dkim_pass, dkim_fail;
};

/* One run's figures; negative means unknown. */
struct bench_run_report {
	const char *value; /* the sweep value, or NULL */
	double attempted, accepted, recipients;
	double delivered, bounced, expired, deferrals;
	double intake_per_s, p99_ms, e2e_per_s, e2e_rcpt_per_s, drain_s;
	double cpu_s, rss_kb, fsyncs, wax_messages;
	int wax_status;
	double verified, pass, fail, none;
	double sink_messages, sink_recipients, sink_connections;
	double r2xx, r4xx, r5xx;
	struct bench_run_dest dest[BENCH_RUN_MAX_DEST];
	unsigned ndest;
	int complete;
};

/* A file read as it grows: complete lines only. */
struct bench_run_tail {
	char path[PATH_MAX];
	off_t off;
	char buf[65536];
	size_t len;
};

/* What the delivery log has said so far. */
struct bench_run_dlog {
	struct bench_run_tail t;
	uint64_t delivered, bounced, expired, deferred;
	int64_t last_ms; /* wall clock of the last final outcome */
};

static volatile sig_atomic_t bench_run_stop;
static struct bench_run_child *bench_run_kids[4];
static int bench_run_tty;

/* bench_run_usage - print the subcommand's help. */
static void bench_run_usage(FILE *f)
{
	fprintf(f,
		"usage: waxseal-bench run [options] SCENARIO\n"
		"\n"
		"Start waxseal and sinks as the scenario file says, blast "
		"mail through,\n"
		"wait until every accepted recipient is delivered or "
		"bounced, report.\n"
		"\n"
		"  --waxseal PATH         the daemon (default "
		"BUILD/relay/waxseal)\n"
		"  --bench PATH           waxseal-bench (default: this "
		"binary)\n"
		"  --messages N           override the scenario's message "
		"count\n"
		"  --duration SECONDS     override the blast's time limit\n"
		"  --drain-timeout S      wait for delivery at most S seconds "
		"(default 120)\n"
		"  --target HOST:PORT     blast this relay instead of "
		"starting waxseal\n"
		"  --sink-port PORT       sinks listen on 127.0.0.10+i:PORT "
		"(default: free\n"
		"                         ports)\n"
		"  --sweep PARAM=V1,V2..  one run per value; table and "
		"gnuplot chart\n"
		"  --chart PATH           the sweep's PNG (default "
		"sweep-PARAM.png)\n"
		"  --keep DIR             work in DIR and keep it\n"
		"  --json                 print the report as JSON\n"
		"  --help                 this text\n");
}

/* bench_run_now_ms - monotonic milliseconds. */
static int64_t bench_run_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* bench_run_wall_ms - wall clock milliseconds, as the delivery log has. */
static int64_t bench_run_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* bench_run_sleep_ms - sleep; a signal cuts it short. */
static void bench_run_sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* bench_run_signal_cb - SIGINT/SIGTERM: stop the run, kill the children. */
static void bench_run_signal_cb(int sig)
{
	(void)sig;
	bench_run_stop = 1;
}

/* bench_run_strdup - strdup or exit: the runner is a short-lived tool. */
static char *bench_run_strdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL) {
		fprintf(stderr, "waxseal-bench run: out of memory\n");
		exit(1);
	}
	return p;
}

/* bench_run_trim - cut white space off both ends, in place. */
static char *bench_run_trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* bench_run_parse_uint - a decimal number within [min, max], or -1. */
static long long bench_run_parse_uint(const char *s, long long min,
				      long long max)
{
	char *end;
	long long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	return v;
}

/* bench_run_key_parse - SELECTOR = rsa | rsa:BITS | ed25519. */
static int bench_run_key_parse(struct bench_run_key *k, const char *sel,
			       const char *type)
{
	size_t i;

	if (!*sel || strlen(sel) >= sizeof(k->selector))
		return -EINVAL;
	for (i = 0; sel[i]; i++)
		if (!isalnum((unsigned char)sel[i]) && sel[i] != '-')
			return -EINVAL;
	snprintf(k->selector, sizeof(k->selector), "%s", sel);

	k->bits = 0;
	if (!strcmp(type, "ed25519") || !strcmp(type, "rsa")) {
		snprintf(k->type, sizeof(k->type), "%s", type);
		return 0;
	}
	if (!strncmp(type, "rsa:", 4)) {
		long long b = bench_run_parse_uint(type + 4, 1024, 4096);
		if (b < 0)
			return -EINVAL;
		snprintf(k->type, sizeof(k->type), "rsa");
		k->bits = (unsigned)b;
		return 0;
	}
	return -EINVAL;
}

/* bench_run_scenario_set - one key = value line of a section. */
static int bench_run_scenario_set(struct bench_run_scenario *s,
				  const char *sect, char *key, char *val)
{
	long long v;

	if (!strcmp(sect, "blast")) {
		if (s->nblast >= BENCH_RUN_MAX_LINES)
			return -E2BIG;
		s->blast[s->nblast].key = bench_run_strdup(key);
		s->blast[s->nblast++].value = bench_run_strdup(val);
		return 0;
	}

	if (!strcmp(sect, "waxseal")) {
		char line[2048];
		if (s->nwaxseal >= BENCH_RUN_MAX_LINES)
			return -E2BIG;
		snprintf(line, sizeof(line), "%s = %s", key, val);
		s->waxseal[s->nwaxseal++] = bench_run_strdup(line);
		return 0;
	}

	if (!strcmp(sect, "keys")) {
		if (s->nkeys >= BENCH_RUN_MAX_KEYS)
			return -E2BIG;
		return bench_run_key_parse(&s->keys[s->nkeys++], key, val);
	}

	if (!strcmp(sect, "run") && !strcmp(key, "drain-timeout")) {
		v = bench_run_parse_uint(val, 1, 3600);
		s->drain_s = (unsigned)v;
		return v < 0 ? -EINVAL : 0;
	}

	if (strcmp(sect, "sink"))
		return -EINVAL;
	if (!strcmp(key, "destinations")) {
		v = bench_run_parse_uint(val, 1, BENCH_RUN_MAX_DEST);
		s->destinations = (unsigned)v;
		return v < 0 ? -EINVAL : 0;
	}
	if (!strcmp(key, "options")) {
		free(s->options);
		s->options = bench_run_strdup(val);
		return 0;
	}
	if (!strncmp(key, "options.", 8)) {
		v = bench_run_parse_uint(key + 8, 0, BENCH_RUN_MAX_DEST - 1);
		if (v < 0)
			return -EINVAL;
		free(s->dest_options[v]);
		s->dest_options[v] = bench_run_strdup(val);
		return 0;
	}
	if (!strcmp(key, "tls")) {
		s->tls = !strcmp(val, "yes");
		return 0;
	}
	if (!strcmp(key, "verify-every")) {
		v = bench_run_parse_uint(val, 1, 1000000);
		s->verify_every = (unsigned)v;
		return v < 0 ? -EINVAL : 0;
	}
	return -EINVAL;
}

/* bench_run_scenario_load - read and check a scenario file. */
static int bench_run_scenario_load(struct bench_run_scenario *s,
				   const char *path)
{
	char line[1024], sect[32] = "";
	const char *base;
	unsigned lineno = 0;
	FILE *f;
	int err = 0;

	f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "waxseal-bench run: %s: %s\n", path,
			strerror(errno));
		return -errno;
	}
	base = strrchr(path, '/');
	snprintf(s->name, sizeof(s->name), "%s", base ? base + 1 : path);
	if (strstr(s->name, ".scenario"))
		*strstr(s->name, ".scenario") = '\0';

	/* One line at a time: section headers, then key = value. */
	while (fgets(line, sizeof(line), f) != NULL) {
		char *p, *eq;

		if (++lineno > BENCH_RUN_MAX_LINES) {
			err = -E2BIG;
			break;
		}
		if (strchr(line, '\n') == NULL && !feof(f)) {
			err = -E2BIG;
			break;
		}
		p = bench_run_trim(line);
		if (*p == '\0' || *p == '#')
			continue;
		if (*p == '[') {
			char *rb = strchr(p, ']');
			if (rb == NULL || rb[1] != '\0' ||
			    (size_t)(rb - p) >= sizeof(sect)) {
				err = -EINVAL;
				break;
			}
			*rb = '\0';
			snprintf(sect, sizeof(sect), "%s", p + 1);
			continue;
		}
		eq = strchr(p, '=');
		if (eq == NULL) {
			err = -EINVAL;
			break;
		}
		*eq = '\0';
		err = bench_run_scenario_set(s, sect, bench_run_trim(p),
					     bench_run_trim(eq + 1));
		if (err)
			break;
	}
	fclose(f);
	if (err) {
		fprintf(stderr, "waxseal-bench run: %s:%u: %s\n", path,
			lineno, err == -E2BIG ? "too long" : "bad line");
		return err;
	}
	return 0;
}

/* bench_run_blast_get - the scenario's value of a blast option, or NULL. */
static const char *bench_run_blast_get(const struct bench_run_scenario *s,
				       const char *key)
{
	const char *v = NULL;
	unsigned i;

	for (i = 0; i < s->nblast; i++)
		if (!strcmp(s->blast[i].key, key))
			v = s->blast[i].value;
	return v;
}

/* bench_run_blast_put - set a blast option, replacing an earlier value. */
static void bench_run_blast_put(struct bench_run_scenario *s, const char *key,
				const char *val)
{
	unsigned i;

	for (i = 0; i < s->nblast; i++)
		if (!strcmp(s->blast[i].key, key)) {
			free(s->blast[i].value);
			s->blast[i].value = bench_run_strdup(val);
			return;
		}
	if (s->nblast < BENCH_RUN_MAX_LINES) {
		s->blast[s->nblast].key = bench_run_strdup(key);
		s->blast[s->nblast++].value = bench_run_strdup(val);
	}
}

/* bench_run_scenario_finish - derive the run's limits and counts. */
static int bench_run_scenario_finish(struct bench_run_scenario *s,
				     const struct bench_run_opts *o)
{
	const char *v;
	char num[32];
	long long n;

	if (o->messages) {
		snprintf(num, sizeof(num), "%" PRIu64, o->messages);
		bench_run_blast_put(s, "messages", num);
	}
	if (o->duration > 0) {
		snprintf(num, sizeof(num), "%.0f", o->duration);
		bench_run_blast_put(s, "duration", num);
	}

	/* Every run is bounded: a message count and a time limit. */
	v = bench_run_blast_get(s, "messages");
	n = v ? bench_run_parse_uint(v, 1, 100000000) : -1;
	if (n < 0) {
		fprintf(stderr, "waxseal-bench run: the scenario needs "
				"[blast] messages (a limit), or --messages\n");
		return -EINVAL;
	}
	s->messages = (uint64_t)n;
	v = bench_run_blast_get(s, "duration");
	if (v == NULL)
		bench_run_blast_put(s, "duration", v = "60");
	n = bench_run_parse_uint(v, 1, 3600);
	if (n < 0)
		return -EINVAL;
	s->duration = (double)n;

	v = bench_run_blast_get(s, "rcpt-domains");
	n = v ? bench_run_parse_uint(v, 1, 100000) : 1;
	s->rcpt_domains = n < 0 ? 1 : (unsigned)n;
	v = bench_run_blast_get(s, "sender-domains");
	n = v ? bench_run_parse_uint(v, 1, BENCH_RUN_MAX_SENDERS) : 1;
	if (n < 0) {
		fprintf(stderr, "waxseal-bench run: sender-domains: 1 to "
				"%d\n",
			BENCH_RUN_MAX_SENDERS);
		return -EINVAL;
	}
	s->sender_domains = (unsigned)n;

	if (s->destinations == 0)
		s->destinations = s->rcpt_domains < BENCH_RUN_MAX_DEST
				      ? s->rcpt_domains
				      : BENCH_RUN_MAX_DEST;
	if (o->drain_s)
		s->drain_s = o->drain_s;
	if (s->drain_s == 0)
		s->drain_s = BENCH_RUN_DRAIN_S;
	return 0;
}

/* bench_run_free_port - a loopback port free a moment ago on addr. */
static int bench_run_free_port(const char *addr)
{
	struct sockaddr_in sin = {0};
	socklen_t len = sizeof(sin);
	int fd, port = -EADDRNOTAVAIL;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, addr, &sin.sin_addr);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* bench_run_spawn - fork and exec argv, output to files; 0 or -errno. */
static int bench_run_spawn(struct bench_run_child *c, char *const argv[],
			   const char *out, const char *err)
{
	pid_t parent = getpid();
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;

	if (pid == 0) {
		int fd;

		/* The child dies with the runner, whatever kills it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0)
			dup2(fd, 0);
		fd = open(out ? out : "/dev/null",
			  O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
		if (fd >= 0)
			dup2(fd, 1);
		fd = open(err ? err : "/dev/null",
			  O_WRONLY | O_CREAT | O_APPEND |
			      (err && out && !strcmp(err, out) ? 0 : O_TRUNC),
			  0644);
		if (fd >= 0)
			dup2(fd, 2);
		execv(argv[0], argv);
		dprintf(2, "waxseal-bench run: exec %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}

	c->pid = pid;
	c->status = -1;
	memset(&c->ru, 0, sizeof(c->ru));
	return 0;
}

/* bench_run_reap - whether the child has exited (reaping it if so). */
static int bench_run_reap(struct bench_run_child *c)
{
	pid_t r;

	if (c->pid == 0)
		return 1;
	r = wait4(c->pid, &c->status, WNOHANG, &c->ru);
	if (r == c->pid || (r < 0 && errno == ECHILD)) {
		c->pid = 0;
		return 1;
	}
	return 0;
}

/* bench_run_wait - wait for the child to exit; 0 or -ETIMEDOUT. */
static int bench_run_wait(struct bench_run_child *c, int64_t timeout_ms)
{
	int64_t deadline = bench_run_now_ms() + timeout_ms;

	while (!bench_run_reap(c)) {
		if (bench_run_now_ms() > deadline)
			return -ETIMEDOUT;
		bench_run_sleep_ms(BENCH_RUN_POLL_MS);
	}
	return 0;
}

/* bench_run_terminate - SIGTERM, a bounded wait, then SIGKILL. */
static int bench_run_terminate(struct bench_run_child *c, int64_t timeout_ms)
{
	if (c->pid == 0)
		return 0;
	kill(c->pid, SIGTERM);
	if (bench_run_wait(c, timeout_ms) == 0)
		return 0;

	fprintf(stderr, "waxseal-bench run: %s did not exit after SIGTERM; "
			"killing it\n",
		c->name);
	kill(c->pid, SIGKILL);
	bench_run_wait(c, 5000);
	return -ETIMEDOUT;
}

/* bench_run_kill_all - on every way out: no child outlives the run. */
static void bench_run_kill_all(void)
{
	unsigned i;

	for (i = 0; i < sizeof(bench_run_kids) / sizeof(bench_run_kids[0]);
	     i++)
		if (bench_run_kids[i] != NULL) {
			bench_run_terminate(bench_run_kids[i], 5000);
			bench_run_kids[i] = NULL;
		}
}

/* bench_run_track - remember a child for bench_run_kill_all. */
static void bench_run_track(struct bench_run_child *c)
{
	unsigned i;

	for (i = 0; i < sizeof(bench_run_kids) / sizeof(bench_run_kids[0]);
	     i++)
		if (bench_run_kids[i] == NULL || bench_run_kids[i] == c) {
			bench_run_kids[i] = c;
			return;
		}
}

/* bench_run_exec - run a helper to its end within timeout_ms; its status. */
static int bench_run_exec(char *const argv[], const char *err,
			  int64_t timeout_ms)
{
	struct bench_run_child c = {.name = argv[0]};
	int rc;

	rc = bench_run_spawn(&c, argv, err, err);
	if (rc)
		return rc;
	bench_run_track(&c);
	rc = bench_run_wait(&c, timeout_ms);
	if (rc)
		bench_run_terminate(&c, 2000);
	bench_run_kill_all();
	if (rc)
		return rc;
	return WIFEXITED(c.status) ? WEXITSTATUS(c.status) : -EINTR;
}

/* bench_run_write - write a whole file from a format. */
static int bench_run_write(const char *path, const char *fmt, ...)
{
	va_list ap;
	FILE *f;
	int rc;

	f = fopen(path, "w");
	if (f == NULL)
		return -errno;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	rc = ferror(f) ? -EIO : 0;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* bench_run_slurp - a whole small file, NUL-terminated; free() it. */
static char *bench_run_slurp(const char *path)
{
	char *buf = NULL;
	long n;
	FILE *f;

	f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    n < (64L << 20) && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf != NULL) {
			size_t got = fread(buf, 1, (size_t)n, f);
			buf[got] = '\0';
		}
	}
	fclose(f);
	return buf;
}

/* ---- a small JSON reader for the blast and sink reports ---- */

/* bench_run_js_ws - skip white space. */
static const char *bench_run_js_ws(const char *p)
{
	while (p && isspace((unsigned char)*p))
		p++;
	return p;
}

/* bench_run_js_skip - the text after one value, or NULL. */
static const char *bench_run_js_skip(const char *p, int depth)
{
	p = bench_run_js_ws(p);
	if (p == NULL || depth > 32)
		return NULL;

	if (*p == '"') {
		for (p++; *p && *p != '"'; p++)
			if (*p == '\\' && p[1])
				p++;
		return *p == '"' ? p + 1 : NULL;
	}

	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';
		p = bench_run_js_ws(p + 1);
		if (*p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				p = bench_run_js_skip(p, depth + 1);
				p = bench_run_js_ws(p);
				if (p == NULL || *p != ':')
					return NULL;
				p++;
			}
			p = bench_run_js_ws(bench_run_js_skip(p, depth + 1));
			if (p == NULL)
				return NULL;
			if (*p == close)
				return p + 1;
			if (*p != ',')
				return NULL;
			p++;
		}
	}

	if (!*p)
		return NULL;
	while (*p && !strchr(",}] \t\r\n", *p))
		p++;
	return p;
}

/* bench_run_js_get - the value of key in the object at p, or NULL. */
static const char *bench_run_js_get(const char *p, const char *key)
{
	size_t klen = strlen(key);

	p = bench_run_js_ws(p);
	if (p == NULL || *p != '{')
		return NULL;
	p = bench_run_js_ws(p + 1);
	while (p && *p == '"') {
		const char *k = p + 1, *v;
		int match;

		p = bench_run_js_skip(p, 0);
		if (p == NULL)
			return NULL;
		match = (size_t)(p - 1 - k) == klen && !memcmp(k, key, klen);
		p = bench_run_js_ws(p);
		if (*p != ':')
			return NULL;
		v = bench_run_js_ws(p + 1);
		if (match)
			return v;
		p = bench_run_js_ws(bench_run_js_skip(v, 0));
		if (p == NULL || *p != ',')
			return NULL;
		p = bench_run_js_ws(p + 1);
	}
	return NULL;
}

/* bench_run_js_path - follow dotted keys; "a.b" is p["a"]["b"]. */
static const char *bench_run_js_path(const char *p, const char *path)
{
	char key[64];

	while (p && *path) {
		size_t n = strcspn(path, ".");
		if (n >= sizeof(key))
			return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		p = bench_run_js_get(p, key);
		path += n + (path[n] == '.');
	}
	return p;
}

/* bench_run_js_num - the number at a path, or -1. */
static double bench_run_js_num(const char *p, const char *path)
{
	char *end;
	double v;

	p = bench_run_js_path(p, path);
	if (p == NULL || !(isdigit((unsigned char)*p) || *p == '-'))
		return -1;
	v = strtod(p, &end);
	return end == p ? -1 : v;
}

/* bench_run_js_str - copy the string at a path; 0 or -ENOENT. */
static int bench_run_js_str(const char *p, const char *path, char *out,
			    size_t outlen)
{
	const char *e;

	p = bench_run_js_path(p, path);
	if (p == NULL || *p != '"')
		return -ENOENT;
	e = strchr(p + 1, '"');
	if (e == NULL || (size_t)(e - p - 1) >= outlen)
		return -ENOENT;
	memcpy(out, p + 1, (size_t)(e - p - 1));
	out[e - p - 1] = '\0';
	return 0;
}

/* ---- files that grow ---- */

/* bench_run_tail_lines - hand each new complete line to fn. */
static void bench_run_tail_lines(struct bench_run_tail *t,
				 void (*fn)(void *, char *), void *arg)
{
	ssize_t n;
	int fd;

	fd = open(t->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;

	for (;;) {
		char *line, *nl;

		n = pread(fd, t->buf + t->len, sizeof(t->buf) - 1 - t->len,
			  t->off);
		if (n <= 0)
			break;
		t->off += n;
		t->len += (size_t)n;
		t->buf[t->len] = '\0';

		/* Lines longer than the buffer are dropped, not split. */
		line = t->buf;
		while ((nl = strchr(line, '\n')) != NULL) {
			*nl = '\0';
			fn(arg, line);
			line = nl + 1;
		}
		t->len -= (size_t)(line - t->buf);
		memmove(t->buf, line, t->len);
		if (t->len == sizeof(t->buf) - 1)
			t->len = 0;
	}
	close(fd);
}

/* bench_run_dlog_time - "time":"YYYY-MM-DDTHH:MM:SS.mmmZ" in ms, or -1. */
static int64_t bench_run_dlog_time(const char *line)
{
	const char *p = strstr(line, "\"time\":\"");
	struct tm tm = {0};
	int ms = 0;

	if (p == NULL ||
	    sscanf(p + 8, "%4d-%2d-%2dT%2d:%2d:%2d.%3d", &tm.tm_year,
		   &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
		   &tm.tm_sec, &ms) != 7)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm) * 1000 + ms;
}

/* bench_run_dlog_line_cb - count one delivery log line. */
static void bench_run_dlog_line_cb(void *arg, char *line)
{
	struct bench_run_dlog *d = arg;
	const char *r = strstr(line, "\"recipient\":\"");
	int64_t t;

	/* Only blast's recipients; a DSN to a sender is not part of it. */
	if (r == NULL || strncmp(strchr(r + 13, '@') ? strchr(r + 13, '@')
						     : "",
				 "@example", 8))
		return;

	if (strstr(line, "\"status\":\"deferred\"")) {
		d->deferred++;
		return;
	}
	if (strstr(line, "\"status\":\"delivered\""))
		d->delivered++;
	else if (strstr(line, "\"status\":\"bounced\""))
		d->bounced++;
	else if (strstr(line, "\"status\":\"expired\""))
		d->expired++;
	else
		return;
	t = bench_run_dlog_time(line);
	if (t > d->last_ms)
		d->last_ms = t;
}

/* bench_run_count_line_cb - count waxseal's "queued" log lines. */
static void bench_run_count_line_cb(void *arg, char *line)
{
	if (strstr(line, " queued from=") != NULL)
		(*(uint64_t *)arg)++;
}

static int bench_run_rm_cb(const char *path, const struct stat *sb, int flag,
			   struct FTW *ftw);

/* ---- one run ---- */

struct bench_run_ctx {
	const struct bench_run_opts *o;
	struct bench_run_scenario *s;
	const char *value;
	char dir[BENCH_RUN_DIR_MAX];
	unsigned port;		 /* waxseal's */
	unsigned sink_ports[BENCH_RUN_MAX_DEST];
	struct bench_run_child wax, sink, blast;
};

/* bench_run_path - DIR/NAME into a static-sized buffer. */
static char *bench_run_path(const struct bench_run_ctx *x, const char *name,
			    char *buf)
{
	snprintf(buf, PATH_MAX, "%s/%s", x->dir, name);
	return buf;
}

/* bench_run_keys - genkey every key of every sender domain, and tables. */
static int bench_run_keys(struct bench_run_ctx *x)
{
	const struct bench_run_scenario *s = x->s;
	char kt[PATH_MAX], st[PATH_MAX], dir[PATH_MAX], priv[PATH_MAX + 80];
	char err[PATH_MAX], bits[16], dom[32];
	FILE *fk = NULL, *fs = NULL;
	unsigned d, k;
	int rc = 0;

	bench_run_path(x, "genkey.err", err);
	fk = fopen(bench_run_path(x, "KeyTable", kt), "w");
	fs = fopen(bench_run_path(x, "SigningTable", st), "w");
	if (fk == NULL || fs == NULL) {
		rc = -errno;
		goto fail;
	}
	fprintf(fk, "# written by waxseal-bench run\n");
	fprintf(fs, "# written by waxseal-bench run\n");

	for (d = 0; d < s->sender_domains; d++) {
		snprintf(dom, sizeof(dom), "sender%u.test", d);
		snprintf(dir, sizeof(dir), "%s/keys/%s", x->dir, dom);
		mkdir(bench_run_path(x, "keys", priv), 0755);
		mkdir(dir, 0755);

		for (k = 0; k < s->nkeys; k++) {
			const struct bench_run_key *key = &s->keys[k];
			char *argv[] = {(char *)x->o->waxseal, "genkey", "-d",
					dom, "-s", (char *)key->selector, "-t",
					(char *)key->type, "-D", dir, NULL,
					NULL, NULL};

			/* Keys kept from an earlier run are used again. */
			snprintf(priv, sizeof(priv), "%s/%s.private", dir,
				 key->selector);
			if (key->bits) {
				snprintf(bits, sizeof(bits), "%u", key->bits);
				argv[10] = "-b";
				argv[11] = bits;
			}
			if (access(priv, R_OK) != 0 &&
			    bench_run_exec(argv, err, BENCH_RUN_GENKEY_MS)) {
				fprintf(stderr, "waxseal-bench run: genkey "
						"%s failed, see %s\n",
					dom, err);
				rc = -EIO;
				goto fail;
			}
			fprintf(fk, "%s._domainkey.%s %s:%s:%s\n",
				key->selector, dom, dom, key->selector, priv);
			fprintf(fs, "*@%s %s._domainkey.%s\n", dom,
				key->selector, dom);
		}
	}

fail:
	if (fk != NULL && fclose(fk) != 0 && rc == 0)
		rc = -errno;
	if (fs != NULL && fclose(fs) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* bench_run_transport - exampleN.test to listener N mod destinations. */
static int bench_run_transport(struct bench_run_ctx *x)
{
	char path[PATH_MAX];
	unsigned i;
	FILE *f;

	f = fopen(bench_run_path(x, "transport", path), "w");
	if (f == NULL)
		return -errno;
	fprintf(f, "# written by waxseal-bench run\n");
	for (i = 0; i < x->s->rcpt_domains; i++) {
		unsigned d = i % x->s->destinations;
		fprintf(f, "example%u.test [127.0.0.%u]:%u\n", i, 10 + d,
			x->sink_ports[d]);
	}
	return fclose(f) ? -errno : 0;
}

/* bench_run_config - write waxseal.conf: the runner's lines, then the
 * scenario's (the last setting wins). */
static int bench_run_config(struct bench_run_ctx *x)
{
	const char *backend = getenv("WAXSEAL_IO_BACKEND");
	const char *sweep = x->o->sweep_param;
	char path[PATH_MAX], p[PATH_MAX];
	unsigned i;
	FILE *f;

	f = fopen(bench_run_path(x, "waxseal.conf", path), "w");
	if (f == NULL)
		return -errno;
	fprintf(f, "# written by waxseal-bench run for %s\n", x->s->name);
	fprintf(f, "smtpd_listen = 127.0.0.1:%u\n", x->port);
	fprintf(f, "queue_directory = %s\n", bench_run_path(x, "spool", p));
	fprintf(f, "io_backend = %s\n", backend && *backend ? backend : "auto");
	fprintf(f, "log_level = info\nmyhostname = relay.bench.test\n");
	fprintf(f, "dns_servers = 127.0.0.1:9\ndefer_transports =\n");
	fprintf(f, "smtp_tls_security_level = may\n");
	fprintf(f, "transport_maps = %s\n", bench_run_path(x, "transport", p));
	fprintf(f, "delivery_log = %s\n", bench_run_path(x, "delivery.log", p));
	if (x->s->nkeys > 0) {
		fprintf(f, "dkim_key_table = %s\n",
			bench_run_path(x, "KeyTable", p));
		fprintf(f, "dkim_signing_table = refile:%s\n",
			bench_run_path(x, "SigningTable", p));
		fprintf(f, "dkim_multiple_signatures = %s\n",
			x->s->nkeys > 1 ? "yes" : "no");
	}
	for (i = 0; i < x->s->nwaxseal; i++)
		fprintf(f, "%s\n", x->s->waxseal[i]);

	/* A swept waxseal parameter comes last, so it wins. */
	if (x->value != NULL && !bench_run_is_blast_param(sweep))
		fprintf(f, "%s = %s\n", sweep, x->value);
	return fclose(f) ? -errno : 0;
}

/* bench_run_argv_add - append a copy to an argument vector. */
static void bench_run_argv_add(char **argv, unsigned *n, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;

	if (*n + 2 >= BENCH_RUN_MAX_ARGS)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	argv[(*n)++] = bench_run_strdup(buf);
	argv[*n] = NULL;
}

/* bench_run_argv_free - free what bench_run_argv_add copied. */
static void bench_run_argv_free(char **argv, unsigned n)
{
	while (n > 0)
		free(argv[--n]);
}

/* bench_run_wait_ready - until cond(x) or the child dies or time is up. */
static int bench_run_wait_ready(struct bench_run_ctx *x,
				struct bench_run_child *c,
				int (*cond)(struct bench_run_ctx *))
{
	int64_t deadline = bench_run_now_ms() + BENCH_RUN_START_MS;

	while (!cond(x)) {
		if (bench_run_stop)
			return -EINTR;
		if (bench_run_reap(c)) {
			fprintf(stderr, "waxseal-bench run: %s exited before "
					"it was ready; see %s\n",
				c->name, x->dir);
			return -ECHILD;
		}
		if (bench_run_now_ms() > deadline) {
			fprintf(stderr, "waxseal-bench run: %s was not ready "
					"within %d s\n",
				c->name, BENCH_RUN_START_MS / 1000);
			return -ETIMEDOUT;
		}
		bench_run_sleep_ms(50);
	}
	return 0;
}

/* bench_run_sink_ready - whether the sink created its ready file. */
static int bench_run_sink_ready(struct bench_run_ctx *x)
{
	char p[PATH_MAX];

	return access(bench_run_path(x, "sink.ready", p), F_OK) == 0;
}

/* bench_run_wax_ready - whether waxseal answers with a 220 banner. */
static int bench_run_wax_ready(struct bench_run_ctx *x)
{
	struct sockaddr_in sin = {0};
	struct timeval tv = {2, 0};
	char buf[512];
	ssize_t n = -1;
	int fd, ok;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)x->port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
		n = recv(fd, buf, sizeof(buf), 0);
	ok = n >= 3 && !memcmp(buf, "220", 3);

	/* Leave politely; the server's close ends the probe's session. */
	if (ok && send(fd, "QUIT\r\n", 6, MSG_NOSIGNAL) == 6)
		while (recv(fd, buf, sizeof(buf), 0) > 0)
			;
	close(fd);
	return ok;
}

/* bench_run_start_sink - the sink, one listener per destination. */
static int bench_run_start_sink(struct bench_run_ctx *x)
{
	const struct bench_run_scenario *s = x->s;
	char *argv[BENCH_RUN_MAX_ARGS];
	char p[PATH_MAX], err[PATH_MAX];
	unsigned n = 0, i, k, d;
	double limit;
	int rc;

	bench_run_argv_add(argv, &n, "%s", x->o->bench);
	bench_run_argv_add(argv, &n, "sink");
	for (i = 0; i < s->destinations; i++) {
		const char *opt = s->dest_options[i] ? s->dest_options[i]
						     : s->options;
		bench_run_argv_add(argv, &n, "--listen");
		bench_run_argv_add(argv, &n, "127.0.0.%u:%u%s%s", 10 + i,
				   x->sink_ports[i], opt && *opt ? "," : "",
				   opt ? opt : "");
	}
	if (s->tls)
		bench_run_argv_add(argv, &n, "--tls");
	for (d = 0; d < s->sender_domains; d++)
		for (k = 0; k < s->nkeys; k++) {
			bench_run_argv_add(argv, &n, "--dkim-key");
			bench_run_argv_add(argv, &n,
					   "sender%u.test:%s:%s/keys/"
					   "sender%u.test/%s.txt",
					   d, s->keys[k].selector, x->dir, d,
					   s->keys[k].selector);
		}
	if (s->verify_every) {
		bench_run_argv_add(argv, &n, "--verify-every");
		bench_run_argv_add(argv, &n, "%u", s->verify_every);
	}

	/* Its own bound: the whole run and a margin. */
	limit = s->duration + s->drain_s + 60;
	bench_run_argv_add(argv, &n, "--duration");
	bench_run_argv_add(argv, &n, "%.0f", limit);
	if (x->o->target != NULL) {
		bench_run_argv_add(argv, &n, "--idle-exit");
		bench_run_argv_add(argv, &n, "%d", BENCH_RUN_IDLE_EXIT_S);
	}
	bench_run_argv_add(argv, &n, "--report-file");
	bench_run_argv_add(argv, &n, "%s", bench_run_path(x, "sink.json", p));
	bench_run_argv_add(argv, &n, "--ready-file");
	bench_run_argv_add(argv, &n, "%s", bench_run_path(x, "sink.ready", p));
	bench_run_argv_add(argv, &n, "--json");

	x->sink.name = "the sink";
	rc = bench_run_spawn(&x->sink, argv, NULL,
			     bench_run_path(x, "sink.err", err));
	bench_run_argv_free(argv, n);
	if (rc)
		return rc;
	bench_run_track(&x->sink);
	return bench_run_wait_ready(x, &x->sink, bench_run_sink_ready);
}

/* bench_run_start_waxseal - the daemon, once its files are written. */
static int bench_run_start_waxseal(struct bench_run_ctx *x)
{
	char conf[PATH_MAX], log[PATH_MAX];
	char *argv[] = {(char *)x->o->waxseal, "run", "-c", conf, NULL};
	int rc;

	rc = bench_run_transport(x);
	if (rc == 0)
		rc = bench_run_config(x);
	if (rc)
		return rc;

	bench_run_path(x, "waxseal.conf", conf);
	bench_run_path(x, "waxseal.log", log);
	x->wax.name = "waxseal";
	rc = bench_run_spawn(&x->wax, argv, log, log);
	if (rc)
		return rc;
	bench_run_track(&x->wax);
	return bench_run_wait_ready(x, &x->wax, bench_run_wax_ready);
}

/* bench_run_start_blast - blast with the scenario's options. */
static int bench_run_start_blast(struct bench_run_ctx *x)
{
	const struct bench_run_scenario *s = x->s;
	const char *sweep = x->o->sweep_param;
	char *argv[BENCH_RUN_MAX_ARGS];
	char out[PATH_MAX], err[PATH_MAX];
	unsigned n = 0, i;
	int rc;

	bench_run_argv_add(argv, &n, "%s", x->o->bench);
	bench_run_argv_add(argv, &n, "blast");
	bench_run_argv_add(argv, &n, "--json");
	if (x->o->target != NULL)
		bench_run_argv_add(argv, &n, "--target=%s", x->o->target);
	else
		bench_run_argv_add(argv, &n, "--target=127.0.0.1:%u", x->port);
	for (i = 0; i < s->nblast; i++) {
		const struct bench_run_kv *kv = &s->blast[i];
		if (x->value != NULL && !strcmp(kv->key, sweep) &&
		    bench_run_is_blast_param(sweep))
			continue;
		if (!strcmp(kv->value, "yes"))
			bench_run_argv_add(argv, &n, "--%s", kv->key);
		else
			bench_run_argv_add(argv, &n, "--%s=%s", kv->key,
					   kv->value);
	}
	if (x->value != NULL && bench_run_is_blast_param(sweep))
		bench_run_argv_add(argv, &n, "--%s=%s", sweep, x->value);

	x->blast.name = "blast";
	rc = bench_run_spawn(&x->blast, argv,
			     bench_run_path(x, "blast.json", out),
			     bench_run_path(x, "blast.err", err));
	bench_run_argv_free(argv, n);
	if (rc == 0)
		bench_run_track(&x->blast);
	return rc;
}

/* bench_run_progress - one status line on stderr. */
static void bench_run_progress(struct bench_run_ctx *x, uint64_t queued,
			       const struct bench_run_dlog *d, int64_t t0,
			       int force)
{
	static int64_t last;
	int64_t now = bench_run_now_ms();

	/* A terminal gets a line redrawn in place, a file one every 5 s. */
	if (!force && now - last < (bench_run_tty ? 500 : 5000))
		return;
	last = now;
	fprintf(stderr, "%s%s%s%s%s%s: %.1f s, accepted %" PRIu64
			", delivered %" PRIu64 ", bounced %" PRIu64
			", deferrals %" PRIu64 "%s",
		bench_run_tty ? "\r" : "", x->s->name, x->value ? " " : "",
		x->value ? x->o->sweep_param : "", x->value ? "=" : "",
		x->value ? x->value : "", (double)(now - t0) / 1000, queued,
		d->delivered, d->bounced + d->expired, d->deferred,
		bench_run_tty ? "   " : "\n");
}

/* bench_run_proc_hwm - VmHWM of a process in kB, or -1. */
static double bench_run_proc_hwm(pid_t pid)
{
	char path[64], line[256];
	double kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (!strncmp(line, "VmHWM:", 6))
			kb = strtod(line + 6, NULL);
	fclose(f);
	return kb;
}

/* bench_run_read_blast - blast's JSON report into r. */
static int bench_run_read_blast(struct bench_run_ctx *x,
				struct bench_run_report *r)
{
	char p[PATH_MAX];
	char *js = bench_run_slurp(bench_run_path(x, "blast.json", p));
	double per;

	if (js == NULL || bench_run_js_num(js, "messages.accepted") < 0) {
		fprintf(stderr, "waxseal-bench run: no report from blast, "
				"see %s/blast.err\n",
			x->dir);
		free(js);
		return -EIO;
	}
	r->attempted = bench_run_js_num(js, "messages.attempted");
	r->accepted = bench_run_js_num(js, "messages.accepted");
	per = bench_run_js_num(js, "recipients_per_message");
	r->recipients = r->accepted * (per > 0 ? per : 1);
	r->intake_per_s = bench_run_js_num(js, "accepted_per_s");
	r->p99_ms = bench_run_js_num(js, "latency_ms.p99");
	free(js);
	return 0;
}

/* bench_run_read_sink - the sink's JSON report into r. */
static int bench_run_read_sink(struct bench_run_ctx *x,
			       struct bench_run_report *r)
{
	char p[PATH_MAX];
	char *js = bench_run_slurp(bench_run_path(x, "sink.json", p));
	const char *arr;
	unsigned i;

	if (js == NULL || bench_run_js_num(js, "messages") < 0) {
		fprintf(stderr, "waxseal-bench run: no report from the sink, "
				"see %s/sink.err\n",
			x->dir);
		free(js);
		return -EIO;
	}
	r->sink_messages = bench_run_js_num(js, "messages");
	r->sink_recipients = bench_run_js_num(js, "recipients");
	r->sink_connections = bench_run_js_num(js, "connections");
	r->r2xx = bench_run_js_num(js, "replies.2xx");
	r->r4xx = bench_run_js_num(js, "replies.4xx");
	r->r5xx = bench_run_js_num(js, "replies.5xx");
	r->verified = bench_run_js_num(js, "dkim.verified");
	r->pass = bench_run_js_num(js, "dkim.pass");
	r->fail = bench_run_js_num(js, "dkim.fail");
	r->none = bench_run_js_num(js, "dkim.none");

	/* destinations: an array of objects, walked element by element. */
	arr = bench_run_js_ws(bench_run_js_get(js, "destinations"));
	if (arr != NULL && *arr == '[') {
		const char *e = bench_run_js_ws(arr + 1);
		for (i = 0; e && *e == '{' && i < BENCH_RUN_MAX_DEST; i++) {
			struct bench_run_dest *d = &r->dest[i];
			if (bench_run_js_str(e, "listen", d->listen,
					     sizeof(d->listen)))
				d->listen[0] = '\0';
			d->messages = bench_run_js_num(e, "messages");
			d->recipients = bench_run_js_num(e, "recipients");
			d->connections = bench_run_js_num(e, "connections");
			d->max_concurrent =
			    bench_run_js_num(e, "max_concurrent");
			d->tls_sessions = bench_run_js_num(e, "tls_sessions");
			d->dkim_pass = bench_run_js_num(e, "dkim_pass");
			d->dkim_fail = bench_run_js_num(e, "dkim_fail");
			r->ndest = i + 1;
			e = bench_run_js_ws(bench_run_js_skip(e, 0));
			if (e == NULL || *e != ',')
				break;
			e = bench_run_js_ws(e + 1);
		}
	}
	free(js);
	return 0;
}

/* bench_run_read_waxlog - fsyncs and sanitizer reports from its log. */
static int bench_run_read_waxlog(struct bench_run_ctx *x,
				 struct bench_run_report *r)
{
	static const char *const marks[] = {"ERROR: AddressSanitizer",
					    "runtime error:", "LeakSanitizer"};
	char p[PATH_MAX];
	char *log = bench_run_slurp(bench_run_path(x, "waxseal.log", p));
	const char *s;
	unsigned long long m, f;
	unsigned i;
	int rc = 0;

	if (log == NULL)
		return -EIO;
	s = strstr(log, "stopped messages=");
	if (s != NULL &&
	    sscanf(s, "stopped messages=%llu fsyncs=%llu", &m, &f) == 2) {
		r->wax_messages = (double)m;
		r->fsyncs = (double)f;
	}
	for (i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
		if (strstr(log, marks[i]) != NULL) {
			fprintf(stderr, "waxseal-bench run: \"%s\" in %s\n",
				marks[i], p);
			rc = -EIO;
		}
	free(log);
	return rc;
}

/* bench_run_report_init - every figure unknown. */
static void bench_run_report_init(struct bench_run_report *r)
{
	memset(r, 0, sizeof(*r));
	r->attempted = r->accepted = r->recipients = -1;
	r->delivered = r->bounced = r->expired = r->deferrals = -1;
	r->intake_per_s = r->p99_ms = r->e2e_per_s = r->e2e_rcpt_per_s = -1;
	r->drain_s = r->cpu_s = r->rss_kb = r->fsyncs = r->wax_messages = -1;
	r->verified = r->pass = r->fail = r->none = -1;
	r->sink_messages = r->sink_recipients = r->sink_connections = -1;
	r->r2xx = r->r4xx = r->r5xx = -1;
	r->wax_status = -1;
}

/* bench_run_drain - wait for every accepted recipient's final outcome. */
static int bench_run_drain(struct bench_run_ctx *x, struct bench_run_dlog *d,
			   struct bench_run_tail *wlog, uint64_t *queued,
			   int64_t t0, double expect)
{
	int64_t deadline = bench_run_now_ms() + (int64_t)x->s->drain_s * 1000;

	for (;;) {
		bench_run_tail_lines(&d->t, bench_run_dlog_line_cb, d);
		bench_run_tail_lines(wlog, bench_run_count_line_cb, queued);
		bench_run_progress(x, *queued, d, t0, 0);
		if ((double)(d->delivered + d->bounced + d->expired) >= expect)
			return 0;
		if (bench_run_stop)
			return -EINTR;
		if (bench_run_reap(&x->wax)) {
			fprintf(stderr, "\nwaxseal-bench run: waxseal exited "
					"during the run; see %s\n",
				x->dir);
			return -ECHILD;
		}
		if (bench_run_now_ms() > deadline) {
			fprintf(stderr, "\nwaxseal-bench run: %.0f of %.0f "
					"recipients reached a final outcome "
					"in %u s\n",
				(double)(d->delivered + d->bounced +
					 d->expired),
				expect, x->s->drain_s);
			return -ETIMEDOUT;
		}
		bench_run_sleep_ms(50);
	}
}

/* bench_run_blast_wait - let blast finish, showing progress. */
static int bench_run_blast_wait(struct bench_run_ctx *x,
				struct bench_run_dlog *d,
				struct bench_run_tail *wlog, uint64_t *queued,
				int64_t t0)
{
	int64_t deadline = t0 + (int64_t)(x->s->duration * 1000) + 30000;

	while (!bench_run_reap(&x->blast)) {
		if (bench_run_stop)
			return -EINTR;
		if (bench_run_now_ms() > deadline) {
			fprintf(stderr, "waxseal-bench run: blast overran its "
					"time limit\n");
			return -ETIMEDOUT;
		}
		if (x->o->target == NULL) {
			bench_run_tail_lines(&d->t, bench_run_dlog_line_cb, d);
			bench_run_tail_lines(wlog, bench_run_count_line_cb,
					     queued);
		}
		bench_run_progress(x, *queued, d, t0, 0);
		bench_run_sleep_ms(BENCH_RUN_POLL_MS);
	}
	return 0;
}

/* bench_run_sink_idle - --target: wait for the sink's --idle-exit. */
static int bench_run_sink_idle(struct bench_run_ctx *x, int64_t *gone_ms)
{
	int64_t deadline = bench_run_now_ms() + (int64_t)x->s->drain_s * 1000 +
			   BENCH_RUN_IDLE_EXIT_S * 1000;

	while (!bench_run_reap(&x->sink)) {
		if (bench_run_stop)
			return -EINTR;
		if (bench_run_now_ms() > deadline)
			return -ETIMEDOUT;
		bench_run_sleep_ms(BENCH_RUN_POLL_MS);
	}
	*gone_ms = bench_run_wall_ms() - BENCH_RUN_IDLE_EXIT_S * 1000;
	return 0;
}

/* bench_run_once - one run in x->dir; fills r; 0 when complete, 1 when
 * it ran but not every recipient reached a final outcome (or waxseal
 * stopped uncleanly), -errno when it could not run. */
static int bench_run_once(struct bench_run_ctx *x, struct bench_run_report *r)
{
	struct bench_run_dlog *d = NULL;
	struct bench_run_tail *wlog = NULL;
	int64_t t0, start_wall, blast_end_wall, last_ms = -1;
	uint64_t queued = 0;
	unsigned i;
	int rc, port;

	bench_run_report_init(r);
	r->value = x->value;
	d = calloc(1, sizeof(*d));
	wlog = calloc(1, sizeof(*wlog));
	rc = -ENOMEM;
	if (d == NULL || wlog == NULL)
		goto fail;
	bench_run_path(x, "delivery.log", d->t.path);
	bench_run_path(x, "waxseal.log", wlog->path);
	d->last_ms = -1;

	/* A kept directory used again: only the keys carry over. */
	static const char *const stale[] = {"delivery.log", "sink.json",
					    "sink.ready", "blast.json"};
	for (i = 0; i < sizeof(stale) / sizeof(stale[0]); i++) {
		char p[PATH_MAX];
		unlink(bench_run_path(x, stale[i], p));
	}
	{
		char p[PATH_MAX];
		nftw(bench_run_path(x, "spool", p), bench_run_rm_cb, 16,
		     FTW_DEPTH | FTW_PHYS);
	}

	/* Ports: the sinks on 127.0.0.10.., waxseal on 127.0.0.1. */
	for (i = 0; i < x->s->destinations; i++) {
		char addr[32];
		snprintf(addr, sizeof(addr), "127.0.0.%u", 10 + i);
		port = x->o->sink_port ? (int)x->o->sink_port
				       : bench_run_free_port(addr);
		if (port < 0) {
			rc = port;
			goto fail;
		}
		x->sink_ports[i] = (unsigned)port;
	}
	/* Keys first: the sink reads the public halves at start. */
	rc = x->s->nkeys > 0 ? bench_run_keys(x) : 0;
	if (rc == 0)
		rc = bench_run_start_sink(x);
	if (rc)
		goto fail;
	if (x->o->target == NULL) {
		port = bench_run_free_port("127.0.0.1");
		rc = port;
		if (port < 0)
			goto fail;
		x->port = (unsigned)port;
		rc = bench_run_start_waxseal(x);
		if (rc)
			goto fail;
	}

	/* The blast; the clock of the end-to-end figure starts here. */
	t0 = bench_run_now_ms();
	start_wall = bench_run_wall_ms();
	rc = bench_run_start_blast(x);
	if (rc == 0)
		rc = bench_run_blast_wait(x, d, wlog, &queued, t0);
	if (rc)
		goto fail;
	blast_end_wall = bench_run_wall_ms();
	rc = bench_run_read_blast(x, r);
	if (rc)
		goto fail;

	/* Wait for the queue to drain, then stop waxseal and read it. */
	if (x->o->target == NULL) {
		rc = bench_run_drain(x, d, wlog, &queued, t0, r->recipients);
		bench_run_progress(x, queued, d, t0, 1);
		if (bench_run_tty)
			fputc('\n', stderr);
		r->complete = rc == 0;
		if (rc && rc != -ETIMEDOUT)
			goto fail;
		r->delivered = (double)d->delivered;
		r->bounced = (double)d->bounced;
		r->expired = (double)d->expired;
		r->deferrals = (double)d->deferred;
		last_ms = d->last_ms;

		r->rss_kb = bench_run_proc_hwm(x->wax.pid);
		if (bench_run_terminate(&x->wax, BENCH_RUN_STOP_MS) == 0) {
			r->cpu_s = (double)x->wax.ru.ru_utime.tv_sec +
				   x->wax.ru.ru_utime.tv_usec / 1e6 +
				   (double)x->wax.ru.ru_stime.tv_sec +
				   x->wax.ru.ru_stime.tv_usec / 1e6;
			r->wax_status = WIFEXITED(x->wax.status)
					    ? WEXITSTATUS(x->wax.status)
					    : 128 + WTERMSIG(x->wax.status);
		}
		if (bench_run_read_waxlog(x, r) || r->wax_status != 0)
			r->complete = 0;
		bench_run_terminate(&x->sink, BENCH_RUN_STOP_MS);
	} else {
		rc = bench_run_sink_idle(x, &last_ms);
		r->complete = rc == 0;
		if (rc && rc != -ETIMEDOUT)
			goto fail;
		bench_run_terminate(&x->sink, BENCH_RUN_STOP_MS);
	}
	rc = bench_run_read_sink(x, r);
	if (rc)
		goto fail;

	/* The derived figures. */
	if (last_ms > start_wall) {
		double span = (double)(last_ms - start_wall) / 1000;
		double rc_n = r->delivered >= 0 ? r->delivered
						: r->sink_recipients;
		r->e2e_per_s = r->sink_messages / span;
		r->e2e_rcpt_per_s = rc_n / span;
		r->drain_s = last_ms > blast_end_wall
				 ? (double)(last_ms - blast_end_wall) / 1000
				 : 0;
	}
	rc = r->complete ? 0 : 1;

fail:
	bench_run_kill_all();
	free(d);
	free(wlog);
	return rc;
}

/* ---- the report ---- */

/* bench_run_jnum - a figure, or null when unknown. */
static void bench_run_jnum(FILE *f, const char *key, double v, int last)
{
	if (v < 0)
		fprintf(f, "\"%s\": null%s", key, last ? "" : ", ");
	else if (v == (double)(int64_t)v && v < 1e15)
		fprintf(f, "\"%s\": %" PRId64 "%s", key, (int64_t)v,
			last ? "" : ", ");
	else
		fprintf(f, "\"%s\": %.3f%s", key, v, last ? "" : ", ");
}

/* bench_run_per1k - v per 1,000 of n, or unknown. */
static double bench_run_per1k(double v, double n)
{
	return v >= 0 && n > 0 ? v * 1000 / n : -1;
}

/* bench_run_max_conc - the highest concurrency over all destinations. */
static double bench_run_max_conc(const struct bench_run_report *r)
{
	double m = -1;
	unsigned i;

	for (i = 0; i < r->ndest; i++)
		if (r->dest[i].max_concurrent > m)
			m = r->dest[i].max_concurrent;
	return m;
}

/* bench_run_print_json - one report as a JSON object. */
static void bench_run_print_json(FILE *f, const struct bench_run_ctx *x,
				 const struct bench_run_report *r)
{
	unsigned i;

	fprintf(f, "{\"tool\": \"waxseal-bench run\", \"scenario\": \"%s\", ",
		x->s->name);
	if (r->value != NULL)
		fprintf(f, "\"value\": \"%s\", ", r->value);
	if (x->o->target != NULL)
		fprintf(f, "\"target\": \"%s\",\n", x->o->target);
	else
		fprintf(f, "\"target\": null,\n");

	fprintf(f, " \"messages\": {");
	bench_run_jnum(f, "attempted", r->attempted, 0);
	bench_run_jnum(f, "accepted", r->accepted, 0);
	bench_run_jnum(f, "recipients", r->recipients, 0);
	bench_run_jnum(f, "delivered", r->delivered, 0);
	bench_run_jnum(f, "bounced", r->bounced, 0);
	bench_run_jnum(f, "expired", r->expired, 0);
	bench_run_jnum(f, "deferrals", r->deferrals, 1);
	fprintf(f, "},\n ");
	bench_run_jnum(f, "intake_per_s", r->intake_per_s, 0);
	bench_run_jnum(f, "p99_accept_ms", r->p99_ms, 0);
	bench_run_jnum(f, "end_to_end_per_s", r->e2e_per_s, 0);
	bench_run_jnum(f, "end_to_end_recipients_per_s", r->e2e_rcpt_per_s, 0);
	bench_run_jnum(f, "drain_s", r->drain_s, 0);
	fprintf(f, "\n \"waxseal\": {");
	bench_run_jnum(f, "cpu_s", r->cpu_s, 0);
	bench_run_jnum(f, "cpu_s_per_1000",
		       bench_run_per1k(r->cpu_s, r->accepted), 0);
	bench_run_jnum(f, "peak_rss_kb", r->rss_kb, 0);
	bench_run_jnum(f, "fsyncs", r->fsyncs, 0);
	bench_run_jnum(f, "fsyncs_per_1000",
		       bench_run_per1k(r->fsyncs, r->accepted), 0);
	bench_run_jnum(f, "exit_status", r->wax_status, 1);
	fprintf(f, "},\n \"dkim\": {");
	bench_run_jnum(f, "verified", r->verified, 0);
	bench_run_jnum(f, "pass", r->pass, 0);
	bench_run_jnum(f, "fail", r->fail, 0);
	bench_run_jnum(f, "none", r->none, 1);
	fprintf(f, "},\n \"sink\": {");
	bench_run_jnum(f, "messages", r->sink_messages, 0);
	bench_run_jnum(f, "recipients", r->sink_recipients, 0);
	bench_run_jnum(f, "connections", r->sink_connections, 0);
	fprintf(f, "\"replies\": {");
	bench_run_jnum(f, "2xx", r->r2xx, 0);
	bench_run_jnum(f, "4xx", r->r4xx, 0);
	bench_run_jnum(f, "5xx", r->r5xx, 1);
	fprintf(f, "}},\n \"destinations\": [");
	for (i = 0; i < r->ndest; i++) {
		const struct bench_run_dest *d = &r->dest[i];
		fprintf(f, "%s\n  {\"listen\": \"%s\", ", i ? "," : "",
			d->listen);
		bench_run_jnum(f, "messages", d->messages, 0);
		bench_run_jnum(f, "recipients", d->recipients, 0);
		bench_run_jnum(f, "connections", d->connections, 0);
		bench_run_jnum(f, "max_concurrent", d->max_concurrent, 0);
		bench_run_jnum(f, "tls_sessions", d->tls_sessions, 0);
		bench_run_jnum(f, "dkim_pass", d->dkim_pass, 0);
		bench_run_jnum(f, "dkim_fail", d->dkim_fail, 1);
		fprintf(f, "}");
	}
	fprintf(f, "],\n \"complete\": %s}", r->complete ? "true" : "false");
}

/* bench_run_fig - a figure for the text report: "-" when unknown. */
static const char *bench_run_fig(char *buf, size_t len, const char *fmt,
				 double v)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, fmt, v);
	return buf;
}

/* bench_run_print_text - one report for people. */
static void bench_run_print_text(FILE *f, const struct bench_run_ctx *x,
				 const struct bench_run_report *r)
{
	char a[64], b[64], c[64];
	unsigned i;

	fprintf(f, "scenario %s%s%s\n", x->s->name,
		x->o->target ? ", target " : "",
		x->o->target ? x->o->target : "");
	fprintf(f, "  messages            %s accepted of %s, %s recipients\n",
		bench_run_fig(a, sizeof(a), "%.0f", r->accepted),
		bench_run_fig(b, sizeof(b), "%.0f", r->attempted),
		bench_run_fig(c, sizeof(c), "%.0f", r->recipients));
	fprintf(f, "  outcomes            %s delivered, %s bounced, %s "
		   "expired\n",
		bench_run_fig(a, sizeof(a), "%.0f", r->delivered),
		bench_run_fig(b, sizeof(b), "%.0f", r->bounced),
		bench_run_fig(c, sizeof(c), "%.0f", r->expired));
	fprintf(f, "  intake              %s messages/s (p99 accept %s ms)\n",
		bench_run_fig(a, sizeof(a), "%.1f", r->intake_per_s),
		bench_run_fig(b, sizeof(b), "%.2f", r->p99_ms));
	fprintf(f, "  end to end          %s messages/s, %s recipients/s\n",
		bench_run_fig(a, sizeof(a), "%.1f", r->e2e_per_s),
		bench_run_fig(b, sizeof(b), "%.1f", r->e2e_rcpt_per_s));
	fprintf(f, "  queue drain         %s s after the blast\n",
		bench_run_fig(a, sizeof(a), "%.2f", r->drain_s));
	fprintf(f, "  waxseal cpu         %s s per 1,000 messages (%s s)\n",
		bench_run_fig(a, sizeof(a), "%.3f",
			      bench_run_per1k(r->cpu_s, r->accepted)),
		bench_run_fig(b, sizeof(b), "%.2f", r->cpu_s));
	fprintf(f, "  waxseal peak rss    %s MiB\n",
		bench_run_fig(a, sizeof(a), "%.1f",
			      r->rss_kb >= 0 ? r->rss_kb / 1024 : -1));
	fprintf(f, "  fdatasync           %s per 1,000 messages (%s)\n",
		bench_run_fig(a, sizeof(a), "%.1f",
			      bench_run_per1k(r->fsyncs, r->accepted)),
		bench_run_fig(b, sizeof(b), "%.0f", r->fsyncs));
	fprintf(f, "  dkim at the sinks   %s verified: %s pass, %s fail\n",
		bench_run_fig(a, sizeof(a), "%.0f", r->verified),
		bench_run_fig(b, sizeof(b), "%.0f", r->pass),
		bench_run_fig(c, sizeof(c), "%.0f", r->fail));
	fprintf(f, "  sinks               %s messages, %s 4xx, %s 5xx\n",
		bench_run_fig(a, sizeof(a), "%.0f", r->sink_messages),
		bench_run_fig(b, sizeof(b), "%.0f", r->r4xx),
		bench_run_fig(c, sizeof(c), "%.0f", r->r5xx));
	for (i = 0; i < r->ndest; i++)
		fprintf(f, "    %-24s %6.0f messages, %4.0f connections, "
			   "at most %.0f at once\n",
			r->dest[i].listen, r->dest[i].messages,
			r->dest[i].connections, r->dest[i].max_concurrent);
	if (!r->complete)
		fprintf(f, "  INCOMPLETE: not every recipient reached a final "
			   "outcome, or waxseal stopped uncleanly\n");
}

/* bench_run_table - the sweep's table. */
static void bench_run_table(FILE *f, const struct bench_run_opts *o,
			    const struct bench_run_report *r, unsigned n)
{
	char v[8][32];
	unsigned i;

	fprintf(f, "%-14s %10s %10s %8s %8s %9s %8s %9s %11s %6s\n",
		o->sweep_param, "intake/s", "e2e/s", "drain s", "p99 ms",
		"cpu s/1k", "rss MiB", "fsync/1k", "dkim ok/bad", "conc");
	for (i = 0; i < n; i++) {
		const struct bench_run_report *x = &r[i];
		char dk[40];
		snprintf(dk, sizeof(dk), "%.0f/%.0f", x->pass, x->fail);
		fprintf(f, "%-14s %10s %10s %8s %8s %9s %8s %9s %11s %6s%s\n",
			x->value,
			bench_run_fig(v[0], 32, "%.1f", x->intake_per_s),
			bench_run_fig(v[1], 32, "%.1f", x->e2e_per_s),
			bench_run_fig(v[2], 32, "%.2f", x->drain_s),
			bench_run_fig(v[3], 32, "%.2f", x->p99_ms),
			bench_run_fig(v[4], 32, "%.3f",
				      bench_run_per1k(x->cpu_s, x->accepted)),
			bench_run_fig(v[5], 32, "%.1f",
				      x->rss_kb >= 0 ? x->rss_kb / 1024 : -1),
			bench_run_fig(v[6], 32, "%.1f",
				      bench_run_per1k(x->fsyncs, x->accepted)),
			x->pass >= 0 ? dk : "-",
			bench_run_fig(v[7], 32, "%.0f", bench_run_max_conc(x)),
			x->complete ? "" : "  incomplete");
	}
}

/* bench_run_chart - a PNG of the sweep with gnuplot, when it exists. */
static void bench_run_chart(const char *dir, const struct bench_run_opts *o,
			    const struct bench_run_report *r, unsigned n)
{
	static const char gnuplot[] = "/usr/bin/gnuplot";
	char dat[PATH_MAX], gp[PATH_MAX], png[PATH_MAX], err[PATH_MAX];
	char *argv[] = {(char *)gnuplot, gp, NULL};
	unsigned i;
	FILE *f;

	if (access(gnuplot, X_OK) != 0) {
		fprintf(stderr, "waxseal-bench run: %s not found, skipped the "
				"chart\n",
			gnuplot);
		return;
	}
	snprintf(dat, sizeof(dat), "%s/sweep.dat", dir);
	snprintf(gp, sizeof(gp), "%s/sweep.gp", dir);
	snprintf(err, sizeof(err), "%s/gnuplot.err", dir);
	if (o->chart != NULL)
		snprintf(png, sizeof(png), "%s", o->chart);
	else
		snprintf(png, sizeof(png), "sweep-%s.png", o->sweep_param);

	f = fopen(dat, "w");
	if (f == NULL)
		return;
	for (i = 0; i < n; i++)
		fprintf(f, "\"%s\" %.3f %.3f\n", r[i].value,
			r[i].intake_per_s > 0 ? r[i].intake_per_s : 0,
			r[i].e2e_per_s > 0 ? r[i].e2e_per_s : 0);
	fclose(f);
	if (bench_run_write(gp,
			    "set terminal png size 800,500 noenhanced\n"
			    "set output '%s'\n"
			    "set title 'waxseal-bench run: sweep of %s'\n"
			    "set xlabel '%s'\nset ylabel 'messages/s'\n"
			    "set style data linespoints\nset key top left\n"
			    "set yrange [0:*]\n"
			    "plot '%s' using 2:xtic(1) title 'intake', "
			    "'' using 3:xtic(1) title 'end to end'\n",
			    png, o->sweep_param, o->sweep_param, dat))
		return;
	if (bench_run_exec(argv, err, 30000) == 0)
		fprintf(stderr, "waxseal-bench run: chart in %s\n", png);
	else
		fprintf(stderr, "waxseal-bench run: gnuplot failed, see %s\n",
			err);
}

/* ---- the command line ---- */

/* bench_run_rm_cb - nftw: remove one entry of the work directory. */
static int bench_run_rm_cb(const char *path, const struct stat *sb, int flag,
			   struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* bench_run_sibling - DIR_OF_SELF/../REL, when it exists. */
static const char *bench_run_sibling(const char *rel, char *buf)
{
	char self[PATH_MAX];
	ssize_t n;
	char *slash;

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return NULL;
	self[n] = '\0';
	if (rel == NULL) {
		snprintf(buf, PATH_MAX, "%s", self);
		return buf;
	}
	slash = strrchr(self, '/');
	if (slash == NULL)
		return NULL;
	*slash = '\0';
	snprintf(buf, PATH_MAX, "%.*s/../%s", PATH_MAX / 2, self, rel);
	return buf;
}

/* bench_run_getopt - fill the options from the command line. */
static int bench_run_getopt(struct bench_run_opts *o, int argc, char **argv)
{
	enum {
		OPT_WAXSEAL = 256,
		OPT_BENCH,
		OPT_MESSAGES,
		OPT_DURATION,
		OPT_DRAIN,
		OPT_TARGET,
		OPT_SINK_PORT,
		OPT_SWEEP,
		OPT_CHART,
		OPT_KEEP,
		OPT_JSON,
		OPT_HELP,
	};
	static const struct option longopts[] = {
	    {"waxseal", required_argument, NULL, OPT_WAXSEAL},
	    {"bench", required_argument, NULL, OPT_BENCH},
	    {"messages", required_argument, NULL, OPT_MESSAGES},
	    {"duration", required_argument, NULL, OPT_DURATION},
	    {"drain-timeout", required_argument, NULL, OPT_DRAIN},
	    {"target", required_argument, NULL, OPT_TARGET},
	    {"sink-port", required_argument, NULL, OPT_SINK_PORT},
	    {"sweep", required_argument, NULL, OPT_SWEEP},
	    {"chart", required_argument, NULL, OPT_CHART},
	    {"keep", required_argument, NULL, OPT_KEEP},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	long long v;
	char *eq, *tok, *save;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_WAXSEAL:
			o->waxseal = optarg;
			break;
		case OPT_BENCH:
			o->bench = optarg;
			break;
		case OPT_MESSAGES:
			v = bench_run_parse_uint(optarg, 1, 100000000);
			if (v < 0)
				goto bad;
			o->messages = (uint64_t)v;
			break;
		case OPT_DURATION:
			v = bench_run_parse_uint(optarg, 1, 3600);
			if (v < 0)
				goto bad;
			o->duration = (double)v;
			break;
		case OPT_DRAIN:
			v = bench_run_parse_uint(optarg, 1, 3600);
			if (v < 0)
				goto bad;
			o->drain_s = (unsigned)v;
			break;
		case OPT_TARGET:
			o->target = optarg;
			break;
		case OPT_SINK_PORT:
			v = bench_run_parse_uint(optarg, 1, 65535);
			if (v < 0)
				goto bad;
			o->sink_port = (unsigned)v;
			break;
		case OPT_SWEEP:
			eq = strchr(optarg, '=');
			if (eq == NULL || eq == optarg)
				goto bad;
			*eq = '\0';
			o->sweep_param = optarg;
			for (tok = strtok_r(eq + 1, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save)) {
				if (o->nsweep >= BENCH_RUN_MAX_SWEEP)
					goto bad;
				o->sweep_values[o->nsweep++] = tok;
			}
			if (o->nsweep == 0)
				goto bad;
			break;
		case OPT_CHART:
			o->chart = optarg;
			break;
		case OPT_KEEP:
			o->keep = optarg;
			break;
		case OPT_JSON:
			o->json = 1;
			break;
		case OPT_HELP:
			bench_run_usage(stdout);
			return 1;
		default:
			bench_run_usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "waxseal-bench run: one SCENARIO file, "
				"please\n");
		return -EINVAL;
	}
	o->scenario = argv[optind];
	return 0;

bad:
	fprintf(stderr, "waxseal-bench run: bad value for an option\n");
	return -EINVAL;
}

/* bench_run_workdir - make the work directory; 1 when it is to be kept. */
static int bench_run_workdir(const struct bench_run_opts *o, char *dir)
{
	const char *tmp = getenv("TMPDIR");
	char real[PATH_MAX];
	size_t n;

	if (o->keep != NULL) {
		if (mkdir(o->keep, 0755) && errno != EEXIST)
			return -errno;
		if (realpath(o->keep, real) == NULL)
			return -errno;
		n = strlen(real);
		if (n >= BENCH_RUN_DIR_MAX - 16)
			return -ENAMETOOLONG;
		memcpy(dir, real, n + 1);
		return 1;
	}
	tmp = tmp && *tmp ? tmp : "/var/tmp";
	if (strlen(tmp) >= BENCH_RUN_DIR_MAX - 40)
		return -ENAMETOOLONG;
	snprintf(dir, BENCH_RUN_DIR_MAX, "%s/waxseal-run-XXXXXX", tmp);
	return mkdtemp(dir) ? 0 : -errno;
}

/* bench_run_main - see bench_run.h. */
int bench_run_main(int argc, char **argv)
{
	static struct bench_run_scenario scen;
	static struct bench_run_report reports[BENCH_RUN_MAX_SWEEP];
	struct bench_run_opts o = {0};
	struct bench_run_ctx x;
	struct sigaction sa;
	char waxbuf[PATH_MAX], benchbuf[PATH_MAX], dir[BENCH_RUN_DIR_MAX];
	unsigned i, nruns;
	int rc, keep, status = 0;

	rc = bench_run_getopt(&o, argc, argv);
	if (rc)
		return rc > 0 ? 0 : 2;
	if (o.waxseal == NULL)
		o.waxseal = bench_run_sibling("relay/waxseal", waxbuf);
	if (o.bench == NULL)
		o.bench = bench_run_sibling(NULL, benchbuf);
	if (o.target == NULL &&
	    (o.waxseal == NULL || access(o.waxseal, X_OK) != 0)) {
		fprintf(stderr, "waxseal-bench run: no waxseal at %s; give "
				"--waxseal PATH\n",
			o.waxseal ? o.waxseal : "?");
		return 2;
	}
	if (bench_run_scenario_load(&scen, o.scenario) ||
	    bench_run_scenario_finish(&scen, &o))
		return 2;

	/* The runner's own signals end the run; the children go with it. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = bench_run_signal_cb;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	bench_run_tty = isatty(2);

	keep = bench_run_workdir(&o, dir);
	if (keep < 0) {
		fprintf(stderr, "waxseal-bench run: work directory: %s\n",
			strerror(-keep));
		return 1;
	}

	/* One run, or one per sweep value, each in a directory of its own. */
	nruns = o.nsweep ? o.nsweep : 1;
	for (i = 0; i < nruns && !bench_run_stop; i++) {
		memset(&x, 0, sizeof(x));
		x.o = &o;
		x.s = &scen;
		x.value = o.nsweep ? o.sweep_values[i] : NULL;
		if (o.nsweep) {
			snprintf(x.dir, sizeof(x.dir), "%.*s/run-%u",
				 BENCH_RUN_DIR_MAX - 16, dir, i);
			if (mkdir(x.dir, 0755) && errno != EEXIST) {
				status = 1;
				break;
			}
		} else {
			snprintf(x.dir, sizeof(x.dir), "%s", dir);
		}
		rc = bench_run_once(&x, &reports[i]);
		if (rc)
			status = 1;
		if (rc < 0) {
			nruns = i;
			break;
		}
		if (!o.nsweep) {
			if (o.json)
				bench_run_print_json(stdout, &x, &reports[i]);
			else
				bench_run_print_text(stdout, &x, &reports[i]);
			if (o.json)
				printf("\n");
		}
	}

	/* The sweep's table, chart and JSON. */
	if (o.nsweep && nruns > 0) {
		if (o.json) {
			printf("{\"tool\": \"waxseal-bench run\", \"scenario\": "
			       "\"%s\", \"sweep\": {\"param\": \"%s\", "
			       "\"values\": [",
			       scen.name, o.sweep_param);
			for (i = 0; i < o.nsweep; i++)
				printf("%s\"%s\"", i ? ", " : "",
				       o.sweep_values[i]);
			printf("]},\n\"runs\": [\n");
			for (i = 0; i < nruns; i++) {
				x.value = reports[i].value;
				bench_run_print_json(stdout, &x, &reports[i]);
				printf("%s\n", i + 1 < nruns ? "," : "");
			}
			printf("]}\n");
		} else {
			bench_run_table(stdout, &o, reports, nruns);
		}
		bench_run_chart(dir, &o, reports, nruns);
	}

	bench_run_kill_all();
	if (keep)
		fprintf(stderr, "waxseal-bench run: work directory kept in "
				"%s\n",
			dir);
	else
		nftw(dir, bench_run_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	if (bench_run_stop)
		status = 1;
	return status;
}
