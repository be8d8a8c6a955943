/* t_pool — the worker pool: every job runs exactly once, per-worker order is kept for targeted
 * jobs, back-pressure bounds the queue, sync is a barrier, the first error stops everything and
 * is reported once, and destroy joins every thread (ASan/TSan runs catch leaks and races). */
#include "core/util.h"
#include "pool/pool.h"
#include "tutil.h"

struct job {
	uint32_t id;
	uint32_t target;	/* worker index for targeted jobs, else ~0 */
	int fail;		/* return this from the job */
	int sleep_us;
};

struct owner {
	pthread_mutex_t lock;
	uint32_t *ran;		/* times each id ran; protected by lock */
	uint32_t *order[8];	/* per worker: ids of targeted jobs in run order */
	unsigned norder[8];
	unsigned running, max_running;	/* protected by lock */
	int on_fail_calls;	/* atomic */
	struct mfd__errbox eb;
};

static int job_fn(void *o_, unsigned w, void *j_)
{
	struct owner *o = o_;
	struct job *j = j_;
	pthread_mutex_lock(&o->lock);
	o->ran[j->id]++;
	if (j->target != ~0u) {
		CHECK_EQ(j->target, w);
		o->order[w][o->norder[w]++] = j->id;
	}
	o->running++;
	if (o->running > o->max_running)
		o->max_running = o->running;
	pthread_mutex_unlock(&o->lock);
	if (j->sleep_us)
		usleep((useconds_t)j->sleep_us);
	pthread_mutex_lock(&o->lock);
	o->running--;
	pthread_mutex_unlock(&o->lock);
	if (j->fail)
		mfd__errbox_set(&o->eb, j->fail, (int)w + 1, "job %u failed on purpose", j->id);
	return j->fail;
}

static void on_fail(void *o_)
{
	struct owner *o = o_;
	__atomic_fetch_add(&o->on_fail_calls, 1, __ATOMIC_RELAXED);
}

static struct mfd__pool *make(struct owner *o, unsigned workers, unsigned depth, unsigned njobs)
{
	memset(o, 0, sizeof(*o));
	pthread_mutex_init(&o->lock, NULL);
	mfd__errbox_init(&o->eb);
	o->ran = calloc(njobs, sizeof(uint32_t));
	for (int i = 0; i < 8; i++)
		o->order[i] = calloc(njobs, sizeof(uint32_t));
	struct mfd__pool_cfg cfg = { .workers = workers, .job_size = sizeof(struct job),
				     .queue_depth = depth, .fn = job_fn, .owner = o,
				     .on_fail = on_fail, .errbox = &o->eb };
	struct mfd__pool *p = NULL;
	CHECK_CODE(mfd__pool_create(&p, &cfg), 0);
	return p;
}

static void unmake(struct owner *o)
{
	free(o->ran);
	for (int i = 0; i < 8; i++)
		free(o->order[i]);
	mfd__errbox_destroy(&o->eb);
	pthread_mutex_destroy(&o->lock);
}

static void test_all_jobs_once(void)
{
	struct owner o;
	enum { N = 5000 };
	struct mfd__pool *p = make(&o, 4, 3, N);
	for (uint32_t i = 0; i < N; i++) {
		struct job j = { .id = i, .target = ~0u };
		CHECK_CODE(mfd__pool_submit(p, &j), 0);
	}
	CHECK_CODE(mfd__pool_sync(p), 0);
	for (uint32_t i = 0; i < N; i++)
		CHECK_EQ(o.ran[i], 1);
	CHECK(o.max_running <= 4);
	/* Targeted jobs run on their worker in submission order. */
	for (uint32_t i = 0; i < 400; i++) {
		struct job j = { .id = i, .target = i % 4 };
		CHECK_CODE(mfd__pool_submit_to(p, i % 4, &j), 0);
	}
	CHECK_CODE(mfd__pool_sync(p), 0);
	for (unsigned w = 0; w < 4; w++) {
		CHECK_EQ(o.norder[w], 100);
		for (unsigned k = 1; k < o.norder[w]; k++)
			CHECK(o.order[w][k] > o.order[w][k - 1]);
	}
	CHECK_EQ(o.on_fail_calls, 0);
	mfd__pool_destroy(p);
	unmake(&o);
}

/* Back-pressure: with slow jobs, submit blocks instead of queueing without bound. */
static void test_backpressure(void)
{
	struct owner o;
	struct mfd__pool *p = make(&o, 2, 2, 64);
	uint64_t t0 = mfd__now_ms();
	for (uint32_t i = 0; i < 12; i++) {
		struct job j = { .id = i, .target = ~0u, .sleep_us = 20000 };
		CHECK_CODE(mfd__pool_submit(p, &j), 0);
	}
	/* 12 jobs, 2 workers x (2 queued + 1 running) = 6 in flight: at least 3 rounds of 20 ms
	 * must have passed before the last submit returned. */
	CHECK(mfd__now_ms() - t0 >= 55);
	CHECK_CODE(mfd__pool_sync(p), 0);
	mfd__pool_destroy(p);
	unmake(&o);
}

static void test_first_error_wins(void)
{
	struct owner o;
	enum { N = 2000 };
	struct mfd__pool *p = make(&o, 4, 4, N);
	int rc = 0;
	uint32_t i;
	for (i = 0; i < N && rc == 0; i++) {
		struct job j = { .id = i, .target = ~0u, .sleep_us = 100,
				 .fail = (i == 50) ? -EIO : (i > 50 ? -ENOSPC : 0) };
		rc = mfd__pool_submit(p, &j);
	}
	int s = mfd__pool_sync(p);
	CHECK(s == -EIO || s == -ENOSPC);
	CHECK(rc != 0 || s != 0);
	CHECK(i < N);	/* submission stopped early */
	struct mfd_error e;
	mfd__errbox_get(&o.eb, &e);
	CHECK(e.code == -EIO || e.code == -ENOSPC);
	CHECK(strstr(e.msg, "failed on purpose") != NULL);
	struct job j = { .id = 0, .target = ~0u };
	CHECK(mfd__pool_submit(p, &j) != 0);
	CHECK(mfd__pool_submit_to(p, 1, &j) != 0);
	mfd__pool_destroy(p);	/* joins the workers: on_fail has surely returned now */
	CHECK_EQ(o.on_fail_calls, 1);
	unmake(&o);

	/* External failure (cancel) wakes a submitter blocked on a full queue. */
	p = make(&o, 1, 1, 16);
	struct job slow = { .id = 1, .target = ~0u, .sleep_us = 200000 };
	mfd__pool_submit(p, &slow);
	mfd__pool_submit(p, &slow);
	mfd__pool_fail(p, MFD_ECANCELED);
	CHECK_CODE(mfd__pool_submit(p, &slow), MFD_ECANCELED);
	CHECK_CODE(mfd__pool_sync(p), MFD_ECANCELED);
	mfd__pool_destroy(p);
	CHECK_EQ(o.on_fail_calls, 1);
	unmake(&o);
}

static void test_bad_config(void)
{
	struct mfd__errbox eb;
	mfd__errbox_init(&eb);
	struct mfd__pool *p;
	struct mfd__pool_cfg cfg = { .workers = 0, .job_size = 8, .queue_depth = 1, .fn = job_fn,
				     .errbox = &eb };
	CHECK_CODE(mfd__pool_create(&p, &cfg), -EINVAL);
	cfg.workers = MFD_MAX_CHANNELS + 1;
	CHECK_CODE(mfd__pool_create(&p, &cfg), -EINVAL);
	CHECK(p == NULL);
	mfd__pool_destroy(NULL);
	mfd__errbox_destroy(&eb);
}

int main(void)
{
	test_all_jobs_once();
	test_backpressure();
	test_first_error_wins();
	test_bad_config();
	return t_done("t_pool");
}
