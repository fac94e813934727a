/*
 * test_relay_dsn - delivery status notifications (RFC 3464, RFC 6522)
 * and the enhanced status code of a reply (RFC 3463).
 *
 * The notifications are read back by Python's email package
 * (tests/data/dsn_check.py run by Debian's /usr/bin/python3), which
 * prints what it found; the tests assert on those values. Without
 * /usr/bin/python3 those tests are skipped, and say so.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relay/relay_dsn.h"

#define PYTHON "/usr/bin/python3"
#define CHECK WAXSEAL_TESTDATA "/dsn_check.py"

/* The original of most tests: folded headers and a body. */
static const char orig_msg[] = "From: Newsletter <news@example.com>\r\n"
			       "To: alice@example.org\r\n"
			       "Subject: Monthly\r\n"
			       " news letter\r\n"
			       " for December\r\n"
			       "Message-ID: <abc@example.com>\r\n"
			       "\r\n"
			       "Hello, this is the body.\r\n"
			       "BODY-MARKER\r\n";

/* run_check - dsn_check.py's output for the message m (malloc'd). */
static char *run_check(const char *m, size_t len)
{
	char path[] = "/tmp/test_relay_dsn.XXXXXX", cmd[512];
	char *outbuf = NULL;
	size_t n = 0, cap = 0;
	FILE *f, *p;
	int fd;

	if (access(PYTHON, X_OK) != 0)
		cr_skip_test(PYTHON " is missing: the DSN is not parsed");

	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	f = fdopen(fd, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(m, 1, len, f), len);
	fclose(f);

	snprintf(cmd, sizeof(cmd), PYTHON " %s %s", CHECK, path);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			outbuf = realloc(outbuf, cap);
			cr_assert_not_null(outbuf);
		}
		size_t got = fread(outbuf + n, 1, 4096, p);
		if (got == 0)
			break;
		n += got;
	}
	outbuf[n] = '\0';
	cr_assert_eq(pclose(p), 0, "dsn_check.py failed:\n%s", outbuf);
	unlink(path);
	return outbuf;
}

/*
 * get - the value of key in dsn_check.py's output, in a static buffer;
 * NULL when the key is missing.
 */
static const char *get(const char *out, const char *key)
{
	static char val[16384];
	size_t klen = strlen(key);
	const char *p = out, *e;

	while (*p != '\0') {
		e = strchr(p, '\n');
		if (e == NULL)
			e = p + strlen(p);
		if ((size_t)(e - p) > klen && strncmp(p, key, klen) == 0 &&
		    p[klen] == '=') {
			snprintf(val, sizeof(val), "%.*s",
				 (int)(e - p - klen - 1), p + klen + 1);
			return val;
		}
		p = *e ? e + 1 : e;
	}
	return NULL;
}

/* expect - assert that key has the value want. */
static void expect(const char *out, const char *key, const char *want)
{
	const char *v = get(out, key);

	cr_assert_not_null(v, "no %s in:\n%s", key, out);
	cr_assert_str_eq(v, want, "%s: got \"%s\", want \"%s\"", key, v, want);
}

/* max_line - the longest line of m, CRLF excluded; fails on bare LF. */
static size_t max_line(const char *m, size_t len)
{
	size_t i, start = 0, max = 0;

	for (i = 0; i < len; i++) {
		if (m[i] != '\n')
			continue;
		cr_assert(i > 0 && m[i - 1] == '\r', "bare LF at %zu", i);
		if (i - 1 - start > max)
			max = i - 1 - start;
		start = i + 1;
	}
	cr_assert_eq(start, len, "the message does not end in CRLF");
	return max;
}

/* long_diag - "550 5.1.1 <rcpt>: ..." followed by many words. */
static char *long_diag(void)
{
	char *d = malloc(8192);
	size_t n;
	int i;

	cr_assert_not_null(d);
	n = (size_t)sprintf(d, "550 5.1.1 <alice@example.org>: Recipient "
			       "address rejected: user unknown in table;");
	for (i = 0; i < 150; i++)
		n += (size_t)sprintf(d + n, " word%d", i);
	return d;
}

/* two_in - a message with one failed and one delayed recipient. */
static void two_in(struct relay_dsn_in *in, struct relay_dsn_rcpt r[2],
		   const char *diag)
{
	memset(r, 0, 2 * sizeof(*r));
	r[0].rcpt = "alice@example.org";
	r[0].action = "failed";
	r[0].status = "5.1.1";
	r[0].remote_mta = "mx1.example.org";
	r[0].diag = diag;
	r[1].rcpt = "bob@example.net";
	r[1].action = "delayed";
	r[1].status = "4.7.1";
	r[1].diag = "451 4.7.1 greylisted, try again later";

	memset(in, 0, sizeof(*in));
	in->myhostname = "relay.waxseal.test";
	in->queue_id = "4F2A9C01";
	in->sender = "news@example.com";
	in->arrival_ms = 1796277153123LL; /* 2026-12-03T05:52:33.123Z */
	in->now_ms = 1796363553000LL;	  /* a day later */
	in->rcpt = r;
	in->nrcpt = 2;
	in->orig = orig_msg;
	in->origlen = sizeof(orig_msg) - 1;
}

Test(relay_dsn, two_recipients_read_by_python)
{
	static const char from_line[] =
	    "From: MAILER-DAEMON@relay.waxseal.test "
	    "(Mail Delivery System)\r\n";
	struct relay_dsn_rcpt r[2];
	struct relay_dsn_in in;
	char *diag = long_diag(), *m, *out, want[9000];
	size_t len;

	two_in(&in, r, diag);
	cr_assert_eq(relay_dsn_build(&in, &m, &len), 0);
	cr_assert_eq(strlen(m), len);
	cr_assert_leq(max_line(m, len), 998);
	out = run_check(m, len);

	/* The report's structure (RFC 6522 section 3). */
	expect(out, "content-type", "multipart/report");
	expect(out, "report-type", "delivery-status");
	expect(out, "parts", "3");
	expect(out, "part1-type", "text/plain");
	expect(out, "part2-type", "message/delivery-status");
	expect(out, "part3-type", "text/rfc822-headers");
	expect(out, "defects", "0");
	expect(out, "bare-lf", "0");
	expect(out, "bare-cr", "0");
	expect(out, "text-has-rcpt", "1");

	/* The message's own headers. */
	expect(out, "to", "news@example.com");
	expect(out, "subject", "Undelivered Mail Returned to Sender");
	expect(out, "auto-submitted", "auto-replied");
	expect(out, "mime-version", "1.0");
	expect(out, "from", "MAILER-DAEMON@relay.waxseal.test");
	cr_assert_eq(strncmp(m, from_line, strlen(from_line)), 0);
	cr_assert_not_null(strstr(get(out, "message-id"), "<4F2A9C01.dsn."));
	cr_assert_not_null(
	    strstr(get(out, "message-id"), "@relay.waxseal.test>"));

	/* Per-message and per-recipient fields (RFC 3464 section 2). */
	expect(out, "reporting-mta", "dns; relay.waxseal.test");
	expect(out, "arrival-date", "Thu, 03 Dec 2026 05:52:33 +0000");
	expect(out, "rcpts", "2");
	expect(out, "rcpt1-final-recipient", "rfc822; alice@example.org");
	expect(out, "rcpt1-action", "failed");
	expect(out, "rcpt1-status", "5.1.1");
	expect(out, "rcpt1-remote-mta", "dns; mx1.example.org");
	expect(out, "rcpt1-last-attempt-date",
	       "Fri, 04 Dec 2026 05:52:33 +0000");
	snprintf(want, sizeof(want), "smtp; %s", diag);
	expect(out, "rcpt1-diagnostic-code", want);
	expect(out, "rcpt2-final-recipient", "rfc822; bob@example.net");
	expect(out, "rcpt2-action", "delayed");
	expect(out, "rcpt2-status", "4.7.1");
	expect(out, "rcpt2-remote-mta", "None");
	expect(out, "rcpt2-diagnostic-code",
	       "smtp; 451 4.7.1 greylisted, try again later");
	expect(out, "rcpt2-will-retry-until", "None");

	/* The original's header section, and not its body. */
	expect(out, "orig-subject", "Monthly news letter for December");
	expect(out, "orig-from", "Newsletter <news@example.com>");
	cr_assert_null(strstr(get(out, "orig-headers"), "BODY-MARKER"));
	cr_assert_null(strstr(m, "BODY-MARKER"));

	free(out);
	free(m);
	free(diag);
}

Test(relay_dsn, internationalized_read_by_python)
{
	/* An SMTPUTF8 original (RFC 6531) with a UTF-8 header field. */
	static const char orig8[] = "From: J\xc3\xb6rg <news@example.com>\r\n"
				    "Subject: Gr\xc3\xbc\xc3\x9f"
				    "e\r\n"
				    "\r\n"
				    "body\r\n";
	struct relay_dsn_rcpt r[2];
	struct relay_dsn_in in;
	char *m, *out;
	size_t len;

	two_in(&in, r, "550 5.1.1 unknown");
	r[0].rcpt = "j\xc3\xb6rg+news=x@b\xc3\xbc"
		    "cher.example";
	in.sender = "abs\xc3\xa4nder@example.com";
	in.orig = orig8;
	in.origlen = sizeof(orig8) - 1;
	in.smtputf8 = true;
	cr_assert_eq(relay_dsn_build(&in, &m, &len), 0);
	cr_assert_leq(max_line(m, len), 998);
	out = run_check(m, len);

	/* RFC 6533: the global types where UTF-8 is inside. */
	expect(out, "part2-type", "message/global-delivery-status");
	expect(out, "part3-type", "message/global-headers");
	expect(out, "defects", "0");
	expect(out, "to", "abs\xc3\xa4nder@example.com");
	expect(out, "rcpts", "2");

	/* utf-8-addr-unitext, '+' and '=' escaped; read back whole. */
	expect(out, "rcpt1-final-recipient",
	       "utf-8; j\xc3\xb6rg\\x{2B}news\\x{3D}x@b\xc3\xbc"
	       "cher.example");
	expect(out, "rcpt1-final-recipient-decoded",
	       "j\xc3\xb6rg+news=x@b\xc3\xbc"
	       "cher.example");
	expect(out, "rcpt2-final-recipient", "rfc822; bob@example.net");
	expect(out, "rcpt1-status", "5.1.1");
	expect(out, "orig-subject",
	       "Gr\xc3\xbc\xc3\x9f"
	       "e");
	free(out);
	free(m);

	/* UTF-8 only in the original's header: the report stays ASCII. */
	two_in(&in, r, "550 5.1.1 unknown");
	in.orig = orig8;
	in.origlen = sizeof(orig8) - 1;
	in.smtputf8 = true;
	cr_assert_eq(relay_dsn_build(&in, &m, &len), 0);
	out = run_check(m, len);
	expect(out, "part2-type", "message/delivery-status");
	expect(out, "part3-type", "message/global-headers");
	expect(out, "rcpt1-final-recipient", "rfc822; alice@example.org");
	expect(out, "defects", "0");
	free(out);
	free(m);

	/* Without SMTPUTF8, 8-bit header octets are not known to be UTF-8. */
	in.smtputf8 = false;
	cr_assert_eq(relay_dsn_build(&in, &m, &len), 0);
	out = run_check(m, len);
	expect(out, "part3-type", "text/rfc822-headers");
	free(out);
	free(m);
}

Test(relay_dsn, long_utf8_header_broken_between_characters)
{
	struct relay_dsn_rcpt r[2];
	struct relay_dsn_in in;
	char *orig, *m, *p;
	size_t len, n = 0;

	/*
	 * One header line of 1500 two-octet characters after a prefix of
	 * odd length, so that column 990 falls inside a character.
	 */
	orig = malloc(4000);
	cr_assert_not_null(orig);
	n += (size_t)sprintf(orig, "Subject: xy");
	for (int k = 0; k < 1500; k++) {
		orig[n++] = '\xc3';
		orig[n++] = '\xa9';
	}
	n += (size_t)sprintf(orig + n, "\r\n\r\nbody\r\n");

	two_in(&in, r, "550 5.1.1 unknown");
	in.orig = orig;
	in.origlen = n;
	in.smtputf8 = true;
	cr_assert_eq(relay_dsn_build(&in, &m, &len), 0);
	cr_assert_leq(max_line(m, len), 998);

	/* Every continuation starts on a character, never inside one. */
	for (p = strstr(m, "Subject: xy"); p != NULL && *p != '\0'; p++) {
		if (p[0] == '\n' && p[1] == ' ')
			cr_assert_neq((unsigned char)p[2] & 0xc0, 0x80,
				      "a break inside a character at %zu",
				      (size_t)(p - m));
		if (p[0] == '\r' && p[1] == '\n' && p[2] == '\r')
			break;
	}
	free(m);
	free(orig);
}

Test(relay_dsn, every_recipient_delayed)
{
	struct relay_dsn_rcpt r[2];
	struct relay_dsn_in in;
	char *m, *out;
	size_t len;

	two_in(&in, r, "own reason: connection timed out");
	r[0].action = "delayed";
	r[0].status = NULL;
	r[0].retry_until_ms = 1796622753000LL; /* 2026-12-07 05:52:33 */
	r[1].diag = NULL;
	cr_assert_eq(relay_dsn_build(&in, &m, &len), 0);
	out = run_check(m, len);

	expect(out, "subject", "Delayed Mail (still being retried)");
	expect(out, "defects", "0");
	expect(out, "rcpt1-action", "delayed");
	expect(out, "rcpt1-status", "4.0.0");
	expect(out, "rcpt1-diagnostic-code",
	       "X-Waxseal; own reason: connection timed out");
	expect(out, "rcpt1-will-retry-until",
	       "Mon, 07 Dec 2026 05:52:33 +0000");
	expect(out, "rcpt2-diagnostic-code", "None");
	expect(out, "rcpt2-will-retry-until", "None");

	free(out);
	free(m);
}

Test(relay_dsn, refused_input)
{
	struct relay_dsn_rcpt r[2];
	struct relay_dsn_in in;
	char *m = (char *)1;
	size_t len = 1;

	/* A bounce is never sent to the null sender. */
	two_in(&in, r, "550 no");
	in.sender = "";
	cr_assert_eq(relay_dsn_build(&in, &m, &len), -EINVAL);
	cr_assert_null(m);
	cr_assert_eq(len, 0);

	two_in(&in, r, "550 no");
	in.nrcpt = 0;
	cr_assert_eq(relay_dsn_build(&in, &m, &len), -EINVAL);

	two_in(&in, r, "550 no");
	r[1].action = "bounced";
	cr_assert_eq(relay_dsn_build(&in, &m, &len), -EINVAL);

	two_in(&in, r, "550 no");
	in.sender = NULL;
	cr_assert_eq(relay_dsn_build(&in, &m, &len), -EINVAL);

	/* The same input with a sender is accepted. */
	two_in(&in, r, "550 no");
	cr_assert_eq(relay_dsn_build(&in, &m, &len), 0);
	free(m);
}

Test(relay_dsn, no_line_over_998)
{
	struct relay_dsn_rcpt r[2];
	struct relay_dsn_in in;
	char *diag, *origbig, *m, *out, *got, *want;
	size_t len, i, n;
	const char *v;

	/* A diagnostic of 3000 octets without a space to fold at. */
	diag = malloc(3100);
	cr_assert_not_null(diag);
	n = (size_t)sprintf(diag, "550 ");
	for (i = 0; i < 3000; i++)
		diag[n++] = (char)('a' + i % 26);
	diag[n] = '\0';

	/* An original with a 2500-octet header line, and control bytes. */
	origbig = malloc(4000);
	cr_assert_not_null(origbig);
	n = (size_t)sprintf(origbig, "Subject: big\r\nX-Long: ");
	for (i = 0; i < 2500; i++)
		origbig[n++] = (char)('A' + i % 26);
	n += (size_t)sprintf(origbig + n, "\r\n\r\nbody\r\n");

	two_in(&in, r, diag);
	r[1].diag = "451 4.3.0 tab\there\rand\nline ends";
	in.orig = origbig;
	in.origlen = n;
	cr_assert_eq(relay_dsn_build(&in, &m, &len), 0);
	cr_assert_leq(max_line(m, len), 998);
	cr_assert_gt(len, 5500, "the long content was dropped");
	out = run_check(m, len);
	expect(out, "parts", "3");
	expect(out, "defects", "0");
	expect(out, "orig-subject", "big");
	expect(out, "rcpt2-diagnostic-code",
	       "smtp; 451 4.3.0 tab here?and?line ends");

	/* Broken where it stood: the text survives but for spaces. */
	v = get(out, "rcpt1-diagnostic-code");
	cr_assert_not_null(v);
	got = strdup(v);
	want = malloc(strlen(diag) + 8);
	cr_assert(got != NULL && want != NULL);
	sprintf(want, "smtp;%s", diag);
	for (i = n = 0; got[i] != '\0'; i++)
		if (got[i] != ' ')
			got[n++] = got[i];
	got[n] = '\0';
	for (i = n = 0; want[i] != '\0'; i++)
		if (want[i] != ' ')
			want[n++] = want[i];
	want[n] = '\0';
	cr_assert_str_eq(got, want);

	free(want);
	free(got);
	free(out);
	free(m);
	free(origbig);
	free(diag);
}

Test(relay_dsn, boundary_avoids_content)
{
	char b1[RELAY_DSN_BOUNDARY_MAX], b2[RELAY_DSN_BOUNDARY_MAX];
	char b3[RELAY_DSN_BOUNDARY_MAX], content[256];

	/* Deterministic per seed; different for another seed. */
	relay_dsn_boundary("", 0, 42, b1);
	relay_dsn_boundary("", 0, 42, b2);
	cr_assert_str_eq(b1, b2);
	relay_dsn_boundary("", 0, 43, b3);
	cr_assert_str_neq(b1, b3);
	cr_assert_leq(strlen(b1), 70); /* RFC 2046 section 5.1.1 */

	/* Content holding the boundary the seed gives makes it move on. */
	snprintf(content, sizeof(content), "text\r\n--%s\r\nmore\r\n--%s--\r\n",
		 b1, b3);
	relay_dsn_boundary(content, strlen(content), 42, b2);
	cr_assert_str_neq(b2, b1);
	cr_assert_str_neq(b2, b3);
	cr_assert_null(strstr(content, b2));
}

Test(relay_dsn, boundary_like_text_in_original)
{
	struct relay_dsn_rcpt r[2];
	struct relay_dsn_in in;
	char *m1, *m2, *out, orig[1024], boundary[128];
	size_t len1, len2;

	/* The boundary one notification used ... */
	two_in(&in, r, "550 5.1.1 no such user");
	cr_assert_eq(relay_dsn_build(&in, &m1, &len1), 0);
	out = run_check(m1, len1);
	snprintf(boundary, sizeof(boundary), "%s", get(out, "boundary"));
	cr_assert_eq(strncmp(boundary, "=_waxseal_", 10), 0);
	free(out);

	/* ... and delimiters like it, in the next one's original. */
	snprintf(orig, sizeof(orig),
		 "Subject: trap\r\n"
		 "X-Trap: --%s\r\n"
		 "--%s\r\n"
		 "--%s--\r\n"
		 "--=_waxseal_0000000000000000\r\n"
		 "\r\n"
		 "--%s--\r\n",
		 boundary, boundary, boundary, boundary);
	in.orig = orig;
	in.origlen = strlen(orig);
	cr_assert_eq(relay_dsn_build(&in, &m2, &len2), 0);
	out = run_check(m2, len2);
	expect(out, "parts", "3");
	expect(out, "part3-type", "text/rfc822-headers");
	expect(out, "defects", "0");
	expect(out, "orig-subject", "trap");
	cr_assert_str_neq(get(out, "boundary"), boundary);
	cr_assert_not_null(strstr(get(out, "orig-headers"), "X-Trap: --"));
	cr_assert_not_null(
	    strstr(get(out, "orig-headers"), "=_waxseal_0000000000000000"));
	expect(out, "rcpts", "2");

	free(out);
	free(m2);
	free(m1);
}

Test(relay_dsn, message_id_unique)
{
	struct relay_dsn_rcpt r[2];
	struct relay_dsn_in in;
	char *m1, *m2, id1[256], id2[256];
	const char *p;
	size_t len1, len2;

	two_in(&in, r, NULL);
	cr_assert_eq(relay_dsn_build(&in, &m1, &len1), 0);
	cr_assert_eq(relay_dsn_build(&in, &m2, &len2), 0);

	p = strstr(m1, "\r\nMessage-ID: <");
	cr_assert_not_null(p);
	cr_assert_eq(sscanf(p, "\r\nMessage-ID: %255s", id1), 1);
	p = strstr(m2, "\r\nMessage-ID: <");
	cr_assert_not_null(p);
	cr_assert_eq(sscanf(p, "\r\nMessage-ID: %255s", id2), 1);
	cr_assert_str_neq(id1, id2);

	free(m2);
	free(m1);
}

struct status_case {
	const char *reply, *want;
};

Test(relay_dsn, status_of_reply)
{
	static const struct status_case cases[] = {
	    {"550 5.1.1 no such user", "5.1.1"},
	    {"550-5.1.1 first line of several", "5.1.1"},
	    {"452 4.2.2 mailbox full", "4.2.2"},
	    {"250 2.0.0 Ok: queued as ABC", "2.0.0"},
	    {"554 5.7.139 long detail", "5.7.139"},
	    {"550 5.1.1", "5.1.1"},
	    {"550 no code here", "5.0.0"},
	    {"421 service not available", "4.0.0"},
	    {"550 4.1.1 class disagrees", "5.0.0"},
	    {"550 5.1 incomplete", "5.0.0"},
	    {"550 5.1.1234 detail too long", "5.0.0"},
	    {"550 5.1.1x glued", "5.0.0"},
	    {"550", "5.0.0"},
	    {"250", "2.0.0"},
	    {"hello", "4.0.0"},
	    {"5", "4.0.0"},
	    {"", "4.0.0"},
	    {"650 6.0.0 no such class", "4.0.0"},
	    {NULL, "4.0.0"},
	};
	char buf[16];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(buf, 'x', sizeof(buf));
		relay_dsn_status(cases[i].reply, buf);
		cr_assert_str_eq(buf, cases[i].want, "reply \"%s\"",
				 cases[i].reply ? cases[i].reply : "(null)");
	}
}
