/*
 * bench_sink - `waxseal-bench sink`, the destination emulator.
 *
 * One thread, one libuv loop, an SMTP server listening on many
 * addresses at once, each standing in for one destination mail server,
 * so that a benchmark can watch how waxseal delivers: how many
 * connections it opens per destination, how it pipelines, how it copes
 * with slow, deferring, refusing or failing servers, and whether what
 * it delivers still carries a valid DKIM signature.
 *
 * Every --listen ADDR:PORT[,key=value...] is one destination; its keys
 * shape how it answers:
 *
 *   latency=MS     delay before the reply to the final dot
 *   tempfail=PCT   share of RCPT answered "451 4.3.0 try again later"
 *   permfail=PCT   share of RCPT answered "550 5.1.1 no such user"
 *   reject421=PCT  share of connections greeted "421 4.7.0 busy"
 *   drop=PCT       share of messages whose connection is cut mid-DATA
 *
 * A share is spread evenly and deterministically over the events it
 * applies to (a low-discrepancy sequence per destination, not a random
 * draw), so that 10% means exactly every tenth event on average over any
 * short run and two runs of the same scenario see the same answers.
 *
 * The server speaks ESMTP with PIPELINING, 8BITMIME, SIZE, SMTPUTF8,
 * CHUNKING (as the large mailbox providers do), ENHANCEDSTATUSCODES and,
 * with --tls, STARTTLS (RFC 3207) with a self-signed certificate for
 * sink.test made at start. Pipelined commands are answered in order.
 * DATA is dot-unstuffed and ends only at CRLF.CRLF (RFC 5321 4.1.1.4);
 * a BDAT chunk (RFC 3030) is exactly the octets it announces. Messages
 * are measured, never stored; a sampled one (--verify-every) is copied
 * and its DKIM-Signatures checked against the keys given with --dkim-key
 * (DNS is never asked). The steady state allocates nothing per message
 * beyond that copy.
 *
 * A run is bounded: --duration (default 600 s, at most 3600), and
 * optionally --messages and --idle-exit; SIGTERM and SIGINT end it too.
 * Listening outside 127.0.0.0/8 and ::1 needs --allow-remote. When every
 * listener is bound, --ready-file is created. At the end the report is
 * printed on standard output (text, or JSON with --json) and written as
 * JSON to --report-file. Its keys:
 *
 *   elapsed_s       from the listeners being bound to the stop
 *   active_s        from the first connection to the last message
 *   messages_per_s  messages / active_s
 *   messages, recipients, bytes (message sizes after dot-unstuffing),
 *   connections, dropped, stop_reason ("messages", "duration", "idle",
 *   "signal")
 *   replies         {"2xx","4xx","5xx"}: replies to RCPT, to the final
 *                   dot and 421 greetings, by class
 *   dkim            {"verified","pass","fail","none"}: messages checked;
 *                   pass when one signature verifies, none when there is
 *                   no signature, fail otherwise (an unknown key too)
 *   destinations    one object per --listen, in order: listen,
 *                   messages, recipients, connections, max_concurrent
 *                   (most connections open at once), tls_sessions,
 *                   dkim_pass, dkim_fail, dropped, rejected_421,
 *                   tempfails, permfails
 *
 * Exit status: 0 after a run, 1 when a listener could not be set up, 2
 * for a usage error.
 */
#ifndef WAXSEAL_BENCH_SINK_H
#define WAXSEAL_BENCH_SINK_H

/* bench_sink_main - run the subcommand; argv[0] is "sink". */
int bench_sink_main(int argc, char **argv);

/* bench_sink_summary - one line for waxseal-bench --help. */
extern const char bench_sink_summary[];

#endif
