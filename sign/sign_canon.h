/*
 * sign_canon - DKIM canonicalisation (RFC 6376 section 3.4).
 *
 * Header fields are canonicalised one at a time into a caller's buffer.
 * The body is canonicalised while it streams in: sign_canon_body_update()
 * takes chunks of any size and feeds SHA-256 directly; runs of trailing
 * white space and of empty lines are held as counts, so memory use does
 * not depend on the body and the result does not depend on how the body
 * was cut into chunks.
 */
#ifndef WAXSEAL_SIGN_CANON_H
#define WAXSEAL_SIGN_CANON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/sha.h>

enum sign_canon_alg { SIGN_CANON_SIMPLE, SIGN_CANON_RELAXED };

/* Body canonicaliser state; plain data, may be copied. */
struct sign_canon_body {
	int alg; /* enum sign_canon_alg */
	SHA256_CTX sha;
	uint64_t crlf; /* line ends seen but not yet hashed */
	bool wsp;      /* relaxed: white space seen but not yet hashed */
	bool cr;       /* a CR that may start a CRLF in the next chunk */
	bool content;  /* something other than line ends was hashed */
	uint64_t out;  /* bytes hashed, for tests */
};

/*
 * sign_canon_parse - "relaxed/simple" etc. into header and body algs; a
 * lone word names the header alg and the body is simple (RFC 6376
 * 3.5, c=). 0 or -EINVAL.
 */
int sign_canon_parse(const char *s, int *hdr, int *body);

/* sign_canon_name - "simple" or "relaxed". */
const char *sign_canon_name(int alg);

/* sign_canon_body_init - start a body hash with alg. */
void sign_canon_body_init(struct sign_canon_body *b, int alg);

/* sign_canon_body_update - canonicalise and hash the next len bytes. */
void sign_canon_body_update(struct sign_canon_body *b, const void *p,
			    size_t len);

/* sign_canon_body_final - finish; writes the 32-byte SHA-256 to md. */
void sign_canon_body_final(struct sign_canon_body *b, uint8_t md[32]);

/*
 * sign_canon_header - canonicalise one header field (name, colon, value,
 * with its folding and final CRLF, as in the message) with alg into out,
 * which must hold len + 3 bytes. Returns the length written. Relaxed
 * lower-cases the name, unfolds, reduces white space runs to one space
 * and drops white space at the end of the value and around the colon
 * (RFC 6376 3.4.2); simple copies the field (3.4.1), adding a CRLF if it
 * lacks one.
 */
size_t sign_canon_header(int alg, const char *field, size_t len, char *out);

#endif
