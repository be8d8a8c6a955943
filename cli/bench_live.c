/* cli/bench_live — the writer threads of `bench --dirty`: each owns an interleaved share of
 * the dirty pages and sweeps it, stamping page p with (p, sweep), while the memory moves; the
 * library's stop/resume/throttle callbacks pause and slow them as a VMM does its vCPUs.  The
 * destination checks the pattern they leave. */
#include <unistd.h>
#include "bench.h"

static void dirtier_nap(struct dirtier *d, uint64_t us)
{
	double end = cli_now_s() + (double)us / 1e6;
	while (!__atomic_load_n(&d->pause_req, __ATOMIC_ACQUIRE) && cli_now_s() < end)
		usleep(200);
}

static void *dirtier_main(void *arg)
{
	struct dirtier_arg *a = arg;
	struct dirtier *d = a->d;
	uint64_t sweep = 1;
	double t0 = cli_now_s();
	while (!__atomic_load_n(&d->quit, __ATOMIC_ACQUIRE)) {
		for (uint64_t p = a->id; p < d->pages; p += d->n) {
			if ((p / d->n) % 256 == 0) {	/* throttle: run (100 - pct)% of the time */
				unsigned pct = __atomic_load_n(&d->throttle, __ATOMIC_RELAXED);
				if (pct)
					dirtier_nap(d, (uint64_t)((cli_now_s() - t0) * 1e6 * pct /
								  (100 - pct)));
				t0 = cli_now_s();
			}
			if ((p / d->n) % 64 == 0 && __atomic_load_n(&d->pause_req, __ATOMIC_ACQUIRE)) {
				__atomic_fetch_add(&d->paused, 1, __ATOMIC_ACQ_REL);
				while (__atomic_load_n(&d->pause_req, __ATOMIC_ACQUIRE) &&
				       !__atomic_load_n(&d->quit, __ATOMIC_ACQUIRE))
					usleep(100);
				__atomic_fetch_sub(&d->paused, 1, __ATOMIC_ACQ_REL);
				if (__atomic_load_n(&d->quit, __ATOMIC_ACQUIRE))
					return NULL;
			}
			uint64_t *w = (uint64_t *)(d->mem + p * PAGE);
			w[0] = p;
			w[1] = sweep;
		}
		sweep++;
		__atomic_fetch_add(&d->sweeps, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static int dirtier_stop(void *opaque)
{
	struct dirtier *d = opaque;
	__atomic_store_n(&d->pause_req, 1, __ATOMIC_RELEASE);
	while (__atomic_load_n(&d->paused, __ATOMIC_ACQUIRE) < (int)d->n)
		usleep(50);
	return 0;
}

static void dirtier_resume(void *opaque)
{
	struct dirtier *d = opaque;
	__atomic_store_n(&d->pause_req, 0, __ATOMIC_RELEASE);
}

static void dirtier_throttle(void *opaque, unsigned pct)
{
	struct dirtier *d = opaque;
	__atomic_store_n(&d->throttle, pct, __ATOMIC_RELAXED);
}

int bench_live_start(struct mfd_session *s, const struct bench_opts *o, struct dirtier *dz)
{
	if (o->downtime_ms)
		mfd_session_set(s, MFD_OPT_DOWNTIME_MS, o->downtime_ms);
	if (o->deadline_ms)
		mfd_session_set(s, MFD_OPT_DEADLINE_MS, o->deadline_ms);
	if (o->deadline_force)
		mfd_session_set(s, MFD_OPT_DEADLINE_FORCE, 1);
	if (o->no_throttle)
		mfd_session_set(s, MFD_OPT_AUTO_THROTTLE, 0);
	int rc = mfd_session_track_uffd(s);
	struct mfd_callbacks cb = { .stop = dirtier_stop, .resume = dirtier_resume,
				    .throttle = dirtier_throttle, .opaque = dz };
	mfd_session_set_callbacks(s, &cb);
	for (; rc == 0 && dz->started < dz->n; dz->started++) {
		dz->args[dz->started] = (struct dirtier_arg){ dz, dz->started };
		if (pthread_create(&dz->t[dz->started], NULL, dirtier_main, &dz->args[dz->started]))
			break;
	}
	return rc;
}

void bench_live_stop(struct dirtier *dz)
{
	if (!dz->started)
		return;
	__atomic_store_n(&dz->quit, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < dz->started; i++)
		pthread_join(dz->t[i], NULL);
	dz->started = 0;
}

/* Destination check of the writers' pattern.  Page p of the dirty area holds either what the
 * fill wrote there (a writer has not stamped it yet: sweep 0) or, in its first 16 bytes, p and
 * the sweep that stamped it (writers count sweeps from 1).  For each writer's share, in the
 * order the writer goes, the sweeps form at most two runs, s+1 then s. */
bool bench_pattern_ok(const uint8_t *mem, uint64_t pages, unsigned n, const char *fill)
{
	for (unsigned id = 0; id < n; id++) {
		uint64_t first = 0, runs = 0, prev = 0;
		for (uint64_t p = id; p < pages; p += n) {
			const uint64_t *w = (const uint64_t *)(mem + p * PAGE);
			uint64_t initial[2], sweep;
			cli_fill_words(initial, 2, p, fill, BENCH_FILL_SEED);
			if (w[0] == initial[0] && w[1] == initial[1])
				sweep = 0;
			else if (w[0] == p && w[1] > 0)
				sweep = w[1];
			else
				return false;	/* neither the fill nor a stamp: damaged */
			if (runs == 0) {
				first = sweep;
				runs = 1;
			} else if (sweep != prev) {
				if (runs == 2 || sweep + 1 != first)
					return false;
				runs = 2;
			}
			prev = sweep;
		}
	}
	return true;
}
