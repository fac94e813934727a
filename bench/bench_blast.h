/*
 * bench_blast - `waxseal-bench blast`, the SMTP load generator.
 *
 * One thread, one libuv loop, N persistent SMTP connections to one
 * target. Each connection runs transactions back to back (closed loop)
 * or when a fixed-rate clock hands it one (open loop, --rate), with
 * MAIL/RCPT/DATA pipelined as RFC 2920 allows. Messages are rendered from
 * a template built once (bench_msg); each connection owns one output
 * buffer and one input buffer for its whole life, so the steady state
 * allocates nothing.
 *
 * A run is always bounded by a message count and a time limit, and talks
 * only to loopback addresses unless --allow-remote is given. At the end
 * it prints a report (text, or JSON with --json) on standard output:
 * transactions by outcome, errors, throughput, and the latency from the
 * end of DATA to its reply.
 *
 * Exit status: 0 when at least one message was accepted, 1 when none
 * was (the server refused everything or could not be reached), 2 for a
 * usage error.
 */
#ifndef WAXSEAL_BENCH_BLAST_H
#define WAXSEAL_BENCH_BLAST_H

/* bench_blast_main - run the subcommand; argv[0] is "blast". */
int bench_blast_main(int argc, char **argv);

/* bench_blast_usage - one-paragraph summary for waxseal-bench --help. */
extern const char bench_blast_summary[];

#endif
