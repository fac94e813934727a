/*
 * conf - the parameter table and the main.cf-syntax parser.
 *
 * Loading runs in three steps. The parser turns the text into one raw
 * (unexpanded) string per parameter, remembering the line that set it;
 * parameters the file leaves alone keep their default text. Then every
 * raw value is expanded ($name, ${name}, $(name), $$ for a literal $),
 * each parameter once, on demand, so the order of the lines does not
 * matter; a parameter met again while its own expansion is under way is a
 * loop. Last, each expanded value is converted by its type into its field
 * of struct conf. The raw values stay attached to the result so that
 * conf_set() can change one and run the last two steps again.
 *
 * Adding a parameter takes one field in struct conf and one row in
 * conf_params[] below; the row's C type is checked against the field's.
 *
 * Expansion follows Postfix: $name, ${name}, $(name), $$, and the
 * conditional ${name?text}, ${name:text} and ${name?{text1}:{text2}};
 * the comparisons of Postfix 3.5 (${name==value?...}) are refused.
 *
 * mynetworks takes address/prefix entries, "/file/name" pattern files and
 * "cidr:" tables, each negated by a leading "!"; Postfix's host and domain
 * names and other table types are rejected with the reason.
 */
#include "conf/conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* The longest logical line, and the longest value after expansion. */
#define CONF_LINE_MAX 65536
/* The biggest configuration file conf_load() reads. */
#define CONF_FILE_MAX (16 * 1024 * 1024)

enum conf_type {
	CONF_T_STR,
	CONF_T_INT,
	CONF_T_BOOL,
	CONF_T_TIME,
	CONF_T_SIZE,
	CONF_T_ENUM,
	CONF_T_LIST,
	CONF_T_CIDR
};

/*
 * The C type of a field, as _Generic sees it, so that a row whose type
 * does not fit its field fails to compile (CONF_P below).
 */
enum conf_ctype {
	CONF_C_STR = 1,
	CONF_C_I64,
	CONF_C_INT,
	CONF_C_BOOL,
	CONF_C_LIST,
	CONF_C_CIDR
};

#define CONF_CTYPE(field)                                                      \
	_Generic(((struct conf *)0)->field,                                    \
		char *: CONF_C_STR,                                            \
		int64_t: CONF_C_I64,                                           \
		int: CONF_C_INT,                                               \
		bool: CONF_C_BOOL,                                             \
		struct conf_list: CONF_C_LIST,                                 \
		struct conf_cidr_list: CONF_C_CIDR)

/* The C type each parameter type is stored in. */
#define CONF_CT_STR CONF_C_STR
#define CONF_CT_INT CONF_C_I64
#define CONF_CT_TIME CONF_C_I64
#define CONF_CT_SIZE CONF_C_I64
#define CONF_CT_BOOL CONF_C_BOOL
#define CONF_CT_ENUM CONF_C_INT
#define CONF_CT_LIST CONF_C_LIST
#define CONF_CT_CIDR CONF_C_CIDR

/* A negative array size, hence a compile error, unless cond holds. */
#define CONF_REQUIRE(cond) (0 * sizeof(char[(cond) ? 1 : -1]))

/*
 * A value check beyond the type: returns NULL when v is fine, else the
 * reason ("not a canonicalization"). It may write a normalised form of v
 * into fix, which then replaces v.
 */
typedef const char *conf_check_fn(const char *v, char *fix, size_t fixlen);

/* A default computed at load time into buf; returns 0 or -errno. */
typedef int conf_dflt_fn(char *buf, size_t len);

struct conf_param {
	const char *name;
	enum conf_type type;
	const char *dflt; /* as a user would write it, $name allowed */
	size_t off;	  /* of the field in struct conf */
	const char *meaning;
	const char *const *words; /* enum: allowed words, index = value */
	conf_check_fn *check;	  /* str: the value; list: each word */
	conf_dflt_fn *dflt_fn;	  /* replaces dflt when set */
};

/* CONF_P - one table row; extras (.words, .check) after the meaning. */
#define CONF_P(n, t, d, m, ...)                                                \
	{                                                                      \
		.name = #n, .type = CONF_T_##t, .dflt = d,                     \
		.off = offsetof(struct conf, n) +                              \
		       CONF_REQUIRE(CONF_CTYPE(n) == CONF_CT_##t),             \
		.meaning = m, __VA_ARGS__                                      \
	}

static conf_check_fn conf_check_canon, conf_check_listen, conf_check_header;
static conf_dflt_fn conf_default_hostname;

static const char *const conf_w_io[] = {"auto", "io_uring", "libuv", NULL};
static const char *const conf_w_log[] = {"error", "warning", "info", "debug",
					 NULL};
static const char *const conf_w_bare_lf[] = {"normalize", "reject", NULL};
/* smtpd offers TLS or requires it; "verify" makes sense only for a client */
static const char *const conf_w_smtpd_tls[] = {"none", "may", "encrypt", NULL};
static const char *const conf_w_smtp_tls[] = {"none", "may", "encrypt",
					      "verify", NULL};
static const char *const conf_w_unsigned[] = {"accept", "defer", "reject",
					      NULL};

/* RFC 6376 section 5.4.1's recommended list, plus RFC 8058's header. */
#define CONF_SIGN_HEADERS                                                      \
	"From, Reply-To, Subject, Date, To, Cc, Resent-Date, Resent-From, "    \
	"Resent-Sender, Resent-To, Resent-Cc, In-Reply-To, References, "       \
	"List-Id, List-Help, List-Unsubscribe, List-Subscribe, List-Post, "    \
	"List-Owner, List-Archive, Message-ID, MIME-Version, Content-Type, "   \
	"Content-Transfer-Encoding, List-Unsubscribe-Post"

static const struct conf_param conf_params[] = {
    /* Daemon. */
    CONF_P(myhostname, STR, NULL,
	   "this host's name, in the banner and in HELO/EHLO",
	   .dflt_fn = conf_default_hostname),
    CONF_P(queue_directory, STR, "/var/spool/waxseal",
	   "the spool directory; created at start if missing"),
    CONF_P(io_backend, ENUM, "auto",
	   "I/O backend: io_uring, libuv, or auto (io_uring when the "
	   "kernel allows it)",
	   .words = conf_w_io),
    CONF_P(log_level, ENUM, "info",
	   "the least severe level logged: error, warning, info, debug",
	   .words = conf_w_log),
    CONF_P(control_socket, STR, "$queue_directory/control",
	   "the UNIX socket for `waxseal` control commands"),

    /* SMTP server. */
    CONF_P(smtpd_listen, LIST, "127.0.0.1:2525",
	   "host:port or [v6]:port addresses to accept SMTP on",
	   .check = conf_check_listen),
    CONF_P(mynetworks, CIDR, "127.0.0.0/8 [::1]/128",
	   "client networks allowed to relay through waxseal"),
    CONF_P(smtpd_banner, STR, "$myhostname ESMTP waxseal",
	   "the text after 220 in the greeting"),
    CONF_P(message_size_limit, SIZE, "10240000",
	   "the largest message accepted, in bytes; 0: no limit"),
    CONF_P(smtpd_recipient_limit, INT, "1000",
	   "the most recipients accepted for one message"),
    CONF_P(smtpd_error_sleep_time, TIME, "0s",
	   "the pause before each error reply"),
    CONF_P(smtpd_soft_error_limit, INT, "10",
	   "errors in one session after which each reply is delayed"),
    CONF_P(smtpd_hard_error_limit, INT, "20",
	   "errors in one session after which it is closed"),
    CONF_P(smtpd_client_connection_count_limit, INT, "0",
	   "simultaneous connections from one client; 0: no limit"),
    CONF_P(smtpd_client_connection_rate_limit, INT, "0",
	   "connections per minute from one client; 0: no limit"),
    CONF_P(smtpd_max_connections, INT, "10000",
	   "simultaneous SMTP connections in all"),
    CONF_P(smtpd_timeout, TIME, "300s",
	   "how long to wait for a client's command"),
    CONF_P(smtpd_data_timeout, TIME, "300s",
	   "how long to wait for each read of message data"),
    CONF_P(smtpd_idle_timeout, TIME, "300s",
	   "how long an idle session may wait between messages"),
    CONF_P(smtpd_forbid_bare_newline, ENUM, "normalize",
	   "a bare LF in message data: normalize to CRLF or reject",
	   .words = conf_w_bare_lf),
    CONF_P(hopcount_limit, INT, "50",
	   "the most Received: headers a message may carry"),
    CONF_P(smtpd_tls_cert_file, STR, "",
	   "PEM certificate chain for STARTTLS; empty: no STARTTLS"),
    CONF_P(smtpd_tls_key_file, STR, "",
	   "PEM private key of smtpd_tls_cert_file"),
    CONF_P(smtpd_tls_security_level, ENUM, "may",
	   "STARTTLS for clients: none, may (offer), encrypt (require)",
	   .words = conf_w_smtpd_tls),
    CONF_P(smtpd_tls_protocols, STR, ">=TLSv1.2",
	   "TLS protocol versions smtpd accepts"),
    CONF_P(smtpd_tls_ciphers, STR, "medium", "the cipher grade smtpd accepts"),

    /* Spool. */
    CONF_P(queue_segment_size, SIZE, "64m",
	   "the size at which a spool segment file is closed"),
    CONF_P(queue_max_size, SIZE, "0",
	   "the most the spool may hold, in bytes; 0: no limit but disk"),
    CONF_P(queue_minfree, SIZE, "100m",
	   "free disk space below which new mail is refused"),
    CONF_P(queue_commit_delay, TIME, "4ms",
	   "how long a batch waits for more messages before its fdatasync "
	   "while others are being signed; 0: never"),

    /* DKIM signing. */
    CONF_P(dkim_key_table, STR, "",
	   "OpenDKIM KeyTable: key name -> domain:selector:keyfile"),
    CONF_P(dkim_signing_table, STR, "",
	   "OpenDKIM SigningTable: sender pattern -> key name"),
    CONF_P(dkim_canonicalization, STR, "relaxed/relaxed",
	   "header/body canonicalization, simple or relaxed",
	   .check = conf_check_canon),
    CONF_P(dkim_sign_headers, LIST, CONF_SIGN_HEADERS,
	   "header fields signed when present", .check = conf_check_header),
    CONF_P(dkim_oversign_headers, LIST,
	   "From, List-Unsubscribe, List-Unsubscribe-Post",
	   "header fields signed once more than present, so none can be "
	   "added",
	   .check = conf_check_header),
    CONF_P(dkim_multiple_signatures, BOOL, "no",
	   "sign with every matching SigningTable entry, not the first"),
    CONF_P(dkim_unsigned_action, ENUM, "accept",
	   "mail no key matches: accept unsigned, defer or reject",
	   .words = conf_w_unsigned),
    CONF_P(dkim_signature_ttl, TIME, "0",
	   "signature lifetime (x= tag); 0: no expiry"),
    CONF_P(sign_threads, INT, "0", "signing threads; 0: one per CPU"),

    /* Delivery: routing and DNS. */
    CONF_P(relayhost, STR, "",
	   "send all mail to this host: [host]:port skips the MX lookup; "
	   "empty: by MX"),
    CONF_P(transport_maps, STR, "",
	   "file of `domain [host]:port` next hops; .domain for subdomains"),
    CONF_P(dns_servers, LIST, "",
	   "DNS servers as ip or ip:port; empty: those of /etc/resolv.conf"),
    CONF_P(defer_transports, LIST, "",
	   "\"smtp\" holds all delivery until `waxseal queue flush`"),

    /* Delivery: per-destination scheduling. */
    CONF_P(initial_destination_concurrency, INT, "5",
	   "connections a destination starts with"),
    CONF_P(default_destination_concurrency_limit, INT, "20",
	   "the most connections to one destination"),
    CONF_P(destination_concurrency_limits, STR, "",
	   "file of `destination limit` lines overriding the default limit"),
    CONF_P(destination_concurrency_failed_cohort_limit, INT, "1",
	   "failed connections in a row, at concurrency 1, that suspend a "
	   "destination"),
    CONF_P(destination_rate_limit, INT, "0",
	   "messages per second to one destination; 0: no limit"),
    CONF_P(default_destination_recipient_limit, INT, "50",
	   "the most recipients in one SMTP transaction"),
    CONF_P(smtp_connection_cache_time_limit, TIME, "2s",
	   "how long an idle connection is kept for reuse"),
    CONF_P(destination_idle_time_limit, TIME, "60s",
	   "how long a destination with nothing to do keeps its window, "
	   "failure count and TLS session before it is forgotten"),
    CONF_P(minimal_backoff_time, TIME, "300s",
	   "the shortest wait before a deferred message is tried again"),
    CONF_P(maximal_backoff_time, TIME, "4000s",
	   "the longest wait before a deferred message is tried again"),
    CONF_P(maximal_queue_lifetime, TIME, "5d",
	   "how long a message may stay deferred before it bounces"),
    CONF_P(bounce_queue_lifetime, TIME, "5d",
	   "the same for a bounce (null sender)"),

    /* Delivery: the SMTP client. */
    CONF_P(smtp_helo_name, STR, "$myhostname",
	   "the name waxseal gives in EHLO/HELO"),
    CONF_P(smtp_connect_timeout, TIME, "30s",
	   "how long a TCP connection may take to open"),
    CONF_P(smtp_helo_timeout, TIME, "300s",
	   "how long to wait for the banner, EHLO and STARTTLS replies"),
    CONF_P(smtp_mail_timeout, TIME, "300s",
	   "how long to wait for MAIL, RCPT and DATA replies"),
    CONF_P(smtp_data_done_timeout, TIME, "600s",
	   "how long to wait for the reply after the final dot"),
    CONF_P(smtp_tls_security_level, ENUM, "may",
	   "STARTTLS to destinations: none, may, encrypt, verify",
	   .words = conf_w_smtp_tls),
    CONF_P(smtp_tls_CAfile, STR, "",
	   "PEM file of trusted CAs for smtp_tls_security_level = verify"),
    CONF_P(smtp_tls_CApath, STR, "",
	   "directory of trusted CAs (hashed names), for verify"),
    CONF_P(smtp_tls_protocols, STR, ">=TLSv1.2",
	   "TLS protocol versions the SMTP client uses"),
    CONF_P(smtp_tls_ciphers, STR, "medium",
	   "the cipher grade the SMTP client offers"),
    CONF_P(delivery_log, STR, "$queue_directory/delivery.log",
	   "JSON lines, one per recipient outcome; empty: none"),
};

#define CONF_NPARAM (sizeof(conf_params) / sizeof(conf_params[0]))

/* Where a raw value came from: a line of the file, -o, or the default. */
#define CONF_FROM_DEFAULT 0
#define CONF_FROM_OPTION (-1)

struct conf_raw {
	char *val[CONF_NPARAM];
	int line[CONF_NPARAM];
};

/* A growing NUL-terminated string. */
struct conf_sb {
	char *p;
	size_t len, cap;
};

/* State of one expansion pass over every parameter. */
struct conf_exp {
	const char *file;
	const struct conf_raw *raw;
	char *v[CONF_NPARAM];
	bool busy[CONF_NPARAM];
	int stack[CONF_NPARAM];
	int depth;
	int nest; /* conditional texts being expanded, one in another */
};

/* conf_field - the field of c that row p describes. */
static void *conf_field(const struct conf *c, const struct conf_param *p)
{
	return (char *)c + p->off;
}

/* conf_sb_add - append n bytes of s. 0 or -ENOMEM. */
static int conf_sb_add(struct conf_sb *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (p == NULL)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

/* conf_sb_str - append a NUL-terminated string. 0 or -ENOMEM. */
static int conf_sb_str(struct conf_sb *b, const char *s)
{
	return conf_sb_add(b, s, strlen(s));
}

/* conf_space - white space within a line (the newline ends lines). */
static bool conf_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' ||
	       ch == '\v';
}

/* conf_namech - a character of a $name reference. */
static bool conf_namech(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '_';
}

/* conf_lookup - the table index of name[0..n), or -1. */
static int conf_lookup(const char *name, size_t n)
{
	for (size_t i = 0; i < CONF_NPARAM; i++)
		if (strlen(conf_params[i].name) == n &&
		    memcmp(conf_params[i].name, name, n) == 0)
			return (int)i;
	return -1;
}

/* conf_errf - format a message into err (which may be NULL). */
static void conf_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * conf_perr - "FILE:LINE: PARAM: why", "-o: PARAM: why" or, for a
 * default, "FILE: PARAM: why"; always -EINVAL.
 */
static int conf_perr(char *err, size_t errlen, const char *file, int line,
		     int i, const char *why)
{
	const char *name = conf_params[i].name;

	if (line > 0)
		conf_errf(err, errlen, "%s:%d: %s: %s", file, line, name, why);
	else if (line == CONF_FROM_OPTION)
		conf_errf(err, errlen, "-o: %s: %s", name, why);
	else
		conf_errf(err, errlen, "%s: %s: %s", file, name, why);
	return -EINVAL;
}

/*
 * conf_default_hostname - gethostname(), or "localhost" without one.
 * The kernel's host name is often not fully qualified: the daemon then
 * warns at start (myhostname-not-fqdn), since receivers may refuse such
 * a HELO.
 */
static int conf_default_hostname(char *buf, size_t len)
{
	/* POSIX leaves termination unspecified when the name is cut. */
	if (gethostname(buf, len - 1) < 0 || buf[0] == '\0')
		snprintf(buf, len, "localhost");
	buf[len - 1] = '\0';
	return 0;
}

/* conf_check_canon - "simple|relaxed[/simple|relaxed]", normalised. */
static const char *conf_check_canon(const char *v, char *fix, size_t fixlen)
{
	static const char *const w[] = {"simple", "relaxed"};
	const char *slash = strchr(v, '/');
	size_t hn = slash ? (size_t)(slash - v) : strlen(v);
	int h = -1, b = -1;

	for (int k = 0; k < 2; k++) {
		if (strlen(w[k]) == hn && strncasecmp(v, w[k], hn) == 0)
			h = k;
		if (slash && strcasecmp(slash + 1, w[k]) == 0)
			b = k;
	}

	/* RFC 6376 section 3.5: a lone header algorithm means simple body. */
	if (slash == NULL)
		b = 0;
	if (h < 0 || b < 0)
		return "not simple or relaxed, optionally /simple or /relaxed";
	snprintf(fix, fixlen, "%s/%s", w[h], w[b]);
	return NULL;
}

/* conf_check_listen - "host:port" or "[v6]:port", port 1-65535. */
static const char *conf_check_listen(const char *v, char *fix, size_t fixlen)
{
	const char *colon = strrchr(v, ':');
	long port = 0;

	(void)fix;
	(void)fixlen;

	if (v[0] == '[') {
		const char *end = strchr(v, ']');

		if (end == NULL || end == v + 1 || end[1] != ':')
			return "not [address]:port";
		colon = end + 1;
	}
	if (colon == NULL || colon == v)
		return "not host:port";
	if (colon[1] == '\0' || strlen(colon + 1) > 5)
		return "not a port number";
	for (const char *s = colon + 1; *s; s++) {
		if (*s < '0' || *s > '9')
			return "not a port number";
		port = port * 10 + (*s - '0');
	}
	if (port < 1 || port > 65535)
		return "port out of range";
	return NULL;
}

/* conf_check_header - a header field name (RFC 5322 section 3.6.8). */
static const char *conf_check_header(const char *v, char *fix, size_t fixlen)
{
	(void)fix;
	(void)fixlen;

	for (const unsigned char *s = (const unsigned char *)v; *s; s++)
		if (*s < 33 || *s > 126 || *s == ':')
			return "not a header field name";
	return NULL;
}

/*
 * conf_exp_loop - report a loop: i is being expanded again. Names the
 * first parameter of the loop that the file or -o set, since defaults
 * alone never loop.
 */
static int conf_exp_loop(struct conf_exp *x, int i, char *err, size_t errlen)
{
	struct conf_sb chain = {0};
	int from = 0, who = i;
	int r;

	while (x->stack[from] != i)
		from++;
	for (int k = from; k < x->depth; k++) {
		if (x->raw->line[x->stack[k]] != CONF_FROM_DEFAULT) {
			who = x->stack[k];
			break;
		}
	}

	r = conf_sb_str(&chain, "parameter expansion loop: ");
	for (int k = from; k < x->depth && r == 0; k++) {
		r = conf_sb_str(&chain, conf_params[x->stack[k]].name);
		if (r == 0)
			r = conf_sb_str(&chain, " -> ");
	}
	if (r == 0)
		r = conf_sb_str(&chain, conf_params[i].name);
	if (r == 0)
		r = conf_perr(err, errlen, x->file, x->raw->line[who], who,
			      chain.p);
	free(chain.p);
	return r;
}

static int conf_exp_one(struct conf_exp *x, int i, char *err, size_t errlen);

/*
 * conf_exp_close - the bracket that closes the one at open (before end),
 * counting nested pairs of the same kind, or NULL.
 */
static const char *conf_exp_close(const char *open, const char *end)
{
	char o = *open, c = o == '{' ? '}' : ')';
	int depth = 0;

	for (const char *s = open; s < end; s++) {
		if (*s == o)
			depth++;
		else if (*s == c && --depth == 0)
			return s;
	}
	return NULL;
}

static int conf_exp_span(struct conf_exp *x, int i, const char *s,
			 const char *end, struct conf_sb *b, char *err,
			 size_t errlen);

/* conf_exp_blank - s past blanks, not past end. */
static const char *conf_exp_blank(const char *s, const char *end)
{
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	return s;
}

/* Conditional texts nested deeper than this are refused, as Postfix does. */
#define CONF_EXP_NEST_MAX 100

/*
 * conf_exp_cond - the conditional part of ${name?...} or ${name:...}: op
 * is '?' (use the text when $name is set) or ':' (when it is empty), and
 * [s, end) what follows op: "text", "{text}" or, after '?',
 * "{text1}:text2" with text2 braced or not. As in Postfix, blanks around
 * the braces are ignored (those of a bare text are part of it), and
 * whether $name is set is decided on its value before expansion (set:
 * the value as written is not empty).
 */
static int conf_exp_cond(struct conf_exp *x, int i, bool set, char op,
			 const char *s, const char *end, struct conf_sb *b,
			 char *err, size_t errlen)
{
	const char *t1, *e1, *t2 = NULL, *e2 = NULL, *c;
	const char *why = NULL;
	int r;

	/* Blanks before a brace are skipped; before a bare text, kept. */
	t1 = s;
	e1 = end;
	s = conf_exp_blank(s, end);
	if (s < end && *s == '{') {
		c = conf_exp_close(s, end);
		if (c == NULL)
			return conf_perr(err, errlen, x->file, x->raw->line[i],
					 i, "missing '}' in a conditional");
		t1 = s + 1;
		e1 = c;
		s = conf_exp_blank(c + 1, end);
		if (s < end && (op != '?' || *s != ':')) {
			why = op == '?'
				  ? "':' expected after ${name?{text}}"
				  : "unexpected text after ${name:{text}}";
		} else if (s < end) {
			t2 = s + 1;
			e2 = end;
			s = conf_exp_blank(t2, end);
			if (s < end && *s == '{') {
				c = conf_exp_close(s, end);
				if (c == NULL)
					return conf_perr(
					    err, errlen, x->file,
					    x->raw->line[i], i,
					    "missing '}' in a conditional");
				if (conf_exp_blank(c + 1, end) != end)
					why = "unexpected text after "
					      "${name?{text}:{text}}";
				t2 = s + 1;
				e2 = c;
			}
		}
	}
	if (why != NULL)
		return conf_perr(err, errlen, x->file, x->raw->line[i], i, why);
	if (x->nest >= CONF_EXP_NEST_MAX)
		return conf_perr(err, errlen, x->file, x->raw->line[i], i,
				 "conditional expansions nested more than "
				 "100 deep");

	/* The text for this case, if there is one. */
	if (set != (op == '?')) {
		if (t2 == NULL)
			return 0;
		t1 = t2;
		e1 = e2;
	}
	x->nest++;
	r = conf_exp_span(x, i, t1, e1, b, err, errlen);
	x->nest--;
	return r;
}

/*
 * conf_exp_span - append [s, end), a piece of parameter i's raw value,
 * to b with its references expanded: $$, $name, ${name}, $(name), and
 * Postfix's conditional ${name?text}, ${name:text} and
 * ${name?{text1}:{text2}}.
 */
static int conf_exp_span(struct conf_exp *x, int i, const char *s,
			 const char *end, struct conf_sb *b, char *err,
			 size_t errlen)
{
	int line = x->raw->line[i];
	char why[256];
	int r = 0;

	while (r == 0 && s < end) {
		const char *name, *dollar = memchr(s, '$', (size_t)(end - s));
		const char *cond = NULL, *cend = NULL;
		size_t n;
		int j;

		if (dollar == NULL) {
			r = conf_sb_add(b, s, (size_t)(end - s));
			break;
		}
		r = conf_sb_add(b, s, (size_t)(dollar - s));
		if (r < 0)
			break;
		s = dollar + 1;

		/* $$ is a literal $; $name, ${name} and $(name) refer. */
		if (s < end && *s == '$') {
			r = conf_sb_add(b, "$", 1);
			s++;
			continue;
		}
		if (s < end && (*s == '{' || *s == '(')) {
			const char *close = conf_exp_close(s, end);

			if (close == NULL) {
				snprintf(why, sizeof(why),
					 "missing '%c' after '$%c'",
					 *s == '{' ? '}' : ')', *s);
				r = conf_perr(err, errlen, x->file, line, i,
					      why);
				break;
			}
			name = s + 1;
			n = 0;
			while (name + n < close && conf_namech(name[n]))
				n++;
			cond = conf_exp_blank(name + n, close);
			cend = close;
			if (cond == close)
				cond = NULL;
			s = close + 1;
		} else {
			name = s;
			while (s < end && conf_namech(*s))
				s++;
			n = (size_t)(s - name);
		}
		if (n == 0) {
			r = conf_perr(err, errlen, x->file, line, i,
				      "'$' without a parameter name (write $$ "
				      "for a literal $)");
			break;
		}
		if (cond != NULL && *cond != '?' && *cond != ':') {
			snprintf(why, sizeof(why),
				 "unsupported expansion: $%c%.*s (only "
				 "${name}, ${name?text} and ${name:text})",
				 name[-1],
				 (int)(cend - name > 60 ? 60 : cend - name),
				 name);
			r = conf_perr(err, errlen, x->file, line, i, why);
			break;
		}

		j = conf_lookup(name, n);
		if (j < 0) {
			snprintf(why, sizeof(why),
				 "unknown parameter in "
				 "expansion: $%.*s",
				 (int)(n > 100 ? 100 : n), name);
			r = conf_perr(err, errlen, x->file, line, i, why);
			break;
		}
		if (cond == NULL) {
			r = conf_exp_one(x, j, err, errlen);
			if (r == 0)
				r = conf_sb_str(b, x->v[j]);
		} else {
			r = conf_exp_cond(x, i, x->raw->val[j][0] != '\0',
					  *cond, cond + 1, cend, b, err,
					  errlen);
		}

		/* Nested references can double a value at every level. */
		if (r == 0 && b->len > CONF_LINE_MAX)
			r = conf_perr(err, errlen, x->file, line, i,
				      "value longer than 65536 bytes after "
				      "expansion");
	}
	return r;
}

/* conf_exp_one - expand parameter i into x->v[i], once. */
static int conf_exp_one(struct conf_exp *x, int i, char *err, size_t errlen)
{
	const char *s = x->raw->val[i];
	struct conf_sb b = {0};
	int r;

	if (x->v[i] != NULL)
		return 0;
	if (x->busy[i])
		return conf_exp_loop(x, i, err, errlen);
	x->busy[i] = true;
	x->stack[x->depth++] = i;

	/* An empty buffer still needs its NUL. */
	r = conf_sb_add(&b, "", 0);
	if (r == 0)
		r = conf_exp_span(x, i, s, s + strlen(s), &b, err, errlen);

	x->busy[i] = false;
	x->depth--;
	if (r < 0) {
		free(b.p);
		return r;
	}
	x->v[i] = b.p;
	return 0;
}

/*
 * conf_num - a non-negative decimal integer at *sp, which advances.
 * 0, -EINVAL (no digits) or -ERANGE.
 */
static int conf_num(const char **sp, int64_t *out)
{
	const char *s = *sp;
	int64_t v = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (INT64_MAX - (*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (*s - '0');
	}
	*sp = s;
	*out = v;
	return 0;
}

/* conf_scaled - a number with one unit of units[] (or none: dflt). */
static int conf_scaled(const char *v, const char *const *units,
		       const int64_t *mult, int64_t dflt, int64_t *out)
{
	const char *s = v;
	int64_t n, m = -1;
	int r;

	r = conf_num(&s, &n);
	if (r < 0)
		return r;
	if (*s == '\0')
		m = dflt;
	for (int k = 0; m < 0 && units[k]; k++)
		if (strcasecmp(s, units[k]) == 0)
			m = mult[k];
	if (m < 0)
		return -EINVAL;
	if (n > INT64_MAX / m)
		return -ERANGE;
	*out = n * m;
	return 0;
}

/* conf_conv_words - split a list value into l (words of conf_list). */
static int conf_conv_words(const struct conf_param *p, const char *v,
			   struct conf_list *l, char *why, size_t whylen)
{
	static const char sep[] = " \t\r\n\f\v,";
	size_t cap = 1;
	char fix[64];

	l->n = 0;
	l->v = calloc(1, sizeof(char *));
	if (l->v == NULL)
		return -ENOMEM;
	for (v += strspn(v, sep); *v; v += strspn(v, sep)) {
		size_t n = strcspn(v, sep);
		char *w = strndup(v, n), **nv;
		const char *bad;

		if (w == NULL)
			return -ENOMEM;
		v += n;
		fix[0] = '\0';
		bad = p->check ? p->check(w, fix, sizeof(fix)) : NULL;
		if (bad != NULL) {
			snprintf(why, whylen, "%s: %.120s", bad, w);
			free(w);
			return -EINVAL;
		}
		if (fix[0] != '\0') {
			free(w);
			w = strdup(fix);
			if (w == NULL)
				return -ENOMEM;
		}
		if (l->n + 1 >= cap) {
			cap *= 2;
			nv = realloc(l->v, cap * sizeof(char *));
			if (nv == NULL) {
				free(w);
				return -ENOMEM;
			}
			l->v = nv;
		}
		l->v[l->n++] = w;
		l->v[l->n] = NULL;
	}
	return 0;
}

/* A mynetworks list being built: entries from the value and its files. */
struct conf_cidr_acc {
	struct conf_cidr_list *l;
	size_t cap;
	char *why;
	size_t whylen;
	bool located; /* why names a file and line already */
};

/* Nested "/file/name" patterns: deeper than this is taken for a loop. */
#define CONF_CIDR_DEPTH 8
/* The largest pattern file or cidr: table read. */
#define CONF_CIDR_FILE_MAX (4 << 20)

/* conf_cidr_push - append e to the list being built. */
static int conf_cidr_push(struct conf_cidr_acc *a, const struct conf_cidr *e)
{
	struct conf_cidr_list *l = a->l;

	if (l->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 8;
		struct conf_cidr *nv = realloc(l->v, cap * sizeof(*nv));

		if (nv == NULL)
			return -ENOMEM;
		l->v = nv;
		a->cap = cap;
	}
	l->v[l->n++] = *e;
	return 0;
}

/*
 * conf_cidr_slurp - the content of the regular file path, NUL-terminated
 * (malloc'd), or NULL with the reason in a->why (*r: -EINVAL or -ENOMEM).
 */
static char *conf_cidr_slurp(struct conf_cidr_acc *a, const char *path, int *r)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd;

	*r = -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(a->why, a->whylen, "%.200s: %s", path,
			 strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > CONF_CIDR_FILE_MAX) {
		snprintf(a->why, a->whylen, "%.200s: %s", path,
			 S_ISREG(st.st_mode) ? "larger than 4 MiB"
					     : "not a regular file");
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		*r = -ENOMEM;
		goto fail;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(a->why, a->whylen, "%.200s: %s", path,
				 n < 0 ? strerror(errno) : "file shrank");
			goto fail;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	close(fd);

	/* A NUL would end the text early: what follows it would be lost. */
	if (memchr(buf, '\0', got) != NULL) {
		const char *z = memchr(buf, '\0', got);
		int line = 1;

		for (const char *q = buf; q < z; q++)
			line += *q == '\n';
		snprintf(a->why, a->whylen, "%.200s line %d: a NUL byte", path,
			 line);
		a->located = true;
		free(buf);
		return NULL;
	}
	return buf;

fail:
	free(buf);
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int conf_cidr_word(struct conf_cidr_acc *a, const char *w, bool neg,
			  int depth);

/*
 * conf_cidr_file - a "/file/name" pattern: every pattern in the file, as
 * in the value (blanks or commas between them, "#" lines are comments),
 * each negated when neg is.
 */
static int conf_cidr_file(struct conf_cidr_acc *a, const char *path, bool neg,
			  int depth)
{
	static const char sep[] = " \t\r\f\v,";
	char *text, *line, *next, w[256];
	int r, lineno = 0;

	if (depth >= CONF_CIDR_DEPTH) {
		snprintf(a->why, a->whylen,
			 "%.200s: pattern files nested too deep", path);
		return -EINVAL;
	}
	text = conf_cidr_slurp(a, path, &r);
	if (text == NULL)
		return r;
	r = 0;
	for (line = text; line != NULL && r == 0; line = next) {
		char *p = line;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		lineno++;
		p += strspn(p, sep);
		if (*p == '#')
			continue;
		for (; *p && r == 0; p += strspn(p, sep)) {
			size_t n = strcspn(p, sep);

			snprintf(w, sizeof(w), "%.*s", (int)n, p);
			p += n;
			if (n >= sizeof(w)) {
				snprintf(a->why, a->whylen,
					 "pattern too long: %.60s...", w);
				r = -EINVAL;
			} else {
				r = conf_cidr_word(a, w, neg, depth + 1);
			}
		}
		if (r == -EINVAL && !a->located) {
			/* Say where: "FILE line N: " before the reason. */
			char *why = strdup(a->why);

			if (why == NULL) {
				r = -ENOMEM;
				break;
			}
			snprintf(a->why, a->whylen, "%.120s line %d: %s", path,
				 lineno, why);
			free(why);
			a->located = true;
		}
	}
	free(text);
	return r;
}

/*
 * conf_cidr_table - a "cidr:/file/name" table (Postfix's cidr_table(5)):
 * "network[/prefix] result" lines; in a list the result is not used, a
 * client matches the table when it matches one of its networks. A line
 * that starts with a blank continues the result of the line before.
 */
static int conf_cidr_table(struct conf_cidr_acc *a, const char *path, bool neg)
{
	static const char sep[] = " \t\r\f\v";
	char *text, *line, *next, key[256];
	struct conf_cidr e;
	int r, lineno = 0;

	text = conf_cidr_slurp(a, path, &r);
	if (text == NULL)
		return r;
	r = 0;
	for (line = text; line != NULL && r == 0; line = next) {
		const char *p = line;
		size_t n;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		lineno++;
		/* Blank, a comment, or the continuation of a result. */
		if (*line == '\0' || *line == '#' || strchr(sep, *line))
			continue;
		n = strcspn(p, sep);
		snprintf(key, sizeof(key), "%.*s", (int)n, p);
		p += n + strspn(p + n, sep);
		if (n >= sizeof(key)) {
			snprintf(a->why, a->whylen,
				 "%.120s line %d: pattern too long", path,
				 lineno);
			r = -EINVAL;
		} else if (strcmp(key, "if") == 0 ||
			   strcmp(key, "endif") == 0 || key[0] == '!') {
			snprintf(a->why, a->whylen,
				 "%.120s line %d: \"if\", \"endif\" and "
				 "\"!pattern\" are not supported in "
				 "mynetworks: %.80s",
				 path, lineno, key);
			r = -EINVAL;
		} else if (conf_cidr_parse(&e, key) < 0) {
			snprintf(a->why, a->whylen,
				 "%.120s line %d: not a network "
				 "address/prefix: %.120s",
				 path, lineno, key);
			r = -EINVAL;
		} else if (*p == '\0') {
			snprintf(a->why, a->whylen,
				 "%.120s line %d: no result after %.120s", path,
				 lineno, key);
			r = -EINVAL;
		} else {
			e.negate = neg;
			r = conf_cidr_push(a, &e);
		}
	}
	free(text);
	a->located = r == -EINVAL;
	return r;
}

/* conf_cidr_typed - whether w looks like "type:table" (a letter first). */
static bool conf_cidr_typed(const char *w)
{
	size_t n = strspn(w, "abcdefghijklmnopqrstuvwxyz0123456789_");

	return n > 0 && w[n] == ':' && w[0] >= 'a' && w[0] <= 'z' &&
	       w[n + 1] != ':' && strchr(w, '/') != NULL &&
	       strchr(w, '/') > w + n;
}

/* conf_cidr_word - one pattern of a list or a pattern file. */
static int conf_cidr_word(struct conf_cidr_acc *a, const char *w, bool neg,
			  int depth)
{
	struct conf_cidr e;

	while (w[0] == '!') {
		neg = !neg;
		w++;
	}
	if (w[0] == '\0') {
		snprintf(a->why, a->whylen, "'!' without a pattern");
		return -EINVAL;
	}
	if (w[0] == '/')
		return conf_cidr_file(a, w, neg, depth);
	if (conf_cidr_parse(&e, w) == 0) {
		e.negate = neg;
		return conf_cidr_push(a, &e);
	}
	if (strncmp(w, "cidr:", 5) == 0)
		return conf_cidr_table(a, w + 5, neg);
	if (conf_cidr_typed(w))
		snprintf(a->why, a->whylen,
			 "only cidr: tables are supported in mynetworks: "
			 "%.120s",
			 w);
	else
		snprintf(a->why, a->whylen,
			 "not a network address/prefix: %.120s", w);
	return -EINVAL;
}

/*
 * conf_conv_cidrs - parse a mynetworks value into l: network/prefix
 * entries, "/file/name" pattern files and "cidr:" tables, each of them
 * negated by a leading "!"; the first entry that matches decides.
 */
static int conf_conv_cidrs(const char *v, struct conf_cidr_list *l, char *why,
			   size_t whylen)
{
	static const struct conf_param plain = {.type = CONF_T_LIST};
	struct conf_cidr_acc a = {.l = l, .why = why, .whylen = whylen};
	struct conf_list words = {0};
	int r;

	/* Split as a list first, with no check, then parse each word. */
	l->n = 0;
	l->v = NULL;
	r = conf_conv_words(&plain, v, &words, why, whylen);
	for (size_t k = 0; r == 0 && k < words.n; k++)
		r = conf_cidr_word(&a, words.v[k], false, 0);
	for (size_t k = 0; k < words.n; k++)
		free(words.v[k]);
	free(words.v);
	return r;
}

/* conf_field_free - release what field p of c owns, and clear it. */
static void conf_field_free(struct conf *c, const struct conf_param *p)
{
	void *f = conf_field(c, p);

	if (p->type == CONF_T_STR) {
		free(*(char **)f);
		*(char **)f = NULL;
	} else if (p->type == CONF_T_LIST) {
		struct conf_list *l = f;

		for (size_t k = 0; l->v && k < l->n; k++)
			free(l->v[k]);
		free(l->v);
		l->v = NULL;
		l->n = 0;
	} else if (p->type == CONF_T_CIDR) {
		struct conf_cidr_list *l = f;

		free(l->v);
		l->v = NULL;
		l->n = 0;
	}
}

/*
 * conf_conv - convert the expanded value v of row p into its field of c.
 * 0, -ENOMEM, or -EINVAL with the reason in why.
 */
static int conf_conv(struct conf *c, const struct conf_param *p, const char *v,
		     char *why, size_t whylen)
{
	static const char *const tu[] = {"ms", "s", "m", "h", "d", "w", NULL};
	static const int64_t tm[] = {1,	      1000,	60000,
				     3600000, 86400000, 604800000};
	static const char *const su[] = {"k", "m", "g", NULL};
	static const int64_t sm[] = {1024, 1024 * 1024, 1024 * 1024 * 1024};
	void *f = conf_field(c, p);
	const char *s = v, *bad;
	char fix[64];
	int r;

	switch (p->type) {
	case CONF_T_STR:
		fix[0] = '\0';
		bad = p->check ? p->check(v, fix, sizeof(fix)) : NULL;
		if (bad != NULL) {
			snprintf(why, whylen, "%s: %.120s", bad, v);
			return -EINVAL;
		}
		*(char **)f = strdup(fix[0] ? fix : v);
		return *(char **)f ? 0 : -ENOMEM;
	case CONF_T_INT:
		r = conf_num(&s, f);
		if (r == 0 && *s != '\0')
			r = -EINVAL;
		if (r < 0)
			snprintf(why, whylen, "%s: %.120s",
				 r == -ERANGE ? "number too large"
					      : "not a non-negative integer",
				 v);
		return r < 0 ? -EINVAL : 0;
	case CONF_T_TIME:
	case CONF_T_SIZE:
		if (p->type == CONF_T_TIME)
			r = conf_scaled(v, tu, tm, 1000, f);
		else
			r = conf_scaled(v, su, sm, 1, f);
		if (r < 0)
			snprintf(why, whylen, "%s: %.120s",
				 r == -ERANGE ? "too large"
				 : p->type == CONF_T_TIME
				     ? "not a time (number with unit ms, s, "
				       "m, h, d or w)"
				     : "not a size",
				 v);
		return r < 0 ? -EINVAL : 0;
	case CONF_T_BOOL:
		if (!strcasecmp(v, "yes") || !strcasecmp(v, "true"))
			*(bool *)f = true;
		else if (!strcasecmp(v, "no") || !strcasecmp(v, "false"))
			*(bool *)f = false;
		else {
			snprintf(why, whylen, "not yes or no: %.120s", v);
			return -EINVAL;
		}
		return 0;
	case CONF_T_ENUM:
		for (int k = 0; p->words[k]; k++) {
			if (strcasecmp(v, p->words[k]) == 0) {
				*(int *)f = k;
				return 0;
			}
		}
		r = snprintf(why, whylen, "not one of");
		for (int k = 0; p->words[k] && r >= 0 && (size_t)r < whylen;
		     k++)
			r += snprintf(why + r, whylen - r, "%s %s",
				      k ? "," : "", p->words[k]);
		if (r >= 0 && (size_t)r < whylen)
			snprintf(why + r, whylen - r, ": %.120s", v);
		return -EINVAL;
	case CONF_T_LIST:
		r = conf_conv_words(p, v, f, why, whylen);
		return r;
	case CONF_T_CIDR:
		return conf_conv_cidrs(v, f, why, whylen);
	}
	return -EINVAL;
}

/* conf_release - free every field of c, the raw values and the path. */
static void conf_release(struct conf *c)
{
	for (size_t i = 0; i < CONF_NPARAM; i++)
		conf_field_free(c, &conf_params[i]);
	if (c->raw != NULL)
		for (size_t i = 0; i < CONF_NPARAM; i++)
			free(c->raw->val[i]);
	free(c->raw);
	free(c->path);
	memset(c, 0, sizeof(*c));
}

/*
 * conf_build - expand and convert raw into c, which takes raw and path
 * (both freed on error too). On error c is left zeroed.
 */
static int conf_build(struct conf *c, char *path, struct conf_raw *raw,
		      char *err, size_t errlen)
{
	struct conf_exp x = {.file = path, .raw = raw};
	char why[512];
	int r = 0;

	memset(c, 0, sizeof(*c));
	c->path = path;
	c->raw = raw;

	/* Expansion first, so a conversion error never hides a loop. */
	for (size_t i = 0; i < CONF_NPARAM && r == 0; i++)
		r = conf_exp_one(&x, (int)i, err, errlen);
	if (r < 0)
		goto fail;

	for (size_t i = 0; i < CONF_NPARAM; i++) {
		const struct conf_param *p = &conf_params[i];

		r = conf_conv(c, p, x.v[i], why, sizeof(why));
		if (r == -EINVAL)
			r = conf_perr(err, errlen, path, raw->line[i], (int)i,
				      why);
		if (r < 0)
			goto fail;
	}
	for (size_t i = 0; i < CONF_NPARAM; i++)
		free(x.v[i]);
	return 0;

fail:
	if (r == -ENOMEM)
		conf_errf(err, errlen, "%s: out of memory", path);
	for (size_t i = 0; i < CONF_NPARAM; i++)
		free(x.v[i]);
	conf_release(c);
	return r;
}

/* conf_raw_defaults - a raw table holding every default. */
static struct conf_raw *conf_raw_defaults(void)
{
	struct conf_raw *raw = calloc(1, sizeof(*raw));

	if (raw == NULL)
		return NULL;
	for (size_t i = 0; i < CONF_NPARAM; i++) {
		const struct conf_param *p = &conf_params[i];

		if (p->dflt_fn != NULL) {
			char buf[256];
			struct conf_sb b = {0};

			/* Computed text is literal: escape its $. */
			p->dflt_fn(buf, sizeof(buf));
			conf_sb_add(&b, "", 0);
			for (const char *s = buf; *s && b.p; s++)
				if (conf_sb_add(&b, s, 1) < 0 ||
				    (*s == '$' && conf_sb_add(&b, s, 1) < 0)) {
					free(b.p);
					b.p = NULL;
				}
			raw->val[i] = b.p;
		} else {
			raw->val[i] = strdup(p->dflt);
		}
		if (raw->val[i] == NULL) {
			for (size_t k = 0; k < i; k++)
				free(raw->val[k]);
			free(raw);
			return NULL;
		}
	}
	return raw;
}

/* conf_parse_line - store one logical line "name = value" into raw. */
static int conf_parse_line(struct conf_raw *raw, const char *file, int line,
			   char *text, char *err, size_t errlen)
{
	char *s = text, *v, *end, *nv;
	size_t n;
	int i;

	while (*s && !conf_space(*s) && *s != '=')
		s++;
	n = (size_t)(s - text);
	if (n == 0) {
		conf_errf(err, errlen,
			  "%s:%d: missing parameter name before "
			  "'='",
			  file, line);
		return -EINVAL;
	}
	while (conf_space(*s))
		s++;
	if (*s != '=') {
		conf_errf(err, errlen,
			  "%s:%d: %.*s: missing '=' after "
			  "parameter name",
			  file, line, (int)(n > 100 ? 100 : n), text);
		return -EINVAL;
	}
	i = conf_lookup(text, n);
	if (i < 0) {
		conf_errf(err, errlen, "%s:%d: %.*s: unknown parameter", file,
			  line, (int)(n > 100 ? 100 : n), text);
		return -EINVAL;
	}

	/* The value is what lies between the blanks around it. */
	for (v = s + 1; conf_space(*v); v++)
		;
	for (end = v + strlen(v); end > v && conf_space(end[-1]); end--)
		;
	nv = strndup(v, (size_t)(end - v));
	if (nv == NULL)
		return -ENOMEM;
	free(raw->val[i]);
	raw->val[i] = nv;
	raw->line[i] = line;
	return 0;
}

/* conf_parse_text - read every logical line of buf into raw. */
static int conf_parse_text(struct conf_raw *raw, const char *file,
			   const char *buf, size_t len, char *err,
			   size_t errlen)
{
	struct conf_sb lg = {0};
	int lineno = 0, start = 0;
	size_t pos = 0;
	int r = 0;

	while (pos < len && r == 0) {
		const char *s = buf + pos, *nl = memchr(s, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - s) : len - pos, skip = 0;

		pos += n + (nl != NULL);
		lineno++;
		if (memchr(s, '\0', n) != NULL) {
			conf_errf(err, errlen, "%s:%d: NUL character in line",
				  file, lineno);
			r = -EINVAL;
			break;
		}

		/* Blank and comment lines do not end a logical line. */
		while (skip < n && conf_space(s[skip]))
			skip++;
		if (skip == n || s[skip] == '#')
			continue;

		if (skip > 0 && start == 0) {
			conf_errf(err, errlen,
				  "%s:%d: line starts with white "
				  "space but continues no parameter",
				  file, lineno);
			r = -EINVAL;
			break;
		}
		if ((skip > 0 ? lg.len + 1 + n - skip : n) > CONF_LINE_MAX) {
			conf_errf(err, errlen,
				  "%s:%d: logical line longer than "
				  "%d bytes",
				  file, skip > 0 ? start : lineno,
				  CONF_LINE_MAX);
			r = -EINVAL;
			break;
		}

		/* A continuation joins the previous text with one space. */
		if (skip > 0) {
			while (lg.len > 0 && conf_space(lg.p[lg.len - 1]))
				lg.len--;
			r = conf_sb_add(&lg, " ", 1);
			if (r == 0)
				r = conf_sb_add(&lg, s + skip, n - skip);
			continue;
		}
		if (start > 0)
			r = conf_parse_line(raw, file, start, lg.p, err,
					    errlen);
		lg.len = 0;
		start = lineno;
		if (r == 0)
			r = conf_sb_add(&lg, s, n);
	}
	if (r == 0 && start > 0)
		r = conf_parse_line(raw, file, start, lg.p, err, errlen);
	if (r == -ENOMEM)
		conf_errf(err, errlen, "%s: out of memory", file);
	free(lg.p);
	return r;
}

/* conf_defaults - fill c with every parameter's default. */
int conf_defaults(struct conf *c)
{
	return conf_parse_buf(c, "(defaults)", "", 0, NULL, 0) == 0 ? 0
								    : -ENOMEM;
}

/* conf_parse_buf - parse len bytes of buf, named name in messages. */
int conf_parse_buf(struct conf *c, const char *name, const char *buf,
		   size_t len, char *err, size_t errlen)
{
	struct conf_raw *raw;
	char *path;
	int r;

	memset(c, 0, sizeof(*c));
	path = strdup(name);
	raw = conf_raw_defaults();
	if (path == NULL || raw == NULL) {
		r = -ENOMEM;
		conf_errf(err, errlen, "%s: out of memory", name);
		goto fail;
	}

	r = conf_parse_text(raw, name, buf, len, err, errlen);
	if (r < 0)
		goto fail;
	return conf_build(c, path, raw, err, errlen);

fail:
	for (size_t i = 0; raw && i < CONF_NPARAM; i++)
		free(raw->val[i]);
	free(raw);
	free(path);
	return r;
}

/* conf_load - read the file at path and parse it. */
int conf_load(struct conf *c, const char *path, char *err, size_t errlen)
{
	struct conf_sb b = {0};
	char chunk[8192];
	FILE *f;
	size_t n;
	int r = 0;

	memset(c, 0, sizeof(*c));
	f = fopen(path, "r");
	if (f == NULL) {
		r = -errno;
		conf_errf(err, errlen, "%s: cannot open: %s", path,
			  strerror(errno));
		return r;
	}

	r = conf_sb_add(&b, "", 0);
	errno = 0;
	while (r == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (b.len + n > CONF_FILE_MAX) {
			conf_errf(err, errlen, "%s: larger than %d bytes", path,
				  CONF_FILE_MAX);
			r = -EINVAL;
			break;
		}
		r = conf_sb_add(&b, chunk, n);
	}
	if (r == 0 && ferror(f)) {
		r = errno ? -errno : -EIO;
		conf_errf(err, errlen, "%s: cannot read: %s", path,
			  strerror(-r));
	}
	if (r == -ENOMEM)
		conf_errf(err, errlen, "%s: out of memory", path);
	fclose(f);
	if (r < 0)
		goto fail;

	r = conf_parse_buf(c, path, b.p, b.len, err, errlen);
fail:
	free(b.p);
	return r;
}

/* conf_set - override one parameter, then expand and convert again. */
int conf_set(struct conf *c, const char *name, const char *value, char *err,
	     size_t errlen)
{
	struct conf_raw *raw = NULL;
	struct conf nc;
	char *path = NULL;
	const char *end;
	int i, r;

	i = conf_lookup(name, strlen(name));
	if (i < 0) {
		conf_errf(err, errlen, "-o: %.100s: unknown parameter", name);
		return -EINVAL;
	}
	if (strchr(value, '\n') != NULL)
		return conf_perr(err, errlen, "", CONF_FROM_OPTION, i,
				 "value contains a newline");
	if (c->raw == NULL) {
		conf_errf(err, errlen, "-o: %s: configuration not loaded",
			  name);
		return -EINVAL;
	}

	/* Work on a copy, so that c is unchanged on error. */
	raw = calloc(1, sizeof(*raw));
	path = strdup(c->path ? c->path : "-o");
	if (raw == NULL || path == NULL)
		goto nomem;
	*raw = *c->raw;
	for (size_t k = 0; k < CONF_NPARAM; k++)
		raw->val[k] = NULL;
	for (size_t k = 0; k < CONF_NPARAM; k++) {
		if ((int)k == i) {
			while (conf_space(*value))
				value++;
			end = value + strlen(value);
			while (end > value && conf_space(end[-1]))
				end--;
			raw->val[k] = strndup(value, (size_t)(end - value));
			raw->line[k] = CONF_FROM_OPTION;
		} else {
			raw->val[k] = strdup(c->raw->val[k]);
		}
		if (raw->val[k] == NULL)
			goto nomem;
	}

	r = conf_build(&nc, path, raw, err, errlen);
	if (r < 0)
		return r;
	conf_release(c);
	*c = nc;
	return 0;

nomem:
	for (size_t k = 0; raw && k < CONF_NPARAM; k++)
		free(raw->val[k]);
	free(raw);
	free(path);
	conf_errf(err, errlen, "-o: %s: out of memory", name);
	return -ENOMEM;
}

/* conf_free - release everything c owns. */
void conf_free(struct conf *c)
{
	conf_release(c);
}

/* conf_fmt_escaped - append s with each $ doubled, so it reads back. */
static int conf_fmt_escaped(struct conf_sb *b, const char *s)
{
	int r = 0;

	for (; *s && r == 0; s++) {
		r = conf_sb_add(b, s, 1);
		if (r == 0 && *s == '$')
			r = conf_sb_add(b, s, 1);
	}
	return r;
}

/* conf_fmt_cidr - "a.b.c.d/p" or "[v6]/p", after "!" when negated. */
static int conf_fmt_cidr(struct conf_sb *b, const struct conf_cidr *e)
{
	char a[INET6_ADDRSTRLEN], out[INET6_ADDRSTRLEN + 16];

	if (inet_ntop(e->family, e->addr, a, sizeof(a)) == NULL)
		snprintf(a, sizeof(a), "?");
	if (e->family == AF_INET6)
		snprintf(out, sizeof(out), "%s[%s]/%d", e->negate ? "!" : "", a,
			 e->prefix);
	else
		snprintf(out, sizeof(out), "%s%s/%d", e->negate ? "!" : "", a,
			 e->prefix);
	return conf_sb_str(b, out);
}

/* conf_fmt - append the effective value of row p of c, as printed. */
static int conf_fmt(struct conf_sb *b, const struct conf *c,
		    const struct conf_param *p)
{
	const void *f = conf_field(c, p);
	char num[32];
	int r = conf_sb_add(b, "", 0);

	switch (p->type) {
	case CONF_T_STR:
		return *(char *const *)f
			   ? conf_fmt_escaped(b, *(char *const *)f)
			   : r;
	case CONF_T_INT:
	case CONF_T_SIZE:
		snprintf(num, sizeof(num), "%lld", (long long)*(int64_t *)f);
		return conf_sb_str(b, num);
	case CONF_T_TIME: {
		long long ms = *(const int64_t *)f;

		if (ms % 1000 == 0)
			snprintf(num, sizeof(num), "%llds", ms / 1000);
		else
			snprintf(num, sizeof(num), "%lldms", ms);
		return conf_sb_str(b, num);
	}
	case CONF_T_BOOL:
		return conf_sb_str(b, *(const bool *)f ? "yes" : "no");
	case CONF_T_ENUM: {
		int k = *(const int *)f, nw = 0;

		while (p->words[nw])
			nw++;
		return conf_sb_str(b, k >= 0 && k < nw ? p->words[k] : "?");
	}
	case CONF_T_LIST: {
		const struct conf_list *l = f;

		for (size_t k = 0; k < l->n && r == 0; k++) {
			if (k > 0)
				r = conf_sb_str(b, ", ");
			if (r == 0)
				r = conf_fmt_escaped(b, l->v[k]);
		}
		return r;
	}
	case CONF_T_CIDR: {
		const struct conf_cidr_list *l = f;

		for (size_t k = 0; k < l->n && r == 0; k++) {
			if (k > 0)
				r = conf_sb_str(b, ", ");
			if (r == 0)
				r = conf_fmt_cidr(b, &l->v[k]);
		}
		return r;
	}
	}
	return r;
}

/* conf_print - `name = value` lines of the effective configuration. */
void conf_print(FILE *out, const struct conf *c, bool nondefault_only,
		bool verbose)
{
	struct conf d;
	bool have_d = false;
	struct conf_sb b = {0}, db = {0};

	/* Without memory for the defaults, print everything. */
	if (nondefault_only)
		have_d = conf_defaults(&d) == 0;

	for (size_t i = 0; i < CONF_NPARAM; i++) {
		const struct conf_param *p = &conf_params[i];

		b.len = 0;
		if (conf_fmt(&b, c, p) < 0)
			continue;
		if (have_d) {
			db.len = 0;
			if (conf_fmt(&db, &d, p) == 0 && strcmp(b.p, db.p) == 0)
				continue;
		}
		if (verbose)
			fprintf(out, "# %s\n", p->meaning);
		fprintf(out, "%s =%s%s\n", p->name, b.len ? " " : "", b.p);
	}
	if (have_d)
		conf_free(&d);
	free(b.p);
	free(db.p);
}

/* conf_cidr_parse - "addr", "addr/prefix" or "[v6]/prefix". */
int conf_cidr_parse(struct conf_cidr *out, const char *s)
{
	char a[INET6_ADDRSTRLEN];
	const char *slash, *astart = s, *aend;
	int64_t prefix = -1;
	int max;

	memset(out, 0, sizeof(*out));
	if (s[0] == '[') {
		astart = s + 1;
		aend = strchr(astart, ']');
		if (aend == NULL || (aend[1] != '\0' && aend[1] != '/'))
			return -EINVAL;
		slash = aend[1] == '/' ? aend + 1 : NULL;
	} else {
		slash = strchr(s, '/');
		aend = slash ? slash : s + strlen(s);
	}
	if (aend == astart || (size_t)(aend - astart) >= sizeof(a))
		return -EINVAL;
	memcpy(a, astart, (size_t)(aend - astart));
	a[aend - astart] = '\0';

	/* Brackets hold v6 only, as Postfix writes [::1]/128. */
	if (s[0] != '[' && inet_pton(AF_INET, a, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, a, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return -EINVAL;
	}

	if (slash != NULL) {
		const char *p = slash + 1;

		if (conf_num(&p, &prefix) < 0 || *p != '\0' || prefix > max)
			return -EINVAL;
	} else {
		prefix = max;
	}
	out->prefix = (int)prefix;

	/* Host bits set (10.1.2.3/8) mean the network they lie in. */
	for (int bit = out->prefix; bit < max; bit++)
		out->addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
	return 0;
}

/* conf_prefix_eq - whether a and b agree on their first prefix bits. */
static bool conf_prefix_eq(const uint8_t *a, const uint8_t *b, int prefix)
{
	int full = prefix / 8, rest = prefix % 8;
	uint8_t mask = (uint8_t)(0xffu << (8 - rest));

	if (memcmp(a, b, (size_t)full) != 0)
		return false;
	return rest == 0 || ((a[full] ^ b[full]) & mask) == 0;
}

/* conf_cidr_match - whether sa lies in an entry of l. */
bool conf_cidr_match(const struct conf_cidr_list *l, const struct sockaddr *sa)
{
	uint8_t a4[4], a6[16];
	bool has4 = false, has6 = false;

	if (sa->sa_family == AF_INET) {
		memcpy(a4, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		has4 = true;
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *in6 =
		    &((const struct sockaddr_in6 *)sa)->sin6_addr;

		memcpy(a6, in6, 16);
		has6 = true;

		/* A dual-stack socket shows v4 clients as ::ffff:a.b.c.d. */
		if (IN6_IS_ADDR_V4MAPPED(in6)) {
			memcpy(a4, a6 + 12, 4);
			has4 = true;
		}
	}

	for (size_t k = 0; k < l->n; k++) {
		const struct conf_cidr *e = &l->v[k];

		if (e->family == AF_INET && has4 && e->prefix <= 32 &&
		    conf_prefix_eq(e->addr, a4, e->prefix))
			return !e->negate;
		if (e->family == AF_INET6 && has6 && e->prefix <= 128 &&
		    conf_prefix_eq(e->addr, a6, e->prefix))
			return !e->negate;
	}
	return false;
}
