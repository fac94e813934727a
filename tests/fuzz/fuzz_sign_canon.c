/* fuzz_sign_canon - the body canonicaliser: any chunking of the input
 * (cut points taken from the first byte) hashes as the whole does; also
 * header canonicalisation stays within its stated output size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sign/sign_canon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sign_canon_body a, b;
	uint8_t ma[32], mb[32];
	size_t step, i, n;
	char *out;
	int alg;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 17 + 1;
	data++;
	size--;
	for (alg = SIGN_CANON_SIMPLE; alg <= SIGN_CANON_RELAXED; alg++) {
		sign_canon_body_init(&a, alg);
		sign_canon_body_init(&b, alg);
		sign_canon_body_update(&a, data, size);
		for (i = 0; i < size; i += step)
			sign_canon_body_update(
			    &b, data + i, size - i < step ? size - i : step);
		sign_canon_body_final(&a, ma);
		sign_canon_body_final(&b, mb);
		if (memcmp(ma, mb, 32) != 0 || a.out != b.out)
			abort();

		out = malloc(size + 3);
		n = sign_canon_header(alg, (const char *)data, size, out);
		if (n > size + 3)
			abort();
		free(out);
	}
	return 0;
}
