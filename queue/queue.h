/*
 * queue - waxseal's spool: durable, append-only storage of accepted mail
 * and the in-memory index of live messages.
 *
 * On disk the spool is a directory of segment files, seg-NNNNNNNN.log,
 * each a sequence of records:
 *
 *	magic "WXR1" | type u8 | reserved u8[3] | payload length u32 |
 *	crc32c u32 of (type, reserved, length, payload) | payload
 *
 * (integers little-endian). A MSG record holds a whole message with its
 * envelope; a DONE record says a message is no longer live; RCPT, DEFER
 * and HOLD records carry its delivery state (recipients done, schedule,
 * hold flag); a MARK record opens a segment with the largest queue ID
 * taken so far. Records are only appended; a segment is closed when it
 * reaches queue_segment_size.
 *
 * Group commit: queue_spool_append() copies the record into the pending
 * batch and returns at once. queue_spool_flush(), which the daemon calls
 * once per loop iteration, writes the whole batch with one write and one
 * fdatasync through the caller's struct queue_io, and when the disk has
 * confirmed it calls every batched record's callback. At most one batch is
 * in flight; records appended meanwhile wait for the next.
 *
 * Recovery: queue_spool_open() scans every segment, stops each at the
 * first record whose magic, length or checksum is wrong, cuts a torn tail
 * off the newest segment (ftruncate), and rebuilds the index. A message is
 * live if its MSG record is intact and no DONE record follows it. Records
 * are applied in log order (segments by number, then by offset): a MSG
 * for an ID already live (a copy made by reclaiming, below) moves the
 * message there and keeps its state so far; RCPT, DEFER and HOLD update a
 * live message; a state or DONE record for an ID that is not live is
 * ignored.
 *
 * Reclaiming space: a closed segment is deleted when none of its MSG
 * records is live, only if it is the oldest segment on disk (a DONE in
 * segment N for a message in segment M < N must outlive M), and only once
 * the newest segment holds a durable record with an ID at least as large
 * as any in it (so that IDs stay unique after a restart: see MARK). When
 * the oldest segment's live messages fill less than a quarter of it and
 * a newer closed segment exists, they are copied forward: their MSG
 * records are appended again, byte for byte, each followed by RCPT, DEFER
 * and HOLD records that restate its current state (the copy must stand
 * alone once the records before it are deleted); once that batch is
 * durable they live in the new segment and the old one goes.
 * queue_spool_flush() does this work, at most one deletion (and one
 * directory fsync) per call; copying reads the old records synchronously
 * on the calling thread.
 *
 * Errors are negative errno. A failed write or fdatasync fails the whole
 * batch (every callback gets the error), the segment is cut back to its
 * last durable length, and later appends are tried again: nothing that was
 * confirmed before is touched.
 *
 * Failing disk: after 3 batches in a row have failed, can_accept (and so
 * append) answers -EIO until 1 s has passed since the last failure; then
 * mail is let in again as a probe, and one good batch clears the state.
 *
 * Threads: a spool belongs to one thread (the loop thread); the struct
 * queue_io callbacks must be called on that thread. Append callbacks run
 * from inside those io callbacks (or from queue_spool_flush when a
 * submission fails at once); they may append, flush and mark messages
 * done, but must not close the spool.
 */
#ifndef WAXSEAL_QUEUE_H
#define WAXSEAL_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Queue IDs are 16 upper-case hex digits (time-ordered, unique). */
#define QUEUE_ID_LEN 16

/*
 * Record types (the type byte of the header). Types not listed here are
 * reserved for later records; recovery checks their checksum and
 * otherwise skips them.
 */
#define QUEUE_REC_MSG 1u
#define QUEUE_REC_DONE 2u
#define QUEUE_REC_RCPT 3u  /* some recipients of a message are done */
#define QUEUE_REC_DEFER 4u /* next attempt time and attempt count */
#define QUEUE_REC_HOLD 5u  /* held or released */
#define QUEUE_REC_MARK 6u  /* largest queue ID taken, opens a segment */

/* Largest record payload the spool writes or believes on recovery. */
#define QUEUE_REC_MAX (1u << 30)

/* MSG record flags, from the ESMTP parameters of the transaction. */
#define QUEUE_F_8BITMIME 0x1u
#define QUEUE_F_SMTPUTF8 0x2u

typedef void (*queue_io_cb)(void *arg, int res);

/*
 * struct queue_io - asynchronous file I/O supplied by the caller (the
 * daemon's io_uring or libuv backend, or a synchronous one in tests).
 * pwrite: write len bytes of buf at off; cb gets bytes written or -errno
 * (a short write is completed by the spool). fdatasync: cb gets 0 or
 * -errno. Both return 0 when submitted or -errno; buf stays valid and
 * unmodified until cb runs. cb must not run before the call returns.
 */
struct queue_io {
	void *ctx;
	int (*pwrite)(void *ctx, int fd, const void *buf, size_t len,
		      uint64_t off, queue_io_cb cb, void *arg);
	int (*fdatasync)(void *ctx, int fd, queue_io_cb cb, void *arg);

	/*
	 * Optional (NULL: pwrite then fdatasync): pwrite whose bytes, when
	 * cb reports them written, are as durable as after fdatasync (an
	 * io_uring write with RWF_DSYNC). One operation instead of two,
	 * and so one trip through the loop less per batch.
	 */
	int (*pwrite_sync)(void *ctx, int fd, const void *buf, size_t len,
			   uint64_t off, queue_io_cb cb, void *arg);
};

/* What a new message brings; all pointers are borrowed for the call. */
struct queue_msg_in {
	const char *sender;             /* "" for the null sender */
	const char *const *rcpts;
	size_t nrcpt;
	const struct iovec *data;       /* the message, CRLF lines, unstuffed */
	int ndata;
	int64_t arrival_ms;             /* Unix time in milliseconds */
	uint32_t flags;                 /* QUEUE_F_* */
};

/*
 * A live message in the index; owned by the spool. The pointer and what it
 * points to stay valid until the message is done (or its append fails) or
 * the spool is closed; the state fields change with the calls below.
 */
struct queue_msg {
	char id[QUEUE_ID_LEN + 1];
	char *sender;
	char **rcpts;
	size_t nrcpt;
	uint64_t size;                  /* bytes of message data */
	int64_t arrival_ms;
	uint32_t flags;
	uint32_t segment;               /* where the MSG record is */
	uint64_t offset;                /* of the record header */
	bool durable;                   /* false until its batch is synced */
	/* Delivery state, from RCPT, DEFER and HOLD records: */
	uint8_t *rcpt_done;             /* nrcpt flags: 1 = delivered/bounced */
	size_t npending;                /* recipients not yet done */
	int64_t next_ms;                /* Unix ms of next attempt; 0: now */
	uint32_t attempts;              /* delivery attempts so far */
	bool held;                      /* on hold until released */
};

struct queue_limits {
	uint64_t segment_size;          /* close a segment past this size */
	uint64_t max_size;              /* 0: no limit on live bytes */
	uint64_t minfree;               /* refuse when the disk has less */
	bool zero_fill;                 /* write zeros ahead of the data, so
					 * that a sync rarely grows the file
					 * (see queue.c); the daemon's choice */
};

struct queue_spool;

/* Called when the record is durable (res 0) or failed (-errno). */
typedef void (*queue_append_cb)(void *arg, int res, const char *id);

/*
 * queue_spool_open - create dir if needed, recover it, and return a spool
 * in *out. io may be NULL for a read-only spool (listing, inspection):
 * appends then fail with -EROFS and nothing on disk is changed, not even a
 * torn tail. Returns 0 or -errno, with a message in err; -EBUSY when
 * another read-write spool holds the directory (flock). Only the last
 * component of dir is created.
 */
int queue_spool_open(struct queue_spool **out, const char *dir,
		     const struct queue_limits *lim, const struct queue_io *io,
		     char *err, size_t errlen);

/*
 * queue_spool_close - release the spool. Pending records that were never
 * flushed are dropped (their callbacks are not called); the daemon flushes
 * and waits for queue_spool_idle() before it closes.
 */
void queue_spool_close(struct queue_spool *s);

/*
 * queue_spool_append - add a message. Its new queue ID is written to id
 * at once (for logging); cb(arg, res, id) follows from a later flush.
 * Returns 0, -ENOSPC when the spool is over its limits (answer 452), or
 * -EROFS for a read-only spool; also -EIO while the disk keeps failing
 * (see queue_spool_can_accept), -EINVAL (no sender, no recipients),
 * -EMSGSIZE (record larger than QUEUE_REC_MAX), -EOVERFLOW (the spool
 * holds ID FFFFFFFFFFFFFFFF, so no larger one is left) and -ENOMEM. The
 * message is in the index (durable false) from the return until its
 * batch fails.
 */
int queue_spool_append(struct queue_spool *s, const struct queue_msg_in *m,
		       queue_append_cb cb, void *arg,
		       char id[QUEUE_ID_LEN + 1]);

/*
 * queue_spool_done - append a DONE record for id (delivered, bounced or
 * deleted) and drop it from the index. 0, -ENOENT or -EROFS.
 */
int queue_spool_done(struct queue_spool *s, const char *id);

/*
 * queue_spool_rcpt_done - mark recipients idx[0..n) of id done (delivered
 * or bounced). Updates the index at once and appends one RCPT record, with
 * the recipients that were not yet done, to the pending batch; there is no
 * callback: the record rides the next group commit, and a crash before it
 * is durable repeats a delivery, never loses one. Marking a recipient done
 * twice is harmless (no record when nothing changes). The message stays
 * live even when npending reaches 0: the caller queues a bounce if it
 * must, then calls queue_spool_done. 0, -ENOENT, -EINVAL (an index out of
 * range; nothing is changed), -EROFS or -ENOMEM (nothing is changed).
 */
int queue_spool_rcpt_done(struct queue_spool *s, const char *id,
			  const size_t *idx, size_t n);

/*
 * queue_spool_defer - record the next attempt time (Unix ms) and the
 * attempt count of id: updates the index, appends a DEFER record, no
 * callback (as queue_spool_rcpt_done). 0, -ENOENT, -EROFS, -ENOMEM.
 */
int queue_spool_defer(struct queue_spool *s, const char *id,
		      int64_t next_ms, uint32_t attempts);

/*
 * queue_spool_hold - put id on hold or release it: updates the index,
 * appends a HOLD record, no callback. 0, -ENOENT, -EROFS, -ENOMEM.
 */
int queue_spool_hold(struct queue_spool *s, const char *id, bool held);

/*
 * queue_spool_flush - start writing the pending batch if none is in flight.
 * When a batch completes and another is pending, the spool starts it by
 * itself; flushing once per loop iteration is still what starts the first.
 * Each call also does one step of reclaiming (see the top of this file):
 * it deletes the oldest segment if it may go, or starts copying its last
 * live messages forward.
 *
 * When a batch fails, the state records and DONE records it carried are
 * appended again (as the current state of each message still live), so
 * that the disk catches up with the index at the next good batch.
 */
void queue_spool_flush(struct queue_spool *s);

/*
 * queue_spool_pending_since - when a flush now would start a batch: the
 * CLOCK_MONOTONIC time, in microseconds, at which its first record was
 * appended; 0 when nothing is pending or a batch is in flight (a flush
 * would start nothing).
 */
uint64_t queue_spool_pending_since(const struct queue_spool *s);

/* queue_spool_idle - true when nothing is pending or in flight. */
bool queue_spool_idle(const struct queue_spool *s);

/*
 * queue_spool_can_accept - 0 if a message of size bytes may be added now,
 * -ENOSPC if it would pass max_size or minfree (answer 452 4.3.1), or -EIO
 * while the disk keeps failing (answer 451 4.3.0).
 */
int queue_spool_can_accept(struct queue_spool *s, uint64_t size);

/*
 * queue_spool_set_limits - take max_size and minfree from lim (a reload);
 * the segment size and zero fill stay as opened.
 */
void queue_spool_set_limits(struct queue_spool *s,
			    const struct queue_limits *lim);

/* queue_spool_count - number of live messages. */
size_t queue_spool_count(const struct queue_spool *s);

/*
 * queue_spool_foreach - call fn for each live message, oldest first (in
 * ID order, which is arrival order, the same after a restart); fn
 * must not add or remove messages. Stops early when fn returns non-zero
 * and returns that value.
 */
int queue_spool_foreach(struct queue_spool *s,
			int (*fn)(void *arg, const struct queue_msg *m),
			void *arg);

/*
 * queue_spool_find - the live message id, or NULL. A hash lookup, cheap
 * enough to call per delivery attempt.
 */
const struct queue_msg *queue_spool_find(struct queue_spool *s,
					 const char *id);

/*
 * queue_spool_read - read the message data of a durable live message into
 * a new malloc'd buffer (*buf, *len; the caller frees). Synchronous: for
 * the command line and tests. 0, -ENOENT, -EIO (checksum), -EAGAIN (not
 * yet durable) or -errno.
 */
int queue_spool_read(struct queue_spool *s, const char *id, char **buf,
		     size_t *len);

struct queue_stats {
	uint64_t messages;      /* MSG records confirmed durable */
	uint64_t batches;       /* batches written */
	uint64_t fsyncs;        /* fdatasync calls completed */
	uint64_t bytes;         /* bytes written */
	uint64_t failures;      /* batches that failed */
	/* From recovery at open: */
	uint64_t recovered_cut_bytes; /* torn tail cut off the newest
				       * segment (read-only: left in place) */
	uint64_t corrupt_records;     /* records skipped for a damaged
				       * payload, older segments abandoned
				       * at a bad header, and records with a
				       * good checksum that could not be
				       * decoded */
	uint64_t skipped_records;     /* records of an unknown type */
	/* Reclaiming: */
	uint64_t segments_deleted;    /* segment files unlinked */
	uint64_t copied_forward;      /* messages copied forward (durable) */
};

/* queue_spool_stats - counters since open. */
void queue_spool_stats(const struct queue_spool *s, struct queue_stats *st);

/* queue_crc32c - CRC-32C (Castagnoli) of buf, continuing from crc. */
uint32_t queue_crc32c(uint32_t crc, const void *buf, size_t len);

/* queue_crc32c_sw - the same without CPU instructions (tests compare). */
uint32_t queue_crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
