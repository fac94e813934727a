/*
 * bench_stats - log-linear latency histogram; see bench_stats.h.
 */
#include <string.h>

#include "bench/bench_stats.h"

/* bench_stats_index - bucket of a value. */
static unsigned bench_stats_index(uint64_t v)
{
	unsigned e, shift;

	if (v < BENCH_STATS_SUB)
		return (unsigned)v;

	/* e >= SUB_BITS: keep the SUB_BITS bits below the leading one. */
	e = 63 - (unsigned)__builtin_clzll(v);
	shift = e - BENCH_STATS_SUB_BITS;
	return BENCH_STATS_SUB * (shift + 1) +
	       (unsigned)((v >> shift) - BENCH_STATS_SUB);
}

/* bench_stats_value - middle of a bucket. */
static uint64_t bench_stats_value(unsigned idx)
{
	unsigned shift;
	uint64_t low;

	if (idx < BENCH_STATS_SUB)
		return idx;

	shift = idx / BENCH_STATS_SUB - 1;
	low = (uint64_t)(BENCH_STATS_SUB + idx % BENCH_STATS_SUB) << shift;
	return low + ((1ull << shift) >> 1);
}

/* bench_stats_init - empty the histogram. */
void bench_stats_init(struct bench_stats *s)
{
	memset(s, 0, sizeof(*s));
	s->min = UINT64_MAX;
}

/* bench_stats_add - count one value. */
void bench_stats_add(struct bench_stats *s, uint64_t v)
{
	s->counts[bench_stats_index(v)]++;
	s->n++;
	s->sum += (double)v;
	if (v < s->min)
		s->min = v;
	if (v > s->max)
		s->max = v;
}

/* bench_stats_quantile - value at fraction q of the sorted values. */
uint64_t bench_stats_quantile(const struct bench_stats *s, double q)
{
	uint64_t rank, seen = 0, v;
	unsigned i;

	if (s->n == 0)
		return 0;

	/* Rank of the wanted value, 1-based, as in a sorted sample. */
	if (q <= 0)
		return s->min;
	rank = (uint64_t)(q * (double)s->n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank >= s->n)
		return s->max;

	for (i = 0; i < BENCH_STATS_BUCKETS; i++) {
		seen += s->counts[i];
		if (seen >= rank)
			break;
	}
	v = bench_stats_value(i);

	/* A bucket's middle may lie outside what was seen. */
	if (v > s->max)
		v = s->max;
	if (v < s->min)
		v = s->min;
	return v;
}

/* bench_stats_mean - arithmetic mean. */
double bench_stats_mean(const struct bench_stats *s)
{
	return s->n ? s->sum / (double)s->n : 0;
}
