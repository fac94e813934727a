/*
 * bench_msg - the newsletter message the load generator sends.
 *
 * bench_msg_init builds, once, a template of a newsletter-like message:
 * From/To/Subject/Date/Message-ID/MIME-Version, List-Unsubscribe with
 * one-click List-Unsubscribe-Post (RFC 8058), and a multipart/alternative
 * body with a text and an HTML part, padded with prose so the rendered
 * message is about the requested size. Every line ends in CRLF, stays
 * under 1000 octets (RFC 5321 section 4.5.3.1.6) and never starts with a
 * dot, so the message needs no dot-stuffing.
 *
 * The template is a list of fixed segments and variables (recipient
 * address, unsubscribe token, Message-ID, sender domain); bench_msg_render
 * copies the segments and formats the variables into a caller's buffer,
 * so each message is personalised without any allocation.
 */
#ifndef WAXSEAL_BENCH_MSG_H
#define WAXSEAL_BENCH_MSG_H

#include <stddef.h>
#include <stdint.h>

/* bench_msg_vars - what makes one message differ from the next. */
struct bench_msg_vars {
	uint64_t seq;	 /* message number, from 0 */
	uint64_t rcpt;	 /* number of the message's first recipient */
	unsigned domain; /* its domain: example<domain>.test */
	unsigned sender; /* sender domain: sender<sender>.test */
};

struct bench_msg_seg {
	const char *p;
	uint32_t len;
	char var; /* 0 for fixed text, else the variable's letter */
};

struct bench_msg {
	char *text; /* owns the fixed segments' bytes */
	struct bench_msg_seg *segs;
	size_t nsegs;
	size_t max_len;	    /* bound on bench_msg_render's output */
	size_t typical_len; /* rendered length of a typical message */
	uint64_t seed;	    /* makes tokens differ between runs */
};

/*
 * bench_msg_init - build the template for messages of about size bytes
 * (never less than the headers and MIME skeleton need). Returns 0 or
 * -ENOMEM.
 */
int bench_msg_init(struct bench_msg *m, size_t size, uint64_t seed);

/*
 * bench_msg_render - write one message followed by the ".\r\n" that ends
 * DATA into out, which must hold m->max_len bytes; returns the length.
 */
size_t bench_msg_render(const struct bench_msg *m,
			const struct bench_msg_vars *v, char *out);

/* bench_msg_rcpt - format recipient number r as user<r>@example<d>.test. */
int bench_msg_rcpt(char *out, size_t outlen, uint64_t r, unsigned domain);

/* bench_msg_free - release the template. */
void bench_msg_free(struct bench_msg *m);

#endif
