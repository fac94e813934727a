/*
 * relay_map - see relay_map.h. Entries live in one sorted array and are
 * found by binary search: maps are read once and looked up per message.
 */
#include "relay/relay_map.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* The largest map file read. */
#define MAP_FILE_MAX (64 * 1024 * 1024)

struct map_ent {
	char *key, *val;
	int line;
};

struct relay_map {
	struct map_ent *v;
	size_t n, cap;
};

/* map_add - append key and value (copied, key lower-cased). */
static int map_add(struct relay_map *m, const char *k, size_t kn,
		   const char *v, size_t vn, int line)
{
	struct map_ent *e;
	size_t i;

	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 16;

		e = realloc(m->v, cap * sizeof(*e));
		if (e == NULL)
			return -ENOMEM;
		m->v = e;
		m->cap = cap;
	}
	e = &m->v[m->n];
	e->key = strndup(k, kn);
	e->val = strndup(v, vn);
	e->line = line;
	if (e->key == NULL || e->val == NULL) {
		free(e->key);
		free(e->val);
		return -ENOMEM;
	}
	for (i = 0; i < kn; i++)
		e->key[i] = (char)tolower((unsigned char)e->key[i]);
	m->n++;
	return 0;
}

/* map_append - a continuation line adds " text" to the last value. */
static int map_append(struct relay_map *m, const char *v, size_t vn)
{
	struct map_ent *e = &m->v[m->n - 1];
	size_t old = strlen(e->val);
	char *p = realloc(e->val, old + vn + 2);

	if (p == NULL)
		return -ENOMEM;
	p[old] = ' ';
	memcpy(p + old + 1, v, vn);
	p[old + vn + 1] = '\0';
	e->val = p;
	return 0;
}

static int map_cmp(const void *a, const void *b)
{
	return strcmp(((const struct map_ent *)a)->key,
		      ((const struct map_ent *)b)->key);
}

/* map_trim - [*p, *end) without white space at either end. */
static void map_trim(const char **p, const char **end)
{
	while (*p < *end && isspace((unsigned char)**p))
		(*p)++;
	while (*end > *p && isspace((unsigned char)(*end)[-1]))
		(*end)--;
}

int relay_map_parse(struct relay_map **out, const char *name,
		    const char *buf, size_t len, char *err, size_t errlen)
{
	struct relay_map *m = calloc(1, sizeof(*m));
	const char *p = buf, *end = buf + len;
	int line = 0, r = 0;
	size_t i;

	if (m == NULL)
		return -ENOMEM;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *l = p, *le = eol ? eol : end, *k, *ke;

		p = eol ? eol + 1 : end;
		line++;
		if (memchr(l, '\0', (size_t)(le - l))) {
			snprintf(err, errlen, "%s:%d: a NUL byte", name, line);
			r = -EINVAL;
			goto fail;
		}
		if (l < le && (*l == ' ' || *l == '\t')) {
			map_trim(&l, &le);
			if (l == le)
				continue;
			if (m->n == 0) {
				snprintf(err, errlen,
					 "%s:%d: continuation line without "
					 "an entry before it",
					 name, line);
				r = -EINVAL;
				goto fail;
			}
			r = map_append(m, l, (size_t)(le - l));
			if (r < 0)
				goto fail;
			continue;
		}
		map_trim(&l, &le);
		if (l == le || *l == '#')
			continue;
		k = l;
		while (l < le && !isspace((unsigned char)*l))
			l++;
		ke = l;
		map_trim(&l, &le);
		if (l == le) {
			snprintf(err, errlen, "%s:%d: %.*s: no value", name,
				 line, (int)(ke - k > 200 ? 200 : ke - k), k);
			r = -EINVAL;
			goto fail;
		}
		r = map_add(m, k, (size_t)(ke - k), l, (size_t)(le - l),
			    line);
		if (r < 0)
			goto fail;
	}

	/* Sort for lookups; neighbours with one key are a duplicate. */
	if (m->n > 1)
		qsort(m->v, m->n, sizeof(*m->v), map_cmp);
	for (i = 1; i < m->n; i++) {
		if (strcmp(m->v[i - 1].key, m->v[i].key) == 0) {
			int a = m->v[i - 1].line, b = m->v[i].line;

			snprintf(err, errlen, "%s:%d: %.200s: also on line %d",
				 name, a > b ? a : b, m->v[i].key,
				 a > b ? b : a);
			r = -EINVAL;
			goto fail;
		}
	}
	*out = m;
	return 0;

fail:
	relay_map_free(m);
	return r;
}

/*
 * map_source - the file behind a map name as Postfix writes it: "type:"
 * prefixes of indexed maps name the source file that postmap(1) reads,
 * and that is the file waxseal reads; any other type is refused.
 */
static const char *map_source(const char *name, char *err, size_t errlen)
{
	static const char *const indexed[] = {"texthash", "hash",  "lmdb",
					      "btree",	  "cdb",   "dbm",
					      "sdbm",	  NULL};
	size_t n = strspn(name, "abcdefghijklmnopqrstuvwxyz");

	if (n == 0 || name[n] != ':')
		return name;
	for (size_t i = 0; indexed[i]; i++)
		if (strlen(indexed[i]) == n &&
		    strncmp(name, indexed[i], n) == 0)
			return name + n + 1;
	snprintf(err, errlen,
		 "%s: map type %.*s is not supported (a plain file of "
		 "\"key value\" lines is; hash:, lmdb:, cdb: and texthash: "
		 "name that file)",
		 name, (int)n, name);
	return NULL;
}

int relay_map_load(struct relay_map **out, const char *name, char *err,
		   size_t errlen)
{
	struct stat st;
	const char *path;
	char *buf = NULL;
	size_t got = 0;
	ssize_t n;
	int fd, r;

	if (name == NULL || name[0] == '\0')
		return relay_map_parse(out, "", "", 0, err, errlen);
	path = map_source(name, err, errlen);
	if (path == NULL)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return r;
	}
	if (fstat(fd, &st) < 0 || st.st_size > MAP_FILE_MAX) {
		r = st.st_size > MAP_FILE_MAX ? -EFBIG : -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	while (got < (size_t)st.st_size &&
	       (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
		got += (size_t)n;
	r = relay_map_parse(out, path, buf, got, err, errlen);

fail:
	free(buf);
	close(fd);
	return r;
}

const char *relay_map_get(const struct relay_map *m, const char *key)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcasecmp(key, m->v[mid].key);

		if (c == 0)
			return m->v[mid].val;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const char *relay_map_domain(const struct relay_map *m, const char *domain)
{
	const char *v, *d;

	if (m->n == 0)
		return NULL;
	v = relay_map_get(m, domain);
	if (v)
		return v;

	/* ".example.com" covers every name under example.com. */
	for (d = strchr(domain, '.'); d; d = strchr(d + 1, '.')) {
		v = relay_map_get(m, d);
		if (v)
			return v;
	}
	return NULL;
}

size_t relay_map_count(const struct relay_map *m)
{
	return m->n;
}

void relay_map_free(struct relay_map *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->n; i++) {
		free(m->v[i].key);
		free(m->v[i].val);
	}
	free(m->v);
	free(m);
}

int relay_map_hop_parse(struct relay_map_hop *h, const char *s)
{
	const char *host, *hend, *port = NULL;
	char *end;
	size_t n, i;
	long p;

	if (strncasecmp(s, "smtp:", 5) == 0)
		s += 5;
	h->mx = s[0] != '[';
	if (!h->mx) {
		host = s + 1;
		hend = strchr(host, ']');
		if (hend == NULL)
			return -EINVAL;
		if (hend[1] == ':')
			port = hend + 2;
		else if (hend[1] != '\0')
			return -EINVAL;
	} else {
		host = s;
		hend = strrchr(s, ':');
		if (hend && strchr(s, ':') != hend)
			return -EINVAL; /* a bare IPv6 address: use [] */
		if (hend)
			port = hend + 1;
		else
			hend = s + strlen(s);
	}
	n = (size_t)(hend - host);
	if (n == 0 || n >= sizeof(h->host))
		return -EINVAL;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)host[i];

		if (isspace(ch) || ch == '[' || ch == ']' || ch == '/')
			return -EINVAL;
		h->host[i] = (char)tolower(ch);
	}
	h->host[n] = '\0';
	h->port = 25;
	if (port) {
		errno = 0;
		p = strtol(port, &end, 10);
		if (errno || end == port || *end || p < 1 || p > 65535)
			return -EINVAL;
		h->port = (int)p;
	}
	return 0;
}
