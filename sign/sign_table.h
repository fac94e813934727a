/*
 * sign_table - OpenDKIM's KeyTable and SigningTable, read from files.
 *
 * KeyTable lines: "NAME DOMAIN:SELECTOR:KEYFILE". A DOMAIN of "%" is the
 * signing domain taken from the From field.
 *
 * SigningTable lines: "PATTERN NAME [SIGNER]". Given as "refile:PATH",
 * PATTERN is a wildcard ("*" matches any run of characters) tried against
 * the From address in file order. Given as "file:PATH" or a bare PATH,
 * PATTERN is a literal, tried in OpenDKIM's documented order for
 * user@host: "user@host", "host", then "*@host" (which OpenDKIM would
 * never match, though tables written for refile: use it), "user@.parent"
 * for each parent domain from the nearest, ".parent" likewise, "user@*",
 * and "*"; any other pattern with a '*' is refused at load, since it
 * could never match. A NAME of just "%" stands for the From domain;
 * SIGNER (the i= value) may hold "%" for the From domain as well.
 *
 * '#' starts a comment; blank lines are ignored. Matching is ASCII
 * case-insensitive. Errors read "PATH:LINE: reason".
 *
 * Ownership: a sign_table owns all its strings; it is read-only after
 * sign_table_parse_* and may be shared by threads.
 */
#ifndef WAXSEAL_SIGN_TABLE_H
#define WAXSEAL_SIGN_TABLE_H

#include <stdbool.h>
#include <stddef.h>

struct sign_table_key {
	char *name;
	char *domain; /* "%" for the From domain */
	char *selector;
	char *path;
	int line;
};

struct sign_table_sig {
	char *pattern;
	char *keyname; /* "%" for the From domain */
	char *signer;  /* NULL, or the i= value with "%" unexpanded */
	int line;
};

struct sign_table {
	struct sign_table_key *keys;
	size_t nkeys;
	struct sign_table_sig *sigs;
	size_t nsigs;
	bool refile; /* SigningTable patterns are wildcards */
};

/*
 * sign_table_path - strip a "file:" or "refile:" prefix; *refile says
 * which. The result points into spec.
 */
const char *sign_table_path(const char *spec, bool *refile);

/*
 * sign_table_parse_keys / sign_table_parse_signing - parse a table held
 * in buf into t (appending); name is used in messages. 0, -EINVAL or
 * -ENOMEM.
 */
int sign_table_parse_keys(struct sign_table *t, const char *name,
			  const char *buf, size_t len, char *err,
			  size_t errlen);
int sign_table_parse_signing(struct sign_table *t, const char *name,
			     const char *buf, size_t len, char *err,
			     size_t errlen);

/*
 * sign_table_load - read both files named by the configuration values
 * keyspec and sigspec (prefixes as sign_table_path) and check that every
 * SigningTable NAME is in the KeyTable (a "%" NAME is checked when used).
 * 0 or -errno with a message in err.
 */
int sign_table_load(struct sign_table *t, const char *keyspec,
		    const char *sigspec, char *err, size_t errlen);

/* sign_table_find_key - the KeyTable entry called name, or -1. */
long sign_table_find_key(const struct sign_table *t, const char *name);

/*
 * sign_table_lookup - the SigningTable entries that apply to the
 * lower-cased address addr ("user@domain"), in order; at most max (1
 * unless multiple signatures are wanted). Returns how many indexes into
 * t->sigs were written to out.
 */
size_t sign_table_lookup(const struct sign_table *t, const char *addr,
			 size_t *out, size_t max);

/* sign_table_match - wildcard match, '*' any run, case-insensitive. */
bool sign_table_match(const char *pat, const char *s);

/* sign_table_free - release what t owns; t may be parsed into again. */
void sign_table_free(struct sign_table *t);

#endif
