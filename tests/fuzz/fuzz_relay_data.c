/*
 * fuzz_relay_data - libFuzzer target for the DATA/BDAT reader.
 *
 * The first input byte picks the mode (bit 0: BDAT, bit 1: reject bare
 * line ends), a size limit (bits 2-4) and the seed of the chunk sizes
 * (bits 5-7); the rest is the client's bytes. The input is fed whole,
 * byte by byte and in pseudo-random pieces; any difference between the
 * three, or a broken invariant of the stored message, aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/relay_data.h"

struct fuzz_data_result {
	enum relay_data_status st;
	enum relay_data_err err;
	size_t used, len, hdr_end;
	char *buf;
};

/* fuzz_data_run - feed in[0..n) in pieces: step 0 whole, else random. */
static void fuzz_data_run(const char *in, size_t n, bool bdat, bool reject,
			  uint64_t max, unsigned step, unsigned seed,
			  struct fuzz_data_result *r)
{
	struct relay_data d = {0};
	size_t off = 0, k, used;

	relay_data_begin(&d, max, reject, bdat);
	r->st = RELAY_DATA_MORE;
	while (off < n && r->st == RELAY_DATA_MORE) {
		k = n - off;
		if (step == 1) {
			k = 1;
		} else if (step > 1) {
			seed = seed * 1103515245u + 12345u;
			k = 1 + (seed >> 16) % step;
		}
		if (k > n - off)
			k = n - off;
		r->st = relay_data_feed(&d, in + off, k, &used);
		if (used > k || (r->st == RELAY_DATA_MORE && used != k))
			abort();
		off += used;
	}
	if (bdat)
		relay_data_finish(&d);
	r->used = off;
	r->err = d.err;
	r->hdr_end = d.hdr_end;
	r->buf = relay_data_take(&d, &r->len);
	if (r->buf == NULL)
		abort();
	relay_data_free(&d);
}

/*
 * fuzz_data_end - where DATA must end, found the plain way: the first
 * ".<CR><LF>" at offset 0 or right after a <CR><LF> (every <CR><LF> the
 * client sends is a real line end). n + 1 when there is none.
 */
static size_t fuzz_data_end(const char *in, size_t n)
{
	size_t j;

	for (j = 0; j + 3 <= n; j++) {
		if (j != 0 && (j < 2 || in[j - 2] != '\r' || in[j - 1] != '\n'))
			continue;
		if (memcmp(in + j, ".\r\n", 3) == 0)
			return j + 3;
	}
	return n + 1;
}

/* fuzz_data_check - invariants of a message stored without error. */
static void fuzz_data_check(const struct fuzz_data_result *r, bool reject,
			    uint64_t max)
{
	size_t i, line = 0;

	if (max && r->len > max)
		abort();
	if (r->len > 0 && (r->len < 2 || r->buf[r->len - 2] != '\r' ||
			   r->buf[r->len - 1] != '\n'))
		abort();
	for (i = 0; i < r->len; i++) {
		char c = r->buf[i];

		if (c == '\0')
			abort();
		if (c == '\n') {
			if (i == 0 || r->buf[i - 1] != '\r')
				abort();

			/* line counted the <CR>: 998 octets of content is
			 * the most a line may hold (1000 with the CRLF). */
			if (line - 1 > 998)
				abort();
			line = 0;
			continue;
		}
		line++;
		if (c == '\r' && reject &&
		    (i + 1 == r->len || r->buf[i + 1] != '\n'))
			abort();
	}

	/* hdr_end follows the first empty line. */
	if (r->hdr_end != 0) {
		if (r->hdr_end < 2 || r->hdr_end > r->len ||
		    memcmp(r->buf + r->hdr_end - 2, "\r\n", 2) != 0)
			abort();
		if (r->hdr_end > 2 &&
		    memcmp(r->buf + r->hdr_end - 4, "\r\n", 2) != 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t maxes[8] = {0, 1, 2, 5, 64, 1000, 1003, 4096};
	struct fuzz_data_result a, b, c;
	const char *in = (const char *)data + 1;
	size_t n, end;
	bool bdat, reject;
	uint64_t max;

	if (size == 0)
		return 0;
	bdat = data[0] & 1;
	reject = data[0] & 2;
	max = maxes[(data[0] >> 2) & 7];
	n = size - 1;

	fuzz_data_run(in, n, bdat, reject, max, 0, 0, &a);
	fuzz_data_run(in, n, bdat, reject, max, 1, 0, &b);
	fuzz_data_run(in, n, bdat, reject, max, 1u << (data[0] >> 5 & 7),
		      data[0], &c);

	/* The split of the input must not matter. */
	if (a.st != b.st || a.st != c.st || a.err != b.err || a.err != c.err ||
	    a.used != b.used || a.used != c.used || a.len != b.len ||
	    a.len != c.len || a.hdr_end != b.hdr_end ||
	    a.hdr_end != c.hdr_end || memcmp(a.buf, b.buf, a.len) != 0 ||
	    memcmp(a.buf, c.buf, a.len) != 0)
		abort();

	/* DATA ends exactly at the first real CRLF.CRLF; BDAT never. */
	end = fuzz_data_end(in, n);
	if (bdat && a.st != RELAY_DATA_MORE)
		abort();
	if (!bdat && (a.st == RELAY_DATA_END) != (end <= n))
		abort();
	if (a.used != (a.st == RELAY_DATA_END ? end : n))
		abort();

	if (a.err == RELAY_DATA_OK && (a.st == RELAY_DATA_END || bdat))
		fuzz_data_check(&a, reject, max);
	if (a.err != RELAY_DATA_OK && max && a.len > max)
		abort();

	free(a.buf);
	free(b.buf);
	free(c.buf);
	return 0;
}
