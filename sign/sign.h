/*
 * sign - DKIM signing for waxseal (RFC 6376, RFC 8463): the interface the
 * SMTP server uses. The module's other headers (canonicalisation, tables,
 * keys, verification, key generation) are its own business.
 *
 * Flow for one message, all on the loop thread except sign_job_run():
 *
 *	m = sign_msg_new(keys)
 *	sign_msg_headers(m, header block)     once, when the header ends
 *	sign_msg_body(m, bytes)               any number of times, streaming
 *	sign_msg_finish(m, &job, ...)         the policy decision
 *	sign_pool_submit(pool, job, cb, arg)  private-key work on a worker
 *	cb(arg, job) on the loop thread       via sign_pool_reap()
 *	sign_job_result(job)                  the DKIM-Signature header(s)
 *
 * The header block is the message's header section, CRLF-terminated
 * fields, without the blank line; the body is everything after that blank
 * line, exactly as it will be stored and sent.
 *
 * Errors are negative errno. Messages go to err buffers.
 */
#ifndef WAXSEAL_SIGN_H
#define WAXSEAL_SIGN_H

#include <stdbool.h>
#include <stddef.h>

struct conf;
struct sign_keys;
struct sign_msg;
struct sign_job;
struct sign_pool;

/*
 * sign_keys_load - read dkim_key_table, dkim_signing_table and every key
 * they name, with the settings of c (canonicalisation, headers, ttl).
 * With no tables configured, the result signs nothing (every message is
 * "unsigned"). Returns 0 or -errno with "FILE:LINE: reason" or
 * "KEYFILE: reason" in err. The result is immutable and may be shared by
 * threads; it holds no pointer into c.
 */
int sign_keys_load(struct sign_keys **out, const struct conf *c, char *err,
		   size_t errlen);

/* sign_keys_free - release keys; no sign_msg or job may still use them. */
void sign_keys_free(struct sign_keys *k);

/* sign_msg_new - per-message state; NULL on ENOMEM. keys must outlive it. */
struct sign_msg *sign_msg_new(const struct sign_keys *k);

/* sign_msg_headers - the header block; 0 or -ENOMEM. */
int sign_msg_headers(struct sign_msg *m, const char *hdr, size_t len);

/* sign_msg_body - the next body bytes; hashed now, not kept. */
void sign_msg_body(struct sign_msg *m, const char *body, size_t len);

/*
 * sign_msg_set_time - sign with t= t (seconds since the epoch) instead
 * of the clock at sign_msg_finish; for tests and reproducible output.
 */
void sign_msg_set_time(struct sign_msg *m, long long t);

enum sign_outcome {
	SIGN_JOB,	      /* *job is set: submit it */
	SIGN_UNSIGNED_ACCEPT, /* no signing-table match: queue unsigned */
	SIGN_UNSIGNED_DEFER,  /* no match and dkim_unsigned_action=defer */
	SIGN_UNSIGNED_REJECT, /* no match and dkim_unsigned_action=reject */
	SIGN_REFUSE,	      /* no From, or more than one: 550 5.7.x */
};

/*
 * sign_msg_finish - decide and build the job. why gets a short reason for
 * the SMTP reply and log for every outcome but SIGN_JOB (e.g. "message
 * has no From header"); domain gets the From domain when known. The
 * sign_msg is consumed (freed) in every case. Returns an enum
 * sign_outcome, or -ENOMEM.
 */
int sign_msg_finish(struct sign_msg *m, struct sign_job **job, char *why,
		    size_t whylen, char *domain, size_t domainlen);

/*
 * sign_job_run - do the private-key work of job (on any thread). Then
 * sign_job_result() gives the header fields to prepend, CRLF-terminated
 * and folded, one per signature. 0 or -errno.
 */
int sign_job_run(struct sign_job *job);
const char *sign_job_result(const struct sign_job *job, size_t *len);
void sign_job_free(struct sign_job *job);

typedef void (*sign_done_cb)(void *arg, struct sign_job *job, int res);

/* sign_pool_size - the workers sign_pool_new(threads) starts. */
int sign_pool_size(int threads);

/*
 * sign_pool_new - threads workers (0: number of CPUs). sign_pool_fd() is
 * an eventfd that becomes readable when finished jobs wait; the loop polls
 * it and calls sign_pool_reap(), which runs their callbacks on the calling
 * thread. NULL on error.
 */
struct sign_pool *sign_pool_new(int threads);
int sign_pool_fd(const struct sign_pool *p);
int sign_pool_submit(struct sign_pool *p, struct sign_job *job, sign_done_cb cb,
		     void *arg);
void sign_pool_reap(struct sign_pool *p);

/*
 * sign_pool_reap_ready - sign_pool_reap() if finished jobs wait, for a
 * loop that is awake anyway: one atomic load when none do. Workers do not
 * wake the loop for every finished RSA job (see sign_pool.c), so a loop
 * that calls this once per iteration gets its results sooner.
 */
void sign_pool_reap_ready(struct sign_pool *p);

/* sign_pool_threads - the number of workers p runs. */
int sign_pool_threads(const struct sign_pool *p);

/* sign_pool_outstanding - jobs submitted and not yet reaped (on the thread
 * that submits and reaps). */
size_t sign_pool_outstanding(const struct sign_pool *p);

/* sign_pool_free - stop the workers after the queued jobs; reap first. */
void sign_pool_free(struct sign_pool *p);

#endif
