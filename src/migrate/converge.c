/* migrate/converge — see converge.h. */
#include "migrate/converge.h"

#define MIN_WINDOW_NS 200000000ull

void mfd__converge_init(struct mfd__converge *c, const struct mfd__converge_cfg *cfg)
{
	*c = (struct mfd__converge){ .cfg = *cfg };
}

static uint64_t window_bandwidth(const struct mfd__converge *c)
{
	uint64_t bytes = 0, ns = 0;
	for (unsigned k = 0; k < c->win_n; k++) {
		unsigned i = (c->win_head + MFD_CONVERGE_WINDOW - 1 - k) % MFD_CONVERGE_WINDOW;
		bytes += c->win_bytes[i];
		ns += c->win_ns[i];
		if (ns >= MIN_WINDOW_NS)
			break;
	}
	return ns ? (uint64_t)((double)bytes * 1e9 / (double)ns) : 0;
}

/* Under the limit: is one more round worth it?  Only the dirty set can shrink (device state is
 * sent at the stop whatever we do).  Sending it takes dirty / bw; the guest dirties dirty_rate
 * meanwhile, which is the set the round after would leave.  Worth it when the dirty set's own
 * share of the downtime is above the floor, when what the round would leave is at most half of
 * it, when the last extra round did halve it (the guest may rewrite a hot set faster than the
 * estimate says), and a few times at most.  The deadline is not put at risk for it. */
static bool shrink_more(struct mfd__converge *c, const struct mfd__round *r, uint64_t prev)
{
	uint64_t dirty = r->dirty_bytes, bw = c->bandwidth_bps;
	if (!bw || c->extra_rounds >= MFD_CONVERGE_EXTRA ||
	    (double)dirty * 1000.0 / (double)bw <= (double)MFD_CONVERGE_FLOOR_MS)
		return false;
	if (c->extra_rounds && dirty > prev / 2)
		return false;
	double next = (double)c->dirty_rate_bps * (double)dirty / (double)bw;
	if (next > (double)dirty / 2)
		return false;
	if (c->cfg.deadline_ms && r->elapsed_ms + 2 * c->expected_downtime_ms >= c->cfg.deadline_ms)
		return false;
	c->extra_rounds++;
	c->bet_rounds = 1;	/* open: the rounds since this one are its aftermath */
	return true;
}

enum mfd__decision mfd__converge_step(struct mfd__converge *c, const struct mfd__round *r)
{
	c->win_bytes[c->win_head] = r->sent_bytes;
	c->win_ns[c->win_head] = r->send_ns;
	c->win_head = (c->win_head + 1) % MFD_CONVERGE_WINDOW;
	if (c->win_n < MFD_CONVERGE_WINDOW)
		c->win_n++;
	uint64_t bw = window_bandwidth(c);
	c->bandwidth_bps = bw;
	c->dirty_rate_bps = r->since_sync_ns
				    ? (uint64_t)((double)r->dirty_bytes * 1e9 / (double)r->since_sync_ns)
				    : 0;
	uint64_t pending = r->dirty_bytes + r->device_bytes;
	if (bw)
		c->expected_downtime_ms = (uint64_t)((double)pending * 1000.0 / (double)bw);
	else
		c->expected_downtime_ms = pending ? UINT64_MAX / 2 : 0;
	/* Time left: drain the dirty set at the bandwidth the guest leaves us (at least a tenth). */
	double net = (double)bw - (double)c->dirty_rate_bps;
	if (net < (double)bw / 10)
		net = (double)bw / 10;
	c->eta_ms = bw ? (uint64_t)((double)pending * 1000.0 / net) : 0;

	uint64_t prev = c->prev_dirty;
	c->prev_dirty = r->dirty_bytes;
	if (c->expected_downtime_ms <= c->cfg.downtime_ms) {
		c->bet_rounds = 0;
		return shrink_more(c, r, prev) ? MFD_DECIDE_CONTINUE : MFD_DECIDE_SWITCHOVER;
	}
	/* An extra round's aftermath lasts MFD_CONVERGE_BET_ROUNDS rounds over the limit; a guest
	 * still hot after that is one that does not converge, as without the bet. */
	bool bet_open = c->bet_rounds && c->bet_rounds <= MFD_CONVERGE_BET_ROUNDS;
	if (c->bet_rounds)
		c->bet_rounds++;
	/* Over the limit.  Right after an extra round we chose, that is our bet gone wrong (the
	 * guest rewrote more than estimated), not a guest that cannot converge: a deadline then
	 * switches over instead of failing a migration that could have completed.  Otherwise the
	 * rounds go on as always (the next estimate under the limit switches over; a guest hot for
	 * two rounds is throttled), and the deadline does what it is configured to. */
	if (c->cfg.deadline_ms && r->elapsed_ms >= c->cfg.deadline_ms)
		return c->cfg.deadline_force || bet_open ? MFD_DECIDE_SWITCHOVER : MFD_DECIDE_FAIL;

	/* Auto-converge: a guest dirtying more than half of what we can send will not let the
	 * dirty set shrink fast enough; after two such rounds in a row, throttle it harder. */
	if (c->dirty_rate_bps * 2 > bw)
		c->hot_rounds++;
	else
		c->hot_rounds = 0;
	if (c->cfg.auto_throttle && c->hot_rounds >= 2) {
		unsigned next = c->throttle_pct ? c->throttle_pct + c->cfg.throttle_step
						: c->cfg.throttle_initial;
		if (next > c->cfg.throttle_max)
			next = c->cfg.throttle_max;
		c->throttle_pct = next;
		if (next > c->throttle_pct_max)
			c->throttle_pct_max = next;
		c->hot_rounds = 1;	/* next raise after one more hot round */
	}
	return MFD_DECIDE_CONTINUE;
}
