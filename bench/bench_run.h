/*
 * bench_run - `waxseal-bench run SCENARIO`, the scenario runner.
 *
 * One run: pick free loopback ports; start `waxseal-bench sink` with one
 * listener per destination on 127.0.0.10, 127.0.0.11, ...; generate the
 * scenario's DKIM keys with `waxseal genkey` and write OpenDKIM KeyTable
 * and SigningTable files; write a transport_maps file that sends
 * example0.test, example1.test, ... (blast's --rcpt-domains) to those
 * listeners (domain i to listener i modulo the number of listeners);
 * write waxseal.conf and start `waxseal run -c`; run `waxseal-bench blast
 * --json` against it; wait until the delivery log holds a final outcome
 * (delivered, bounced, expired) for every recipient blast got accepted;
 * SIGTERM waxseal, then the sink, and read their figures. Every child is
 * started with fork and exec, dies with the runner (PR_SET_PDEATHSIG),
 * and is killed on every exit path; every wait has a deadline.
 *
 * Usage:
 *   waxseal-bench run [options] SCENARIO
 *     --waxseal PATH        the daemon (default: ../relay/waxseal beside
 *                           this binary's directory in the build tree)
 *     --bench PATH          waxseal-bench for blast and sink (default:
 *                           this binary, /proc/self/exe)
 *     --messages N          override [blast] messages
 *     --duration S          override [blast] duration
 *     --drain-timeout S     how long to wait for delivery after the blast
 *                           (default [run] drain-timeout, else 120)
 *     --target HOST:PORT    blast another relay (Postfix + OpenDKIM, see
 *                           below) instead of starting waxseal; only the
 *                           blast and sink figures are reported
 *     --sweep PARAM=V1,V2,...  one run per value of PARAM: a blast option
 *                           (connections, size, recipients, rcpt-domains,
 *                           sender-domains, rate, pipelining, messages)
 *                           or else a waxseal parameter; prints a table
 *                           and, when /usr/bin/gnuplot exists, a PNG
 *     --chart PATH          where the sweep's PNG goes (default
 *                           sweep-PARAM.png in the current directory)
 *     --keep DIR            work in DIR and keep it (default: a new
 *                           directory under $TMPDIR or /var/tmp, so the
 *                           spool is on disk, removed at the end)
 *     --json                print the report as JSON
 * The work directory holds waxseal.conf, waxseal.log, delivery.log,
 * transport, KeyTable, SigningTable, keys/, blast.json, blast.err,
 * sink.json and sink.err (one run-N/ per sweep value).
 *
 * Exit status: 0 when every run finished and every recipient blast got
 * accepted reached a final outcome; 1 when a run failed or timed out, a
 * child could not start, or waxseal exited uncleanly (non-zero status,
 * or a sanitizer report in its log); 2 for a usage or scenario error.
 *
 * Scenario files (bench/scenarios/NAME.scenario) are lines in sections:
 *   # comment            a line whose first non-blank is "#"; blank lines
 *                        are ignored
 *   [blast]              key = value: passed to blast as --key=value
 *                        ("yes" passes --key alone); messages and
 *                        duration (default 60) are the run's limits
 *   [sink]               destinations = N   listeners (default: blast's
 *                                           rcpt-domains, else 1; at
 *                                           most 200)
 *                        options = LIST     appended to every --listen:
 *                                           latency=MS,tempfail=PCT,...
 *                        options.K = LIST   for listener K (from 0)
 *                                           instead of options
 *                        tls = yes          sink --tls (STARTTLS)
 *                        verify-every = N   sink --verify-every N
 *   [waxseal]            name = value: written verbatim into waxseal.conf
 *                        after the runner's own lines (the last setting of
 *                        a parameter wins)
 *   [keys]               SELECTOR = rsa | rsa:BITS | ed25519
 *                        every sender domain (sender0.test, ...) gets
 *                        every key listed; with more than one,
 *                        dkim_multiple_signatures = yes; no [keys]: no
 *                        signing
 *   [run]                drain-timeout = SECONDS
 * At most 256 lines of at most 1023 characters.
 *
 * The runner's own waxseal lines: smtpd_listen on a free loopback port,
 * queue_directory, io_backend ($WAXSEAL_IO_BACKEND, else auto),
 * log_level = info, dns_servers = 127.0.0.1:9 (never real DNS),
 * defer_transports empty, smtp_tls_security_level = may, transport_maps,
 * the DKIM tables, delivery_log.
 *
 * Report (text, or JSON with --json; null where a figure is not known):
 *   scenario, target
 *   messages.attempted, .accepted       blast's counts
 *   messages.recipients                 accepted messages x recipients
 *   messages.delivered, .bounced, .expired, .deferrals
 *                                       delivery log lines, original
 *                                       recipients only
 *   intake_per_s                        blast's accepted_per_s
 *   p99_accept_ms                       blast's latency_ms.p99
 *   end_to_end_per_s                    sink messages / (last delivery -
 *                                       start of the blast)
 *   end_to_end_recipients_per_s         the same for recipients
 *   drain_s                             last delivery - end of blast
 *   waxseal.cpu_s, .cpu_s_per_1000      utime+stime (wait4's rusage)
 *   waxseal.peak_rss_kb                 VmHWM just before SIGTERM
 *   waxseal.fsyncs, .fsyncs_per_1000    from its "stopped ... fsyncs=M"
 *   waxseal.exit_status
 *   dkim.verified, .pass, .fail, .none  the sink's DKIM checks
 *   sink.messages, .recipients, .connections, .replies{2xx,4xx,5xx}
 *   destinations[]: listen, messages, recipients, connections,
 *                   max_concurrent, tls_sessions, dkim_pass, dkim_fail
 *   complete                            every recipient reached a final
 *                                       outcome within the drain timeout
 * A sweep prints one table row per value (JSON: {"sweep":{"param",
 * "values"},"runs":[report + "value"]}).
 *
 * With --target the last delivery is taken as the moment the sink went
 * idle: the sink runs with --idle-exit 10 and the runner subtracts those
 * ten seconds from the time it exited.
 *
 * Comparing with Postfix + OpenDKIM: bench/compare.sh runs a scenario
 * through waxseal and through a private Postfix with OpenDKIM as milter
 * (bench/postfix-opendkim.sh start WORKDIR RUNDIR prints its port; the
 * run is then `waxseal-bench run SCENARIO --keep RUNDIR --sink-port P
 * --target 127.0.0.1:PORT`, against the same sinks and keys), and prints
 * one table; bench/postfix-opendkim.sh stop WORKDIR ends it.
 */
#ifndef WAXSEAL_BENCH_RUN_H
#define WAXSEAL_BENCH_RUN_H

/* bench_run_main - run the subcommand; argv[0] is "run". */
int bench_run_main(int argc, char **argv);

/* bench_run_summary - one line for waxseal-bench --help. */
extern const char bench_run_summary[];

#endif
