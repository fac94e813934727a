/*
 * sign_job - the insides of a sign job, shared by sign.c (which builds
 * and runs it) and sign_pool.c (which queues it). Nothing outside sign/
 * includes this.
 *
 * A job holds only immutable inputs made on the loop thread: the
 * canonicalised header data that h= covers, and per signature the key
 * and the folded DKIM-Signature text that ends in "b=" (the body hash is
 * already in it). sign_job_run() adds the signatures; the result is
 * written once, by whichever thread runs the job.
 */
#ifndef WAXSEAL_SIGN_JOB_H
#define WAXSEAL_SIGN_JOB_H

#include <stddef.h>

#include "sign/sign.h"
#include "sign/sign_key.h"

/* At most this many signatures per message (dual signing needs 2). */
#define SIGN_JOB_MAX 8

struct sign_job_sig {
	const struct sign_key *key; /* owned by struct sign_keys */
	char *tmpl;		    /* "DKIM-Signature: ... b=", folded */
	size_t tlen;
	size_t col; /* length of tmpl's last line */
};

struct sign_job {
	int hcanon;  /* enum sign_canon_alg */
	char *hdata; /* canonicalised h= fields */
	size_t hlen;
	struct sign_job_sig sig[SIGN_JOB_MAX];
	size_t nsig;

	char *res; /* the finished fields */
	size_t rlen;

	/* Pool bookkeeping, owned by sign_pool.c while queued. */
	struct sign_job *next;
	sign_done_cb cb;
	void *arg;
	int rc;
};

#endif
