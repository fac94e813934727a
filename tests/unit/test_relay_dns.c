/*
 * test_relay_dns - the DNS response parser on crafted packets, and the
 * resolver against dnsmasq on loopback: MX order, fallback to A, null MX
 * (RFC 7505), NXDOMAIN, an unanswering server, the TTL cache and the
 * sharing of queries in flight.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "relay/relay_dns.h"

/*
 * Part 1: a packet builder and the parser.
 */

struct pkt {
	unsigned char b[2048];
	size_t n;
};

static void put8(struct pkt *p, unsigned v)
{
	cr_assert_lt(p->n, sizeof p->b);
	p->b[p->n++] = (unsigned char)v;
}

static void put16(struct pkt *p, unsigned v)
{
	put8(p, v >> 8 & 0xff);
	put8(p, v & 0xff);
}

static void put32(struct pkt *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p, v & 0xffff);
}

/* put_labels - "a.b" as labels, without the root octet. */
static void put_labels(struct pkt *p, const char *name)
{
	const char *dot;
	size_t n;

	while (*name != '\0') {
		dot = strchr(name, '.');
		n = dot ? (size_t)(dot - name) : strlen(name);
		put8(p, (unsigned)n);
		memcpy(p->b + p->n, name, n);
		p->n += n;
		name += n + (dot ? 1 : 0);
	}
}

/* put_name - an uncompressed name with its root octet. */
static void put_name(struct pkt *p, const char *name)
{
	put_labels(p, name);
	put8(p, 0);
}

static void put_ptr(struct pkt *p, unsigned off)
{
	put16(p, 0xc000 | off);
}

/* put_header - a response with the given rcode and section counts. */
static void put_header(struct pkt *p, unsigned rcode, unsigned qd, unsigned an,
		       unsigned ns)
{
	p->n = 0;
	put16(p, 0x1234);
	put16(p, 0x8180 | rcode);
	put16(p, qd);
	put16(p, an);
	put16(p, ns);
	put16(p, 0);
}

static void put_question(struct pkt *p, const char *name, unsigned type)
{
	put_name(p, name);
	put16(p, type);
	put16(p, 1);
}

/* put_rr - the fixed fields of a record owned by the question (at 12). */
static void put_rr_q(struct pkt *p, unsigned type, uint32_t ttl, unsigned rdlen)
{
	put_ptr(p, 12);
	put16(p, type);
	put16(p, 1);
	put32(p, ttl);
	put16(p, rdlen);
}

static struct relay_dns_msg m;

/* build_mx - a compressed MX answer for Example.TEST. */
static void build_mx(struct pkt *p)
{
	size_t at;

	put_header(p, 0, 1, 3, 0);
	put_question(p, "Example.TEST", RELAY_DNS_T_MX);

	/* 10 mx1.<question>, compressed into the question's name. */
	put_rr_q(p, RELAY_DNS_T_MX, 3600, 2 + 4 + 2);
	put16(p, 10);
	put_labels(p, "MX1");
	put_ptr(p, 12);

	/* 5 mx2.other.test, spelled out; remembered for the next one. */
	put_rr_q(p, RELAY_DNS_T_MX, 600, 2 + 16);
	put16(p, 5);
	at = p->n;
	put_name(p, "mx2.other.test");

	/* 20 b.<"other.test" inside the record above>. */
	put_rr_q(p, RELAY_DNS_T_MX, 7200, 2 + 2 + 2);
	put16(p, 20);
	put_labels(p, "b");
	put_ptr(p, (unsigned)at + 4);
}

Test(relay_dns_parse, mx_with_compression)
{
	struct pkt p;

	build_mx(&p);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_MX, &m), 0);
	cr_assert_eq(m.rcode, 0);
	cr_assert_eq(m.nrr, 3);
	cr_assert_eq(m.rr[0].pref, 10);
	cr_assert_str_eq(m.rr[0].name, "mx1.example.test");
	cr_assert_eq(m.rr[0].ttl, 3600);
	cr_assert(m.rr[0].name_ok);
	cr_assert_eq(m.rr[1].pref, 5);
	cr_assert_str_eq(m.rr[1].name, "mx2.other.test");
	cr_assert_eq(m.rr[1].ttl, 600);
	cr_assert_eq(m.rr[2].pref, 20);
	cr_assert_str_eq(m.rr[2].name, "b.other.test");
	cr_assert_eq(m.rr[2].ttl, 7200);
}

Test(relay_dns_parse, a_and_aaaa)
{
	static const unsigned char v6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0,
					     0,	   0, 0, 0, 0, 0, 0, 0x11};
	struct pkt p;

	/* Two A records and an AAAA that an A query must not return. */
	put_header(&p, 0, 1, 3, 0);
	put_question(&p, "h.test", RELAY_DNS_T_A);
	put_rr_q(&p, RELAY_DNS_T_A, 300, 4);
	put32(&p, 0x7f00000b);
	put_rr_q(&p, RELAY_DNS_T_AAAA, 300, 16);
	memcpy(p.b + p.n, v6, 16);
	p.n += 16;
	put_rr_q(&p, RELAY_DNS_T_A, 100, 4);
	put32(&p, 0x7f00000c);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_A, &m), 0);
	cr_assert_eq(m.nrr, 2);
	cr_assert_eq(memcmp(m.rr[0].addr, "\x7f\0\0\x0b", 4), 0);
	cr_assert_eq(m.rr[0].ttl, 300);
	cr_assert_eq(memcmp(m.rr[1].addr, "\x7f\0\0\x0c", 4), 0);
	cr_assert_eq(m.rr[1].ttl, 100);

	/* The same name asked for AAAA. */
	put_header(&p, 0, 1, 1, 0);
	put_question(&p, "h.test", RELAY_DNS_T_AAAA);
	put_rr_q(&p, RELAY_DNS_T_AAAA, 60, 16);
	memcpy(p.b + p.n, v6, 16);
	p.n += 16;
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_AAAA, &m), 0);
	cr_assert_eq(m.nrr, 1);
	cr_assert_eq(memcmp(m.rr[0].addr, v6, 16), 0);
	cr_assert_eq(m.rr[0].ttl, 60);

	/* An A record of five bytes is a broken answer. */
	put_header(&p, 0, 1, 1, 0);
	put_question(&p, "h.test", RELAY_DNS_T_A);
	put_rr_q(&p, RELAY_DNS_T_A, 60, 5);
	put32(&p, 0x7f000001);
	put8(&p, 0);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_A, &m), -EBADMSG);
}

Test(relay_dns_parse, cname_chain)
{
	struct pkt p;
	size_t target;

	/* www.x.test CNAME host.x.test (ttl 30); host.x.test A (ttl 300);
	 * an A record of an unrelated owner is ignored. */
	put_header(&p, 0, 1, 3, 0);
	put_question(&p, "www.x.test", RELAY_DNS_T_A);
	put_rr_q(&p, RELAY_DNS_T_CNAME, 30, 7);
	target = p.n;
	put_labels(&p, "host");
	put_ptr(&p, 12 + 4);
	put_ptr(&p, (unsigned)target);
	put16(&p, RELAY_DNS_T_A);
	put16(&p, 1);
	put32(&p, 300);
	put16(&p, 4);
	put32(&p, 0x7f000021);
	put_name(&p, "other.test");
	put16(&p, RELAY_DNS_T_A);
	put16(&p, 1);
	put32(&p, 300);
	put16(&p, 4);
	put32(&p, 0x7f000022);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_A, &m), 0);
	cr_assert_eq(m.nrr, 1);
	cr_assert_eq(memcmp(m.rr[0].addr, "\x7f\0\0\x21", 4), 0);
	cr_assert_eq(m.rr[0].ttl, 30);
}

/* build_nx - NXDOMAIN for nx.test with an SOA of the given TTLs. */
static void build_nx(struct pkt *p, uint32_t ttl, uint32_t minimum)
{
	size_t at;

	put_header(p, RELAY_DNS_RCODE_NXDOMAIN, 1, 0, 1);
	put_question(p, "nx.test", RELAY_DNS_T_MX);
	at = p->n;
	put_name(p, "test");
	put16(p, RELAY_DNS_T_SOA);
	put16(p, 1);
	put32(p, ttl);
	put16(p, 3 + 2 + 3 + 2 + 5 * 4);
	put_labels(p, "ns");
	put_ptr(p, (unsigned)at);
	put_labels(p, "hm");
	put_ptr(p, (unsigned)at);
	put32(p, 1);
	put32(p, 2);
	put32(p, 3);
	put32(p, 4);
	put32(p, minimum);
}

Test(relay_dns_parse, nxdomain_with_soa)
{
	struct pkt p;

	build_nx(&p, 900, 300);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_MX, &m), 0);
	cr_assert_eq(m.rcode, RELAY_DNS_RCODE_NXDOMAIN);
	cr_assert_eq(m.nrr, 0);
	cr_assert(m.has_soa);
	cr_assert_eq(m.soa_min, 300);

	/* RFC 2308 section 5: the SOA's own TTL when it is smaller. */
	build_nx(&p, 100, 300);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_MX, &m), 0);
	cr_assert_eq(m.soa_min, 100);
}

Test(relay_dns_parse, nodata_without_soa)
{
	struct pkt p;

	put_header(&p, 0, 1, 0, 0);
	put_question(&p, "plain.test", RELAY_DNS_T_MX);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_MX, &m), 0);
	cr_assert_eq(m.rcode, 0);
	cr_assert_eq(m.nrr, 0);
	cr_assert(!m.has_soa);
}

Test(relay_dns_parse, truncated)
{
	struct pkt p, nx;
	size_t n;

	/* Every prefix of a good answer is refused, none overread (the
	 * ASan build checks the latter). */
	build_mx(&p);
	for (n = 0; n < p.n; n++) {
		unsigned char *cut = malloc(n + 1);

		memcpy(cut, p.b, n);
		cr_assert_eq(relay_dns_parse(cut, n, RELAY_DNS_T_MX, &m),
			     -EBADMSG, "prefix of %zu bytes", n);
		free(cut);
	}
	build_nx(&nx, 900, 300);
	for (n = 0; n < nx.n; n++)
		cr_assert_eq(relay_dns_parse(nx.b, n, RELAY_DNS_T_MX, &m),
			     -EBADMSG, "prefix of %zu bytes", n);
}

Test(relay_dns_parse, pointer_loops)
{
	struct pkt p;

	/* The question's name points at itself. */
	put_header(&p, 0, 1, 0, 0);
	put_ptr(&p, 12);
	put16(&p, RELAY_DNS_T_MX);
	put16(&p, 1);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_MX, &m), -EBADMSG);

	/* A label, then a pointer back to that label. */
	put_header(&p, 0, 1, 0, 0);
	put_labels(&p, "a");
	put_ptr(&p, 12);
	put16(&p, RELAY_DNS_T_MX);
	put16(&p, 1);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_MX, &m), -EBADMSG);

	/* Two pointers to each other in the answer. */
	put_header(&p, 0, 1, 1, 0);
	put_question(&p, "a.test", RELAY_DNS_T_MX);
	put_rr_q(&p, RELAY_DNS_T_MX, 60, 2 + 2 + 2);
	put16(&p, 1);
	put_ptr(&p, (unsigned)p.n + 2);
	put_ptr(&p, (unsigned)p.n - 2);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_MX, &m), -EBADMSG);

	/* A pointer past the end. */
	put_header(&p, 0, 1, 0, 0);
	put_ptr(&p, 0x3fff);
	put16(&p, RELAY_DNS_T_MX);
	put16(&p, 1);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_MX, &m), -EBADMSG);
}

Test(relay_dns_parse, name_lengths)
{
	char label[64], name[300];
	struct pkt p;
	size_t i;

	/* A label of 64 octets is an extended label type, refused. */
	memset(label, 'a', 64);
	put_header(&p, 0, 1, 0, 0);
	put8(&p, 64);
	memcpy(p.b + p.n, label, 64);
	p.n += 64;
	put8(&p, 0);
	put16(&p, RELAY_DNS_T_MX);
	put16(&p, 1);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_MX, &m), -EBADMSG);

	/* 253 characters (255 octets on the wire) pass; 255 do not. */
	for (i = 0; i < 4; i++) {
		memset(name + i * 64, 'a' + (int)i, 63);
		name[i * 64 + 63] = '.';
	}
	name[253] = '\0';
	put_header(&p, 0, 1, 0, 0);
	put_question(&p, name, RELAY_DNS_T_MX);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_MX, &m), 0);
	memcpy(name + 253, ".b", 3);
	put_header(&p, 0, 1, 0, 0);
	put_question(&p, name, RELAY_DNS_T_MX);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_MX, &m), -EBADMSG);
}

Test(relay_dns_parse, other_type)
{
	struct pkt p;

	/* An MX query answered with an A record: no MX records. */
	put_header(&p, 0, 1, 1, 0);
	put_question(&p, "a.test", RELAY_DNS_T_MX);
	put_rr_q(&p, RELAY_DNS_T_A, 60, 4);
	put32(&p, 0x7f000001);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_MX, &m), 0);
	cr_assert_eq(m.nrr, 0);

	/* An answer to an A question is not an answer to MX. */
	put_header(&p, 0, 1, 1, 0);
	put_question(&p, "a.test", RELAY_DNS_T_A);
	put_rr_q(&p, RELAY_DNS_T_A, 60, 4);
	put32(&p, 0x7f000001);
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_MX, &m), -EBADMSG);

	/* waxseal asks for nothing but A, AAAA and MX. */
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_SOA, &m), -EINVAL);

	/* A query, not a response. */
	build_mx(&p);
	p.b[2] &= 0x7f;
	cr_assert_eq(relay_dns_parse(p.b, p.n, RELAY_DNS_T_MX, &m), -EBADMSG);
}

Test(relay_dns_parse, names)
{
	char out[254], long_name[300];

	cr_assert_eq(relay_dns_name("Gmail.COM.", out), 0);
	cr_assert_str_eq(out, "gmail.com");
	cr_assert_eq(relay_dns_name("a", out), 0);
	cr_assert_str_eq(out, "a");
	cr_assert_eq(relay_dns_name("", out), -EINVAL);
	cr_assert_eq(relay_dns_name(".", out), -EINVAL);
	cr_assert_eq(relay_dns_name("a..b", out), -EINVAL);
	cr_assert_eq(relay_dns_name(".a", out), -EINVAL);
	cr_assert_eq(relay_dns_name("a.b..", out), -EINVAL);
	cr_assert_eq(relay_dns_name("a b.test", out), -EINVAL);
	cr_assert_eq(relay_dns_name("a\\.test", out), -EINVAL);

	memset(long_name, 'a', 63);
	long_name[63] = '\0';
	cr_assert_eq(relay_dns_name(long_name, out), 0);
	memset(long_name, 'a', 64);
	long_name[64] = '\0';
	cr_assert_eq(relay_dns_name(long_name, out), -EINVAL);

	/* 253 characters pass, 254 do not. */
	memset(long_name, 'a', 253);
	for (size_t i = 50; i < 253; i += 50)
		long_name[i] = '.';
	long_name[253] = '\0';
	cr_assert_eq(relay_dns_name(long_name, out), 0);
	memcpy(long_name + 253, "a", 2);
	cr_assert_eq(relay_dns_name(long_name, out), -EINVAL);
}

/*
 * Part 2: the resolver against dnsmasq.
 */

#define DNSMASQ "/usr/sbin/dnsmasq"

static pid_t dnsmasq_pid = -1;
static int dnsmasq_port;

/* free_port - a loopback port free for both UDP and TCP just now. */
static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof a;
	int u, t, port = -1;

	for (int tries = 0; tries < 20 && port < 0; tries++) {
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a.sin_port = 0;
		u = socket(AF_INET, SOCK_DGRAM, 0);
		t = socket(AF_INET, SOCK_STREAM, 0);
		cr_assert(u >= 0 && t >= 0);
		if (bind(u, (struct sockaddr *)&a, sizeof a) == 0 &&
		    getsockname(u, (struct sockaddr *)&a, &alen) == 0 &&
		    bind(t, (struct sockaddr *)&a, sizeof a) == 0)
			port = ntohs(a.sin_port);
		close(u);
		close(t);
	}
	cr_assert_gt(port, 0, "no free loopback port");
	return port;
}

/* port_taken - something is bound to 127.0.0.1:port over UDP. */
static bool port_taken(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	bool taken;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)port);
	taken =
	    bind(u, (struct sockaddr *)&a, sizeof a) < 0 && errno == EADDRINUSE;
	close(u);
	return taken;
}

/*
 * dnsmasq_start - dnsmasq in the foreground on 127.0.0.1, answering for
 * .test only, with records of local_ttl seconds; waits (at most 5 s)
 * until it listens.
 */
static bool dnsmasq_try(int local_ttl);
static void dnsmasq_stop(void);

static void dnsmasq_start(int local_ttl)
{
	if (access(DNSMASQ, X_OK) != 0)
		cr_skip_test("this machine has no " DNSMASQ
			     " (package dnsmasq-base)");

	/*
	 * Tests run in parallel, each with its own dnsmasq: another one may
	 * take the port between free_port() and our bind. Then pick again.
	 */
	for (int tries = 0; tries < 5; tries++)
		if (dnsmasq_try(local_ttl))
			return;
	cr_assert_fail("dnsmasq did not start on a free port in 5 tries");
}

/*
 * dnsmasq_try - start dnsmasq on a port free just now: true once it
 * listens there and is still running a moment later (a dnsmasq that lost
 * the port to another exits at once), false when it did not make it.
 */
static bool dnsmasq_try(int local_ttl)
{
	char port[32], ttl[32];
	struct timespec ts = {0, 20 * 1000 * 1000};
	struct timespec grace = {0, 50 * 1000 * 1000};
	int i, devnull;

	dnsmasq_port = free_port();
	snprintf(port, sizeof port, "--port=%d", dnsmasq_port);
	snprintf(ttl, sizeof ttl, "--local-ttl=%d", local_ttl);

	dnsmasq_pid = fork();
	cr_assert_geq(dnsmasq_pid, 0);
	if (dnsmasq_pid == 0) {
		devnull = open("/dev/null", O_RDWR);
		dup2(devnull, 1);
		dup2(devnull, 2);
		execl(DNSMASQ, DNSMASQ, "--keep-in-foreground",
		      "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		      "--bind-interfaces", "--listen-address=127.0.0.1", port,
		      "--local=/test/", ttl,
		      "--mx-host=mail.test,mx1.mail.test,10",
		      "--mx-host=mail.test,mx2.mail.test,20",
		      "--mx-host=mail.test,mx0.mail.test,5",
		      "--mx-host=eq.test,a.eq.test,10",
		      "--mx-host=noaddr.test,gone.noaddr.test,10",
		      "--mx-host=eq.test,b.eq.test,10",
		      "--host-record=mx1.mail.test,127.0.0.11,fd00::11",
		      "--host-record=mx2.mail.test,127.0.0.12",
		      "--host-record=a.eq.test,127.0.0.31",
		      "--host-record=b.eq.test,127.0.0.32",
		      "--host-record=plain.test,127.0.0.20",
		      /* Ten IPv4 and two IPv6 addresses. */
		      "--host-record=many.test,127.0.1.1,fd00::1:1",
		      "--host-record=many.test,127.0.1.2,fd00::1:2",
		      "--host-record=many.test,127.0.1.3",
		      "--host-record=many.test,127.0.1.4",
		      "--host-record=many.test,127.0.1.5",
		      "--host-record=many.test,127.0.1.6",
		      "--host-record=many.test,127.0.1.7",
		      "--host-record=many.test,127.0.1.8",
		      "--host-record=many.test,127.0.1.9",
		      "--host-record=many.test,127.0.1.10",
		      "--dns-rr=null.test,15,000000", (char *)NULL);
		_exit(127);
	}

	for (i = 0; i < 250; i++) {
		if (waitpid(dnsmasq_pid, NULL, WNOHANG) == dnsmasq_pid) {
			dnsmasq_pid = -1;
			return false;
		}
		if (port_taken(dnsmasq_port)) {
			nanosleep(&grace, NULL);
			if (waitpid(dnsmasq_pid, NULL, WNOHANG) == dnsmasq_pid) {
				dnsmasq_pid = -1;
				return false;
			}
			return true;
		}
		nanosleep(&ts, NULL);
	}
	dnsmasq_stop();
	return false;
}

/* dnsmasq_stop - the .fini of every resolver test. */
static void dnsmasq_stop(void)
{
	if (dnsmasq_pid > 0) {
		kill(dnsmasq_pid, SIGTERM);
		waitpid(dnsmasq_pid, NULL, 0);
		dnsmasq_pid = -1;
	}
}

/* What one callback saw. */
struct result {
	int calls;
	int status;
	size_t nhost;
	struct relay_dns_host host[RELAY_DNS_MAXHOST];
};

static void result_cb(void *arg, const struct relay_dns_answer *a)
{
	struct result *r = arg;

	r->calls++;
	r->status = a->status;
	r->nhost = a->nhost;
	if (a->nhost > 0)
		memcpy(r->host, a->host, a->nhost * sizeof *a->host);
}

static uv_loop_t loop;
static uv_timer_t guard;
static bool guard_fired;
static struct relay_dns *dns;

static void guard_cb(uv_timer_t *t)
{
	guard_fired = true;
}

/* setup - a loop and a resolver asking server ("" : dnsmasq). */
static void setup(const char *server, unsigned timeout_ms)
{
	char srv[64], err[256] = "";
	char *v[2] = {srv, NULL};
	struct conf_list servers = {v, 1};

	if (server[0] == '\0')
		snprintf(srv, sizeof srv, "127.0.0.1:%d", dnsmasq_port);
	else
		snprintf(srv, sizeof srv, "%s", server);
	cr_assert_eq(uv_loop_init(&loop), 0);
	uv_timer_init(&loop, &guard);
	cr_assert_eq(relay_dns_new_opts(&dns, &loop, &servers, timeout_ms, 1,
					err, sizeof err),
		     0, "%s", err);
}

/* wait_for - run the loop until *calls reaches n, at most ms. */
static void wait_for(const int *calls, int n, uint64_t ms)
{
	guard_fired = false;
	uv_timer_start(&guard, guard_cb, ms, 0);
	while (*calls < n && !guard_fired)
		uv_run(&loop, UV_RUN_ONCE);
	uv_timer_stop(&guard);
	cr_assert_geq(*calls, n, "no answer within %llu ms",
		      (unsigned long long)ms);
}

/* pause_ms - run the loop for ms. */
static void pause_ms(uint64_t ms)
{
	guard_fired = false;
	uv_timer_start(&guard, guard_cb, ms, 0);
	while (!guard_fired)
		uv_run(&loop, UV_RUN_ONCE);
}

/* teardown - free the resolver and check the loop is left clean. */
static void teardown(void)
{
	relay_dns_free(dns);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0, "handles left open");
}

/* lookup_mx - relay_dns_mx of domain, answered within 5 s. */
static void lookup_mx(const char *domain, struct result *r)
{
	memset(r, 0, sizeof *r);
	cr_assert_eq(relay_dns_mx(dns, domain, result_cb, r), 0);
	cr_assert_eq(r->calls, 0, "callback ran inside relay_dns_mx");
	wait_for(&r->calls, 1, 5000);
	cr_assert_eq(r->calls, 1);
}

/* addr_is - address i of h is text (v4 or v6), port 0. */
static void addr_is(const struct relay_dns_host *h, size_t i, const char *text)
{
	char buf[INET6_ADDRSTRLEN];
	const struct sockaddr_storage *ss = &h->addr[i];

	cr_assert_lt(i, h->naddr);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;

		inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
		cr_assert_eq(in->sin_port, 0);
	} else {
		const struct sockaddr_in6 *in6 = (const void *)ss;

		cr_assert_eq(ss->ss_family, AF_INET6);
		inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
		cr_assert_eq(in6->sin6_port, 0);
	}
	cr_assert_str_eq(buf, text);
}

TestSuite(relay_dns, .fini = dnsmasq_stop, .timeout = 60);

Test(relay_dns, mx_order_and_addresses)
{
	struct result r;

	dnsmasq_start(300);
	setup("", 1000);

	/* mx0 (pref 5) has no address and is dropped. */
	lookup_mx("Mail.Test.", &r);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.nhost, 2);
	cr_assert_str_eq(r.host[0].name, "mx1.mail.test");
	cr_assert_eq(r.host[0].pref, 10);
	cr_assert_eq(r.host[0].naddr, 2);
	addr_is(&r.host[0], 0, "127.0.0.11");
	addr_is(&r.host[0], 1, "fd00::11");
	cr_assert_str_eq(r.host[1].name, "mx2.mail.test");
	cr_assert_eq(r.host[1].pref, 20);
	cr_assert_eq(r.host[1].naddr, 1);
	addr_is(&r.host[1], 0, "127.0.0.12");
	teardown();
}

Test(relay_dns, equal_preferences_shuffled)
{
	struct result r;
	int first_a = 0, i;

	dnsmasq_start(300);
	setup("", 1000);
	for (i = 0; i < 64; i++) {
		lookup_mx("eq.test", &r);
		cr_assert_eq(r.status, 0);
		cr_assert_eq(r.nhost, 2);
		cr_assert_eq(r.host[0].pref, 10);
		cr_assert_eq(r.host[1].pref, 10);
		if (strcmp(r.host[0].name, "a.eq.test") == 0)
			first_a++;
		else
			cr_assert_str_eq(r.host[0].name, "b.eq.test");
	}

	/* Both orders come up; each lookup has a 1 in 2 chance. */
	cr_assert(first_a > 0 && first_a < 64, "a first %d of 64 times",
		  first_a);
	teardown();
}

Test(relay_dns, fallback_to_a)
{
	struct result r;

	dnsmasq_start(300);
	setup("", 1000);
	lookup_mx("plain.test", &r);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.nhost, 1);
	cr_assert_str_eq(r.host[0].name, "plain.test");
	cr_assert_eq(r.host[0].pref, 0);
	cr_assert_eq(r.host[0].naddr, 1);
	addr_is(&r.host[0], 0, "127.0.0.20");
	teardown();
}

Test(relay_dns, null_mx)
{
	struct result r;

	dnsmasq_start(300);
	setup("", 1000);
	lookup_mx("null.test", &r);
	cr_assert_eq(r.status, -EHOSTUNREACH);
	cr_assert_eq(r.nhost, 0);
	teardown();
}

Test(relay_dns, nxdomain)
{
	struct result r;

	dnsmasq_start(300);
	setup("", 1000);
	lookup_mx("nowhere.test", &r);
	cr_assert_eq(r.status, -ENOENT);
	cr_assert_eq(r.nhost, 0);

	/* An MX whose only exchange has no address is as permanent. */
	lookup_mx("noaddr.test", &r);
	cr_assert_eq(r.status, -ENOENT);
	cr_assert_eq(r.nhost, 0);
	teardown();
}

Test(relay_dns, host_lookup)
{
	struct result r = {0}, lit = {0}, lit6 = {0};
	uint64_t q;

	dnsmasq_start(300);
	setup("", 1000);
	cr_assert_eq(relay_dns_host(dns, "mx1.mail.test", result_cb, &r), 0);
	cr_assert_eq(relay_dns_host(dns, "192.0.2.7", result_cb, &lit), 0);
	cr_assert_eq(relay_dns_host(dns, "::1", result_cb, &lit6), 0);
	cr_assert_eq(r.calls + lit.calls + lit6.calls, 0);
	wait_for(&r.calls, 1, 5000);
	wait_for(&lit6.calls, 1, 5000);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.nhost, 1);
	addr_is(&r.host[0], 0, "127.0.0.11");
	addr_is(&r.host[0], 1, "fd00::11");

	/* Literals: answered without any query. */
	cr_assert_eq(lit.calls, 1);
	cr_assert_eq(lit.status, 0);
	addr_is(&lit.host[0], 0, "192.0.2.7");
	cr_assert_eq(lit6.status, 0);
	addr_is(&lit6.host[0], 0, "::1");
	relay_dns_stats(dns, &q, NULL);
	cr_assert_eq(q, 2, "A and AAAA of mx1 only, got %llu queries",
		     (unsigned long long)q);

	cr_assert_eq(relay_dns_host(dns, "a..b", result_cb, &r), -EINVAL);
	cr_assert_eq(relay_dns_mx(dns, "", result_cb, &r), -EINVAL);
	teardown();
}

Test(relay_dns, many_ipv4_leave_room_for_ipv6)
{
	struct result r = {0};
	size_t i, v4 = 0, v6 = 0;

	dnsmasq_start(300);
	setup("", 1000);
	cr_assert_eq(relay_dns_host(dns, "many.test", result_cb, &r), 0);
	wait_for(&r.calls, 1, 5000);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.nhost, 1);

	/* All the room is used, IPv4 first, and both IPv6 are there. */
	cr_assert_eq(r.host[0].naddr, RELAY_DNS_MAXADDR);
	for (i = 0; i < r.host[0].naddr; i++) {
		int fam = r.host[0].addr[i].ss_family;

		cr_assert(fam == AF_INET ? v6 == 0 : fam == AF_INET6,
			  "address %zu: family %d out of order", i, fam);
		v4 += fam == AF_INET;
		v6 += fam == AF_INET6;
	}
	cr_assert_eq(v4, RELAY_DNS_MAXADDR - 2);
	cr_assert_eq(v6, 2);
	teardown();
}

Test(relay_dns, unanswered_server)
{
	struct result r;
	char server[32];

	/* A port nobody listens on: refused or timed out, both
	 * temporary. */
	snprintf(server, sizeof server, "127.0.0.1:%d", free_port());
	setup(server, 200);
	lookup_mx("mail.test", &r);
	cr_assert_eq(r.status, -EAGAIN);
	teardown();
}

Test(relay_dns, cache)
{
	struct result r;
	uint64_t q1, c1, q2, c2;

	dnsmasq_start(300);
	setup("", 1000);
	lookup_mx("mail.test", &r);
	cr_assert_eq(r.status, 0);
	relay_dns_stats(dns, &q1, &c1);

	/* MX, then A and AAAA of three exchanges. */
	cr_assert_eq(q1, 7, "queries %llu", (unsigned long long)q1);

	/* Again: the same answer, no new query, callback still later. */
	lookup_mx("mail.test", &r);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.nhost, 2);
	cr_assert_str_eq(r.host[0].name, "mx1.mail.test");
	relay_dns_stats(dns, &q2, &c2);
	cr_assert_eq(q2, q1);
	cr_assert_eq(c2, c1 + 7);

	/* Negative answers are cached too. */
	lookup_mx("nowhere.test", &r);
	cr_assert_eq(r.status, -ENOENT);
	relay_dns_stats(dns, &q1, &c1);
	lookup_mx("nowhere.test", &r);
	cr_assert_eq(r.status, -ENOENT);
	relay_dns_stats(dns, &q2, &c2);
	cr_assert_eq(q2, q1);
	teardown();
}

Test(relay_dns, cache_is_bounded)
{
	struct result r;
	char name[64];
	uint64_t q1, q2;

	dnsmasq_start(300);
	setup("", 1000);
	relay_dns_set_cache_max(dns, 8);

	/* MX, then A and AAAA of three exchanges: 7 rrsets. */
	lookup_mx("mail.test", &r);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(relay_dns_cache_size(dns), 7);

	/* Many other names: the cache stays within its bound... */
	for (int i = 0; i < 30; i++) {
		snprintf(name, sizeof name, "gone%d.test", i);
		lookup_mx(name, &r);
		cr_assert_eq(r.status, -ENOENT, "%s", name);
		cr_assert_leq(relay_dns_cache_size(dns), 8, "after %s: %zu",
			      name, relay_dns_cache_size(dns));
	}

	/* ... and what it dropped is asked again, with the same answer. */
	relay_dns_stats(dns, &q1, NULL);
	lookup_mx("mail.test", &r);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.nhost, 2);
	cr_assert_str_eq(r.host[0].name, "mx1.mail.test");
	cr_assert_str_eq(r.host[1].name, "mx2.mail.test");
	addr_is(&r.host[0], 0, "127.0.0.11");
	relay_dns_stats(dns, &q2, NULL);
	cr_assert_gt(q2, q1, "nothing was dropped");
	cr_assert_leq(relay_dns_cache_size(dns), 8);
	teardown();
}

Test(relay_dns, in_flight_sharing)
{
	struct result r[100];
	uint64_t q, c;
	int calls = 0, i;

	dnsmasq_start(300);
	setup("", 1000);
	memset(r, 0, sizeof r);
	for (i = 0; i < 100; i++)
		cr_assert_eq(relay_dns_mx(dns, "mail.test", result_cb, &r[i]),
			     0);
	relay_dns_stats(dns, &q, &c);
	cr_assert_eq(q, 1, "one MX query for 100 lookups, got %llu",
		     (unsigned long long)q);
	cr_assert_eq(c, 99);

	for (i = 0; i < 100; i++) {
		wait_for(&r[i].calls, 1, 5000);
		cr_assert_eq(r[i].calls, 1);
		cr_assert_eq(r[i].status, 0);
		cr_assert_eq(r[i].nhost, 2);
		calls += r[i].calls;
	}
	cr_assert_eq(calls, 100);
	relay_dns_stats(dns, &q, &c);
	cr_assert_eq(q, 7, "queries %llu", (unsigned long long)q);
	teardown();
}

Test(relay_dns, ttl_expiry)
{
	struct result r;
	uint64_t q1, q2;

	dnsmasq_start(1);
	setup("", 1000);
	lookup_mx("plain.test", &r);
	cr_assert_eq(r.status, 0);
	relay_dns_stats(dns, &q1, NULL);

	/* Within the second: from the cache. */
	lookup_mx("plain.test", &r);
	relay_dns_stats(dns, &q2, NULL);
	cr_assert_eq(q2, q1);

	/* After it: the A record is asked for again. */
	pause_ms(1200);
	lookup_mx("plain.test", &r);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.nhost, 1);
	relay_dns_stats(dns, &q2, NULL);
	cr_assert_gt(q2, q1, "no new query after the TTL");
	teardown();
}

Test(relay_dns, silent_server_times_out)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof a;
	struct result r;
	uint64_t q1, q2;
	char server[32];
	int s;

	/* A bound UDP socket that never reads: c-ares must give up on its
	 * own timer. */
	s = socket(AF_INET, SOCK_DGRAM, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &alen), 0);
	snprintf(server, sizeof server, "127.0.0.1:%d", ntohs(a.sin_port));
	setup(server, 200);
	lookup_mx("mail.test", &r);
	cr_assert_eq(r.status, -EAGAIN);

	/* A temporary failure is not cached: the next lookup asks. */
	relay_dns_stats(dns, &q1, NULL);
	lookup_mx("mail.test", &r);
	cr_assert_eq(r.status, -EAGAIN);
	relay_dns_stats(dns, &q2, NULL);
	cr_assert_eq(q2, q1 + 1);
	teardown();
	close(s);
}

/* count_cb - counts answers of status 0 with the two mail.test hosts. */
static void count_cb(void *arg, const struct relay_dns_answer *a)
{
	int *n = arg;

	if (a->status == 0 && a->nhost == 2 &&
	    strcmp(a->host[0].name, "mx1.mail.test") == 0)
		(*n)++;
}

Test(relay_dns, newsletter_asks_once)
{
	uint64_t q, c;
	int ok = 0, i;

	/* 10,000 recipients at one domain: half asked before the first
	 * answer, half after it. */
	dnsmasq_start(300);
	setup("", 1000);
	for (i = 0; i < 5000; i++)
		cr_assert_eq(relay_dns_mx(dns, "mail.test", count_cb, &ok), 0);
	wait_for(&ok, 5000, 5000);
	for (i = 0; i < 5000; i++)
		cr_assert_eq(relay_dns_mx(dns, "mail.test", count_cb, &ok), 0);
	cr_assert_eq(ok, 5000);
	wait_for(&ok, 10000, 5000);
	cr_assert_eq(ok, 10000);
	relay_dns_stats(dns, &q, &c);
	cr_assert_eq(q, 7, "queries %llu", (unsigned long long)q);
	teardown();
}

Test(relay_dns, free_cancels)
{
	struct result r1, r2;

	/* One lookup waits for the server, one is a finished literal not
	 * yet delivered: both hear -ECANCELED, once. */
	dnsmasq_start(300);
	setup("", 1000);
	memset(&r1, 0, sizeof r1);
	memset(&r2, 0, sizeof r2);
	cr_assert_eq(relay_dns_mx(dns, "mail.test", result_cb, &r1), 0);
	cr_assert_eq(relay_dns_host(dns, "192.0.2.1", result_cb, &r2), 0);
	relay_dns_free(dns);
	cr_assert_eq(r1.calls, 1);
	cr_assert_eq(r1.status, -ECANCELED);
	cr_assert_eq(r2.calls, 1);
	cr_assert_eq(r2.status, -ECANCELED);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(r1.calls, 1);
	cr_assert_eq(uv_loop_close(&loop), 0, "handles left open");
}

/* free_in_cb - the first answer frees the resolver. */
static void free_in_cb(void *arg, const struct relay_dns_answer *a)
{
	result_cb(arg, a);
	if (a->status == 0)
		relay_dns_free(dns);
}

Test(relay_dns, free_from_callback)
{
	struct result r[2];

	/* Two literals delivered in one iteration; the first callback
	 * frees the resolver, the second lookup hears -ECANCELED. */
	cr_assert_eq(uv_loop_init(&loop), 0);
	cr_assert_eq(relay_dns_new(&dns, &loop, NULL, NULL, 0), 0);
	memset(r, 0, sizeof r);
	cr_assert_eq(relay_dns_host(dns, "192.0.2.1", free_in_cb, &r[0]), 0);
	cr_assert_eq(relay_dns_host(dns, "192.0.2.2", free_in_cb, &r[1]), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(r[0].calls, 1);
	cr_assert_eq(r[0].status, 0);
	cr_assert_eq(r[1].calls, 1);
	cr_assert_eq(r[1].status, -ECANCELED);
	cr_assert_eq(uv_loop_close(&loop), 0, "handles left open");
}

Test(relay_dns, bad_servers)
{
	static const char *bad[] = {
	    "",	    "1.2.3",  "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:65536",
	    "[::1", "[::1]x", "[::1]:",	  "host.test", "1.2.3.4:53x"};
	static const char *good[] = {"127.0.0.1", "127.0.0.1:5353", "::1",
				     "[::1]:5353", "[127.0.0.1]:53"};
	char err[256], *v[2] = {NULL, NULL};
	struct conf_list servers = {v, 1};
	size_t i;

	cr_assert_eq(uv_loop_init(&loop), 0);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		v[0] = (char *)bad[i];
		err[0] = '\0';
		cr_assert_eq(
		    relay_dns_new(&dns, &loop, &servers, err, sizeof err),
		    -EINVAL, "%s accepted", bad[i]);
		cr_assert(strstr(err, "dns_servers") != NULL, "err: %s", err);
	}
	for (i = 0; i < sizeof good / sizeof good[0]; i++) {
		v[0] = (char *)good[i];
		cr_assert_eq(
		    relay_dns_new(&dns, &loop, &servers, err, sizeof err), 0,
		    "%s: %s", good[i], err);
		relay_dns_free(dns);
		uv_run(&loop, UV_RUN_DEFAULT);
	}
	cr_assert_eq(uv_loop_close(&loop), 0, "handles left open");
}

Test(relay_dns, refused)
{
	struct result r;
	uint64_t q1, q2;

	/* dnsmasq has no upstream for names outside .test: REFUSED, a
	 * temporary failure, not cached. */
	dnsmasq_start(300);
	setup("", 1000);
	lookup_mx("elsewhere.example", &r);
	cr_assert_eq(r.status, -EAGAIN);
	relay_dns_stats(dns, &q1, NULL);
	lookup_mx("elsewhere.example", &r);
	cr_assert_eq(r.status, -EAGAIN);
	relay_dns_stats(dns, &q2, NULL);
	cr_assert_eq(q2, q1 + 1);
	teardown();
}
