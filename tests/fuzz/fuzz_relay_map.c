/*
 * fuzz_relay_map - the map file parser and the next-hop parser take any
 * bytes without crashing; whatever parses can be looked up.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/relay_map.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct relay_map *m;
	struct relay_map_hop h;
	char err[256], *s;

	if (relay_map_parse(&m, "fuzz", (const char *)data, size, err,
			    sizeof(err)) == 0) {
		relay_map_domain(m, "a.b.example.com");
		relay_map_get(m, "example.com");
		relay_map_free(m);
	}
	s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (relay_map_hop_parse(&h, s) == 0 && (h.port < 1 || h.port > 65535))
		abort();
	free(s);
	return 0;
}
