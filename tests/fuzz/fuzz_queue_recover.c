/*
 * fuzz_queue_recover - spool recovery on arbitrary segment files.
 *
 * The input is split in two segments at an offset taken from its first two
 * bytes, so that both the older-segment and the newest-segment rules are
 * exercised. When the low bit of the third byte is set, the checksum of
 * every well-framed record is recomputed first: random bytes almost never
 * carry a good CRC-32C, and without this the payload decoder is unreached.
 * The next bit turns on the spool's zero fill for the writes. The
 * spool is opened read-only and then read-write; every live message is read
 * back, and the read-write spool must then take one more message, a DONE
 * record and RCPT, DEFER and HOLD records, and open again with the same
 * messages in the same state (a digest of every live message's ID and
 * delivery state is compared). Reclaiming runs on the way: small segments
 * make the write roll, so old segments are deleted or copied forward.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue/queue.h"

struct fuzz_op {
	queue_io_cb cb;
	void *arg;
	int res;
};

/* At most one operation is in flight at a time; a few slots are plenty. */
struct fuzz_io {
	struct fuzz_op q[8];
	int n;
};

static char fuzz_dir[64];

/* fuzz_push - hold a completion until fuzz_pump delivers it. */
static int fuzz_push(struct fuzz_io *f, queue_io_cb cb, void *arg, int res)
{
	if (f->n == 8)
		abort(); /* the spool broke its one-in-flight rule */
	f->q[f->n++] = (struct fuzz_op){cb, arg, res};
	return 0;
}

/* fuzz_pwrite - write now, complete later. */
static int fuzz_pwrite(void *ctx, int fd, const void *buf, size_t len,
		       uint64_t off, queue_io_cb cb, void *arg)
{
	ssize_t n = pwrite(fd, buf, len, (off_t)off);

	return fuzz_push(ctx, cb, arg, n < 0 ? -1 : (int)n);
}

/* fuzz_fdatasync - nothing to make durable on a scratch directory. */
static int fuzz_fdatasync(void *ctx, int fd, queue_io_cb cb, void *arg)
{
	(void)fd;
	return fuzz_push(ctx, cb, arg, 0);
}

/* fuzz_pump - deliver completions until none is left. */
static void fuzz_pump(struct fuzz_io *f)
{
	while (f->n) {
		struct fuzz_op op = f->q[0];

		memmove(f->q, f->q + 1, (size_t)(f->n - 1) * sizeof(op));
		f->n--;
		op.cb(op.arg, op.res);
	}
}

/* fuzz_clean - remove every file of the scratch spool. */
static void fuzz_clean(void)
{
	char p[400];
	struct dirent *de;
	DIR *d = opendir(fuzz_dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", fuzz_dir, de->d_name);
		unlink(p);
	}
	closedir(d);
}

/* fuzz_seal - recompute the checksums of the leading well-framed records. */
static void fuzz_seal(uint8_t *d, size_t len)
{
	size_t off = 0;

	while (len - off >= 16 && !memcmp(d + off, "WXR1", 4)) {
		uint8_t *h = d + off;
		uint32_t n = (uint32_t)h[8] | (uint32_t)h[9] << 8 |
			     (uint32_t)h[10] << 16 | (uint32_t)h[11] << 24;
		uint32_t crc;

		if (n > len - off - 16)
			break;
		crc = queue_crc32c(queue_crc32c(0, h + 4, 8), h + 16, n);
		for (int i = 0; i < 4; i++)
			h[12 + i] = (uint8_t)(crc >> (8 * i));
		off += 16 + n;
	}
}

/* fuzz_rmdir - remove the scratch spool when the fuzzer exits. */
static void fuzz_rmdir(void)
{
	fuzz_clean();
	rmdir(fuzz_dir);
}

/* fuzz_put - write one segment file, resealed if asked. */
static void fuzz_put(unsigned num, const uint8_t *data, size_t len, bool seal)
{
	uint8_t *copy = NULL;
	char p[400];
	int fd;

	if (seal && len) {
		copy = malloc(len);
		if (!copy)
			abort();
		memcpy(copy, data, len);
		fuzz_seal(copy, len);
		data = copy;
	}

	snprintf(p, sizeof(p), "%s/seg-%08u.log", fuzz_dir, num);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		abort();
	if (len && write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
	free(copy);
}

/* fuzz_read_cb - read back every live message and check its size. */
static int fuzz_read_cb(void *arg, const struct queue_msg *m)
{
	struct queue_spool *s = arg;
	char *buf = NULL;
	size_t len = 0;
	int r = queue_spool_read(s, m->id, &buf, &len);

	if (r == 0 && len != m->size)
		abort();
	if (queue_spool_find(s, m->id) != m)
		abort();
	free(buf);
	return 0;
}

/* fuzz_digest_cb - fold a message's ID and delivery state into a hash. */
static int fuzz_digest_cb(void *arg, const struct queue_msg *m)
{
	uint64_t *h = arg;
	size_t pending = 0;

	for (size_t i = 0; i < m->nrcpt; i++) {
		if (m->rcpt_done[i] > 1)
			abort();
		pending += !m->rcpt_done[i];
	}
	if (pending != m->npending)
		abort();

#define FUZZ_MIX(v) (*h = (*h ^ (uint64_t)(v)) * 0x100000001B3ull)
	for (int i = 0; i < QUEUE_ID_LEN; i++)
		FUZZ_MIX(m->id[i]);
	for (size_t i = 0; i < m->nrcpt; i++)
		FUZZ_MIX(m->rcpt_done[i]);
	FUZZ_MIX(m->next_ms);
	FUZZ_MIX(m->attempts);
	FUZZ_MIX(m->held);
#undef FUZZ_MIX
	return 0;
}

/* fuzz_digest - the digest of the whole index. */
static uint64_t fuzz_digest(struct queue_spool *s)
{
	uint64_t h = 0xCBF29CE484222325ull;

	queue_spool_foreach(s, fuzz_digest_cb, &h);
	return h;
}

/* fuzz_state_cb - change the state of each live message a little. */
static int fuzz_state_cb(void *arg, const struct queue_msg *m)
{
	struct queue_spool *s = arg;
	size_t idx[2] = {0, m->nrcpt ? m->nrcpt - 1 : 0};
	uint32_t k = m->attempts + 1;

	if (m->nrcpt &&
	    queue_spool_rcpt_done(s, m->id, idx + (k & 1), 2 - (k & 1)) != 0)
		abort();
	if (queue_spool_rcpt_done(s, m->id, idx, 1) != (m->nrcpt ? 0 : -EINVAL))
		abort();
	if (queue_spool_defer(s, m->id, (int64_t)((uint64_t)m->next_ms + 60000),
			      k) != 0)
		abort();
	if (queue_spool_hold(s, m->id, !m->held) != 0)
		abort();
	return 0;
}

/* fuzz_first_cb - remember the first live message's ID. */
static int fuzz_first_cb(void *arg, const struct queue_msg *m)
{
	memcpy(arg, m->id, QUEUE_ID_LEN + 1);
	return 1;
}

/* fuzz_append_cb - keep the result of the append. */
static void fuzz_append_cb(void *arg, int res, const char *id)
{
	(void)id;
	*(int *)arg = res;
}

/* fuzz_write - a DONE and one more message; returns the change in count. */
static int fuzz_write(struct queue_spool *s, struct fuzz_io *f)
{
	const char *rcpt = "r@example.test";
	struct iovec iov = {"Subject: x\r\n\r\nbody\r\n", 20};
	struct queue_msg_in in = {"s@example.test", &rcpt, 1, &iov, 1, 0, 0};
	char id[QUEUE_ID_LEN + 1], first[QUEUE_ID_LEN + 1] = "";
	int res = 1, delta = 0;

	if (queue_spool_foreach(s, fuzz_first_cb, first) == 1) {
		if (queue_spool_done(s, first) != 0)
			abort();
		delta--;
	}
	if (queue_spool_append(s, &in, fuzz_append_cb, &res, id) == 0)
		delta++;
	queue_spool_foreach(s, fuzz_state_cb, s);

	/* Flush a few times: each may delete one segment. */
	for (int i = 0; i < 4; i++) {
		queue_spool_flush(s);
		fuzz_pump(f);
	}
	if ((delta > 0 && res != 0) || !queue_spool_idle(s))
		abort();
	queue_spool_foreach(s, fuzz_read_cb, s);
	return delta;
}

/* LLVMFuzzerTestOneInput - recover, read, write and recover again. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct queue_limits lim = {.segment_size = 4096};
	struct fuzz_io f = {.n = 0};
	struct queue_io io = {&f, fuzz_pwrite, fuzz_fdatasync};
	struct queue_spool *s;
	size_t split = 0, count;
	uint64_t digest;
	bool seal = false;

	if (!fuzz_dir[0]) {
		strcpy(fuzz_dir, "/tmp/waxseal-fuzz-XXXXXX");
		if (!mkdtemp(fuzz_dir))
			abort();
		atexit(fuzz_rmdir);
	}
	if (size >= 3) {
		split = ((size_t)data[0] | (size_t)data[1] << 8) % (size - 2);
		seal = data[2] & 1;
		lim.zero_fill = data[2] & 2;
		data += 3;
		size -= 3;
	}
	fuzz_clean();
	if (split)
		fuzz_put(1, data, split, seal);
	fuzz_put(2, data + split, size - split, seal);

	/* Read-only first: it must see what read-write will keep. */
	if (queue_spool_open(&s, fuzz_dir, &lim, NULL, NULL, 0) < 0)
		return 0;
	queue_spool_foreach(s, fuzz_read_cb, s);
	count = queue_spool_count(s);
	digest = fuzz_digest(s);
	queue_spool_close(s);

	if (queue_spool_open(&s, fuzz_dir, &lim, &io, NULL, 0) < 0)
		abort();
	if (queue_spool_count(s) != count || fuzz_digest(s) != digest)
		abort();
	queue_spool_foreach(s, fuzz_read_cb, s);
	count += (size_t)fuzz_write(s, &f);
	digest = fuzz_digest(s);
	queue_spool_close(s);

	/* What was written after recovery must open again. */
	if (queue_spool_open(&s, fuzz_dir, &lim, NULL, NULL, 0) < 0)
		abort();
	if (queue_spool_count(s) != count || fuzz_digest(s) != digest)
		abort();
	queue_spool_foreach(s, fuzz_read_cb, s);
	queue_spool_close(s);
	return 0;
}
