/*
 * sign_table - KeyTable and SigningTable parsing and lookup, in the
 * formats OpenDKIM documents in opendkim.conf(5).
 */
#include "sign/sign_table.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* A table larger than this is a mistake, not a configuration. */
#define TABLE_FILE_MAX (64 * 1024 * 1024)
/* Words on one line: PATTERN NAME SIGNER. */
#define TABLE_WORDS 3

/* sign_table_path - the file part of a table specification. */
const char *sign_table_path(const char *spec, bool *refile)
{
	*refile = false;
	if (strncmp(spec, "refile:", 7) == 0) {
		*refile = true;
		return spec + 7;
	}
	if (strncmp(spec, "file:", 5) == 0)
		return spec + 5;
	return spec;
}

/*
 * table_words - split one line into up to max white-space separated
 * words, each NUL-terminated in place; a '#' outside a word starts a
 * comment. Returns the number of words, or max + 1 if there are more.
 */
static int table_words(char *line, char **w, int max)
{
	int n = 0;
	char *p = line;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r')
			p++;
		if (*p == '\0' || *p == '#')
			return n;
		if (n == max)
			return max + 1;
		w[n++] = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\r')
			p++;
		if (*p)
			*p++ = '\0';
	}
}

/* table_line_cb - what one parser does with the words of one line. */
typedef int (*table_line_cb)(struct sign_table *t, char **w, int n, int line,
			     const char *name, char *err, size_t errlen);

/* table_parse - the line loop shared by both tables. */
static int table_parse(struct sign_table *t, const char *name, const char *buf,
		       size_t len, table_line_cb cb, char *err, size_t errlen)
{
	char *copy, *line, *next;
	char *w[TABLE_WORDS];
	int lineno = 0, n, r = 0;

	copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, buf, len);
	copy[len] = '\0';

	for (line = copy; line && r == 0; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		if (strlen(line) !=
		    (size_t)((next ? next - 1 : copy + len) - line)) {
			snprintf(err, errlen, "%s:%d: NUL byte in line", name,
				 lineno);
			r = -EINVAL;
			break;
		}
		n = table_words(line, w, TABLE_WORDS);
		if (n == 0)
			continue;
		r = cb(t, w, n, lineno, name, err, errlen);
	}
	free(copy);
	return r;
}

/* table_key_line - "NAME DOMAIN:SELECTOR:KEYFILE". */
static int table_key_line(struct sign_table *t, char **w, int n, int line,
			  const char *name, char *err, size_t errlen)
{
	struct sign_table_key *nk, *k;
	char *c1, *c2;

	if (n != 2) {
		snprintf(err, errlen,
			 "%s:%d: expected NAME DOMAIN:SELECTOR:KEYFILE", name,
			 line);
		return -EINVAL;
	}
	c1 = strchr(w[1], ':');
	c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (!c1 || !c2 || c1 == w[1] || c2 == c1 + 1 || c2[1] == '\0') {
		snprintf(err, errlen,
			 "%s:%d: expected DOMAIN:SELECTOR:KEYFILE, got %.64s",
			 name, line, w[1]);
		return -EINVAL;
	}

	/* waxseal reads keys only from files: OpenDKIM's inline PEM is
	 * not accepted, so keys never sit in a world-readable table. */
	if (c2[1] != '/' && strncmp(c2 + 1, "./", 2) != 0 &&
	    strncmp(c2 + 1, "../", 3) != 0) {
		snprintf(err, errlen,
			 "%s:%d: KEYFILE must be a path (/, ./ or ../)", name,
			 line);
		return -EINVAL;
	}

	nk = realloc(t->keys, (t->nkeys + 1) * sizeof(*nk));
	if (!nk)
		return -ENOMEM;
	t->keys = nk;
	k = &t->keys[t->nkeys];
	*c1 = *c2 = '\0';
	k->name = strdup(w[0]);
	k->domain = strdup(w[1]);
	k->selector = strdup(c1 + 1);
	k->path = strdup(c2 + 1);
	k->line = line;
	t->nkeys++;
	if (!k->name || !k->domain || !k->selector || !k->path)
		return -ENOMEM;
	return 0;
}

/*
 * table_plain_pattern_ok - whether a plain table's pattern can match: no
 * '*', or exactly "*", "*@domain" or "user@*".
 */
static bool table_plain_pattern_ok(const char *pat)
{
	const char *star = strchr(pat, '*');
	size_t len = strlen(pat);

	if (!star)
		return true;
	if (strchr(star + 1, '*'))
		return false;
	if (len == 1)
		return true;
	if (star == pat)
		return pat[1] == '@' && pat[2] != '\0' && pat[2] != '.' &&
		       !strchr(pat + 2, '@');
	return star == pat + len - 1 && len >= 3 && pat[len - 2] == '@';
}

/* table_sig_line - "PATTERN NAME [SIGNER]". */
static int table_sig_line(struct sign_table *t, char **w, int n, int line,
			  const char *name, char *err, size_t errlen)
{
	struct sign_table_sig *ns, *s;

	if (n < 2 || n > 3) {
		snprintf(err, errlen,
			 "%s:%d: expected PATTERN KEYNAME [SIGNER]", name,
			 line);
		return -EINVAL;
	}
	/* A plain table matches whole keys: a wildcard other than the
	 * forms the look-up builds would be a line that never matches. */
	if (!t->refile && !table_plain_pattern_ok(w[0])) {
		snprintf(err, errlen,
			 "%s:%d: %.128s: '*' in a plain SigningTable matches "
			 "only as *, *@domain or user@*; name the file "
			 "refile:%s for wildcard patterns (there every line "
			 "is a whole-address pattern: *@example.com, not "
			 "example.com)",
			 name, line, w[0], name);
		return -EINVAL;
	}
	ns = realloc(t->sigs, (t->nsigs + 1) * sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	t->sigs = ns;
	s = &t->sigs[t->nsigs];
	s->pattern = strdup(w[0]);
	s->keyname = strdup(w[1]);
	s->signer = n == 3 ? strdup(w[2]) : NULL;
	s->line = line;
	t->nsigs++;
	if (!s->pattern || !s->keyname || (n == 3 && !s->signer))
		return -ENOMEM;
	return 0;
}

/* sign_table_parse_keys - KeyTable text. */
int sign_table_parse_keys(struct sign_table *t, const char *name,
			  const char *buf, size_t len, char *err, size_t errlen)
{
	return table_parse(t, name, buf, len, table_key_line, err, errlen);
}

/* sign_table_parse_signing - SigningTable text. */
int sign_table_parse_signing(struct sign_table *t, const char *name,
			     const char *buf, size_t len, char *err,
			     size_t errlen)
{
	return table_parse(t, name, buf, len, table_sig_line, err, errlen);
}

/* table_read - a whole file into memory. */
static int table_read(const char *path, char **buf, size_t *len, char *err,
		      size_t errlen)
{
	struct stat st;
	ssize_t got;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: cannot open: %s", path,
			 strerror(errno));
		return r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > TABLE_FILE_MAX) {
		snprintf(err, errlen, "%s: not a regular file of sane size",
			 path);
		close(fd);
		return -EINVAL;
	}
	*buf = malloc((size_t)st.st_size + 1);
	if (!*buf) {
		close(fd);
		return -ENOMEM;
	}
	got = read(fd, *buf, (size_t)st.st_size);
	r = got < 0 ? -errno : 0;
	if (r < 0) {
		snprintf(err, errlen, "%s: cannot read: %s", path,
			 strerror(errno));
		free(*buf);
	}
	*len = got < 0 ? 0 : (size_t)got;
	close(fd);
	return r;
}

/* sign_table_load - both files, then the cross-check. */
int sign_table_load(struct sign_table *t, const char *keyspec,
		    const char *sigspec, char *err, size_t errlen)
{
	const char *kp, *sp;
	bool krefile;
	char *buf;
	size_t len, i;
	int r;

	kp = sign_table_path(keyspec, &krefile);
	sp = sign_table_path(sigspec, &t->refile);
	r = table_read(kp, &buf, &len, err, errlen);
	if (r < 0)
		return r;
	r = sign_table_parse_keys(t, kp, buf, len, err, errlen);
	free(buf);
	if (r < 0)
		return r;
	r = table_read(sp, &buf, &len, err, errlen);
	if (r < 0)
		return r;
	r = sign_table_parse_signing(t, sp, buf, len, err, errlen);
	free(buf);
	if (r < 0)
		return r;

	for (i = 0; i < t->nsigs; i++) {
		if (strcmp(t->sigs[i].keyname, "%") == 0 ||
		    sign_table_find_key(t, t->sigs[i].keyname) >= 0)
			continue;
		snprintf(err, errlen, "%s:%d: key name %.128s not in %s", sp,
			 t->sigs[i].line, t->sigs[i].keyname, kp);
		return -EINVAL;
	}
	return 0;
}

/* sign_table_find_key - exact name, case-insensitive, first wins. */
long sign_table_find_key(const struct sign_table *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->nkeys; i++)
		if (strcasecmp(t->keys[i].name, name) == 0)
			return (long)i;
	return -1;
}

/* sign_table_match - iterative glob with one backtrack point. */
bool sign_table_match(const char *pat, const char *s)
{
	const char *star = NULL, *retry = NULL;

	while (*s) {
		if (*pat == '*') {
			star = pat++;
			retry = s;
			continue;
		}
		if (*pat && (*pat | 32) == (*s | 32) &&
		    ((*pat >= 'A' && *pat <= 'Z') ||
		     (*pat >= 'a' && *pat <= 'z') || *pat == *s)) {
			pat++;
			s++;
			continue;
		}
		if (!star)
			return false;
		pat = star + 1;
		s = ++retry;
	}
	while (*pat == '*')
		pat++;
	return *pat == '\0';
}

/* table_exact - append every entry whose pattern is exactly key. */
static size_t table_exact(const struct sign_table *t, const char *key,
			  size_t *out, size_t n, size_t max)
{
	size_t i;

	for (i = 0; i < t->nsigs && n < max; i++)
		if (strcasecmp(t->sigs[i].pattern, key) == 0)
			out[n++] = i;
	return n;
}

/* sign_table_lookup - refile: patterns in order; else OpenDKIM's order. */
size_t sign_table_lookup(const struct sign_table *t, const char *addr,
			 size_t *out, size_t max)
{
	const char *at = strrchr(addr, '@'), *d;
	size_t i, n = 0, ul;
	char key[1024];

	if (t->refile) {
		for (i = 0; i < t->nsigs && n < max; i++)
			if (sign_table_match(t->sigs[i].pattern, addr))
				out[n++] = i;
		return n;
	}
	if (!at || strlen(addr) >= sizeof(key) - 2)
		return 0;
	ul = (size_t)(at - addr);

	/* user@host, then host, then *@host (the same, as it is written
	 * in tables shared with refile:). */
	n = table_exact(t, addr, out, n, max);
	n = table_exact(t, at + 1, out, n, max);
	snprintf(key, sizeof(key), "*@%s", at + 1);
	n = table_exact(t, key, out, n, max);

	/* user@.parent for each parent domain, nearest first. */
	for (d = strchr(at + 1, '.'); d; d = strchr(d + 1, '.')) {
		snprintf(key, sizeof(key), "%.*s@%s", (int)ul, addr, d);
		n = table_exact(t, key, out, n, max);
	}

	/* .parent likewise, then user@*, then *. */
	for (d = strchr(at + 1, '.'); d; d = strchr(d + 1, '.'))
		n = table_exact(t, d, out, n, max);
	snprintf(key, sizeof(key), "%.*s@*", (int)ul, addr);
	n = table_exact(t, key, out, n, max);
	return table_exact(t, "*", out, n, max);
}

/* sign_table_free - every string, both arrays. */
void sign_table_free(struct sign_table *t)
{
	size_t i;

	for (i = 0; i < t->nkeys; i++) {
		free(t->keys[i].name);
		free(t->keys[i].domain);
		free(t->keys[i].selector);
		free(t->keys[i].path);
	}
	for (i = 0; i < t->nsigs; i++) {
		free(t->sigs[i].pattern);
		free(t->sigs[i].keyname);
		free(t->sigs[i].signer);
	}
	free(t->keys);
	free(t->sigs);
	memset(t, 0, sizeof(*t));
}
