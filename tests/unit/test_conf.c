/*
 * test_conf - the parameter table, the main.cf parser, expansion, value
 * types, conf_set, conf_print and the mynetworks matcher.
 */
#include "conf/conf.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct conf c;
static char err[512];

/* parse - conf_parse_buf of a string, named "t.conf". */
static int parse(const char *text)
{
	err[0] = '\0';
	return conf_parse_buf(&c, "t.conf", text, strlen(text), err,
			      sizeof(err));
}

/* parse_ok - parse, and fail the test with the message on error. */
static void parse_ok(const char *text)
{
	int r = parse(text);

	cr_assert_eq(r, 0, "parse failed: %d %s", r, err);
}

/* parse_bad - parse must fail with -EINVAL and exactly this message. */
static void parse_bad(const char *text, const char *want)
{
	int r = parse(text);

	cr_assert_eq(r, -EINVAL, "r=%d for: %s", r, text);
	cr_assert_str_eq(err, want);

	/* On error nothing is left to free; freeing must still be safe. */
	cr_assert_null(c.path);
	cr_assert_null(c.raw);
}

/* printed - conf_print output into a malloc'd string. */
static char *printed(const struct conf *cf, bool n, bool verbose)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_not_null(f);
	conf_print(f, cf, n, verbose);
	fclose(f);
	return buf;
}

static void teardown(void)
{
	conf_free(&c);
}

TestSuite(conf, .fini = teardown);

Test(conf, defaults)
{
	char host[256] = {0};

	cr_assert_eq(conf_defaults(&c), 0);
	gethostname(host, sizeof(host) - 1);
	cr_assert_str_eq(c.myhostname, host[0] ? host : "localhost");
	cr_assert_str_eq(c.queue_directory, "/var/spool/waxseal");
	cr_assert_eq(c.io_backend, CONF_IO_AUTO);
	cr_assert_eq(c.log_level, CONF_LOG_INFO);
	cr_assert_str_eq(c.control_socket, "/var/spool/waxseal/control");
	cr_assert_eq(c.smtpd_listen.n, 1);
	cr_assert_str_eq(c.smtpd_listen.v[0], "127.0.0.1:2525");
	cr_assert_null(c.smtpd_listen.v[1]);
	cr_assert_eq(c.mynetworks.n, 2);
	cr_assert_eq(c.mynetworks.v[0].family, AF_INET);
	cr_assert_eq(c.mynetworks.v[0].prefix, 8);
	cr_assert_eq(c.mynetworks.v[1].family, AF_INET6);
	cr_assert_eq(c.mynetworks.v[1].prefix, 128);

	char banner[300];
	snprintf(banner, sizeof(banner), "%s ESMTP waxseal", c.myhostname);
	cr_assert_str_eq(c.smtpd_banner, banner);

	cr_assert_eq(c.message_size_limit, 10240000);
	cr_assert_eq(c.smtpd_recipient_limit, 1000);
	cr_assert_eq(c.smtpd_error_sleep_time, 0);
	cr_assert_eq(c.smtpd_soft_error_limit, 10);
	cr_assert_eq(c.smtpd_hard_error_limit, 20);
	cr_assert_eq(c.smtpd_client_connection_count_limit, 0);
	cr_assert_eq(c.smtpd_client_connection_rate_limit, 0);
	cr_assert_eq(c.smtpd_max_connections, 10000);
	cr_assert_eq(c.smtpd_timeout, 300000);
	cr_assert_eq(c.smtpd_data_timeout, 300000);
	cr_assert_eq(c.smtpd_idle_timeout, 300000);
	cr_assert_eq(c.smtpd_forbid_bare_newline, CONF_BARE_LF_NORMALIZE);
	cr_assert_eq(c.hopcount_limit, 50);
	cr_assert_str_eq(c.smtpd_tls_cert_file, "");
	cr_assert_str_eq(c.smtpd_tls_key_file, "");
	cr_assert_eq(c.smtpd_tls_security_level, CONF_TLS_MAY);
	cr_assert_str_eq(c.smtpd_tls_protocols, ">=TLSv1.2");
	cr_assert_str_eq(c.smtpd_tls_ciphers, "medium");
	cr_assert_eq(c.queue_segment_size, 67108864);
	cr_assert_eq(c.queue_max_size, 0);
	cr_assert_eq(c.queue_minfree, 100 * 1024 * 1024);
	cr_assert_str_eq(c.dkim_key_table, "");
	cr_assert_str_eq(c.dkim_signing_table, "");
	cr_assert_str_eq(c.dkim_canonicalization, "relaxed/relaxed");
	cr_assert_eq(c.dkim_sign_headers.n, 25);
	cr_assert_str_eq(c.dkim_sign_headers.v[0], "From");
	cr_assert_str_eq(c.dkim_sign_headers.v[24], "List-Unsubscribe-Post");
	cr_assert_eq(c.dkim_oversign_headers.n, 3);
	cr_assert_str_eq(c.dkim_oversign_headers.v[1], "List-Unsubscribe");
	cr_assert_eq(c.dkim_multiple_signatures, false);
	cr_assert_eq(c.dkim_unsigned_action, CONF_UNSIGNED_ACCEPT);
	cr_assert_eq(c.dkim_signature_ttl, 0);
	cr_assert_eq(c.sign_threads, 0);
}

Test(conf, empty_buffer_is_defaults)
{
	parse_ok("");
	cr_assert_str_eq(c.path, "t.conf");
	cr_assert_eq(c.smtpd_recipient_limit, 1000);
}

Test(conf, syntax_spacing_comments_blank)
{
	parse_ok("# a comment\n"
		 "\n"
		 "   \n"
		 "smtpd_recipient_limit=5\n"
		 "hopcount_limit   =   7   \n"
		 "   # an indented comment\n"
		 "smtpd_banner = hello # not a comment\n"
		 "sign_threads = 3");
	cr_assert_eq(c.smtpd_recipient_limit, 5);
	cr_assert_eq(c.hopcount_limit, 7);
	cr_assert_str_eq(c.smtpd_banner, "hello # not a comment");
	cr_assert_eq(c.sign_threads, 3, "last line without a newline");
}

Test(conf, crlf_lines)
{
	parse_ok("hopcount_limit = 9\r\nsmtpd_banner = x y\r\n");
	cr_assert_eq(c.hopcount_limit, 9);
	cr_assert_str_eq(c.smtpd_banner, "x y");
}

Test(conf, empty_value)
{
	parse_ok("smtpd_tls_protocols =\nsmtpd_listen=\n");
	cr_assert_str_eq(c.smtpd_tls_protocols, "");
	cr_assert_eq(c.smtpd_listen.n, 0);
	cr_assert_null(c.smtpd_listen.v[0]);
}

Test(conf, continuation_lines)
{
	parse_ok("smtpd_banner = one   \n"
		 "\ttwo\n"
		 "# a comment inside does not end it\n"
		 "      three\n"
		 "mynetworks = 10.0.0.0/8,\n"
		 "  192.168.0.0/16\n"
		 "\t[::1]/128\n");
	cr_assert_str_eq(c.smtpd_banner, "one two three");
	cr_assert_eq(c.mynetworks.n, 3);
	cr_assert_eq(c.mynetworks.v[2].family, AF_INET6);
}

Test(conf, continuation_without_parameter)
{
	parse_bad("  hopcount_limit = 3\n",
		  "t.conf:1: line starts with white space but continues no "
		  "parameter");
}

Test(conf, last_one_wins)
{
	parse_ok("hopcount_limit = 1\nhopcount_limit = 2\n");
	cr_assert_eq(c.hopcount_limit, 2);
}

Test(conf, unknown_parameter)
{
	parse_bad("# x\n\nhopcount_limit = 3\nrelay_host = x\n",
		  "t.conf:4: relay_host: unknown parameter");
}

Test(conf, missing_equals)
{
	parse_bad("hopcount_limit 3\n",
		  "t.conf:1: hopcount_limit: missing '=' after parameter "
		  "name");
	parse_bad("= 3\n", "t.conf:1: missing parameter name before '='");
}

Test(conf, error_line_is_logical_start)
{
	parse_bad("\nsmtpd_recipient_limit = 1\n  2\n",
		  "t.conf:2: smtpd_recipient_limit: not a non-negative "
		  "integer: 1 2");
}

Test(conf, nul_byte)
{
	static const char text[] = "hopcount_limit = 1\nx\0y = 2\n";

	cr_assert_eq(conf_parse_buf(&c, "t.conf", text, sizeof(text) - 1, err,
				    sizeof(err)),
		     -EINVAL);
	cr_assert_str_eq(err, "t.conf:2: NUL character in line");
}

Test(conf, line_too_long)
{
	size_t n = 70000;
	char *text = malloc(n + 64);

	cr_assert_not_null(text);
	strcpy(text, "smtpd_banner = ");
	memset(text + strlen(text), 'a', n);
	strcpy(text + 15 + n, "\n");
	parse_bad(text, "t.conf:1: logical line longer than 65536 bytes");

	/* A long line after a short one names its own line. */
	memmove(text + 17, text, 15 + n + 2);
	memcpy(text, "hopcount_limit=1\n", 17);
	parse_bad(text, "t.conf:2: logical line longer than 65536 bytes");

	/* Continuations count towards the same limit. */
	strcpy(text, "smtpd_banner = x\n");
	for (size_t k = strlen(text); k + 40 < n; k += 40)
		strcpy(text + k, "  bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n");
	cr_assert_eq(parse(text), -EINVAL);
	cr_assert_str_eq(err, "t.conf:1: logical line longer than 65536 bytes");
	free(text);
}

Test(conf, expansion)
{
	parse_ok(
	    "smtpd_banner = $myhostname/${queue_directory}/$(hopcount_limit)"
	    " $$x $$$$\n"
	    "myhostname = mx.example\n"
	    "queue_directory = /q\n");
	cr_assert_str_eq(c.smtpd_banner, "mx.example//q/50 $x $$");

	/* Defaults that refer to others follow what the file sets. */
	cr_assert_str_eq(c.control_socket, "/q/control");
}

Test(conf, expansion_name_ends_at_non_name_char)
{
	parse_ok("queue_directory = /q\nsmtpd_banner = $queue_directory.x\n");
	cr_assert_str_eq(c.smtpd_banner, "/q.x");
}

Test(conf, expansion_into_typed_values)
{
	parse_ok("smtpd_soft_error_limit = $smtpd_hard_error_limit\n"
		 "smtpd_hard_error_limit = 33\n"
		 "smtpd_timeout = ${smtpd_hard_error_limit}m\n");
	cr_assert_eq(c.smtpd_soft_error_limit, 33);
	cr_assert_eq(c.smtpd_timeout, 33 * 60000);
}

Test(conf, expansion_loop)
{
	parse_bad("smtpd_banner = $smtpd_banner\n",
		  "t.conf:1: smtpd_banner: parameter expansion loop: "
		  "smtpd_banner -> smtpd_banner");
	parse_bad("\nsmtpd_tls_ciphers = ${smtpd_tls_protocols}\n"
		  "smtpd_tls_protocols = x$smtpd_tls_ciphers\n",
		  "t.conf:3: smtpd_tls_protocols: parameter expansion loop: "
		  "smtpd_tls_protocols -> smtpd_tls_ciphers -> "
		  "smtpd_tls_protocols");

	/* A loop through a default names the line that closed it. */
	parse_bad("\n\nqueue_directory = $control_socket\n",
		  "t.conf:3: queue_directory: parameter expansion loop: "
		  "queue_directory -> control_socket -> queue_directory");
}

Test(conf, expansion_errors)
{
	parse_bad("smtpd_banner = $nosuch x\n",
		  "t.conf:1: smtpd_banner: unknown parameter in expansion: "
		  "$nosuch");
	parse_bad("smtpd_banner = ${myhostname\n",
		  "t.conf:1: smtpd_banner: missing '}' after '${'");
	parse_bad("smtpd_banner = cost 5$\n",
		  "t.conf:1: smtpd_banner: '$' without a parameter name "
		  "(write $$ for a literal $)");
}

Test(conf, expansion_conditional)
{
	/* Postfix's forms: ?text when set, :text when empty, both. */
	parse_ok("myhostname = mx.example\n"
		 "smtpd_banner = ${myhostname?up:}|${relayhost:no relay}|"
		 "${relayhost?{via $relayhost}:{direct}}|$(relayhost?x)|"
		 "${myhostname?{$$5 {x}}}|${relayhost:{}}.\n");
	cr_assert_str_eq(c.smtpd_banner, "up:|no relay|direct||$5 {x}|.");
	conf_free(&c);

	parse_ok("relayhost = [smart.example]:25\n"
		 "smtpd_banner = ${relayhost?{via $relayhost}:{direct}} "
		 "${relayhost:none}${relayhost?${myhostname:${relayhost}}}\n"
		 "myhostname =\n");
	cr_assert_str_eq(c.smtpd_banner,
			 "via [smart.example]:25 [smart.example]:25");
}

Test(conf, expansion_conditional_errors)
{
	parse_bad("smtpd_banner = ${myhostname == x?y}\n",
		  "t.conf:1: smtpd_banner: unsupported expansion: "
		  "${myhostname == x?y (only ${name}, ${name?text} and "
		  "${name:text})");
	parse_bad("smtpd_banner = ${myhostname?{a}b}\n",
		  "t.conf:1: smtpd_banner: ':' expected after "
		  "${name?{text}}");
	parse_bad("smtpd_banner = ${relayhost:{a}:{b}}\n",
		  "t.conf:1: smtpd_banner: unexpected text after "
		  "${name:{text}}");
	parse_bad("smtpd_banner = ${relayhost?{a}:{b} c}\n",
		  "t.conf:1: smtpd_banner: unexpected text after "
		  "${name?{text}:{text}}");
	parse_bad("smtpd_banner = $(relayhost?{a)\n",
		  "t.conf:1: smtpd_banner: missing '}' in a conditional");
	parse_bad("smtpd_banner = ${nosuch?x}\n",
		  "t.conf:1: smtpd_banner: unknown parameter in expansion: "
		  "$nosuch");
	parse_bad("smtpd_banner = ${myhostname?{x}\n",
		  "t.conf:1: smtpd_banner: missing '}' after '${'");

	/* The text of a branch is expanded, so it can close a loop... */
	parse_bad("relayhost = ${myhostname?$smtpd_banner}\n"
		  "smtpd_banner = $relayhost\n",
		  "t.conf:2: smtpd_banner: parameter expansion loop: "
		  "smtpd_banner -> relayhost -> smtpd_banner");

	/* ...but the branch not taken is not. */
	parse_ok("relayhost = ${myhostname:$smtpd_banner}\n"
		 "smtpd_banner = x$relayhost\n");
	cr_assert_str_eq(c.smtpd_banner, "x");
}

Test(conf, expansion_conditional_postfix_forms)
{
	/* Blanks around the braces, and text2 without braces. */
	parse_ok("myhostname = mx.example\n"
		 "smtpd_banner = x${relayhost ? {a} : {b} }|${relayhost?{a}:b}|"
		 "${relayhost: c}|${relayhost:{ d }}|${myhostname ?e}|"
		 "${relayhost?{a}: f}\n");
	cr_assert_str_eq(c.smtpd_banner, "xb|b| c| d |e| f");
	conf_free(&c);

	/* Set or not is the value as written, before its expansion. */
	parse_ok("transport_maps = $relayhost\n"
		 "smtpd_banner = ${transport_maps?T}ESMTP\n");
	cr_assert_str_eq(c.smtpd_banner, "TESMTP");
}

Test(conf, expansion_conditional_nesting_is_bounded)
{
	size_t n = 5000, len = n * 14 + 64, k;
	char *text = malloc(len), *p = text;

	/* 5000 levels would take the stack with them: 100 is the limit. */
	cr_assert_not_null(text);
	p += sprintf(p, "smtpd_banner = ");
	for (k = 0; k < n; k++)
		p += sprintf(p, "${relayhost:");
	p += sprintf(p, "x");
	for (k = 0; k < n; k++)
		*p++ = '}';
	sprintf(p, "\n");
	parse_bad(text, "t.conf:1: smtpd_banner: conditional expansions "
			"nested more than 100 deep");
	free(text);
}

Test(conf, expansion_blowup_is_capped)
{
	/* Each level doubles: 2^40 bytes unless capped. */
	parse_bad("smtpd_tls_key_file = $smtpd_tls_cert_file"
		  "$smtpd_tls_cert_file$smtpd_tls_cert_file"
		  "$smtpd_tls_cert_file\n"
		  "smtpd_tls_cert_file = $dkim_key_table$dkim_key_table"
		  "$dkim_key_table$dkim_key_table\n"
		  "dkim_key_table = $dkim_signing_table$dkim_signing_table"
		  "$dkim_signing_table$dkim_signing_table\n"
		  "dkim_signing_table = $smtpd_tls_ciphers$smtpd_tls_ciphers"
		  "$smtpd_tls_ciphers$smtpd_tls_ciphers\n"
		  "smtpd_tls_ciphers = $smtpd_tls_protocols$smtpd_tls_protocols"
		  "$smtpd_tls_protocols$smtpd_tls_protocols\n"
		  "smtpd_tls_protocols = 0123456789012345678901234567890123"
		  "456789012345678901234567890123456789\n",
		  "t.conf:1: smtpd_tls_key_file: value longer than 65536 "
		  "bytes after expansion");
}

Test(conf, type_int)
{
	parse_ok("smtpd_recipient_limit = 0\n"
		 "smtpd_max_connections = 9223372036854775807\n");
	cr_assert_eq(c.smtpd_recipient_limit, 0);
	cr_assert_eq(c.smtpd_max_connections, INT64_MAX);
	conf_free(&c);

	parse_bad("smtpd_recipient_limit = -1\n",
		  "t.conf:1: smtpd_recipient_limit: not a non-negative "
		  "integer: -1");
	parse_bad("smtpd_recipient_limit = 12x\n",
		  "t.conf:1: smtpd_recipient_limit: not a non-negative "
		  "integer: 12x");
	parse_bad("smtpd_recipient_limit =\n",
		  "t.conf:1: smtpd_recipient_limit: not a non-negative "
		  "integer: ");
	parse_bad("smtpd_max_connections = 9223372036854775808\n",
		  "t.conf:1: smtpd_max_connections: number too large: "
		  "9223372036854775808");
}

Test(conf, type_size)
{
	parse_ok("message_size_limit = 0\n"
		 "queue_segment_size = 2k\n"
		 "queue_max_size = 3G\n"
		 "queue_minfree = 5M\n");
	cr_assert_eq(c.message_size_limit, 0);
	cr_assert_eq(c.queue_segment_size, 2048);
	cr_assert_eq(c.queue_max_size, 3LL * 1024 * 1024 * 1024);
	cr_assert_eq(c.queue_minfree, 5 * 1024 * 1024);
	conf_free(&c);

	parse_bad("\n\n\n\n\n\n\n\n\n\n\nmessage_size_limit = 10x\n",
		  "t.conf:12: message_size_limit: not a size: 10x");
	parse_bad("queue_max_size = k\n",
		  "t.conf:1: queue_max_size: not a size: k");
	parse_bad("queue_max_size = 1.5m\n",
		  "t.conf:1: queue_max_size: not a size: 1.5m");
	parse_bad("queue_max_size = 9000000000000g\n",
		  "t.conf:1: queue_max_size: too large: 9000000000000g");
}

Test(conf, type_time)
{
	parse_ok("smtpd_error_sleep_time = 250ms\n"
		 "smtpd_timeout = 45\n"
		 "smtpd_data_timeout = 2m\n"
		 "smtpd_idle_timeout = 1h\n"
		 "dkim_signature_ttl = 2w\n");
	cr_assert_eq(c.smtpd_error_sleep_time, 250);
	cr_assert_eq(c.smtpd_timeout, 45000);
	cr_assert_eq(c.smtpd_data_timeout, 120000);
	cr_assert_eq(c.smtpd_idle_timeout, 3600000);
	cr_assert_eq(c.dkim_signature_ttl, 14LL * 86400000);
	conf_free(&c);

	parse_ok("dkim_signature_ttl = 3d\n");
	cr_assert_eq(c.dkim_signature_ttl, 3LL * 86400000);
	conf_free(&c);

	parse_bad("smtpd_timeout = 5y\n",
		  "t.conf:1: smtpd_timeout: not a time (number with unit "
		  "ms, s, m, h, d or w): 5y");
	parse_bad("smtpd_timeout = s\n",
		  "t.conf:1: smtpd_timeout: not a time (number with unit "
		  "ms, s, m, h, d or w): s");
	parse_bad("smtpd_timeout = 99999999999999999w\n",
		  "t.conf:1: smtpd_timeout: too large: 99999999999999999w");
}

Test(conf, type_bool)
{
	parse_ok("dkim_multiple_signatures = yes\n");
	cr_assert_eq(c.dkim_multiple_signatures, true);
	conf_free(&c);
	parse_ok("dkim_multiple_signatures = TRUE\n");
	cr_assert_eq(c.dkim_multiple_signatures, true);
	conf_free(&c);
	parse_ok("dkim_multiple_signatures = yes\n"
		 "dkim_multiple_signatures = false\n");
	cr_assert_eq(c.dkim_multiple_signatures, false);
	conf_free(&c);

	parse_bad("dkim_multiple_signatures = 1\n",
		  "t.conf:1: dkim_multiple_signatures: not yes or no: 1");
}

Test(conf, type_enum)
{
	parse_ok("io_backend = io_uring\n"
		 "log_level = debug\n"
		 "smtpd_forbid_bare_newline = reject\n"
		 "smtpd_tls_security_level = encrypt\n"
		 "dkim_unsigned_action = defer\n");
	cr_assert_eq(c.io_backend, CONF_IO_URING);
	cr_assert_eq(c.log_level, CONF_LOG_DEBUG);
	cr_assert_eq(c.smtpd_forbid_bare_newline, CONF_BARE_LF_REJECT);
	cr_assert_eq(c.smtpd_tls_security_level, CONF_TLS_ENCRYPT);
	cr_assert_eq(c.dkim_unsigned_action, CONF_UNSIGNED_DEFER);
	conf_free(&c);

	parse_ok("io_backend = libuv\nsmtpd_tls_security_level = none\n"
		 "dkim_unsigned_action = reject\nlog_level = error\n");
	cr_assert_eq(c.io_backend, CONF_IO_LIBUV);
	cr_assert_eq(c.smtpd_tls_security_level, CONF_TLS_NONE);
	cr_assert_eq(c.dkim_unsigned_action, CONF_UNSIGNED_REJECT);
	cr_assert_eq(c.log_level, CONF_LOG_ERROR);
	conf_free(&c);

	/* verify is a client level; smtpd has no peer name to verify. */
	parse_bad("smtpd_tls_security_level = verify\n",
		  "t.conf:1: smtpd_tls_security_level: not one of none, "
		  "may, encrypt: verify");
	parse_bad("io_backend = epoll\n",
		  "t.conf:1: io_backend: not one of auto, io_uring, libuv: "
		  "epoll");
}

Test(conf, type_list)
{
	parse_ok("smtpd_listen = 127.0.0.1:25,[::1]:2525 ,, host.example:587"
		 "\n\t0.0.0.0:1\n"
		 "dkim_oversign_headers = From\n");
	cr_assert_eq(c.smtpd_listen.n, 4);
	cr_assert_str_eq(c.smtpd_listen.v[0], "127.0.0.1:25");
	cr_assert_str_eq(c.smtpd_listen.v[1], "[::1]:2525");
	cr_assert_str_eq(c.smtpd_listen.v[2], "host.example:587");
	cr_assert_str_eq(c.smtpd_listen.v[3], "0.0.0.0:1");
	cr_assert_null(c.smtpd_listen.v[4]);
	cr_assert_eq(c.dkim_oversign_headers.n, 1);
	conf_free(&c);

	parse_bad("smtpd_listen = 127.0.0.1\n",
		  "t.conf:1: smtpd_listen: not host:port: 127.0.0.1");
	parse_bad("smtpd_listen = a:1 b:65536\n",
		  "t.conf:1: smtpd_listen: port out of range: b:65536");
	parse_bad("smtpd_listen = [::1]2525\n",
		  "t.conf:1: smtpd_listen: not [address]:port: [::1]2525");
	parse_bad("smtpd_listen = a:smtp\n",
		  "t.conf:1: smtpd_listen: not a port number: a:smtp");
	parse_bad("dkim_sign_headers = From Subject:\n",
		  "t.conf:1: dkim_sign_headers: not a header field name: "
		  "Subject:");
}

Test(conf, canonicalization)
{
	static const char *const ok[][2] = {
	    {"relaxed/relaxed", "relaxed/relaxed"},
	    {"simple/simple", "simple/simple"},
	    {"relaxed/simple", "relaxed/simple"},
	    {"simple/relaxed", "simple/relaxed"},
	    {"relaxed", "relaxed/simple"},
	    {"simple", "simple/simple"},
	    {"Relaxed/Relaxed", "relaxed/relaxed"},
	};
	char text[128];

	for (size_t k = 0; k < sizeof(ok) / sizeof(ok[0]); k++) {
		snprintf(text, sizeof(text), "dkim_canonicalization = %s\n",
			 ok[k][0]);
		parse_ok(text);
		cr_assert_str_eq(c.dkim_canonicalization, ok[k][1]);
		conf_free(&c);
	}

	static const char *const bad[] = {"relaxed/", "/relaxed", "nowsp",
					  "simple/relaxed/simple",
					  "relaxed/nowsp"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		char want[256];

		snprintf(text, sizeof(text), "dkim_canonicalization = %s\n",
			 bad[k]);
		snprintf(want, sizeof(want),
			 "t.conf:1: dkim_canonicalization: not simple or "
			 "relaxed, optionally /simple or /relaxed: %s",
			 bad[k]);
		parse_bad(text, want);
	}
}

Test(conf, type_cidr_list)
{
	parse_bad("mynetworks = 10.0.0.0/8 example.com\n",
		  "t.conf:1: mynetworks: not a network address/prefix: "
		  "example.com");
	parse_bad("mynetworks = 10.0.0.0/33\n",
		  "t.conf:1: mynetworks: not a network address/prefix: "
		  "10.0.0.0/33");
	parse_ok("mynetworks =\n");
	cr_assert_eq(c.mynetworks.n, 0);
}

/* cidr - parse s, asserting success. */
static struct conf_cidr cidr(const char *s)
{
	struct conf_cidr e;

	cr_assert_eq(conf_cidr_parse(&e, s), 0, "%s", s);
	return e;
}

Test(conf, cidr_parse)
{
	struct conf_cidr e;
	uint8_t want[16];

	e = cidr("10.0.0.0/8");
	cr_assert_eq(e.family, AF_INET);
	cr_assert_eq(e.prefix, 8);
	cr_assert_eq(e.addr[0], 10);

	/* Host bits are cleared: the entry means the whole network. */
	e = cidr("127.1.2.3/8");
	cr_assert_eq(e.addr[0], 127);
	cr_assert_eq(e.addr[1] | e.addr[2] | e.addr[3], 0);
	e = cidr("192.168.255.255/17");
	cr_assert_eq(e.addr[2], 0x80);
	cr_assert_eq(e.addr[3], 0);

	e = cidr("192.0.2.7");
	cr_assert_eq(e.prefix, 32);
	cr_assert_eq(e.addr[3], 7);

	e = cidr("[::1]/128");
	inet_pton(AF_INET6, "::1", want);
	cr_assert_eq(e.family, AF_INET6);
	cr_assert_eq(e.prefix, 128);
	cr_assert_arr_eq(e.addr, want, 16);
	e = cidr("::1/128");
	cr_assert_arr_eq(e.addr, want, 16);
	e = cidr("[::1]");
	cr_assert_eq(e.prefix, 128);
	e = cidr("::1");
	cr_assert_eq(e.prefix, 128);

	e = cidr("2001:db8:ffff::/33");
	inet_pton(AF_INET6, "2001:db8:8000::", want);
	cr_assert_arr_eq(e.addr, want, 16);

	e = cidr("0.0.0.0/0");
	cr_assert_eq(e.prefix, 0);

	static const char *const bad[] = {"",
					  "/8",
					  "10.0.0.0/",
					  "10.0.0.0/33",
					  "10.0.0.0/-1",
					  "10.0.0/8",
					  "::1/129",
					  "[::1",
					  "[::1]/",
					  "[::1]x",
					  "[10.0.0.1]/32",
					  "10.0.0.0/8x",
					  "a.b.c.d",
					  "[]/1",
					  "fe80::1%eth0",
					  "10.0.0.0/+8"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		cr_assert_eq(conf_cidr_parse(&e, bad[k]), -EINVAL, "%s",
			     bad[k]);
}

/* in4 - whether a.b.c.d lies in l, asked as AF_INET. */
static bool in4(const struct conf_cidr_list *l, const char *a)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};

	cr_assert_eq(inet_pton(AF_INET, a, &sin.sin_addr), 1);
	return conf_cidr_match(l, (struct sockaddr *)&sin);
}

/* in6 - whether v6 address a lies in l, asked as AF_INET6. */
static bool in6(const struct conf_cidr_list *l, const char *a)
{
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};

	cr_assert_eq(inet_pton(AF_INET6, a, &sin6.sin6_addr), 1);
	return conf_cidr_match(l, (struct sockaddr *)&sin6);
}

Test(conf, cidr_match)
{
	parse_ok("mynetworks = 127.0.0.0/8, 192.168.1.128/25 [::1]/128 "
		 "2001:db8::/32 198.51.100.7\n");

	cr_assert(in4(&c.mynetworks, "127.0.0.1"));
	cr_assert(in4(&c.mynetworks, "127.255.255.255"));
	cr_assert_not(in4(&c.mynetworks, "128.0.0.1"));
	cr_assert(in4(&c.mynetworks, "192.168.1.128"));
	cr_assert(in4(&c.mynetworks, "192.168.1.255"));
	cr_assert_not(in4(&c.mynetworks, "192.168.1.127"));
	cr_assert(in4(&c.mynetworks, "198.51.100.7"));
	cr_assert_not(in4(&c.mynetworks, "198.51.100.8"));

	cr_assert(in6(&c.mynetworks, "::1"));
	cr_assert_not(in6(&c.mynetworks, "::2"));
	cr_assert(in6(&c.mynetworks, "2001:db8:1234::5"));
	cr_assert_not(in6(&c.mynetworks, "2001:db9::1"));

	/* v4 clients on a dual-stack socket match v4 entries. */
	cr_assert(in6(&c.mynetworks, "::ffff:127.0.0.1"));
	cr_assert(in6(&c.mynetworks, "::ffff:192.168.1.200"));
	cr_assert_not(in6(&c.mynetworks, "::ffff:10.0.0.1"));

	/* ...but a v4-compatible or NAT64 address is not v4. */
	cr_assert_not(in6(&c.mynetworks, "64:ff9b::127.0.0.1"));
}

Test(conf, cidr_match_zero_prefix_and_empty)
{
	struct conf_cidr all[2] = {cidr("0.0.0.0/0"), cidr("::/0")};
	struct conf_cidr_list l = {all, 1}, l6 = {all + 1, 1}, none = {0};

	cr_assert(in4(&l, "203.0.113.9"));
	cr_assert(in6(&l, "::ffff:203.0.113.9"));
	cr_assert_not(in6(&l, "2001:db8::1"));
	cr_assert(in6(&l6, "2001:db8::1"));
	cr_assert_not(in4(&l6, "203.0.113.9"));
	cr_assert_not(in4(&none, "127.0.0.1"));

	struct sockaddr sa = {.sa_family = AF_UNIX};
	cr_assert_not(conf_cidr_match(&l, &sa));
}

Test(conf, print_defaults_n_is_empty)
{
	char *out;

	cr_assert_eq(conf_defaults(&c), 0);
	out = printed(&c, true, false);
	cr_assert_str_eq(out, "");
	free(out);
}

Test(conf, print_n)
{
	char *out;

	parse_ok("smtpd_error_sleep_time = 1500ms\n"
		 "hopcount_limit = 50\n"
		 "smtpd_timeout = 2m\n"
		 "queue_directory = /q\n"
		 "mynetworks = 10.1.2.3/8 ::1\n"
		 "dkim_oversign_headers = From,To\n"
		 "smtpd_tls_cert_file = /c$$d\n"
		 "dkim_multiple_signatures = true\n"
		 "log_level = DEBUG\n"
		 "queue_minfree = 1k\n");
	out = printed(&c, true, false);

	/* Table order; hopcount_limit is set but at its default. */
	cr_assert_str_eq(out, "queue_directory = /q\n"
			      "log_level = debug\n"
			      "control_socket = /q/control\n"
			      "mynetworks = 10.0.0.0/8, [::1]/128\n"
			      "smtpd_error_sleep_time = 1500ms\n"
			      "smtpd_timeout = 120s\n"
			      "smtpd_tls_cert_file = /c$$d\n"
			      "queue_minfree = 1024\n"
			      "dkim_oversign_headers = From, To\n"
			      "dkim_multiple_signatures = yes\n"
			      "delivery_log = /q/delivery.log\n");
	free(out);
}

Test(conf, print_verbose_and_all)
{
	char *out, *line;

	parse_ok("smtpd_timeout = 2m\n");
	out = printed(&c, true, true);
	cr_assert_str_eq(out, "# how long to wait for a client's command\n"
			      "smtpd_timeout = 120s\n");
	free(out);

	/* Every parameter once, empty values without a trailing blank. */
	out = printed(&c, false, false);
	cr_assert_not_null(strstr(out, "\nsmtpd_tls_cert_file =\n"));
	cr_assert_not_null(strstr(out, "\nsmtpd_listen = 127.0.0.1:2525\n"));
	cr_assert_not_null(strstr(out, "\nqueue_segment_size = 67108864\n"));
	cr_assert_not_null(strstr(out, "\nsmtpd_error_sleep_time = 0s\n"));
	cr_assert_not_null(strstr(out, "\nmynetworks = 127.0.0.0/8, "
				       "[::1]/128\n"));
	size_t lines = 0;
	for (line = out; (line = strchr(line, '\n')) != NULL; line++)
		lines++;
	cr_assert_eq(lines, 66);
	free(out);
}

Test(conf, print_reads_back)
{
	struct conf again;
	char *out, *out2;

	parse_ok("smtpd_banner = a $$b  ${myhostname}\n"
		 "mynetworks = 10.0.0.0/8 [2001:db8::]/32\n"
		 "smtpd_listen = [::1]:25 1.2.3.4:26\n"
		 "dkim_canonicalization = simple\n"
		 "smtpd_idle_timeout = 1001ms\n");
	out = printed(&c, false, true);
	cr_assert_eq(
	    conf_parse_buf(&again, "p", out, strlen(out), err, sizeof(err)), 0,
	    "%s", err);
	out2 = printed(&again, false, true);
	cr_assert_str_eq(out, out2);
	cr_assert_str_eq(again.smtpd_banner, c.smtpd_banner);
	cr_assert_str_eq(again.dkim_canonicalization, "simple/simple");
	cr_assert_eq(again.smtpd_idle_timeout, 1001);
	conf_free(&again);
	free(out);
	free(out2);
}

Test(conf, set_override)
{
	parse_ok("queue_directory = /q\nhopcount_limit = 7\n");
	cr_assert_eq(conf_set(&c, "hopcount_limit", " 9 ", err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(c.hopcount_limit, 9);

	/* Dependants are expanded again. */
	cr_assert_eq(conf_set(&c, "queue_directory", "/r", err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_str_eq(c.control_socket, "/r/control");
	cr_assert_eq(c.hopcount_limit, 9);
	cr_assert_str_eq(c.path, "t.conf");
}

Test(conf, set_errors_leave_conf_unchanged)
{
	parse_ok("hopcount_limit = 7\n");

	cr_assert_eq(conf_set(&c, "hopcount_limit", "x", err, sizeof(err)),
		     -EINVAL);
	cr_assert_str_eq(err, "-o: hopcount_limit: not a non-negative "
			      "integer: x");
	cr_assert_eq(c.hopcount_limit, 7);

	cr_assert_eq(conf_set(&c, "no_such", "1", err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "-o: no_such: unknown parameter");

	cr_assert_eq(conf_set(&c, "smtpd_banner", "a\nb", err, sizeof(err)),
		     -EINVAL);
	cr_assert_str_eq(err, "-o: smtpd_banner: value contains a newline");

	cr_assert_eq(conf_set(&c, "queue_directory", "$control_socket", err,
			      sizeof(err)),
		     -EINVAL);
	cr_assert_str_eq(err, "-o: queue_directory: parameter expansion loop: "
			      "queue_directory -> control_socket -> "
			      "queue_directory");
	cr_assert_str_eq(c.queue_directory, "/var/spool/waxseal");
	cr_assert_eq(c.hopcount_limit, 7);
}

Test(conf, set_on_defaults)
{
	cr_assert_eq(conf_defaults(&c), 0);
	cr_assert_eq(conf_set(&c, "smtpd_tls_security_level", "encrypt", err,
			      sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(c.smtpd_tls_security_level, CONF_TLS_ENCRYPT);
}

Test(conf, load_missing_file)
{
	cr_assert_eq(
	    conf_load(&c, "/nonexistent/waxseal.conf", err, sizeof(err)),
	    -ENOENT);
	cr_assert_str_eq(err, "/nonexistent/waxseal.conf: cannot open: No "
			      "such file or directory");
	cr_assert_null(c.path);
}

Test(conf, load_file_errors_name_path)
{
	char path[] = "/tmp/test_conf_XXXXXX";
	int fd = mkstemp(path);
	char want[128];

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "\nhopcount_limit = x\n", 20), 20);
	close(fd);
	cr_assert_eq(conf_load(&c, path, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want),
		 "%s:2: hopcount_limit: not a non-negative integer: x", path);
	cr_assert_str_eq(err, want);
	unlink(path);
}

Test(conf, shipped_file_loads)
{
	const char *path = WAXSEAL_TESTDATA "/../../conf/waxseal.conf";
	char *out;

	cr_assert_eq(conf_load(&c, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.path, path);
	cr_assert_eq(c.smtpd_listen.n, 1);
	cr_assert_str_eq(c.smtpd_listen.v[0], "127.0.0.1:2525");
	cr_assert_str_eq(c.queue_directory, "/var/spool/waxseal");

	/* As shipped it only restates defaults. */
	out = printed(&c, true, false);
	cr_assert_str_eq(out, "");
	free(out);
}

Test(conf, load_directory)
{
	cr_assert_eq(conf_load(&c, WAXSEAL_TESTDATA, err, sizeof(err)),
		     -EISDIR);
	cr_assert_str_eq(err, WAXSEAL_TESTDATA ": cannot read: Is a "
					       "directory");
	cr_assert_null(c.path);
}

/* A directory for pattern files, removed by the test's end. */
static char tdir[64];

static void files_setup(void)
{
	snprintf(tdir, sizeof(tdir), "/tmp/test_conf.XXXXXX");
	cr_assert_not_null(mkdtemp(tdir));
}

static void files_teardown(void)
{
	char cmd[128];

	conf_free(&c);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tdir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", tdir);
}

/* put - write text to tdir/name; its path into path. */
static void put(char *path, size_t len, const char *name, const char *text)
{
	FILE *f;

	snprintf(path, len, "%s/%s", tdir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f, "%s", path);
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

/* parse_fmt - parse a printf-made text. */
static int parse_fmt(const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	return parse(text);
}

Test(conf, mynetworks_negation_first_match, .fini = teardown)
{
	char *out;

	/* "!!" negates twice, as Postfix reads it. */
	parse_ok("mynetworks = !!10.9.9.9 !10.1.2.3, 10.1.0.0/16 "
		 "!10.1.9.0/24 ![::1]/128 ::/0\n");
	cr_assert(in4(&c.mynetworks, "10.9.9.9"));
	cr_assert_not(in4(&c.mynetworks, "10.1.2.3"));
	cr_assert(in4(&c.mynetworks, "10.1.2.4"));

	/* First match decides: 10.1.9.9 is in 10.1.0.0/16 first. */
	cr_assert(in4(&c.mynetworks, "10.1.9.9"));
	cr_assert_not(in4(&c.mynetworks, "10.2.0.1"));
	cr_assert_not(in6(&c.mynetworks, "::1"));
	cr_assert(in6(&c.mynetworks, "2001:db8::1"));
	cr_assert_not(in6(&c.mynetworks, "::ffff:10.1.2.3"));

	out = printed(&c, true, false);
	cr_assert_not_null(strstr(out, "mynetworks = 10.9.9.9/32, "
				       "!10.1.2.3/32, "
				       "10.1.0.0/16, !10.1.9.0/24, "
				       "![::1]/128, [::]/0\n"),
			   "%s", out);
	free(out);
}

Test(conf, mynetworks_pattern_file, .init = files_setup, .fini = files_teardown)
{
	char nets[128], more[128], *out;

	put(more, sizeof(more), "more", "192.0.2.0/24\n");
	put(nets, sizeof(nets), "nets",
	    "# the office\n"
	    "10.1.0.0/16, !10.2.3.4 10.2.0.0/16\n"
	    "\n"
	    "   # indented comment\n"
	    "  [2001:db8::]/32\n");
	/* The file's patterns stand where the file is named. */
	cr_assert_eq(parse_fmt("mynetworks = 127.0.0.1 %s\n  %s\n", nets, more),
		     0, "%s", err);
	cr_assert_eq(c.mynetworks.n, 6);
	cr_assert(in4(&c.mynetworks, "127.0.0.1"));
	cr_assert(in4(&c.mynetworks, "10.1.200.1"));
	cr_assert_not(in4(&c.mynetworks, "10.2.3.4"));
	cr_assert(in4(&c.mynetworks, "10.2.3.5"));
	cr_assert(in4(&c.mynetworks, "192.0.2.77"));
	cr_assert_not(in4(&c.mynetworks, "198.51.100.1"));
	cr_assert(in6(&c.mynetworks, "2001:db8:ffff::1"));
	cr_assert_not(in6(&c.mynetworks, "2001:db9::1"));
	conf_free(&c);

	/* "!" before a file negates each of its patterns. */
	cr_assert_eq(parse_fmt("mynetworks = !%s 0.0.0.0/0\n", more), 0, "%s",
		     err);
	cr_assert_not(in4(&c.mynetworks, "192.0.2.1"));
	cr_assert(in4(&c.mynetworks, "198.51.100.1"));
	out = printed(&c, true, false);
	cr_assert_not_null(
	    strstr(out, "mynetworks = !192.0.2.0/24, 0.0.0.0/0\n"), "%s", out);
	free(out);
}

Test(conf, mynetworks_cidr_table, .init = files_setup, .fini = files_teardown)
{
	char t[128];

	put(t, sizeof(t), "clients.cidr",
	    "# Postfix cidr_table(5)\n"
	    "10.3.0.0/16\tOK\n"
	    "192.0.2.5 permit\n"
	    "   continued result\n"
	    "\n"
	    "2001:db8:5::/48 OK\n"
	    "[2001:db8:6::]/48 OK\n");
	cr_assert_eq(parse_fmt("mynetworks = cidr:%s\n", t), 0, "%s", err);
	cr_assert_eq(c.mynetworks.n, 4);
	cr_assert(in4(&c.mynetworks, "10.3.4.5"));
	cr_assert(in4(&c.mynetworks, "192.0.2.5"));
	cr_assert_not(in4(&c.mynetworks, "192.0.2.6"));
	cr_assert(in6(&c.mynetworks, "2001:db8:5::9"));
	cr_assert(in6(&c.mynetworks, "2001:db8:6::9"));
	cr_assert_not(in6(&c.mynetworks, "2001:db8:7::9"));
	conf_free(&c);

	cr_assert_eq(parse_fmt("mynetworks = !cidr:%s 10.0.0.0/8\n", t), 0,
		     "%s", err);
	cr_assert_not(in4(&c.mynetworks, "10.3.4.5"));
	cr_assert(in4(&c.mynetworks, "10.4.4.5"));
}

/* bad_fmt - the error for a printf-made text, which must fail. */
static const char *bad_fmt(const char *fmt, const char *arg)
{
	cr_assert_eq(parse_fmt(fmt, arg), -EINVAL, "accepted: %s", fmt);
	cr_assert_null(c.raw);
	return err;
}

Test(conf, mynetworks_file_errors, .init = files_setup, .fini = files_teardown)
{
	char p[128], q[128], want[512];

	/* The message names the file, the line and the pattern. */
	put(p, sizeof(p), "nets", "10.0.0.0/8\n\nexample.com\n");
	snprintf(want, sizeof(want),
		 "t.conf:1: mynetworks: %s line 3: not a network "
		 "address/prefix: example.com",
		 p);
	cr_assert_str_eq(bad_fmt("mynetworks = %s\n", p), want);

	snprintf(want, sizeof(want),
		 "t.conf:1: mynetworks: %s/none: No such file or directory",
		 tdir);
	snprintf(q, sizeof(q), "%s/none", tdir);
	cr_assert_str_eq(bad_fmt("mynetworks = %s\n", q), want);

	/* No endless read of a device, no endless loop of files. */
	cr_assert_str_eq(bad_fmt("mynetworks = %s\n", "/dev/zero"),
			 "t.conf:1: mynetworks: /dev/zero: not a regular file");
	snprintf(q, sizeof(q), "%s/loop", tdir);
	put(q, sizeof(q), "loop", "");
	put(q, sizeof(q), "loop", q);
	snprintf(want, sizeof(want),
		 "t.conf:1: mynetworks: %s line 1: %s: pattern files nested "
		 "too deep",
		 q, q);
	cr_assert_str_eq(bad_fmt("mynetworks = %s\n", q), want);

	/* A NUL would hide the rest of the file: refused. */
	snprintf(p, sizeof(p), "%s/nul", tdir);
	{
		static const char nul[] = "10.9.0.0/16\n\0x\n!10.1.2.3\n";
		FILE *f = fopen(p, "w");

		cr_assert_not_null(f);
		cr_assert_eq(fwrite(nul, 1, sizeof(nul) - 1, f),
			     sizeof(nul) - 1);
		fclose(f);
	}
	snprintf(want, sizeof(want),
		 "t.conf:1: mynetworks: %s line 2: a NUL byte", p);
	cr_assert_str_eq(bad_fmt("mynetworks = %s 10.0.0.0/8\n", p), want);
	cr_assert_str_eq(bad_fmt("mynetworks = cidr:%s\n", p), want);

	/* "!" alone says so. */
	cr_assert_str_eq(bad_fmt("mynetworks = 10.0.0.0/8 %s\n", "!"),
			 "t.conf:1: mynetworks: '!' without a pattern");

	/* Other table types and cidr_table features are refused. */
	cr_assert_str_eq(bad_fmt("mynetworks = %s\n", "hash:/etc/nets"),
			 "t.conf:1: mynetworks: only cidr: tables are "
			 "supported in mynetworks: hash:/etc/nets");
	put(p, sizeof(p), "t1", "10.0.0.0/8 OK\n192.0.2.0/24\n");
	snprintf(want, sizeof(want),
		 "t.conf:1: mynetworks: %s line 2: no result after "
		 "192.0.2.0/24",
		 p);
	cr_assert_str_eq(bad_fmt("mynetworks = cidr:%s\n", p), want);
	put(p, sizeof(p), "t2", "if 10.0.0.0/8\n10.1.0.0/16 OK\nendif\n");
	snprintf(want, sizeof(want),
		 "t.conf:1: mynetworks: %s line 1: \"if\", \"endif\" and "
		 "\"!pattern\" are not supported in mynetworks: if",
		 p);
	cr_assert_str_eq(bad_fmt("mynetworks = cidr:%s\n", p), want);
	put(p, sizeof(p), "t3", "10.0.0.0/33 OK\n");
	snprintf(want, sizeof(want),
		 "t.conf:1: mynetworks: %s line 1: not a network "
		 "address/prefix: 10.0.0.0/33",
		 p);
	cr_assert_str_eq(bad_fmt("mynetworks = cidr:%s\n", p), want);
}
