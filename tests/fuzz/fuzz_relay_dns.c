/*
 * fuzz_relay_dns - libFuzzer target for relay_dns_parse, the reader of
 * DNS responses.
 *
 * The first input byte picks the asked type (A, AAAA or MX); the rest is
 * the response. Whatever the bytes, the parser must return 0 or -EBADMSG,
 * read nothing outside them (ASan), and on success return at most
 * RELAY_DNS_MAXRR records whose names are lower-case and no longer than
 * 253 characters; parsing twice gives the same result.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/relay_dns.h"

static struct relay_dns_msg m1, m2;

/* fuzz_dns_check_name - a name as the parser may return it. */
static void fuzz_dns_check_name(const char *name)
{
	size_t n = strnlen(name, 256), i;

	if (n > 253)
		abort();
	for (i = 0; i < n; i++)
		if (name[i] >= 'A' && name[i] <= 'Z')
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int types[3] = {RELAY_DNS_T_A, RELAY_DNS_T_AAAA,
				     RELAY_DNS_T_MX};
	unsigned char *msg;
	size_t i, len;
	int qtype, rc;

	if (size == 0)
		return 0;
	qtype = types[data[0] % 3];

	/* A copy of exactly len bytes, so any overread is caught. */
	len = size - 1;
	msg = malloc(len > 0 ? len : 1);
	if (msg == NULL)
		return 0;
	memcpy(msg, data + 1, len);

	rc = relay_dns_parse(msg, len, qtype, &m1);
	if (rc != 0 && rc != -EBADMSG)
		abort();
	if (rc == 0) {
		if (m1.nrr > RELAY_DNS_MAXRR || m1.rcode < 0 || m1.rcode > 15)
			abort();
		for (i = 0; i < m1.nrr; i++) {
			if (qtype == RELAY_DNS_T_MX)
				fuzz_dns_check_name(m1.rr[i].name);
			if (m1.rr[i].ttl > 0x7fffffffu)
				abort();
		}
		if (relay_dns_parse(msg, len, qtype, &m2) != 0 ||
		    m2.nrr != m1.nrr || m2.rcode != m1.rcode ||
		    m2.soa_min != m1.soa_min ||
		    memcmp(m1.rr, m2.rr, m1.nrr * sizeof m1.rr[0]) != 0)
			abort();
	}
	free(msg);
	return 0;
}
