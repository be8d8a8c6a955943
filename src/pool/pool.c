/* pool — see pool.h for the contract.
 *
 * One mutex guards every queue; jobs are large units of work (a batch of pages is hundreds of
 * KiB), so the lock is taken a few thousand times per second at most and never contended for
 * long.  A job is copied out of its ring slot before it runs, so the slot is free while the
 * worker does I/O. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "core/util.h"
#include "pool/pool.h"

struct worker {
	struct mfd__pool *pool;
	unsigned index;
	pthread_t thread;
	bool started;
	pthread_cond_t wake;		/* signalled when a job arrives or the pool stops */
	unsigned head, count;		/* ring position and fill; protected by pool->lock */
	bool busy;			/* running a job; protected by pool->lock */
	unsigned char *ring;		/* queue_depth * job_size; slots protected by pool->lock */
	unsigned char *job;		/* worker-private copy of the running job */
	uint64_t cpu_mark;		/* worker-private: thread CPU time already added to cfg.cpu_ns */
};

struct mfd__pool {
	struct mfd__pool_cfg cfg;	/* set at create, then read-only */
	pthread_mutex_t lock;		/* lock order: pool->lock, then errbox->lock */
	pthread_cond_t space;		/* signalled when a slot frees or a worker goes idle */
	bool stopping;			/* protected by lock */
	bool failed;			/* protected by lock */
	int fail_code;			/* protected by lock */
	unsigned rr;			/* round-robin tie breaker; protected by lock */
	struct worker *w;		/* cfg.workers entries */
};

/* Mark the pool failed.  Returns true for the call that did it (which must run on_fail). */
static bool set_failed_locked(struct mfd__pool *p, int code)
{
	if (p->failed)
		return false;
	p->failed = true;
	p->fail_code = code;
	for (unsigned i = 0; i < p->cfg.workers; i++) {
		struct worker *w = &p->w[i];
		for (unsigned k = 0; p->cfg.drop && k < w->count; k++)
			p->cfg.drop(p->cfg.owner, w->ring + (size_t)((w->head + k) % p->cfg.queue_depth) *
							    p->cfg.job_size);
		w->count = 0;	/* drop queued jobs */
		pthread_cond_signal(&w->wake);
	}
	pthread_cond_broadcast(&p->space);
	return true;
}

/* The worker the calling thread is (NULL on any other thread): set by the worker itself. */
static _Thread_local struct worker *self;

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct mfd__pool *p = w->pool;
	size_t js = p->cfg.job_size;
	w->cpu_mark = p->cfg.cpu_ns ? mfd__thread_cpu_ns() : 0;
	self = w;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (w->count == 0 && !p->stopping && !p->failed)
			pthread_cond_wait(&w->wake, &p->lock);
		if (p->failed || (w->count == 0 && p->stopping))
			break;
		memcpy(w->job, w->ring + (size_t)w->head * js, js);
		w->head = (w->head + 1) % p->cfg.queue_depth;
		w->count--;
		w->busy = true;
		pthread_cond_broadcast(&p->space);
		pthread_mutex_unlock(&p->lock);

		int rc = p->cfg.fn(p->cfg.owner, w->index, w->job);
		mfd__pool_cpu_checkpoint();	/* a syscall per job of megabytes: nothing */

		pthread_mutex_lock(&p->lock);
		w->busy = false;
		if (rc < 0) {
			mfd__errbox_set(p->cfg.errbox, rc, (int)w->index + 1, "worker %u", w->index);
			if (set_failed_locked(p, rc) && p->cfg.on_fail) {
				pthread_mutex_unlock(&p->lock);
				p->cfg.on_fail(p->cfg.owner);
				pthread_mutex_lock(&p->lock);
			}
		}
		pthread_cond_broadcast(&p->space);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

void mfd__pool_cpu_checkpoint(void)
{
	struct worker *w = self;
	if (!w || !w->pool->cfg.cpu_ns)
		return;
	uint64_t now = mfd__thread_cpu_ns();
	__atomic_fetch_add(w->pool->cfg.cpu_ns, now - w->cpu_mark, __ATOMIC_RELAXED);
	w->cpu_mark = now;
}

int mfd__pool_create(struct mfd__pool **out, const struct mfd__pool_cfg *cfg)
{
	*out = NULL;
	if (!cfg->workers || cfg->workers > MFD_MAX_CHANNELS || !cfg->job_size || !cfg->queue_depth ||
	    !cfg->fn || !cfg->errbox)
		return -EINVAL;
	struct mfd__pool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cfg = *cfg;
	p->w = calloc(cfg->workers, sizeof(*p->w));
	if (!p->w) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->space, NULL);
	int rc = 0;
	for (unsigned i = 0; i < cfg->workers; i++) {
		struct worker *w = &p->w[i];
		w->pool = p;
		w->index = i;
		pthread_cond_init(&w->wake, NULL);
		w->ring = malloc((size_t)cfg->queue_depth * cfg->job_size);
		w->job = malloc(cfg->job_size);
		if (!w->ring || !w->job) {
			rc = -ENOMEM;
			break;
		}
	}
	for (unsigned i = 0; rc == 0 && i < cfg->workers; i++) {
		int e = pthread_create(&p->w[i].thread, NULL, worker_main, &p->w[i]);
		if (e) {
			rc = -e;
			break;
		}
		p->w[i].started = true;
	}
	if (rc) {
		pthread_mutex_lock(&p->lock);
		p->failed = true;	/* started workers exit without running anything */
		p->fail_code = rc;
		pthread_mutex_unlock(&p->lock);
		mfd__pool_destroy(p);
		return rc;
	}
	*out = p;
	return 0;
}

static void enqueue_locked(struct mfd__pool *p, struct worker *w, const void *job)
{
	unsigned slot = (w->head + w->count) % p->cfg.queue_depth;
	memcpy(w->ring + (size_t)slot * p->cfg.job_size, job, p->cfg.job_size);
	w->count++;
	pthread_cond_signal(&w->wake);
}

int mfd__pool_submit(struct mfd__pool *p, const void *job)
{
	int rc = 0;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		if (p->failed) {
			rc = p->fail_code;
			break;
		}
		/* Least loaded wins (a busy worker counts as one queued job); ties go round-robin. */
		struct worker *best = NULL;
		unsigned best_load = ~0u, n = p->cfg.workers;
		for (unsigned k = 0; k < n; k++) {
			struct worker *w = &p->w[(p->rr + k) % n];
			unsigned load = w->count + (w->busy ? 1 : 0);
			if (w->count < p->cfg.queue_depth && load < best_load) {
				best = w;
				best_load = load;
			}
		}
		if (best) {
			p->rr = (best->index + 1) % n;
			enqueue_locked(p, best, job);
			break;
		}
		pthread_cond_wait(&p->space, &p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

int mfd__pool_submit_to(struct mfd__pool *p, unsigned index, const void *job)
{
	int rc = 0;
	if (index >= p->cfg.workers)
		return -EINVAL;
	struct worker *w = &p->w[index];
	pthread_mutex_lock(&p->lock);
	while (!p->failed && w->count >= p->cfg.queue_depth)
		pthread_cond_wait(&p->space, &p->lock);
	if (p->failed)
		rc = p->fail_code;
	else
		enqueue_locked(p, w, job);
	pthread_mutex_unlock(&p->lock);
	return rc;
}

int mfd__pool_sync(struct mfd__pool *p)
{
	pthread_mutex_lock(&p->lock);
	for (;;) {
		if (p->failed)
			break;
		bool idle = true;
		for (unsigned i = 0; i < p->cfg.workers && idle; i++)
			idle = p->w[i].count == 0 && !p->w[i].busy;
		if (idle)
			break;
		pthread_cond_wait(&p->space, &p->lock);
	}
	int rc = p->failed ? p->fail_code : 0;
	pthread_mutex_unlock(&p->lock);
	return rc;
}

void mfd__pool_fail(struct mfd__pool *p, int code)
{
	pthread_mutex_lock(&p->lock);
	bool first = set_failed_locked(p, code);
	pthread_mutex_unlock(&p->lock);
	if (first && p->cfg.on_fail)
		p->cfg.on_fail(p->cfg.owner);
}

void mfd__pool_stop(struct mfd__pool *p, int code)
{
	pthread_mutex_lock(&p->lock);
	set_failed_locked(p, code);
	pthread_mutex_unlock(&p->lock);
}

void mfd__pool_destroy(struct mfd__pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	for (unsigned i = 0; i < p->cfg.workers; i++)
		pthread_cond_signal(&p->w[i].wake);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->cfg.workers; i++) {
		if (p->w[i].started)
			pthread_join(p->w[i].thread, NULL);
		pthread_cond_destroy(&p->w[i].wake);
		free(p->w[i].ring);
		free(p->w[i].job);
	}
	pthread_cond_destroy(&p->space);
	pthread_mutex_destroy(&p->lock);
	free(p->w);
	free(p);
}
