/*
 * relay_dns - MX and address lookups over c-ares with a TTL cache; see
 * relay_dns.h for the contract.
 *
 * Three layers:
 *
 *   relay_dns_parse - a pure reader of DNS responses (RFC 1035 section 4)
 *     that returns the records of the asked type with their TTLs, the
 *     rcode and the negative TTL of the SOA.
 *   rrsets - the cache: one struct relay_dns_rrset per (name, type), in a
 *     hash table. An rrset is PENDING while its query is out, with a list
 *     of lookups waiting for it, then READY with its records, its status
 *     and when it expires. It is reference counted: the table, the query
 *     in flight and every lookup using it hold one reference each, so an
 *     rrset that expires or fails while a lookup still reads it stays
 *     alive until that lookup is delivered.
 *   lookups - one struct relay_dns_lookup per relay_dns_mx/_host call: a
 *     small state machine (MX, then the addresses of the hosts) that
 *     counts the rrsets it still waits for. A finished lookup goes to the
 *     done list, which a uv_idle handle drains on the next loop iteration,
 *     building the answer from the rrsets the lookup holds.
 *
 * Lookups hold references, not copies, so that 100,000 lookups of one
 * domain cost 100,000 small structs and one set of records.
 *
 * c-ares: a sock_state_cb opens and closes one uv_poll_t per socket;
 * events go to ares_process_fd; a uv timer, re-armed from ares_timeout
 * after every call into c-ares, drives retransmissions and timeouts.
 */
#include "relay/relay_dns.h"

#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest CNAME chain followed inside one answer. */
#define RELAY_DNS_MAXCNAME 8

/* How often expired rrsets are swept out of the table, in ms. */
#define RELAY_DNS_SWEEP_MS 60000

/* A doubly linked list node; a list is a sentinel node. */
struct relay_dns_link {
	struct relay_dns_link *prev, *next;
};

/* One lookup waiting for one rrset. */
struct relay_dns_wait {
	struct relay_dns_wait *next;
	struct relay_dns_lookup *l;
};

/* One cached record: MX (pref, name) or A/AAAA (addr). */
struct relay_dns_rec {
	int pref;
	char *name;
	unsigned char addr[16];
};

enum relay_dns_state { RELAY_DNS_PENDING, RELAY_DNS_READY };

struct relay_dns_rrset {
	struct relay_dns_rrset *next; /* hash chain */
	struct relay_dns *d;
	struct relay_dns_wait *waiters; /* while PENDING */
	unsigned refs;
	bool intable;
	int state;	  /* enum relay_dns_state */
	int status;	  /* 0, -ENOENT, -EAGAIN */
	uint64_t expires; /* uv_now() ms */
	int type;
	size_t n;
	struct relay_dns_rec *rec;
	char name[];
};

enum relay_dns_phase { RELAY_DNS_PH_MX, RELAY_DNS_PH_ADDR, RELAY_DNS_PH_DONE };

/* One host of a lookup: its name and the rrsets of its addresses. */
struct relay_dns_lhost {
	const char *name; /* into the lookup or its MX rrset */
	int pref;
	struct relay_dns_rrset *a, *aaaa;
};

struct relay_dns_lookup {
	struct relay_dns_link link; /* first: d->active or d->done */
	struct relay_dns *d;
	relay_dns_cb cb;
	void *arg;
	int phase;	/* enum relay_dns_phase */
	int status;	/* when done */
	size_t pending; /* rrsets not READY yet, plus a setup hold */
	struct relay_dns_rrset *mxset;
	bool literal;
	struct sockaddr_storage lit;
	size_t nhost;
	struct relay_dns_lhost h[RELAY_DNS_MAXHOST];
	size_t nwait;
	struct relay_dns_wait wait[1 + 2 * RELAY_DNS_MAXHOST];
	char name[254];
};

/* One c-ares socket being polled. */
struct relay_dns_poll {
	uv_poll_t h;
	struct relay_dns *d;
	int fd;
	struct relay_dns_poll *next;
};

struct relay_dns {
	uv_loop_t *loop;
	ares_channel channel;
	bool have_channel;
	bool closing;
	uv_timer_t timer;
	uv_idle_t idle;
	unsigned nhandles; /* open uv handles, for the last close */
	struct relay_dns_poll *polls;

	struct relay_dns_rrset **bucket;
	size_t nbucket; /* a power of two */
	size_t nset;
	uint64_t sweep_at;
	size_t cache_max; /* most rrsets in the table, see relay_dns_evict */
	size_t evict_pos; /* the bucket eviction goes on from */

	struct relay_dns_link active; /* lookups waiting for rrsets */
	struct relay_dns_link done;   /* lookups to deliver */
	size_t ndone;

	uint64_t queries, cached;
	uint64_t rand;

	/* Scratch, used by one callback at a time on the loop thread. */
	struct relay_dns_msg msg;
	struct relay_dns_host hosts[RELAY_DNS_MAXHOST];
};

static void relay_dns_step(struct relay_dns_lookup *l);
static void relay_dns_idle_cb(uv_idle_t *h);

/*
 * Part 1: relay_dns_parse.
 */

/* One resource record's fixed fields, as read from the message. */
struct relay_dns_rrhdr {
	char owner[256];
	int type, class;
	uint32_t ttl;
	size_t rdoff, rdlen;
};

/* relay_dns_u16 - big-endian 16 bits at p. */
static unsigned relay_dns_u16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* relay_dns_u32 - big-endian 32 bits at p. */
static uint32_t relay_dns_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/*
 * relay_dns_read_name - the possibly compressed name at msg[off] into out
 * (room for 256), lower-case, labels joined by dots, "" for the root.
 * *next is the offset after the name where it starts. A pointer must go
 * below the start of the label run it ends, which makes every chain of
 * pointers finite. *printable is cleared when a label holds a byte that
 * cannot be asked for again (a dot, a backslash, space, control or
 * non-ASCII). 0 or -EBADMSG.
 */
static int relay_dns_read_name(const unsigned char *msg, size_t len, size_t off,
			       char *out, size_t *next, bool *printable)
{
	size_t pos = off, run = off, wire = 0, o = 0, i;
	bool jumped = false;
	unsigned c, ptr;

	*printable = true;
	for (;;) {
		if (pos >= len)
			return -EBADMSG;
		c = msg[pos];

		/* A pointer (RFC 1035 section 4.1.4). */
		if ((c & 0xc0) == 0xc0) {
			if (pos + 1 >= len)
				return -EBADMSG;
			ptr = (c & 0x3f) << 8 | msg[pos + 1];
			if (!jumped)
				*next = pos + 2;
			if (ptr >= run)
				return -EBADMSG;
			jumped = true;
			pos = run = ptr;
			continue;
		}

		/* 0x40 and 0x80 are extended label types (RFC 6891
		 * section 5): none is in use, so refuse them. */
		if (c & 0xc0)
			return -EBADMSG;
		if (c == 0) {
			if (!jumped)
				*next = pos + 1;
			break;
		}

		/* The whole name, length octets and root, fits 255. */
		wire += c + 1;
		if (wire + 1 > 255 || pos + 1 + c > len)
			return -EBADMSG;
		if (o > 0)
			out[o++] = '.';
		for (i = 0; i < c; i++) {
			unsigned char ch = msg[pos + 1 + i];

			if (ch <= 0x20 || ch >= 0x7f || ch == '.' || ch == '\\')
				*printable = false;
			if (ch >= 'A' && ch <= 'Z')
				ch += 'a' - 'A';
			out[o++] = (char)ch;
		}
		pos += 1 + c;
	}
	out[o] = '\0';
	return 0;
}

/*
 * relay_dns_read_rr - the record at *pos into h; *pos moves past it.
 * 0 or -EBADMSG.
 */
static int relay_dns_read_rr(const unsigned char *msg, size_t len, size_t *pos,
			     struct relay_dns_rrhdr *h)
{
	bool printable;
	size_t p;

	if (relay_dns_read_name(msg, len, *pos, h->owner, &p, &printable) < 0)
		return -EBADMSG;
	if (len - p < 10)
		return -EBADMSG;
	h->type = (int)relay_dns_u16(msg + p);
	h->class = (int)relay_dns_u16(msg + p + 2);
	h->ttl = relay_dns_u32(msg + p + 4);

	/* RFC 2181 section 8: a TTL with the top bit set means zero. */
	if (h->ttl & 0x80000000u)
		h->ttl = 0;
	h->rdlen = relay_dns_u16(msg + p + 8);
	h->rdoff = p + 10;
	if (len - h->rdoff < h->rdlen)
		return -EBADMSG;
	*pos = h->rdoff + h->rdlen;
	return 0;
}

/*
 * relay_dns_keep - add the record h (of the asked type, owned by the end
 * of the CNAME chain) to out. 0 or -EBADMSG.
 */
static int relay_dns_keep(const unsigned char *msg, size_t len, int qtype,
			  const struct relay_dns_rrhdr *h, uint32_t chain_ttl,
			  struct relay_dns_msg *out)
{
	struct relay_dns_rr *rr;
	size_t end = h->rdoff + h->rdlen, next;
	size_t want = qtype == RELAY_DNS_T_A ? 4 : 16;

	if (out->nrr == RELAY_DNS_MAXRR)
		return 0;
	rr = &out->rr[out->nrr];
	memset(rr, 0, sizeof *rr);
	rr->ttl = h->ttl < chain_ttl ? h->ttl : chain_ttl;

	if (qtype == RELAY_DNS_T_MX) {
		if (h->rdlen < 3)
			return -EBADMSG;
		rr->pref = (int)relay_dns_u16(msg + h->rdoff);
		if (relay_dns_read_name(msg, len, h->rdoff + 2, rr->name, &next,
					&rr->name_ok) < 0 ||
		    next > end)
			return -EBADMSG;
	} else {
		if (h->rdlen != want)
			return -EBADMSG;
		memcpy(rr->addr, msg + h->rdoff, want);
	}
	out->nrr++;
	return 0;
}

/*
 * relay_dns_soa - the negative TTL of the SOA record h (RFC 2308 section
 * 5: the smaller of its TTL and its MINIMUM field). 0 or -EBADMSG.
 */
static int relay_dns_soa(const unsigned char *msg, size_t len,
			 const struct relay_dns_rrhdr *h, uint32_t *ttl)
{
	char name[256];
	size_t end = h->rdoff + h->rdlen, p;
	bool printable;
	uint32_t min;

	/* MNAME, RNAME, then SERIAL REFRESH RETRY EXPIRE MINIMUM. */
	if (relay_dns_read_name(msg, len, h->rdoff, name, &p, &printable) < 0 ||
	    p > end ||
	    relay_dns_read_name(msg, len, p, name, &p, &printable) < 0 ||
	    p > end || end - p < 20)
		return -EBADMSG;
	min = relay_dns_u32(msg + p + 16);
	if (min & 0x80000000u)
		min = 0;
	*ttl = h->ttl < min ? h->ttl : min;
	return 0;
}

/*
 * relay_dns_follow - follow the CNAME chain from cur through the n answer
 * records at an; cur becomes its end and *ttl the smallest TTL on the way.
 * 0 or -EBADMSG.
 */
static int relay_dns_follow(const unsigned char *msg, size_t len, size_t an,
			    unsigned n, char *cur, uint32_t *ttl,
			    struct relay_dns_rrhdr *h)
{
	char target[256];
	size_t pos, next;
	unsigned hop, i;
	bool printable, moved;

	for (hop = 0; hop < RELAY_DNS_MAXCNAME; hop++) {
		moved = false;
		pos = an;
		for (i = 0; i < n && !moved; i++) {
			if (relay_dns_read_rr(msg, len, &pos, h) < 0)
				return -EBADMSG;
			if (h->type != RELAY_DNS_T_CNAME ||
			    strcmp(h->owner, cur) != 0)
				continue;
			if (relay_dns_read_name(msg, len, h->rdoff, target,
						&next, &printable) < 0 ||
			    next > h->rdoff + h->rdlen)
				return -EBADMSG;
			memcpy(cur, target, strlen(target) + 1);
			if (h->ttl < *ttl)
				*ttl = h->ttl;
			moved = true;
		}
		if (!moved)
			break;
	}
	return 0;
}

int relay_dns_parse(const unsigned char *msg, size_t len, int qtype,
		    struct relay_dns_msg *out)
{
	struct relay_dns_rrhdr h;
	char qname[256];
	unsigned qd, an, ns, i;
	size_t pos, anpos;
	uint32_t chain_ttl = UINT32_MAX;
	bool printable;

	if (qtype != RELAY_DNS_T_A && qtype != RELAY_DNS_T_AAAA &&
	    qtype != RELAY_DNS_T_MX)
		return -EINVAL;
	memset(out, 0, offsetof(struct relay_dns_msg, rr));
	if (len < 12 || !(msg[2] & 0x80))
		return -EBADMSG;
	out->tc = (msg[2] & 0x02) != 0;
	out->rcode = msg[3] & 0x0f;
	qd = relay_dns_u16(msg + 4);
	an = relay_dns_u16(msg + 6);
	ns = relay_dns_u16(msg + 8);

	/* The question: the one name and type that was asked. */
	if (qd != 1 ||
	    relay_dns_read_name(msg, len, 12, qname, &pos, &printable) < 0 ||
	    len - pos < 4 || (int)relay_dns_u16(msg + pos) != qtype)
		return -EBADMSG;
	anpos = pos + 4;

	/* The answer: records of qtype at the end of the CNAME chain. */
	if (relay_dns_follow(msg, len, anpos, an, qname, &chain_ttl, &h) < 0)
		return -EBADMSG;
	pos = anpos;
	for (i = 0; i < an; i++) {
		if (relay_dns_read_rr(msg, len, &pos, &h) < 0)
			return -EBADMSG;
		if (h.type != qtype || h.class != 1 ||
		    strcmp(h.owner, qname) != 0)
			continue;
		if (relay_dns_keep(msg, len, qtype, &h, chain_ttl, out) < 0)
			return -EBADMSG;
	}

	/* The authority section: the first SOA gives the negative TTL. */
	for (i = 0; i < ns; i++) {
		if (relay_dns_read_rr(msg, len, &pos, &h) < 0)
			return -EBADMSG;
		if (h.type != RELAY_DNS_T_SOA || out->has_soa)
			continue;
		if (relay_dns_soa(msg, len, &h, &out->soa_min) < 0)
			return -EBADMSG;
		out->has_soa = true;
	}

	/* A negative TTL is bounded by the CNAMEs that led to it too. */
	if (out->has_soa && chain_ttl < out->soa_min)
		out->soa_min = chain_ttl;
	return 0;
}

int relay_dns_name(const char *name, char *out)
{
	size_t n = strlen(name), i, label = 0;

	/* One trailing dot is the root; the root alone is no domain. */
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return -EINVAL;

	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)name[i];

		if (ch == '.') {
			if (label == 0)
				return -EINVAL;
			label = 0;
		} else if (ch <= 0x20 || ch >= 0x7f || ch == '\\') {
			return -EINVAL;
		} else if (++label > 63) {
			return -EINVAL;
		}
		out[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 'a' - 'A' : ch);
	}
	if (label == 0)
		return -EINVAL;
	out[n] = '\0';
	return 0;
}

/*
 * Part 2: lists, lookups' bookkeeping and the cache.
 */

/* relay_dns_list_init - an empty list. */
static void relay_dns_list_init(struct relay_dns_link *s)
{
	s->prev = s->next = s;
}

/* relay_dns_list_add - put n at the tail of s. */
static void relay_dns_list_add(struct relay_dns_link *s,
			       struct relay_dns_link *n)
{
	n->prev = s->prev;
	n->next = s;
	s->prev->next = n;
	s->prev = n;
}

/* relay_dns_list_del - take n out of its list. */
static void relay_dns_list_del(struct relay_dns_link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

/* relay_dns_random - the next number of d's xorshift generator. */
static uint64_t relay_dns_random(struct relay_dns *d)
{
	d->rand ^= d->rand << 13;
	d->rand ^= d->rand >> 7;
	d->rand ^= d->rand << 17;
	return d->rand;
}

/* relay_dns_hash - FNV-1a of name and type. */
static size_t relay_dns_hash(const char *name, int type)
{
	uint64_t h = 14695981039346656037u;

	while (*name != '\0') {
		h ^= (unsigned char)*name++;
		h *= 1099511628211u;
	}
	h ^= (unsigned)type;
	h *= 1099511628211u;
	return (size_t)h;
}

/* relay_dns_release - drop one reference to s; the last frees it. */
static void relay_dns_release(struct relay_dns_rrset *s)
{
	size_t i;

	if (--s->refs > 0)
		return;
	for (i = 0; i < s->n; i++)
		free(s->rec[i].name);
	free(s->rec);
	free(s);
}

/* relay_dns_unlink - take s out of the table, dropping the table's ref. */
static void relay_dns_unlink(struct relay_dns *d, struct relay_dns_rrset *s)
{
	struct relay_dns_rrset **p;

	if (!s->intable)
		return;
	p = &d->bucket[relay_dns_hash(s->name, s->type) & (d->nbucket - 1)];
	while (*p != s)
		p = &(*p)->next;
	*p = s->next;
	s->intable = false;
	d->nset--;
	relay_dns_release(s);
}

/* relay_dns_expired - s is an answer whose time is over. */
static bool relay_dns_expired(struct relay_dns *d,
			      const struct relay_dns_rrset *s)
{
	return s->state == RELAY_DNS_READY && uv_now(d->loop) >= s->expires;
}

/*
 * relay_dns_sweep - once a minute, drop expired rrsets from the table so
 * names never asked again do not stay forever.
 */
static void relay_dns_sweep(struct relay_dns *d)
{
	struct relay_dns_rrset *s, *next;
	size_t i;

	if (uv_now(d->loop) < d->sweep_at)
		return;
	d->sweep_at = uv_now(d->loop) + RELAY_DNS_SWEEP_MS;
	for (i = 0; i < d->nbucket; i++)
		for (s = d->bucket[i]; s != NULL; s = next) {
			next = s->next;
			if (relay_dns_expired(d, s))
				relay_dns_unlink(d, s);
		}
}

/*
 * relay_dns_evict - make room when the table is full: drop answers, the
 * expired ones and then any, bucket by bucket from where the last round
 * stopped (a clock hand, so every answer gets its turn to be dropped),
 * until an eighth of the room is free. An rrset still being asked for
 * stays (lookups wait on it), and so does one a lookup holds, in memory
 * only: the lookup keeps its reference. A dropped answer is asked again
 * when it is needed.
 */
static void relay_dns_evict(struct relay_dns *d)
{
	struct relay_dns_rrset *s, *next;
	size_t want = d->cache_max - d->cache_max / 8, i;

	if (d->nset < d->cache_max)
		return;
	for (i = 0; i < d->nbucket && d->nset > want; i++) {
		d->evict_pos = (d->evict_pos + 1) & (d->nbucket - 1);
		for (s = d->bucket[d->evict_pos]; s != NULL; s = next) {
			next = s->next;
			if (s->state == RELAY_DNS_READY)
				relay_dns_unlink(d, s);
		}
	}
}

/* relay_dns_grow - double the table when it holds more sets than buckets. */
static void relay_dns_grow(struct relay_dns *d)
{
	struct relay_dns_rrset **nb, *s, *next;
	size_t n = d->nbucket * 2, i, h;

	if (d->nset < d->nbucket)
		return;
	nb = calloc(n, sizeof *nb);
	if (nb == NULL)
		return; /* longer chains, still correct */
	for (i = 0; i < d->nbucket; i++)
		for (s = d->bucket[i]; s != NULL; s = next) {
			next = s->next;
			h = relay_dns_hash(s->name, s->type) & (n - 1);
			s->next = nb[h];
			nb[h] = s;
		}
	free(d->bucket);
	d->bucket = nb;
	d->nbucket = n;
}

/* relay_dns_find - the live rrset of (name, type), or NULL. */
static struct relay_dns_rrset *relay_dns_find(struct relay_dns *d,
					      const char *name, int type)
{
	struct relay_dns_rrset *s;
	size_t h = relay_dns_hash(name, type) & (d->nbucket - 1);

	for (s = d->bucket[h]; s != NULL; s = s->next) {
		if (s->type != type || strcmp(s->name, name) != 0)
			continue;
		if (relay_dns_expired(d, s)) {
			relay_dns_unlink(d, s);
			return NULL;
		}
		return s;
	}
	return NULL;
}

/*
 * Part 3: c-ares on the uv loop.
 */

/* relay_dns_closed_cb - one handle less; the last one frees d. */
static void relay_dns_closed_cb(uv_handle_t *h)
{
	struct relay_dns *d = h->data;

	if (--d->nhandles == 0 && d->closing)
		free(d);
}

/* relay_dns_poll_closed_cb - a c-ares socket's poll handle is closed. */
static void relay_dns_poll_closed_cb(uv_handle_t *h)
{
	struct relay_dns_poll *p = (struct relay_dns_poll *)h;
	struct relay_dns *d = p->d;

	free(p);
	if (--d->nhandles == 0 && d->closing)
		free(d);
}

static void relay_dns_timer_cb(uv_timer_t *t);

/* relay_dns_arm - run the timer for c-ares's next timeout, if any. */
static void relay_dns_arm(struct relay_dns *d)
{
	struct timeval tv, *tvp;
	uint64_t ms;

	if (d->closing)
		return;
	tvp = ares_timeout(d->channel, NULL, &tv);
	if (tvp == NULL) {
		uv_timer_stop(&d->timer);
		return;
	}
	ms = (uint64_t)tv.tv_sec * 1000 + ((uint64_t)tv.tv_usec + 999) / 1000;
	uv_timer_start(&d->timer, relay_dns_timer_cb, ms, 0);
}

/* relay_dns_timer_cb - let c-ares retransmit or give up. */
static void relay_dns_timer_cb(uv_timer_t *t)
{
	struct relay_dns *d = t->data;

	ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	relay_dns_arm(d);
}

/* relay_dns_poll_cb - a c-ares socket is ready (or failed). */
static void relay_dns_poll_cb(uv_poll_t *h, int status, int events)
{
	struct relay_dns_poll *p = (struct relay_dns_poll *)h;
	struct relay_dns *d = p->d;
	ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

	/* On an error c-ares is told both ways, so its read or write
	 * fails and it moves to the next server. */
	if (status < 0 || (events & (UV_READABLE | UV_DISCONNECT)))
		rfd = p->fd;
	if (status < 0 || (events & UV_WRITABLE))
		wfd = p->fd;
	ares_process_fd(d->channel, rfd, wfd);
	relay_dns_arm(d);
}

/*
 * relay_dns_sock_state_cb - c-ares wants fd watched for reading and/or
 * writing, or (both false) no more: it is about to close the socket.
 */
static void relay_dns_sock_state_cb(void *data, ares_socket_t fd, int readable,
				    int writable)
{
	struct relay_dns *d = data;
	struct relay_dns_poll *p, **pp;
	int events =
	    (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);

	for (pp = &d->polls; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->fd == fd)
			break;
	p = *pp;

	/* Stop now, before c-ares closes fd and the number is reused. */
	if (events == 0) {
		if (p == NULL)
			return;
		*pp = p->next;
		uv_poll_stop(&p->h);
		uv_close((uv_handle_t *)&p->h, relay_dns_poll_closed_cb);
		return;
	}

	if (p == NULL) {
		p = calloc(1, sizeof *p);
		if (p == NULL)
			return; /* the query times out: -EAGAIN */
		p->d = d;
		p->fd = fd;
		if (uv_poll_init_socket(d->loop, &p->h, fd) < 0) {
			free(p);
			return;
		}
		d->nhandles++;
		p->next = d->polls;
		d->polls = p;
	}
	uv_poll_start(&p->h, events, relay_dns_poll_cb);
}

/*
 * Part 4: rrsets filled from answers, lookups stepped along.
 */

/* relay_dns_release_hold - one rrset (or the setup hold) less to wait. */
static void relay_dns_release_hold(struct relay_dns_lookup *l)
{
	if (--l->pending == 0)
		relay_dns_step(l);
}

/* relay_dns_cap - ttl seconds, at most max. */
static uint32_t relay_dns_cap(uint32_t ttl, uint32_t max)
{
	return ttl < max ? ttl : max;
}

/*
 * relay_dns_fill - s from the parsed answer m (rc: what parsing gave).
 * 0, or -EAGAIN for an answer that must not be cached.
 */
static int relay_dns_fill(struct relay_dns_rrset *s, int rc,
			  const struct relay_dns_msg *m)
{
	uint32_t ttl = RELAY_DNS_TTL_MAX, neg;
	size_t i, n = 0;

	if (rc < 0)
		return -EAGAIN;
	neg = m->has_soa ? relay_dns_cap(m->soa_min, RELAY_DNS_NEG_TTL_MAX)
			 : RELAY_DNS_NEG_TTL_NOSOA;

	/* NXDOMAIN: the name does not exist, for any type. */
	if (m->rcode == RELAY_DNS_RCODE_NXDOMAIN) {
		s->status = -ENOENT;
		s->expires = uv_now(s->d->loop) + (uint64_t)neg * 1000;
		return 0;
	}
	if (m->rcode != RELAY_DNS_RCODE_NOERROR)
		return -EAGAIN;

	/* NODATA: the name exists without records of this type. */
	if (m->nrr == 0) {
		if (m->tc)
			return -EAGAIN;
		s->expires = uv_now(s->d->loop) + (uint64_t)neg * 1000;
		return 0;
	}

	s->rec = calloc(m->nrr, sizeof *s->rec);
	if (s->rec == NULL)
		return -EAGAIN;
	for (i = 0; i < m->nrr; i++) {
		const struct relay_dns_rr *rr = &m->rr[i];
		struct relay_dns_rec *r = &s->rec[n];

		/* An exchange that cannot be asked for is no host. */
		if (s->type == RELAY_DNS_T_MX) {
			if (!rr->name_ok)
				continue;
			r->name = strdup(rr->name);
			if (r->name == NULL)
				return -EAGAIN;
			r->pref = rr->pref;
		}
		memcpy(r->addr, rr->addr, sizeof r->addr);
		if (rr->ttl < ttl)
			ttl = rr->ttl;
		n++;
		s->n = n;
	}
	s->expires = uv_now(s->d->loop) + (uint64_t)ttl * 1000;
	return 0;
}

/*
 * relay_dns_answer_cb - c-ares has the answer to s's query, or gave up.
 * abuf is the raw response when a server answered.
 */
static void relay_dns_answer_cb(void *arg, int status, int timeouts,
				unsigned char *abuf, int alen)
{
	struct relay_dns_rrset *s = arg;
	struct relay_dns *d = s->d;
	struct relay_dns_wait *w, *next;
	int rc = -EIO;

	/* relay_dns_free is tearing the channel down. */
	if (d->closing) {
		relay_dns_release(s);
		return;
	}

	/* c-ares hands over the response for NOERROR, NODATA (ENODATA)
	 * and NXDOMAIN (ENOTFOUND); anything else is temporary. */
	if ((status == ARES_SUCCESS || status == ARES_ENODATA ||
	     status == ARES_ENOTFOUND) &&
	    abuf != NULL && alen > 0)
		rc = relay_dns_parse(abuf, (size_t)alen, s->type, &d->msg);
	if (relay_dns_fill(s, rc, &d->msg) < 0) {
		s->status = -EAGAIN;
		relay_dns_unlink(d, s);
	}
	s->state = RELAY_DNS_READY;

	/* The waiters go on; none can be added to a READY set. */
	w = s->waiters;
	s->waiters = NULL;
	for (; w != NULL; w = next) {
		next = w->next;
		relay_dns_release_hold(w->l);
	}
	relay_dns_release(s);
}

/*
 * relay_dns_want - make *slot the rrset (name, type) for l: from the
 * cache, from the query in flight, or from a new query. Until it is READY
 * l waits for it (l->pending). 0 or -ENOMEM.
 */
static int relay_dns_want(struct relay_dns_lookup *l, const char *name,
			  int type, struct relay_dns_rrset **slot)
{
	struct relay_dns *d = l->d;
	struct relay_dns_wait *w = &l->wait[l->nwait];
	struct relay_dns_rrset *s;
	size_t n = strlen(name), h;

	s = relay_dns_find(d, name, type);
	if (s != NULL) {
		d->cached++;
		s->refs++;
		*slot = s;
		if (s->state == RELAY_DNS_PENDING) {
			w->l = l;
			w->next = s->waiters;
			s->waiters = w;
			l->nwait++;
			l->pending++;
		}
		return 0;
	}

	relay_dns_sweep(d);
	relay_dns_evict(d);
	relay_dns_grow(d);
	s = calloc(1, sizeof *s + n + 1);
	if (s == NULL)
		return -ENOMEM;
	memcpy(s->name, name, n + 1);
	s->d = d;
	s->type = type;
	s->state = RELAY_DNS_PENDING;

	/* References: the table, the query and l. */
	s->refs = 3;
	h = relay_dns_hash(name, type) & (d->nbucket - 1);
	s->next = d->bucket[h];
	d->bucket[h] = s;
	s->intable = true;
	d->nset++;
	w->l = l;
	w->next = NULL;
	s->waiters = w;
	l->nwait++;
	l->pending++;
	*slot = s;

	/* c-ares may call back from within ares_query on a local error:
	 * everything above is in place for it. */
	d->queries++;
	ares_query(d->channel, s->name, 1 /* class IN */, type,
		   relay_dns_answer_cb, s);
	relay_dns_arm(d);
	return 0;
}

/* relay_dns_finish - l is answered: queue it for delivery. */
static void relay_dns_finish(struct relay_dns_lookup *l, int status)
{
	struct relay_dns *d = l->d;

	l->status = status;
	l->phase = RELAY_DNS_PH_DONE;
	relay_dns_list_del(&l->link);
	relay_dns_list_add(&d->done, &l->link);
	d->ndone++;
	uv_idle_start(&d->idle, relay_dns_idle_cb);
}

/* relay_dns_addr_start - ask for the A and AAAA sets of l's hosts. */
static void relay_dns_addr_start(struct relay_dns_lookup *l)
{
	size_t i;

	/* The hold keeps sets answered at once from finishing l before
	 * every host has been asked for. */
	l->phase = RELAY_DNS_PH_ADDR;
	l->nwait = 0;
	l->pending = 1;
	for (i = 0; i < l->nhost; i++) {
		relay_dns_want(l, l->h[i].name, RELAY_DNS_T_A, &l->h[i].a);
		relay_dns_want(l, l->h[i].name, RELAY_DNS_T_AAAA,
			       &l->h[i].aaaa);
	}
	relay_dns_release_hold(l);
}

/*
 * relay_dns_order - l's hosts from its MX set: by preference, equal
 * preferences shuffled (RFC 5321 section 5.1), at most RELAY_DNS_MAXHOST.
 * Returns the number of null MX records (exchange ".") seen.
 */
static size_t relay_dns_order(struct relay_dns_lookup *l)
{
	const struct relay_dns_rrset *s = l->mxset;
	size_t idx[RELAY_DNS_MAXRR], n = 0, nnull = 0, i, j, k, t;

	for (i = 0; i < s->n; i++) {
		if (s->rec[i].name[0] == '\0') {
			nnull++;
			continue;
		}
		/* Insertion sort: stable, and n is at most 64. */
		for (j = n; j > 0 && s->rec[idx[j - 1]].pref > s->rec[i].pref;
		     j--)
			idx[j] = idx[j - 1];
		idx[j] = i;
		n++;
	}

	/* Fisher-Yates within each run of one preference. */
	for (i = 0; i < n; i = j) {
		for (j = i + 1;
		     j < n && s->rec[idx[j]].pref == s->rec[idx[i]].pref; j++)
			;
		for (k = j - 1; k > i; k--) {
			size_t r = i + relay_dns_random(l->d) % (k - i + 1);

			t = idx[k];
			idx[k] = idx[r];
			idx[r] = t;
		}
	}

	l->nhost = n < RELAY_DNS_MAXHOST ? n : RELAY_DNS_MAXHOST;
	for (i = 0; i < l->nhost; i++) {
		l->h[i].name = s->rec[idx[i]].name;
		l->h[i].pref = s->rec[idx[i]].pref;
	}
	return nnull;
}

/* relay_dns_mx_ready - l's MX set is READY: pick the hosts. */
static void relay_dns_mx_ready(struct relay_dns_lookup *l)
{
	const struct relay_dns_rrset *s = l->mxset;
	size_t nnull;

	if (s->status < 0) {
		relay_dns_finish(l, s->status);
		return;
	}

	/* No MX: the domain is its own host (RFC 5321 section 5.1). */
	if (s->n == 0) {
		l->nhost = 1;
		l->h[0].name = l->name;
		l->h[0].pref = 0;
		relay_dns_addr_start(l);
		return;
	}

	/* A null MX (RFC 7505 section 3); mixed with real exchanges it is
	 * a mistake of the domain's, and the real ones are used. */
	nnull = relay_dns_order(l);
	if (l->nhost == 0) {
		relay_dns_finish(l, nnull > 0 ? -EHOSTUNREACH : -ENOENT);
		return;
	}
	relay_dns_addr_start(l);
}

/*
 * relay_dns_host_addrs - the addresses of l's host i into out (when not
 * NULL): IPv4 first, then IPv6, at most RELAY_DNS_MAXADDR. Returns their
 * number. When a host has more than fit, each family keeps at least half
 * of the room, so that a host with many IPv4 addresses still offers its
 * IPv6 ones when the IPv4 ones cannot be reached.
 */
static size_t relay_dns_host_addrs(const struct relay_dns_lookup *l, size_t i,
				   struct relay_dns_host *out)
{
	const struct relay_dns_rrset *set[2] = {l->h[i].a, l->h[i].aaaa};
	size_t have[2], take[2], half, n = 0, k, j;

	for (k = 0; k < 2; k++)
		have[k] = set[k] != NULL && set[k]->status >= 0 ? set[k]->n : 0;
	half =
	    have[0] < RELAY_DNS_MAXADDR / 2 ? have[0] : RELAY_DNS_MAXADDR / 2;
	take[1] = have[1] < RELAY_DNS_MAXADDR - half ? have[1]
						     : RELAY_DNS_MAXADDR - half;
	take[0] = have[0] < RELAY_DNS_MAXADDR - take[1]
		      ? have[0]
		      : RELAY_DNS_MAXADDR - take[1];

	for (k = 0; k < 2; k++) {
		const struct relay_dns_rrset *s = set[k];

		for (j = 0; j < take[k]; j++, n++) {
			struct sockaddr_storage *ss;

			if (out == NULL)
				continue;
			ss = &out->addr[n];
			memset(ss, 0, sizeof *ss);
			if (s->type == RELAY_DNS_T_A) {
				struct sockaddr_in *in = (void *)ss;

				in->sin_family = AF_INET;
				memcpy(&in->sin_addr, s->rec[j].addr, 4);
			} else {
				struct sockaddr_in6 *in6 = (void *)ss;

				in6->sin6_family = AF_INET6;
				memcpy(&in6->sin6_addr, s->rec[j].addr, 16);
			}
		}
	}
	return n;
}

/*
 * relay_dns_addr_ready - every address set of l is READY: the verdict.
 * An exchange whose address lookup failed for now is dropped like one
 * without addresses, so mail may go to a less preferred exchange while
 * the preferred one's zone has trouble, as Postfix's SMTP client does
 * (the backup exchanges are there to take it); only when no exchange has
 * an address does the temporary failure decide.
 */
static void relay_dns_addr_ready(struct relay_dns_lookup *l)
{
	bool temp = false;
	size_t i;

	for (i = 0; i < l->nhost; i++) {
		if (relay_dns_host_addrs(l, i, NULL) > 0) {
			relay_dns_finish(l, 0);
			return;
		}
		if (l->h[i].a == NULL || l->h[i].aaaa == NULL ||
		    l->h[i].a->status == -EAGAIN ||
		    l->h[i].aaaa->status == -EAGAIN)
			temp = true;
	}
	relay_dns_finish(l, temp ? -EAGAIN : -ENOENT);
}

/* relay_dns_step - l waits for nothing more in its phase. */
static void relay_dns_step(struct relay_dns_lookup *l)
{
	if (l->phase == RELAY_DNS_PH_MX)
		relay_dns_mx_ready(l);
	else if (l->phase == RELAY_DNS_PH_ADDR)
		relay_dns_addr_ready(l);
}

/* relay_dns_lookup_free - release l and the rrsets it holds. */
static void relay_dns_lookup_free(struct relay_dns_lookup *l)
{
	size_t i;

	relay_dns_list_del(&l->link);
	for (i = 0; i < RELAY_DNS_MAXHOST; i++) {
		if (l->h[i].a != NULL)
			relay_dns_release(l->h[i].a);
		if (l->h[i].aaaa != NULL)
			relay_dns_release(l->h[i].aaaa);
	}
	if (l->mxset != NULL)
		relay_dns_release(l->mxset);
	free(l);
}

/* relay_dns_deliver - build l's answer in d's scratch and run its cb. */
static void relay_dns_deliver(struct relay_dns_lookup *l, int status)
{
	struct relay_dns *d = l->d;
	struct relay_dns_answer a = {.status = status, .host = d->hosts};
	struct relay_dns_host *h;
	size_t i;

	for (i = 0; status == 0 && i < l->nhost; i++) {
		h = &d->hosts[a.nhost];
		h->naddr = relay_dns_host_addrs(l, i, h);
		if (h->naddr == 0)
			continue;
		snprintf(h->name, sizeof h->name, "%s", l->h[i].name);
		h->pref = l->h[i].pref;
		a.nhost++;
	}

	/* An IP literal is its own single host. */
	if (status == 0 && l->literal) {
		h = &d->hosts[0];
		snprintf(h->name, sizeof h->name, "%s", l->name);
		h->pref = 0;
		h->naddr = 1;
		h->addr[0] = l->lit;
		a.nhost = 1;
	}
	l->cb(l->arg, &a);
}

/*
 * relay_dns_idle_cb - deliver the lookups finished so far; those that
 * finish from within a callback wait for the next iteration.
 */
static void relay_dns_idle_cb(uv_idle_t *h)
{
	struct relay_dns *d = h->data;
	struct relay_dns_lookup *l;
	size_t n = d->ndone;

	while (n-- > 0 && d->done.next != &d->done) {
		l = (struct relay_dns_lookup *)d->done.next;
		relay_dns_list_del(&l->link);
		d->ndone--;
		relay_dns_deliver(l, l->status);
		relay_dns_lookup_free(l);

		/* The callback freed the resolver. */
		if (d->closing)
			return;
	}
	if (d->done.next == &d->done)
		uv_idle_stop(&d->idle);
}

/*
 * Part 5: the interface.
 */

/*
 * relay_dns_server - one dns_servers entry into node: "ip", "ip:port",
 * "[ip]:port", or a bare IPv6 address. 0 or -EINVAL with err.
 */
static int relay_dns_server(const char *entry, struct ares_addr_port_node *node,
			    char *err, size_t errlen)
{
	const char *e = entry;
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL, *colon = strchr(e, ':'), *end;
	size_t n;
	char *stop;
	long p = 0;

	/* Where the address ends and the port begins. */
	if (e[0] == '[') {
		end = strchr(e, ']');
		if (end == NULL || (end[1] != '\0' && end[1] != ':'))
			goto fail;
		if (end[1] == ':')
			port = end + 2;
		e++;
	} else if (colon != NULL && strchr(colon + 1, ':') == NULL) {
		end = colon;
		port = colon + 1;
	} else {
		end = e + strlen(e);
	}
	n = (size_t)(end - e);
	if (n == 0 || n >= sizeof host)
		goto fail;
	memcpy(host, e, n);
	host[n] = '\0';

	if (port != NULL) {
		p = strtol(port, &stop, 10);
		if (*port < '0' || *port > '9' || *stop != '\0' || p < 1 ||
		    p > 65535)
			goto fail;
	}
	memset(node, 0, sizeof *node);
	if (inet_pton(AF_INET, host, &node->addr.addr4) == 1)
		node->family = AF_INET;
	else if (inet_pton(AF_INET6, host, &node->addr.addr6) == 1)
		node->family = AF_INET6;
	else
		goto fail;
	node->udp_port = node->tcp_port = (int)p;
	return 0;

fail:
	if (err != NULL && errlen > 0)
		snprintf(err, errlen,
			 "dns_servers: not ip, ip:port or [ip]:port: %s",
			 entry);
	return -EINVAL;
}

int relay_dns_new_opts(struct relay_dns **out, uv_loop_t *loop,
		       const struct conf_list *servers, unsigned timeout_ms,
		       unsigned tries, char *err, size_t errlen)
{
	struct ares_addr_port_node *nodes = NULL;
	struct ares_options o;
	struct relay_dns *d = NULL;
	size_t nserv = servers != NULL ? servers->n : 0, i;
	int mask = ARES_OPT_SOCK_STATE_CB, rc;

	/* The servers first, so a bad entry costs nothing to undo. */
	if (nserv > 0) {
		nodes = calloc(nserv, sizeof *nodes);
		if (nodes == NULL)
			return -ENOMEM;
	}
	for (i = 0; i < nserv; i++) {
		rc = relay_dns_server(servers->v[i], &nodes[i], err, errlen);
		if (rc < 0)
			goto fail;
		nodes[i].next = i + 1 < nserv ? &nodes[i + 1] : NULL;
	}

	rc = -ENOMEM;
	d = calloc(1, sizeof *d);
	if (d == NULL)
		goto fail;
	d->loop = loop;
	d->nbucket = 256;
	d->bucket = calloc(d->nbucket, sizeof *d->bucket);
	if (d->bucket == NULL)
		goto fail;
	relay_dns_list_init(&d->active);
	relay_dns_list_init(&d->done);
	d->rand = uv_hrtime() ^ (uint64_t)(uintptr_t)d ^ 0x9e3779b97f4a7c15u;
	d->sweep_at = uv_now(loop) + RELAY_DNS_SWEEP_MS;
	d->cache_max = RELAY_DNS_CACHE_MAX;

	/* c-ares, with its sockets reported to us. */
	memset(&o, 0, sizeof o);
	o.sock_state_cb = relay_dns_sock_state_cb;
	o.sock_state_cb_data = d;
	if (timeout_ms > 0) {
		o.timeout = (int)timeout_ms;
		mask |= ARES_OPT_TIMEOUTMS;
	}
	if (tries > 0) {
		o.tries = (int)tries;
		mask |= ARES_OPT_TRIES;
	}
	rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
		rc = -EIO;
		goto fail;
	}
	rc = ares_init_options(&d->channel, &o, mask);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
		ares_library_cleanup();
		rc = rc == ARES_ENOMEM ? -ENOMEM : -EIO;
		goto fail;
	}
	d->have_channel = true;
	if (nodes != NULL) {
		rc = ares_set_servers_ports(d->channel, nodes);
		if (rc != ARES_SUCCESS) {
			snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
			rc = rc == ARES_ENOMEM ? -ENOMEM : -EIO;
			goto fail;
		}
	}

	/* The loop's handles; neither keeps the loop alive while idle. */
	uv_timer_init(loop, &d->timer);
	uv_idle_init(loop, &d->idle);
	d->timer.data = d->idle.data = d;
	d->nhandles = 2;
	free(nodes);
	*out = d;
	return 0;

fail:
	if (d != NULL && d->have_channel) {
		ares_destroy(d->channel);
		ares_library_cleanup();
	}
	if (d != NULL)
		free(d->bucket);
	free(d);
	free(nodes);
	return rc;
}

int relay_dns_new(struct relay_dns **out, uv_loop_t *loop,
		  const struct conf_list *servers, char *err, size_t errlen)
{
	return relay_dns_new_opts(out, loop, servers, 0, 0, err, errlen);
}

/* relay_dns_lookup_new - a lookup of name for cb, on d's active list. */
static int relay_dns_lookup_new(struct relay_dns *d, const char *name,
				relay_dns_cb cb, void *arg,
				struct relay_dns_lookup **out)
{
	struct relay_dns_lookup *l;
	char norm[254];

	if (name == NULL || cb == NULL || relay_dns_name(name, norm) < 0)
		return -EINVAL;
	l = calloc(1, sizeof *l);
	if (l == NULL)
		return -ENOMEM;
	l->d = d;
	l->cb = cb;
	l->arg = arg;
	memcpy(l->name, norm, strlen(norm) + 1);
	relay_dns_list_add(&d->active, &l->link);
	*out = l;
	return 0;
}

int relay_dns_mx(struct relay_dns *d, const char *domain, relay_dns_cb cb,
		 void *arg)
{
	struct relay_dns_lookup *l;
	int rc;

	rc = relay_dns_lookup_new(d, domain, cb, arg, &l);
	if (rc < 0)
		return rc;

	l->phase = RELAY_DNS_PH_MX;
	l->pending = 1;
	rc = relay_dns_want(l, l->name, RELAY_DNS_T_MX, &l->mxset);
	if (rc < 0) {
		relay_dns_lookup_free(l);
		return rc;
	}
	relay_dns_release_hold(l);
	return 0;
}

int relay_dns_host(struct relay_dns *d, const char *host, relay_dns_cb cb,
		   void *arg)
{
	struct relay_dns_lookup *l;
	struct sockaddr_in *in;
	struct sockaddr_in6 *in6;
	int rc;

	/* An IP literal needs no query. */
	if (host != NULL && strlen(host) < sizeof l->name && cb != NULL &&
	    strchr(host, ':') != NULL) {
		l = calloc(1, sizeof *l);
		if (l == NULL)
			return -ENOMEM;
		in6 = (struct sockaddr_in6 *)&l->lit;
		if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1) {
			free(l);
			return -EINVAL;
		}
		in6->sin6_family = AF_INET6;
		goto literal;
	}
	rc = relay_dns_lookup_new(d, host, cb, arg, &l);
	if (rc < 0)
		return rc;
	in = (struct sockaddr_in *)&l->lit;
	if (inet_pton(AF_INET, l->name, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		relay_dns_list_del(&l->link);
		goto literal;
	}

	l->nhost = 1;
	l->h[0].name = l->name;
	relay_dns_addr_start(l);
	return 0;

literal:
	l->d = d;
	l->cb = cb;
	l->arg = arg;
	l->literal = true;
	snprintf(l->name, sizeof l->name, "%s", host);
	relay_dns_list_add(&d->active, &l->link);
	relay_dns_finish(l, 0);
	return 0;
}

void relay_dns_set_cache_max(struct relay_dns *d, size_t max)
{
	d->cache_max = max > 8 ? max : 8;
	relay_dns_evict(d);
}

size_t relay_dns_cache_size(const struct relay_dns *d)
{
	return d->nset;
}

void relay_dns_stats(const struct relay_dns *d, uint64_t *queries,
		     uint64_t *cached)
{
	if (queries != NULL)
		*queries = d->queries;
	if (cached != NULL)
		*cached = d->cached;
}

void relay_dns_free(struct relay_dns *d)
{
	struct relay_dns_link *lists[2] = {&d->active, &d->done}, *s;
	struct relay_dns_lookup *l;
	struct relay_dns_poll *p;
	size_t i;

	if (d == NULL || d->closing)
		return;
	d->closing = true;

	/* Every lookup not yet delivered hears -ECANCELED. */
	for (i = 0; i < 2; i++) {
		s = lists[i];
		while (s->next != s) {
			l = (struct relay_dns_lookup *)s->next;
			relay_dns_list_del(&l->link);
			relay_dns_deliver(l, -ECANCELED);
			relay_dns_lookup_free(l);
		}
	}
	d->ndone = 0;

	/* c-ares calls back every query with ARES_EDESTRUCTION, and
	 * reports its sockets closed. */
	ares_destroy(d->channel);
	ares_library_cleanup();

	/* The cache. */
	for (i = 0; i < d->nbucket; i++)
		while (d->bucket[i] != NULL)
			relay_dns_unlink(d, d->bucket[i]);
	free(d->bucket);
	d->bucket = NULL;

	/* The handles; the last close frees d. */
	while ((p = d->polls) != NULL) {
		d->polls = p->next;
		uv_poll_stop(&p->h);
		uv_close((uv_handle_t *)&p->h, relay_dns_poll_closed_cb);
	}
	uv_close((uv_handle_t *)&d->timer, relay_dns_closed_cb);
	uv_close((uv_handle_t *)&d->idle, relay_dns_closed_cb);
}
