/*
 * fuzz_conf_parse - conf_parse_buf on arbitrary bytes, then conf_print.
 *
 * Beyond crashes and leaks it checks that printing is stable: what
 * conf_print writes for an accepted configuration must load again, and
 * print the same once more (the first print may differ, since expansion
 * can leave blanks at the ends of a value that reading trims).
 */
#include "conf/conf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* fuzz_print - conf_print into a malloc'd string. */
static char *fuzz_print(const struct conf *c, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);

	if (f == NULL)
		abort();
	conf_print(f, c, false, true);
	fclose(f);
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf c, c2, c3;
	char err[256];
	char *p1, *p2, *p3;
	size_t l1, l2, l3;
	FILE *null;

	if (conf_parse_buf(&c, "fuzz", (const char *)data, size, err,
			   sizeof(err)) < 0)
		return 0;

	null = fopen("/dev/null", "w");
	if (null != NULL) {
		conf_print(null, &c, true, true);
		fclose(null);
	}

	/* Print, read back, print again: the second and third agree. */
	p1 = fuzz_print(&c, &l1);
	if (conf_parse_buf(&c2, "p1", p1, l1, err, sizeof(err)) < 0) {
		fprintf(stderr, "printed configuration fails: %s\n%s", err, p1);
		abort();
	}
	p2 = fuzz_print(&c2, &l2);
	if (conf_parse_buf(&c3, "p2", p2, l2, err, sizeof(err)) < 0)
		abort();
	p3 = fuzz_print(&c3, &l3);
	if (l2 != l3 || memcmp(p2, p3, l2) != 0) {
		fprintf(stderr, "print not stable:\n%s\n---\n%s", p2, p3);
		abort();
	}

	conf_free(&c3);
	conf_free(&c2);
	conf_free(&c);
	free(p1);
	free(p2);
	free(p3);
	return 0;
}
