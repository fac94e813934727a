/*
 * test_relay_map - the map files of delivery (transport_maps,
 * destination_concurrency_limits) and next-hop syntax.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "relay/relay_map.h"

static struct relay_map *parse_ok(const char *text)
{
	struct relay_map *m = NULL;
	char err[256] = "";
	int r = relay_map_parse(&m, "t", text, strlen(text), err, sizeof(err));

	cr_assert_eq(r, 0, "parse failed: %s", err);
	return m;
}

static void parse_bad(const char *text, const char *want)
{
	struct relay_map *m = NULL;
	char err[256] = "";
	int r = relay_map_parse(&m, "t", text, strlen(text), err, sizeof(err));

	cr_assert_eq(r, -EINVAL, "accepted: %s", text);
	cr_assert_not_null(strstr(err, want), "error \"%s\" lacks \"%s\"",
			   err, want);
}

Test(relay_map, entries_comments_continuations)
{
	struct relay_map *m = parse_ok("# next hops\n"
				       "\n"
				       "Example.NET   [127.0.0.11]:2526  \n"
				       "long.test first\n"
				       "  second\n"
				       "\tthird\n"
				       "last.test x");

	cr_assert_eq(relay_map_count(m), 3);
	cr_assert_str_eq(relay_map_get(m, "example.net"), "[127.0.0.11]:2526");
	cr_assert_str_eq(relay_map_get(m, "EXAMPLE.net"), "[127.0.0.11]:2526");
	cr_assert_str_eq(relay_map_get(m, "long.test"), "first second third");
	cr_assert_str_eq(relay_map_get(m, "last.test"), "x");
	cr_assert_null(relay_map_get(m, "other.test"));
	relay_map_free(m);
}

Test(relay_map, domain_then_parents)
{
	struct relay_map *m = parse_ok("example.net exact\n"
				       ".example.net sub\n"
				       ".b.example.net deeper\n");

	cr_assert_str_eq(relay_map_domain(m, "example.net"), "exact");
	cr_assert_str_eq(relay_map_domain(m, "a.example.net"), "sub");
	cr_assert_str_eq(relay_map_domain(m, "x.b.example.net"), "deeper");
	cr_assert_str_eq(relay_map_domain(m, "b.example.net"), "sub");
	cr_assert_null(relay_map_domain(m, "example.org"));
	cr_assert_null(relay_map_domain(m, "notexample.net"));
	relay_map_free(m);
}

Test(relay_map, errors_name_the_line)
{
	parse_bad("a.test x\nb.test\n", "t:2: b.test: no value");
	parse_bad("  orphan\n", "t:1: continuation");
	parse_bad("a.test x\n\nA.TEST y\n", "also on line 1");

	{
		static const char nul[] = "a.test x\0y\n";
		struct relay_map *m = NULL;
		char err[256] = "";

		cr_assert_eq(relay_map_parse(&m, "t", nul, sizeof(nul) - 1,
					     err, sizeof(err)),
			     -EINVAL);
		cr_assert_not_null(strstr(err, "t:1: a NUL byte"), "%s", err);
	}
}

Test(relay_map, load_file_and_missing_file)
{
	char path[] = "/tmp/test_relay_map_XXXXXX", err[256] = "";
	struct relay_map *m = NULL;
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");

	fputs("slow.test 2\n", f);
	fclose(f);
	cr_assert_eq(relay_map_load(&m, path, err, sizeof(err)), 0);
	cr_assert_str_eq(relay_map_get(m, "slow.test"), "2");
	relay_map_free(m);
	unlink(path);

	cr_assert_eq(relay_map_load(&m, path, err, sizeof(err)), -ENOENT);
	cr_assert_not_null(strstr(err, path));

	cr_assert_eq(relay_map_load(&m, "", err, sizeof(err)), 0);
	cr_assert_eq(relay_map_count(m), 0);
	cr_assert_null(relay_map_domain(m, "a.test"));
	relay_map_free(m);
}

Test(relay_map, next_hops)
{
	struct relay_map_hop h;

	cr_assert_eq(relay_map_hop_parse(&h, "[127.0.0.1]:2526"), 0);
	cr_assert_str_eq(h.host, "127.0.0.1");
	cr_assert_eq(h.port, 2526);
	cr_assert(!h.mx);

	cr_assert_eq(relay_map_hop_parse(&h, "smtp:[Relay.Example.COM]"), 0);
	cr_assert_str_eq(h.host, "relay.example.com");
	cr_assert_eq(h.port, 25);
	cr_assert(!h.mx);

	cr_assert_eq(relay_map_hop_parse(&h, "mx.example.com:587"), 0);
	cr_assert_str_eq(h.host, "mx.example.com");
	cr_assert_eq(h.port, 587);
	cr_assert(h.mx);

	cr_assert_eq(relay_map_hop_parse(&h, "[ipv6:::1]:25"), 0);
	cr_assert_str_eq(h.host, "ipv6:::1");

	cr_assert_eq(relay_map_hop_parse(&h, "[host"), -EINVAL);
	cr_assert_eq(relay_map_hop_parse(&h, "[host]x"), -EINVAL);
	cr_assert_eq(relay_map_hop_parse(&h, "host:0"), -EINVAL);
	cr_assert_eq(relay_map_hop_parse(&h, "host:70000"), -EINVAL);
	cr_assert_eq(relay_map_hop_parse(&h, "host:25x"), -EINVAL);
	cr_assert_eq(relay_map_hop_parse(&h, "[]:25"), -EINVAL);
	cr_assert_eq(relay_map_hop_parse(&h, "::1"), -EINVAL);
	cr_assert_eq(relay_map_hop_parse(&h, "a b"), -EINVAL);
}

/* Map names as Postfix writes them: indexed types read their source. */
Test(relay_map, postfix_map_types)
{
	char path[] = "/tmp/test_relay_map_XXXXXX", name[64], err[256] = "";
	struct relay_map *m = NULL;
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	const char *ok[] = {"hash", "lmdb", "cdb", "texthash", "btree"};

	fputs("news.test [10.0.0.1]:25\n", f);
	fclose(f);
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(name, sizeof(name), "%s:%s", ok[i], path);
		cr_assert_eq(relay_map_load(&m, name, err, sizeof(err)), 0,
			     "%s: %s", name, err);
		cr_assert_str_eq(relay_map_get(m, "news.test"),
				 "[10.0.0.1]:25");
		relay_map_free(m);
	}

	snprintf(name, sizeof(name), "regexp:%s", path);
	cr_assert_eq(relay_map_load(&m, name, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "map type regexp is not supported"),
			   "%s", err);
	cr_assert_not_null(strstr(err, name), "%s", err);
	unlink(path);

	/* The source file is what must exist. */
	snprintf(name, sizeof(name), "hash:%s", path);
	cr_assert_eq(relay_map_load(&m, name, err, sizeof(err)), -ENOENT);
	cr_assert_not_null(strstr(err, path), "%s", err);
}
