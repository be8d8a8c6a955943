/* core/sync — a barrier that a failure can break, and a rate limiter. */
#ifndef MFD_CORE_SYNC_H
#define MFD_CORE_SYNC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* A reusable barrier for `parties` threads.  A party may leave for good (leave()); abort() makes
 * every present and future wait return -1.  All fields protected by lock. */
struct mfd__barrier {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned parties;
	unsigned arrived;
	uint64_t generation;
	bool aborted;
};

void mfd__barrier_init(struct mfd__barrier *b, unsigned parties);
void mfd__barrier_destroy(struct mfd__barrier *b);
int mfd__barrier_wait(struct mfd__barrier *b);	/* 0, or -1 when aborted */
void mfd__barrier_leave(struct mfd__barrier *b);
void mfd__barrier_abort(struct mfd__barrier *b);

/* A shared pacing clock: each caller reserves its bytes' slot on one timeline and sleeps until
 * the slot starts, so all channels together stay at `rate_bps`.  A burst of up to 50 ms is
 * allowed after idle time.  The rate may change while senders wait (an operator's new cap): the
 * timeline starts afresh and every sleeping sender reserves its slot again at the new rate, so
 * slots taken at a low rate do not hold up a higher one. */
struct mfd__ratelimit {
	pthread_mutex_t lock;
	uint64_t rate_bps;	/* 0 = unlimited.  Written under lock by mfd__ratelimit_set (any
				 * thread); read atomically (relaxed) without it by every wait */
	uint64_t generation;	/* bumped under lock with each new rate; read atomically
				 * (relaxed) by sleeping senders, which then reserve again */
	uint64_t next_ns;	/* protected by lock */
};

void mfd__ratelimit_init(struct mfd__ratelimit *r, uint64_t rate_bps);
void mfd__ratelimit_destroy(struct mfd__ratelimit *r);
/* Change the rate (0: unlimited).  Any thread, any time. */
void mfd__ratelimit_set(struct mfd__ratelimit *r, uint64_t rate_bps);
/* Wait for the right to send `bytes`.  Sleeps in slices, returning early (-1) once *abort
 * (read atomically) becomes non-zero. */
int mfd__ratelimit_wait(struct mfd__ratelimit *r, uint64_t bytes, const int *abort);

#endif
