/*
 * sign_pool - worker threads for the private-key work of sign jobs.
 *
 * One mutex guards the queue of submitted jobs, the list of finished ones
 * and the wake-up flag; a condition variable puts idle workers to sleep.
 * Finished jobs go back through an eventfd that the loop polls, and
 * sign_pool_reap() runs their callbacks there, in completion order. The
 * loop thread never touches a private key.
 *
 * Waking the loop costs the worker a write(2) and, when the loop sleeps,
 * an inter-processor interrupt; under a hypervisor waking a sleeping CPU
 * costs the worker about as much as an ed25519 signature (perf on a KVM
 * guest: a fifth of the worker's time at one wake-up per job, a tenth
 * at one per 8). So a finished job waits for company while the workers
 * have enough queued to stay busy, and the loop is woken when
 *  - a worker finds the queue empty (nothing to batch with), or
 *  - a worker is about to start an RSA job and there are as many
 *    finished jobs as workers (an RSA job takes hundreds of
 *    microseconds: finished jobs must not wait for more than about one;
 *    waking the loop once per RSA job made it preempt a worker about
 *    once per message), or
 *  - the queue is down to POOL_LOW jobs per worker: the loop has that
 *    long to submit more before the workers run dry, or
 *  - POOL_BATCH jobs are waiting.
 * A finished job therefore waits at most for POOL_BATCH - 1 ed25519
 * signatures spread over the workers (about 1.5 ms with one worker on
 * the development machine, 0.7 ms with two), or about one RSA signature.
 * A loop that is awake anyway picks finished jobs up in passing
 * (sign_pool_reap_ready), reading a counter the workers keep.
 */
#include "sign/sign.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "sign/sign_job.h"

#define POOL_BATCH 64
#define POOL_LOW 2

struct sign_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;		 /* queue not empty, or stop */
	struct sign_job *qhead, **qtail; /* submitted, FIFO */
	struct sign_job *dhead, **dtail; /* finished, FIFO */
	unsigned nqueued;		 /* on the submitted list */
	unsigned workers; /* as asked for: set before they start */
	atomic_uint ndone;		 /* on the finished list */
	bool woken;			 /* eventfd written since reap */
	bool stop;

	int efd;
	pthread_t *tid;
	int nthreads;
	size_t outstanding; /* submitted, not yet reaped: loop thread only */
};

/* pool_job_slow - whether job has an RSA signature to make. */
static bool pool_job_slow(const struct sign_job *job)
{
	for (size_t i = 0; i < job->nsig; i++)
		if (job->sig[i].key->type == SIGN_KEY_RSA)
			return true;
	return false;
}

/*
 * pool_wake_locked - claim the wake-up if finished jobs wait and nobody
 * has woken the loop for them yet; the caller writes the eventfd after
 * unlocking (pool_wake).
 */
static bool pool_wake_locked(struct sign_pool *p)
{
	if (p->ndone == 0 || p->woken)
		return false;
	p->woken = true;
	return true;
}

static void pool_wake(struct sign_pool *p)
{
	uint64_t one = 1;

	if (write(p->efd, &one, sizeof(one)) < 0) {
		/* EAGAIN only: the counter is already non-zero. */
	}
}

/* pool_worker_main - take a job, run it, hand it back; until stopped. */
static void *pool_worker_main(void *arg)
{
	struct sign_pool *p = arg;
	struct sign_job *job;
	bool wake;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->qhead && !p->stop) {
			/* About to sleep: nothing left to batch with. */
			if (pool_wake_locked(p)) {
				pthread_mutex_unlock(&p->lock);
				pool_wake(p);
				pthread_mutex_lock(&p->lock);
				continue;
			}
			pthread_cond_wait(&p->cond, &p->lock);
		}
		job = p->qhead;
		if (!job)
			break;
		p->qhead = job->next;
		if (!p->qhead)
			p->qtail = &p->qhead;
		p->nqueued--;
		wake = (p->ndone >= POOL_BATCH ||
			p->nqueued <= POOL_LOW * p->workers ||
			(p->ndone >= p->workers && pool_job_slow(job))) &&
		       pool_wake_locked(p);
		pthread_mutex_unlock(&p->lock);

		if (wake)
			pool_wake(p);
		job->rc = sign_job_run(job);
		job->next = NULL;

		pthread_mutex_lock(&p->lock);
		*p->dtail = job;
		p->dtail = &job->next;
		p->ndone++;
	}

	/* Stopping: whatever finished must still reach the loop. */
	wake = pool_wake_locked(p);
	pthread_mutex_unlock(&p->lock);
	if (wake)
		pool_wake(p);
	return NULL;
}

/* sign_pool_size - threads, or the number of online CPUs for 0. */
int sign_pool_size(int threads)
{
	long n;

	if (threads > 0)
		return threads;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

/* sign_pool_new - start threads workers. */
struct sign_pool *sign_pool_new(int threads)
{
	struct sign_pool *p;
	int i;

	threads = sign_pool_size(threads);
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->qtail = &p->qhead;
	p->dtail = &p->dhead;
	p->workers = (unsigned)threads;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	p->tid = calloc((size_t)threads, sizeof(*p->tid));
	if (p->efd < 0 || !p->tid)
		goto fail;
	for (i = 0; i < threads; i++) {
		if (pthread_create(&p->tid[i], NULL, pool_worker_main, p))
			goto fail;
		p->nthreads++;

		/* For top -H and perf: which thread signs. */
		pthread_setname_np(p->tid[i], "waxseal-sign");
	}
	return p;

fail:
	sign_pool_free(p);
	return NULL;
}

/* sign_pool_fd - readable when finished jobs wait for reaping. */
int sign_pool_fd(const struct sign_pool *p)
{
	return p->efd;
}

/* sign_pool_submit - queue job; cb(arg, job, rc) comes from reap. */
int sign_pool_submit(struct sign_pool *p, struct sign_job *job, sign_done_cb cb,
		     void *arg)
{
	job->cb = cb;
	job->arg = arg;
	job->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->stop) {
		pthread_mutex_unlock(&p->lock);
		return -ESHUTDOWN;
	}
	*p->qtail = job;
	p->qtail = &job->next;
	p->nqueued++;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	p->outstanding++;
	return 0;
}

/* sign_pool_threads - the number of workers p runs. */
int sign_pool_threads(const struct sign_pool *p)
{
	return p->nthreads;
}

/* sign_pool_outstanding - jobs submitted and not yet reaped. */
size_t sign_pool_outstanding(const struct sign_pool *p)
{
	return p->outstanding;
}

/*
 * pool_take - take the finished list, under the lock; *woken says
 * whether a wake-up had been claimed for it.
 */
static struct sign_job *pool_take(struct sign_pool *p, bool *woken)
{
	struct sign_job *job;

	pthread_mutex_lock(&p->lock);
	job = p->dhead;
	p->dhead = NULL;
	p->dtail = &p->dhead;
	p->ndone = 0;
	*woken = p->woken;
	p->woken = false;
	pthread_mutex_unlock(&p->lock);
	return job;
}

/* pool_reap_list - run the callbacks of the finished list job. */
static void pool_reap_list(struct sign_pool *p, struct sign_job *job)
{
	struct sign_job *next;

	for (; job; job = next) {
		next = job->next;
		job->next = NULL;
		p->outstanding--;
		job->cb(job->arg, job, job->rc);
	}
}

/* sign_pool_reap - drain the eventfd, then run every finished callback. */
void sign_pool_reap(struct sign_pool *p)
{
	uint64_t cnt;
	bool woken;

	if (read(p->efd, &cnt, sizeof(cnt)) < 0) {
		/* EAGAIN: nothing signalled, but look anyway. */
	}
	pool_reap_list(p, pool_take(p, &woken));
}

/* sign_pool_reap_ready - reap in passing, when finished jobs wait. */
void sign_pool_reap_ready(struct sign_pool *p)
{
	struct sign_job *job;
	uint64_t cnt;
	bool woken;

	/* A stale zero only delays these jobs to the next call or wake-up. */
	if (atomic_load_explicit(&p->ndone, memory_order_relaxed) == 0)
		return;
	job = pool_take(p, &woken);

	/* A wake-up claimed for these jobs need not wake the loop again
	 * (if its write comes after this read, one empty reap follows). */
	if (woken && read(p->efd, &cnt, sizeof(cnt)) < 0) {
		/* EAGAIN: the worker has not written yet. */
	}
	pool_reap_list(p, job);
}

/* sign_pool_free - finish the queue, join, release. */
void sign_pool_free(struct sign_pool *p)
{
	int i;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->nthreads; i++)
		pthread_join(p->tid[i], NULL);

	/* Jobs finished after the last reap still belong to callers. */
	sign_pool_reap(p);
	free(p->tid);
	if (p->efd >= 0)
		close(p->efd);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
