/*
 * conf - waxseal's configuration: the table of every parameter and a parser
 * for Postfix main.cf syntax.
 *
 * The file holds `name = value` lines; `#` starts a comment line; a line
 * that begins with white space continues the previous one. A value may
 * refer to another parameter as $name or ${name}, as in Postfix. Every
 * parameter has a row in one table (conf.c) with its type, default and a
 * one-line meaning; `waxseal config` prints from that table.
 *
 * Types: str, int, bool (yes/no), time (a number with an optional unit
 * ms, s, m, h, d, w; stored in milliseconds), size (bytes, a plain
 * integer as Postfix takes it, or with a k/m/g suffix), enum (one word of a
 * fixed set, stored as the index of that word), list (words separated by
 * commas and/or white space), cidr (a list of address/prefix entries, v4
 * and v6, `[::1]/128` as Postfix writes it).
 *
 * Errors name the file, the line and the parameter:
 *   "waxseal.conf:12: message_size_limit: not a size: 10x"
 * An unknown parameter is an error too.
 *
 * Ownership: struct conf owns every string and array it points to; they
 * live until conf_free(). A struct conf is not modified after conf_load()
 * returns, so it can be shared read-only with other threads; SIGHUP loads
 * a new one and swaps it in.
 */
#ifndef WAXSEAL_CONF_H
#define WAXSEAL_CONF_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * One mynetworks entry: family AF_INET or AF_INET6, address, prefix; a
 * negated entry ("!10.1.2.3") excludes the clients it matches.
 */
struct conf_cidr {
	int family;
	uint8_t addr[16];
	int prefix;
	bool negate;
};

struct conf_cidr_list {
	struct conf_cidr *v;
	size_t n;
};

/* A NULL-terminated array of strings. */
struct conf_list {
	char **v;
	size_t n;
};

enum conf_io_backend { CONF_IO_AUTO, CONF_IO_URING, CONF_IO_LIBUV };
enum conf_tls_level {
	CONF_TLS_NONE,
	CONF_TLS_MAY,
	CONF_TLS_ENCRYPT,
	CONF_TLS_VERIFY
};
enum conf_bare_lf { CONF_BARE_LF_NORMALIZE, CONF_BARE_LF_REJECT };
enum conf_unsigned { CONF_UNSIGNED_ACCEPT, CONF_UNSIGNED_DEFER,
	CONF_UNSIGNED_REJECT };
enum conf_log_level { CONF_LOG_ERROR, CONF_LOG_WARNING, CONF_LOG_INFO,
	CONF_LOG_DEBUG };

struct conf {
	/* Where the file came from, for messages; owned. */
	char *path;

	/* Daemon. */
	char *myhostname;
	char *queue_directory;
	int io_backend;          /* enum conf_io_backend */
	int log_level;           /* enum conf_log_level */
	char *control_socket;

	/* SMTP server. */
	struct conf_list smtpd_listen; /* "127.0.0.1:2525", "[::1]:2525" */
	struct conf_cidr_list mynetworks;
	char *smtpd_banner;
	int64_t message_size_limit;
	int64_t smtpd_recipient_limit;
	int64_t smtpd_error_sleep_time;          /* ms */
	int64_t smtpd_soft_error_limit;
	int64_t smtpd_hard_error_limit;
	int64_t smtpd_client_connection_count_limit;
	int64_t smtpd_client_connection_rate_limit;
	int64_t smtpd_max_connections;
	int64_t smtpd_timeout;                   /* ms, per command */
	int64_t smtpd_data_timeout;              /* ms, per DATA read */
	int64_t smtpd_idle_timeout;              /* ms, between commands */
	int smtpd_forbid_bare_newline;           /* enum conf_bare_lf */
	int64_t hopcount_limit;
	char *smtpd_tls_cert_file;
	char *smtpd_tls_key_file;
	int smtpd_tls_security_level;            /* none, may, encrypt */
	char *smtpd_tls_protocols;
	char *smtpd_tls_ciphers;

	/* Spool. */
	int64_t queue_segment_size;              /* bytes per segment file */
	int64_t queue_max_size;                  /* 0: no limit but disk */
	int64_t queue_minfree;                   /* bytes free on the disk */
	int64_t queue_commit_delay;              /* ms */

	/* DKIM signing. */
	char *dkim_key_table;
	char *dkim_signing_table;
	char *dkim_canonicalization;             /* "relaxed/relaxed" */
	struct conf_list dkim_sign_headers;
	struct conf_list dkim_oversign_headers;
	bool dkim_multiple_signatures;
	int dkim_unsigned_action;                /* enum conf_unsigned */
	int64_t dkim_signature_ttl;              /* ms, 0: no x= tag */
	int64_t sign_threads;                    /* 0: number of CPUs */

	/* Delivery: routing and DNS. */
	char *relayhost;                         /* "" or [host]:port, host */
	char *transport_maps;                    /* "" or a map file */
	struct conf_list dns_servers;            /* "" = resolv.conf */
	struct conf_list defer_transports;       /* "smtp": hold delivery */

	/* Delivery: per-destination scheduling. */
	int64_t initial_destination_concurrency;
	int64_t default_destination_concurrency_limit;
	char *destination_concurrency_limits;    /* "" or a map file */
	int64_t destination_concurrency_failed_cohort_limit;
	int64_t destination_rate_limit;          /* msgs/s; 0: none */
	int64_t default_destination_recipient_limit;
	int64_t smtp_connection_cache_time_limit; /* ms */
	int64_t destination_idle_time_limit;     /* ms */
	int64_t minimal_backoff_time;            /* ms */
	int64_t maximal_backoff_time;            /* ms */
	int64_t maximal_queue_lifetime;          /* ms */
	int64_t bounce_queue_lifetime;           /* ms */

	/* Delivery: the SMTP client. */
	char *smtp_helo_name;
	int64_t smtp_connect_timeout;            /* ms */
	int64_t smtp_helo_timeout;               /* ms: banner, EHLO, TLS */
	int64_t smtp_mail_timeout;               /* ms: MAIL, RCPT, DATA */
	int64_t smtp_data_done_timeout;          /* ms: after the final dot */
	int smtp_tls_security_level;             /* enum conf_tls_level */
	char *smtp_tls_CAfile;
	char *smtp_tls_CApath;
	char *smtp_tls_protocols;
	char *smtp_tls_ciphers;
	char *delivery_log;                      /* "" : no delivery log */

	/* The unexpanded values and where each was set, kept so that
	 * conf_set() can re-expand every $name after an override; owned,
	 * private to conf.c. */
	struct conf_raw *raw;
};

/* conf_defaults - fill c with every parameter's default. 0 or -ENOMEM. */
int conf_defaults(struct conf *c);

/*
 * conf_load - read path into c (which conf_load initialises itself).
 * Returns 0, or a negative errno with a message in err: -ENOENT/-EACCES
 * (cannot open), -EINVAL (syntax, unknown parameter or bad value). On error
 * c holds nothing that needs freeing.
 */
int conf_load(struct conf *c, const char *path, char *err, size_t errlen);

/*
 * conf_parse_buf - as conf_load, from memory; name is used in messages.
 * For tests and the fuzz target.
 */
int conf_parse_buf(struct conf *c, const char *name, const char *buf,
		   size_t len, char *err, size_t errlen);

/*
 * conf_set - override one parameter after the file, as `-o name=value` on
 * the command line does: the value replaces the file's (or the default),
 * and every value that refers to it as $name is expanded again. Same
 * validation as the file; errors read "-o: PARAM: reason". Returns 0, or
 * -EINVAL/-ENOMEM with a message in err, and c unchanged. Call it before
 * c is shared with other threads.
 */
int conf_set(struct conf *c, const char *name, const char *value, char *err,
	     size_t errlen);

/* conf_free - release everything c owns; c may then be loaded again. */
void conf_free(struct conf *c);

/*
 * conf_print - write `name = value` for every parameter, in table order,
 * as the effective (expanded) values; only those that differ from the
 * default when nondefault_only. With verbose, a `# meaning` comment line
 * precedes each.
 */
void conf_print(FILE *out, const struct conf *c, bool nondefault_only,
		bool verbose);

/*
 * conf_cidr_parse - parse one "addr/prefix" ("[v6]/prefix" accepted; a bare
 * address is a host). 0 or -EINVAL.
 */
int conf_cidr_parse(struct conf_cidr *out, const char *s);

/*
 * conf_cidr_match - whether the socket address sa (AF_INET or AF_INET6;
 * IPv4-mapped v6 addresses match v4 entries) is in l: the first entry of
 * l that it lies in decides (a negated one says no); none says no.
 */
bool conf_cidr_match(const struct conf_cidr_list *l,
		     const struct sockaddr *sa);

#endif
