/* t_converge — the convergence controller on its own: switchover when the expected downtime is
 * under the limit (after a few more rounds while each halves it), throttle raised step by step while the guest dirties faster than half the
 * bandwidth, the deadline's two policies, a bandwidth estimate that ignores tiny rounds. */
#include "migrate/converge.h"
#include "tutil.h"

static struct mfd__converge_cfg cfg(void)
{
	return (struct mfd__converge_cfg){ .downtime_ms = 300, .auto_throttle = true,
					   .throttle_initial = 20, .throttle_step = 10,
					   .throttle_max = 99 };
}

#define MB (1000ull * 1000ull)
#define MS (1000000ull)

int main(void)
{
	struct mfd__converge c;
	struct mfd__converge_cfg k = cfg();

	/* 1 GB/s, 100 MB dirty at 100 MB/s: 100 ms expected, under 300 ms.  Another round takes
	 * 100 ms, in which the guest dirties 10 MB: a tenth, so it goes on. */
	mfd__converge_init(&c, &k);
	struct mfd__round r = { .sent_bytes = 1000 * MB, .send_ns = 1000 * MS, .dirty_bytes = 100 * MB,
				.since_sync_ns = 1000 * MS, .elapsed_ms = 1000 };
	CHECK_EQ(mfd__converge_step(&c, &r), MFD_DECIDE_CONTINUE);
	CHECK_EQ(c.bandwidth_bps, 1000 * MB);
	CHECK_EQ(c.expected_downtime_ms, 100);
	CHECK_EQ(c.dirty_rate_bps, 100 * MB);
	/* It left 10 MB (10 ms): again a tenth ahead, so once more; then 1 MB, 1 ms: not worth a
	 * round, switch over. */
	struct mfd__round r2 = { .sent_bytes = 100 * MB, .send_ns = 100 * MS, .dirty_bytes = 10 * MB,
				 .since_sync_ns = 100 * MS, .elapsed_ms = 1100 };
	CHECK_EQ(mfd__converge_step(&c, &r2), MFD_DECIDE_CONTINUE);
	struct mfd__round r3 = { .sent_bytes = 10 * MB, .send_ns = 10 * MS, .dirty_bytes = 1 * MB,
				 .since_sync_ns = 10 * MS, .elapsed_ms = 1110 };
	CHECK_EQ(mfd__converge_step(&c, &r3), MFD_DECIDE_SWITCHOVER);
	CHECK_EQ(c.expected_downtime_ms, 1);
	/* A hot set the guest rewrites as fast as we send it: the extra round did not halve it
	 * (100 MB, then 90 MB), so no more. */
	mfd__converge_init(&c, &k);
	CHECK_EQ(mfd__converge_step(&c, &r), MFD_DECIDE_CONTINUE);
	struct mfd__round same = { .sent_bytes = 100 * MB, .send_ns = 100 * MS, .dirty_bytes = 90 * MB,
				   .since_sync_ns = 100 * MS, .elapsed_ms = 1100 };
	CHECK_EQ(mfd__converge_step(&c, &same), MFD_DECIDE_SWITCHOVER);
	/* The prediction alone also says no: 100 MB dirty in 110 ms is 909 MB/s; sending 100 MB
	 * takes 100 ms, which leaves 91 MB, more than half. */
	mfd__converge_init(&c, &k);
	struct mfd__round fast = { .sent_bytes = 1000 * MB, .send_ns = 1000 * MS,
				   .dirty_bytes = 100 * MB, .since_sync_ns = 110 * MS };
	CHECK_EQ(mfd__converge_step(&c, &fast), MFD_DECIDE_SWITCHOVER);
	/* At most MFD_CONVERGE_EXTRA extra rounds, however well they shrink it. */
	mfd__converge_init(&c, &k);
	struct mfd__round slow = { .sent_bytes = 1000 * MB, .send_ns = 1000 * MS,
				   .dirty_bytes = 200 * MB, .since_sync_ns = 100000 * MS };
	unsigned extra = 0;
	while (mfd__converge_step(&c, &slow) == MFD_DECIDE_CONTINUE && extra < 10) {
		extra++;
		slow.dirty_bytes /= 3;
	}
	CHECK_EQ(extra, MFD_CONVERGE_EXTRA);
	/* Not with the deadline close: 100 ms expected, 150 ms left (twice the downtime is kept). */
	k.deadline_ms = 1150;
	mfd__converge_init(&c, &k);
	CHECK_EQ(mfd__converge_step(&c, &r), MFD_DECIDE_SWITCHOVER);
	k.deadline_ms = 0;
	/* Device state counts in the downtime. */
	mfd__converge_init(&c, &k);
	r.device_bytes = 250 * MB;
	CHECK_EQ(mfd__converge_step(&c, &r), MFD_DECIDE_CONTINUE);
	CHECK_EQ(c.expected_downtime_ms, 350);
	r.device_bytes = 0;
	/* ... but no round can shrink it: 200 MB of device state (200 ms) and 1 MB dirty is a
	 * switchover at once, not an extra round for the 1 MB. */
	mfd__converge_init(&c, &k);
	struct mfd__round dev = { .sent_bytes = 1000 * MB, .send_ns = 1000 * MS, .dirty_bytes = 1 * MB,
				  .device_bytes = 200 * MB, .since_sync_ns = 1000 * MS };
	CHECK_EQ(mfd__converge_step(&c, &dev), MFD_DECIDE_SWITCHOVER);
	CHECK_EQ(c.expected_downtime_ms, 201);
	/* An extra round that overshoots: 100 ms expected, one more round taken; the guest then
	 * bursts to 400 MB (400 ms, over the limit) and stays there until the deadline.  The bet
	 * was ours: at the deadline it switches over instead of failing. */
	k.deadline_ms = 5000;
	mfd__converge_init(&c, &k);
	CHECK_EQ(mfd__converge_step(&c, &r), MFD_DECIDE_CONTINUE);	/* the extra round */
	struct mfd__round burst = { .sent_bytes = 100 * MB, .send_ns = 100 * MS,
				    .dirty_bytes = 400 * MB, .since_sync_ns = 1000 * MS,
				    .elapsed_ms = 2000 };
	CHECK_EQ(mfd__converge_step(&c, &burst), MFD_DECIDE_CONTINUE);
	burst.elapsed_ms = 5000;
	CHECK_EQ(mfd__converge_step(&c, &burst), MFD_DECIDE_SWITCHOVER);
	/* The same burst without an extra round before it still fails at the deadline. */
	mfd__converge_init(&c, &k);
	CHECK_EQ(mfd__converge_step(&c, &burst), MFD_DECIDE_FAIL);
	/* An early extra round does not excuse a guest that turns hot for good: after the bet's
	 * aftermath (2 rounds over the limit), the deadline fails as configured. */
	mfd__converge_init(&c, &k);
	CHECK_EQ(mfd__converge_step(&c, &r), MFD_DECIDE_CONTINUE);	/* the extra round */
	burst.elapsed_ms = 2000;
	for (int i = 0; i < 5; i++)
		CHECK_EQ(mfd__converge_step(&c, &burst), MFD_DECIDE_CONTINUE);
	burst.elapsed_ms = 5000;
	CHECK_EQ(mfd__converge_step(&c, &burst), MFD_DECIDE_FAIL);
	k.deadline_ms = 0;

	/* A guest dirtying 800 MB/s against 1 GB/s: not converging; throttle after two hot rounds,
	 * then one step per hot round, capped. */
	mfd__converge_init(&c, &k);
	struct mfd__round hot = { .sent_bytes = 1000 * MB, .send_ns = 1000 * MS,
				  .dirty_bytes = 800 * MB, .since_sync_ns = 1000 * MS };
	CHECK_EQ(mfd__converge_step(&c, &hot), MFD_DECIDE_CONTINUE);
	CHECK_EQ(c.throttle_pct, 0);
	CHECK_EQ(mfd__converge_step(&c, &hot), MFD_DECIDE_CONTINUE);
	CHECK_EQ(c.throttle_pct, 20);
	CHECK_EQ(mfd__converge_step(&c, &hot), MFD_DECIDE_CONTINUE);
	CHECK_EQ(c.throttle_pct, 30);
	for (int i = 0; i < 20; i++)
		mfd__converge_step(&c, &hot);
	CHECK_EQ(c.throttle_pct, 99);
	CHECK_EQ(c.throttle_pct_max, 99);
	CHECK(c.eta_ms > 0);

	/* Without auto-throttle nothing is raised. */
	k.auto_throttle = false;
	mfd__converge_init(&c, &k);
	for (int i = 0; i < 5; i++)
		CHECK_EQ(mfd__converge_step(&c, &hot), MFD_DECIDE_CONTINUE);
	CHECK_EQ(c.throttle_pct, 0);

	/* Deadline: fail, or force the switchover. */
	k.deadline_ms = 5000;
	mfd__converge_init(&c, &k);
	hot.elapsed_ms = 4999;
	CHECK_EQ(mfd__converge_step(&c, &hot), MFD_DECIDE_CONTINUE);
	hot.elapsed_ms = 5000;
	CHECK_EQ(mfd__converge_step(&c, &hot), MFD_DECIDE_FAIL);
	k.deadline_force = true;
	mfd__converge_init(&c, &k);
	CHECK_EQ(mfd__converge_step(&c, &hot), MFD_DECIDE_SWITCHOVER);
	hot.elapsed_ms = 0;

	/* A tiny last round (2 pages in 50 us) must not swing the bandwidth estimate: the window
	 * reaches back until it covers 200 ms of sending. */
	k = cfg();
	mfd__converge_init(&c, &k);
	struct mfd__round big = { .sent_bytes = 500 * MB, .send_ns = 500 * MS,
				  .dirty_bytes = 600 * MB, .since_sync_ns = 500 * MS };
	mfd__converge_step(&c, &big);
	struct mfd__round tiny = { .sent_bytes = 8192, .send_ns = 50000, .dirty_bytes = 8192,
				   .since_sync_ns = 50000 };
	mfd__converge_step(&c, &tiny);
	CHECK(c.bandwidth_bps > 990 * MB && c.bandwidth_bps < 1010 * MB);
	CHECK_EQ(mfd__converge_step(&c, &tiny), MFD_DECIDE_SWITCHOVER);

	/* Nothing sent at all yet: no division by zero, no switchover with data pending. */
	mfd__converge_init(&c, &k);
	struct mfd__round none = { .dirty_bytes = 4096, .since_sync_ns = 0 };
	CHECK_EQ(mfd__converge_step(&c, &none), MFD_DECIDE_CONTINUE);
	struct mfd__round empty = { 0 };
	mfd__converge_init(&c, &k);
	CHECK_EQ(mfd__converge_step(&c, &empty), MFD_DECIDE_SWITCHOVER);
	return t_done("t_converge");
}
