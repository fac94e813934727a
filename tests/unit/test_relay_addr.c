/*
 * test_relay_addr - path and ESMTP parameter syntax of MAIL and RCPT
 * (RFC 5321 section 4.1.2, RFC 6531 for UTF-8).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relay/relay_addr.h"

struct path_case {
	const char *in;
	bool mail; /* allow_null */
	bool utf8;
	const char *want; /* mailbox, or NULL: -EINVAL */
	const char *rest; /* what follows ">" when valid */
};

static const struct path_case paths[] = {
    /* Plain mailboxes. */
    {"<user@example.com>", false, false, "user@example.com", ""},
    {"<user@example.com> SIZE=10", true, false, "user@example.com", " SIZE=10"},
    {"<a.b.c@x.y>", false, false, "a.b.c@x.y", ""},
    {"<!#$%&'*+-/=?^_`{|}~@example.com>", false, false,
     "!#$%&'*+-/=?^_`{|}~@example.com", ""},
    {"<user@localhost>", false, false, "user@localhost", ""},
    {"<u@a-b.c0.9z>", false, false, "u@a-b.c0.9z", ""},

    /* Null path: MAIL only. */
    {"<>", true, false, "", ""},
    {"<> BODY=8BITMIME", true, false, "", " BODY=8BITMIME"},
    {"<>", false, false, NULL, NULL},

    /* Source routes are dropped. */
    {"<@a.example,@b.example:user@c.example>", false, false, "user@c.example",
     ""},
    {"<@a.example:user@c.example>", true, false, "user@c.example", ""},
    {"<@a.example,user@c.example>", false, false, NULL, NULL},
    {"<@a.example:>", true, false, NULL, NULL},
    {"<@:user@c.example>", false, false, NULL, NULL},
    {"<@a.example,:user@c.example>", false, false, NULL, NULL},
    {"<@[1.2.3.4]:user@c.example>", false, false, NULL, NULL},

    /* Quoted local parts, kept as written. */
    {"<\"a@b\"@example.com>", false, false, "\"a@b\"@example.com", ""},
    {"<\"a%b!c\"@example.com>", false, false, "\"a%b!c\"@example.com", ""},
    {"<\"a\\\"b\\\\c\"@example.com>", false, false,
     "\"a\\\"b\\\\c\"@example.com", ""},
    {"<\"with space\"@example.com>", false, false, "\"with space\"@example.com",
     ""},
    {"<\"\"@example.com>", false, false, "\"\"@example.com", ""},
    {"<\"a>b\"@example.com>", false, false, "\"a>b\"@example.com", ""},
    {"<\"unterminated@example.com>", false, false, NULL, NULL},
    {"<\"a\tb\"@example.com>", false, false, NULL, NULL},
    {"<\"a\\\x01\"@example.com>", false, false, NULL, NULL},
    {"<a\"b\"@example.com>", false, false, NULL, NULL},

    /* Dot-string rules. */
    {"<.a@example.com>", false, false, NULL, NULL},
    {"<a.@example.com>", false, false, NULL, NULL},
    {"<a..b@example.com>", false, false, NULL, NULL},
    {"<a b@example.com>", false, false, NULL, NULL},
    {"<a(b)@example.com>", false, false, NULL, NULL},
    {"<@example.com>", false, false, NULL, NULL},

    /* Domains. */
    {"<a@-x.com>", false, false, NULL, NULL},
    {"<a@x-.com>", false, false, NULL, NULL},
    {"<a@x..com>", false, false, NULL, NULL},
    {"<a@.x.com>", false, false, NULL, NULL},
    {"<a@x.com.>", false, false, NULL, NULL},
    {"<a@x_y.com>", false, false, NULL, NULL},
    {"<a@>", false, false, NULL, NULL},
    {"<a@b@c>", false, false, NULL, NULL},
    {"<a>", false, false, NULL, NULL},
    {"<a>", true, false, NULL, NULL},

    /* Address literals. */
    {"<a@[192.0.2.1]>", false, false, "a@[192.0.2.1]", ""},
    {"<a@[IPv6:2001:db8::1]>", false, false, "a@[IPv6:2001:db8::1]", ""},
    {"<a@[ipv6:::1]>", false, false, "a@[ipv6:::1]", ""},
    {"<a@[IPv6:::ffff:192.0.2.1]>", false, false, "a@[IPv6:::ffff:192.0.2.1]",
     ""},
    {"<a@[192.0.2.256]>", false, false, NULL, NULL},
    {"<a@[192.0.2]>", false, false, NULL, NULL},
    {"<a@[2001:db8::1]>", false, false, NULL, NULL},
    {"<a@[IPv6:2001:db8:::1]>", false, false, NULL, NULL},
    {"<a@[IPv6:1.2.3.4]>", false, false, NULL, NULL},
    {"<a@[]>", false, false, NULL, NULL},
    {"<a@[1.2.3.4>", false, false, NULL, NULL},
    {"<a@[x-tag:stuff]>", false, false, NULL, NULL},

    /* Postmaster without a domain: RCPT only, and only that word. */
    {"<Postmaster>", false, false, "Postmaster", ""},
    {"<POSTMASTER> X=1", false, false, "POSTMASTER", " X=1"},
    {"<postmaster>", true, false, NULL, NULL},
    {"<postmasters>", false, false, NULL, NULL},
    {"<@a.example:postmaster>", false, false, NULL, NULL},

    /* Angle brackets are required and end the path. */
    {"user@example.com", false, false, NULL, NULL},
    {" <user@example.com>", false, false, NULL, NULL},
    {"<user@example.com", false, false, NULL, NULL},
    {"<user@example.com >", false, false, NULL, NULL},
    {"<user@example.com>x", false, false, NULL, NULL},
    {"<>x", true, false, NULL, NULL},
    {"<", true, false, NULL, NULL},
    {"", true, false, NULL, NULL},

    /* UTF-8 only with SMTPUTF8, and only well-formed (RFC 3629). */
    {"<j\xc3\xb6rg@example.com>", false, true, "j\xc3\xb6rg@example.com", ""},
    {"<j\xc3\xb6rg@example.com>", false, false, NULL, NULL},
    {"<u@b\xc3\xbc\x63her.example>", false, true, "u@b\xc3\xbc\x63her.example",
     ""},
    {"<u@b\xc3\xbc\x63her.example>", false, false, NULL, NULL},
    {"<\"\xe2\x82\xac\"@example.com>", false, true,
     "\"\xe2\x82\xac\"@example.com", ""},
    {"<\"\xe2\x82\xac\"@example.com>", false, false, NULL, NULL},
    {"<\xf0\x9f\x93\xa7@example.com>", false, true,
     "\xf0\x9f\x93\xa7@example.com", ""},
    {"<\xc0\xaf@example.com>", false, true, NULL, NULL},
    {"<\xe0\x80\xaf@example.com>", false, true, NULL, NULL},
    {"<\xed\xa0\x80@example.com>", false, true, NULL, NULL},
    {"<\xf4\x90\x80\x80@example.com>", false, true, NULL, NULL},
    {"<\xc3@example.com>", false, true, NULL, NULL},
    {"<\x80@example.com>", false, true, NULL, NULL},
    {"<a@[IPv6:\xc3\xb6]>", false, true, NULL, NULL},
};

/* path_parse - run the parser on a NUL-terminated case. */
static int path_parse(const char *in, bool mail, bool utf8, char *out,
		      const char **rest, const char **why)
{
	return relay_addr_parse_path(in, strlen(in), mail, utf8, out, rest,
				     why);
}

Test(relay_addr, path_table)
{
	char out[RELAY_ADDR_PATH_MAX + 1];
	const char *rest, *why;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		const struct path_case *c = &paths[i];

		why = NULL;
		rc = path_parse(c->in, c->mail, c->utf8, out, &rest, &why);
		if (c->want == NULL) {
			cr_assert_eq(rc, -EINVAL, "%s: accepted as %s", c->in,
				     out);
			cr_assert_not_null(why, "%s: no reason", c->in);
			continue;
		}
		cr_assert_eq(rc, 0, "%s: %s", c->in, why ? why : "?");
		cr_assert_str_eq(out, c->want, "%s", c->in);
		cr_assert_str_eq(rest, c->rest, "%s", c->in);
	}
}

/* path_build - "<" local "@" domain ">" with parts of the given sizes. */
static char *path_build(size_t local, size_t label, size_t labels)
{
	char *s = malloc(local + labels * (label + 1) + 4), *p = s;
	size_t i;

	cr_assert_not_null(s);
	*p++ = '<';
	memset(p, 'l', local);
	p += local;
	*p++ = '@';
	for (i = 0; i < labels; i++) {
		if (i > 0)
			*p++ = '.';
		memset(p, 'd', label);
		p += label;
	}
	*p++ = '>';
	*p = '\0';
	return s;
}

/* path_len_check - build a path and expect it accepted or not. */
static void path_len_check(size_t local, size_t label, size_t labels, bool ok)
{
	char out[RELAY_ADDR_PATH_MAX + 1];
	const char *rest, *why = NULL;
	char *in = path_build(local, label, labels);
	int rc;

	rc = path_parse(in, false, false, out, &rest, &why);
	if (ok) {
		cr_assert_eq(rc, 0, "%zu/%zu/%zu: %s", local, label, labels,
			     why ? why : "?");
		cr_assert_eq(strlen(out), strlen(in) - 2);
	} else {
		cr_assert_eq(rc, -EINVAL, "%zu/%zu/%zu accepted", local, label,
			     labels);
	}
	free(in);
}

Test(relay_addr, lengths)
{
	/* Local part: 64 octets (RFC 5321 section 4.5.3.1.1). */
	path_len_check(64, 3, 2, true);
	path_len_check(65, 3, 2, false);

	/* Label: 63 octets. */
	path_len_check(1, 63, 2, true);
	path_len_check(1, 64, 2, false);

	/* Path: 256 octets with "<" and ">" (section 4.5.3.1.3). 62 labels
	 * of 3 with their dots make a domain of 247 octets. */
	path_len_check(6, 3, 62, true);	 /* 2 + 6 + 1 + 247 = 256 */
	path_len_check(7, 3, 62, false); /* 257 */
	path_len_check(1, 3, 63, true);	 /* domain 251, path 255 */
	path_len_check(1, 3, 64, false); /* domain 255, path 259 */
}

Test(relay_addr, domain_limit)
{
	/* A route domain of 65 labels of 3 (259 octets) fails by itself. */
	char in[600], out[RELAY_ADDR_PATH_MAX + 1];
	const char *rest, *why = NULL;
	size_t i, n = 0;

	in[n++] = '<';
	in[n++] = '@';
	for (i = 0; i < 65; i++)
		n += (size_t)sprintf(in + n, "%sabc", i ? "." : "");
	n += (size_t)sprintf(in + n, ":u@x>");
	cr_assert_eq(
	    relay_addr_parse_path(in, n, false, false, out, &rest, &why),
	    -EINVAL);
	cr_assert_str_eq(why, "domain too long");
}

Test(relay_addr, nul_in_literal)
{
	/* A NUL must not cut the literal short before inet_pton sees it. */
	static const char in[] = "<a@[IPv6:::\0\0\0]>";
	char out[RELAY_ADDR_PATH_MAX + 1];
	const char *rest, *why;

	cr_assert_eq(relay_addr_parse_path(in, sizeof(in) - 1, false, false,
					   out, &rest, &why),
		     -EINVAL);
}

Test(relay_addr, not_nul_terminated)
{
	/* The parser stops at len, whatever follows. */
	char out[RELAY_ADDR_PATH_MAX + 1];
	const char *in = "<a@b.c>X", *rest, *why;

	cr_assert_eq(
	    relay_addr_parse_path(in, 7, false, false, out, &rest, &why), 0);
	cr_assert_str_eq(out, "a@b.c");
	cr_assert_eq(rest, in + 7);
	cr_assert_eq(
	    relay_addr_parse_path(in, 6, false, false, out, &rest, &why),
	    -EINVAL);
}

struct param_case {
	const char *in;
	bool mail;
	int rc;
	int64_t size;
	int body;
	bool smtputf8;
};

static const struct param_case params[] = {
    {"", true, 0, -1, 0, false},
    {"   ", true, 0, -1, 0, false},
    {" SIZE=12345", true, 0, 12345, 0, false},
    {"size=0", true, 0, 0, 0, false},
    {"SIZE=9223372036854775807", true, 0, INT64_MAX, 0, false},
    {"SIZE=9223372036854775808", true, -EINVAL, -1, 0, false},
    {"SIZE=00000000000000000001", true, 0, 1, 0, false},
    {"SIZE=000000000000000000001", true, -EINVAL, -1, 0, false},
    {"SIZE=99999999999999999999", true, -EINVAL, -1, 0, false},
    {"SIZE=", true, -EINVAL, -1, 0, false},
    {"SIZE", true, -EINVAL, -1, 0, false},
    {"SIZE=12a", true, -EINVAL, -1, 0, false},
    {"SIZE=-1", true, -EINVAL, -1, 0, false},
    {"SIZE=1 SIZE=2", true, -EINVAL, 1, 0, false},
    {"BODY=7BIT", true, 0, -1, 7, false},
    {"body=8bitmime", true, 0, -1, 8, false},
    {"BODY=8BITMIME SIZE=10 SMTPUTF8", true, 0, 10, 8, true},
    {"SMTPUTF8  BODY=8BITMIME", true, 0, -1, 8, true},
    {"BODY=9BIT", true, -EINVAL, -1, 0, false},
    {"BODY", true, -EINVAL, -1, 0, false},
    {"BODY=BINARYMIME", true, -ENOTSUP, -1, 0, false},
    {"BODY=7BIT BODY=7BIT", true, -EINVAL, -1, 7, false},
    {"smtputf8", true, 0, -1, 0, true},
    {"SMTPUTF8=yes", true, -EINVAL, -1, 0, false},
    {"SMTPUTF8 SMTPUTF8", true, -EINVAL, -1, 0, true},
    {"SMTPUTF8", false, -ENOTSUP, -1, 0, false},
    {"SIZE=10", false, -ENOTSUP, -1, 0, false},
    {"NOTIFY=NEVER", false, -ENOTSUP, -1, 0, false},
    {"RET=HDRS", true, -ENOTSUP, -1, 0, false},
    {"X-FOO", true, -ENOTSUP, -1, 0, false},
    {"-X=1", true, -EINVAL, -1, 0, false},
    {"X_Y=1", true, -EINVAL, -1, 0, false},
    {"=1", true, -EINVAL, -1, 0, false},
    {"X=", true, -EINVAL, -1, 0, false},
    {"X=a=b", true, -EINVAL, -1, 0, false},
    {"X=\x01", true, -EINVAL, -1, 0, false},
    {"X=\xc3\xb6", true, -EINVAL, -1, 0, false},
    {"SIZE=1\tBODY=7BIT", true, -EINVAL, -1, 0, false},
};

Test(relay_addr, params_table)
{
	struct relay_addr_params p;
	const char *why;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		const struct param_case *c = &params[i];

		why = NULL;
		rc = relay_addr_parse_params(c->in, strlen(c->in), c->mail, &p,
					     &why);
		cr_assert_eq(rc, c->rc, "'%s': rc %d want %d", c->in, rc,
			     c->rc);
		if (rc != 0) {
			cr_assert_not_null(why, "'%s': no reason", c->in);
			continue;
		}
		cr_assert_eq(p.size, c->size, "'%s'", c->in);
		cr_assert_eq(p.body, c->body, "'%s'", c->in);
		cr_assert_eq(p.smtputf8, c->smtputf8, "'%s'", c->in);
	}
}

Test(relay_addr, domain_of)
{
	cr_assert_str_eq(relay_addr_domain("a@example.com"), "example.com");
	cr_assert_str_eq(relay_addr_domain("\"a@b\"@c.example"), "c.example");
	cr_assert_str_eq(relay_addr_domain("\"a\\\"@b\"@c.example"),
			 "c.example");
	cr_assert_str_eq(relay_addr_domain("a@[IPv6:::1]"), "[IPv6:::1]");
	cr_assert_null(relay_addr_domain(""));
	cr_assert_null(relay_addr_domain("Postmaster"));
	cr_assert_null(relay_addr_domain("\"a@b\""));
}

Test(relay_addr, has_8bit)
{
	cr_assert(!relay_addr_has_8bit("plain ascii ~\x7f", 14));
	cr_assert(relay_addr_has_8bit("j\xc3\xb6rg", 5));
	cr_assert(relay_addr_has_8bit("abc\x80", 4));
	cr_assert(!relay_addr_has_8bit("abc\x80", 3));
}

/*
 * Labels and their A-label lengths from Python's own RFC 3492 codec:
 * "HEX LEN" lines, HEX the label's UTF-8, LEN len("xn--" + Punycode).
 * Mixes of ASCII letters with 2-, 3- and 4-octet characters, lengths
 * around the 63-octet limit.
 */
static const char punycode_py[] =
    "import random\n"
    "random.seed(6533)\n"
    "sets = [[chr(c) for c in range(0xe0, 0x100) if c != 0xf7],\n"
    "        [chr(c) for c in range(0x4e00, 0x4e00 + 500)],\n"
    "        [chr(c) for c in range(0x1f600, 0x1f650)],\n"
    "        [chr(c) for c in range(0x3b1, 0x3c9)]]\n"
    "for i in range(600):\n"
    "    pick = random.sample(sets, random.randint(1, 3))\n"
    "    n = random.randint(8, 70)\n"
    "    ascii_share = random.choice([0, 0, 0.3, 0.7, 0.95])\n"
    "    lab = ''.join(random.choice('abcdefghij') if random.random() < "
    "ascii_share else random.choice(random.choice(pick)) for _ in range(n))\n"
    "    if all(ord(ch) < 128 for ch in lab):\n"
    "        lab = lab[:-1] + '\\u00e9'\n"
    "    print(lab.encode().hex(), 4 + len(lab.encode('punycode')))\n";

Test(relay_addr, u_label_measured_as_a_label)
{
	char script[] = "/tmp/test_relay_addr.XXXXXX", cmd[128];
	char hex[1024], label[512], in[700], out[RELAY_ADDR_PATH_MAX + 1];
	const char *rest, *why;
	int fd, alen, n = 0, ok = 0;
	FILE *p;

	if (access("/usr/bin/python3", X_OK) != 0)
		cr_skip_test("/usr/bin/python3 is missing: no Punycode to "
			     "compare with");
	fd = mkstemp(script);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, punycode_py, sizeof(punycode_py) - 1),
		     (ssize_t)sizeof(punycode_py) - 1);
	close(fd);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s", script);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while (fscanf(p, "%1000s %d", hex, &alen) == 2) {
		size_t len = strlen(hex) / 2;

		for (size_t i = 0; i < len; i++)
			cr_assert_eq(sscanf(hex + 2 * i, "%2hhx",
					    (unsigned char *)&label[i]),
				     1);
		label[len] = '\0';
		snprintf(in, sizeof(in), "<u@%s.example>", label);
		why = NULL;
		if (path_parse(in, false, true, out, &rest, &why) == 0) {
			cr_assert_leq(alen, 63, "accepted, A-label %d: %s",
				      alen, hex);
			ok++;
		} else {
			cr_assert_gt(alen, 63, "refused (%s), A-label %d: %s",
				     why ? why : "?", alen, hex);
			cr_assert_str_eq(why, "domain label too long");
		}
		n++;
	}
	cr_assert_eq(pclose(p), 0);
	unlink(script);
	cr_assert_eq(n, 600, "the script gave %d labels", n);

	/* Both sides of the limit were tried. */
	cr_assert(ok > 50 && n - ok > 50, "%d of %d accepted", ok, n);
	cr_log_info("%d of %d accepted", ok, n);
}
