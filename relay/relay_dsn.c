/*
 * relay_dsn - delivery status notifications; see relay_dsn.h for the
 * contract.
 *
 * The three parts are written first, one after the other, into one
 * buffer; the boundary is then chosen so that it occurs nowhere in that
 * buffer, and the message is assembled around the parts. Every writer
 * appends to a growable buffer that remembers a failed allocation, so
 * the steps need no error checks of their own: the build checks once at
 * the end.
 *
 * Internationalized mail (RFC 6533): a UTF-8 sender goes into To: as it
 * is (RFC 6532), a UTF-8 recipient into the text part as it is and into
 * Final-Recipient with the "utf-8" address type; the delivery-status
 * part is then message/global-delivery-status, and the header section of
 * an SMTPUTF8 original holding UTF-8 is message/global-headers. Such a
 * notification needs SMTPUTF8 when its own header holds UTF-8, and
 * BODY=8BITMIME, which the caller asks for.
 */
#include "relay/relay_dsn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Fold before a word that would end past this column. */
#define RELAY_DSN_SOFT 78

/*
 * Break inside a word at this column: RFC 5322 section 2.1.1 allows 998
 * octets before the CRLF; the margin covers a continuation's indent.
 */
#define RELAY_DSN_HARD 990

/* Growable output; nomem is set by the first failed allocation. */
struct relay_dsn_buf {
	char *p;
	size_t len, cap;
	bool nomem;
};

/* Makes Message-IDs and boundaries unique between calls. */
static atomic_uint relay_dsn_counter;

/* relay_dsn_put - append n octets. */
static void relay_dsn_put(struct relay_dsn_buf *b, const char *s, size_t n)
{
	size_t cap;
	char *p;

	if (b->nomem)
		return;

	/* One spare octet for the final NUL. */
	if (b->len + n + 1 > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (p == NULL) {
			b->nomem = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}

	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* relay_dsn_puts - append a string. */
static void relay_dsn_puts(struct relay_dsn_buf *b, const char *s)
{
	relay_dsn_put(b, s, strlen(s));
}

/* relay_dsn_printf - append formatted text (short: fields, dates). */
__attribute__((format(printf, 2, 3))) static void
relay_dsn_printf(struct relay_dsn_buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(tmp))
		n = sizeof(tmp) - 1;
	relay_dsn_put(b, tmp, (size_t)n);
}

/*
 * relay_dsn_clean - the octet to write for c of caller-supplied text:
 * tab becomes a space, other control characters '?', non-ASCII '?'
 * unless keep8 (addresses may be UTF-8 under SMTPUTF8).
 */
static char relay_dsn_clean(unsigned char c, bool keep8)
{
	if (c == '\t')
		return ' ';
	if (c < 0x20 || c == 0x7f || (c >= 0x80 && !keep8))
		return '?';
	return (char)c;
}

/*
 * relay_dsn_fold - write s starting at column col, cleaned, folding
 * before a space when the next word would pass RELAY_DSN_SOFT and
 * breaking a word that reaches RELAY_DSN_HARD. A fold writes CRLF and
 * cont, then the space itself (so a header unfolds to s exactly); a
 * break writes CRLF, cont and a space. No line is left holding only
 * white space. Returns the column after the last octet.
 */
static size_t relay_dsn_fold(struct relay_dsn_buf *b, size_t col, const char *s,
			     const char *cont, bool keep8)
{
	size_t n = strlen(s), clen = strlen(cont), i = 0, j;
	char c;

	while (i < n) {
		/* The next word, with the space in front of it. */
		j = i + 1;
		while (j < n && s[j] != ' ' && s[j] != '\t')
			j++;

		if ((s[i] == ' ' || s[i] == '\t') &&
		    col + (j - i) > RELAY_DSN_SOFT && col > clen + 1) {
			relay_dsn_put(b, "\r\n", 2);
			relay_dsn_puts(b, cont);
			col = clen;
		}

		for (; i < j; i++) {
			if (col >= RELAY_DSN_HARD) {
				relay_dsn_put(b, "\r\n", 2);
				relay_dsn_puts(b, cont);
				relay_dsn_put(b, " ", 1);
				col = clen + 1;
			}
			c = relay_dsn_clean((unsigned char)s[i], keep8);
			relay_dsn_put(b, &c, 1);
			col++;
		}
	}
	return col;
}

/* relay_dsn_field - one header field "name: value" with its CRLF. */
static void relay_dsn_field(struct relay_dsn_buf *b, const char *name,
			    const char *value, bool keep8)
{
	relay_dsn_puts(b, name);
	relay_dsn_put(b, ": ", 2);
	relay_dsn_fold(b, strlen(name) + 2, value, "", keep8);
	relay_dsn_put(b, "\r\n", 2);
}

/*
 * relay_dsn_token - copy s into buf for use inside a Message-ID or after
 * MAILER-DAEMON@: letters, digits, '.', '-' and '_' stay, anything else
 * becomes '_'; cut to fit.
 */
static void relay_dsn_token(const char *s, char *buf, size_t cap)
{
	size_t i;
	unsigned char c;

	for (i = 0; s[i] != '\0' && i + 1 < cap; i++) {
		c = (unsigned char)s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')
			buf[i] = (char)c;
		else
			buf[i] = '_';
	}
	buf[i] = '\0';
}

/* relay_dsn_date - RFC 5322 section 3.3 date-time of ms, in UTC. */
static void relay_dsn_date(int64_t ms, char buf[40])
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed",
					   "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr",
					     "May", "Jun", "Jul", "Aug",
					     "Sep", "Oct", "Nov", "Dec"};
	time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	struct tm tm;

	/* Names by hand: strftime's %a and %b follow the locale. */
	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	snprintf(buf, 40, "%s, %02d %s %04d %02d:%02d:%02d +0000",
		 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
		 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* relay_dsn_has8 - whether s holds an octet above 0x7f. */
static bool relay_dsn_has8(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/*
 * relay_dsn_unitext - an address in RFC 6533's utf-8-addr-unitext form:
 * UTF-8 as it is, and the ASCII octets that may not stand for themselves
 * (controls, space, '+', '=', '\\' and DEL) as "\\x{HH}".
 */
static void relay_dsn_unitext(struct relay_dsn_buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= 0x20 || c == '+' || c == '=' || c == '\\' || c == 0x7f)
			relay_dsn_printf(b, "\\x{%02X}", c);
		else
			relay_dsn_put(b, s, 1);
	}
}

/* relay_dsn_is_code - whether s starts with an SMTP reply code. */
static bool relay_dsn_is_code(const char *s)
{
	if (s == NULL || s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '9' ||
	    s[2] < '0' || s[2] > '9')
		return false;
	return s[3] == '\0' || s[3] == ' ' || s[3] == '-';
}

/*
 * relay_dsn_enhanced - length of the RFC 3463 status code at s
 * (class "." 1*3digit "." 1*3digit), or 0.
 */
static size_t relay_dsn_enhanced(const char *s)
{
	size_t i = 0, n, part;

	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return 0;
	if (s[1] != '.')
		return 0;
	i = 2;

	for (part = 0; part < 2; part++) {
		for (n = 0; s[i] >= '0' && s[i] <= '9'; n++)
			i++;
		if (n < 1 || n > 3)
			return 0;
		if (part == 0 && s[i++] != '.')
			return 0;
	}
	return i;
}

/* relay_dsn_status - see relay_dsn.h. */
void relay_dsn_status(const char *reply, char buf[16])
{
	size_t n;

	if (!relay_dsn_is_code(reply)) {
		strcpy(buf, "4.0.0");
		return;
	}

	/* The carried code, when it is whole and of the same class. */
	if (reply[3] != '\0' && reply[4] == reply[0]) {
		n = relay_dsn_enhanced(reply + 4);
		if (n > 0 && (reply[4 + n] == '\0' || reply[4 + n] == ' ')) {
			memcpy(buf, reply + 4, n);
			buf[n] = '\0';
			return;
		}
	}

	if (reply[0] == '2')
		strcpy(buf, "2.0.0");
	else if (reply[0] == '5')
		strcpy(buf, "5.0.0");
	else
		strcpy(buf, "4.0.0");
}

/* relay_dsn_mix - splitmix64 step, spreads a seed over 64 bits. */
static uint64_t relay_dsn_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* relay_dsn_boundary - see relay_dsn.h. */
void relay_dsn_boundary(const char *content, size_t len, uint64_t seed,
			char buf[RELAY_DSN_BOUNDARY_MAX])
{
	/*
	 * Each try names a new boundary; content holds fewer occurrences
	 * of "=_waxseal_" than it has octets, so the loop ends.
	 */
	for (;;) {
		seed = relay_dsn_mix(seed);
		snprintf(buf, RELAY_DSN_BOUNDARY_MAX, "=_waxseal_%016llx",
			 (unsigned long long)seed);
		if (len == 0 || memmem(content, len, buf, strlen(buf)) == NULL)
			return;
	}
}

/* relay_dsn_action - the RFC 3464 action, or NULL when unknown. */
static const char *relay_dsn_action(const char *a)
{
	static const char *const known[] = {"failed", "delayed", "delivered",
					    "relayed", "expanded"};
	size_t i;

	if (a == NULL)
		return "failed";
	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(a, known[i]) == 0)
			return known[i];
	return NULL;
}

/* relay_dsn_rcpt_status - the recipient's status, or its default. */
static const char *relay_dsn_rcpt_status(const struct relay_dsn_rcpt *r,
					 const char *action)
{
	size_t n;

	if (r->status != NULL) {
		n = relay_dsn_enhanced(r->status);
		if (n > 0 && r->status[n] == '\0')
			return r->status;
	}
	return strcmp(action, "delayed") == 0 ? "4.0.0" : "5.0.0";
}

/* relay_dsn_text_rcpt - one recipient's paragraph of the text part. */
static void relay_dsn_text_rcpt(struct relay_dsn_buf *b,
				const struct relay_dsn_rcpt *r,
				const char *action)
{
	size_t col;

	relay_dsn_put(b, "<", 1);
	col = relay_dsn_fold(b, 1, r->rcpt, "   ", true);
	relay_dsn_put(b, ">:", 2);
	col += 2;

	if (r->remote_mta != NULL) {
		col = relay_dsn_fold(b, col, " host ", "   ", false);
		col = relay_dsn_fold(b, col, r->remote_mta, "   ", false);
		/* Only a reply is the remote host's word; a reason is ours. */
		col = relay_dsn_fold(
		    b, col, relay_dsn_is_code(r->diag) ? " said:" : ":", "   ",
		    false);
	}

	relay_dsn_put(b, " ", 1);
	if (r->diag != NULL && r->diag[0] != '\0')
		relay_dsn_fold(b, col + 1, r->diag, "   ", false);
	else if (strcmp(action, "delayed") == 0)
		relay_dsn_puts(b, "delivery is delayed");
	else
		relay_dsn_puts(b, "delivery failed");
	relay_dsn_put(b, "\r\n\r\n", 4);
}

/*
 * relay_dsn_text - the text/plain part for a person: failed recipients
 * first, then delayed ones. Returns whether any failed.
 */
static bool relay_dsn_text(struct relay_dsn_buf *b,
			   const struct relay_dsn_in *in,
			   const char *const *actions)
{
	bool failed = false, delayed = false;
	size_t i;

	for (i = 0; i < in->nrcpt; i++) {
		if (strcmp(actions[i], "delayed") == 0)
			delayed = true;
		else
			failed = true;
	}

	relay_dsn_puts(b, "This report comes from the waxseal mail system at ");
	relay_dsn_fold(b, 50, in->myhostname, "", false);
	relay_dsn_puts(b, ".\r\n\r\n");

	if (failed) {
		relay_dsn_puts(b, "Your message could not be delivered to the "
				  "following recipients;\r\n"
				  "the mail system has given up on them:"
				  "\r\n\r\n");
		for (i = 0; i < in->nrcpt; i++)
			if (strcmp(actions[i], "delayed") != 0)
				relay_dsn_text_rcpt(b, &in->rcpt[i],
						    actions[i]);
	}

	if (delayed) {
		relay_dsn_puts(b, "Delivery of your message to the following "
				  "recipients is delayed;\r\n"
				  "the mail system keeps trying, and will "
				  "tell you if it gives up:\r\n\r\n");
		for (i = 0; i < in->nrcpt; i++)
			if (strcmp(actions[i], "delayed") == 0)
				relay_dsn_text_rcpt(b, &in->rcpt[i],
						    actions[i]);
	}

	relay_dsn_puts(b, "The header section of your message is attached."
			  "\r\n");
	return failed;
}

/* relay_dsn_report - the message/delivery-status part (RFC 3464). */
static void relay_dsn_report(struct relay_dsn_buf *b,
			     const struct relay_dsn_in *in,
			     const char *const *actions)
{
	const struct relay_dsn_rcpt *r;
	char date[40];
	size_t i, col;

	/* Per-message fields (section 2.2). */
	relay_dsn_puts(b, "Reporting-MTA: dns; ");
	relay_dsn_fold(b, 20, in->myhostname, "", false);
	relay_dsn_put(b, "\r\n", 2);
	relay_dsn_date(in->arrival_ms, date);
	relay_dsn_printf(b, "Arrival-Date: %s\r\n", date);

	/* Per-recipient fields (section 2.3), each block after a blank. */
	for (i = 0; i < in->nrcpt; i++) {
		r = &in->rcpt[i];
		if (relay_dsn_has8(r->rcpt, strlen(r->rcpt))) {
			/* RFC 6533 section 3: the "utf-8" address type. */
			relay_dsn_puts(b, "\r\nFinal-Recipient: utf-8; ");
			relay_dsn_unitext(b, r->rcpt);
		} else {
			relay_dsn_puts(b, "\r\nFinal-Recipient: rfc822; ");
			relay_dsn_fold(b, 25, r->rcpt, "", false);
		}
		relay_dsn_put(b, "\r\n", 2);
		relay_dsn_printf(b, "Action: %s\r\n", actions[i]);
		relay_dsn_printf(b, "Status: %s\r\n",
				 relay_dsn_rcpt_status(r, actions[i]));

		if (r->remote_mta != NULL) {
			relay_dsn_puts(b, "Remote-MTA: dns; ");
			relay_dsn_fold(b, 17, r->remote_mta, "", false);
			relay_dsn_put(b, "\r\n", 2);
		}

		if (r->diag != NULL && r->diag[0] != '\0') {
			if (relay_dsn_is_code(r->diag)) {
				relay_dsn_puts(b, "Diagnostic-Code: smtp; ");
				col = 23;
			} else {
				relay_dsn_puts(b,
					       "Diagnostic-Code: X-Waxseal; ");
				col = 28;
			}
			relay_dsn_fold(b, col, r->diag, "", false);
			relay_dsn_put(b, "\r\n", 2);
		}

		relay_dsn_date(
		    r->last_attempt_ms ? r->last_attempt_ms : in->now_ms, date);
		relay_dsn_printf(b, "Last-Attempt-Date: %s\r\n", date);
		if (strcmp(actions[i], "delayed") == 0 &&
		    r->retry_until_ms != 0) {
			relay_dsn_date(r->retry_until_ms, date);
			relay_dsn_printf(b, "Will-Retry-Until: %s\r\n", date);
		}
	}
}

/*
 * relay_dsn_headers - the original's header section for the
 * text/rfc822-headers part: everything up to the empty line (or all of
 * it, for a message without a body), with CRLF line ends; a bare CR or
 * LF ends a line too, a NUL becomes '?', and a line longer than the
 * limit is continued on a new line starting with a space.
 */
static void relay_dsn_headers(struct relay_dsn_buf *b, const char *orig,
			      size_t len)
{
	size_t i = 0, col = 0;
	char c;

	while (i < len) {
		c = orig[i++];

		if (c == '\r' || c == '\n') {
			if (c == '\r' && i < len && orig[i] == '\n')
				i++;
			/* An empty line ends the header section. */
			if (col == 0)
				return;
			relay_dsn_put(b, "\r\n", 2);
			col = 0;
			continue;
		}

		/* Not inside a UTF-8 sequence: the margin holds the rest. */
		if (col >= RELAY_DSN_HARD &&
		    ((unsigned char)c & 0xc0) != 0x80) {
			relay_dsn_put(b, "\r\n ", 3);
			col = 1;
		}
		if (c == '\0')
			c = '?';
		relay_dsn_put(b, &c, 1);
		col++;
	}

	/* A last line without its CRLF gets one. */
	if (col > 0)
		relay_dsn_put(b, "\r\n", 2);
}

/* relay_dsn_part - a part's delimiter, headers and content. */
static void relay_dsn_part(struct relay_dsn_buf *b, const char *boundary,
			   const char *type, const char *description,
			   const struct relay_dsn_buf *parts, size_t from,
			   size_t to)
{
	bool eight = relay_dsn_has8(parts->p + from, to - from);

	relay_dsn_printf(b, "\r\n--%s\r\n", boundary);
	relay_dsn_printf(b, "Content-Description: %s\r\n", description);
	relay_dsn_printf(b, "Content-Type: %s\r\n", type);
	if (eight)
		relay_dsn_puts(b, "Content-Transfer-Encoding: 8bit\r\n");
	relay_dsn_put(b, "\r\n", 2);
	relay_dsn_put(b, parts->p + from, to - from);
}

/* relay_dsn_build - see relay_dsn.h. */
int relay_dsn_build(const struct relay_dsn_in *in, char **out, size_t *outlen)
{
	struct relay_dsn_buf parts = {0}, b = {0};
	const char **actions = NULL;
	char boundary[RELAY_DSN_BOUNDARY_MAX], date[40], host[256], qid[128];
	size_t i, text_end, report_end;
	unsigned counter;
	bool failed, eight;
	uint64_t seed;
	int err = -EINVAL;

	*out = NULL;
	*outlen = 0;

	/* Nothing to report, or no one to report it to. */
	if (in->nrcpt == 0 || in->rcpt == NULL || in->myhostname == NULL ||
	    in->queue_id == NULL || in->sender == NULL ||
	    in->sender[0] == '\0' || (in->orig == NULL && in->origlen > 0))
		goto fail;

	err = -ENOMEM;
	actions = calloc(in->nrcpt, sizeof(*actions));
	if (actions == NULL)
		goto fail;
	err = -EINVAL;
	for (i = 0; i < in->nrcpt; i++) {
		actions[i] = relay_dsn_action(in->rcpt[i].action);
		if (actions[i] == NULL || in->rcpt[i].rcpt == NULL)
			goto fail;
	}

	/* The three parts' contents, back to back. */
	failed = relay_dsn_text(&parts, in, actions);
	text_end = parts.len;
	relay_dsn_report(&parts, in, actions);
	report_end = parts.len;
	if (in->origlen > 0)
		relay_dsn_headers(&parts, in->orig, in->origlen);
	err = -ENOMEM;
	if (parts.nomem)
		goto fail;

	/* A boundary none of them contains, different on every call. */
	counter = atomic_fetch_add(&relay_dsn_counter, 1);
	seed = (uint64_t)in->now_ms ^ ((uint64_t)counter << 40) ^
	       ((uint64_t)getpid() << 20);
	relay_dsn_boundary(parts.p, parts.len, seed, boundary);

	/* The message's own header section (RFC 5322, RFC 6522). */
	relay_dsn_token(in->myhostname, host, sizeof(host));
	relay_dsn_token(in->queue_id, qid, sizeof(qid));
	relay_dsn_printf(&b,
			 "From: MAILER-DAEMON@%s (Mail Delivery System)"
			 "\r\n",
			 host);
	relay_dsn_field(&b, "To", in->sender, true);
	relay_dsn_field(&b, "Subject",
			failed ? "Undelivered Mail Returned to Sender"
			       : "Delayed Mail (still being retried)",
			false);
	relay_dsn_date(in->now_ms, date);
	relay_dsn_printf(&b, "Date: %s\r\n", date);
	relay_dsn_printf(&b, "Message-ID: <%s.dsn.%lld.%u@%s>\r\n", qid,
			 (long long)in->now_ms, counter, host);
	relay_dsn_puts(&b, "MIME-Version: 1.0\r\n");
	relay_dsn_printf(&b,
			 "Content-Type: multipart/report; "
			 "report-type=delivery-status;\r\n"
			 "\tboundary=\"%s\"\r\n",
			 boundary);
	relay_dsn_puts(&b, "Auto-Submitted: auto-replied\r\n");
	eight = relay_dsn_has8(in->sender, strlen(in->sender)) ||
		relay_dsn_has8(parts.p, parts.len);
	if (eight)
		relay_dsn_puts(&b, "Content-Transfer-Encoding: 8bit\r\n");
	relay_dsn_puts(&b, "\r\nThis is a MIME-encapsulated message.\r\n");

	/* The parts, then the close-delimiter (RFC 2046 section 5.1.1). */
	relay_dsn_part(&b, boundary,
		       relay_dsn_has8(parts.p, text_end)
			   ? "text/plain; charset=utf-8"
			   : "text/plain; charset=us-ascii",
		       "Notification", &parts, 0, text_end);
	/* RFC 6533 section 6: the global types when UTF-8 is inside. */
	relay_dsn_part(&b, boundary,
		       relay_dsn_has8(parts.p + text_end, report_end - text_end)
			   ? "message/global-delivery-status"
			   : "message/delivery-status",
		       "Delivery report", &parts, text_end, report_end);
	relay_dsn_part(&b, boundary,
		       in->smtputf8 && relay_dsn_has8(parts.p + report_end,
						      parts.len - report_end)
			   ? "message/global-headers"
			   : "text/rfc822-headers",
		       "Undelivered message headers", &parts, report_end,
		       parts.len);
	relay_dsn_printf(&b, "\r\n--%s--\r\n", boundary);
	if (b.nomem)
		goto fail;

	free(parts.p);
	free(actions);
	*out = b.p;
	*outlen = b.len;
	return 0;

fail:
	free(b.p);
	free(parts.p);
	free(actions);
	return err;
}
