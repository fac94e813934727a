/*
 * relay_dns - the delivery side's asynchronous resolver: the mail hosts of
 * a domain by MX (RFC 5321 section 5.1), or the addresses of one host, with
 * a cache that keeps every RRset for its TTL.
 *
 * c-ares sends the queries; its sockets are polled by the uv loop the
 * resolver was made on, and its retransmissions run from a uv timer. The
 * raw answers are parsed here (relay_dns_parse) because the TTL of each
 * record is needed for the cache.
 *
 * MX: the records are sorted by preference and equal preferences shuffled
 * anew for every lookup; the A and then the AAAA records of each exchange
 * give its addresses (IPv4 first); an exchange with no address is dropped.
 * A domain without MX records (NODATA) is its own single host, preference
 * 0. A single MX whose exchange is the root is a null MX (RFC 7505).
 *
 * Cache: RRsets are kept by (name, type) for the smallest TTL of the set,
 * at most one day. NXDOMAIN and NODATA are kept for the negative TTL of
 * RFC 2308 section 5 (the smaller of the SOA's TTL and MINIMUM), at most
 * one hour, or 60 s when the answer carries no SOA. Temporary failures are
 * not kept. A lookup for an RRset that is already being asked for waits
 * for that query instead of sending another.
 *
 * Names: lower-cased, one trailing dot removed; an empty label, a label
 * over 63 characters, a name over 253 characters, or a byte outside
 * printable ASCII (or a backslash) is -EINVAL. U-labels must have been
 * converted to A-labels by the caller.
 *
 * Threads: a resolver belongs to the thread that runs its loop; nothing
 * here may be called from another thread. relay_dns_new and relay_dns_free
 * call ares_library_init/_cleanup, which are not thread-safe: make and
 * free resolvers from one thread at a time. relay_dns_parse and
 * relay_dns_name are pure and may be called from anywhere.
 *
 * Memory: a lookup holds references to the cached RRsets it uses, not
 * copies (about 1.5 kB per lookup in flight). Expired RRsets are swept
 * out once a minute, and the cache holds at most RELAY_DNS_CACHE_MAX
 * RRsets (a few hundred bytes each): when it is full, an eighth of the
 * answers are dropped, in an order that gives each its turn, and asked
 * again when needed. A newsletter to a million domains thus costs a
 * bounded cache and some repeated queries, not a day of every answer.
 *
 * Errors are negative errno.
 */
#ifndef WAXSEAL_RELAY_DNS_H
#define WAXSEAL_RELAY_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "conf/conf.h"

#define RELAY_DNS_MAXADDR 8
#define RELAY_DNS_MAXHOST 16

/* Record types and response codes waxseal asks for and looks at. */
#define RELAY_DNS_T_A 1
#define RELAY_DNS_T_CNAME 5
#define RELAY_DNS_T_SOA 6
#define RELAY_DNS_T_MX 15
#define RELAY_DNS_T_AAAA 28
#define RELAY_DNS_RCODE_NOERROR 0
#define RELAY_DNS_RCODE_SERVFAIL 2
#define RELAY_DNS_RCODE_NXDOMAIN 3

/* Most records relay_dns_parse returns from one answer. */
#define RELAY_DNS_MAXRR 64

/* Most RRsets the cache holds (relay_dns_set_cache_max changes it). */
#define RELAY_DNS_CACHE_MAX 100000

/* Longest TTLs the cache honours, in seconds. */
#define RELAY_DNS_TTL_MAX 86400
#define RELAY_DNS_NEG_TTL_MAX 3600
#define RELAY_DNS_NEG_TTL_NOSOA 60

struct relay_dns;

struct relay_dns_host {
	char name[256]; /* the MX exchange, or the host/domain itself */
	int pref;	/* MX preference; 0 for the A/AAAA fallback */
	size_t naddr;
	struct sockaddr_storage addr[RELAY_DNS_MAXADDR]; /* port 0 */
};

struct relay_dns_answer {
	/* 0: nhost >= 1 hosts with addresses;
	 * -ENOENT: permanent: NXDOMAIN, or no MX and no A/AAAA, or no MX
	 *   host has any address (bounce);
	 * -EHOSTUNREACH: null MX (RFC 7505): the domain accepts no mail;
	 * -EAGAIN: temporary: SERVFAIL, timeout, refused (retry later);
	 * -ECANCELED: relay_dns_free ran before the answer came. */
	int status;
	size_t nhost;
	const struct relay_dns_host *host; /* in the order to try */
};

/*
 * The answer callback: runs exactly once per relay_dns_mx/relay_dns_host
 * call that returned 0, always from the loop and never from within that
 * call. a and everything it points to are valid only during the call. The
 * callback may start new lookups, and may call relay_dns_free.
 */
typedef void (*relay_dns_cb)(void *arg, const struct relay_dns_answer *a);

/* One record of the asked type, as relay_dns_parse returns it. */
struct relay_dns_rr {
	uint32_t ttl;		/* seconds, the smallest along a CNAME chain */
	int pref;		/* MX: preference */
	char name[256];		/* MX: exchange, lower-case, "" for the root */
	bool name_ok;		/* MX: exchange is printable, usable to ask */
	unsigned char addr[16]; /* A: 4 bytes, AAAA: 16 bytes */
};

/* What relay_dns_parse found in one answer. */
struct relay_dns_msg {
	int rcode;	  /* RELAY_DNS_RCODE_* or another RFC 1035 code */
	bool tc;	  /* the server truncated the answer */
	bool has_soa;	  /* an SOA in the authority section */
	uint32_t soa_min; /* min(SOA TTL, SOA MINIMUM), RFC 2308 5 */
	size_t nrr;	  /* records of the asked type kept in rr */
	struct relay_dns_rr rr[RELAY_DNS_MAXRR];
};

/*
 * relay_dns_parse - read the DNS response msg[0..len) to a query for
 * qtype (RELAY_DNS_T_A, _AAAA or _MX). Keeps in out->rr the answer
 * records of qtype, class IN, owned by the question's name or by the end
 * of a CNAME chain that starts there (at most 8 links); other records are
 * skipped. Names may be compressed (RFC 1035 section 4.1.4); a pointer
 * must point backwards, so no loop can go on. Records past
 * RELAY_DNS_MAXRR are dropped. Returns 0, or -EBADMSG: not a response,
 * not exactly one question, a question for another type, truncated data,
 * a bad pointer, a label over 63, a name over 255 octets, or an A/AAAA
 * record of the wrong length; -EINVAL for another qtype. msg is only
 * read; out (about 18 kB) is the caller's and is overwritten.
 */
int relay_dns_parse(const unsigned char *msg, size_t len, int qtype,
		    struct relay_dns_msg *out);

/*
 * relay_dns_name - normalise name into out (room for 254 bytes): lower
 * case, no trailing dot. 0 or -EINVAL (see "Names" above).
 */
int relay_dns_name(const char *name, char *out);

/*
 * relay_dns_new - a resolver on loop; servers: "ip", "ip:port" or
 * "[v6]:port" entries, or empty for /etc/resolv.conf. -EINVAL with the
 * reason in err for a bad entry; -ENOMEM; -EIO when c-ares cannot start
 * (reason in err). *out is owned by the caller until relay_dns_free.
 */
int relay_dns_new(struct relay_dns **out, uv_loop_t *loop,
		  const struct conf_list *servers, char *err, size_t errlen);

/*
 * relay_dns_new_opts - relay_dns_new with the time c-ares waits for the
 * first answer (timeout_ms) and the number of tries per server; 0 keeps
 * c-ares's default for either.
 */
int relay_dns_new_opts(struct relay_dns **out, uv_loop_t *loop,
		       const struct conf_list *servers, unsigned timeout_ms,
		       unsigned tries, char *err, size_t errlen);

/* relay_dns_mx - the mail hosts of domain. 0, -ENOMEM or -EINVAL. */
int relay_dns_mx(struct relay_dns *d, const char *domain, relay_dns_cb cb,
		 void *arg);

/*
 * relay_dns_host - the addresses of one host name, no MX (relayhost
 * "[host]"); an IP literal (dotted quad or IPv6, without brackets) answers
 * without any query. 0, -ENOMEM or -EINVAL.
 */
int relay_dns_host(struct relay_dns *d, const char *host, relay_dns_cb cb,
		   void *arg);

/*
 * relay_dns_stats - queries sent to servers, and answers from the cache
 * or an in-flight query, since new. Both count RRsets (name, type): one MX
 * lookup that finds two exchanges needs five.
 */
void relay_dns_stats(const struct relay_dns *d, uint64_t *queries,
		     uint64_t *cached);

/*
 * relay_dns_set_cache_max - hold at most max RRsets (at least 8), dropping
 * answers now if there are more; relay_dns_cache_size - how many it holds,
 * queries in flight included.
 */
void relay_dns_set_cache_max(struct relay_dns *d, size_t max);
size_t relay_dns_cache_size(const struct relay_dns *d);

/*
 * relay_dns_free - cancel pending lookups (their callbacks run with
 * -ECANCELED, from within this call, and must start no new lookup) and
 * release; closes its uv handles, so run the loop once more afterwards to
 * finish the closes. d is gone after that loop run.
 */
void relay_dns_free(struct relay_dns *d);

#endif
