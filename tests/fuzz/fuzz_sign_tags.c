/* fuzz_sign_tags - the DKIM-Signature tag-list parser of verify, and the
 * b= stripping built on it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sign/sign_verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sign_tag t[SIGN_TAGS_MAX];
	char *out = malloc(size + 1);
	int n = sign_verify_tags((const char *)data, size, t, SIGN_TAGS_MAX);
	int i;

	for (i = 0; i < n; i++)
		if (t[i].v < (const char *)data ||
		    t[i].v + t[i].vlen > (const char *)data + size)
			abort();
	if (sign_verify_strip_b((const char *)data, size, out) > (long)size)
		abort();
	free(out);
	return 0;
}
