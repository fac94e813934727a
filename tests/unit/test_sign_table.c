/*
 * test_sign_table - KeyTable/SigningTable parsing and look-ups, with
 * OpenDKIM's own example lines.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "sign/sign_table.h"

static const char keys[] =
    "# keys\n"
    "\n"
    "mail._domainkey.domain1.tld "
    "domain1.tld:mail:/etc/opendkim/keyfiles/domain1.tld/mail.private\n"
    "mail._domainkey.% "
    "%:mail:/etc/opendkim/keyfiles/domain.tld/mail.private\n";

static const char resign[] = "*@domain1.tld mail._domainkey.domain1.tld\n"
			     "* mail._domainkey.%\n";

/* load - parse both texts into t. */
static void load(struct sign_table *t, const char *sig, bool refile)
{
	char err[256] = "";

	memset(t, 0, sizeof(*t));
	t->refile = refile;
	cr_assert_eq(sign_table_parse_keys(t, "kt", keys, strlen(keys), err,
					   sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(sign_table_parse_signing(t, "st", sig, strlen(sig), err,
					      sizeof(err)),
		     0, "%s", err);
}

Test(sign_table, opendkim_lines_verbatim)
{
	struct sign_table t;
	size_t idx[4];

	load(&t, resign, true);
	cr_assert_eq(t.nkeys, 2);
	cr_assert_str_eq(t.keys[0].domain, "domain1.tld");
	cr_assert_str_eq(t.keys[0].selector, "mail");
	cr_assert_str_eq(t.keys[0].path,
			 "/etc/opendkim/keyfiles/domain1.tld/mail.private");
	cr_assert_str_eq(t.keys[1].domain, "%");
	cr_assert_eq(t.keys[1].line, 4);

	/* File order: the domain1 entry first, then the catch-all. */
	cr_assert_eq(sign_table_lookup(&t, "a@domain1.tld", idx, 1), 1);
	cr_assert_eq(idx[0], 0);
	cr_assert_eq(sign_table_lookup(&t, "a@domain1.tld", idx, 4), 2);
	cr_assert_eq(idx[1], 1);
	cr_assert_eq(sign_table_lookup(&t, "b@other.example", idx, 4), 1);
	cr_assert_eq(idx[0], 1);
	cr_assert_eq(sign_table_find_key(&t, t.sigs[idx[0]].keyname), 1);
	sign_table_free(&t);
}

Test(sign_table, refile_no_match)
{
	static const char sig[] = "*@domain1.tld mail._domainkey.domain1.tld\n";
	struct sign_table t;
	size_t idx[4];

	load(&t, sig, true);
	cr_assert_eq(sign_table_lookup(&t, "a@domain2.tld", idx, 4), 0);
	cr_assert_eq(sign_table_lookup(&t, "a@sub.domain1.tld", idx, 4), 0);
	sign_table_free(&t);
}

Test(sign_table, plain_table_lookup_order)
{
	static const char sig[] = "* k5\n"
				  "joe@* k4\n"
				  ".example.com k3\n"
				  "joe@.example.com k2\n"
				  "*@foo.example.com k1b\n"
				  "foo.example.com k1\n"
				  "joe@foo.example.com k0\n";
	static const char *order[] = {"k0", "k1", "k1b", "k2",
				      "k3", "k4", "k5"};
	struct sign_table t;
	size_t idx[8];
	int i;

	load(&t, sig, false);
	cr_assert_eq(sign_table_lookup(&t, "joe@foo.example.com", idx, 8), 7);
	for (i = 0; i < 7; i++)
		cr_assert_str_eq(t.sigs[idx[i]].keyname, order[i]);
	cr_assert_eq(sign_table_lookup(&t, "ann@foo.example.com", idx, 1), 1);
	cr_assert_str_eq(t.sigs[idx[0]].keyname, "k1");
	cr_assert_eq(sign_table_lookup(&t, "ann@bar.example.com", idx, 1), 1);
	cr_assert_str_eq(t.sigs[idx[0]].keyname, "k3");
	cr_assert_eq(sign_table_lookup(&t, "ann@other.org", idx, 1), 1);
	cr_assert_str_eq(t.sigs[idx[0]].keyname, "k5");
	/* No wildcards in a plain table. */
	cr_assert_eq(t.refile, false);
	sign_table_free(&t);
}

Test(sign_table, glob)
{
	cr_assert(sign_table_match("*@example.com", "a@EXAMPLE.com"));
	cr_assert(sign_table_match("*", ""));
	cr_assert(sign_table_match("a*b*c", "aXXbYYc"));
	cr_assert_not(sign_table_match("a*b*c", "aXXbYY"));
	cr_assert_not(sign_table_match("*@example.com", "a@example.com.evil"));
	cr_assert(sign_table_match("*@*.example.com", "x@a.b.example.com"));
}

/* bad - a parse error mentioning the line. */
static void bad(bool keytable, const char *text, const char *want)
{
	struct sign_table t;
	char err[256] = "";
	int r;

	memset(&t, 0, sizeof(t));
	r = keytable ? sign_table_parse_keys(&t, "tab", text, strlen(text), err,
					     sizeof(err))
		     : sign_table_parse_signing(&t, "tab", text, strlen(text),
						err, sizeof(err));
	cr_assert_eq(r, -EINVAL, "%s", text);
	cr_assert(strstr(err, want), "error '%s' lacks '%s'", err, want);
	sign_table_free(&t);
}

Test(sign_table, errors_name_file_and_line)
{
	bad(true, "k example.com:sel\n", "tab:1:");
	bad(true, "\n# c\nk example.com::/x\n", "tab:3:");
	bad(true, "k a:b:/c extra\n", "tab:1:");
	bad(true, "k a:b:inline-key-data\n", "tab:1:");
	bad(false, "justone\n", "tab:1:");
	bad(false, "a b c d\n", "tab:1:");

	/* A plain table refuses wildcards it could never match. */
	bad(false, "*@ok.example k\n*.example.com k\n", "tab:2: *.example");
	bad(false, "a*@example.com k\n", "refile:tab");
	bad(false, "*@*.example.com k\n", "tab:1:");
	bad(false, "*@ k\n", "tab:1:");
	bad(false, "@* k\n", "tab:1:");
	bad(false, "*@.example.com k\n", "tab:1:");
	bad(false, "*@a@example.com k\n", "tab:1:");
	bad(false, "joe@* k\n* k\njoe@x* k\n", "tab:3:");
}

Test(sign_table, refile_takes_any_wildcard)
{
	static const char sig[] = "a*@*.example.com k0\n@* k1\n";
	struct sign_table t;
	size_t idx[2];

	load(&t, sig, true);
	cr_assert_eq(sign_table_lookup(&t, "ab@x.example.com", idx, 2), 1);
	cr_assert_str_eq(t.sigs[idx[0]].keyname, "k0");
	sign_table_free(&t);
}

Test(sign_table, plain_table_takes_star_at_domain)
{
	struct sign_table t;
	size_t idx[4];

	/* OpenDKIM's example lines work in a plain table too. */
	load(&t, resign, false);
	cr_assert_eq(sign_table_lookup(&t, "a@domain1.tld", idx, 4), 2);
	cr_assert_eq(idx[0], 0);
	cr_assert_eq(idx[1], 1);
	cr_assert_eq(sign_table_lookup(&t, "a@sub.domain1.tld", idx, 4), 1);
	cr_assert_eq(idx[0], 1);
	sign_table_free(&t);
}

Test(sign_table, path_prefixes)
{
	bool re;

	cr_assert_str_eq(sign_table_path("refile:/x", &re), "/x");
	cr_assert(re);
	cr_assert_str_eq(sign_table_path("file:/y", &re), "/y");
	cr_assert_not(re);
	cr_assert_str_eq(sign_table_path("/z", &re), "/z");
	cr_assert_not(re);
}
