/*
 * waxseal - outbound SMTP relay for bulk mail: the command line.
 *
 *	waxseal run [-c FILE] [-o name=value]...
 *	waxseal config [-c FILE] [-n] [-v] [-o name=value]...
 *	waxseal queue [-c FILE] list [--json] | cat ID
 *	waxseal sign | verify | genkey ...    (DKIM tools)
 *
 * Exit codes: 0 success, 1 failure, 2 bad usage or configuration.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "relay/relay_ctl.h"
#include "relay/relay_daemon.h"
#include "sign/sign_cli.h"

#define WAXSEAL_DEFAULT_CONF "/etc/waxseal/waxseal.conf"
#define MAIN_MAX_OVERRIDES 64

struct main_opts {
	const char *conf;
	char *overrides[MAIN_MAX_OVERRIDES];
	int noverride;
	bool nondefault, verbose, json;
};

/* main_usage - the top-level help. */
static void main_usage(FILE *out)
{
	fputs("usage: waxseal COMMAND [options]\n"
	      "\n"
	      "commands:\n"
	      "  run      run the relay in the foreground\n"
	      "  config   print the effective configuration (like postconf)\n"
	      "  queue    list or show queued messages\n"
	      "  sign     DKIM-sign a message from standard input\n"
	      "  verify   verify the DKIM signatures of a message\n"
	      "  genkey   make a DKIM key pair (opendkim-genkey layout)\n"
	      "\n"
	      "'waxseal COMMAND --help' describes each command.\n",
	      out);
}

/* main_parse - the options shared by run, config and queue. */
static int main_parse(int argc, char **argv, struct main_opts *o,
		      const char *usage)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	int ch;

	o->conf = WAXSEAL_DEFAULT_CONF;
	/* GNU getopt permutes: options may follow the subcommand's words. */
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:o:nvh", longopts, NULL)) !=
	       -1) {
		switch (ch) {
		case 'c':
			o->conf = optarg;
			break;
		case 'o':
			if (o->noverride == MAIN_MAX_OVERRIDES) {
				fprintf(stderr, "waxseal: too many -o\n");
				return 2;
			}
			o->overrides[o->noverride++] = optarg;
			break;
		case 'n':
			o->nondefault = true;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	return 0;
}

static const char main_run_usage[] =
    "usage: waxseal run [-c FILE] [-o name=value]...\n"
    "\n"
    "Run the relay in the foreground, logging to standard error.\n"
    "  -c FILE        configuration (default " WAXSEAL_DEFAULT_CONF ")\n"
    "  -o name=value  override a parameter of the file\n"
    "SIGHUP reloads the configuration and DKIM keys; SIGTERM stops.\n";

/* main_run - `waxseal run`. */
static int main_run(int argc, char **argv)
{
	struct main_opts o = {0};
	int r = main_parse(argc, argv, &o, main_run_usage);

	if (r)
		return r;
	if (optind != argc) {
		fputs(main_run_usage, stderr);
		return 2;
	}
	return relay_daemon_run(o.conf, o.overrides, o.noverride);
}

static const char main_config_usage[] =
    "usage: waxseal config [-c FILE] [-n] [-v] [-o name=value]...\n"
    "\n"
    "Print every parameter's effective value.\n"
    "  -n  only those that differ from the default\n"
    "  -v  with a comment saying what each means\n";

/* main_config - `waxseal config`. */
static int main_config(int argc, char **argv)
{
	struct main_opts o = {0};
	struct conf c;
	char err[512];
	int r = main_parse(argc, argv, &o, main_config_usage);

	if (r)
		return r;
	if (relay_daemon_load(&c, o.conf, o.overrides, o.noverride, err,
			      sizeof(err)) < 0) {
		fprintf(stderr, "waxseal: %s\n", err);
		return 2;
	}
	conf_print(stdout, &c, o.nondefault, o.verbose);
	conf_free(&c);
	return 0;
}

static const char main_queue_usage[] =
    "usage: waxseal queue [-c FILE] list [--json]\n"
    "       waxseal queue [-c FILE] show ID | cat ID\n"
    "       waxseal queue [-c FILE] flush [DOMAIN]\n"
    "       waxseal queue [-c FILE] hold ID | release ID | delete ID\n"
    "\n"
    "list, show and cat read the spool without changing it: list prints\n"
    "the queued messages one a line (id, size, arrival, state, attempts,\n"
    "sender, pending recipients), show one message's envelope and state\n"
    "and the message, cat the message as stored. flush, hold, release\n"
    "and delete ask the running daemon through its control socket:\n"
    "flush tries deferred mail now (only mail for DOMAIN when given),\n"
    "hold keeps a message from delivery until release, delete drops it\n"
    "without a bounce.\n";

/* main_json_str - s as a JSON string. */
static void main_json_str(FILE *out, const char *s)
{
	putc('"', out);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(out, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(out, "\\u%04x", ch);
		else
			putc(ch, out);
	}
	putc('"', out);
}

/* main_queue_state - held, deferred (tried, waiting) or queued. */
static const char *main_queue_state(const struct queue_msg *m)
{
	if (m->held)
		return "held";
	return m->attempts > 0 ? "deferred" : "queued";
}

/* main_queue_line - one message of `queue list`. */
static int main_queue_line(void *arg, const struct queue_msg *m)
{
	const struct main_opts *o = arg;
	char when[32];
	time_t t = (time_t)(m->arrival_ms / 1000);
	struct tm tm;
	size_t i, n;

	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (o->json) {
		printf("{\"id\":\"%s\",\"size\":%llu,\"arrival\":\"%s\","
		       "\"state\":\"%s\",\"attempts\":%u,"
		       "\"next_attempt_ms\":%lld,\"sender\":",
		       m->id, (unsigned long long)m->size, when,
		       main_queue_state(m), m->attempts,
		       (long long)m->next_ms);
		main_json_str(stdout, m->sender);
		fputs(",\"recipients\":[", stdout);
		for (i = 0; i < m->nrcpt; i++) {
			if (i)
				putchar(',');
			main_json_str(stdout, m->rcpts[i]);
		}
		fputs("],\"pending\":[", stdout);
		for (i = 0, n = 0; i < m->nrcpt; i++) {
			if (m->rcpt_done[i])
				continue;
			if (n++)
				putchar(',');
			main_json_str(stdout, m->rcpts[i]);
		}
		fputs("]}\n", stdout);
		return 0;
	}
	printf("%s %8llu %s %s %u <%s>", m->id, (unsigned long long)m->size,
	       when, main_queue_state(m), m->attempts, m->sender);
	for (i = 0; i < m->nrcpt; i++)
		if (!m->rcpt_done[i])
			printf(" <%s>", m->rcpts[i]);
	putchar('\n');
	return 0;
}

/*
 * main_queue_ctl - flush, hold, release and delete: one line to the
 * daemon. True when argv was such a command (*code set).
 */
static bool main_queue_ctl(int argc, char **argv, const struct conf *c,
			   int *code)
{
	static const char *const cmds[] = {"flush", "hold", "release",
					   "delete"};
	char line[600], reply[256];
	size_t i;
	int r;

	for (i = 0; i < 4 && strcmp(argv[optind], cmds[i]) != 0; i++)
		;
	if (i == 4)
		return false;
	if (argc - optind > 2 || (i > 0 && argc - optind != 2) ||
	    (argc - optind == 2 && strlen(argv[optind + 1]) > 255)) {
		fputs(main_queue_usage, stderr);
		*code = 2;
		return true;
	}
	snprintf(line, sizeof(line), "%s%s%s", argv[optind],
		 argc - optind == 2 ? " " : "",
		 argc - optind == 2 ? argv[optind + 1] : "");
	r = relay_ctl_call(c->control_socket, line, reply, sizeof(reply));
	if (r < 0) {
		fprintf(stderr, "waxseal: %s: %s (is the daemon running?)\n",
			c->control_socket, strerror(-r));
		*code = 1;
		return true;
	}
	if (strncmp(reply, "ok", 2) != 0) {
		fprintf(stderr, "waxseal: %s: %s\n", line, reply);
		*code = 1;
		return true;
	}
	puts(reply);
	*code = 0;
	return true;
}

/* main_queue_show - one message's envelope, state and text. */
static int main_queue_show(struct queue_spool *sp, const char *id)
{
	const struct queue_msg *m = queue_spool_find(sp, id);
	char *buf;
	size_t len, i;
	int r;

	if (m == NULL) {
		fprintf(stderr, "waxseal: %s: no such message\n", id);
		return 1;
	}
	printf("id: %s\nsize: %llu\nstate: %s\nattempts: %u\n", m->id,
	       (unsigned long long)m->size, main_queue_state(m), m->attempts);
	if (m->next_ms > 0)
		printf("next_attempt_ms: %lld\n", (long long)m->next_ms);
	printf("sender: <%s>\n", m->sender);
	for (i = 0; i < m->nrcpt; i++)
		printf("recipient: <%s>%s\n", m->rcpts[i],
		       m->rcpt_done[i] ? " done" : "");
	putchar('\n');
	r = queue_spool_read(sp, id, &buf, &len);
	if (r < 0) {
		fprintf(stderr, "waxseal: %s: %s\n", id, strerror(-r));
		return 1;
	}
	fwrite(buf, 1, len, stdout);
	free(buf);
	return 0;
}

/* main_queue - `waxseal queue`. */
static int main_queue(int argc, char **argv)
{
	struct main_opts o = {0};
	struct queue_limits lim = {0};
	struct queue_spool *sp = NULL;
	struct conf c;
	char err[512];
	int r = main_parse(argc, argv, &o, main_queue_usage), code = 1;

	if (r)
		return r;
	if (optind >= argc) {
		fputs(main_queue_usage, stderr);
		return 2;
	}
	if (relay_daemon_load(&c, o.conf, o.overrides, o.noverride, err,
			      sizeof(err)) < 0) {
		fprintf(stderr, "waxseal: %s\n", err);
		return 2;
	}

	/* Commands for the running daemon go through its socket. */
	if (main_queue_ctl(argc, argv, &c, &code))
		goto out;

	/* Read-only: the spool of a running daemon is not touched. */
	r = queue_spool_open(&sp, c.queue_directory, &lim, NULL, err,
			     sizeof(err));
	if (r < 0) {
		fprintf(stderr, "waxseal: %s: %s\n", c.queue_directory, err);
		goto out;
	}
	if (strcmp(argv[optind], "list") == 0 && optind + 1 == argc) {
		queue_spool_foreach(sp, main_queue_line, &o);
		code = 0;
	} else if (strcmp(argv[optind], "show") == 0 && optind + 2 == argc) {
		code = main_queue_show(sp, argv[optind + 1]);
	} else if (strcmp(argv[optind], "cat") == 0 && optind + 2 == argc) {
		char *buf;
		size_t len;

		r = queue_spool_read(sp, argv[optind + 1], &buf, &len);
		if (r < 0) {
			fprintf(stderr, "waxseal: %s: %s\n", argv[optind + 1],
				r == -ENOENT ? "no such message"
					     : strerror(-r));
			goto out;
		}
		fwrite(buf, 1, len, stdout);
		free(buf);
		code = 0;
	} else {
		fputs(main_queue_usage, stderr);
		code = 2;
	}
out:
	if (sp)
		queue_spool_close(sp);
	conf_free(&c);
	return code;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
	    {"run", main_run},
	    {"config", main_config},
	    {"queue", main_queue},
	    {"sign", sign_cli_sign},
	    {"verify", sign_cli_verify},
	    {"genkey", sign_cli_genkey},
	    {"sign-bench", sign_cli_bench},
	};
	size_t i;

	if (argc < 2) {
		main_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		main_usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		puts("waxseal 0.1.0");
		return 0;
	}
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "waxseal: unknown command '%s'\n", argv[1]);
	main_usage(stderr);
	return 2;
}
