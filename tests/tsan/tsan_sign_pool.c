/*
 * tsan_sign_pool - the sign pool under ThreadSanitizer (Criterion cannot
 * start under TSan, so this is a plain program; .ci/run builds it with
 * -DWAXSEAL_TSAN=ON and runs it). Three workers take rounds of 1 to 20
 * jobs, each signed with an ed25519 and an RSA key (dual signing), so
 * that every rule of the pool's batched wake-up is exercised: the queue
 * running dry, an RSA job next, a full batch; every other round also
 * reaps in passing (sign_pool_reap_ready). Exit status 0 when every
 * job came back signed; TSan's own report fails the run.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf.h"
#include "sign/sign.h"
#include "sign/sign_key.h"

#define ROUNDS 200

static int done;

/* job_done - count a job; a failed signature fails the run. */
static void job_done(void *arg, struct sign_job *job, int res)
{
	size_t len = 0;

	(void)arg;
	if (res != 0 || sign_job_result(job, &len) == NULL || len == 0) {
		fprintf(stderr, "tsan_sign_pool: job failed: %d\n", res);
		exit(1);
	}
	done++;
	sign_job_free(job);
}

/* write_file - path with text, mode 0600. */
static int write_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "w");

	if (f == NULL || fwrite(text, 1, len, f) != len) {
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	return chmod(path, 0600);
}

/* load_keys - tables in dir for *@example.com: an ed25519 and an RSA
 * key, both applied (dkim_multiple_signatures). */
static struct sign_keys *load_keys(const char *dir)
{
	static char *hdrs[] = {"From", "Subject"};
	char kt[1024] = "", path[4][300], err[512];
	struct sign_keys *keys = NULL;
	struct sign_key *k;
	struct conf c;
	size_t len;
	char *pem;

	for (int i = 0; i < 2; i++) {
		k = NULL;
		if (sign_key_generate(&k, i ? SIGN_KEY_RSA : SIGN_KEY_ED25519,
				      1024) < 0 ||
		    sign_key_write_pem(k, &pem, &len) < 0)
			return NULL;
		snprintf(path[i], sizeof(path[i]), "%s/k%d.private", dir, i);
		if (write_file(path[i], pem, len) < 0)
			return NULL;
		free(pem);
		sign_key_free(k);
		snprintf(kt + strlen(kt), sizeof(kt) - strlen(kt),
			 "k%d example.com:s%d:%s\n", i, i, path[i]);
	}
	snprintf(path[2], sizeof(path[2]), "%s/KeyTable", dir);
	snprintf(path[3], sizeof(path[3]), "refile:%s/SigningTable", dir);
	if (write_file(path[2], kt, strlen(kt)) < 0 ||
	    write_file(path[3] + 7, "*@example.com k0\n*@example.com k1\n",
		       34) < 0)
		return NULL;
	memset(&c, 0, sizeof(c));
	c.dkim_key_table = path[2];
	c.dkim_signing_table = path[3];
	c.dkim_multiple_signatures = true;
	c.dkim_canonicalization = "relaxed/relaxed";
	c.dkim_sign_headers.v = hdrs;
	c.dkim_sign_headers.n = 2;
	if (sign_keys_load(&keys, &c, err, sizeof(err)) < 0) {
		fprintf(stderr, "tsan_sign_pool: %s\n", err);
		return NULL;
	}
	return keys;
}

int main(void)
{
	static const char H[] = "From: a@example.com\r\nSubject: x\r\n";
	char dir[] = "/tmp/waxseal-tsan.XXXXXX", cmd[64];
	struct sign_keys *keys;
	struct sign_pool *p;
	struct pollfd pfd;
	int sent = 0, rc = 1;

	if (!mkdtemp(dir))
		return 1;
	keys = load_keys(dir);
	p = keys ? sign_pool_new(3) : NULL;
	if (p == NULL)
		goto out;
	pfd.fd = sign_pool_fd(p);
	pfd.events = POLLIN;
	for (int round = 0; round < ROUNDS; round++) {
		for (int j = 0; j < 1 + round % 20; j++) {
			struct sign_msg *m = sign_msg_new(keys);
			struct sign_job *job = NULL;
			char why[100], dom[100];

			if (m == NULL)
				goto out;
			sign_msg_headers(m, H, sizeof(H) - 1);
			if (sign_msg_finish(m, &job, why, sizeof(why), dom,
					    sizeof(dom)) != SIGN_JOB ||
			    sign_pool_submit(p, job, job_done, NULL) < 0)
				goto out;
			sent++;
		}
		/* Odd rounds: pick jobs up in passing, as the daemon's loop
		 * does once per iteration, racing the workers' wake-ups. */
		for (int k = 0; round % 2 && k < 5; k++) {
			sign_pool_reap_ready(p);
			usleep(100);
		}

		/* Reap some now, the rest with later rounds. */
		if (done == sent)
			continue;
		if (poll(&pfd, 1, 10000) <= 0)
			goto out;
		sign_pool_reap(p);
	}
	while (done < sent) {
		if (poll(&pfd, 1, 10000) <= 0) {
			fprintf(stderr, "tsan_sign_pool: stalled at %d of %d\n",
				done, sent);
			goto out;
		}
		sign_pool_reap(p);
	}
	printf("tsan_sign_pool: %d jobs, each dual-signed, all back\n", done);
	rc = 0;
out:
	if (p)
		sign_pool_free(p);
	sign_keys_free(keys);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
