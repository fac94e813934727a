/*
 * bench_stats - latency histogram for the load generator.
 *
 * Values (nanoseconds, or any unsigned unit) go into log-linear buckets:
 * exact below 128, then 128 buckets per power of two, so a reported
 * quantile (the middle of its bucket) is within 0.4% of the true value.
 * The histogram is a fixed array inside the struct: adding a value
 * allocates nothing and costs a few instructions.
 */
#ifndef WAXSEAL_BENCH_STATS_H
#define WAXSEAL_BENCH_STATS_H

#include <stdint.h>

#define BENCH_STATS_SUB_BITS 7
#define BENCH_STATS_SUB (1u << BENCH_STATS_SUB_BITS)
#define BENCH_STATS_BUCKETS (BENCH_STATS_SUB * (64 - BENCH_STATS_SUB_BITS + 1))

struct bench_stats {
	uint64_t n;
	uint64_t min;
	uint64_t max;
	double sum;
	uint64_t counts[BENCH_STATS_BUCKETS];
};

/* bench_stats_init - empty the histogram. */
void bench_stats_init(struct bench_stats *s);

/* bench_stats_add - count one value. */
void bench_stats_add(struct bench_stats *s, uint64_t v);

/*
 * bench_stats_quantile - the value below which a fraction q (0..1) of the
 * values lie; 0 when the histogram is empty, never above the maximum.
 */
uint64_t bench_stats_quantile(const struct bench_stats *s, double q);

/* bench_stats_mean - arithmetic mean; 0 when empty. */
double bench_stats_mean(const struct bench_stats *s);

#endif
