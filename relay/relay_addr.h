/*
 * relay_addr - RFC 5321 section 4.1.2 syntax of the SMTP server's
 * arguments: reverse and forward paths, and ESMTP parameters of MAIL and
 * RCPT.
 *
 * A path is "<" [ A-d-l ":" ] Mailbox ">" or, for MAIL, the null path
 * "<>". A source route (A-d-l, "@a,@b:") is accepted and dropped, as
 * section 3.3 and Appendix C tell servers to do. Mailbox is Local-part "@"
 * ( Domain / address-literal ): Local-part a Dot-string or a
 * Quoted-string (which may hold "@", "%", "!" and escaped characters);
 * Domain dot-separated labels of letters, digits and hyphens, or U-labels
 * (UTF-8) when SMTPUTF8 was given (RFC 6531), a label at most 63 and
 * the domain at most 255 octets as the DNS carries them (a U-label as its
 * A-label, RFC 5890); address-literal
 * "[1.2.3.4]", "[IPv6:...]". The result is the mailbox exactly as the
 * client wrote it (quoted local parts stay quoted), without the route.
 *
 * waxseal has no local domains: this module only decides syntax. That a
 * client may relay at all is decided by its address (mynetworks), never by
 * anything in the path.
 */
#ifndef WAXSEAL_RELAY_ADDR_H
#define WAXSEAL_RELAY_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest path (RFC 5321 section 4.5.3.1.3) and parts. */
#define RELAY_ADDR_PATH_MAX 256
#define RELAY_ADDR_LOCAL_MAX 64
#define RELAY_ADDR_DOMAIN_MAX 255

/* ESMTP parameters waxseal understands. */
struct relay_addr_params {
	int64_t size;  /* SIZE=, -1 when absent */
	int body;      /* 0 absent, 7 for 7BIT, 8 for 8BITMIME */
	bool smtputf8; /* SMTPUTF8 */
};

/*
 * relay_addr_parse_path - parse the argument after "MAIL FROM:" or
 * "RCPT TO:" (s points at "<", len bytes up to the end of the command
 * line without CRLF). Writes the mailbox, NUL-terminated, to out (room for
 * RELAY_ADDR_PATH_MAX + 1 bytes; "" for "<>") and sets *rest to the first
 * byte after ">" (the parameters). allow_null: "<>" accepted (MAIL only).
 * utf8: non-ASCII allowed in the mailbox (SMTPUTF8 given).
 * Returns 0, or -EINVAL with a one-line reason in *why ("missing '<'",
 * "bad domain", ...), a static string.
 */
int relay_addr_parse_path(const char *s, size_t len, bool allow_null, bool utf8,
			  char *out, const char **rest, const char **why);

/*
 * relay_addr_parse_params - parse the ESMTP parameters of MAIL (mail true)
 * or RCPT in s[0..len). Known keywords are case-insensitive: SIZE=n,
 * BODY=7BIT|8BITMIME, SMTPUTF8 (MAIL only). Returns 0; -EINVAL with *why
 * for a malformed or repeated parameter; -ENOTSUP with *why for a keyword
 * waxseal does not offer (answer 555 5.5.4).
 */
int relay_addr_parse_params(const char *s, size_t len, bool mail,
			    struct relay_addr_params *p, const char **why);

/*
 * relay_addr_domain - the domain part of a parsed mailbox (after the last
 * "@" outside quotes), or NULL for "" or a mailbox without one.
 */
const char *relay_addr_domain(const char *mailbox);

/*
 * relay_addr_has_8bit - whether s[0..len) holds a byte above 0x7f.
 */
bool relay_addr_has_8bit(const char *s, size_t len);

#endif
