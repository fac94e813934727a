/*
 * relay_map - the small lookup tables of delivery, in Postfix's plain
 * `key value` file format: transport_maps (domain -> next hop) and
 * destination_concurrency_limits (destination -> limit).
 *
 * One entry per line: a key, white space, a value (the rest of the line,
 * trimmed). Lines starting with `#` and empty lines are ignored; a line
 * that starts with white space continues the previous entry's value.
 * Keys are matched case-insensitively. A key given twice is an error, as
 * is a key with no value: both name the file and line.
 *
 * Next hops take Postfix's forms: `[host]:port` or `[host]` (no MX
 * lookup), `host:port` or `host` (MX lookup of host), each optionally
 * after `smtp:`; the port defaults to 25.
 *
 * A map is immutable once made; the caller owns it.
 */
#ifndef WAXSEAL_RELAY_MAP_H
#define WAXSEAL_RELAY_MAP_H

#include <stdbool.h>
#include <stddef.h>

struct relay_map;

/* A parsed next hop. */
struct relay_map_hop {
	char host[256];  /* lower case, no brackets */
	int port;
	bool mx;         /* look up MX records of host (no brackets) */
};

/*
 * relay_map_parse - a map from buf; name is used in messages
 * ("NAME:LINE: reason"). 0, -EINVAL (err says where), -ENOMEM.
 */
int relay_map_parse(struct relay_map **out, const char *name,
		    const char *buf, size_t len, char *err, size_t errlen);

/*
 * relay_map_load - a map from the file name; an empty name gives an empty
 * map. Postfix's "hash:FILE", "lmdb:FILE", "cdb:FILE", "texthash:FILE"
 * (and the other indexed types) read FILE, the text postmap(1) indexes;
 * other types ("regexp:", "mysql:", ...) are refused with -EINVAL. 0,
 * -errno from opening or reading (err names the file), -EINVAL.
 */
int relay_map_load(struct relay_map **out, const char *name, char *err,
		   size_t errlen);

/* relay_map_get - the value of key, or NULL. */
const char *relay_map_get(const struct relay_map *m, const char *key);

/*
 * relay_map_domain - the value for domain: the exact key, else `.parent`
 * keys from the nearest parent up (`.example.com` matches
 * a.b.example.com), or NULL.
 */
const char *relay_map_domain(const struct relay_map *m, const char *domain);

/* relay_map_count - the number of entries. */
size_t relay_map_count(const struct relay_map *m);

void relay_map_free(struct relay_map *m);

/*
 * relay_map_hop_parse - parse a next hop "[host]:port" and friends.
 * 0 or -EINVAL (empty host, bad port, unbalanced bracket).
 */
int relay_map_hop_parse(struct relay_map_hop *h, const char *s);

#endif
