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
 * What is sent: by default one newsletter template of --size bytes;
 * with --size-dist BYTES:WEIGHT,... one template per size, each message
 * drawn by weight from a PRNG keyed by --seed and the message number, so
 * a run with the same seed sends the same sizes in the same order; with
 * --messages-dir DIR the regular files of DIR (dot files skipped), in
 * name order and round robin, each a complete message at most 10 MB,
 * line ends made CRLF and dot-stuffed. The envelope always comes from
 * the sender and recipient options.
 *
 * With --starttls every connection sends STARTTLS after EHLO, does the
 * TLS handshake (BoringSSL over memory BIOs, no certificate checked: a
 * load generator on loopback) and says EHLO again before any mail. A
 * target that does not offer STARTTLS, or refuses it, stops the run with
 * a message naming the target: mail is never sent in plaintext instead.
 *
 * A run is always bounded by a message count and a time limit, and talks
 * only to loopback addresses unless --allow-remote is given. At the end
 * it prints a report (text, or JSON with --json) on standard output:
 * transactions by outcome, errors, throughput, the latency from the end
 * of DATA to its reply, the bytes of message sent and their mean size,
 * and with --starttls the TLS version negotiated.
 *
 * Exit status: 0 when at least one message was accepted, 1 when none
 * was (the server refused everything, could not be reached, or did not
 * offer STARTTLS under --starttls), 2 for a usage error, including a
 * --messages-dir that cannot be read, holds no file or a file over
 * 10 MB.
 */
#ifndef WAXSEAL_BENCH_BLAST_H
#define WAXSEAL_BENCH_BLAST_H

/* bench_blast_main - run the subcommand; argv[0] is "blast". */
int bench_blast_main(int argc, char **argv);

/* bench_blast_usage - one-paragraph summary for waxseal-bench --help. */
extern const char bench_blast_summary[];

#endif
