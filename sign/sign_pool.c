/*
 * sign_pool - worker threads for the private-key work of sign jobs.
 *
 * One mutex and condition variable guard the queue of submitted jobs;
 * a second mutex guards the list of finished ones, so a worker that
 * finishes never waits for the loop to submit. A finished job bumps an
 * eventfd; the loop thread polls it and sign_pool_reap() runs the
 * callbacks there, in completion order. The loop thread never touches a
 * private key.
 */
#include "sign/sign.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "sign/sign_job.h"

struct sign_pool {
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	struct sign_job *qhead, **qtail; /* submitted, FIFO */
	bool stop;

	pthread_mutex_t dlock;
	struct sign_job *dhead, **dtail; /* finished, FIFO */

	int efd;
	pthread_t *tid;
	int nthreads;
};

/* pool_worker_main - take a job, run it, hand it back; until stopped. */
static void *pool_worker_main(void *arg)
{
	struct sign_pool *p = arg;
	struct sign_job *job;
	uint64_t one = 1;
	bool first;

	for (;;) {
		pthread_mutex_lock(&p->qlock);
		while (!p->qhead && !p->stop)
			pthread_cond_wait(&p->qcond, &p->qlock);
		job = p->qhead;
		if (!job) {
			pthread_mutex_unlock(&p->qlock);
			return NULL;
		}
		p->qhead = job->next;
		if (!p->qhead)
			p->qtail = &p->qhead;
		pthread_mutex_unlock(&p->qlock);

		job->rc = sign_job_run(job);
		job->next = NULL;

		pthread_mutex_lock(&p->dlock);
		first = p->dhead == NULL;
		*p->dtail = job;
		p->dtail = &job->next;
		pthread_mutex_unlock(&p->dlock);

		/* Only the job that finds the done list empty wakes the loop:
		 * reap takes the whole list, so the others ride that wake-up
		 * (one write(2) per batch instead of one per job). */
		if (first && write(p->efd, &one, sizeof(one)) < 0) {
			/* EAGAIN only; the loop will see the count. */
		}
	}
}

/* sign_pool_new - start threads workers. */
struct sign_pool *sign_pool_new(int threads)
{
	struct sign_pool *p;
	int i;

	if (threads <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		threads = n > 0 ? (int)n : 1;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->qtail = &p->qhead;
	p->dtail = &p->dhead;
	pthread_mutex_init(&p->qlock, NULL);
	pthread_cond_init(&p->qcond, NULL);
	pthread_mutex_init(&p->dlock, NULL);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	p->tid = calloc((size_t)threads, sizeof(*p->tid));
	if (p->efd < 0 || !p->tid)
		goto fail;
	for (i = 0; i < threads; i++) {
		if (pthread_create(&p->tid[i], NULL, pool_worker_main, p))
			goto fail;
		p->nthreads++;
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
	pthread_mutex_lock(&p->qlock);
	if (p->stop) {
		pthread_mutex_unlock(&p->qlock);
		return -ESHUTDOWN;
	}
	*p->qtail = job;
	p->qtail = &job->next;
	pthread_cond_signal(&p->qcond);
	pthread_mutex_unlock(&p->qlock);
	return 0;
}

/* sign_pool_reap - drain the eventfd, then run every finished callback. */
void sign_pool_reap(struct sign_pool *p)
{
	struct sign_job *job, *next;
	uint64_t cnt;

	if (read(p->efd, &cnt, sizeof(cnt)) < 0) {
		/* EAGAIN: nothing signalled, but look anyway. */
	}
	pthread_mutex_lock(&p->dlock);
	job = p->dhead;
	p->dhead = NULL;
	p->dtail = &p->dhead;
	pthread_mutex_unlock(&p->dlock);

	for (; job; job = next) {
		next = job->next;
		job->next = NULL;
		job->cb(job->arg, job, job->rc);
	}
}

/* sign_pool_free - finish the queue, join, release. */
void sign_pool_free(struct sign_pool *p)
{
	int i;

	if (!p)
		return;
	pthread_mutex_lock(&p->qlock);
	p->stop = true;
	pthread_cond_broadcast(&p->qcond);
	pthread_mutex_unlock(&p->qlock);
	for (i = 0; i < p->nthreads; i++)
		pthread_join(p->tid[i], NULL);

	/* Jobs finished after the last reap still belong to callers. */
	sign_pool_reap(p);
	free(p->tid);
	if (p->efd >= 0)
		close(p->efd);
	pthread_cond_destroy(&p->qcond);
	pthread_mutex_destroy(&p->qlock);
	pthread_mutex_destroy(&p->dlock);
	free(p);
}
