/* migrate/stats — statistics of a session, as a struct and as JSON.  Readable from any thread
 * while the session runs: every counter is an atomic (stats only) or read under s->lock.
 *
 * struct mfd_stats grows at its end (multifd.h, "Growing structures"): the calls take the
 * caller's size, and the 0.1 entry points (plain names, MULTIFD_0.1 in the linker map) assume
 * the 0.1 struct, which ended with rejected_connections. */
#include <string.h>
#include "core/json.h"
#include "migrate/session.h"

/* ---- statistics --------------------------------------------------------------------------- */

MFD_API const char *mfd_status_name(int status)
{
	static const char *const names[] = { "none", "setup", "active", "switchover", "completed",
					     "failed", "cancelled" };
	return status >= 0 && status < (int)MFD_ARRAY_SIZE(names) ? names[status] : "unknown";
}

#define STATS_SIZE_0_1 offsetof(struct mfd_stats, round_bytes)

static void get_stats(struct mfd_session *s, struct mfd_stats *st)
{
	memset(st, 0, sizeof(*st));
	/* Acquire: everything the status publishes (a final digest, the downtime) was stored
	 * before it. */
	st->status = __atomic_load_n(&s->st.status, __ATOMIC_ACQUIRE);
	uint64_t start = MFD_ST_GET(s, t_start_ns), end = MFD_ST_GET(s, t_end_ns);
	uint64_t setup = MFD_ST_GET(s, t_setup_ns);
	if (start) {
		st->total_ms = ((end ? end : mfd__now_ns()) - start) / 1000000;
		st->setup_ms = setup ? (setup - start) / 1000000 : 0;
	}
	pthread_mutex_lock(&s->lock);
	st->mem_bytes = s->ram.total_bytes;
	st->channels = s->nchan ? s->nchan - 1 : s->opt.channels;
	for (unsigned i = 0; i < s->nchan && i <= MFD_MAX_CHANNELS; i++) {
		struct mfd__chan *c = s->chan[i];
		if (!c)
			continue;
		st->chan[i].bytes = __atomic_load_n(&c->bytes_in, __ATOMIC_RELAXED) +
				    __atomic_load_n(&c->bytes_out, __ATOMIC_RELAXED);
		st->chan[i].packets = __atomic_load_n(&c->packets_in, __ATOMIC_RELAXED) +
				      __atomic_load_n(&c->packets_out, __ATOMIC_RELAXED);
		st->wire_bytes += st->chan[i].bytes;
	}
	pthread_mutex_unlock(&s->lock);
	st->normal_pages = __atomic_load_n(&s->ramx.normal_pages, __ATOMIC_RELAXED);
	st->zero_pages = __atomic_load_n(&s->ramx.zero_pages, __ATOMIC_RELAXED);
	for (unsigned i = 0; i <= st->channels; i++)
		st->packets += st->chan[i].packets;
	st->rounds = MFD_ST_GET(s, rounds);
	st->dirty_sync_count = MFD_ST_GET(s, syncs);
	st->remaining_bytes = MFD_ST_GET(s, remaining);
	st->dirty_rate_bps = MFD_ST_GET(s, dirty_rate);
	st->bandwidth_bps = MFD_ST_GET(s, bandwidth);
	st->mbps = (double)st->bandwidth_bps * 8 / 1e6;
	st->expected_downtime_ms = MFD_ST_GET(s, expected_dt);
	st->downtime_ms = MFD_ST_GET(s, downtime_ms);
	st->eta_ms = MFD_ST_GET(s, eta_ms);
	st->throttle_pct = MFD_ST_GET(s, throttle);
	st->throttle_pct_max = MFD_ST_GET(s, throttle_max);
	st->device_bytes = MFD_ST_GET(s, device_bytes);
	st->file_bytes = MFD_ST_GET(s, file_bytes);
	st->ready_ms = MFD_ST_GET(s, ready_ms);
	st->rejected_connections = MFD_ST_GET(s, rejected_connections);
	st->cpu_s = (double)MFD_ST_GET(s, cpu_ns) / 1e9;
	st->cpu_s_per_gib = st->mem_bytes ? st->cpu_s / ((double)st->mem_bytes / (1u << 30)) : 0;
	st->verified = MFD_ST_GET(s, verified);
	st->digest = st->verified ? __atomic_load_n(&s->ramx.digest, __ATOMIC_RELAXED) : 0;
	/* The round's figures are stored one by one: a reader between two stores may pair a new
	 * round's size with the old round's start, so the progress is clamped. */
	st->round_bytes = MFD_ST_GET(s, round_bytes);
	uint64_t pages = st->normal_pages + st->zero_pages, first = MFD_ST_GET(s, round_start_pages);
	uint64_t done = pages > first ? (pages - first) * s->ram.page_size : 0;
	st->round_done_bytes = MFD_MIN(done, st->round_bytes);
}

MFD_API void mfd_session_get_stats_sized(struct mfd_session *s, struct mfd_stats *st,
					 size_t st_size)
{
	struct mfd_stats full;
	get_stats(s, &full);
	mfd__struct_out(st, st_size, &full, sizeof(full));
}

MFD_API void (mfd_session_get_stats)(struct mfd_session *s, struct mfd_stats *st);
MFD_API void (mfd_session_get_stats)(struct mfd_session *s, struct mfd_stats *st)
{
	mfd_session_get_stats_sized(s, st, STATS_SIZE_0_1);
}

/* MiB per second of `bytes` moved over the transfer's time (since setup ended); 0 before. */
static double mib_s(const struct mfd_stats *st, uint64_t bytes)
{
	bool transferring = st->status >= MFD_STATUS_ACTIVE;	/* active, or ended after it */
	uint64_t ms = st->total_ms > st->setup_ms ? st->total_ms - st->setup_ms : 0;
	return transferring && ms ? (double)bytes / (1024.0 * 1024.0) / ((double)ms / 1000.0) : 0.0;
}

MFD_API int mfd_stats_json_sized(const struct mfd_stats *caller, size_t st_size, char *buf,
				 size_t len)
{
	/* A smaller (older) struct reads as ours with zeros at the end; members of a larger
	 * (newer) one that we do not know are left out. */
	struct mfd_stats full;
	memset(&full, 0, sizeof(full));
	memcpy(&full, caller, MFD_MIN(st_size, sizeof(full)));
	const struct mfd_stats *st = &full;
	struct mfd__json j;
	mfd__json_init(&j, buf, len);
	mfd__json_begin(&j, NULL);
	mfd__json_u64(&j, "schema", MFD_JSON_SCHEMA);
	mfd__json_str(&j, "status", mfd_status_name(st->status));
	mfd__json_u64(&j, "total_ms", st->total_ms);
	mfd__json_u64(&j, "setup_ms", st->setup_ms);
	mfd__json_u64(&j, "mem_bytes", st->mem_bytes);
	mfd__json_u64(&j, "wire_bytes", st->wire_bytes);
	mfd__json_u64(&j, "normal_pages", st->normal_pages);
	mfd__json_u64(&j, "zero_pages", st->zero_pages);
	mfd__json_u64(&j, "packets", st->packets);
	mfd__json_u64(&j, "channels", st->channels);
	mfd__json_double(&j, "throughput_mib_s", mib_s(st, st->wire_bytes));
	mfd__json_begin_array(&j, "per_channel");
	for (unsigned i = 0; i <= st->channels && i <= MFD_MAX_CHANNELS; i++) {
		mfd__json_begin(&j, NULL);
		mfd__json_u64(&j, "bytes", st->chan[i].bytes);
		mfd__json_u64(&j, "packets", st->chan[i].packets);
		mfd__json_double(&j, "throughput_mib_s", mib_s(st, st->chan[i].bytes));
		mfd__json_end(&j);
	}
	mfd__json_end_array(&j);
	mfd__json_u64(&j, "rounds", st->rounds);
	mfd__json_u64(&j, "round_bytes", st->round_bytes);
	mfd__json_u64(&j, "round_done_bytes", st->round_done_bytes);
	mfd__json_u64(&j, "dirty_sync_count", st->dirty_sync_count);
	mfd__json_u64(&j, "remaining_bytes", st->remaining_bytes);
	mfd__json_u64(&j, "dirty_rate_bps", st->dirty_rate_bps);
	mfd__json_u64(&j, "bandwidth_bps", st->bandwidth_bps);
	mfd__json_double(&j, "mbps", st->mbps);
	mfd__json_u64(&j, "expected_downtime_ms", st->expected_downtime_ms);
	mfd__json_u64(&j, "downtime_ms", st->downtime_ms);
	mfd__json_u64(&j, "eta_ms", st->eta_ms);
	mfd__json_u64(&j, "throttle_pct", st->throttle_pct);
	mfd__json_u64(&j, "throttle_pct_max", st->throttle_pct_max);
	mfd__json_u64(&j, "device_bytes", st->device_bytes);
	mfd__json_u64(&j, "file_bytes", st->file_bytes);
	mfd__json_u64(&j, "ready_ms", st->ready_ms);
	mfd__json_u64(&j, "rejected_connections", st->rejected_connections);
	mfd__json_double(&j, "cpu_s", st->cpu_s);
	mfd__json_double(&j, "cpu_s_per_gib", st->cpu_s_per_gib);
	mfd__json_bool(&j, "verified", st->verified);
	mfd__json_end(&j);
	return (int)mfd__json_finish(&j);
}

MFD_API int (mfd_stats_json)(const struct mfd_stats *st, char *buf, size_t len);
MFD_API int (mfd_stats_json)(const struct mfd_stats *st, char *buf, size_t len)
{
	return mfd_stats_json_sized(st, STATS_SIZE_0_1, buf, len);
}
