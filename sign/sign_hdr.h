/*
 * sign_hdr - the header section as DKIM sees it: fields split out of a
 * header block, chosen for h= the way RFC 6376 5.4.2 orders them, and the
 * author address taken from a From field (RFC 5322 3.4).
 */
#ifndef WAXSEAL_SIGN_HDR_H
#define WAXSEAL_SIGN_HDR_H

#include <stdbool.h>
#include <stddef.h>

/* One header field inside a caller's block; pointers into that block. */
struct sign_hdr_field {
	const char *p; /* start of the name */
	size_t len;    /* whole field with its folding and final CRLF */
	size_t nlen;   /* length of the name, white space trimmed */
	bool used;     /* taken by sign_hdr_pick already */
};

/*
 * sign_hdr_split - the fields of blk (CRLF-terminated lines; a line that
 * starts with SP or HTAB continues the field before). *out is malloc'ed
 * (caller frees) and points into blk. Lines without a colon are not
 * fields and are skipped. 0 or -ENOMEM.
 */
int sign_hdr_split(const char *blk, size_t len, struct sign_hdr_field **out,
		   size_t *n);

/* sign_hdr_is - whether field f is named name (case-insensitive). */
bool sign_hdr_is(const struct sign_hdr_field *f, const char *name, size_t nlen);

/* sign_hdr_count - how many fields are named name. */
size_t sign_hdr_count(const struct sign_hdr_field *v, size_t n,
		      const char *name, size_t nlen);

/*
 * sign_hdr_pick - the last field named name that is not yet used, marked
 * used (RFC 6376 5.4.2: instances are signed from the bottom up); NULL
 * when none is left, which signs the null string.
 */
struct sign_hdr_field *sign_hdr_pick(struct sign_hdr_field *v, size_t n,
				     const char *name, size_t nlen);

/* sign_hdr_value - the field's value: after the colon, up to the CRLF. */
void sign_hdr_value(const struct sign_hdr_field *f, const char **val,
		    size_t *vlen);

/*
 * sign_hdr_from_addr - the first mailbox of a From value: display names,
 * comments, quoted strings, angle brackets and group syntax are dealt
 * with. Writes the address lower-cased to addr and its domain to dom (both
 * NUL-terminated). 0, -EINVAL when no address with a domain is found, or
 * -ENAMETOOLONG when a buffer is too small.
 */
int sign_hdr_from_addr(const char *val, size_t vlen, char *addr, size_t addrlen,
		       char *dom, size_t domlen);

#endif
