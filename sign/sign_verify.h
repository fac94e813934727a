/*
 * sign_verify - checking DKIM signatures (RFC 6376 section 6, RFC 8463):
 * the tag-list parser, key records, the per-signature check, and key
 * look-ups in DNS through c-ares. Used by `waxseal verify` and by tests;
 * the SMTP server never verifies.
 */
#ifndef WAXSEAL_SIGN_VERIFY_H
#define WAXSEAL_SIGN_VERIFY_H

#include <stddef.h>

#include "sign/sign_hdr.h"
#include "sign/sign_key.h"

/* One tag=value of a tag list; pointers into the parsed text. */
struct sign_tag {
	const char *name;
	size_t nlen;
	const char *v; /* value, FWS at both ends trimmed */
	size_t vlen;
};

#define SIGN_TAGS_MAX 64

/*
 * sign_verify_tags - parse a tag list (RFC 6376 3.2) into t. Returns the
 * number of tags, -EINVAL on bad syntax or a repeated tag, -E2BIG when
 * there are more than max.
 */
int sign_verify_tags(const char *s, size_t len, struct sign_tag *t, size_t max);

/* sign_verify_tag - the tag called name, or NULL. */
const struct sign_tag *sign_verify_tag(const struct sign_tag *t, size_t n,
				       const char *name);

enum sign_verify_status {
	SIGN_VERIFY_PASS,
	SIGN_VERIFY_FAIL,
	SIGN_VERIFY_PERMERROR,
	SIGN_VERIFY_TEMPERROR,
};

struct sign_verify_result {
	int status; /* enum sign_verify_status */
	char d[256], s[128], a[32];
	char reason[160];
};

/*
 * A key source: the TXT record for selector s in domain d, malloc'ed in
 * *txt. 0, -ENOENT (no such record: permerror) or another -errno
 * (temperror).
 */
typedef int (*sign_verify_key_fn)(void *arg, const char *d, const char *s,
				  char **txt);

/*
 * sign_verify_sig - check the DKIM-Signature field f[sig] of a message
 * whose fields are f[0..nf) and whose body (after the blank line) is
 * body. The fields' used flags are scratch. Fills res; returns its
 * status, or -ENOMEM.
 */
int sign_verify_sig(struct sign_hdr_field *f, size_t nf, size_t sig,
		    const char *body, size_t blen, sign_verify_key_fn fn,
		    void *arg, struct sign_verify_result *res);

/*
 * sign_verify_header_digest - the SHA-256 that the b= of f[sig] signs:
 * the fields its h= names, chosen bottom-up, then f[sig] itself with b=
 * emptied, canonicalised as its c= says (RFC 6376 3.7). 0, -EINVAL or
 * -ENOMEM.
 */
int sign_verify_header_digest(struct sign_hdr_field *f, size_t nf, size_t sig,
			      uint8_t md[32]);

/*
 * sign_verify_record - a key record "v=DKIM1; k=...; p=..." into pk;
 * 0, or -EINVAL / -EKEYREVOKED with a reason in why.
 */
int sign_verify_record(const char *txt, size_t len, struct sign_pubkey *pk,
		       char *why, size_t whylen);

/*
 * sign_verify_strip_b - copy field to out (len bytes room) with the
 * value of its b= tag removed, as the signature covers it. Returns the
 * new length, or -EINVAL when there is no b= tag.
 */
long sign_verify_strip_b(const char *field, size_t len, char *out);

/*
 * sign_verify_dns_txt - the TXT record at name, its strings joined,
 * malloc'ed in *txt. server is "HOST:PORT" ("[v6]:PORT") or NULL for
 * resolv.conf. 0, -ENOENT (no such name or no TXT) or -EAGAIN.
 */
int sign_verify_dns_txt(const char *server, const char *name, char **txt);

#endif
