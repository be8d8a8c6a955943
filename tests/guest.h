/* tests/guest.h — a fake guest for live-migration tests: writer threads that keep changing pages
 * (each write stamps the page with its index and a version), and the callbacks a VMM would
 * implement: stop (pause the writers), resume, throttle (writers sleep a share of their time). */
#ifndef MFD_TEST_GUEST_H
#define MFD_TEST_GUEST_H

#include <time.h>
#include "tutil.h"

struct guest {
	uint8_t *mem;
	size_t len;		/* bytes the writers sweep (from mem) */
	unsigned nthreads;
	struct mfd_session *mark;	/* manual tracking: mark every write; NULL otherwise */
	int block;
	unsigned pages_per_ms;	/* per thread; 0 = as fast as possible */
	bool sequential;	/* sweep pages in order (every page every sweep) instead of random */
	pthread_t t[8];
	int pause_req;		/* atomic */
	int paused;		/* atomic: writers parked */
	int quit;		/* atomic */
	unsigned throttle;	/* atomic */
	unsigned throttle_max;	/* atomic */
	int stops, resumes;	/* atomic */
	int cancel_in_stop;	/* test: cancel this session from inside stop() */
	void (*on_stop)(void);	/* test: called in stop() once the writers are parked */
	struct mfd_session *cancel_target;
	uint64_t writes;	/* atomic */
};

static inline uint64_t g_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Sleep, but wake within 1 ms when a pause or quit is requested (as a VMM kicks its vCPUs). */
static void g_nap(struct guest *g, uint64_t us)
{
	uint64_t end = g_now_us() + us;
	while (!__atomic_load_n(&g->pause_req, __ATOMIC_ACQUIRE) &&
	       !__atomic_load_n(&g->quit, __ATOMIC_ACQUIRE)) {
		uint64_t now = g_now_us();
		if (now >= end)
			break;
		usleep((useconds_t)(end - now < 1000 ? end - now : 1000));
	}
}

static void *g_writer(void *arg)
{
	struct guest *g = ((void **)arg)[0];
	unsigned id = (unsigned)(uintptr_t)((void **)arg)[1];
	free(arg);
	size_t pages = g->len / 4096;
	uint64_t version = 1, x = 0x9e3779b9u * (id + 1);
	uint64_t next_due = g_now_us(), done = 0;
	while (!__atomic_load_n(&g->quit, __ATOMIC_ACQUIRE)) {
		if (__atomic_load_n(&g->pause_req, __ATOMIC_ACQUIRE)) {
			__atomic_fetch_add(&g->paused, 1, __ATOMIC_ACQ_REL);
			while (__atomic_load_n(&g->pause_req, __ATOMIC_ACQUIRE) &&
			       !__atomic_load_n(&g->quit, __ATOMIC_ACQUIRE))
				usleep(100);
			__atomic_fetch_sub(&g->paused, 1, __ATOMIC_ACQ_REL);
			next_due = g_now_us();
			continue;
		}
		uint64_t w0 = g_now_us();
		for (int k = 0; k < 16; k++) {
			/* Threads interleave over all pages: thread id takes every nthreads-th page. */
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			size_t p;
			if (g->sequential)	/* thread id sweeps pages id, id + n, id + 2n, ... */
				p = (id + (size_t)(done + k) * g->nthreads) % pages;
			else
				p = (size_t)(x % pages);
			uint64_t *w = (uint64_t *)(g->mem + p * 4096);
			__atomic_store_n(&w[0], p, __ATOMIC_RELAXED);
			__atomic_store_n(&w[1], version++, __ATOMIC_RELAXED);
			__atomic_store_n(&w[2 + (version % 500)], x, __ATOMIC_RELAXED);
			if (g->mark)
				mfd_session_mark_dirty(g->mark, g->block, p * 4096, 4096);
		}
		__atomic_fetch_add(&g->writes, 16, __ATOMIC_RELAXED);
		done += 16;
		unsigned pct = __atomic_load_n(&g->throttle, __ATOMIC_RELAXED);
		if (g->pages_per_ms) {
			/* Paced: 16 pages per slot at the configured rate, slowed by the throttle to
			 * (100 - pct)%; time lost to naps is not made up later (no debt). */
			uint64_t slot_us = 16 * 1000 * 100 / ((uint64_t)g->pages_per_ms * (100 - pct));
			uint64_t now = g_now_us();
			next_due = (next_due + slot_us > now) ? next_due + slot_us : now;
			if (next_due > now)
				g_nap(g, next_due - now);
		} else if (pct) {	/* unpaced: run (100 - pct)% of the time */
			uint64_t work = g_now_us() - w0 + 1;
			g_nap(g, work * pct / (100 - pct));
		}
	}
	(void)id;
	return NULL;
}

static inline void guest_start(struct guest *g)
{
	for (unsigned i = 0; i < g->nthreads; i++) {
		void **a = malloc(2 * sizeof(void *));
		a[0] = g;
		a[1] = (void *)(uintptr_t)i;
		pthread_create(&g->t[i], NULL, g_writer, a);
	}
}

static inline void guest_stop_threads(struct guest *g)
{
	__atomic_store_n(&g->quit, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < g->nthreads; i++)
		pthread_join(g->t[i], NULL);
}

static int g_stop(void *o)
{
	struct guest *g = o;
	__atomic_store_n(&g->pause_req, 1, __ATOMIC_RELEASE);
	while (__atomic_load_n(&g->paused, __ATOMIC_ACQUIRE) < (int)g->nthreads)
		usleep(50);
	__atomic_fetch_add(&g->stops, 1, __ATOMIC_RELAXED);
	if (g->on_stop)
		g->on_stop();
	if (g->cancel_in_stop)
		mfd_session_cancel(g->cancel_target);
	return 0;
}

static void g_resume(void *o)
{
	struct guest *g = o;
	__atomic_fetch_add(&g->resumes, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&g->pause_req, 0, __ATOMIC_RELEASE);
}

static void g_throttle(void *o, unsigned pct)
{
	struct guest *g = o;
	__atomic_store_n(&g->throttle, pct, __ATOMIC_RELAXED);
	if (pct > __atomic_load_n(&g->throttle_max, __ATOMIC_RELAXED))
		__atomic_store_n(&g->throttle_max, pct, __ATOMIC_RELAXED);
}

static inline struct mfd_callbacks guest_callbacks(struct guest *g)
{
	return (struct mfd_callbacks){ .stop = g_stop, .resume = g_resume, .throttle = g_throttle,
				       .opaque = g };
}

#endif
