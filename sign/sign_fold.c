/*
 * sign_fold - folded DKIM-Signature text.
 */
#include "sign/sign_fold.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* sign_fold_raw - append, growing the buffer. */
void sign_fold_raw(struct sign_fold *f, const char *s, size_t len)
{
	char *nb;
	size_t cap;

	if (f->err)
		return;
	if (f->len + len + 1 > f->cap) {
		cap = f->cap ? f->cap : 256;
		while (cap < f->len + len + 1)
			cap *= 2;
		nb = realloc(f->buf, cap);
		if (!nb) {
			f->err = -ENOMEM;
			return;
		}
		f->buf = nb;
		f->cap = cap;
	}
	memcpy(f->buf + f->len, s, len);
	f->len += len;
	f->buf[f->len] = '\0';
	f->col += len;
}

/* fold_break - end the line; the next starts with a TAB (FWS). */
static void fold_break(struct sign_fold *f)
{
	sign_fold_raw(f, "\r\n\t", 3);
	f->col = 1;
}

/* sign_fold_word - space-separated, folded before it when needed. */
void sign_fold_word(struct sign_fold *f, const char *s, size_t len)
{
	if (f->col + 1 + len > SIGN_FOLD_WIDTH)
		fold_break(f);
	else
		sign_fold_raw(f, " ", 1);
	sign_fold_raw(f, s, len);
}

/* sign_fold_glue - directly after the previous text. */
void sign_fold_glue(struct sign_fold *f, const char *s, size_t len)
{
	if (f->col + len > SIGN_FOLD_WIDTH)
		fold_break(f);
	sign_fold_raw(f, s, len);
}

/* sign_fold_b64 - fill each line to the width. */
void sign_fold_b64(struct sign_fold *f, const char *s, size_t len)
{
	while (len) {
		size_t room, n;

		if (f->col >= SIGN_FOLD_WIDTH)
			fold_break(f);
		room = SIGN_FOLD_WIDTH - f->col;
		n = len < room ? len : room;
		sign_fold_raw(f, s, n);
		s += n;
		len -= n;
	}
}
