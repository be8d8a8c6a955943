/* core/sync — see sync.h. */
#include <time.h>
#include "core/sync.h"
#include "core/util.h"

void mfd__barrier_init(struct mfd__barrier *b, unsigned parties)
{
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	b->parties = parties;
	b->arrived = 0;
	b->generation = 0;
	b->aborted = false;
}

void mfd__barrier_destroy(struct mfd__barrier *b)
{
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
}

/* Called with the lock held: open the barrier if everyone present has arrived. */
static void release_if_complete(struct mfd__barrier *b)
{
	if (b->arrived > 0 && b->arrived >= b->parties) {
		b->arrived = 0;
		b->generation++;
		pthread_cond_broadcast(&b->cond);
	}
}

int mfd__barrier_wait(struct mfd__barrier *b)
{
	pthread_mutex_lock(&b->lock);
	uint64_t gen = b->generation;
	b->arrived++;
	release_if_complete(b);
	while (gen == b->generation && !b->aborted)
		pthread_cond_wait(&b->cond, &b->lock);
	int rc = (gen == b->generation && b->aborted) ? -1 : 0;
	pthread_mutex_unlock(&b->lock);
	return rc;
}

void mfd__barrier_leave(struct mfd__barrier *b)
{
	pthread_mutex_lock(&b->lock);
	if (b->parties)
		b->parties--;
	release_if_complete(b);
	pthread_mutex_unlock(&b->lock);
}

void mfd__barrier_abort(struct mfd__barrier *b)
{
	pthread_mutex_lock(&b->lock);
	b->aborted = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

void mfd__ratelimit_init(struct mfd__ratelimit *r, uint64_t rate_bps)
{
	pthread_mutex_init(&r->lock, NULL);
	r->rate_bps = rate_bps;
	r->next_ns = 0;
}

void mfd__ratelimit_destroy(struct mfd__ratelimit *r)
{
	pthread_mutex_destroy(&r->lock);
}

void mfd__ratelimit_set(struct mfd__ratelimit *r, uint64_t rate_bps)
{
	pthread_mutex_lock(&r->lock);
	__atomic_store_n(&r->rate_bps, rate_bps, __ATOMIC_RELAXED);
	__atomic_store_n(&r->generation, r->generation + 1, __ATOMIC_RELAXED);
	r->next_ns = 0;		/* a fresh timeline at the new rate */
	pthread_mutex_unlock(&r->lock);
}

int mfd__ratelimit_wait(struct mfd__ratelimit *r, uint64_t bytes, const int *abort)
{
	const uint64_t burst_ns = 50000000ull;
reserve:
	if (!__atomic_load_n(&r->rate_bps, __ATOMIC_RELAXED))
		return 0;	/* unlimited: no lock per packet */
	uint64_t now = mfd__now_ns();
	pthread_mutex_lock(&r->lock);
	uint64_t rate = r->rate_bps, gen = r->generation;
	if (!rate) {
		pthread_mutex_unlock(&r->lock);
		return 0;
	}
	uint64_t start = r->next_ns + burst_ns < now ? now - burst_ns : r->next_ns;
	/* bytes * 1e9 / rate without overflow for any realistic packet size and rate. */
	r->next_ns = start + (uint64_t)((double)bytes * 1e9 / (double)rate);
	pthread_mutex_unlock(&r->lock);
	while ((now = mfd__now_ns()) < start) {
		if (__atomic_load_n(abort, __ATOMIC_ACQUIRE))
			return -1;
		if (__atomic_load_n(&r->generation, __ATOMIC_RELAXED) != gen)
			goto reserve;	/* a new rate: this slot was taken at the old one */
		uint64_t left = start - now, slice = left < 10000000ull ? left : 10000000ull;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)slice };
		nanosleep(&ts, NULL);
	}
	return 0;
}
