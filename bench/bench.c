/*
 * waxseal-bench - the benchmark harness: load generator (blast),
 * destination emulator (sink) and scenario runner (run).
 *
 * main only finds the subcommand in a table and hands it the rest of the
 * command line (argv[0] being the subcommand's name); each subcommand
 * parses its own options and prints its own --help.
 */
#include <stdio.h>
#include <string.h>

#include "bench/bench_blast.h"
#include "bench/bench_run.h"
#include "bench/bench_sink.h"

typedef int bench_main_fn(int argc, char **argv);

struct bench_cmd {
	const char *name;
	bench_main_fn *run;
	const char *summary;
};

static const struct bench_cmd bench_cmds[] = {
    {"blast", bench_blast_main, bench_blast_summary},
    {"sink", bench_sink_main, bench_sink_summary},
    {"run", bench_run_main, bench_run_summary},
};

/* bench_usage - list the subcommands. */
static void bench_usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: waxseal-bench COMMAND [options]\n"
		   "       waxseal-bench COMMAND --help\n"
		   "\n"
		   "commands:\n");
	for (i = 0; i < sizeof(bench_cmds) / sizeof(bench_cmds[0]); i++)
		fprintf(f, "  %s\n", bench_cmds[i].summary);
}

/* main - dispatch to the subcommand named by the first argument. */
int main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		bench_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		bench_usage(stdout);
		return 0;
	}

	for (i = 0; i < sizeof(bench_cmds) / sizeof(bench_cmds[0]); i++)
		if (!strcmp(argv[1], bench_cmds[i].name))
			return bench_cmds[i].run(argc - 1, argv + 1);

	fprintf(stderr, "waxseal-bench: unknown command %s\n", argv[1]);
	bench_usage(stderr);
	return 2;
}
