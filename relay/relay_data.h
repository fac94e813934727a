/*
 * relay_data - the message reader of the SMTP server: DATA (RFC 5321
 * section 4.1.1.4, dot-terminated and dot-stuffed) and BDAT chunks
 * (RFC 3030, counted octets).
 *
 * The reader is fed the bytes that arrive from the client, in pieces of
 * any size (one byte at a time gives the same result as all at once), and
 * appends the message as it will be stored to a growable buffer: CRLF line
 * ends, dot-stuffing removed.
 *
 * End of DATA is exactly <CR><LF>.<CR><LF>, where the first <CR><LF> is
 * one the client sent (or the <CR><LF> of the DATA command line itself,
 * for an empty message: the reader starts "at the start of a line"). No
 * other sequence ends the message: <LF>.<LF>, <LF>.<CR><LF>,
 * <CR><LF>.<LF>, <CR>.<CR>, <CR><LF>.<CR><CR><LF> and the like are content,
 * so a message can never be split in two (SMTP smuggling).
 *
 * Bare line ends, per smtpd_forbid_bare_newline:
 *   normalize (default) - a bare <LF> is stored as <CR><LF>; it starts a
 *     new line for dot-unstuffing and line length, but never counts as the
 *     <CR><LF> before an end-of-data dot. A bare <CR> is kept as a byte.
 *   reject - a bare <LF> or bare <CR> makes the message fail with
 *     RELAY_DATA_E_BARE_LF once its end has been read.
 *
 * Limits: a line longer than 1000 octets with its CRLF (RFC 5321 section
 * 4.5.3.1.6), a NUL byte, or more than max_size stored octets make the
 * message fail; the reader still reads to the end of the message (so the
 * connection stays in sync) but stops storing once failed.
 */
#ifndef WAXSEAL_RELAY_DATA_H
#define WAXSEAL_RELAY_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum relay_data_err {
	RELAY_DATA_OK = 0,
	RELAY_DATA_E_SIZE,    /* 552 5.3.4 message too big */
	RELAY_DATA_E_LINE,    /* 500 5.5.2 line too long */
	RELAY_DATA_E_NUL,     /* 500 5.5.2 NUL byte */
	RELAY_DATA_E_BARE_LF, /* 550 5.5.2 bare <LF> or <CR> */
	RELAY_DATA_E_NOMEM,   /* 451 4.3.0 out of memory */
};

/* relay_data_status - what a feed call found. */
enum relay_data_status {
	RELAY_DATA_MORE, /* every byte consumed, message not ended */
	RELAY_DATA_END,	 /* end of message; *used tells where it was */
};

/*
 * The buffer the message is stored in. buf is malloc'd and grows; the
 * reader owns it until relay_data_take() hands it over. hdr_end is the
 * offset just past the blank line that ends the header section, or 0
 * while it has not been seen (a message without a body has none: then
 * the whole message is headers). hdr_end is the offset of the first
 * byte of the body: 2 for a message that starts with an empty line.
 */
struct relay_data {
	/* Settings, fixed for one message. */
	uint64_t max_size;
	bool reject_bare;
	bool bdat; /* counted chunks: no dots, no end marker */

	/* Output. */
	char *buf;
	size_t len, cap;
	size_t hdr_end;
	enum relay_data_err err;

	/* Scanner state; private. */
	int state;
	size_t line_len;
	bool real_crlf;
};

/*
 * relay_data_begin - start a message. max_size is message_size_limit (0:
 * none). bdat selects the BDAT mode. The buffer of a previous message is
 * reused.
 */
void relay_data_begin(struct relay_data *d, uint64_t max_size, bool reject_bare,
		      bool bdat);

/*
 * relay_data_feed - consume in[0..len). In DATA mode, returns
 * RELAY_DATA_END when the end-of-data line has been read and sets *used to
 * the number of bytes of in that belong to the message (the rest is the
 * client's next pipelined command); otherwise RELAY_DATA_MORE with
 * *used = len. In BDAT mode every byte is content: the caller feeds
 * exactly the chunk's octets and calls relay_data_finish() after the LAST
 * chunk. d->err says whether the message has failed.
 *
 * Once the end has been read (or relay_data_finish() called), further
 * calls consume nothing: RELAY_DATA_END with *used = 0. The line length
 * counts stored octets (RFC 5321 section 4.5.3.1.6: a dot removed by
 * unstuffing does not count); max_size counts stored octets, the CRLF
 * before the end-of-data dot included. When several limits break, d->err
 * holds the first, the same for any split of the input.
 */
enum relay_data_status relay_data_feed(struct relay_data *d, const char *in,
				       size_t len, size_t *used);

/*
 * relay_data_finish - end of a BDAT message (after BDAT ... LAST). A
 * message that does not end in CRLF gets one (RFC 3030 section 2 leaves
 * the final line end to the client; the spool stores complete lines).
 * A <CR> that is the last byte is a bare <CR>; an empty message stays
 * empty. Does nothing in DATA mode.
 */
void relay_data_finish(struct relay_data *d);

/*
 * relay_data_take - hand the stored message to the caller (*len bytes,
 * free() it) and leave the reader empty. The pointer is never NULL for an
 * empty message; NULL (with *len = 0) only when out of memory.
 */
char *relay_data_take(struct relay_data *d, size_t *len);

/* relay_data_free - release the buffer. */
void relay_data_free(struct relay_data *d);

/*
 * relay_data_reply - the SMTP reply line for err, without CRLF, e.g.
 * "552 5.3.4 Message size exceeds fixed limit"; NULL for RELAY_DATA_OK
 * (the caller answers success itself, once the message is on disk).
 */
const char *relay_data_reply(enum relay_data_err err);

#endif
