/*
 * test_queue - the spool: group commit, failures, recovery, IDs, limits.
 *
 * The spool's struct queue_io is played by a fake that performs each
 * pwrite/fdatasync at once but holds its completion until the test pumps
 * it, so a test sees exactly what is in flight; it can also fail writes or
 * syncs and cut writes short.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "queue/queue.h"

/* ---- the fake io ---- */

struct fake_op {
	queue_io_cb cb;
	void *arg;
	int res;
};

struct fake_io {
	struct fake_op q[64];
	size_t nq;
	int writes;	  /* pwrite submissions, sync ones included */
	int sync_writes;  /* pwrite_sync submissions */
	int syncs;	  /* fdatasync submissions */
	size_t max_nq;	  /* most completions outstanding at once */
	size_t wlen[256]; /* length of each pwrite submission */
	size_t short_max; /* 0: write everything asked */
	int write_err;	  /* errno for the next write_err_n writes */
	int write_err_n;
	int sync_err; /* errno for the next sync_err_n syncs */
	int sync_err_n;
	int submit_err; /* -errno returned by the next pwrite call */
};

/* fake_push - queue a completion for the test to deliver later. */
static void fake_push(struct fake_io *f, queue_io_cb cb, void *arg, int res)
{
	cr_assert_lt(f->nq, 64);
	f->q[f->nq++] = (struct fake_op){cb, arg, res};
	if (f->nq > f->max_nq)
		f->max_nq = f->nq;
}

/* fake_pwrite - write now (maybe short or half then failing). */
static int fake_pwrite(void *ctx, int fd, const void *buf, size_t len,
		       uint64_t off, queue_io_cb cb, void *arg)
{
	struct fake_io *f = ctx;
	ssize_t n;

	if (f->submit_err) {
		int r = f->submit_err;

		f->submit_err = 0;
		return r;
	}
	if (f->writes < 256)
		f->wlen[f->writes] = len;
	f->writes++;

	/* A failing write still puts half its bytes on disk. */
	if (f->write_err_n > 0) {
		f->write_err_n--;
		n = pwrite(fd, buf, len / 2, (off_t)off);
		cr_assert_geq(n, 0);
		fake_push(f, cb, arg, -f->write_err);
		return 0;
	}
	if (f->short_max && len > f->short_max)
		len = f->short_max;
	n = pwrite(fd, buf, len, (off_t)off);
	fake_push(f, cb, arg, n < 0 ? -errno : (int)n);
	return 0;
}

/* fake_fdatasync - sync now, or pretend the disk failed. */
static int fake_fdatasync(void *ctx, int fd, queue_io_cb cb, void *arg)
{
	struct fake_io *f = ctx;

	f->syncs++;
	if (f->sync_err_n > 0) {
		f->sync_err_n--;
		fake_push(f, cb, arg, -f->sync_err);
		return 0;
	}
	fake_push(f, cb, arg, fdatasync(fd) < 0 ? -errno : 0);
	return 0;
}

/* fake_pwrite_sync - fake_pwrite, then fdatasync before it reports. */
static int fake_pwrite_sync(void *ctx, int fd, const void *buf, size_t len,
			    uint64_t off, queue_io_cb cb, void *arg)
{
	struct fake_io *f = ctx;
	int r = fake_pwrite(ctx, fd, buf, len, off, cb, arg);

	if (r == 0) {
		f->sync_writes++;
		if (f->q[f->nq - 1].res >= 0 && fdatasync(fd) < 0)
			f->q[f->nq - 1].res = -errno;
	}
	return r;
}

/* fake_pump - deliver the oldest completion; false if there was none. */
static bool fake_pump(struct fake_io *f)
{
	struct fake_op op;

	if (f->nq == 0)
		return false;
	op = f->q[0];
	memmove(f->q, f->q + 1, (f->nq - 1) * sizeof(f->q[0]));
	f->nq--;
	op.cb(op.arg, op.res);
	return true;
}

/* fake_pump_all - deliver completions until nothing is outstanding. */
static void fake_pump_all(struct fake_io *f)
{
	while (fake_pump(f))
		;
}

/* fake_io - a struct queue_io over f. */
static struct queue_io fake_io(struct fake_io *f)
{
	return (struct queue_io){f, fake_pwrite, fake_fdatasync, NULL};
}

/* ---- fixtures and helpers ---- */

static char tmp[64];
static char dir[128];
static struct fake_io fio;
static struct queue_io io;

/* rm_one - nftw callback that removes every file and directory. */
static int rm_one(const char *p, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* setup - a fresh scratch directory and a fake io for each test. */
static void setup(void)
{
	strcpy(tmp, "/tmp/waxseal-queue-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
	snprintf(dir, sizeof(dir), "%s/spool", tmp);
	memset(&fio, 0, sizeof(fio));
	io = fake_io(&fio);
}

/* teardown - remove the scratch directory. */
static void teardown(void)
{
	nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(queue, .init = setup, .fini = teardown);

/* A message made from a seed: envelope and data both depend on it. */
struct tmsg {
	char sender[64];
	char rcpt[3][64];
	const char *rcpts[3];
	char *data;
	size_t len;
	struct iovec iov[2];
	struct queue_msg_in in;
};

/* tmsg_make - a message of len data bytes derived from seed. */
static void tmsg_make(struct tmsg *t, unsigned seed, size_t len)
{
	unsigned x = seed * 2654435761u + 1;

	snprintf(t->sender, sizeof(t->sender), "list-%u@news.example", seed);
	for (int i = 0; i < 3; i++) {
		snprintf(t->rcpt[i], sizeof(t->rcpt[i]), "user%u.%d@dest.test",
			 seed, i);
		t->rcpts[i] = t->rcpt[i];
	}
	t->len = len;
	t->data = malloc(len ? len : 1);
	cr_assert_not_null(t->data);
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		t->data[i] = (char)(x >> 16);
	}

	/* Two pieces, so that the spool has to join iovecs. */
	t->iov[0] = (struct iovec){t->data, len / 3};
	t->iov[1] = (struct iovec){t->data + len / 3, len - len / 3};
	t->in = (struct queue_msg_in){
	    .sender = t->sender,
	    .rcpts = t->rcpts,
	    .nrcpt = 1 + seed % 3,
	    .data = t->iov,
	    .ndata = 2,
	    .arrival_ms = 1700000000000 + seed,
	    .flags = seed & 3,
	};
}

/* tmsg_free - release what tmsg_make allocated. */
static void tmsg_free(struct tmsg *t)
{
	free(t->data);
}

/* What an append callback saw. */
struct seen {
	int calls;
	int res;
	char id[QUEUE_ID_LEN + 1];
};

/* seen_cb - record an append callback. */
static void seen_cb(void *arg, int res, const char *id)
{
	struct seen *s = arg;

	s->calls++;
	s->res = res;
	snprintf(s->id, sizeof(s->id), "%s", id);
}

/* open_rw - open the test spool read-write over the fake io. */
static struct queue_spool *open_rw(const struct queue_limits *lim)
{
	struct queue_spool *s = NULL;
	char err[256] = "";
	int r = queue_spool_open(&s, dir, lim, &io, err, sizeof(err));

	cr_assert_eq(r, 0, "open: %d %s", r, err);
	return s;
}

/* open_ro - open the test spool read-only. */
static struct queue_spool *open_ro(void)
{
	struct queue_spool *s = NULL;
	char err[256] = "";
	int r = queue_spool_open(&s, dir, NULL, NULL, err, sizeof(err));

	cr_assert_eq(r, 0, "open ro: %d %s", r, err);
	return s;
}

/* append_one - append t, flush and wait until it is durable. */
static void append_one(struct queue_spool *s, struct tmsg *t, char *id)
{
	struct seen sn = {0};

	cr_assert_eq(queue_spool_append(s, &t->in, seen_cb, &sn, id), 0);
	queue_spool_flush(s);
	fake_pump_all(&fio);
	cr_assert_eq(sn.calls, 1);
	cr_assert_eq(sn.res, 0);
	cr_assert_str_eq(sn.id, id);
}

/* check_msg - the spool holds t under id, envelope and data intact. */
static void check_msg(struct queue_spool *s, const char *id,
		      const struct tmsg *t)
{
	const struct queue_msg *m = queue_spool_find(s, id);
	char *buf = NULL;
	size_t len = 0;

	cr_assert_not_null(m, "missing %s", id);
	cr_assert_str_eq(m->id, id);
	cr_assert_str_eq(m->sender, t->sender);
	cr_assert_eq(m->nrcpt, t->in.nrcpt);
	for (size_t i = 0; i < m->nrcpt; i++)
		cr_assert_str_eq(m->rcpts[i], t->rcpts[i]);
	cr_assert_eq(m->arrival_ms, t->in.arrival_ms);
	cr_assert_eq(m->flags, t->in.flags);
	cr_assert_eq(m->size, t->len);
	cr_assert(m->durable);

	cr_assert_eq(queue_spool_read(s, id, &buf, &len), 0);
	cr_assert_eq(len, t->len);
	cr_assert_eq(memcmp(buf, t->data, len), 0);
	free(buf);
}

/* seg_path - path of segment num of the test spool. */
static void seg_path(char *buf, size_t len, unsigned num)
{
	snprintf(buf, len, "%s/seg-%08u.log", dir, num);
}

/* seg_size - size of segment num on disk. */
static off_t seg_size(unsigned num)
{
	char p[256];
	struct stat sb;

	seg_path(p, sizeof(p), num);
	cr_assert_eq(stat(p, &sb), 0, "stat %s", p);
	return sb.st_size;
}

/* slurp - the whole of a file in a malloc'd buffer. */
static char *slurp(const char *p, size_t *len)
{
	FILE *f = fopen(p, "rb");
	char *buf;
	long n;

	cr_assert_not_null(f, "%s", p);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc(n ? (size_t)n : 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* spit - replace a file with len bytes of buf. */
static void spit(const char *p, const void *buf, size_t len)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0640);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

/* ---- CRC-32C ---- */

Test(queue, crc32c_vectors)
{
	unsigned char buf[32];

	cr_assert_eq(queue_crc32c(0, "123456789", 9), 0xE3069283u);
	cr_assert_eq(queue_crc32c_sw(0, "123456789", 9), 0xE3069283u);

	/* RFC 3720, appendix B.4. */
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(queue_crc32c(0, buf, 32), 0x8A9136AAu);
	cr_assert_eq(queue_crc32c_sw(0, buf, 32), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	cr_assert_eq(queue_crc32c(0, buf, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)i;
	cr_assert_eq(queue_crc32c(0, buf, 32), 0x46DD794Eu);
	cr_assert_eq(queue_crc32c_sw(0, buf, 32), 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)(31 - i);
	cr_assert_eq(queue_crc32c(0, buf, 32), 0x113FDB5Cu);
}

Test(queue, crc32c_paths_agree)
{
	unsigned char buf[600];
	unsigned x = 7;

	for (size_t i = 0; i < sizeof(buf); i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (unsigned char)(x >> 16);
	}

	/* Every length and alignment, and continuation at every split. */
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len + off <= 300; len++) {
			uint32_t a = queue_crc32c(0, buf + off, len);
			uint32_t b = queue_crc32c_sw(0, buf + off, len);
			size_t cut = len / 3;
			uint32_t c =
			    queue_crc32c(queue_crc32c(0, buf + off, cut),
					 buf + off + cut, len - cut);

			cr_assert_eq(a, b, "off %zu len %zu", off, len);
			cr_assert_eq(a, c, "off %zu len %zu", off, len);
		}
}

/* ---- append and group commit ---- */

Test(queue, append_flush_callback)
{
	struct queue_spool *s = open_rw(NULL);
	struct seen sn = {0};
	struct queue_stats st;
	struct tmsg t;
	char id[QUEUE_ID_LEN + 1] = "";

	tmsg_make(&t, 1, 1000);
	cr_assert_eq(queue_spool_append(s, &t.in, seen_cb, &sn, id), 0);
	cr_assert_eq(strlen(id), QUEUE_ID_LEN);
	cr_assert_eq(strspn(id, "0123456789ABCDEF"), QUEUE_ID_LEN);
	cr_assert_eq(queue_spool_count(s), 1);
	cr_assert_not(queue_spool_find(s, id)->durable);
	cr_assert_not(queue_spool_idle(s));
	cr_assert_eq(queue_spool_read(s, id, &(char *){0}, &(size_t){0}),
		     -EAGAIN);

	/* Nothing is confirmed before the disk says so. */
	queue_spool_flush(s);
	cr_assert_eq(sn.calls, 0);
	cr_assert_eq(fio.writes, 1);
	fake_pump(&fio);
	cr_assert_eq(sn.calls, 0);
	cr_assert_eq(fio.syncs, 1);
	fake_pump(&fio);
	cr_assert_eq(sn.calls, 1);
	cr_assert_eq(sn.res, 0);
	cr_assert_str_eq(sn.id, id);
	cr_assert(queue_spool_idle(s));

	queue_spool_stats(s, &st);
	cr_assert_eq(st.messages, 1);
	cr_assert_eq(st.batches, 1);
	cr_assert_eq(st.fsyncs, 1);
	cr_assert_eq(st.bytes, (uint64_t)seg_size(1));
	cr_assert_eq(st.failures, 0);
	check_msg(s, id, &t);
	queue_spool_close(s);

	s = open_rw(NULL);
	check_msg(s, id, &t);
	queue_spool_close(s);
	tmsg_free(&t);
}

Test(queue, group_commit)
{
	struct queue_spool *s = open_rw(NULL);
	struct tmsg t[150];
	struct seen sn[150];
	char id[150][QUEUE_ID_LEN + 1];

	memset(sn, 0, sizeof(sn));
	for (int i = 0; i < 150; i++)
		tmsg_make(&t[i], (unsigned)i, 50 + (size_t)i * 7);

	for (int i = 0; i < 100; i++)
		cr_assert_eq(
		    queue_spool_append(s, &t[i].in, seen_cb, &sn[i], id[i]), 0);
	queue_spool_flush(s);
	cr_assert_eq(fio.writes, 1);

	/* Appends and flushes during flight wait for the next batch. */
	for (int i = 100; i < 150; i++) {
		cr_assert_eq(
		    queue_spool_append(s, &t[i].in, seen_cb, &sn[i], id[i]), 0);
		queue_spool_flush(s);
	}
	cr_assert_eq(fio.writes, 1);
	fake_pump(&fio); /* write done: sync goes out */
	cr_assert_eq(fio.syncs, 1);
	cr_assert_eq(fio.writes, 1);
	for (int i = 0; i < 150; i++)
		cr_assert_eq(sn[i].calls, 0);

	fake_pump(&fio); /* sync done: first batch confirmed */
	for (int i = 0; i < 100; i++)
		cr_assert_eq(sn[i].calls, 1);
	for (int i = 100; i < 150; i++)
		cr_assert_eq(sn[i].calls, 0);
	cr_assert_eq(fio.writes, 2, "the next batch starts by itself");

	fake_pump_all(&fio);
	for (int i = 0; i < 150; i++) {
		cr_assert_eq(sn[i].calls, 1);
		cr_assert_eq(sn[i].res, 0);
		cr_assert_str_eq(sn[i].id, id[i]);
	}
	cr_assert_eq(fio.writes, 2);
	cr_assert_eq(fio.syncs, 2);
	cr_assert_eq(fio.max_nq, 1, "one operation in flight at a time");

	/* The second batch begins where the first one ended. */
	cr_assert_eq(queue_spool_find(s, id[100])->offset, fio.wlen[0]);
	cr_assert_eq((uint64_t)seg_size(1), fio.wlen[0] + fio.wlen[1]);
	queue_spool_close(s);

	s = open_rw(NULL);
	cr_assert_eq(queue_spool_count(s), 150);
	for (int i = 0; i < 150; i++)
		check_msg(s, id[i], &t[i]);
	queue_spool_close(s);
	for (int i = 0; i < 150; i++)
		tmsg_free(&t[i]);
}

/* collect_cb - gather IDs in order, stop at the fourth. */
static int collect_cb(void *arg, const struct queue_msg *m)
{
	char(*ids)[QUEUE_ID_LEN + 1] = arg;
	int i = 0;

	while (ids[i][0])
		i++;
	strcpy(ids[i], m->id);
	return i == 3 ? 42 : 0;
}

Test(queue, foreach_order)
{
	struct queue_spool *s = open_rw(NULL);
	char id[6][QUEUE_ID_LEN + 1], got[8][QUEUE_ID_LEN + 1];
	struct tmsg t;

	tmsg_make(&t, 3, 10);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(queue_spool_append(s, &t.in, NULL, NULL, id[i]),
			     0);
	queue_spool_flush(s);
	fake_pump_all(&fio);
	cr_assert_eq(queue_spool_done(s, id[1]), 0);
	queue_spool_flush(s);
	fake_pump_all(&fio);

	/* Oldest first, stopping at the fourth with its return value. */
	memset(got, 0, sizeof(got));
	cr_assert_eq(queue_spool_foreach(s, collect_cb, got), 42);
	cr_assert_str_eq(got[0], id[0]);
	cr_assert_str_eq(got[1], id[2]);
	cr_assert_str_eq(got[2], id[3]);
	cr_assert_str_eq(got[3], id[4]);
	cr_assert_eq(got[4][0], '\0');
	queue_spool_close(s);
	tmsg_free(&t);
}

Test(queue, short_writes)
{
	struct queue_spool *s = open_rw(NULL);
	struct tmsg t[10];
	struct seen sn[10];
	char id[10][QUEUE_ID_LEN + 1];

	memset(sn, 0, sizeof(sn));
	fio.short_max = 37;
	for (int i = 0; i < 10; i++) {
		tmsg_make(&t[i], (unsigned)i + 20, 100);
		cr_assert_eq(
		    queue_spool_append(s, &t[i].in, seen_cb, &sn[i], id[i]), 0);
	}
	queue_spool_flush(s);
	fake_pump_all(&fio);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(sn[i].res, 0);
	cr_assert_gt(fio.writes, 10);
	cr_assert_eq(fio.syncs, 1);
	queue_spool_close(s);

	s = open_rw(NULL);
	cr_assert_eq(queue_spool_count(s), 10);
	for (int i = 0; i < 10; i++)
		check_msg(s, id[i], &t[i]);
	queue_spool_close(s);
	for (int i = 0; i < 10; i++)
		tmsg_free(&t[i]);
}

/*
 * batch_failure - three good messages, then a batch that fails in the way
 * set up by arm(); the good ones must survive and the segment be cut back.
 */
static void batch_failure(void (*arm)(void), int want)
{
	struct queue_spool *s = open_rw(NULL);
	struct tmsg t[6];
	struct seen sn[6];
	struct queue_stats st;
	char id[6][QUEUE_ID_LEN + 1];
	off_t durable;

	memset(sn, 0, sizeof(sn));
	for (int i = 0; i < 6; i++)
		tmsg_make(&t[i], (unsigned)i + 40, 300);
	for (int i = 0; i < 3; i++)
		append_one(s, &t[i], id[i]);
	durable = seg_size(1);

	arm();
	for (int i = 3; i < 5; i++)
		cr_assert_eq(
		    queue_spool_append(s, &t[i].in, seen_cb, &sn[i], id[i]), 0);
	queue_spool_flush(s);
	fake_pump_all(&fio);
	for (int i = 3; i < 5; i++) {
		cr_assert_eq(sn[i].calls, 1);
		cr_assert_eq(sn[i].res, want);
		cr_assert_null(queue_spool_find(s, id[i]));
	}
	cr_assert_eq(queue_spool_count(s), 3);
	cr_assert_eq(seg_size(1), durable, "segment cut back");
	queue_spool_stats(s, &st);
	cr_assert_eq(st.failures, 1);
	cr_assert_eq(st.batches, 3);

	/* One failure does not stop the spool. */
	cr_assert_eq(queue_spool_can_accept(s, 100), 0);
	append_one(s, &t[5], id[5]);
	queue_spool_close(s);

	s = open_rw(NULL);
	cr_assert_eq(queue_spool_count(s), 4);
	for (int i = 0; i < 3; i++)
		check_msg(s, id[i], &t[i]);
	check_msg(s, id[5], &t[5]);
	cr_assert_null(queue_spool_find(s, id[3]));
	cr_assert_null(queue_spool_find(s, id[4]));
	queue_spool_stats(s, &st);
	cr_assert_eq(st.recovered_cut_bytes, 0);
	queue_spool_close(s);
	for (int i = 0; i < 6; i++)
		tmsg_free(&t[i]);
}

/* arm_write_enospc - the next write fails half-way with ENOSPC. */
static void arm_write_enospc(void)
{
	fio.write_err = ENOSPC;
	fio.write_err_n = 1;
}

/* arm_sync_eio - the next fdatasync fails with EIO. */
static void arm_sync_eio(void)
{
	fio.sync_err = EIO;
	fio.sync_err_n = 1;
}

/* arm_submit_eagain - the next pwrite cannot even be submitted. */
static void arm_submit_eagain(void)
{
	fio.submit_err = -EAGAIN;
}

Test(queue, write_enospc)
{
	batch_failure(arm_write_enospc, -ENOSPC);
}

Test(queue, fsync_eio)
{
	batch_failure(arm_sync_eio, -EIO);
}

Test(queue, submit_fails)
{
	batch_failure(arm_submit_eagain, -EAGAIN);
}

Test(queue, repeated_failures_refuse_then_probe)
{
	struct queue_spool *s = open_rw(NULL);
	struct tmsg t;
	struct seen sn = {0};
	char id[QUEUE_ID_LEN + 1];

	tmsg_make(&t, 5, 100);
	fio.sync_err = EIO;
	fio.sync_err_n = 3;
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(queue_spool_can_accept(s, 100), 0, "round %d", i);
		cr_assert_eq(queue_spool_append(s, &t.in, seen_cb, &sn, id), 0);
		queue_spool_flush(s);
		fake_pump_all(&fio);
		cr_assert_eq(sn.res, -EIO);
	}
	cr_assert_eq(queue_spool_can_accept(s, 100), -EIO);
	cr_assert_eq(queue_spool_append(s, &t.in, seen_cb, &sn, id), -EIO);

	/* After the hold a probe goes through and clears the state. */
	usleep(1100 * 1000);
	cr_assert_eq(queue_spool_can_accept(s, 100), 0);
	append_one(s, &t, id);
	fio.sync_err_n = 1;
	cr_assert_eq(queue_spool_append(s, &t.in, seen_cb, &sn, id), 0);
	queue_spool_flush(s);
	fake_pump_all(&fio);
	cr_assert_eq(sn.res, -EIO);
	cr_assert_eq(queue_spool_can_accept(s, 100), 0);
	queue_spool_close(s);
	tmsg_free(&t);
}

/* ---- recovery ---- */

/*
 * nonzero_end - the end of the last octet that is not zero in buf[from,
 * to), or from: what recovery counts as cut (trailing zeros are taken for
 * a zero fill).
 */
static size_t nonzero_end(const char *buf, size_t from, size_t to)
{
	while (to > from && buf[to - 1] == 0)
		to--;
	return to;
}

Test(queue, torn_tail_every_offset)
{
	struct queue_limits lim = {0};
	struct queue_spool *s = open_rw(&lim);
	struct queue_stats st;
	struct tmsg t[4];
	char id[4][QUEUE_ID_LEN + 1], p[256], *pristine, *now;
	size_t plen, nlen;
	uint64_t last;

	for (int i = 0; i < 4; i++)
		tmsg_make(&t[i], (unsigned)i + 60, i == 2 ? 40 : 200);
	for (int i = 0; i < 3; i++)
		append_one(s, &t[i], id[i]);
	last = queue_spool_find(s, id[2])->offset;
	queue_spool_close(s);
	seg_path(p, sizeof(p), 1);
	pristine = slurp(p, &plen);
	cr_assert_gt(plen, last + 16);

	for (size_t cut = last; cut < plen; cut++) {
		spit(p, pristine, cut);
		s = open_rw(&lim);
		queue_spool_stats(s, &st);
		cr_assert_eq(st.recovered_cut_bytes,
			     nonzero_end(pristine, last, cut) - last, "cut %zu",
			     cut);
		cr_assert_eq(queue_spool_count(s), 2, "cut %zu", cut);
		check_msg(s, id[0], &t[0]);
		check_msg(s, id[1], &t[1]);
		cr_assert_null(queue_spool_find(s, id[2]));
		cr_assert_eq((uint64_t)seg_size(1), last, "cut %zu", cut);

		/* The spool goes on from the cut. */
		append_one(s, &t[3], id[3]);
		queue_spool_close(s);
		s = open_rw(&lim);
		queue_spool_stats(s, &st);
		cr_assert_eq(st.recovered_cut_bytes, 0);
		cr_assert_eq(queue_spool_count(s), 3);
		check_msg(s, id[0], &t[0]);
		check_msg(s, id[1], &t[1]);
		check_msg(s, id[3], &t[3]);
		queue_spool_close(s);
	}

	/* The last pass left a spool with the first two records intact. */
	now = slurp(p, &nlen);
	cr_assert_eq(memcmp(now, pristine, last), 0);
	free(now);
	free(pristine);
	for (int i = 0; i < 4; i++)
		tmsg_free(&t[i]);
}

Test(queue, zero_filled_tail_is_the_end)
{
	struct queue_spool *s = open_rw(NULL);
	struct queue_stats st;
	struct tmsg t;
	char id[QUEUE_ID_LEN + 1], p[256], zero[4096] = {0};
	off_t end;
	int fd;

	tmsg_make(&t, 70, 300);
	append_one(s, &t, id);
	queue_spool_close(s);
	end = seg_size(1);
	seg_path(p, sizeof(p), 1);
	fd = open(p, O_WRONLY | O_APPEND);
	cr_assert_eq(write(fd, zero, sizeof(zero)), (ssize_t)sizeof(zero));
	close(fd);

	/* Cut, but not counted: zeros are what a zero fill leaves. */
	s = open_rw(NULL);
	queue_spool_stats(s, &st);
	cr_assert_eq(st.recovered_cut_bytes, 0);
	cr_assert_eq(st.corrupt_records, 0);
	cr_assert_eq(seg_size(1), end);
	check_msg(s, id, &t);
	queue_spool_close(s);
	tmsg_free(&t);
}

/* ---- zero fill ---- */

/* zero_tail - whether the file at p is all zeros from off on. */
static bool zero_tail(const char *p, size_t off)
{
	size_t len;
	char *buf = slurp(p, &len);
	bool zero = nonzero_end(buf, off, len) == off;

	free(buf);
	return zero;
}

Test(queue, zero_fill_then_overwrites)
{
	struct queue_limits lim = {.zero_fill = true};
	struct queue_spool *s = open_rw(&lim);
	struct queue_stats st;
	struct tmsg t[3];
	char id[3][QUEUE_ID_LEN + 1], p[256], *crash;
	size_t clen;
	uint64_t end;
	int writes, syncs;

	for (int i = 0; i < 3; i++)
		tmsg_make(&t[i], (unsigned)i + 300, 2000);
	seg_path(p, sizeof(p), 1);

	/* The first batch: 4 MiB of zeros made durable, then its data. */
	append_one(s, &t[0], id[0]);
	cr_assert_eq(fio.writes, 5, "4 zero writes of 1 MiB and the batch");
	cr_assert_eq(fio.syncs, 2);
	cr_assert_eq(fio.wlen[0], 1u << 20);
	cr_assert_eq(seg_size(1), 4 << 20);

	/* The next one only overwrites zeros. */
	writes = fio.writes;
	syncs = fio.syncs;
	append_one(s, &t[1], id[1]);
	cr_assert_eq(fio.writes, writes + 1);
	cr_assert_eq(fio.syncs, syncs + 1);
	cr_assert_eq(seg_size(1), 4 << 20);
	queue_spool_stats(s, &st);
	end = st.bytes;
	cr_assert(zero_tail(p, end), "data past the end of the batches");

	/* What a crash would leave; a clean close cuts the zeros off. */
	crash = slurp(p, &clen);
	queue_spool_close(s);
	cr_assert_eq((uint64_t)seg_size(1), end);

	/* Recovery from the crash: both messages, nothing counted as cut. */
	spit(p, crash, clen);
	s = open_rw(&lim);
	queue_spool_stats(s, &st);
	cr_assert_eq(st.recovered_cut_bytes, 0);
	cr_assert_eq(st.corrupt_records, 0);
	cr_assert_eq((uint64_t)seg_size(1), end, "zero tail not cut");
	check_msg(s, id[0], &t[0]);
	check_msg(s, id[1], &t[1]);

	/* Appending after recovery fills again and goes on from the end. */
	writes = fio.writes;
	append_one(s, &t[2], id[2]);
	cr_assert_eq(fio.writes, writes + 5);
	cr_assert_eq((uint64_t)seg_size(1), end + (4 << 20));
	queue_spool_close(s);
	s = open_rw(&lim);
	cr_assert_eq(queue_spool_count(s), 3);
	for (int i = 0; i < 3; i++)
		check_msg(s, id[i], &t[i]);
	queue_spool_close(s);
	free(crash);
	for (int i = 0; i < 3; i++)
		tmsg_free(&t[i]);
}

Test(queue, zero_fill_failure_still_writes_the_batch)
{
	struct queue_limits lim = {.zero_fill = true};
	struct queue_spool *s = open_rw(&lim);
	struct queue_stats st;
	struct tmsg t[4];
	char id[4][QUEUE_ID_LEN + 1];
	int writes;

	for (int i = 0; i < 4; i++)
		tmsg_make(&t[i], (unsigned)i + 310, 500);

	/* A failing zero write (half of it on disk): the batch goes on. */
	fio.write_err = ENOSPC;
	fio.write_err_n = 1;
	append_one(s, &t[0], id[0]);
	cr_assert_eq(fio.writes, 2, "the zero write, then the batch");

	/* And no more zero fill in this segment. */
	writes = fio.writes;
	append_one(s, &t[1], id[1]);
	cr_assert_eq(fio.writes, writes + 1);
	queue_spool_close(s);

	/* A failing sync of the zeros, in a fresh spool, the same. */
	s = open_rw(&lim);
	queue_spool_stats(s, &st);
	cr_assert_eq(st.recovered_cut_bytes, 0);
	cr_assert_eq(queue_spool_count(s), 2);
	fio.sync_err = EIO;
	fio.sync_err_n = 1;
	writes = fio.writes;
	append_one(s, &t[2], id[2]);
	cr_assert_eq(fio.writes, writes + 5);
	writes = fio.writes;
	append_one(s, &t[3], id[3]);
	cr_assert_eq(fio.writes, writes + 1);
	queue_spool_close(s);

	s = open_rw(&lim);
	cr_assert_eq(queue_spool_count(s), 4);
	for (int i = 0; i < 4; i++)
		check_msg(s, id[i], &t[i]);
	queue_spool_close(s);
	for (int i = 0; i < 4; i++)
		tmsg_free(&t[i]);
}

Test(queue, zero_fill_across_segments)
{
	struct queue_limits lim = {.segment_size = 10000, .zero_fill = true};
	struct queue_spool *s = open_rw(&lim);
	struct queue_stats st;
	struct tmsg t[12];
	char id[12][QUEUE_ID_LEN + 1], p[256];

	for (int i = 0; i < 12; i++) {
		tmsg_make(&t[i], (unsigned)i + 320, 3000);
		append_one(s, &t[i], id[i]);
	}
	cr_assert_geq(queue_spool_find(s, id[11])->segment, 3);

	/* The zeros stop at segment_size: an older segment is all data. */
	for (unsigned n = 1; n < queue_spool_find(s, id[11])->segment; n++) {
		seg_path(p, sizeof(p), n);
		cr_assert_lt(seg_size(n), 10000 + 3200, "segment %u", n);
		cr_assert_not(zero_tail(p, (size_t)seg_size(n) - 16),
			      "segment %u ends in zeros", n);
	}
	queue_spool_close(s);

	s = open_rw(&lim);
	queue_spool_stats(s, &st);
	cr_assert_eq(st.corrupt_records, 0);
	cr_assert_eq(st.recovered_cut_bytes, 0);
	cr_assert_eq(queue_spool_count(s), 12);
	for (int i = 0; i < 12; i++)
		check_msg(s, id[i], &t[i]);
	queue_spool_close(s);
	for (int i = 0; i < 12; i++)
		tmsg_free(&t[i]);
}

Test(queue, zero_fill_torn_batch)
{
	struct queue_limits lim = {.zero_fill = true};
	struct queue_spool *s = open_rw(&lim);
	struct queue_stats st;
	struct tmsg t[3];
	char id[3][QUEUE_ID_LEN + 1], p[256], *pristine, *img;
	size_t plen, ilen = 65536;
	uint64_t last, end;

	for (int i = 0; i < 3; i++)
		tmsg_make(&t[i], (unsigned)i + 330, 300);
	for (int i = 0; i < 3; i++)
		append_one(s, &t[i], id[i]);
	last = queue_spool_find(s, id[2])->offset;
	queue_spool_stats(s, &st);
	end = st.bytes;
	queue_spool_close(s);
	seg_path(p, sizeof(p), 1);
	pristine = slurp(p, &plen);
	cr_assert_eq(plen, end);

	/* The last batch torn anywhere, zeros behind it, as after a crash. */
	img = calloc(1, ilen);
	cr_assert_not_null(img);
	for (size_t cut = last; cut < end; cut++) {
		memcpy(img, pristine, cut);
		memset(img + cut, 0, ilen - cut);
		spit(p, img, ilen);
		s = open_rw(&lim);
		queue_spool_stats(s, &st);
		cr_assert_eq(st.recovered_cut_bytes,
			     nonzero_end(pristine, last, cut) - last, "cut %zu",
			     cut);
		cr_assert_eq(st.corrupt_records, 0);
		cr_assert_eq(queue_spool_count(s), 2, "cut %zu", cut);
		check_msg(s, id[0], &t[0]);
		check_msg(s, id[1], &t[1]);
		cr_assert_eq((uint64_t)seg_size(1), last, "cut %zu", cut);
		queue_spool_close(s);
	}
	free(img);
	free(pristine);
	for (int i = 0; i < 3; i++)
		tmsg_free(&t[i]);
}

Test(queue, corrupt_record_in_older_segment)
{
	struct queue_limits lim = {.segment_size = 1};
	struct queue_spool *s = open_rw(&lim);
	struct queue_stats st;
	struct tmsg t[5];
	char id[5][QUEUE_ID_LEN + 1], p[256], *buf;
	size_t len;
	uint64_t off2;

	for (int i = 0; i < 5; i++)
		tmsg_make(&t[i], (unsigned)i + 80, 120);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(queue_spool_append(s, &t[i].in, NULL, NULL, id[i]),
			     0);
	queue_spool_flush(s);
	fake_pump_all(&fio);
	append_one(s, &t[3], id[3]);
	cr_assert_eq(queue_spool_find(s, id[0])->segment, 1);
	cr_assert_eq(queue_spool_find(s, id[2])->segment, 1);
	cr_assert_eq(queue_spool_find(s, id[3])->segment, 2);
	off2 = queue_spool_find(s, id[1])->offset;
	queue_spool_close(s);

	/* Flip one byte inside the data of the middle record. */
	seg_path(p, sizeof(p), 1);
	buf = slurp(p, &len);
	buf[off2 + 100] ^= 0x20;
	spit(p, buf, len);

	/* Only the damaged record is lost: the one after it is read. */
	s = open_rw(&lim);
	queue_spool_stats(s, &st);
	cr_assert_eq(st.corrupt_records, 1);
	cr_assert_eq(st.recovered_cut_bytes, 0);
	cr_assert_eq(queue_spool_count(s), 3);
	check_msg(s, id[0], &t[0]);
	cr_assert_null(queue_spool_find(s, id[1]));
	check_msg(s, id[2], &t[2]);
	check_msg(s, id[3], &t[3]);
	cr_assert_eq((size_t)seg_size(1), len, "older segment left alone");

	append_one(s, &t[4], id[4]);
	queue_spool_close(s);
	s = open_rw(&lim);
	cr_assert_eq(queue_spool_count(s), 4);
	check_msg(s, id[4], &t[4]);
	queue_spool_close(s);
	free(buf);
	for (int i = 0; i < 5; i++)
		tmsg_free(&t[i]);
}

Test(queue, corrupt_payload_in_newest_segment)
{
	struct queue_spool *s = open_rw(NULL);
	struct queue_stats st;
	struct tmsg t[5];
	char id[5][QUEUE_ID_LEN + 1], p[256], *buf;
	size_t len;
	uint64_t off1, off2;

	for (int i = 0; i < 5; i++)
		tmsg_make(&t[i], (unsigned)i + 90, 150);
	for (int i = 0; i < 4; i++)
		append_one(s, &t[i], id[i]);
	off1 = queue_spool_find(s, id[1])->offset;
	off2 = queue_spool_find(s, id[2])->offset;
	queue_spool_close(s);

	/*
	 * A flipped bit in the data of the second of four confirmed
	 * messages: the two after it were confirmed too, and stay.
	 */
	seg_path(p, sizeof(p), 1);
	buf = slurp(p, &len);
	buf[off1 + 100] ^= 0x04;
	spit(p, buf, len);

	s = open_rw(NULL);
	queue_spool_stats(s, &st);
	cr_assert_eq(st.corrupt_records, 1);
	cr_assert_eq(st.recovered_cut_bytes, 0);
	cr_assert_eq(queue_spool_count(s), 3);
	check_msg(s, id[0], &t[0]);
	cr_assert_null(queue_spool_find(s, id[1]));
	check_msg(s, id[2], &t[2]);
	check_msg(s, id[3], &t[3]);

	/* The spool goes on behind them, and reads the same again. */
	append_one(s, &t[4], id[4]);
	queue_spool_close(s);
	s = open_rw(NULL);
	queue_spool_stats(s, &st);
	cr_assert_eq(st.corrupt_records, 1);
	cr_assert_eq(queue_spool_count(s), 4);
	check_msg(s, id[2], &t[2]);
	check_msg(s, id[4], &t[4]);
	queue_spool_close(s);

	/*
	 * With the header of the record after it damaged too (its magic),
	 * nothing says where a valid record starts again: from the damaged
	 * payload on, the segment is cut as a torn tail is (the XXX in
	 * queue_seg_recover).
	 */
	buf[off2] ^= 0x01;
	spit(p, buf, len);
	s = open_rw(NULL);
	cr_assert_eq(queue_spool_count(s), 1);
	check_msg(s, id[0], &t[0]);
	cr_assert_eq((uint64_t)seg_size(1), off1);
	queue_spool_close(s);
	free(buf);
	for (int i = 0; i < 5; i++)
		tmsg_free(&t[i]);
}

Test(queue, damaged_header_is_not_trusted)
{
	struct queue_spool *s = open_rw(NULL);
	struct tmsg t[3];
	char id[3][QUEUE_ID_LEN + 1], p[256], *buf;
	size_t len;
	uint64_t off1;

	for (int i = 0; i < 3; i++)
		tmsg_make(&t[i], (unsigned)i + 110, 150);
	for (int i = 0; i < 3; i++)
		append_one(s, &t[i], id[i]);
	off1 = queue_spool_find(s, id[1])->offset;
	queue_spool_close(s);

	/*
	 * A reserved octet of the second record's header is not zero: its
	 * checksum fails and its length is not believed, so the records
	 * from there on go as a torn tail would.
	 */
	seg_path(p, sizeof(p), 1);
	buf = slurp(p, &len);
	buf[off1 + 6] ^= 0x10;
	spit(p, buf, len);
	s = open_rw(NULL);
	cr_assert_eq(queue_spool_count(s), 1);
	check_msg(s, id[0], &t[0]);
	cr_assert_eq((uint64_t)seg_size(1), off1);
	queue_spool_close(s);
	free(buf);
	for (int i = 0; i < 3; i++)
		tmsg_free(&t[i]);
}

/* put_record - append a raw record of any type with a good checksum. */
static void put_record(unsigned num, unsigned type, const void *pl, size_t len)
{
	unsigned char h[16];
	char p[256];
	uint32_t crc;
	int fd;

	memcpy(h, "WXR1", 4);
	h[4] = (unsigned char)type;
	h[5] = h[6] = h[7] = 0;
	for (int i = 0; i < 4; i++)
		h[8 + i] = (unsigned char)(len >> (8 * i));
	crc = queue_crc32c(queue_crc32c(0, h + 4, 8), pl, len);
	for (int i = 0; i < 4; i++)
		h[12 + i] = (unsigned char)(crc >> (8 * i));

	seg_path(p, sizeof(p), num);
	fd = open(p, O_WRONLY | O_APPEND);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, h, 16), 16);
	cr_assert_eq(write(fd, pl, len), (ssize_t)len);
	close(fd);
}

Test(queue, unknown_and_malformed_records_skipped)
{
	struct queue_spool *s = open_rw(NULL);
	struct queue_stats st;
	struct tmsg t[2];
	char id[2][QUEUE_ID_LEN + 1];

	tmsg_make(&t[0], 90, 100);
	tmsg_make(&t[1], 91, 100);
	append_one(s, &t[0], id[0]);
	queue_spool_close(s);

	/* A future record type, and a MSG whose lengths do not add up. */
	put_record(1, 9, "schedule", 8);
	put_record(1, QUEUE_REC_MSG, "0123456789ABCDEF-too-short", 26);

	s = open_rw(NULL);
	queue_spool_stats(s, &st);
	cr_assert_eq(st.skipped_records, 1);
	cr_assert_eq(st.corrupt_records, 1);
	cr_assert_eq(st.recovered_cut_bytes, 0);
	append_one(s, &t[1], id[1]);
	queue_spool_close(s);

	s = open_rw(NULL);
	cr_assert_eq(queue_spool_count(s), 2);
	check_msg(s, id[0], &t[0]);
	check_msg(s, id[1], &t[1]);
	queue_spool_close(s);
	tmsg_free(&t[0]);
	tmsg_free(&t[1]);
}

Test(queue, done_records)
{
	struct queue_spool *s = open_rw(NULL);
	struct tmsg t[4];
	struct seen sn = {0};
	char id[4][QUEUE_ID_LEN + 1];

	for (int i = 0; i < 4; i++)
		tmsg_make(&t[i], (unsigned)i + 100, 64);
	for (int i = 0; i < 3; i++)
		append_one(s, &t[i], id[i]);

	cr_assert_eq(queue_spool_done(s, id[1]), 0);
	cr_assert_null(queue_spool_find(s, id[1]));
	cr_assert_eq(queue_spool_count(s), 2);
	cr_assert_eq(queue_spool_done(s, id[1]), -ENOENT);
	cr_assert_eq(queue_spool_done(s, "not-an-id"), -ENOENT);
	cr_assert_eq(queue_spool_done(s, "0000000000000000"), -ENOENT);

	/* Done before its own batch was written: still confirmed. */
	cr_assert_eq(queue_spool_append(s, &t[3].in, seen_cb, &sn, id[3]), 0);
	cr_assert_eq(queue_spool_done(s, id[3]), 0);
	queue_spool_flush(s);
	fake_pump_all(&fio);
	cr_assert_eq(sn.calls, 1);
	cr_assert_eq(sn.res, 0);
	queue_spool_close(s);

	s = open_rw(NULL);
	cr_assert_eq(queue_spool_count(s), 2);
	check_msg(s, id[0], &t[0]);
	check_msg(s, id[2], &t[2]);
	cr_assert_null(queue_spool_find(s, id[1]));
	cr_assert_null(queue_spool_find(s, id[3]));
	queue_spool_close(s);
	for (int i = 0; i < 4; i++)
		tmsg_free(&t[i]);
}

Test(queue, segment_rollover)
{
	struct queue_limits lim = {.segment_size = 1000};
	struct queue_spool *s = open_rw(&lim);
	struct tmsg t[20];
	char id[20][QUEUE_ID_LEN + 1];
	uint32_t seg[20];
	unsigned nseg;

	for (int i = 0; i < 20; i++) {
		tmsg_make(&t[i], (unsigned)i + 200, 250);
		append_one(s, &t[i], id[i]);
		seg[i] = queue_spool_find(s, id[i])->segment;
		cr_assert_geq(seg[i], i ? seg[i - 1] : 1);
	}
	nseg = seg[19];
	cr_assert_geq(nseg, 5);

	/* Each segment stops within one batch past the limit. */
	for (unsigned n = 1; n <= nseg; n++) {
		cr_assert_gt(seg_size(n), 0);
		cr_assert_lt(seg_size(n), 1000 + 700);
	}
	queue_spool_close(s);

	s = open_rw(&lim);
	cr_assert_eq(queue_spool_count(s), 20);
	for (int i = 0; i < 20; i++) {
		check_msg(s, id[i], &t[i]);
		cr_assert_eq(queue_spool_find(s, id[i])->segment, seg[i]);
	}
	queue_spool_close(s);
	for (int i = 0; i < 20; i++)
		tmsg_free(&t[i]);
}

Test(queue, ids_unique_increasing_across_reopen)
{
	struct queue_spool *s = open_rw(NULL);
	static char id[1001][QUEUE_ID_LEN + 1];
	struct tmsg t;

	tmsg_make(&t, 300, 8);
	for (int i = 0; i < 500; i++)
		cr_assert_eq(queue_spool_append(s, &t.in, NULL, NULL, id[i]),
			     0);
	queue_spool_flush(s);
	fake_pump_all(&fio);

	/* The newest message is done: its ID must still not come back. */
	cr_assert_eq(queue_spool_done(s, id[499]), 0);
	queue_spool_flush(s);
	fake_pump_all(&fio);
	queue_spool_close(s);

	/* A DONE for an ID far in the future: later IDs must pass it too. */
	put_record(1, QUEUE_REC_DONE, "7FFFFFFFFFF00000", QUEUE_ID_LEN);
	strcpy(id[500], "7FFFFFFFFFF00000");

	s = open_rw(NULL);
	for (int i = 501; i < 1001; i++)
		cr_assert_eq(queue_spool_append(s, &t.in, NULL, NULL, id[i]),
			     0);
	for (int i = 0; i < 1001; i++) {
		cr_assert_eq(strspn(id[i], "0123456789ABCDEF"), QUEUE_ID_LEN);
		if (i)
			cr_assert_lt(strcmp(id[i - 1], id[i]), 0, "%d", i);
	}
	queue_spool_close(s);
	tmsg_free(&t);
}

/* dir_image - the names and contents of every file, in one string. */
static char *dir_image(void)
{
	char *img = NULL, p[300], *buf;
	size_t ilen = 0, len;
	FILE *out = open_memstream(&img, &ilen);

	for (unsigned n = 1; n < 10; n++) {
		seg_path(p, sizeof(p), n);
		if (access(p, F_OK) < 0)
			continue;
		buf = slurp(p, &len);
		fprintf(out, "%u:%zu:", n, len);
		fwrite(buf, 1, len, out);
		free(buf);
	}
	fclose(out);
	return img;
}

Test(queue, read_only_changes_nothing)
{
	struct queue_spool *s = open_rw(NULL);
	struct queue_stats st;
	struct tmsg t[3];
	char id[3][QUEUE_ID_LEN + 1], p[256], *before, *after;
	struct stat sb;
	int fd;

	for (int i = 0; i < 3; i++) {
		tmsg_make(&t[i], (unsigned)i + 400, 500);
		append_one(s, &t[i], id[i]);
	}
	queue_spool_close(s);
	seg_path(p, sizeof(p), 1);
	fd = open(p, O_WRONLY | O_APPEND);
	cr_assert_eq(write(fd, "WXR1\x01torn", 9), 9);
	close(fd);
	before = dir_image();

	s = open_ro();
	queue_spool_stats(s, &st);
	cr_assert_eq(st.recovered_cut_bytes, 9);
	cr_assert_eq(queue_spool_count(s), 3);
	for (int i = 0; i < 3; i++)
		check_msg(s, id[i], &t[i]);
	cr_assert_eq(queue_spool_append(s, &t[0].in, NULL, NULL, id[0]),
		     -EROFS);
	cr_assert_eq(queue_spool_done(s, id[0]), -EROFS);
	cr_assert_eq(queue_spool_can_accept(s, 1), -EROFS);
	queue_spool_flush(s);
	cr_assert(queue_spool_idle(s));
	queue_spool_close(s);

	after = dir_image();
	cr_assert_str_eq(after, before);
	free(before);
	free(after);

	/* A read-only open creates nothing. */
	snprintf(dir, sizeof(dir), "%s/absent", tmp);
	cr_assert_eq(queue_spool_open(&s, dir, NULL, NULL, NULL, 0), -ENOENT);
	cr_assert_eq(stat(dir, &sb), -1);
	for (int i = 0; i < 3; i++)
		tmsg_free(&t[i]);
}

Test(queue, second_writer_refused)
{
	struct queue_spool *s = open_rw(NULL), *s2 = NULL, *ro;
	char err[256] = "";

	cr_assert_eq(queue_spool_open(&s2, dir, NULL, &io, err, sizeof(err)),
		     -EBUSY);
	cr_assert_neq(err[0], '\0');
	ro = open_ro();
	queue_spool_close(ro);
	queue_spool_close(s);
	s = open_rw(NULL);
	queue_spool_close(s);
}

Test(queue, can_accept_max_size)
{
	struct queue_limits lim = {.max_size = 3000};
	struct queue_spool *s = open_rw(&lim);
	struct tmsg t;
	char id[20][QUEUE_ID_LEN + 1];
	int n = 0, r;

	tmsg_make(&t, 500, 400);
	cr_assert_eq(queue_spool_can_accept(s, 3000), 0);
	cr_assert_eq(queue_spool_can_accept(s, 3001), -ENOSPC);

	/* Pending messages count as much as durable ones. */
	while ((r = queue_spool_append(s, &t.in, NULL, NULL, id[n])) == 0)
		cr_assert_lt(++n, 20);
	cr_assert_eq(r, -ENOSPC);
	cr_assert_geq(n, 5);
	cr_assert_leq(n, 7);
	cr_assert_eq(queue_spool_can_accept(s, 400), -ENOSPC);
	queue_spool_flush(s);
	fake_pump_all(&fio);
	cr_assert_eq(queue_spool_can_accept(s, 400), -ENOSPC);

	cr_assert_eq(queue_spool_done(s, id[0]), 0);
	cr_assert_eq(queue_spool_can_accept(s, 400), 0);
	queue_spool_flush(s);
	fake_pump_all(&fio);
	queue_spool_close(s);

	/* Space recovered on open counts too. */
	s = open_rw(&lim);
	cr_assert_eq(queue_spool_count(s), (size_t)n - 1);
	cr_assert_eq(queue_spool_can_accept(s, 400), 0);
	cr_assert_eq(queue_spool_can_accept(s, 1000), -ENOSPC);
	queue_spool_close(s);
	tmsg_free(&t);
}

Test(queue, can_accept_minfree)
{
	struct queue_limits lim = {.minfree = UINT64_MAX / 2};
	struct queue_spool *s = open_rw(&lim);
	struct tmsg t;
	char id[QUEUE_ID_LEN + 1];

	tmsg_make(&t, 600, 10);
	cr_assert_eq(queue_spool_can_accept(s, 1), -ENOSPC);
	cr_assert_eq(queue_spool_append(s, &t.in, NULL, NULL, id), -ENOSPC);
	queue_spool_close(s);

	lim.minfree = 1024;
	s = open_rw(&lim);
	cr_assert_eq(queue_spool_can_accept(s, 1), 0);
	queue_spool_close(s);
	tmsg_free(&t);
}

Test(queue, read_byte_for_byte)
{
	struct queue_spool *s = open_rw(NULL);
	size_t sizes[] = {0, 1, 2, 7, 8, 9, 4095, 65536, 3u << 20};
	struct tmsg t[9];
	char id[9][QUEUE_ID_LEN + 1], p[256], *buf;
	size_t len;
	uint64_t off;

	for (int i = 0; i < 9; i++) {
		tmsg_make(&t[i], (unsigned)i + 700, sizes[i]);
		append_one(s, &t[i], id[i]);
		check_msg(s, id[i], &t[i]);
	}
	cr_assert_eq(queue_spool_read(s, "FFFFFFFFFFFFFFFF", &buf, &len),
		     -ENOENT);
	queue_spool_close(s);

	/* Large records cross the recovery read-ahead window. */
	s = open_rw(NULL);
	for (int i = 0; i < 9; i++)
		check_msg(s, id[i], &t[i]);

	/* A byte changed on disk after open is caught by the checksum. */
	off = queue_spool_find(s, id[6])->offset;
	seg_path(p, sizeof(p), 1);
	buf = slurp(p, &len);
	buf[off + 200] ^= 1;
	spit(p, buf, len);
	free(buf);
	cr_assert_eq(queue_spool_read(s, id[6], &buf, &len), -EIO);
	check_msg(s, id[5], &t[5]);
	queue_spool_close(s);
	for (int i = 0; i < 9; i++)
		tmsg_free(&t[i]);
}

Test(queue, append_rejects_bad_input)
{
	struct queue_spool *s = open_rw(NULL);
	struct tmsg t;
	char id[QUEUE_ID_LEN + 1];
	struct queue_msg_in in;

	tmsg_make(&t, 800, 10);
	in = t.in;
	in.nrcpt = 0;
	cr_assert_eq(queue_spool_append(s, &in, NULL, NULL, id), -EINVAL);
	in = t.in;
	in.sender = NULL;
	cr_assert_eq(queue_spool_append(s, &in, NULL, NULL, id), -EINVAL);
	cr_assert_eq(queue_spool_count(s), 0);
	cr_assert(queue_spool_idle(s));

	/* The null sender is a sender. */
	in = t.in;
	strcpy(t.sender, "");
	append_one(s, &t, id);
	check_msg(s, id, &t);
	queue_spool_close(s);
	tmsg_free(&t);
}

/* ---- delivery state ---- */

/* settle - flush and complete batches until reclaiming has nothing left. */
static void settle(struct queue_spool *s)
{
	for (int i = 0; i < 32; i++) {
		queue_spool_flush(s);
		fake_pump_all(&fio);
	}
	cr_assert(queue_spool_idle(s));
}

/* count_segs - number of segment files in the test spool. */
static int count_segs(void)
{
	char p[256];
	int n = 0;

	for (unsigned k = 1; k < 1000; k++) {
		seg_path(p, sizeof(p), k);
		n += access(p, F_OK) == 0;
	}
	return n;
}

/* seg_exists - whether segment num is on disk. */
static bool seg_exists(unsigned num)
{
	char p[256];

	seg_path(p, sizeof(p), num);
	return access(p, F_OK) == 0;
}

/* State a test expects of one message. */
struct tstate {
	uint8_t done[3];
	int64_t next_ms;
	uint32_t attempts;
	bool held;
};

/* check_state - the message id has exactly the state w. */
static void check_state(struct queue_spool *s, const char *id,
			const struct tstate *w)
{
	const struct queue_msg *m = queue_spool_find(s, id);
	size_t pending = 0;

	cr_assert_not_null(m, "missing %s", id);
	for (size_t i = 0; i < m->nrcpt; i++) {
		cr_assert_eq(m->rcpt_done[i], w->done[i], "%s rcpt %zu", id, i);
		pending += !w->done[i];
	}
	cr_assert_eq(m->npending, pending, "%s", id);
	cr_assert_eq(m->next_ms, w->next_ms, "%s", id);
	cr_assert_eq(m->attempts, w->attempts, "%s", id);
	cr_assert_eq(m->held, w->held, "%s", id);
}

/* count_id_cb - count the messages foreach shows with the ID in arg. */
static int count_id_cb(void *arg, const struct queue_msg *m)
{
	struct {
		const char *id;
		int n;
	} *c = arg;

	c->n += strcmp(m->id, c->id) == 0;
	return 0;
}

/* foreach_count - how many times foreach shows id. */
static int foreach_count(struct queue_spool *s, const char *id)
{
	struct {
		const char *id;
		int n;
	} c = {id, 0};

	queue_spool_foreach(s, count_id_cb, &c);
	return c.n;
}

Test(queue, state_survives_reopen)
{
	struct queue_spool *s = open_rw(NULL);
	struct tmsg t[2];
	char id[2][QUEUE_ID_LEN + 1];
	struct tstate w[2] = {{{1, 0, 1}, 1700000123456, 3, true},
			      {{0, 0, 0}, 0, 0, false}};
	size_t two[2] = {2, 0}, bad[2] = {1, 3};

	tmsg_make(&t[0], 2, 100); /* three recipients */
	tmsg_make(&t[1], 5, 100);
	append_one(s, &t[0], id[0]);
	append_one(s, &t[1], id[1]);
	check_state(s, id[0], &w[1]);

	/* A bad index changes nothing; the rest applies at once. */
	cr_assert_eq(queue_spool_rcpt_done(s, id[0], bad, 2), -EINVAL);
	check_state(s, id[0], &w[1]);
	cr_assert_eq(queue_spool_rcpt_done(s, id[0], two, 2), 0);
	cr_assert_eq(queue_spool_rcpt_done(s, id[0], two, 1), 0);
	cr_assert_eq(queue_spool_defer(s, id[0], 99, 1), 0);
	cr_assert_eq(queue_spool_defer(s, id[0], 1700000123456, 3), 0);
	cr_assert_eq(queue_spool_hold(s, id[0], true), 0);
	cr_assert_eq(queue_spool_hold(s, id[1], true), 0);
	cr_assert_eq(queue_spool_hold(s, id[1], false), 0);
	check_state(s, id[0], &w[0]);
	check_state(s, id[1], &w[1]);
	cr_assert_eq(queue_spool_rcpt_done(s, "0000000000000000", two, 1),
		     -ENOENT);
	cr_assert_eq(queue_spool_defer(s, "nope", 1, 1), -ENOENT);
	cr_assert_eq(queue_spool_hold(s, "0000000000000000", true), -ENOENT);

	/* The records ride the next batch; none has a callback. */
	cr_assert_not(queue_spool_idle(s));
	settle(s);
	queue_spool_close(s);

	s = open_ro();
	check_state(s, id[0], &w[0]);
	check_state(s, id[1], &w[1]);
	cr_assert_eq(queue_spool_hold(s, id[0], false), -EROFS);
	cr_assert_eq(queue_spool_defer(s, id[0], 1, 1), -EROFS);
	cr_assert_eq(queue_spool_rcpt_done(s, id[0], two, 1), -EROFS);
	queue_spool_close(s);

	s = open_rw(NULL);
	check_state(s, id[0], &w[0]);
	check_state(s, id[1], &w[1]);
	check_msg(s, id[0], &t[0]);

	/* All recipients done: still live until queue_spool_done. */
	cr_assert_eq(queue_spool_rcpt_done(s, id[0], (size_t[]){1}, 1), 0);
	cr_assert_eq(queue_spool_find(s, id[0])->npending, 0);
	settle(s);
	queue_spool_close(s);
	s = open_rw(NULL);
	cr_assert_eq(queue_spool_find(s, id[0])->npending, 0);
	cr_assert_eq(queue_spool_count(s), 2);
	queue_spool_close(s);
	tmsg_free(&t[0]);
	tmsg_free(&t[1]);
}

Test(queue, torn_rcpt_record_cut)
{
	struct queue_spool *s = open_rw(NULL);
	struct queue_stats st;
	struct tmsg t;
	char id[QUEUE_ID_LEN + 1], p[256];
	struct tstate w = {{1, 0, 0}, 0, 0, false};
	off_t before;

	tmsg_make(&t, 2, 200);
	append_one(s, &t, id);
	cr_assert_eq(queue_spool_rcpt_done(s, id, (size_t[]){0}, 1), 0);
	settle(s);
	before = seg_size(1);
	cr_assert_eq(queue_spool_rcpt_done(s, id, (size_t[]){1, 2}, 2), 0);
	settle(s);
	queue_spool_close(s);

	/* Cut the last RCPT record in its middle. */
	seg_path(p, sizeof(p), 1);
	cr_assert_gt(seg_size(1), before + 10);
	cr_assert_eq(truncate(p, seg_size(1) - 5), 0);

	s = open_rw(NULL);
	queue_spool_stats(s, &st);
	cr_assert_eq(seg_size(1), before);
	cr_assert_gt(st.recovered_cut_bytes, 0);
	check_state(s, id, &w);
	check_msg(s, id, &t);
	queue_spool_close(s);
	tmsg_free(&t);
}

Test(queue, segments_deleted_when_done)
{
	struct queue_limits lim = {.segment_size = 1000};
	struct queue_spool *s = open_rw(&lim);
	struct queue_stats st;
	struct tmsg t;
	char id[20][QUEUE_ID_LEN + 1], next[QUEUE_ID_LEN + 1];
	int nseg;

	tmsg_make(&t, 400, 250);
	for (int i = 0; i < 20; i++)
		append_one(s, &t, id[i]);
	nseg = count_segs();
	cr_assert_geq(nseg, 5);

	/* Nothing goes while anything in it is live. */
	for (int i = 1; i < 20; i++)
		cr_assert_eq(queue_spool_done(s, id[i]), 0);
	settle(s);
	cr_assert_eq(count_segs(), nseg);
	queue_spool_stats(s, &st);
	cr_assert_eq(st.segments_deleted, 0);

	/* The first message done: everything but the newest can go. */
	cr_assert_eq(queue_spool_done(s, id[0]), 0);
	settle(s);
	queue_spool_stats(s, &st);
	cr_assert_eq(count_segs(), 1);
	cr_assert_geq(st.segments_deleted, (uint64_t)nseg - 1);
	cr_assert_eq(st.copied_forward, 0);
	queue_spool_close(s);

	s = open_rw(&lim);
	cr_assert_eq(queue_spool_count(s), 0);
	append_one(s, &t, next);
	for (int i = 0; i < 20; i++)
		cr_assert_lt(strcmp(id[i], next), 0);
	queue_spool_close(s);
	tmsg_free(&t);
}

/* fill_until - append and finish filler messages until segment num exists. */
static void fill_until(struct queue_spool *s, unsigned num)
{
	struct tmsg b;
	char id[QUEUE_ID_LEN + 1];

	tmsg_make(&b, 501, 300);
	for (int i = 0; i < 100 && !seg_exists(num); i++) {
		append_one(s, &b, id);
		cr_assert_eq(queue_spool_done(s, id), 0);
		queue_spool_flush(s);
		fake_pump_all(&fio);
	}
	tmsg_free(&b);
	cr_assert(seg_exists(num));
}

/*
 * churn_until - append and finish filler messages one batch at a time
 * until a's message has left segment 1 and, if gone is set, segment 1 is
 * deleted. Returns the number of rounds it took.
 */
static int churn_until(struct queue_spool *s, const char *a, bool gone)
{
	struct tmsg b;
	char id[QUEUE_ID_LEN + 1];
	int i;

	tmsg_make(&b, 500, 300);
	for (i = 0; i < 200; i++) {
		if (queue_spool_find(s, a)->segment != 1 &&
		    (!gone || !seg_exists(1)))
			break;
		append_one(s, &b, id);
		cr_assert_eq(queue_spool_done(s, id), 0);
		queue_spool_flush(s);
		fake_pump_all(&fio);
	}
	tmsg_free(&b);
	cr_assert_lt(i, 200, "never copied forward");
	return i;
}

Test(queue, long_lived_message_copied_forward)
{
	struct queue_limits lim = {.segment_size = 2000};
	struct queue_spool *s = open_rw(&lim);
	struct queue_stats st;
	struct tmsg t;
	char a[QUEUE_ID_LEN + 1];
	struct tstate w = {{0, 1, 0}, 1700000999000, 7, true};

	tmsg_make(&t, 2, 100);
	append_one(s, &t, a);
	cr_assert_eq(queue_spool_rcpt_done(s, a, (size_t[]){1}, 1), 0);
	cr_assert_eq(queue_spool_defer(s, a, w.next_ms, w.attempts), 0);
	cr_assert_eq(queue_spool_hold(s, a, true), 0);

	churn_until(s, a, true);
	queue_spool_stats(s, &st);
	cr_assert_eq(st.copied_forward, 1);
	cr_assert_geq(st.segments_deleted, 1);
	cr_assert_gt(queue_spool_find(s, a)->segment, 2);
	check_msg(s, a, &t);
	check_state(s, a, &w);

	/* Behind the copy, later segments go too once they are done. */
	settle(s);
	cr_assert_leq(count_segs(), 3);
	queue_spool_close(s);

	s = open_rw(&lim);
	cr_assert_eq(queue_spool_count(s), 1);
	cr_assert_eq(foreach_count(s, a), 1);
	check_msg(s, a, &t);
	check_state(s, a, &w);
	queue_spool_close(s);
	tmsg_free(&t);
}

Test(queue, crash_between_copy_and_delete)
{
	struct queue_limits lim = {.segment_size = 2000};
	struct queue_spool *s = open_rw(&lim);
	struct queue_stats st;
	struct tmsg t[2];
	char a[2][QUEUE_ID_LEN + 1], p[256], *seg1;
	struct tstate w[2] = {{{1, 0, 1}, 1700000555000, 2, false},
			      {{0, 0, 0}, 0, 0, true}};
	size_t len;

	tmsg_make(&t[0], 2, 60);
	tmsg_make(&t[1], 3, 60);
	append_one(s, &t[0], a[0]);
	append_one(s, &t[1], a[1]);
	cr_assert_eq(queue_spool_rcpt_done(s, a[0], (size_t[]){0, 2}, 2), 0);
	cr_assert_eq(queue_spool_defer(s, a[0], w[0].next_ms, 2), 0);
	cr_assert_eq(queue_spool_hold(s, a[1], true), 0);

	/* Segment 1 as it is once closed; then copy forward and delete. */
	fill_until(s, 2);
	seg_path(p, sizeof(p), 1);
	seg1 = slurp(p, &len);
	churn_until(s, a[0], true);
	cr_assert_eq(queue_spool_find(s, a[1])->segment,
		     queue_spool_find(s, a[0])->segment);
	queue_spool_stats(s, &st);
	cr_assert_eq(st.segments_deleted, 1);
	cr_assert_eq(st.copied_forward, 2);
	queue_spool_close(s);

	/* A crash before the unlink reached the disk brings it back. */
	spit(p, seg1, len);
	free(seg1);
	s = open_rw(&lim);
	cr_assert_eq(queue_spool_count(s), 2);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(foreach_count(s, a[i]), 1);
		cr_assert_neq(queue_spool_find(s, a[i])->segment, 1);
		check_msg(s, a[i], &t[i]);
		check_state(s, a[i], &w[i]);
	}

	/* Later state still applies to the copy; segment 1 goes again. */
	cr_assert_eq(queue_spool_hold(s, a[1], false), 0);
	w[1].held = false;
	settle(s);
	cr_assert_not(seg_exists(1));
	queue_spool_close(s);
	s = open_ro();
	for (int i = 0; i < 2; i++)
		check_state(s, a[i], &w[i]);
	queue_spool_close(s);
	tmsg_free(&t[0]);
	tmsg_free(&t[1]);
}

Test(queue, ids_unique_after_segments_deleted)
{
	struct queue_limits lim = {.segment_size = 2000};
	struct queue_spool *s = open_rw(&lim);
	struct tmsg t;
	char a[QUEUE_ID_LEN + 1], x[QUEUE_ID_LEN + 1], y[QUEUE_ID_LEN + 1];
	int i;

	tmsg_make(&t, 2, 100);
	append_one(s, &t, a);
	queue_spool_close(s);

	/* An ID far ahead of the clock, then a message above it, done. */
	put_record(1, QUEUE_REC_DONE, "7FFFFFFFFFF00000", QUEUE_ID_LEN);
	s = open_rw(&lim);
	append_one(s, &t, x);
	cr_assert_gt(strcmp(x, "7FFFFFFFFFF00000"), 0);
	cr_assert_eq(queue_spool_done(s, x), 0);

	/* Only records about a (a smaller ID) follow, until 1 is gone. */
	for (i = 0; i < 500 && seg_exists(1); i++) {
		cr_assert_eq(queue_spool_defer(s, a, i, (uint32_t)i), 0);
		queue_spool_flush(s);
		fake_pump_all(&fio);
	}
	cr_assert_lt(i, 500);
	queue_spool_close(s);

	s = open_rw(&lim);
	check_msg(s, a, &t);
	append_one(s, &t, y);
	cr_assert_gt(strcmp(y, x), 0, "%s after %s", y, x);
	queue_spool_close(s);
	tmsg_free(&t);
}

Test(queue, failed_batch_restates_state)
{
	struct queue_spool *s = open_rw(NULL);
	struct tmsg t[2];
	char id[2][QUEUE_ID_LEN + 1];
	struct tstate w = {{0, 1, 0}, 1700000777000, 4, true};

	tmsg_make(&t[0], 2, 80);
	tmsg_make(&t[1], 3, 80);
	append_one(s, &t[0], id[0]);
	append_one(s, &t[1], id[1]);

	/* These records are lost with their batch ... */
	cr_assert_eq(queue_spool_rcpt_done(s, id[0], (size_t[]){1}, 1), 0);
	cr_assert_eq(queue_spool_defer(s, id[0], w.next_ms, w.attempts), 0);
	cr_assert_eq(queue_spool_hold(s, id[0], true), 0);
	cr_assert_eq(queue_spool_done(s, id[1]), 0);
	fio.sync_err = EIO;
	fio.sync_err_n = 1;
	queue_spool_flush(s);
	fake_pump_all(&fio);
	check_state(s, id[0], &w);

	/* ... and written again by the next one. */
	cr_assert_not(queue_spool_idle(s));
	settle(s);
	queue_spool_close(s);
	s = open_ro();
	cr_assert_eq(queue_spool_count(s), 1);
	cr_assert_null(queue_spool_find(s, id[1]));
	check_state(s, id[0], &w);
	queue_spool_close(s);
	tmsg_free(&t[0]);
	tmsg_free(&t[1]);
}

/* What the daemon's commit delay looks at: the age of the batch a flush
 * would start, and nothing while a batch is in flight. */
Test(queue, pending_since)
{
	struct queue_spool *s = open_rw(NULL);
	struct seen sn = {0};
	struct timespec ts;
	struct tmsg t;
	char id[QUEUE_ID_LEN + 1] = "";
	uint64_t before, since;

	cr_assert_eq(queue_spool_pending_since(s), 0);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	before = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	tmsg_make(&t, 1, 1000);
	cr_assert_eq(queue_spool_append(s, &t.in, seen_cb, &sn, id), 0);
	since = queue_spool_pending_since(s);
	cr_assert_geq(since, before);
	cr_assert_leq(since, before + 60 * 1000000ull);

	/* A second append leaves the batch's age alone. */
	cr_assert_eq(queue_spool_append(s, &t.in, seen_cb, &sn, id), 0);
	cr_assert_eq(queue_spool_pending_since(s), since);

	/* In flight: a flush would start nothing. */
	queue_spool_flush(s);
	cr_assert_eq(queue_spool_pending_since(s), 0);
	cr_assert_eq(queue_spool_append(s, &t.in, seen_cb, &sn, id), 0);
	cr_assert_eq(queue_spool_pending_since(s), 0);
	fake_pump(&fio);
	fake_pump(&fio);
	cr_assert_eq(sn.calls, 2);

	/* The batch written behind it came from the third append. */
	cr_assert_eq(queue_spool_pending_since(s), 0);
	fake_pump(&fio);
	fake_pump(&fio);
	cr_assert_eq(sn.calls, 3);
	cr_assert(queue_spool_idle(s));
	queue_spool_close(s);
	tmsg_free(&t);
}

/* With synchronous writes (io_uring's RWF_DSYNC), a batch is confirmed
 * when its last write is, with no fdatasync of its own. */
Test(queue, sync_writes_confirm_batches)
{
	struct queue_spool *s;
	struct tmsg t[30];
	struct seen sn[30];
	char id[30][QUEUE_ID_LEN + 1];

	io.pwrite_sync = fake_pwrite_sync;
	s = open_rw(NULL);
	memset(sn, 0, sizeof(sn));
	for (int i = 0; i < 30; i++)
		tmsg_make(&t[i], (unsigned)i + 40, 100 + (size_t)i);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(
		    queue_spool_append(s, &t[i].in, seen_cb, &sn[i], id[i]), 0);
	queue_spool_flush(s);
	for (int i = 20; i < 30; i++)
		cr_assert_eq(
		    queue_spool_append(s, &t[i].in, seen_cb, &sn[i], id[i]), 0);
	cr_assert_eq(fio.sync_writes, 1);
	cr_assert_eq(sn[0].calls, 0);

	/* The second batch goes out in short writes: each piece is a
	 * synchronous write. */
	fio.short_max = 37;
	fake_pump(&fio); /* the first batch is durable */
	for (int i = 0; i < 30; i++)
		cr_assert_eq(sn[i].calls, i < 20, "message %d", i);
	cr_assert_eq(fio.sync_writes, 2, "the next batch starts by itself");
	fake_pump_all(&fio);
	for (int i = 0; i < 30; i++) {
		cr_assert_eq(sn[i].calls, 1);
		cr_assert_eq(sn[i].res, 0);
	}
	cr_assert_gt(fio.sync_writes, 3);
	cr_assert_eq(fio.sync_writes, fio.writes);
	cr_assert_eq(fio.syncs, 0);
	queue_spool_close(s);

	s = open_rw(NULL);
	cr_assert_eq(queue_spool_count(s), 30);
	for (int i = 0; i < 30; i++)
		check_msg(s, id[i], &t[i]);
	queue_spool_close(s);
	for (int i = 0; i < 30; i++)
		tmsg_free(&t[i]);
}

/* A synchronous write that fails fails its batch like a failed sync. */
Test(queue, sync_write_failure)
{
	struct queue_spool *s;
	struct tmsg t;
	struct seen sn = {0};
	char id[QUEUE_ID_LEN + 1];

	io.pwrite_sync = fake_pwrite_sync;
	s = open_rw(NULL);
	tmsg_make(&t, 77, 500);
	cr_assert_eq(queue_spool_append(s, &t.in, seen_cb, &sn, id), 0);
	arm_write_enospc();
	queue_spool_flush(s);
	fake_pump_all(&fio);
	cr_assert_eq(sn.calls, 1);
	cr_assert_eq(sn.res, -ENOSPC);
	cr_assert_eq(queue_spool_count(s), 0);
	queue_spool_close(s);

	s = open_rw(NULL);
	cr_assert_eq(queue_spool_count(s), 0);
	queue_spool_close(s);
	tmsg_free(&t);
}

/* collect_all_cb - gather IDs in order. */
static int collect_all_cb(void *arg, const struct queue_msg *m)
{
	char(*ids)[QUEUE_ID_LEN + 1] = arg;
	int i = 0;

	while (ids[i][0])
		i++;
	strcpy(ids[i], m->id);
	return 0;
}

/*
 * A copy made by reclaiming lands behind newer messages on disk; the
 * order of foreach (arrival, that is ID order) is still the same after a
 * restart.
 */
Test(queue, order_survives_copy_forward)
{
	struct queue_limits lim = {.segment_size = 2000};
	struct queue_spool *s = open_rw(&lim);
	char a[QUEUE_ID_LEN + 1], b[QUEUE_ID_LEN + 1], f[QUEUE_ID_LEN + 1];
	char got[4][QUEUE_ID_LEN + 1];
	struct tmsg t, fill;
	int i;

	tmsg_make(&t, 2, 100);
	tmsg_make(&fill, 500, 300);
	append_one(s, &t, a);
	for (i = 0; i < 50 && !seg_exists(2); i++) {
		append_one(s, &fill, f);
		cr_assert_eq(queue_spool_done(s, f), 0);
		queue_spool_flush(s);
		fake_pump_all(&fio);
	}
	cr_assert(seg_exists(2));
	append_one(s, &t, b);
	cr_assert_gt(queue_spool_find(s, b)->segment, 1);
	churn_until(s, a, true);
	cr_assert_gt(queue_spool_find(s, a)->segment,
		     queue_spool_find(s, b)->segment - 1);
	settle(s);

	memset(got, 0, sizeof(got));
	queue_spool_foreach(s, collect_all_cb, got);
	cr_assert_str_eq(got[0], a);
	cr_assert_str_eq(got[1], b);
	queue_spool_close(s);

	s = open_rw(&lim);
	memset(got, 0, sizeof(got));
	queue_spool_foreach(s, collect_all_cb, got);
	cr_assert_str_eq(got[0], a, "after a restart");
	cr_assert_str_eq(got[1], b, "after a restart");
	cr_assert_eq(got[2][0], '\0');
	queue_spool_close(s);
	tmsg_free(&t);
	tmsg_free(&fill);
}
