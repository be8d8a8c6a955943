/* t_precopy — live migration with the library's rounds, using manual dirty marking so every
 * write is known: the stale-overwrite stress (50+ rounds, every page re-dirtied every round,
 * random per-channel delays on both sides), throttling to convergence under a bandwidth cap,
 * a deadline that fails cleanly, device state, and cancel at every phase.  And the settle: when
 * the guest stops, the destination already holds every page of every round sent before (the
 * source waited for its round acknowledgements), so the downtime holds no drain.
 *
 * `t_precopy --no-barrier` runs only the stress with the destination's SYNC barrier disabled and
 * exits 0 if the corruption was caught (it shows that the stress test has teeth). */
#include "guest.h"
#include "migrate/session.h"
#include "pair.h"

/* Per-channel delays, through the channel test hook.
 *
 * Before the switchover every destination data channel pauses 1-3 ms (random) before each read,
 * and in random 25 ms epochs a channel pauses longer: receivers stay behind the sender by about a
 * socket buffer each and fall behind one another by varying amounts, so copies of a page sent
 * in consecutive rounds on different channels arrive in either order.  At the switchover (the
 * guest's stop callback) one random receiver stalls for 200 ms while the others run at full
 * speed: the stalled one still holds pages of the last precopy round while the others deliver
 * the final round.  With pages re-dirtied every round, that is the one interleaving whose stale
 * copies nothing repairs later; only the barrier at SYNC markers keeps them from landing last.
 * Source channels get random pauses too (up to 1.5 ms before half of the writes): the pool hands
 * each batch to the least-loaded worker, so uneven senders make a page travel on a different
 * channel from round to round, as under real load (an idle pool would map it to the same channel
 * every round, and per-channel FIFO order alone would then hide a missing barrier). */
static uint64_t hook_seed = 12345;
static int stall_chan;			/* atomic; 0 until the guest stops */
static uint64_t stall_until_us;		/* atomic */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 29;
	x *= 0x94D049BB133111EBull;
	return x ^ (x >> 32);
}

static int delay_hook(void *ctx, int chan, bool writing, size_t len)
{
	if (chan == 0)
		return 0;
	uint64_t x = mix(__atomic_add_fetch(&hook_seed, 0x9E3779B97F4A7C15ull, __ATOMIC_RELAXED));
	if (writing) {
		if (x % 2 == 0)
			usleep((useconds_t)(x % 1500));
		return 0;
	}
	int stalled = __atomic_load_n(&stall_chan, __ATOMIC_ACQUIRE);
	if (stalled) {
		uint64_t until = __atomic_load_n(&stall_until_us, __ATOMIC_ACQUIRE), now = g_now_us();
		if (chan == stalled && now < until)
			usleep((useconds_t)(until - now));
		return 0;
	}
	uint64_t epoch = g_now_us() / 25000;
	bool slow = mix(epoch * 131 + (uint64_t)chan) % 4 == 0;
	usleep((useconds_t)(1000 + x % 2000 + (slow ? 4000 : 0)));
	return 0;
}

static void stall_one_receiver(void)
{
	uint64_t x = mix(__atomic_add_fetch(&hook_seed, 0x9E3779B97F4A7C15ull, __ATOMIC_RELAXED));
	__atomic_store_n(&stall_until_us, g_now_us() + 200000, __ATOMIC_RELEASE);
	__atomic_store_n(&stall_chan, 1 + (int)(x % 4), __ATOMIC_RELEASE);
}

struct live_cfg {
	size_t len;
	size_t dirty_len;
	unsigned writers;
	unsigned pages_per_ms;
	unsigned channels;
	unsigned min_rounds;
	bool delays;
	bool no_barrier;
	bool no_settle;
	bool slow_dest;		/* the destination reads slowly (slow_reads) */
	int settle_ms;		/* the source's bound on its settle wait (0: the stall time) */
	int64_t max_bw;
	int64_t deadline_ms;
	bool no_throttle;
	bool sequential;
	unsigned batch;		/* pages per packet (default 32) */
	const char *listen;	/* default: a unix socket */
	void (*on_stop)(void);
	unsigned throttle_initial, throttle_step;
	int cancel_after_ms;	/* -1: none */
	bool cancel_in_stop;
};

struct live_res {
	int src_rc, dst_rc;
	bool equal;
	struct mfd_stats st;
	struct guest g;
	char src_msg[MFD_ERROR_MSG_MAX], dst_msg[MFD_ERROR_MSG_MAX];
};

/* The settle check: the guest's stop callback takes both sides' page counts (the source's
 * final, the destination's as far as it has got). */
static struct mfd_session *settle_src, *settle_dst;
static uint64_t settle_src_pages, settle_dst_pages;	/* written in stop(), read after the run */
static double settle_dst_cpu;				/* likewise */

static void count_at_stop(void)
{
	struct mfd_stats a, b;
	mfd_session_get_stats(settle_src, &a);
	mfd_session_get_stats(settle_dst, &b);
	settle_src_pages = a.normal_pages + a.zero_pages;
	settle_dst_pages = b.normal_pages + b.zero_pages;
	settle_dst_cpu = b.cpu_s;
}

/* A destination that reads slowly: every read on a data channel waits 2 ms, so its receivers
 * stay about a socket buffer behind the sender. */
static int slow_reads(void *ctx, int chan, bool writing, size_t len)
{
	(void)ctx;
	(void)len;
	if (chan != 0 && !writing)
		usleep(2000);
	return 0;
}

static void run_live(const struct live_cfg *c, struct live_res *r)
{
	memset(r, 0, sizeof(*r));
	uint8_t *src = t_map(c->len), *dmem = t_map(c->len);
	t_fill(src, c->len, 5);
	struct pair p;
	pair_new(&p);
	struct mfd_session *s = p.src.s;
	pair_block_add(&p, "ram", src, dmem, c->len, MFD_BLOCK_ZEROED);
	struct mfd__test_knobs dk = { .no_barrier = c->no_barrier };
	if (c->delays)
		dk.hook = delay_hook;
	if (c->slow_dest)
		dk.hook = slow_reads;
	settle_src = s;
	settle_dst = p.dst.s;
	mfd__session_set_test_knobs(p.dst.s, &dk);
	CHECK_CODE(pair_listen(&p, c->listen ? c->listen : pair_unix(&p, "t-precopy"), 0), 0);

	mfd_session_set(s, MFD_OPT_CHANNELS, c->channels);
	mfd_session_set(s, MFD_OPT_VERIFY, 1);
	mfd_session_set(s, MFD_OPT_BATCH_PAGES, c->batch ? c->batch : 32);
	if (c->max_bw)
		mfd_session_set(s, MFD_OPT_MAX_BANDWIDTH, c->max_bw);
	if (c->deadline_ms)
		mfd_session_set(s, MFD_OPT_DEADLINE_MS, c->deadline_ms);
	if (c->no_throttle)
		mfd_session_set(s, MFD_OPT_AUTO_THROTTLE, 0);
	if (c->throttle_initial)
		mfd_session_set(s, MFD_OPT_THROTTLE_INITIAL, c->throttle_initial);
	if (c->throttle_step)
		mfd_session_set(s, MFD_OPT_THROTTLE_STEP, c->throttle_step);
	CHECK_CODE(mfd_session_track_manual(s), 0);
	/* no_settle: the source waits for no round acknowledgement before it stops, so the final
	 * round races the earlier ones as it would past the settle's bound: the ordering must
	 * hold all the same (and the stress's stall at the stop stays a race). */
	struct mfd__test_knobs sk = { .min_rounds = c->min_rounds, .no_settle = c->no_settle,
				      .settle_ms = c->settle_ms };
	if (c->delays)
		sk.hook = delay_hook;
	mfd__session_set_test_knobs(s, &sk);

	struct guest *g = &r->g;
	*g = (struct guest){ .mem = src, .len = c->dirty_len, .nthreads = c->writers, .mark = s,
			     .pages_per_ms = c->pages_per_ms, .sequential = c->sequential,
			     .cancel_in_stop = c->cancel_in_stop, .on_stop = c->on_stop,
			     .cancel_target = s };
	struct mfd_callbacks cb = guest_callbacks(g);
	mfd_session_set_callbacks(s, &cb);
	guest_start(g);

	struct canceller cc = { .s = s, .ms = c->cancel_after_ms };
	canceller_start(&cc);
	/* A failed source cancels a destination still accepting (it would wait otherwise). */
	r->src_rc = pair_run(&p);
	canceller_join(&cc);
	r->dst_rc = p.dst.rc;
	snprintf(r->src_msg, sizeof(r->src_msg), "%s", p.src.err.msg);
	snprintf(r->dst_msg, sizeof(r->dst_msg), "%s", p.dst.err.msg);
	mfd_session_get_stats(s, &r->st);
	/* Compare while the writers are still paused (they stay paused after a completed run). */
	if (r->src_rc == 0)
		r->equal = memcmp(src, dmem, c->len) == 0;
	/* The source keeps running: writers resume (if they were stopped and the run failed) and
	 * the memory stays writable once tracking stopped. */
	if (r->src_rc) {
		uint64_t before = __atomic_load_n(&g->writes, __ATOMIC_RELAXED);
		for (int i = 0; i < 100 && __atomic_load_n(&g->writes, __ATOMIC_RELAXED) == before; i++)
			usleep(5000);	/* a loaded machine may take a while to schedule them */
		CHECK(__atomic_load_n(&g->writes, __ATOMIC_RELAXED) > before);
		CHECK_EQ(g->stops, g->resumes);
	}
	guest_stop_threads(g);
	pair_free(&p);
	munmap(src, c->len);
	munmap(dmem, c->len);
}

static bool stress(bool no_barrier)
{
	__atomic_store_n(&stall_chan, 0, __ATOMIC_RELEASE);
	struct live_cfg c = { .len = 2u << 20, .dirty_len = 2u << 20, .writers = 2, .channels = 4,
			      .min_rounds = 60, .delays = true, .no_barrier = no_barrier,
			      .no_settle = true,
			      .sequential = true, .on_stop = stall_one_receiver,
			      /* 32 batches a round, twice what the 4 x 4 queue slots hold: which
			       * worker takes a batch depends on which frees up first */
			      .batch = 16,
			      /* TCP: its buffers hold whole rounds, as a real network's do (a unix
			       * socket holds less than one packet, which keeps receivers in step) */
			      .listen = "tcp:127.0.0.1:0",
			      .cancel_after_ms = -1 };
	struct live_res r;
	run_live(&c, &r);
	fprintf(stderr, "stress%s: src %d (%s) dst %d (%s) equal %d rounds %llu syncs %llu\n",
		no_barrier ? " without barrier" : "", r.src_rc, r.src_msg, r.dst_rc, r.dst_msg, r.equal,
		(unsigned long long)r.st.rounds, (unsigned long long)r.st.dirty_sync_count);
	if (no_barrier)
		return !(r.src_rc == 0 && r.equal);	/* caught */
	CHECK_CODE(r.src_rc, 0);
	CHECK_CODE(r.dst_rc, 0);
	CHECK(r.equal);
	CHECK(r.st.verified);
	CHECK(r.st.rounds >= 60);
	CHECK(r.st.dirty_sync_count >= 60);
	CHECK_EQ(r.g.stops, 1);
	CHECK_EQ(r.g.resumes, 0);
	return true;
}

/* The settle: 16 MiB of random pages (nothing zero), 2 MiB rewritten, at least 3 rounds, over
 * TCP to a destination that lags.  At the stop, the destination holds every page sent.  With
 * no_settle (the test knob) or a settle bounded below the drain (50 ms here against about 250 ms
 * of drain; a test knob, which is the stall time otherwise), the stop finds pages in flight, and
 * the migration completes all the same. */
static void settles_before_stop(bool no_settle, int settle_ms)
{
	struct live_cfg c = { .len = 16u << 20, .dirty_len = 2u << 20, .writers = 1,
			      .pages_per_ms = 20, .channels = 4, .min_rounds = 3,
			      .slow_dest = true, .no_settle = no_settle, .settle_ms = settle_ms,
			      .listen = "tcp:127.0.0.1:0", .on_stop = count_at_stop,
			      .cancel_after_ms = -1 };
	struct live_res r;
	settle_src_pages = settle_dst_pages = 0;
	run_live(&c, &r);
	fprintf(stderr, "settle%s%s: rc %d (%s), rounds %llu, at the stop the source had sent %llu "
		"pages and the destination held %llu; downtime %llu ms\n",
		no_settle ? " off" : "", settle_ms ? " bounded" : "", r.src_rc, r.src_msg, (unsigned long long)r.st.rounds,
		(unsigned long long)settle_src_pages, (unsigned long long)settle_dst_pages,
		(unsigned long long)r.st.downtime_ms);
	CHECK_CODE(r.src_rc, 0);
	CHECK(r.equal);
	CHECK(r.st.rounds >= 3);
	CHECK(settle_src_pages >= (16u << 20) / 4096);
	if (!no_settle && !settle_ms) {
		CHECK_EQ(settle_dst_pages, settle_src_pages);
		/* The destination's CPU time is counted round by round, not only at the end. */
		CHECK(settle_dst_cpu > 0);
	}
	else	/* the check has teeth: without the wait, the stop finds pages in flight */
		CHECK(settle_dst_pages < settle_src_pages);
}

static void throttle_converges(void)
{
	/* 4 MiB dirtied at ~40 MB/s against a 10 MB/s cap: a round takes 0.4 s, in which the
	 * writer re-dirties nearly the whole set: only throttling can bring it under 300 ms. */
	struct live_cfg c = { .len = 6u << 20, .dirty_len = 4u << 20, .writers = 1,
			      .pages_per_ms = 10, .channels = 2, .max_bw = 10 << 20,
			      .deadline_ms = 60000, .cancel_after_ms = -1, .throttle_initial = 30,
			      .throttle_step = 20 };
	struct live_res r;
	run_live(&c, &r);
	fprintf(stderr, "throttle: rc %d (%s) rounds %llu throttle max %u downtime %llu ms\n",
		r.src_rc, r.src_msg, (unsigned long long)r.st.rounds, r.st.throttle_pct_max,
		(unsigned long long)r.st.downtime_ms);
	CHECK_CODE(r.src_rc, 0);
	CHECK(r.equal);
	CHECK(r.st.throttle_pct_max >= 20);
	CHECK_EQ(r.g.throttle_max, r.st.throttle_pct_max);
	CHECK_EQ(r.g.throttle, 0);	/* lifted at the end */
#ifndef MFD_SANITIZE
	CHECK(r.st.downtime_ms <= 300 + 50);
#else
	CHECK(r.st.downtime_ms <= 5 * 300);	/* sanitizers slow every step several-fold */
#endif
	CHECK(r.st.bandwidth_bps <= (10u << 20) * 11 / 10);
}

static void deadline_fails(void)
{
	struct live_cfg c = { .len = 6u << 20, .dirty_len = 4u << 20, .writers = 1,
			      .pages_per_ms = 10, .channels = 2, .max_bw = 10 << 20,
			      .deadline_ms = 1500, .no_throttle = true, .cancel_after_ms = -1 };
	struct live_res r;
	run_live(&c, &r);
	fprintf(stderr, "deadline: rc %d (%s)\n", r.src_rc, r.src_msg);
	CHECK_CODE(r.src_rc, MFD_ECONVERGE);
	CHECK(r.dst_rc != 0);
	CHECK_EQ(r.st.status, MFD_STATUS_FAILED);
	CHECK_EQ(r.g.stops, 0);
	CHECK_EQ(r.g.throttle_max, 0);
}

static void cancels(void)
{
	int delays[] = { 0, 2, 15, 60, 150 };
	for (size_t i = 0; i < sizeof(delays) / sizeof(delays[0]); i++) {
		/* min_rounds keeps it iterating until the cancel lands. */
		struct live_cfg c = { .len = 8u << 20, .dirty_len = 1u << 20, .writers = 1,
				      .channels = 3, .min_rounds = 1000000, .cancel_after_ms = delays[i] };
		struct live_res r;
		run_live(&c, &r);
		fprintf(stderr, "cancel after %d ms: rc %d (%s), dst %d\n", delays[i], r.src_rc,
			r.src_msg, r.dst_rc);
		CHECK_CODE(r.src_rc, MFD_ECANCELED);
		CHECK(r.dst_rc != 0);
		CHECK_EQ(r.st.status, MFD_STATUS_CANCELLED);
	}
	struct live_cfg c = { .len = 8u << 20, .dirty_len = 1u << 20, .writers = 1, .channels = 3,
			      .cancel_after_ms = -1, .cancel_in_stop = true };
	struct live_res r;
	run_live(&c, &r);
	fprintf(stderr, "cancel during switchover: rc %d (%s)\n", r.src_rc, r.src_msg);
	CHECK_CODE(r.src_rc, MFD_ECANCELED);
	CHECK_EQ(r.g.stops, 1);
	CHECK_EQ(r.g.resumes, 1);	/* the guest runs again on the source */
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--no-barrier")) {
		bool caught = stress(true);
		printf("without the barrier the stress test %s\n", caught ? "caught the corruption"
									   : "did not catch it");
		return caught ? 0 : 1;
	}
	uint64_t t = g_now_us();
	stress(false);
	fprintf(stderr, "  (%.1f s)\n", (double)(g_now_us() - t) / 1e6);
	t = g_now_us();
	settles_before_stop(false, 0);
	settles_before_stop(true, 0);
	settles_before_stop(false, 50);
	fprintf(stderr, "  (%.1f s)\n", (double)(g_now_us() - t) / 1e6);
	t = g_now_us();
	throttle_converges();
	fprintf(stderr, "  (%.1f s)\n", (double)(g_now_us() - t) / 1e6);
	t = g_now_us();
	deadline_fails();
	fprintf(stderr, "  (%.1f s)\n", (double)(g_now_us() - t) / 1e6);
	t = g_now_us();
	cancels();
	fprintf(stderr, "  (%.1f s)\n", (double)(g_now_us() - t) / 1e6);
	return t_done("t_precopy");
}
