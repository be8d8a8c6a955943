/* cli/timeline — a picture of one migration (or save) over time, as an SVG file.
 *
 * The statistics are sampled while the operation runs (every 50 to 100 ms: ctl and demo from
 * the query replies, bench from the session in a thread of its own) and drawn on one time axis
 * in three bands: the throughput (bytes moved per second between samples) and the guest's dirty
 * rate; the bytes the current round still has to send (they drop through a round and jump at the
 * next one to the dirty set found); the throttle.  Round boundaries are dashed lines, and the
 * downtime (from the guest's stop to the destination's commit) a red band at the end. */
#ifndef MFD_CLI_TIMELINE_H
#define MFD_CLI_TIMELINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include "multifd.h"

struct tl_sample {
	uint64_t t_ms;			/* the session's clock: total_ms */
	int status;
	uint64_t rounds, wire_bytes, round_left_bytes, dirty_rate_bps;
	unsigned throttle_pct;
};

struct timeline {
	struct tl_sample *v;
	size_t n, cap;
};

/* Add a sample (one of a session that has not started yet is skipped).  0 or -ENOMEM. */
int timeline_add(struct timeline *tl, const struct mfd_stats *st);
/* Draw the samples, with the final statistics (downtime, total) and a title, into path.
 * 0, or -errno with the reason in err. */
int timeline_write_svg(const struct timeline *tl, const struct mfd_stats *final, const char *title,
		       const char *path, char *err, size_t errlen);
void timeline_free(struct timeline *tl);

/* A thread that samples a session every period_ms until stopped (bench).  The session must
 * outlive timeline_sampler_stop. */
struct tl_sampler {
	struct timeline *tl;		/* written by the thread until stop returns */
	struct mfd_session *s;
	unsigned period_ms;
	int stop;			/* atomic: set by stop, read by the thread */
	pthread_t t;
	bool running;			/* the caller's */
};
int timeline_sampler_start(struct tl_sampler *sp, struct timeline *tl, struct mfd_session *s,
			   unsigned period_ms);
void timeline_sampler_stop(struct tl_sampler *sp);

#endif
