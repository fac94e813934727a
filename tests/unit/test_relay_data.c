/*
 * test_relay_data - the DATA/BDAT reader: end of data, dot-unstuffing,
 * bare line ends, limits, header/body split and pipelining.
 *
 * Every case of the table is fed whole, byte by byte, in random pieces
 * (fixed seed) and split in two at every offset; each way must give the
 * expected status, error, stored bytes, hdr_end and leftover input.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/relay_data.h"

/* Input with its length, so that cases may hold NUL bytes. */
#define S(lit) lit, sizeof(lit) - 1

struct data_case {
	const char *name;
	const char *in;
	size_t in_len;
	bool bdat, reject;
	uint64_t max;
	bool more; /* the end is not in the input */
	enum relay_data_err err;
	const char *out; /* NULL: not checked against a fixed value */
	size_t out_len;
	size_t hdr_end;
	const char *rest; /* what *used leaves over (DATA mode) */
};

struct data_result {
	enum relay_data_status st;
	enum relay_data_err err;
	size_t used;
	char *out;
	size_t out_len;
	size_t hdr_end;
};

static const struct data_case cases[] = {
    /* Plain messages. */
    {"empty", S(".\r\n"), .out = S(""), .rest = ""},
    {"empty line only", S("\r\n.\r\n"), .out = S("\r\n"), .hdr_end = 2,
     .rest = ""},
    {"header and body", S("Subject: x\r\n\r\nbody\r\n.\r\n"),
     .out = S("Subject: x\r\n\r\nbody\r\n"), .hdr_end = 14, .rest = ""},
    {"no body", S("Subject: x\r\nTo: y\r\n.\r\n"),
     .out = S("Subject: x\r\nTo: y\r\n"), .hdr_end = 0, .rest = ""},
    {"body only", S("\r\nbody\r\n\r\nmore\r\n.\r\n"),
     .out = S("\r\nbody\r\n\r\nmore\r\n"), .hdr_end = 2, .rest = ""},
    {"unterminated", S("a\r\nb"), .more = true, .out = S("a\r\nb")},

    /* Dot-stuffing (RFC 5321 section 4.5.2). */
    {"stuffed", S("..a\r\n..\r\n...\r\n.\r\n"), .out = S(".a\r\n.\r\n..\r\n"),
     .rest = ""},
    {"leading dot removed", S(".a\r\n.b.\r\n.\r\n"), .out = S("a\r\nb.\r\n"),
     .rest = ""},
    {"dot inside line", S("a.\r\n a\r\n.\r\n"), .out = S("a.\r\n a\r\n"),
     .rest = ""},

    /* Pipelining after the end. */
    {"pipelined", S("a\r\n.\r\nQUIT\r\n"), .out = S("a\r\n"),
     .rest = "QUIT\r\n"},
    {"two messages", S("a\r\n.\r\nb\r\n.\r\n"), .out = S("a\r\n"),
     .rest = "b\r\n.\r\n"},

    /* Smuggling: none of these ends the message. */
    {"LF.LF", S("a\n.\nb\r\n.\r\nX"), .out = S("a\r\n\r\nb\r\n"), .hdr_end = 5,
     .rest = "X"},
    {"LF.CRLF", S("a\n.\r\nb\r\n.\r\nX"), .out = S("a\r\n\r\nb\r\n"),
     .hdr_end = 5, .rest = "X"},
    {"CRLF.LF", S("a\r\n.\nb\r\n.\r\nX"), .out = S("a\r\n\r\nb\r\n"),
     .hdr_end = 5, .rest = "X"},
    {"CR.CR", S("a\r.\rb\r\n.\r\nX"), .out = S("a\r.\rb\r\n"), .rest = "X"},
    {"CR.CRLF", S("a\r.\r\nb\r\n.\r\nX"), .out = S("a\r.\r\nb\r\n"),
     .rest = "X"},
    {"CRLF.CRCRLF", S("a\r\n.\r\r\nb\r\n.\r\nX"), .out = S("a\r\n\r\r\nb\r\n"),
     .rest = "X"},
    {"CRLF.CR text", S("a\r\n.\rb\r\n.\r\nX"), .out = S("a\r\n\rb\r\n"),
     .rest = "X"},
    {"CRLF.CR at end", S("a\r\n.\r"), .more = true, .out = S("a\r\n")},
    {"CRLF.LF at end", S("a\r\n.\nQUIT\r\n"), .more = true,
     .out = S("a\r\n\r\nQUIT\r\n"), .hdr_end = 5},
    {"LF.LF twice", S("a\r\n.\n.\r\n.\r\nX"), .out = S("a\r\n\r\n\r\n"),
     .hdr_end = 5, .rest = "X"},
    {"LF. at start", S("\n.\r\nx\r\n.\r\nX"), .out = S("\r\n\r\nx\r\n"),
     .hdr_end = 2, .rest = "X"},
    {"smuggled MAIL", S("a\r\n\n.\nMAIL FROM:<x>\r\n.\r\nQUIT\r\n"),
     .out = S("a\r\n\r\n\r\nMAIL FROM:<x>\r\n"), .hdr_end = 5,
     .rest = "QUIT\r\n"},
    {"smuggled MAIL LF.CRLF", S("a\r\n\n.\r\nMAIL FROM:<x>\r\n.\r\nQUIT\r\n"),
     .out = S("a\r\n\r\n\r\nMAIL FROM:<x>\r\n"), .hdr_end = 5,
     .rest = "QUIT\r\n"},
    {"smuggled reject", S("a\r\n\n.\nMAIL FROM:<x>\r\n.\r\nQUIT\r\n"),
     .reject = true, .err = RELAY_DATA_E_BARE_LF, .rest = "QUIT\r\n"},
    {"CRLF.CRLF after CR", S("a\r\r\n.\r\nX"), .out = S("a\r\r\n"),
     .rest = "X"},

    /* Bare line ends, both policies. */
    {"bare LF normalize", S("a\nb\r\n.\r\n"), .out = S("a\r\nb\r\n"),
     .rest = ""},
    {"bare LF reject", S("a\nb\r\n.\r\nX"), .reject = true,
     .err = RELAY_DATA_E_BARE_LF, .rest = "X"},
    {"bare CR normalize", S("a\rb\r\n.\r\n"), .out = S("a\rb\r\n"), .rest = ""},
    {"bare CR reject", S("a\rb\r\n.\r\nX"), .reject = true,
     .err = RELAY_DATA_E_BARE_LF, .rest = "X"},
    {"CR CRLF reject", S("a\r\r\n.\r\n"), .reject = true,
     .err = RELAY_DATA_E_BARE_LF, .rest = ""},
    {"CRLF.CR reject", S("a\r\n.\rb\r\n.\r\n"), .reject = true,
     .err = RELAY_DATA_E_BARE_LF, .rest = ""},
    {"clean reject", S("a\r\n\r\nb\r\n.\r\n"), .reject = true,
     .out = S("a\r\n\r\nb\r\n"), .hdr_end = 5, .rest = ""},

    /* NUL and size. */
    {"NUL", S("a\0b\r\n.\r\nX"), .err = RELAY_DATA_E_NUL, .out = S("a"),
     .rest = "X"},
    {"size at limit", S("abc\r\n.\r\n"), .max = 5, .out = S("abc\r\n"),
     .rest = ""},
    {"size one over", S("abc\r\n.\r\nX"), .max = 4, .err = RELAY_DATA_E_SIZE,
     .out = S("abc"), .rest = "X"},
    {"size in line", S("abcdef\r\n.\r\nX"), .max = 3, .err = RELAY_DATA_E_SIZE,
     .out = S("abc"), .rest = "X"},
    {"size bare LF", S("ab\ncd\r\n.\r\n"), .max = 8, .out = S("ab\r\ncd\r\n"),
     .rest = ""},
    {"size bare LF over", S("ab\ncd\r\n.\r\n"), .max = 7,
     .err = RELAY_DATA_E_SIZE, .out = S("ab\r\ncd"), .rest = ""},
    {"size stuffed", S("..\r\n.\r\n"), .max = 3, .out = S(".\r\n"), .rest = ""},
    {"size first error", S("a\0bcdef\r\n.\r\n"), .max = 3,
     .err = RELAY_DATA_E_NUL, .out = S("a"), .rest = ""},

    /* BDAT: no dots, no end marker. */
    {"bdat lines", S("a\r\n.\r\nb"), .bdat = true, .more = true,
     .out = S("a\r\n.\r\nb\r\n")},
    {"bdat empty", S(""), .bdat = true, .more = true, .out = S("")},
    {"bdat complete", S("H: v\r\n\r\nbody\r\n"), .bdat = true, .more = true,
     .out = S("H: v\r\n\r\nbody\r\n"), .hdr_end = 8},
    {"bdat dots kept", S("..x\r\n.\r\n"), .bdat = true, .more = true,
     .out = S("..x\r\n.\r\n")},
    {"bdat bare LF", S("a\nb"), .bdat = true, .more = true,
     .out = S("a\r\nb\r\n")},
    {"bdat bare LF reject", S("a\nb"), .bdat = true, .reject = true,
     .more = true, .err = RELAY_DATA_E_BARE_LF},
    {"bdat final CR", S("a\r"), .bdat = true, .more = true,
     .out = S("a\r\r\n")},
    {"bdat final CR reject", S("a\r"), .bdat = true, .reject = true,
     .more = true, .err = RELAY_DATA_E_BARE_LF},
    {"bdat size at", S("abc"), .bdat = true, .max = 5, .more = true,
     .out = S("abc\r\n")},
    {"bdat size over", S("abc"), .bdat = true, .max = 4, .more = true,
     .err = RELAY_DATA_E_SIZE, .out = S("abc")},
    {"bdat NUL", S("a\0"), .bdat = true, .more = true, .err = RELAY_DATA_E_NUL,
     .out = S("a")},
};

/* data_rand - a small fixed-seed generator, the same on every libc. */
static unsigned data_rand(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return (*seed >> 16) & 0x7fff;
}

/*
 * data_run - feed in[0..len) to a fresh reader in pieces: split 0 whole,
 * 1 byte by byte, 2 random sizes, k >= 3 at offset k - 3 then the rest.
 */
static void data_run(const char *in, size_t len, bool bdat, bool reject,
		     uint64_t max, size_t split, struct data_result *r)
{
	struct relay_data d = {0};
	unsigned seed = 20240611u;
	size_t off = 0, n, used;

	relay_data_begin(&d, max, reject, bdat);
	r->st = RELAY_DATA_MORE;
	r->used = 0;
	do {
		if (split == 0)
			n = len - off;
		else if (split == 1)
			n = len - off ? 1 : 0;
		else if (split == 2)
			n = 1 + data_rand(&seed) % 17;
		else
			n = off < split - 3 ? split - 3 - off : len - off;
		if (n > len - off)
			n = len - off;

		r->st = relay_data_feed(&d, in + off, n, &used);
		cr_assert(used <= n, "used %zu of %zu", used, n);
		if (r->st == RELAY_DATA_MORE)
			cr_assert_eq(used, n);
		off += used;
	} while (r->st == RELAY_DATA_MORE && off < len);

	if (bdat)
		relay_data_finish(&d);
	r->used = off;
	r->err = d.err;
	r->hdr_end = d.hdr_end;
	r->out = relay_data_take(&d, &r->out_len);
	cr_assert_not_null(r->out);
	relay_data_free(&d);
}

/* data_check - one case, fed one way, against its expectations. */
static void data_check(const struct data_case *c, size_t split,
		       const struct data_result *ref)
{
	struct data_result r;
	size_t rest_len;

	data_run(c->in, c->in_len, c->bdat, c->reject, c->max, split, &r);

	cr_assert_eq(r.st, c->more ? RELAY_DATA_MORE : RELAY_DATA_END,
		     "%s/%zu: status %d", c->name, split, r.st);
	cr_assert_eq(r.err, c->err, "%s/%zu: err %d want %d", c->name, split,
		     r.err, c->err);
	if (!c->more) {
		rest_len = strlen(c->rest);
		cr_assert_eq(r.used, c->in_len - rest_len, "%s/%zu: used %zu",
			     c->name, split, r.used);
		cr_assert(memcmp(c->in + r.used, c->rest, rest_len) == 0,
			  "%s/%zu: leftover", c->name, split);
	} else {
		cr_assert_eq(r.used, c->in_len, "%s/%zu", c->name, split);
	}
	if (c->out != NULL) {
		cr_assert_eq(r.out_len, c->out_len, "%s/%zu: len %zu want %zu",
			     c->name, split, r.out_len, c->out_len);
		cr_assert(memcmp(r.out, c->out, c->out_len) == 0,
			  "%s/%zu: stored bytes", c->name, split);
	}
	if (c->err == RELAY_DATA_OK)
		cr_assert_eq(r.hdr_end, c->hdr_end, "%s/%zu: hdr_end %zu",
			     c->name, split, r.hdr_end);

	/* Whatever is not fixed by the case must still not depend on the
	 * split. */
	if (ref != NULL) {
		cr_assert_eq(r.out_len, ref->out_len, "%s/%zu", c->name, split);
		cr_assert(memcmp(r.out, ref->out, r.out_len) == 0, "%s/%zu",
			  c->name, split);
		cr_assert_eq(r.hdr_end, ref->hdr_end, "%s/%zu", c->name, split);
	}
	free(r.out);
}

Test(relay_data, table)
{
	struct data_result ref;
	size_t i, k;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct data_case *c = &cases[i];

		data_run(c->in, c->in_len, c->bdat, c->reject, c->max, 0, &ref);
		data_check(c, 0, NULL);
		data_check(c, 1, &ref);
		data_check(c, 2, &ref);
		for (k = 0; k <= c->in_len; k++)
			data_check(c, k + 3, &ref);
		free(ref.out);
	}
}

/* data_line - a DATA message of one line: prefix, n 'x', CRLF, end. */
static char *data_line(const char *prefix, size_t n, size_t *len)
{
	size_t p = strlen(prefix);
	char *s = malloc(p + n + 6);

	cr_assert_not_null(s);
	memcpy(s, prefix, p);
	memset(s + p, 'x', n);
	memcpy(s + p + n, "\r\n.\r\n", 5);
	*len = p + n + 5;
	return s;
}

/* data_line_check - feed a one-line message every way; check err. */
static void data_line_check(const char *prefix, size_t n,
			    enum relay_data_err want, size_t stored)
{
	struct data_result r;
	size_t len, split;
	char *in = data_line(prefix, n, &len);

	for (split = 0; split < 3; split++) {
		data_run(in, len, false, false, 0, split, &r);
		cr_assert_eq(r.st, RELAY_DATA_END);
		cr_assert_eq(r.used, len);
		cr_assert_eq(r.err, want, "%s+%zu: err %d", prefix, n, r.err);
		cr_assert_eq(r.out_len, stored, "%s+%zu: len %zu", prefix, n,
			     r.out_len);
		free(r.out);
	}
	free(in);
}

Test(relay_data, line_length)
{
	/* 1000 octets with the CRLF is the longest line (RFC 5321 section
	 * 4.5.3.1.6); a stuffed dot does not count, a stored one does. */
	data_line_check("", 998, RELAY_DATA_OK, 1000);
	data_line_check("", 999, RELAY_DATA_E_LINE, 998);
	data_line_check("", 5000, RELAY_DATA_E_LINE, 998);
	data_line_check(".", 998, RELAY_DATA_OK, 1000);
	data_line_check("..", 997, RELAY_DATA_OK, 1000);
	data_line_check("..", 998, RELAY_DATA_E_LINE, 998);
	data_line_check("a\r", 996, RELAY_DATA_OK, 1000);
	data_line_check("a\r", 997, RELAY_DATA_E_LINE, 998);
	data_line_check("y\r\n", 998, RELAY_DATA_OK, 1003);
	data_line_check("y\n", 998, RELAY_DATA_OK, 1003);
}

Test(relay_data, many_lines)
{
	struct data_result whole, r;
	size_t i, len = 0, split;
	char *in = malloc(200000);

	/* A long message of mixed lines, stuffed dots and bare ends must
	 * come out the same however it is cut. */
	cr_assert_not_null(in);
	for (i = 0; len < 190000; i++) {
		len += (size_t)sprintf(in + len, "%s%zu line %s",
				       i % 7 == 0 ? ".." : "", i,
				       i % 11 == 0 ? "\n" : "\r\n");
	}
	memcpy(in + len, ".\r\nRSET\r\n", 9);
	len += 9;

	data_run(in, len, false, false, 0, 0, &whole);
	cr_assert_eq(whole.st, RELAY_DATA_END);
	cr_assert_eq(whole.err, RELAY_DATA_OK);
	cr_assert_eq(whole.used, len - 6);
	cr_assert_eq(whole.out_len, len - 9 - (i + 6) / 7 + (i + 10) / 11);
	for (split = 1; split < 3; split++) {
		data_run(in, len, false, false, 0, split, &r);
		cr_assert_eq(r.used, whole.used);
		cr_assert_eq(r.out_len, whole.out_len);
		cr_assert(memcmp(r.out, whole.out, r.out_len) == 0);
		free(r.out);
	}
	free(whole.out);
	free(in);
}

Test(relay_data, after_end)
{
	struct relay_data d = {0};
	size_t used = 99, len;
	char *msg;

	/* Once the end is read, nothing more is taken. */
	relay_data_begin(&d, 0, false, false);
	cr_assert_eq(relay_data_feed(&d, S(".\r\nabc"), &used), RELAY_DATA_END);
	cr_assert_eq(used, 3);
	cr_assert_eq(relay_data_feed(&d, S("x\r\n.\r\n"), &used),
		     RELAY_DATA_END);
	cr_assert_eq(used, 0);

	/* The next message reuses the reader. */
	relay_data_begin(&d, 0, false, false);
	cr_assert_eq(relay_data_feed(&d, S("b\r\n"), &used), RELAY_DATA_MORE);
	cr_assert_eq(used, 3);
	cr_assert_eq(relay_data_feed(&d, S(".\r"), &used), RELAY_DATA_MORE);
	cr_assert_eq(relay_data_feed(&d, S("\nQUIT"), &used), RELAY_DATA_END);
	cr_assert_eq(used, 1);
	msg = relay_data_take(&d, &len);
	cr_assert_eq(len, 3);
	cr_assert(memcmp(msg, "b\r\n", 3) == 0);
	cr_assert_null(d.buf);
	free(msg);

	/* Feeding nothing changes nothing. */
	relay_data_begin(&d, 0, false, false);
	cr_assert_eq(relay_data_feed(&d, "", 0, &used), RELAY_DATA_MORE);
	cr_assert_eq(used, 0);
	relay_data_free(&d);
}

Test(relay_data, bdat_chunks)
{
	struct relay_data d = {0};
	size_t used, len;
	char *msg;

	/* A CRLF split between two chunks is one line end. */
	relay_data_begin(&d, 0, true, true);
	relay_data_feed(&d, S("a\r"), &used);
	relay_data_feed(&d, S("\nb"), &used);
	relay_data_finish(&d);
	cr_assert_eq(d.err, RELAY_DATA_OK);
	msg = relay_data_take(&d, &len);
	cr_assert_eq(len, 6);
	cr_assert(memcmp(msg, "a\r\nb\r\n", 6) == 0);
	free(msg);
	relay_data_free(&d);
}

Test(relay_data, replies)
{
	cr_assert_null(relay_data_reply(RELAY_DATA_OK));
	cr_assert_str_eq(relay_data_reply(RELAY_DATA_E_SIZE),
			 "552 5.3.4 Message size exceeds fixed limit");
	cr_assert_str_eq(relay_data_reply(RELAY_DATA_E_LINE),
			 "500 5.5.2 Line too long");
	cr_assert_str_eq(relay_data_reply(RELAY_DATA_E_NUL),
			 "500 5.5.2 Message contains NUL characters");
	cr_assert_str_eq(relay_data_reply(RELAY_DATA_E_BARE_LF),
			 "550 5.5.2 Message contains bare <CR> or <LF>");
	cr_assert_str_eq(relay_data_reply(RELAY_DATA_E_NOMEM),
			 "451 4.3.0 Out of memory");
}
