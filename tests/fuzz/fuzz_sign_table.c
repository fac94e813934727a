/* fuzz_sign_table - KeyTable and SigningTable parsers and the look-up. */
#include <stdint.h>
#include <string.h>

#include "sign/sign_table.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sign_table t;
	char err[256];
	size_t idx[8];

	memset(&t, 0, sizeof(t));
	/* Set first: a plain table refuses some patterns at parse time. */
	t.refile = size & 1;
	sign_table_parse_keys(&t, "kt", (const char *)data, size, err,
			      sizeof(err));
	sign_table_parse_signing(&t, "st", (const char *)data, size, err,
				 sizeof(err));
	sign_table_lookup(&t, "user@sub.example.com", idx, 8);
	sign_table_free(&t);
	return 0;
}
