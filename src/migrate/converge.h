/* migrate/converge — the decision taken after every dirty sync of a live migration.
 *
 * Inputs per round: bytes sent and how long the round took, dirty bytes found by the sync and the
 * time since the previous sync.  It estimates the bandwidth over a sliding window of recent
 * rounds (at least 200 ms of sending, so a tiny round does not make the estimate jump), the dirty
 * rate, and the downtime of stopping now (remaining dirty bytes plus device state over the
 * bandwidth).  It switches over when that estimate is under the limit — unless one more round,
 * short because the set is small, would at least halve the dirty set (the limit is a ceiling,
 * not a target: up to MFD_CONVERGE_EXTRA such rounds, while they keep halving it and its share
 * of the downtime is over MFD_CONVERGE_FLOOR_MS); otherwise it keeps going,
 * raising the throttle while the guest dirties memory at more than half the bandwidth; at the
 * deadline it fails or forces the switchover, as configured (but switches over when the deadline
 * comes within MFD_CONVERGE_BET_ROUNDS rounds of an extra round it chose that overshot the limit:
 * that was its bet, not the guest's failure).  Pure computation: no I/O, no
 * threads, so it is tested on its own. */
#ifndef MFD_MIGRATE_CONVERGE_H
#define MFD_MIGRATE_CONVERGE_H

#include <stdbool.h>
#include <stdint.h>

struct mfd__converge_cfg {
	uint64_t downtime_ms;
	uint64_t deadline_ms;		/* 0 = none */
	bool deadline_force;
	bool auto_throttle;
	unsigned throttle_initial, throttle_step, throttle_max;
};

#define MFD_CONVERGE_WINDOW 8
#define MFD_CONVERGE_EXTRA 4		/* rounds taken under the limit to shrink the downtime */
#define MFD_CONVERGE_FLOOR_MS 5		/* a downtime not worth another round */
#define MFD_CONVERGE_BET_ROUNDS 2	/* rounds over the limit that an extra round answers for */

struct mfd__converge {
	struct mfd__converge_cfg cfg;
	uint64_t win_bytes[MFD_CONVERGE_WINDOW], win_ns[MFD_CONVERGE_WINDOW];
	unsigned win_n, win_head;
	unsigned throttle_pct, throttle_pct_max;
	unsigned hot_rounds;		/* consecutive rounds dirtying faster than bw / 2 */
	unsigned extra_rounds;		/* rounds taken under the limit so far */
	uint64_t prev_dirty;		/* dirty bytes after the previous round */
	unsigned bet_rounds;		/* 0, or 1 + rounds over the limit since an extra round */
	/* Outputs of the last step. */
	uint64_t bandwidth_bps, dirty_rate_bps, expected_downtime_ms, eta_ms;
};

enum mfd__decision { MFD_DECIDE_CONTINUE, MFD_DECIDE_SWITCHOVER, MFD_DECIDE_FAIL };

struct mfd__round {
	uint64_t sent_bytes;		/* wire bytes of the round */
	uint64_t send_ns;		/* how long sending it took */
	uint64_t dirty_bytes;		/* found by the sync that ended it */
	uint64_t since_sync_ns;		/* time since the previous sync */
	uint64_t device_bytes;		/* estimate of device state to send at switchover */
	uint64_t elapsed_ms;		/* since the migration started */
};

void mfd__converge_init(struct mfd__converge *c, const struct mfd__converge_cfg *cfg);
/* Returns the decision; c->throttle_pct is the throttle to apply from now on. */
enum mfd__decision mfd__converge_step(struct mfd__converge *c, const struct mfd__round *r);

#endif
