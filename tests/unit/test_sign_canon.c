/*
 * test_sign_canon - RFC 6376 3.4 canonicalisation: header fields and the
 * streamed body, checked against the canonical bytes worked out by hand
 * from the RFC's rules, and chunking invariance.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include <openssl/sha.h>

#include "sign/sign_canon.h"

/* body_md - hash of body fed in chunks of step bytes (0: at once). */
static void body_md(int alg, const char *b, size_t len, size_t step,
		    uint8_t md[32])
{
	struct sign_canon_body c;
	size_t i;

	sign_canon_body_init(&c, alg);
	if (step == 0)
		sign_canon_body_update(&c, b, len);
	for (i = 0; step && i < len; i += step)
		sign_canon_body_update(&c, b + i,
				       len - i < step ? len - i : step);
	sign_canon_body_final(&c, md);
}

/* expect - the body canonicalises to want under alg, in any chunking. */
static void expect(int alg, const char *body, size_t blen, const char *want)
{
	uint8_t md[32], ref[32];
	size_t step;

	SHA256((const uint8_t *)want, strlen(want), ref);
	for (step = 0; step <= 7; step++) {
		body_md(alg, body, blen, step, md);
		cr_assert_eq(memcmp(md, ref, 32), 0,
			     "%s body %.*s chunk %zu: want %s",
			     sign_canon_name(alg), (int)blen, body, step, want);
	}
}

#define S SIGN_CANON_SIMPLE
#define R SIGN_CANON_RELAXED
#define EX(a, b, w) expect(a, b, sizeof(b) - 1, w)

Test(sign_canon, empty_body)
{
	EX(S, "", "\r\n");
	EX(R, "", "");
	EX(S, "\r\n\r\n", "\r\n");
	EX(R, "\r\n\r\n", "");
}

Test(sign_canon, trailing_empty_lines)
{
	EX(S, "a\r\n\r\n\r\n", "a\r\n");
	EX(R, "a\r\n\r\n\r\n", "a\r\n");
	EX(S, "a\r\n\r\nb\r\n\r\n", "a\r\n\r\nb\r\n");
}

Test(sign_canon, missing_final_crlf)
{
	EX(S, "abc", "abc\r\n");
	EX(R, "abc", "abc\r\n");
	EX(R, "abc  ", "abc\r\n");
}

Test(sign_canon, trailing_whitespace)
{
	EX(S, "a \t\r\n", "a \t\r\n");
	EX(R, "a \t\r\n", "a\r\n");
	EX(R, " \t \r\n\r\nx\r\n", "\r\n\r\nx\r\n");
	EX(R, "a  b\t\tc \r\n", "a b c\r\n");
	EX(S, "  \r\n", "  \r\n");
	EX(R, "  \r\n  \r\n", "");
}

Test(sign_canon, rfc6376_example)
{
	/* RFC 6376 3.4.5 */
	EX(R, " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n");
	EX(S, " C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n");
}

Test(sign_canon, eight_bit_and_dots)
{
	EX(S, "caf\xc3\xa9\r\n..dot\r\n", "caf\xc3\xa9\r\n..dot\r\n");
	EX(R, "\xff \xfe\r\n.\r\n", "\xff \xfe\r\n.\r\n");
}

Test(sign_canon, bare_cr_and_lf_are_content)
{
	EX(S, "a\rb\r\n", "a\rb\r\n");
	EX(R, "a\r", "a\r\r\n");
	EX(S, "a\nb", "a\nb\r\n");
}

Test(sign_canon, byte_by_byte_equals_at_once_long)
{
	char body[3000];
	uint8_t a[32], b[32];
	size_t i;
	int alg;

	for (i = 0; i < sizeof(body); i++)
		body[i] = " \t\r\nab"[(i * 7 + i / 13) % 6];
	for (alg = S; alg <= R; alg++) {
		body_md(alg, body, sizeof(body), 0, a);
		body_md(alg, body, sizeof(body), 1, b);
		cr_assert_eq(memcmp(a, b, 32), 0);
		body_md(alg, body, sizeof(body), 1000, b);
		cr_assert_eq(memcmp(a, b, 32), 0);
	}
}

/* hdr - canonicalise one field and compare. */
static void hdr(int alg, const char *f, const char *want)
{
	char out[512];
	size_t n = sign_canon_header(alg, f, strlen(f), out);

	cr_assert_eq(n, strlen(want), "%s: got %.*s", f, (int)n, out);
	cr_assert_eq(memcmp(out, want, n), 0, "%s: got %.*s", f, (int)n, out);
}

Test(sign_canon, header_relaxed)
{
	hdr(R, "SubJect : AbC\r\n", "subject:AbC\r\n");
	hdr(R, "Subject:  a \t b  \r\n", "subject:a b\r\n");
	hdr(R, "Subject: folded\r\n\tover\r\n  lines \r\n",
	    "subject:folded over lines\r\n");
	hdr(R, "X-Empty:\r\n", "x-empty:\r\n");
	hdr(R, "X-Empty:   \r\n", "x-empty:\r\n");
	/* RFC 6376 3.4.5 */
	hdr(R, "A: X\r\n", "a:X\r\n");
	hdr(R, "B : Y\t\r\n\tZ  \r\n", "b:Y Z\r\n");
}

Test(sign_canon, header_simple)
{
	hdr(S, "SubJect : AbC \r\n\t x\r\n", "SubJect : AbC \r\n\t x\r\n");
	hdr(S, "A: no crlf", "A: no crlf\r\n");
}

Test(sign_canon, parse)
{
	int h, b;

	cr_assert_eq(sign_canon_parse("relaxed/simple", &h, &b), 0);
	cr_assert(h == R && b == S);
	cr_assert_eq(sign_canon_parse("relaxed", &h, &b), 0);
	cr_assert(h == R && b == S);
	cr_assert_eq(sign_canon_parse("Simple/Relaxed", &h, &b), 0);
	cr_assert(h == S && b == R);
	cr_assert_eq(sign_canon_parse("relaxed/nofws", &h, &b), -EINVAL);
	cr_assert_eq(sign_canon_parse("", &h, &b), -EINVAL);
}
