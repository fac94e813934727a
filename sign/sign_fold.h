/*
 * sign_fold - building a DKIM-Signature field folded into lines of at
 * most SIGN_FOLD_WIDTH characters (RFC 5322 2.1.1 asks for under 78).
 * Folding happens only where RFC 6376 allows FWS: between tags, around
 * the colons of h=, and inside base64 values.
 */
#ifndef WAXSEAL_SIGN_FOLD_H
#define WAXSEAL_SIGN_FOLD_H

#include <stddef.h>

#define SIGN_FOLD_WIDTH 76

/* A growing buffer; col is the length of the current line so far. */
struct sign_fold {
	char *buf;
	size_t len, cap, col;
	int err; /* -ENOMEM once any append failed */
};

/* sign_fold_raw - append len bytes as they are (no line accounting). */
void sign_fold_raw(struct sign_fold *f, const char *s, size_t len);

/* sign_fold_word - " word", or CRLF TAB word when the line would be full. */
void sign_fold_word(struct sign_fold *f, const char *s, size_t len);

/* sign_fold_glue - word with no space before it, folding if needed. */
void sign_fold_glue(struct sign_fold *f, const char *s, size_t len);

/* sign_fold_b64 - a base64 value cut wherever the line is full. */
void sign_fold_b64(struct sign_fold *f, const char *s, size_t len);

#endif
