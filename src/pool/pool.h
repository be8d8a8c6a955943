/* pool — N worker threads, each bound to one channel, fed by per-worker job queues.
 *
 * The pool moves opaque fixed-size jobs; it does not know what is in them.  submit() hands a job
 * to the least-loaded worker and blocks while every queue is full (back-pressure); submit_to()
 * targets one worker (e.g. a SYNC marker that must travel on every channel, in order after the
 * jobs queued before it).  sync() is a barrier: it returns when every queue is empty and every
 * worker idle.  The first job that fails records its error, stops every worker (queued jobs are
 * dropped, each handed to drop() so that what it owns is released), and calls on_fail once so the owner can unblock workers stuck in I/O; submit/sync
 * then return that error.  destroy() joins every thread. */
#ifndef MFD_POOL_H
#define MFD_POOL_H

#include <stddef.h>
#include "core/err.h"

struct mfd__pool;

/* Process one job on worker `index`.  Returns 0 or a negative code; on failure it should have
 * recorded a detailed message in the pool's errbox (else the pool records a generic one). */
typedef int (*mfd__pool_fn)(void *owner, unsigned index, void *job);

struct mfd__pool_cfg {
	unsigned workers;		/* 1..MFD_MAX_CHANNELS */
	size_t job_size;		/* bytes copied per job */
	unsigned queue_depth;		/* jobs per worker queue, >= 1 */
	mfd__pool_fn fn;
	/* A queued job that will never run (the pool failed): release what it owns.  Called
	 * with the pool's lock held, so it must only free memory.  May be NULL. */
	void (*drop)(void *owner, void *job);
	void *owner;			/* passed to fn, drop and on_fail */
	void (*on_fail)(void *owner);	/* called once, from the failing thread, without locks */
	struct mfd__errbox *errbox;	/* the owner's shared first-error record */
	/* If set: each worker adds the CPU time it spent (its thread's, job by job) here.
	 * Atomic (stats only). */
	uint64_t *cpu_ns;
};

int mfd__pool_create(struct mfd__pool **out, const struct mfd__pool_cfg *cfg);
int mfd__pool_submit(struct mfd__pool *p, const void *job);
int mfd__pool_submit_to(struct mfd__pool *p, unsigned index, const void *job);
int mfd__pool_sync(struct mfd__pool *p);
/* Record failure from outside (cancel, main channel error): stops workers, calls on_fail. */
void mfd__pool_fail(struct mfd__pool *p, int code);
/* The same without calling on_fail: for an owner that already did what on_fail does and holds
 * its own lock (which on_fail may take). */
void mfd__pool_stop(struct mfd__pool *p, int code);
/* Stop (dropping queued jobs only if the pool failed; otherwise drains them), join, free. */
void mfd__pool_destroy(struct mfd__pool *p);
/* With cfg.cpu_ns: add the CPU time the calling worker used since its last checkpoint.  Called
 * after every job, and from inside a job that runs long (a receiver runs until its channel's end
 * of stream).  On a thread that is not a pool worker it does nothing. */
void mfd__pool_cpu_checkpoint(void);

#endif
