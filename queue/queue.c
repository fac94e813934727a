/*
 * queue.c - waxseal's spool: segment files, group commit, recovery and the
 * index of live messages. queue.h is the contract; this comment covers what
 * it leaves to the implementation.
 *
 * Record payloads (integers little-endian, strings length-prefixed and not
 * NUL-terminated on disk):
 *
 *	MSG	id[16] | arrival_ms i64 | flags u32 | sender_len u32 | sender |
 *		nrcpt u32 | (rcpt_len u32 | rcpt) * nrcpt | data_len u64 | data
 *	DONE	id[16]
 *	RCPT	id[16] | n u32 | index u32 * n
 *	DEFER	id[16] | next_ms i64 | attempts u32
 *	HOLD	id[16] | held u8 (0 or 1)
 *	MARK	id[16]
 *
 * A MSG payload ends exactly where its data ends, so a record whose lengths
 * do not add up is malformed even when its checksum matches. A record that
 * passes the checksum but cannot be decoded is skipped and counted in
 * corrupt_records: its framing is sound, so the records after it can still
 * be trusted. The same holds for RCPT, DEFER, HOLD and MARK payloads of the
 * wrong length or with a recipient index out of range.
 *
 * Queue IDs: 44 bits of Unix time in milliseconds (enough until the year
 * 2527) above a 20-bit counter, printed as 16 upper-case hex digits. A new
 * ID is max(previous + 1, now << 20): strictly increasing even when the
 * clock steps back or more than 2^20 IDs are taken in one millisecond, and
 * after recovery the previous ID is the largest one found on disk.
 *
 * Group commit: appends go into the pending batch (one growable buffer plus
 * the list of callbacks); queue_spool_flush() swaps it with the empty
 * in-flight batch and writes it at the durable end of the newest segment.
 * Record offsets inside a batch are relative, so a batch that fails never
 * disturbs the one queued behind it. When a batch completes and another is
 * pending, the next one is started at once. A batch is durable after its
 * writes and one fdatasync, or, when the I/O backend has synchronous
 * writes (io_uring with RWF_DSYNC), after its writes alone: each covers
 * the bytes it wrote, and a short write's rest is written the same way.
 *
 * Segments: the spool keeps one struct queue_seg per file on disk, oldest
 * first, with the bytes and count of the live MSG records in it and the
 * largest ID any of its durable records carries. A message counts in the
 * segment of its durable MSG record; a copy made by reclaiming moves it
 * when the copy's batch is durable. The rule of queue.h for deleting is
 * checked against these: the oldest segment goes when it is closed, holds
 * nothing live and its largest ID is not above the newest segment's.
 * That last condition is what MARK records are for: a batch that starts
 * an empty segment while older ones exist is written behind a MARK with
 * the largest ID taken so far, so the newest segment always vouches for
 * every ID in the segments deleted before it. After recovery the newest
 * segment may lack such a record; the next batch then opens a new one.
 *
 * One deletion per flush, each followed by an fsync of the directory,
 * keeps deletions durable in order whatever the filesystem: were a newer
 * segment's unlink to reach the disk before an older one's, a message of
 * the older one could lose its DONE record and come back.
 *
 * Zero fill (queue_limits.zero_fill): a batch written past the end of the
 * file changes the file's
 * size, and then every fdatasync (or RWF_DSYNC write) also commits the
 * filesystem's journal; over bytes already on disk it is a data write and
 * a cache flush, about half the time and CPU on ext4. So before a batch
 * that would grow the newest segment, zeros are written from the end of
 * the file to QUEUE_ZERO_AHEAD past the batch's start (never past
 * segment_size) and made durable with one fdatasync; the batches that
 * follow overwrite them. The file's size is then no longer the end of
 * the data, which recovery never assumed: it reads records until one
 * fails its magic or checksum, and zeros fail the magic. A zero-filled
 * tail is cut from the newest segment like a torn one, but is not counted
 * as cut or corrupt. An older segment is cut back to its data when the
 * next one starts, and the spool's newest at close. A zero fill that
 * fails only ends zero filling in that segment: the batch is written
 * as it would have been without it.
 */
#include "queue/queue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_MAGIC "WXR1"
#define QUEUE_HDR 16u /* record header bytes */
#define QUEUE_MSG_FIXED (QUEUE_ID_LEN + 8 + 4 + 4 + 4 + 8)
#define QUEUE_SEG_DEFAULT (64ull << 20)
#define QUEUE_RD_CHUNK (1u << 20) /* recovery read size */
#define QUEUE_ZERO_AHEAD (4ull << 20) /* zero fill reach, see above */
#define QUEUE_ZERO_CHUNK (1u << 20)   /* one zero write */
#define QUEUE_FREE_MS 1000	  /* statvfs cache lifetime */
#define QUEUE_FAIL_TRIP 3	  /* failed batches in a row ... */
#define QUEUE_FAIL_HOLD_MS 1000	  /* ... refuse mail this long */

struct queue_ent {
	struct queue_msg m;
	uint64_t idval;
	uint64_t reclen;	 /* header + payload */
	uint64_t data_off;	 /* of the data, from the record start */
	struct queue_ent *hnext; /* hash chain */
	struct queue_ent *prev;	 /* arrival order */
	struct queue_ent *next;
	bool resync; /* its state is being restated after a failure */
	bool restate; /* recovery met a copy of it: restate once open */
};

/* One segment file on disk. */
struct queue_seg {
	uint32_t num;
	uint64_t size;	     /* durable bytes */
	uint64_t live_bytes; /* of live MSG records in it */
	size_t live;	     /* their number */
	uint64_t maxid;	     /* largest ID in its durable records */
	bool stuck;	     /* a copy could not read it back */
};

/* One MSG (new, or a copy made by reclaiming) waiting for its batch. */
struct queue_item {
	queue_append_cb cb;
	void *arg;
	uint64_t idval;
	uint64_t reloff; /* of the record inside the batch */
	bool copy;	 /* a copy: no callback, the entry moves */
	char id[QUEUE_ID_LEN + 1];
};

struct queue_batch {
	unsigned char *buf;
	size_t len;
	size_t cap;
	struct queue_item *items;
	size_t nitems;
	size_t capitems;
	uint64_t maxid; /* largest ID in its records */
	uint64_t since_us; /* monotonic time of its first byte; 0: empty */
};

struct queue_spool {
	int dirfd;
	bool rdonly;
	struct queue_io io;
	struct queue_limits lim;

	uint32_t seg_num; /* newest segment */
	int seg_fd;	  /* its fd (read-write spools only) */
	uint64_t seg_len; /* its durable length */
	bool seg_roll;	  /* start a new segment at the next batch */
	uint64_t seg_end; /* its file size: zeros from seg_len up to here */
	uint64_t zero_to;   /* the flight's zero fill ends here; 0: none */
	uint64_t zero_done; /* and is written up to here */
	bool zero_off;	    /* no zero fill in this segment (one failed) */

	struct queue_batch pending;
	struct queue_batch flight;
	bool busy;	  /* flight is being written or synced */
	uint64_t wr_base; /* segment offset of flight (of its MARK if any) */
	uint64_t wr_done; /* bytes of MARK and flight written so far */
	unsigned char mark[QUEUE_HDR + QUEUE_ID_LEN];
	size_t mark_len; /* 0, or the MARK before flight */

	struct queue_seg *segs; /* oldest first; the last is the newest */
	size_t nsegs;
	size_t capsegs;
	bool copying;	/* copies made by reclaiming are not yet durable */
	int restating;	/* 1: state restated after recovery is pending,
			 * 2: in flight; older segments stay until 0 */
	bool dir_dirty; /* an unlink not yet made durable by fsync */

	struct queue_ent **tab;
	size_t tabsize; /* power of two */
	size_t count;
	struct queue_ent *head;
	struct queue_ent *tail;
	uint64_t live_bytes;
	uint64_t last_id;

	unsigned fail_run; /* batches failed in a row */
	int64_t fail_ms;   /* monotonic time of the last failure */
	bool free_valid;
	uint64_t free_bytes; /* statvfs estimate, see can_accept */
	int64_t free_ms;

	struct queue_stats st;
};

/* queue_put32 - store v little-endian. */
static void queue_put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* queue_put64 - store v little-endian. */
static void queue_put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* queue_get32 - load a little-endian u32. */
static uint32_t queue_get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* queue_get64 - load a little-endian u64. */
static uint64_t queue_get64(const unsigned char *p)
{
	return (uint64_t)queue_get32(p) | (uint64_t)queue_get32(p + 4) << 32;
}

/* ---- CRC-32C ---- */

static uint32_t queue_crc_tab[8][256];
static uint32_t (*queue_crc_fn)(uint32_t, const void *, size_t);
static pthread_once_t queue_crc_once = PTHREAD_ONCE_INIT;

/* queue_crc32c_tab - CRC-32C by slicing-by-8 over queue_crc_tab. */
static uint32_t queue_crc32c_tab(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint32_t c = ~crc;

	while (len >= 8) {
		uint32_t lo = c ^ queue_get32(p);
		uint32_t hi = queue_get32(p + 4);

		c = queue_crc_tab[7][lo & 0xff] ^
		    queue_crc_tab[6][(lo >> 8) & 0xff] ^
		    queue_crc_tab[5][(lo >> 16) & 0xff] ^
		    queue_crc_tab[4][lo >> 24] ^ queue_crc_tab[3][hi & 0xff] ^
		    queue_crc_tab[2][(hi >> 8) & 0xff] ^
		    queue_crc_tab[1][(hi >> 16) & 0xff] ^
		    queue_crc_tab[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = (c >> 8) ^ queue_crc_tab[0][(c ^ *p++) & 0xff];
	return ~c;
}

#if defined(__x86_64__)
/* queue_crc32c_hw - CRC-32C with the SSE4.2 crc32 instruction. */
__attribute__((target("sse4.2"))) static uint32_t
queue_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t c = (uint32_t)~crc;

	while (len >= 8) {
		uint64_t v;

		memcpy(&v, p, 8); /* the instruction takes host order: LE */
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return ~(uint32_t)c;
}
#endif

/* queue_crc_init - build the tables and pick the fastest implementation. */
static void queue_crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
		queue_crc_tab[0][i] = c;
	}
	for (int t = 1; t < 8; t++)
		for (int i = 0; i < 256; i++) {
			uint32_t c = queue_crc_tab[t - 1][i];

			queue_crc_tab[t][i] =
			    (c >> 8) ^ queue_crc_tab[0][c & 0xff];
		}

	queue_crc_fn = queue_crc32c_tab;
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("sse4.2"))
		queue_crc_fn = queue_crc32c_hw;
#endif
}

/* queue_crc32c - CRC-32C (Castagnoli) of buf, continuing from crc. */
uint32_t queue_crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&queue_crc_once, queue_crc_init);
	return queue_crc_fn(crc, buf, len);
}

/* queue_crc32c_sw - the table-driven CRC-32C, whatever the CPU offers. */
uint32_t queue_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&queue_crc_once, queue_crc_init);
	return queue_crc32c_tab(crc, buf, len);
}

/* queue_rec_crc - checksum of a record: type, reserved, length, payload. */
static uint32_t queue_rec_crc(const unsigned char *rec, size_t plen)
{
	uint32_t c = queue_crc32c(0, rec + 4, 8);

	return queue_crc32c(c, rec + QUEUE_HDR, plen);
}

/* queue_rec_seal - fill in the header of a record whose payload is set. */
static void queue_rec_seal(unsigned char *rec, unsigned type, size_t plen)
{
	memcpy(rec, QUEUE_MAGIC, 4);
	rec[4] = (unsigned char)type;
	rec[5] = rec[6] = rec[7] = 0;
	queue_put32(rec + 8, (uint32_t)plen);
	queue_put32(rec + 12, queue_rec_crc(rec, plen));
}

/* ---- small helpers ---- */

/* queue_now_ms - milliseconds on the given clock. */
static int64_t queue_now_ms(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* queue_seterr - format an open error for the caller, if it wants one. */
static void queue_seterr(char *err, size_t errlen, const char *what,
			 const char *dir, int r)
{
	if (err && errlen)
		snprintf(err, errlen, "%s: %s: %s", dir, what, strerror(-r));
}

/* queue_id_parse - exactly 16 upper-case hex digits to a number. */
static int queue_id_parse(const char *p, uint64_t *out)
{
	uint64_t v = 0;

	for (int i = 0; i < QUEUE_ID_LEN; i++) {
		char ch = p[i];

		if (ch >= '0' && ch <= '9')
			v = v << 4 | (uint64_t)(ch - '0');
		else if (ch >= 'A' && ch <= 'F')
			v = v << 4 | (uint64_t)(ch - 'A' + 10);
		else
			return -EINVAL;
	}
	*out = v;
	return 0;
}

/* queue_id_next - take a new queue ID, see the file comment. */
static uint64_t queue_id_next(struct queue_spool *s)
{
	uint64_t now = (uint64_t)queue_now_ms(CLOCK_REALTIME) << 20;

	s->last_id = now > s->last_id ? now : s->last_id + 1;
	return s->last_id;
}

/* queue_id_format - print a queue ID. */
static void queue_id_format(uint64_t v, char out[QUEUE_ID_LEN + 1])
{
	snprintf(out, QUEUE_ID_LEN + 1, "%016" PRIX64, v);
}

/* ---- segment accounting ---- */

/* queue_seg_find - the descriptor of segment num, or NULL. */
static struct queue_seg *queue_seg_find(struct queue_spool *s, uint32_t num)
{
	size_t lo = 0, hi = s->nsegs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->segs[mid].num == num)
			return &s->segs[mid];
		if (s->segs[mid].num < num)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* queue_seg_push - add the descriptor of a new newest segment. */
static int queue_seg_push(struct queue_spool *s, uint32_t num)
{
	if (s->nsegs == s->capsegs) {
		size_t n = s->capsegs ? s->capsegs * 2 : 16;
		struct queue_seg *v = realloc(s->segs, n * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->segs = v;
		s->capsegs = n;
	}
	s->segs[s->nsegs++] = (struct queue_seg){.num = num};
	return 0;
}

/* queue_seg_live - count a durable MSG record in (+1) or out (-1). */
static void queue_seg_live(struct queue_spool *s, uint32_t num, uint64_t reclen,
			   int sign)
{
	struct queue_seg *g = queue_seg_find(s, num);

	if (!g)
		return;
	if (sign > 0) {
		g->live++;
		g->live_bytes += reclen;
	} else {
		g->live--;
		g->live_bytes -= reclen;
	}
}

/* ---- the index ---- */

/* queue_hash - bucket of an ID (the low bits are a counter, so mix). */
static size_t queue_hash(const struct queue_spool *s, uint64_t v)
{
	v ^= v >> 31;
	v *= 0x9E3779B97F4A7C15ull;
	v ^= v >> 29;
	return (size_t)v & (s->tabsize - 1);
}

/* queue_tab_find - the entry with this ID, or NULL. */
static struct queue_ent *queue_tab_find(const struct queue_spool *s, uint64_t v)
{
	struct queue_ent *e;

	for (e = s->tab[queue_hash(s, v)]; e; e = e->hnext)
		if (e->idval == v)
			return e;
	return NULL;
}

/* queue_tab_grow - double the hash table when it is full. */
static int queue_tab_grow(struct queue_spool *s)
{
	size_t n = s->tabsize * 2;
	struct queue_ent **old = s->tab, *e;
	size_t oldsize = s->tabsize;

	s->tab = calloc(n, sizeof(*s->tab));
	if (!s->tab) {
		s->tab = old;
		return -ENOMEM;
	}
	s->tabsize = n;

	for (size_t i = 0; i < oldsize; i++)
		while ((e = old[i])) {
			size_t h = queue_hash(s, e->idval);

			old[i] = e->hnext;
			e->hnext = s->tab[h];
			s->tab[h] = e;
		}
	free(old);
	return 0;
}

/* queue_index_add - insert e (its ID must be new) at the tail. */
static int queue_index_add(struct queue_spool *s, struct queue_ent *e)
{
	size_t h;
	int r;

	if (s->count >= s->tabsize) {
		r = queue_tab_grow(s);
		if (r < 0)
			return r;
	}

	h = queue_hash(s, e->idval);
	e->hnext = s->tab[h];
	s->tab[h] = e;

	e->next = NULL;
	e->prev = s->tail;
	if (s->tail)
		s->tail->next = e;
	else
		s->head = e;
	s->tail = e;

	s->count++;
	s->live_bytes += e->reclen;
	if (e->m.durable)
		queue_seg_live(s, e->m.segment, e->reclen, 1);
	return 0;
}

/* queue_ent_free - release an entry and its envelope block. */
static void queue_ent_free(struct queue_ent *e)
{
	if (!e)
		return;
	free(e->m.rcpts); /* the sender and all strings live in this block */
	free(e);
}

/* queue_index_del - unlink e from the table and the list and free it. */
static void queue_index_del(struct queue_spool *s, struct queue_ent *e)
{
	struct queue_ent **pp = &s->tab[queue_hash(s, e->idval)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;

	if (e->prev)
		e->prev->next = e->next;
	else
		s->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		s->tail = e->prev;

	s->count--;
	s->live_bytes -= e->reclen;
	if (e->m.durable)
		queue_seg_live(s, e->m.segment, e->reclen, -1);
	queue_ent_free(e);
}

/*
 * queue_index_replace - a later MSG record for a live ID (a copy made by
 * reclaiming): e takes the place of old, which keeps its delivery state
 * (a copy whose batch was torn after its MSG record must not forget what
 * the records before it said); old's envelope goes and e is freed. Both
 * are durable: this happens in recovery only.
 */
static void queue_index_replace(struct queue_spool *s, struct queue_ent *old,
				struct queue_ent *e)
{
	char **blk = old->m.rcpts;

	queue_seg_live(s, old->m.segment, old->reclen, -1);
	s->live_bytes -= old->reclen;

	/* Recipients carry over by index, so only with the same list size. */
	if (e->m.nrcpt == old->m.nrcpt) {
		memcpy(e->m.rcpt_done, old->m.rcpt_done, e->m.nrcpt);
		e->m.npending = old->m.npending;
	}
	e->m.next_ms = old->m.next_ms;
	e->m.attempts = old->m.attempts;
	e->m.held = old->m.held;
	old->m = e->m;
	old->reclen = e->reclen;
	old->data_off = e->data_off;
	e->m.rcpts = blk;
	queue_ent_free(e);

	s->live_bytes += old->reclen;
	queue_seg_live(s, old->m.segment, old->reclen, 1);
}

/* ---- MSG payloads ---- */

struct queue_cur {
	const unsigned char *p;
	size_t n;
};

/* queue_cur_take - advance over n bytes, or -EINVAL if there are fewer. */
static int queue_cur_take(struct queue_cur *c, size_t n,
			  const unsigned char **out)
{
	if (c->n < n)
		return -EINVAL;
	*out = c->p;
	c->p += n;
	c->n -= n;
	return 0;
}

/* queue_cur_str - take a length-prefixed string. */
static int queue_cur_str(struct queue_cur *c, const unsigned char **s,
			 uint32_t *len)
{
	const unsigned char *x;

	if (queue_cur_take(c, 4, &x) < 0)
		return -EINVAL;
	*len = queue_get32(x);
	return queue_cur_take(c, *len, s);
}

/* queue_str_copy - copy a length-counted string into the block, NUL it. */
static char *queue_str_copy(char **dst, const unsigned char *src, size_t n)
{
	char *r = *dst;

	memcpy(r, src, n);
	r[n] = '\0';
	*dst += n + 1;
	return r;
}

/*
 * queue_msg_decode - build an index entry from a MSG payload. -EINVAL when
 * the payload is malformed, -ENOMEM. The entry is not yet placed: segment,
 * offset and durable are left for the caller.
 */
static int queue_msg_decode(const unsigned char *p, size_t n,
			    struct queue_ent **out)
{
	struct queue_cur c = {p, n}, rc;
	const unsigned char *id, *x, *sender, *str;
	uint32_t slen, nrcpt, len;
	size_t strbytes;
	struct queue_ent *e = NULL;
	char *blk;
	int r = -EINVAL;

	/* Pass 1: check that every length fits, and size the block. */
	if (queue_cur_take(&c, QUEUE_ID_LEN + 12, &id) < 0 ||
	    queue_cur_str(&c, &sender, &slen) < 0 ||
	    queue_cur_take(&c, 4, &x) < 0)
		goto fail;
	nrcpt = queue_get32(x);
	rc = c;
	strbytes = (size_t)slen + 1;
	for (uint32_t i = 0; i < nrcpt; i++) {
		if (queue_cur_str(&c, &str, &len) < 0)
			goto fail;
		strbytes += (size_t)len + 1;
	}
	if (queue_cur_take(&c, 8, &x) < 0 || queue_get64(x) != c.n)
		goto fail;

	/*
	 * One block holds the rcpts array, the sender, every rcpt and the
	 * rcpt_done flags.
	 */
	r = -ENOMEM;
	e = calloc(1, sizeof(*e));
	if (!e)
		goto fail;
	e->m.rcpts =
	    malloc((size_t)nrcpt * sizeof(char *) + strbytes + nrcpt + 1);
	if (!e->m.rcpts)
		goto fail;
	r = -EINVAL;
	if (queue_id_parse((const char *)id, &e->idval) < 0)
		goto fail;

	/* Pass 2: fill it in. */
	memcpy(e->m.id, id, QUEUE_ID_LEN);
	e->m.arrival_ms = (int64_t)queue_get64(id + QUEUE_ID_LEN);
	e->m.flags = queue_get32(id + QUEUE_ID_LEN + 8);
	blk = (char *)(e->m.rcpts + nrcpt);
	e->m.sender = queue_str_copy(&blk, sender, slen);
	for (uint32_t i = 0; i < nrcpt; i++) {
		queue_cur_str(&rc, &str, &len);
		e->m.rcpts[i] = queue_str_copy(&blk, str, len);
	}
	e->m.nrcpt = nrcpt;
	e->m.rcpt_done = (uint8_t *)blk;
	memset(e->m.rcpt_done, 0, nrcpt);
	e->m.npending = nrcpt;
	e->m.size = c.n;
	e->data_off = QUEUE_HDR + (uint64_t)(c.p - p);
	e->reclen = QUEUE_HDR + n;
	*out = e;
	return 0;
fail:
	queue_ent_free(e);
	return r;
}

/* queue_msg_size - payload bytes of m, or -EMSGSIZE / -EINVAL. */
static int64_t queue_msg_size(const struct queue_msg_in *m, uint64_t *dlen)
{
	uint64_t n = QUEUE_MSG_FIXED, d = 0;

	if (!m->sender || (m->nrcpt && !m->rcpts) || m->nrcpt == 0 ||
	    m->ndata < 0 || (m->ndata && !m->data))
		return -EINVAL;
	if (m->nrcpt > QUEUE_REC_MAX / 4)
		return -EMSGSIZE;

	/* Each term is checked before the sum so that nothing can wrap. */
	n += strnlen(m->sender, QUEUE_REC_MAX + 1);
	for (size_t i = 0; i < m->nrcpt && n <= QUEUE_REC_MAX; i++)
		n += 4 + strnlen(m->rcpts[i], QUEUE_REC_MAX + 1);
	for (int i = 0; i < m->ndata && d <= QUEUE_REC_MAX; i++)
		d += m->data[i].iov_len > QUEUE_REC_MAX ? QUEUE_REC_MAX + 1
							: m->data[i].iov_len;
	if (n > QUEUE_REC_MAX || d > QUEUE_REC_MAX || n + d > QUEUE_REC_MAX)
		return -EMSGSIZE;
	*dlen = d;
	return (int64_t)(n + d);
}

/* queue_msg_encode - write the MSG payload of m at p. */
static void queue_msg_encode(unsigned char *p, const struct queue_msg_in *m,
			     const char *id, uint64_t dlen)
{
	size_t len;

	memcpy(p, id, QUEUE_ID_LEN);
	p += QUEUE_ID_LEN;
	queue_put64(p, (uint64_t)m->arrival_ms);
	queue_put32(p + 8, m->flags);
	p += 12;

	len = strlen(m->sender);
	queue_put32(p, (uint32_t)len);
	memcpy(p + 4, m->sender, len);
	p += 4 + len;

	queue_put32(p, (uint32_t)m->nrcpt);
	p += 4;
	for (size_t i = 0; i < m->nrcpt; i++) {
		len = strlen(m->rcpts[i]);
		queue_put32(p, (uint32_t)len);
		memcpy(p + 4, m->rcpts[i], len);
		p += 4 + len;
	}

	queue_put64(p, dlen);
	p += 8;
	for (int i = 0; i < m->ndata; i++) {
		if (m->data[i].iov_len)
			memcpy(p, m->data[i].iov_base, m->data[i].iov_len);
		p += m->data[i].iov_len;
	}
}

/* ---- batches ---- */

/* queue_batch_room - room for extra more bytes in b. */
static int queue_batch_room(struct queue_batch *b, size_t extra)
{
	if (b->len == 0 && b->since_us == 0) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		b->since_us = (uint64_t)ts.tv_sec * 1000000 +
			      (uint64_t)ts.tv_nsec / 1000;
	}
	if (b->len + extra > b->cap) {
		size_t cap = b->cap ? b->cap : 64 * 1024;
		unsigned char *p;

		while (cap < b->len + extra)
			cap *= 2;
		p = realloc(b->buf, cap);
		if (!p)
			return -ENOMEM;
		b->buf = p;
		b->cap = cap;
	}
	return 0;
}

/* queue_batch_reserve - room for extra bytes and one more item. */
static int queue_batch_reserve(struct queue_batch *b, size_t extra)
{
	if (queue_batch_room(b, extra) < 0)
		return -ENOMEM;
	if (b->nitems == b->capitems) {
		size_t n = b->capitems ? b->capitems * 2 : 64;
		struct queue_item *it = realloc(b->items, n * sizeof(*it));

		if (!it)
			return -ENOMEM;
		b->items = it;
		b->capitems = n;
	}
	return 0;
}

/*
 * queue_rec_open - a place in the pending batch for a record of plen
 * payload bytes about e, its ID already written; NULL when out of memory.
 * queue_rec_close adds it to the batch.
 */
static unsigned char *queue_rec_open(struct queue_spool *s,
				     const struct queue_ent *e, size_t plen)
{
	unsigned char *rec;

	if (queue_batch_room(&s->pending, QUEUE_HDR + plen) < 0)
		return NULL;
	rec = s->pending.buf + s->pending.len;
	memcpy(rec + QUEUE_HDR, e->m.id, QUEUE_ID_LEN);
	return rec;
}

/* queue_rec_close - seal a record from queue_rec_open and keep it. */
static void queue_rec_close(struct queue_spool *s, const struct queue_ent *e,
			    unsigned char *rec, unsigned type, size_t plen)
{
	queue_rec_seal(rec, type, plen);
	s->pending.len += QUEUE_HDR + plen;
	if (e->idval > s->pending.maxid)
		s->pending.maxid = e->idval;
}

/* queue_put_defer - append a DEFER record with e's schedule. */
static int queue_put_defer(struct queue_spool *s, const struct queue_ent *e)
{
	unsigned char *rec = queue_rec_open(s, e, QUEUE_ID_LEN + 12);

	if (!rec)
		return -ENOMEM;
	queue_put64(rec + QUEUE_HDR + QUEUE_ID_LEN, (uint64_t)e->m.next_ms);
	queue_put32(rec + QUEUE_HDR + QUEUE_ID_LEN + 8, e->m.attempts);
	queue_rec_close(s, e, rec, QUEUE_REC_DEFER, QUEUE_ID_LEN + 12);
	return 0;
}

/* queue_put_hold - append a HOLD record with e's hold flag. */
static int queue_put_hold(struct queue_spool *s, const struct queue_ent *e)
{
	unsigned char *rec = queue_rec_open(s, e, QUEUE_ID_LEN + 1);

	if (!rec)
		return -ENOMEM;
	rec[QUEUE_HDR + QUEUE_ID_LEN] = e->m.held ? 1 : 0;
	queue_rec_close(s, e, rec, QUEUE_REC_HOLD, QUEUE_ID_LEN + 1);
	return 0;
}

/*
 * queue_state_size - bytes of the records queue_put_state appends for e:
 * a RCPT with every done recipient (if any), then a DEFER and a HOLD, each
 * only when it differs from a new message's unless all is set.
 */
static size_t queue_state_size(const struct queue_ent *e, bool all)
{
	size_t k = e->m.nrcpt - e->m.npending, n = 0;

	if (k)
		n += QUEUE_HDR + QUEUE_ID_LEN + 4 + 4 * k;
	if (all || e->m.next_ms || e->m.attempts)
		n += QUEUE_HDR + QUEUE_ID_LEN + 12;
	if (all || e->m.held)
		n += QUEUE_HDR + QUEUE_ID_LEN + 1;
	return n;
}

/* queue_put_state - append e's whole delivery state, see above. */
static int queue_put_state(struct queue_spool *s, const struct queue_ent *e,
			   bool all)
{
	size_t k = e->m.nrcpt - e->m.npending, j = 0;
	unsigned char *rec, *p;

	if (queue_batch_room(&s->pending, queue_state_size(e, all)) < 0)
		return -ENOMEM;

	/* With the room taken at once, nothing below can fail half-way. */
	if (k) {
		rec = queue_rec_open(s, e, QUEUE_ID_LEN + 4 + 4 * k);
		p = rec + QUEUE_HDR + QUEUE_ID_LEN;
		queue_put32(p, (uint32_t)k);
		for (size_t i = 0; i < e->m.nrcpt; i++)
			if (e->m.rcpt_done[i])
				queue_put32(p + 4 + 4 * j++, (uint32_t)i);
		queue_rec_close(s, e, rec, QUEUE_REC_RCPT,
				QUEUE_ID_LEN + 4 + 4 * k);
	}
	if (all || e->m.next_ms || e->m.attempts)
		queue_put_defer(s, e);
	if (all || e->m.held)
		queue_put_hold(s, e);
	return 0;
}

/* queue_msg_rec_ok - rec (reclen bytes, read back) is an intact MSG. */
static bool queue_msg_rec_ok(const unsigned char *rec, uint64_t reclen)
{
	return !memcmp(rec, QUEUE_MAGIC, 4) && rec[4] == QUEUE_REC_MSG &&
	       queue_get32(rec + 8) == reclen - QUEUE_HDR &&
	       queue_rec_crc(rec, reclen - QUEUE_HDR) == queue_get32(rec + 12);
}

/* queue_pread_all - read exactly len bytes at off. */
static int queue_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t k =
		    pread(fd, (char *)buf + got, len - got, (off_t)(off + got));

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -EIO;
		got += (size_t)k;
	}
	return 0;
}

/* ---- segments ---- */

/* queue_seg_name - file name of segment num. */
static void queue_seg_name(char *buf, size_t len, uint32_t num)
{
	snprintf(buf, len, "seg-%08" PRIu32 ".log", num);
}

/* queue_seg_create - create segment num and make its name durable. */
static int queue_seg_create(struct queue_spool *s, uint32_t num)
{
	char name[32];
	int fd, r;

	queue_seg_name(name, sizeof(name), num);
	fd =
	    openat(s->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;

	/*
	 * The new name must survive a crash before any record in the file is
	 * confirmed. This fsync of the directory is synchronous and blocks
	 * the loop thread, but it happens once per segment (once per
	 * segment_size bytes, 64 MiB by default), so it is not worth a round
	 * trip through struct queue_io.
	 */
	if (fsync(s->dirfd) < 0) {
		r = -errno;
		close(fd);
		unlinkat(s->dirfd, name, 0);
		return r;
	}
	return fd;
}

/*
 * queue_seg_cut_zeros - cut the newest segment's zero fill back to its
 * data; no write to it may be in flight. Not synced, and a failure is
 * left: recovery takes a zero-filled tail for what it is.
 */
static void queue_seg_cut_zeros(struct queue_spool *s)
{
	if (s->seg_fd < 0 || s->rdonly || s->seg_end <= s->seg_len)
		return;
	if (ftruncate(s->seg_fd, (off_t)s->seg_len) == 0)
		s->seg_end = s->seg_len;
}

/* queue_seg_next - close the newest segment and start the next one. */
static int queue_seg_next(struct queue_spool *s)
{
	int fd;

	/* Recovery only knows names with eight digits. */
	if (s->seg_num >= 99999999)
		return -EOVERFLOW;
	fd = queue_seg_push(s, s->seg_num + 1);
	if (fd < 0)
		return fd;
	fd = queue_seg_create(s, s->seg_num + 1);
	if (fd < 0) {
		s->nsegs--;
		return fd;
	}
	queue_seg_cut_zeros(s);
	close(s->seg_fd);
	s->seg_fd = fd;
	s->seg_num++;
	s->seg_len = 0;
	s->seg_end = 0;
	s->seg_roll = false;
	s->zero_off = false;
	return 0;
}

/* queue_seg_cmp - qsort order of segment numbers. */
static int queue_seg_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* queue_seg_parse - the number of a seg-NNNNNNNN.log name, or -EINVAL. */
static int64_t queue_seg_parse(const char *name)
{
	uint32_t v = 0;

	if (strlen(name) != 16 || memcmp(name, "seg-", 4) ||
	    strcmp(name + 12, ".log"))
		return -EINVAL;
	for (int i = 4; i < 12; i++) {
		if (name[i] < '0' || name[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint32_t)(name[i] - '0');
	}
	return v;
}

/* queue_seg_list - the segment numbers in the directory, sorted. */
static int queue_seg_list(struct queue_spool *s, uint32_t **out, size_t *n)
{
	uint32_t *v = NULL, *nv;
	size_t cnt = 0, cap = 0;
	struct dirent *de;
	DIR *d = NULL;
	int fd, r;

	fd = dup(s->dirfd);
	if (fd < 0 || !(d = fdopendir(fd))) {
		r = -errno;
		if (fd >= 0)
			close(fd);
		goto fail;
	}
	rewinddir(d);

	while ((de = readdir(d))) {
		int64_t num = queue_seg_parse(de->d_name);

		if (num < 0)
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				r = -ENOMEM;
				goto fail;
			}
			v = nv;
		}
		v[cnt++] = (uint32_t)num;
	}
	closedir(d);

	if (cnt)
		qsort(v, cnt, sizeof(*v), queue_seg_cmp);
	*out = v;
	*n = cnt;
	return 0;
fail:
	if (d)
		closedir(d);
	free(v);
	return r;
}

/* ---- recovery ---- */

/* A read-ahead window over one segment file. */
struct queue_rd {
	int fd;
	unsigned char *buf;
	size_t cap;
	uint64_t boff; /* file offset of buf[0] */
	size_t blen;
};

/* queue_rd_get - point *out at n bytes at off (the caller bounds them). */
static int queue_rd_get(struct queue_rd *rd, uint64_t off, size_t n,
			uint64_t size, const unsigned char **out)
{
	size_t want, got = 0;

	if (off >= rd->boff && off + n <= rd->boff + rd->blen) {
		*out = rd->buf + (off - rd->boff);
		return 0;
	}

	/* Read ahead a chunk; a record larger than that is read whole. */
	want = n > QUEUE_RD_CHUNK ? n : QUEUE_RD_CHUNK;
	if (want > size - off)
		want = (size_t)(size - off);
	if (want > rd->cap) {
		unsigned char *p = realloc(rd->buf, want);

		if (!p)
			return -ENOMEM;
		rd->buf = p;
		rd->cap = want;
	}
	while (got < want) {
		ssize_t k = pread(rd->fd, rd->buf + got, want - got,
				  (off_t)(off + got));

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -EIO; /* the file shrank under us */
		got += (size_t)k;
	}
	rd->boff = off;
	rd->blen = got;
	*out = rd->buf;
	return 0;
}

/* queue_rec_id - the ID a state, DONE or MARK payload starts with. */
static int queue_rec_id(struct queue_spool *s, const unsigned char *pl,
			size_t len, size_t want, uint64_t *v)
{
	if (len < want || queue_id_parse((const char *)pl, v) < 0) {
		s->st.corrupt_records++;
		return -EINVAL;
	}

	/* Every ID on disk counts, so that no new ID repeats one. */
	if (*v > s->last_id)
		s->last_id = *v;
	if (s->nsegs && *v > s->segs[s->nsegs - 1].maxid)
		s->segs[s->nsegs - 1].maxid = *v;
	return 0;
}

/* queue_rec_rcpt - apply a RCPT payload to e, all of it or nothing. */
static void queue_rec_rcpt(struct queue_spool *s, struct queue_ent *e,
			   const unsigned char *pl, size_t len)
{
	const unsigned char *p = pl + QUEUE_ID_LEN + 4;
	uint32_t n = queue_get32(pl + QUEUE_ID_LEN);

	if ((len - QUEUE_ID_LEN - 4) / 4 != n || (len - QUEUE_ID_LEN - 4) % 4) {
		s->st.corrupt_records++;
		return;
	}
	if (!e)
		return;
	for (uint32_t i = 0; i < n; i++)
		if (queue_get32(p + 4 * (size_t)i) >= e->m.nrcpt) {
			s->st.corrupt_records++;
			return;
		}

	for (uint32_t i = 0; i < n; i++) {
		uint32_t k = queue_get32(p + 4 * (size_t)i);

		if (!e->m.rcpt_done[k]) {
			e->m.rcpt_done[k] = 1;
			e->m.npending--;
		}
	}
}

/* queue_rec_state - apply a DONE, RCPT, DEFER, HOLD or MARK record. */
static void queue_rec_state(struct queue_spool *s, unsigned type,
			    const unsigned char *pl, size_t len)
{
	static const size_t want[] = {
	    [QUEUE_REC_DONE] = QUEUE_ID_LEN,
	    [QUEUE_REC_RCPT] = QUEUE_ID_LEN + 4,
	    [QUEUE_REC_DEFER] = QUEUE_ID_LEN + 12,
	    [QUEUE_REC_HOLD] = QUEUE_ID_LEN + 1,
	    [QUEUE_REC_MARK] = QUEUE_ID_LEN,
	};
	struct queue_ent *e;
	uint64_t v;

	/* All but RCPT have one length; a record for no live ID is moot. */
	if (queue_rec_id(s, pl, len, want[type], &v) < 0)
		return;
	if (type != QUEUE_REC_RCPT && len != want[type]) {
		s->st.corrupt_records++;
		return;
	}
	e = queue_tab_find(s, v);

	switch (type) {
	case QUEUE_REC_DONE:
		if (e)
			queue_index_del(s, e);
		break;
	case QUEUE_REC_RCPT:
		queue_rec_rcpt(s, e, pl, len);
		break;
	case QUEUE_REC_DEFER:
		if (e) {
			e->m.next_ms = (int64_t)queue_get64(pl + QUEUE_ID_LEN);
			e->m.attempts = queue_get32(pl + QUEUE_ID_LEN + 8);
		}
		break;
	case QUEUE_REC_HOLD:
		if (pl[QUEUE_ID_LEN] > 1)
			s->st.corrupt_records++;
		else if (e)
			e->m.held = pl[QUEUE_ID_LEN];
		break;
	}
}

/* queue_rec_apply - update the index with one valid record. */
static int queue_rec_apply(struct queue_spool *s, unsigned type,
			   const unsigned char *pl, size_t len, uint32_t num,
			   uint64_t off)
{
	struct queue_ent *e, *old;
	int r;

	if (type >= QUEUE_REC_DONE && type <= QUEUE_REC_MARK) {
		queue_rec_state(s, type, pl, len);
		return 0;
	}
	if (type != QUEUE_REC_MSG) {
		s->st.skipped_records++;
		return 0;
	}

	r = queue_msg_decode(pl, len, &e);
	if (r == -EINVAL) {
		s->st.corrupt_records++;
		return 0;
	}
	if (r < 0)
		return r;
	e->m.segment = num;
	e->m.offset = off;
	e->m.durable = true;
	if (e->idval > s->last_id)
		s->last_id = e->idval;
	if (e->idval > s->segs[s->nsegs - 1].maxid)
		s->segs[s->nsegs - 1].maxid = e->idval;

	/* A later MSG for a live ID is a copy: it wins, keeping the state. */
	old = queue_tab_find(s, e->idval);
	if (old) {
		queue_index_replace(s, old, e);
		old->restate = true;
		return 0;
	}
	r = queue_index_add(s, e);
	if (r < 0)
		queue_ent_free(e);
	return r;
}

/*
 * queue_rec_at - whether a whole record with a good checksum starts at off
 * (before size); its payload length into *len. -errno on a read error.
 */
static int queue_rec_at(struct queue_rd *rd, uint64_t off, uint64_t size,
			uint32_t *len)
{
	const unsigned char *h;
	int r;

	if (size - off < QUEUE_HDR)
		return 0;
	r = queue_rd_get(rd, off, QUEUE_HDR, size, &h);
	if (r < 0)
		return r;
	*len = queue_get32(h + 8);
	if (memcmp(h, QUEUE_MAGIC, 4) || *len > QUEUE_REC_MAX ||
	    *len > size - off - QUEUE_HDR)
		return 0;
	r = queue_rd_get(rd, off, QUEUE_HDR + *len, size, &h);
	if (r < 0)
		return r;
	return queue_rec_crc(h, *len) == queue_get32(h + 12);
}

/*
 * queue_seg_records - apply every valid record of a segment, in order, and
 * set *end to the offset just past the last one.
 *
 * A record whose header is sound but whose checksum fails is skipped, and
 * counted in corrupt_records, when a valid record starts right after it
 * (the length it gives): a damaged payload, with the confirmed records
 * after it kept. Without one it is where the data ends: a torn or
 * zero-filled tail. The same happens when a crash wrote the pages of the
 * last batch out of order and left a hole in it; the records behind the
 * hole are still facts that happened before the crash (a message whose
 * client saw no 250 and may send it again, a delivery that was made), so
 * applying them loses nothing and at worst repeats a message, as a crash
 * may anyway. Such a hole is counted as damage too: the two cannot be
 * told apart without batch markers on disk.
 */
static int queue_seg_records(struct queue_spool *s, struct queue_rd *rd,
			     uint32_t num, uint64_t size, uint64_t *end)
{
	const unsigned char *h;
	uint64_t off = 0, next;
	uint32_t len, nlen;
	int r;

	while (size - off >= QUEUE_HDR) {
		r = queue_rd_get(rd, off, QUEUE_HDR, size, &h);
		if (r < 0)
			return r;
		len = queue_get32(h + 8);
		if (memcmp(h, QUEUE_MAGIC, 4) || len > QUEUE_REC_MAX ||
		    len > size - off - QUEUE_HDR)
			break;

		r = queue_rd_get(rd, off, QUEUE_HDR + len, size, &h);
		if (r < 0)
			return r;
		if (queue_rec_crc(h, len) != queue_get32(h + 12)) {
			/*
			 * The length is trusted only in a header that looks
			 * like one this spool writes: a known type, zeros in
			 * the reserved octets.
			 */
			if (h[4] < QUEUE_REC_MSG || h[4] > QUEUE_REC_MARK ||
			    h[5] || h[6] || h[7])
				break;
			next = off + QUEUE_HDR + len;
			r = queue_rec_at(rd, next, size, &nlen);
			if (r < 0)
				return r;
			if (r == 0)
				break;
			s->st.corrupt_records++;
			off = next;
			continue;
		}

		r = queue_rec_apply(s, h[4], h + QUEUE_HDR, len, num, off);
		if (r < 0)
			return r;
		off += QUEUE_HDR + len;
	}
	*end = off;
	return 0;
}

/*
 * queue_tail_used - the end of the last octet that is not zero in
 * [from, size) of fd, or from when they all are (a zero fill, see the
 * top of this file); size when they cannot be read.
 */
static uint64_t queue_tail_used(int fd, uint64_t from, uint64_t size)
{
	unsigned char buf[65536];
	uint64_t off = from, used = from;
	ssize_t n;

	while (off < size) {
		n = pread(fd, buf,
			  size - off < sizeof(buf) ? (size_t)(size - off)
						   : sizeof(buf),
			  (off_t)off);
		if (n <= 0)
			return size;
		for (ssize_t i = n; i > 0; i--)
			if (buf[i - 1]) {
				used = off + (uint64_t)i;
				break;
			}
		off += (uint64_t)n;
	}
	return used;
}

/*
 * queue_seg_recover - scan one segment. The newest segment of a read-write
 * spool stays open for appending, cut back to its last valid record.
 */
static int queue_seg_recover(struct queue_spool *s, uint32_t num, bool newest)
{
	struct queue_rd rd = {.fd = -1};
	bool keep = newest && !s->rdonly;
	uint64_t end, used;
	struct stat sb;
	char name[32];
	int r;

	queue_seg_name(name, sizeof(name), num);
	rd.fd = openat(s->dirfd, name, (keep ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (rd.fd < 0 || fstat(rd.fd, &sb) < 0) {
		r = -errno;
		goto fail;
	}
	r = queue_seg_push(s, num);
	if (r < 0)
		goto fail;
	s->segs[s->nsegs - 1].size = (uint64_t)sb.st_size;

	r = queue_seg_records(s, &rd, num, (uint64_t)sb.st_size, &end);
	if (r < 0)
		goto fail;

	/*
	 * Past the last valid record of an older segment nothing can be
	 * trusted, but a later segment can: skip to it. In the newest
	 * segment it is the tail of a batch the crash interrupted.
	 * XXX: a damaged record header (magic or length) ends the segment's
	 * records there: without batch markers on disk nothing says where
	 * the next record starts. A damaged payload is skipped (see
	 * queue_seg_records).
	 */
	used = queue_tail_used(rd.fd, end, (uint64_t)sb.st_size);
	if (used > end && !newest)
		s->st.corrupt_records++;
	if (used > end && newest)
		s->st.recovered_cut_bytes += used - end;
	if (keep && end < (uint64_t)sb.st_size &&
	    (ftruncate(rd.fd, (off_t)end) < 0 || fsync(rd.fd) < 0)) {
		r = -errno;
		goto fail;
	}

	if (newest)
		s->seg_num = num;
	if (keep) {
		s->seg_fd = rd.fd;
		s->seg_len = end;
		s->seg_end = end;
		s->segs[s->nsegs - 1].size = end;
	} else {
		close(rd.fd);
	}
	free(rd.buf);
	return 0;
fail:
	if (rd.fd >= 0)
		close(rd.fd);
	free(rd.buf);
	return r;
}

/* queue_spool_recover - scan every segment, oldest first. */
static int queue_spool_recover(struct queue_spool *s, char *err, size_t errlen,
			       const char *dir)
{
	uint32_t *nums = NULL;
	size_t n = 0;
	char name[32];
	int r;

	r = queue_seg_list(s, &nums, &n);
	if (r < 0) {
		queue_seterr(err, errlen, "cannot list segments", dir, r);
		goto fail;
	}

	for (size_t i = 0; i < n; i++) {
		r = queue_seg_recover(s, nums[i], i + 1 == n);
		if (r < 0) {
			queue_seg_name(name, sizeof(name), nums[i]);
			queue_seterr(err, errlen, name, dir, r);
			goto fail;
		}
	}

	/* An empty spool gets its first segment now. */
	if (n == 0 && !s->rdonly) {
		r = queue_seg_push(s, 1);
		if (r >= 0)
			r = queue_seg_create(s, 1);
		if (r < 0) {
			queue_seterr(err, errlen, "cannot create segment", dir,
				     r);
			goto fail;
		}
		s->seg_fd = r;
		s->seg_num = 1;
		r = 0;
	}

	/*
	 * Older segments may only go while the newest vouches for their IDs
	 * (see the file comment); if it cannot, the next batch opens a new
	 * segment behind a MARK. An empty newest segment gets its MARK in
	 * place.
	 */
	if (n > 1 && s->seg_len && s->segs[n - 1].maxid < s->last_id)
		s->seg_roll = true;
fail:
	free(nums);
	return r;
}

/* queue_ent_cmp - qsort order of entries: by ID. */
static int queue_ent_cmp(const void *a, const void *b)
{
	uint64_t x = (*(struct queue_ent *const *)a)->idval;
	uint64_t y = (*(struct queue_ent *const *)b)->idval;

	return (x > y) - (x < y);
}

/*
 * queue_list_sort - put the list of live messages in ID order, which is
 * arrival order (IDs only grow). Recovery builds it in log order, and
 * that is arrival order only until reclaiming copies an old message
 * behind newer ones; sorting makes the order after a restart the order
 * before it. New messages take larger IDs, so the list stays sorted.
 */
static int queue_list_sort(struct queue_spool *s)
{
	struct queue_ent **v, *e;
	size_t n = 0, i;

	if (s->count < 2)
		return 0;
	v = malloc(s->count * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (e = s->head; e; e = e->next)
		v[n++] = e;
	qsort(v, n, sizeof(*v), queue_ent_cmp);
	for (i = 0; i < n; i++) {
		v[i]->prev = i ? v[i - 1] : NULL;
		v[i]->next = i + 1 < n ? v[i + 1] : NULL;
	}
	s->head = v[0];
	s->tail = v[n - 1];
	free(v);
	return 0;
}

/*
 * queue_restate_copies - recovery met both the original and a copy of
 * some messages (a crash between a copy and the deletion of its
 * segment): their state comes from the records of both, but the copy
 * alone may not carry all of it (its batch may have been torn after the
 * MSG record). Append each such message's whole state to the first batch
 * and keep older segments until that batch is durable, so that the
 * newest segments vouch for it on their own.
 */
static int queue_restate_copies(struct queue_spool *s)
{
	for (struct queue_ent *e = s->head; e; e = e->next) {
		if (!e->restate)
			continue;
		e->restate = false;
		if (s->rdonly)
			continue;
		if (queue_put_state(s, e, true) < 0)
			return -ENOMEM;
		s->restating = 1;
	}
	return 0;
}

/* queue_spool_open - create dir if needed, recover it, return a spool. */
int queue_spool_open(struct queue_spool **out, const char *dir,
		     const struct queue_limits *lim, const struct queue_io *io,
		     char *err, size_t errlen)
{
	struct queue_spool *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s) {
		r = -ENOMEM;
		queue_seterr(err, errlen, "cannot open spool", dir, r);
		return r;
	}
	s->dirfd = -1;
	s->seg_fd = -1;
	s->rdonly = io == NULL;
	if (io)
		s->io = *io;
	if (lim)
		s->lim = *lim;
	if (!s->lim.segment_size)
		s->lim.segment_size = QUEUE_SEG_DEFAULT;
	s->tabsize = 1024;
	s->tab = calloc(s->tabsize, sizeof(*s->tab));
	if (!s->tab) {
		r = -ENOMEM;
		queue_seterr(err, errlen, "cannot open spool", dir, r);
		goto fail;
	}

	/* Only the spool directory itself is created, not its parents. */
	if (!s->rdonly && mkdir(dir, 0750) < 0 && errno != EEXIST) {
		r = -errno;
		queue_seterr(err, errlen, "cannot create directory", dir, r);
		goto fail;
	}
	s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0) {
		r = -errno;
		queue_seterr(err, errlen, "cannot open directory", dir, r);
		goto fail;
	}

	/* Two writers would interleave records; readers need no lock. */
	if (!s->rdonly && flock(s->dirfd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		queue_seterr(err, errlen, "spool is locked", dir, r);
		goto fail;
	}

	r = queue_spool_recover(s, err, errlen, dir);
	if (r == 0)
		r = queue_list_sort(s);
	if (r == 0)
		r = queue_restate_copies(s);
	if (r < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	queue_spool_close(s);
	return r;
}

/* queue_spool_close - release the spool; unflushed records are dropped. */
void queue_spool_close(struct queue_spool *s)
{
	struct queue_ent *e, *next;

	if (!s)
		return;
	for (e = s->head; e; e = next) {
		next = e->next;
		queue_ent_free(e);
	}
	free(s->tab);
	free(s->segs);
	free(s->pending.buf);
	free(s->pending.items);
	free(s->flight.buf);
	free(s->flight.items);
	if (!s->busy)
		queue_seg_cut_zeros(s);
	if (s->seg_fd >= 0)
		close(s->seg_fd);
	if (s->dirfd >= 0)
		close(s->dirfd); /* drops the lock */
	free(s);
}

/* ---- admission ---- */

/* queue_free_bytes - free disk space, from statvfs at most once a second. */
static uint64_t queue_free_bytes(struct queue_spool *s)
{
	int64_t now = queue_now_ms(CLOCK_MONOTONIC);
	struct statvfs sv;

	if (!s->free_valid || now - s->free_ms >= QUEUE_FREE_MS) {
		if (fstatvfs(s->dirfd, &sv) < 0)
			return UINT64_MAX; /* cannot tell: let writes decide */
		s->free_bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
		s->free_ms = now;
		s->free_valid = true;
	}
	return s->free_bytes;
}

/* queue_spool_set_limits - see queue.h. */
void queue_spool_set_limits(struct queue_spool *s,
			    const struct queue_limits *lim)
{
	s->lim.max_size = lim->max_size;
	s->lim.minfree = lim->minfree;
}

/* queue_spool_can_accept - may a message of size bytes be added now? */
int queue_spool_can_accept(struct queue_spool *s, uint64_t size)
{
	uint64_t free;

	if (s->rdonly)
		return -EROFS;

	/*
	 * After QUEUE_FAIL_TRIP failed batches in a row, refuse for
	 * QUEUE_FAIL_HOLD_MS after the last failure; then let mail in again
	 * as a probe. One good batch clears the run; a bad one holds again.
	 */
	if (s->fail_run >= QUEUE_FAIL_TRIP &&
	    queue_now_ms(CLOCK_MONOTONIC) - s->fail_ms < QUEUE_FAIL_HOLD_MS)
		return -EIO;

	if (s->lim.max_size &&
	    (size > s->lim.max_size || s->live_bytes > s->lim.max_size - size))
		return -ENOSPC;
	free = queue_free_bytes(s);
	if (free < s->lim.minfree || free - s->lim.minfree < size)
		return -ENOSPC;
	return 0;
}

/* ---- reclaiming space ---- */

/*
 * queue_copy_forward - append the live MSG records of segment g again,
 * each followed by its state, so that g can go once they are durable.
 * XXX: the old records are read synchronously on the loop thread (up to a
 * quarter of a segment, 16 MiB by default, once per segment); a message
 * that cannot be read back marks the segment stuck, and it then pins every
 * later segment until the next restart.
 */
static void queue_copy_forward(struct queue_spool *s, struct queue_seg *g)
{
	struct queue_batch *b = &s->pending;
	struct queue_item *it;
	struct queue_ent *e;
	unsigned char *rec;
	char name[32];
	int fd;

	queue_seg_name(name, sizeof(name), g->num);
	fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		g->stuck = true;
		return;
	}

	/* The list is in arrival order, so copies keep their order. */
	for (e = s->head; e; e = e->next) {
		if (!e->m.durable || e->m.segment != g->num)
			continue;
		if (queue_batch_reserve(b, e->reclen +
					       queue_state_size(e, true)) < 0)
			break;
		rec = b->buf + b->len;
		if (queue_pread_all(fd, rec, e->reclen, e->m.offset) < 0 ||
		    !queue_msg_rec_ok(rec, e->reclen)) {
			g->stuck = true;
			break;
		}

		it = &b->items[b->nitems++];
		*it = (struct queue_item){
		    .idval = e->idval, .reloff = b->len, .copy = true};
		memcpy(it->id, e->m.id, sizeof(it->id));
		b->len += e->reclen;
		if (e->idval > b->maxid)
			b->maxid = e->idval;
		s->copying = true;

		/* The copy must stand alone once older records are gone. */
		queue_put_state(s, e, true);
	}
	close(fd);
}

/*
 * queue_reclaim - one step of reclaiming: delete the oldest segment if it
 * may go (see queue.h), or else start copying its live messages forward.
 */
static void queue_reclaim(struct queue_spool *s)
{
	struct queue_seg *g = &s->segs[0];
	char name[32];

	if (s->rdonly || s->nsegs < 2 || g->stuck)
		return;

	/* A deletion waits until the one before it is durable. */
	if (s->dir_dirty) {
		if (fsync(s->dirfd) < 0)
			return;
		s->dir_dirty = false;
	}

	if (g->live == 0) {
		if (g->maxid > s->segs[s->nsegs - 1].maxid || s->restating)
			return;
		queue_seg_name(name, sizeof(name), g->num);
		if (unlinkat(s->dirfd, name, 0) < 0 && errno != ENOENT) {
			g->stuck = true; /* XXX: kept until the next restart */
			return;
		}
		memmove(s->segs, s->segs + 1, (s->nsegs - 1) * sizeof(*g));
		s->nsegs--;
		s->st.segments_deleted++;
		s->dir_dirty = fsync(s->dirfd) < 0;
		return;
	}

	/* Copy forward only what pins newer closed segments, and is small. */
	if (s->copying || s->segs[1].num == s->seg_num ||
	    g->live_bytes * 4 >= g->size)
		return;
	queue_copy_forward(s, g);
}

/* ---- group commit ---- */

/* queue_batch_reset - empty a batch, keeping its memory. */
static void queue_batch_reset(struct queue_batch *b)
{
	b->len = 0;
	b->nitems = 0;
	b->maxid = 0;
	b->since_us = 0;
}

/*
 * queue_batch_resync - the batch b failed: append again what it said about
 * messages that stay live (their current state, once each) and its DONE
 * records. XXX: out of memory here, the disk keeps the older state, so a
 * restart may repeat a delivery or forget a hold.
 */
static void queue_batch_resync(struct queue_spool *s,
			       const struct queue_batch *b)
{
	struct queue_batch *p = &s->pending;
	const unsigned char *rec;
	struct queue_ent *e;
	uint64_t v;
	size_t len;

	for (int pass = 0; pass < 2; pass++)
		for (size_t off = 0; off < b->len; off += QUEUE_HDR + len) {
			rec = b->buf + off;
			len = queue_get32(rec + 8);
			if (rec[4] == QUEUE_REC_MSG ||
			    rec[4] == QUEUE_REC_MARK ||
			    queue_id_parse((const char *)rec + QUEUE_HDR, &v))
				continue;

			/* DONE is final: the same bytes will do. */
			if (rec[4] == QUEUE_REC_DONE) {
				if (pass == 1 ||
				    queue_batch_room(p, QUEUE_HDR + len) < 0)
					continue;
				memcpy(p->buf + p->len, rec, QUEUE_HDR + len);
				p->len += QUEUE_HDR + len;
				if (v > p->maxid)
					p->maxid = v;
				continue;
			}

			/* Pass 0 restates each message once; 1 clears marks. */
			e = queue_tab_find(s, v);
			if (!e || e->resync != (pass == 1))
				continue;
			e->resync = pass == 0;
			if (pass == 0)
				queue_put_state(s, e, true);
		}
}

/*
 * queue_batch_fail - the batch in flight failed with err: cut the segment
 * back, drop its new messages, restate the rest and tell the callbacks.
 */
static void queue_batch_fail(struct queue_spool *s, int err)
{
	struct queue_batch *b = &s->flight;
	struct queue_ent *e;

	/* The restated state goes again with the resync below. */
	if (s->restating == 2)
		s->restating = 1;

	/*
	 * Cutting back keeps the segment a clean run of confirmed records.
	 * Should the cut itself fail, the next batch goes to a new segment
	 * rather than after bytes nobody confirmed. A crash before the cut
	 * reaches the disk may bring records of this batch back: their
	 * senders were told to retry, so such mail is delivered twice, which
	 * is the worst case waxseal allows.
	 */
	if (ftruncate(s->seg_fd, (off_t)s->seg_len) < 0)
		s->seg_roll = true;
	else
		s->seg_end = s->seg_len;
	s->zero_to = 0;

	s->st.failures++;
	s->fail_run++;
	s->fail_ms = queue_now_ms(CLOCK_MONOTONIC);
	if (err == -ENOSPC)
		s->free_valid = false; /* the disk is full: look again */

	/* A failed copy leaves its message where it was, to be tried again. */
	for (size_t i = 0; i < b->nitems; i++) {
		if (b->items[i].copy)
			s->copying = false;
		else if ((e = queue_tab_find(s, b->items[i].idval)))
			queue_index_del(s, e);
	}
	queue_batch_resync(s, b);

	for (size_t i = 0; i < b->nitems; i++)
		if (!b->items[i].copy && b->items[i].cb)
			b->items[i].cb(b->items[i].arg, err, b->items[i].id);

	queue_batch_reset(b);
	s->busy = false;
}

/* queue_batch_done - the batch in flight is durable: tell its callbacks. */
static void queue_batch_done(struct queue_spool *s)
{
	struct queue_batch *b = &s->flight;
	struct queue_seg *g = &s->segs[s->nsegs - 1];
	uint64_t base = s->wr_base + s->mark_len;
	struct queue_item *it;
	struct queue_ent *e;

	s->seg_len = base + b->len;
	if (s->seg_end < s->seg_len)
		s->seg_end = s->seg_len;
	g->size = s->seg_len;
	if (b->maxid > g->maxid)
		g->maxid = b->maxid;
	s->st.batches++;
	s->st.fsyncs++;
	s->st.bytes += s->mark_len + b->len;
	s->fail_run = 0;
	if (s->restating == 2)
		s->restating = 0;

	/*
	 * New messages become durable here; copies move their message to
	 * this segment. A message already done meanwhile has no entry left.
	 */
	for (size_t i = 0; i < b->nitems; i++) {
		it = &b->items[i];
		if (it->copy)
			s->copying = false;
		else
			s->st.messages++;
		e = queue_tab_find(s, it->idval);
		if (!e)
			continue;
		if (it->copy) {
			queue_seg_live(s, e->m.segment, e->reclen, -1);
			s->st.copied_forward++;
		}
		e->m.durable = true;
		e->m.segment = s->seg_num;
		e->m.offset = base + it->reloff;
		queue_seg_live(s, s->seg_num, e->reclen, 1);
	}

	/* busy stays set so that a flush from a callback waits for us. */
	for (size_t i = 0; i < b->nitems; i++)
		if (!b->items[i].copy && b->items[i].cb)
			b->items[i].cb(b->items[i].arg, 0, b->items[i].id);

	queue_batch_reset(b);
	s->busy = false;
	queue_spool_flush(s);
}

/* queue_spool_sync_cb - fdatasync of the batch finished. */
static void queue_spool_sync_cb(void *arg, int res)
{
	struct queue_spool *s = arg;

	if (res < 0)
		queue_batch_fail(s, res);
	else
		queue_batch_done(s);
}

static void queue_spool_write_cb(void *arg, int res);

/* queue_write - one write of the batch: synchronous writes if the I/O
 * backend has them (every byte of a batch then goes through one). */
static int queue_write(struct queue_spool *s, const void *buf, size_t len,
		       uint64_t off)
{
	if (s->io.pwrite_sync)
		return s->io.pwrite_sync(s->io.ctx, s->seg_fd, buf, len, off,
					 queue_spool_write_cb, s);
	return s->io.pwrite(s->io.ctx, s->seg_fd, buf, len, off,
			    queue_spool_write_cb, s);
}

static void queue_spool_zero_cb(void *arg, int res);
static void queue_spool_zero_sync_cb(void *arg, int res);
static int queue_write_more(struct queue_spool *s);

/* What the zero writes write. */
static const unsigned char queue_zeros[QUEUE_ZERO_CHUNK];

/*
 * queue_zero_plan - whether the flight, about to be written, needs a zero
 * fill first (see the top of this file), and from where to where.
 */
static void queue_zero_plan(struct queue_spool *s)
{
	uint64_t need = s->wr_base + s->mark_len + s->flight.len;
	uint64_t to = s->wr_base + QUEUE_ZERO_AHEAD;

	s->zero_to = 0;
	if (!s->lim.zero_fill || s->zero_off || need <= s->seg_end)
		return;
	if (to > s->lim.segment_size)
		to = s->lim.segment_size;

	/* A batch as large as the reach grows the file itself. */
	if (to <= need)
		return;
	s->zero_done = s->seg_end > s->wr_base ? s->seg_end : s->wr_base;
	s->zero_to = to;
}

/* queue_zero_stop - no zero fill in this segment: write the batch. */
static int queue_zero_stop(struct queue_spool *s)
{
	s->zero_off = true;
	s->zero_to = 0;
	if (s->seg_end < s->zero_done)
		s->seg_end = s->zero_done;
	return queue_write_more(s);
}

/*
 * queue_write_more - submit the next step of the flight: the zero fill's
 * writes and fdatasync, then the unwritten rest of the MARK and the
 * batch, or the sync. The MARK, when there is one, is a write of its own.
 * With synchronous writes, the batch is durable when the last one is
 * done.
 */
static int queue_write_more(struct queue_spool *s)
{
	struct queue_batch *b = &s->flight;
	uint64_t off = s->wr_base + s->wr_done;
	size_t at;

	if (s->zero_to && s->zero_done < s->zero_to) {
		uint64_t n = s->zero_to - s->zero_done;

		if (n > QUEUE_ZERO_CHUNK)
			n = QUEUE_ZERO_CHUNK;
		return s->io.pwrite(s->io.ctx, s->seg_fd, queue_zeros,
				    (size_t)n, s->zero_done,
				    queue_spool_zero_cb, s);
	}
	if (s->zero_to)
		return s->io.fdatasync(s->io.ctx, s->seg_fd,
				       queue_spool_zero_sync_cb, s);

	if (s->wr_done < s->mark_len)
		return queue_write(s, s->mark + s->wr_done,
				   s->mark_len - s->wr_done, off);
	at = (size_t)s->wr_done - s->mark_len;
	if (at < b->len)
		return queue_write(s, b->buf + at, b->len - at, off);
	if (s->io.pwrite_sync) {
		queue_batch_done(s);
		return 0;
	}
	return s->io.fdatasync(s->io.ctx, s->seg_fd, queue_spool_sync_cb, s);
}

/* queue_spool_write_cb - a pwrite of the batch finished, maybe short. */
static void queue_spool_write_cb(void *arg, int res)
{
	struct queue_spool *s = arg;
	int r = res;

	/* A write that makes no progress would be retried for ever. */
	if (r == 0)
		r = -EIO;
	if (r < 0)
		goto fail;

	s->wr_done += (uint64_t)res;
	r = queue_write_more(s);
	if (r < 0)
		goto fail;
	return;
fail:
	queue_batch_fail(s, r);
}

/* queue_spool_zero_cb - a zero write finished, maybe short. */
static void queue_spool_zero_cb(void *arg, int res)
{
	struct queue_spool *s = arg;
	int r;

	if (res > 0) {
		s->zero_done += (uint64_t)res;
		r = queue_write_more(s);
	} else {
		r = queue_zero_stop(s);
	}
	if (r < 0)
		queue_batch_fail(s, r);
}

/* queue_spool_zero_sync_cb - the zero fill is durable, or failed. */
static void queue_spool_zero_sync_cb(void *arg, int res)
{
	struct queue_spool *s = arg;
	int r;

	if (res < 0) {
		r = queue_zero_stop(s);
	} else {
		s->seg_end = s->zero_to;
		s->zero_to = 0;
		r = queue_write_more(s);
	}
	if (r < 0)
		queue_batch_fail(s, r);
}

/* queue_spool_flush - reclaim a step, start writing the pending batch. */
void queue_spool_flush(struct queue_spool *s)
{
	struct queue_batch tmp;
	char id[QUEUE_ID_LEN + 1];
	int r;

	if (s->rdonly)
		return;
	queue_reclaim(s);
	if (s->busy || s->pending.len == 0)
		return;

	tmp = s->flight;
	s->flight = s->pending;
	s->pending = tmp;
	s->busy = true;
	if (s->restating == 1)
		s->restating = 2;

	/* Segments switch between batches, never inside one. */
	if (s->seg_roll || s->seg_len >= s->lim.segment_size) {
		r = queue_seg_next(s);
		if (r < 0)
			goto fail;
	}

	/* An empty segment behind older ones opens with a MARK. */
	s->mark_len = 0;
	if (s->seg_len == 0 && s->nsegs > 1) {
		queue_id_format(s->last_id, id);
		memcpy(s->mark + QUEUE_HDR, id, QUEUE_ID_LEN);
		queue_rec_seal(s->mark, QUEUE_REC_MARK, QUEUE_ID_LEN);
		s->mark_len = sizeof(s->mark);
		if (s->last_id > s->flight.maxid)
			s->flight.maxid = s->last_id;
	}

	s->wr_base = s->seg_len;
	s->wr_done = 0;
	queue_zero_plan(s);
	r = queue_write_more(s);
	if (r < 0)
		goto fail;
	return;
fail:
	queue_batch_fail(s, r);
}

/* queue_spool_pending_since - see queue.h. */
uint64_t queue_spool_pending_since(const struct queue_spool *s)
{
	if (s->busy || s->pending.len == 0)
		return 0;
	return s->pending.since_us ? s->pending.since_us : 1;
}

/* queue_spool_idle - true when nothing is pending or in flight. */
bool queue_spool_idle(const struct queue_spool *s)
{
	return !s->busy && s->pending.len == 0;
}

/* queue_spool_append - add a message to the pending batch. */
int queue_spool_append(struct queue_spool *s, const struct queue_msg_in *m,
		       queue_append_cb cb, void *arg, char id[QUEUE_ID_LEN + 1])
{
	struct queue_batch *b = &s->pending;
	struct queue_item *it;
	struct queue_ent *e;
	unsigned char *rec;
	uint64_t dlen;
	int64_t plen;
	char ids[QUEUE_ID_LEN + 1];
	int r;

	if (s->rdonly)
		return -EROFS;
	plen = queue_msg_size(m, &dlen);
	if (plen < 0)
		return (int)plen;
	r = queue_spool_can_accept(s, QUEUE_HDR + (uint64_t)plen);
	if (r < 0)
		return r;

	/* Only a damaged spool can hold the largest ID; never wrap past it. */
	if (s->last_id == UINT64_MAX)
		return -EOVERFLOW;
	r = queue_batch_reserve(b, QUEUE_HDR + (size_t)plen);
	if (r < 0)
		return r;

	/* Encode into the batch, then index what was encoded. */
	queue_id_format(queue_id_next(s), ids);
	rec = b->buf + b->len;
	queue_msg_encode(rec + QUEUE_HDR, m, ids, dlen);
	queue_rec_seal(rec, QUEUE_REC_MSG, (size_t)plen);
	r = queue_msg_decode(rec + QUEUE_HDR, (size_t)plen, &e);
	if (r < 0)
		return r;
	r = queue_index_add(s, e);
	if (r < 0) {
		queue_ent_free(e);
		return r;
	}

	it = &b->items[b->nitems++];
	*it = (struct queue_item){
	    .cb = cb, .arg = arg, .idval = e->idval, .reloff = b->len};
	memcpy(it->id, ids, sizeof(ids));
	b->len += e->reclen;
	if (e->idval > b->maxid)
		b->maxid = e->idval;
	if (s->free_valid)
		s->free_bytes -=
		    s->free_bytes < e->reclen ? s->free_bytes : e->reclen;
	if (id)
		memcpy(id, ids, sizeof(ids));
	return 0;
}

/* queue_ent_get - the live entry for id of a writable spool, or -errno. */
static int queue_ent_get(struct queue_spool *s, const char *id,
			 struct queue_ent **out)
{
	if (s->rdonly)
		return -EROFS;
	*out = (struct queue_ent *)queue_spool_find(s, id);
	return *out ? 0 : -ENOENT;
}

/* queue_spool_done - append a DONE record and drop id from the index. */
int queue_spool_done(struct queue_spool *s, const char *id)
{
	struct queue_ent *e;
	unsigned char *rec;
	int r;

	r = queue_ent_get(s, id, &e);
	if (r < 0)
		return r;
	rec = queue_rec_open(s, e, QUEUE_ID_LEN);
	if (!rec)
		return -ENOMEM;
	queue_rec_close(s, e, rec, QUEUE_REC_DONE, QUEUE_ID_LEN);
	queue_index_del(s, e);
	return 0;
}

/* queue_spool_rcpt_done - mark recipients done, append a RCPT record. */
int queue_spool_rcpt_done(struct queue_spool *s, const char *id,
			  const size_t *idx, size_t n)
{
	struct queue_ent *e;
	unsigned char *rec, *p;
	size_t most, k = 0;
	int r;

	r = queue_ent_get(s, id, &e);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		if (idx[i] >= e->m.nrcpt)
			return -EINVAL;

	/* Room for every recipient still pending, at most. */
	most = n < e->m.npending ? n : e->m.npending;
	if (most == 0)
		return 0;
	rec = queue_rec_open(s, e, QUEUE_ID_LEN + 4 + 4 * most);
	if (!rec)
		return -ENOMEM;

	p = rec + QUEUE_HDR + QUEUE_ID_LEN + 4;
	for (size_t i = 0; i < n; i++) {
		if (e->m.rcpt_done[idx[i]])
			continue;
		e->m.rcpt_done[idx[i]] = 1;
		e->m.npending--;
		queue_put32(p + 4 * k++, (uint32_t)idx[i]);
	}
	if (k == 0)
		return 0;
	queue_put32(rec + QUEUE_HDR + QUEUE_ID_LEN, (uint32_t)k);
	queue_rec_close(s, e, rec, QUEUE_REC_RCPT, QUEUE_ID_LEN + 4 + 4 * k);
	return 0;
}

/* queue_spool_defer - set id's schedule, append a DEFER record. */
int queue_spool_defer(struct queue_spool *s, const char *id, int64_t next_ms,
		      uint32_t attempts)
{
	struct queue_ent *e;
	int64_t old_ms;
	uint32_t old_n;
	int r;

	r = queue_ent_get(s, id, &e);
	if (r < 0)
		return r;

	old_ms = e->m.next_ms;
	old_n = e->m.attempts;
	e->m.next_ms = next_ms;
	e->m.attempts = attempts;
	r = queue_put_defer(s, e);
	if (r < 0) {
		e->m.next_ms = old_ms;
		e->m.attempts = old_n;
	}
	return r;
}

/* queue_spool_hold - hold or release id, append a HOLD record. */
int queue_spool_hold(struct queue_spool *s, const char *id, bool held)
{
	struct queue_ent *e;
	bool old;
	int r;

	r = queue_ent_get(s, id, &e);
	if (r < 0)
		return r;

	old = e->m.held;
	e->m.held = held;
	r = queue_put_hold(s, e);
	if (r < 0)
		e->m.held = old;
	return r;
}

/* ---- lookups ---- */

/* queue_spool_count - number of live messages. */
size_t queue_spool_count(const struct queue_spool *s)
{
	return s->count;
}

/* queue_spool_foreach - call fn for each live message, oldest first. */
int queue_spool_foreach(struct queue_spool *s,
			int (*fn)(void *arg, const struct queue_msg *m),
			void *arg)
{
	int r;

	for (struct queue_ent *e = s->head; e; e = e->next)
		if ((r = fn(arg, &e->m)))
			return r;
	return 0;
}

/* queue_spool_find - the live message id, or NULL. */
const struct queue_msg *queue_spool_find(struct queue_spool *s, const char *id)
{
	struct queue_ent *e;
	uint64_t v;

	if (!id || strnlen(id, QUEUE_ID_LEN + 1) != QUEUE_ID_LEN ||
	    queue_id_parse(id, &v) < 0)
		return NULL;
	e = queue_tab_find(s, v);
	return e ? &e->m : NULL;
}

/* queue_spool_read - read the data of a durable live message. */
int queue_spool_read(struct queue_spool *s, const char *id, char **buf,
		     size_t *len)
{
	const struct queue_msg *m = queue_spool_find(s, id);
	const struct queue_ent *e = (const struct queue_ent *)m;
	unsigned char *rec = NULL;
	char name[32];
	int fd = -1, r;

	if (!m)
		return -ENOENT;
	if (!m->durable)
		return -EAGAIN;

	if (!s->rdonly && m->segment == s->seg_num) {
		fd = s->seg_fd;
	} else {
		queue_seg_name(name, sizeof(name), m->segment);
		fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
	}

	r = -ENOMEM;
	rec = malloc(e->reclen);
	if (!rec)
		goto fail;
	r = queue_pread_all(fd, rec, e->reclen, m->offset);
	if (r < 0)
		goto fail;

	/* The disk may have changed under us since recovery. */
	r = -EIO;
	if (!queue_msg_rec_ok(rec, e->reclen))
		goto fail;

	memmove(rec, rec + e->data_off, m->size);
	*buf = (char *)rec;
	*len = m->size;
	if (fd != s->seg_fd)
		close(fd);
	return 0;
fail:
	free(rec);
	if (fd != s->seg_fd)
		close(fd);
	return r;
}

/* queue_spool_stats - counters since open. */
void queue_spool_stats(const struct queue_spool *s, struct queue_stats *st)
{
	*st = s->st;
}
