/*
 * fuzz_relay_addr - libFuzzer target for path and parameter syntax.
 *
 * The first input byte picks allow_null (bit 0) and utf8 (bit 1); the
 * rest is a MAIL/RCPT argument. A path that parses must come out as the
 * bytes the client wrote, parse again to itself, and respect the length
 * limits; the parameters after it are parsed too.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/relay_addr.h"

/* fuzz_addr_reparse - "<" out ">" must parse to out again. */
static void fuzz_addr_reparse(const char *out, bool allow_null, bool utf8)
{
	char again[RELAY_ADDR_PATH_MAX + 1], path[RELAY_ADDR_PATH_MAX + 3];
	const char *rest, *why;
	size_t n = strlen(out);

	path[0] = '<';
	memcpy(path + 1, out, n);
	path[n + 1] = '>';
	if (relay_addr_parse_path(path, n + 2, allow_null, utf8, again, &rest,
				  &why) != 0)
		abort();
	if (strcmp(again, out) != 0 || rest != path + n + 2)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[RELAY_ADDR_PATH_MAX + 1];
	struct relay_addr_params p;
	const char *s = (const char *)data + 1, *rest, *why, *dom;
	bool allow_null, utf8;
	size_t n, olen;
	int rc;

	if (size == 0)
		return 0;
	allow_null = data[0] & 1;
	utf8 = data[0] & 2;
	n = size - 1;

	rc = relay_addr_parse_path(s, n, allow_null, utf8, out, &rest, &why);
	if (rc != 0) {
		if (rc != -EINVAL || why == NULL)
			abort();
	} else {
		olen = strlen(out);
		if (olen > RELAY_ADDR_PATH_MAX - 2)
			abort();
		if (rest < s + 2 || rest > s + n || rest[-1] != '>')
			abort();
		if (rest < s + n && *rest != ' ')
			abort();

		/* The mailbox is what the client wrote just before ">". */
		if ((size_t)(rest - 1 - s) < olen ||
		    memcmp(rest - 1 - olen, out, olen) != 0)
			abort();
		if (!utf8 && relay_addr_has_8bit(out, olen))
			abort();
		if (olen == 0 && !allow_null)
			abort();
		dom = relay_addr_domain(out);
		if (dom != NULL && (dom <= out || dom[-1] != '@'))
			abort();
		if (olen > 0)
			fuzz_addr_reparse(out, allow_null, utf8);
	}

	rc = relay_addr_parse_params(s, n, allow_null, &p, &why);
	if (rc != 0 && rc != -EINVAL && rc != -ENOTSUP)
		abort();
	if (rc != 0 && why == NULL)
		abort();
	if (rc == 0 &&
	    (p.size < -1 || (p.body != 0 && p.body != 7 && p.body != 8)))
		abort();
	return 0;
}
