/*
 * relay_dsn - delivery status notifications: the bounce waxseal sends to
 * a message's envelope sender when some of its recipients failed for
 * good, or have waited long enough that the sender should hear of the
 * delay.
 *
 * A notification is one multipart/report message (RFC 6522) with
 * report-type=delivery-status and three parts:
 *   1. text/plain, for a person: which recipients, and why;
 *   2. message/delivery-status (RFC 3464): the per-message fields
 *      Reporting-MTA and Arrival-Date, then one block per recipient with
 *      Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
 *      Last-Attempt-Date and, for a delayed recipient with a known
 *      deadline, Will-Retry-Until;
 *   3. text/rfc822-headers: the original's header section (never its
 *      body, which the sender has and which may be large).
 * With a UTF-8 recipient (SMTPUTF8, RFC 6531) part 2 is RFC 6533's
 * message/global-delivery-status and the recipient's Final-Recipient is
 * "utf-8; " and the address in utf-8-addr-unitext form; when the
 * original came with SMTPUTF8 and its header section holds 8-bit octets
 * part 3 is message/global-headers (other 8-bit headers are not known to
 * be UTF-8: text/rfc822-headers, 8bit). A notification that
 * holds UTF-8 anywhere must be sent with SMTPUTF8 (and BODY=8BITMIME).
 * Every line ends in CRLF and is at most 998 octets (RFC 5322 section
 * 2.1.1): long diagnostics are folded at spaces, and a run of more than
 * about 990 octets without one is broken where it stands (the unfolded
 * value then has a space there). Control characters in caller-supplied
 * text become '?'; so do non-ASCII octets, except in addresses.
 *
 * The module is pure: no I/O, no event loop, no global state but a
 * counter that keeps Message-IDs unique; any thread may call it.
 */
#ifndef WAXSEAL_RELAY_DSN_H
#define WAXSEAL_RELAY_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One recipient the notification reports on. */
struct relay_dsn_rcpt {
	const char *rcpt;	 /* the envelope recipient */
	const char *action;	 /* "failed" or "delayed" (RFC 3464 section
				  * 2.3.3 also allows "delivered", "relayed",
				  * "expanded"); NULL: "failed" */
	const char *status;	 /* enhanced code "5.1.1"; NULL or malformed:
				  * 5.0.0, or 4.0.0 when delayed */
	const char *remote_mta;	 /* MX host name, or NULL */
	const char *diag;	 /* the remote reply "550 5.1.1 no such
				  * user" (CR/LF already removed), or our
				  * own reason; NULL if none */
	int64_t last_attempt_ms; /* Last-Attempt-Date; 0: now_ms */
	int64_t retry_until_ms;	 /* delayed: Will-Retry-Until; 0: none */
};

/* What a notification is about. Strings are NUL-terminated. */
struct relay_dsn_in {
	const char *myhostname; /* Reporting-MTA, From: MAILER-DAEMON@ */
	const char *queue_id;	/* of the original message */
	const char *sender;	/* envelope sender: the DSN goes there */
	int64_t arrival_ms;	/* of the original */
	int64_t now_ms;
	const struct relay_dsn_rcpt *rcpt;
	size_t nrcpt;
	const char *orig; /* the original message, CRLF lines; may be
			   * NULL when origlen is 0 */
	size_t origlen;
	bool smtputf8; /* the original came with SMTPUTF8: 8-bit in its
			* header section is UTF-8 */
};

/*
 * relay_dsn_build - one multipart/report (RFC 6522) delivery status
 * notification (RFC 3464) for the failed or delayed recipients of one
 * message, as described above. Headers: From: MAILER-DAEMON@myhostname
 * (Mail Delivery System), To: sender, Subject: "Undelivered Mail
 * Returned to Sender" (or "Delayed Mail (still being retried)" when
 * every recipient is delayed), Date (now_ms), Message-ID
 * <queue_id.dsn.now_ms.counter@myhostname> unique per call within the
 * process, MIME-Version, Auto-Submitted: auto-replied (RFC 3834).
 *
 * Diagnostic-Code is "smtp; reply" when diag starts with an SMTP reply
 * code, and "X-Waxseal; reason" otherwise (RFC 3464 section 2.3.6).
 *
 * *out is malloc'd and holds *outlen octets plus a NUL (the caller
 * frees it). Returns 0; -EINVAL when there are no recipients, an
 * action is unknown, a required string is NULL, or the sender is the
 * null sender "" (a bounce is never sent to <>, RFC 5321 section
 * 4.5.5); -ENOMEM. On error *out is NULL.
 */
int relay_dsn_build(const struct relay_dsn_in *in, char **out, size_t *outlen);

/*
 * relay_dsn_status - the enhanced status code (RFC 3463) of an SMTP
 * reply into buf: the one the reply carries right after its 3-digit code
 * ("550 5.1.1 ..." or "550-5.1.1 ..."), when its class agrees with the
 * code's first digit; otherwise one derived from the basic code: 2xx
 * 2.0.0, 5xx 5.0.0, 4xx 4.0.0. A NULL reply, or one that does not start
 * with a reply code, counts as temporary: 4.0.0.
 */
void relay_dsn_status(const char *reply, char buf[16]);

/* Room for a boundary from relay_dsn_boundary(), NUL included. */
#define RELAY_DSN_BOUNDARY_MAX 32

/*
 * relay_dsn_boundary - a MIME boundary (RFC 2046 section 5.1.1) that
 * does not occur anywhere in content[0..len), derived from seed; the
 * same content and seed give the same boundary. relay_dsn_build() uses
 * it; it is public for tests.
 */
void relay_dsn_boundary(const char *content, size_t len, uint64_t seed,
			char buf[RELAY_DSN_BOUNDARY_MAX]);

#endif
