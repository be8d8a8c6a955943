/* cli/progress — see progress.h. */
#include <inttypes.h>
#include <string.h>
#include "jsonv.h"
#include "progress.h"

#define MIB (1024.0 * 1024.0)

const char *progress_bytes(char *buf, size_t cap, uint64_t bytes)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
	if (bytes < 1024) {
		snprintf(buf, cap, "%" PRIu64 " B", bytes);
		return buf;
	}
	double v = (double)bytes / 1024;
	unsigned u = 0;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, cap, "%.1f %s", v, units[u]);
	return buf;
}

static bool final(int status)
{
	return status == MFD_STATUS_COMPLETED || status == MFD_STATUS_FAILED ||
	       status == MFD_STATUS_CANCELLED;
}

/* Bytes moved per second over the transfer so far (what the JSON calls throughput_mib_s). */
static double overall_mib_s(const struct mfd_stats *st)
{
	uint64_t ms = st->total_ms > st->setup_ms ? st->total_ms - st->setup_ms : 0;
	return st->status >= MFD_STATUS_ACTIVE && ms ? (double)st->wire_bytes / MIB / (ms / 1000.0)
						      : 0;
}

/* Time left: the library's estimate once a round has ended; in the first round, what is left of
 * it at the current rate (the estimate needs a dirty rate, known only after a round). */
static double eta_s(const struct mfd_stats *st, double rate_mib_s)
{
	if (st->eta_ms)
		return st->eta_ms / 1000.0;
	uint64_t left = st->round_bytes > st->round_done_bytes ? st->round_bytes - st->round_done_bytes
							       : 0;
	return rate_mib_s > 0 && left ? (double)left / MIB / rate_mib_s : -1;
}

void progress_line(FILE *out, struct progress *p, const struct mfd_stats *st)
{
	if (p->started && st->total_ms > p->last_ms) {
		double r = (double)(st->wire_bytes - p->last_wire) / MIB /
			   ((st->total_ms - p->last_ms) / 1000.0);
		p->rate_mib_s = p->rate_mib_s > 0 ? (p->rate_mib_s + r) / 2 : r;	/* smoothed */
	} else if (!p->started) {
		p->rate_mib_s = overall_mib_s(st);
	}
	p->started = true;
	p->last_wire = st->wire_bytes;
	p->last_ms = st->total_ms;
	bool done = final(st->status);
	double rate = done ? overall_mib_s(st) : p->rate_mib_s;
	double frac = st->round_bytes ? (double)st->round_done_bytes / (double)st->round_bytes : 0;
	if (st->status == MFD_STATUS_COMPLETED)
		frac = 1;
	char bar[21], eta[24], dt[24];
	int n = (int)(frac * 20);
	for (int i = 0; i < 20; i++)
		bar[i] = i < n ? '#' : '.';
	bar[20] = '\0';
	double e = eta_s(st, rate);
	if (done)
		snprintf(eta, sizeof(eta), "done");
	else if (e < 0)
		snprintf(eta, sizeof(eta), "ETA ?");
	else
		snprintf(eta, sizeof(eta), "ETA %.1fs", e);
	if (st->downtime_ms)
		snprintf(dt, sizeof(dt), "downtime %" PRIu64 " ms", st->downtime_ms);
	else if (st->expected_downtime_ms)
		snprintf(dt, sizeof(dt), "downtime ~%" PRIu64 " ms", st->expected_downtime_ms);
	else
		snprintf(dt, sizeof(dt), "downtime ?");
	fprintf(out, "\r  %-10s round %-3" PRIu64 " [%s] %3.0f%%  %-10s %7.1f MiB/s  dirty %6.1f "
		"MiB/s  %-18s thr %2u%%  %5.1fs\033[K%s", mfd_status_name(st->status), st->rounds, bar,
		frac * 100, eta, rate, st->dirty_rate_bps / MIB, dt, st->throttle_pct,
		st->total_ms / 1000.0, done ? "\n" : "");
	fflush(out);
}

void progress_info(FILE *out, const char *reply)
{
	char s[256], b1[32], b2[32];
	struct mfd_stats st;
	const char *m = jv_find(reply, "migration", NULL);
	if (jv_str(reply, "vm", s, sizeof(s)))
		fprintf(out, "%-20s %s\n", "vm:", s);
	if (!m) {
		fprintf(out, "%-20s none\n", "migration:");
		return;
	}
	jv_stats(reply, "migration", &st);
	char op[32] = "", role[32] = "";
	jv_str(reply, "operation", op, sizeof(op));
	jv_str(reply, "role", role, sizeof(role));
	fprintf(out, "%-20s %s (%s, %s)\n", "status:", mfd_status_name(st.status), op, role);
	if (jv_str(reply, "migration_error", s, sizeof(s)))
		fprintf(out, "%-20s %s\n", "error:", s);
	fprintf(out, "%-20s %" PRIu64 " ms (setup %" PRIu64 " ms)\n", "time:", st.total_ms,
		st.setup_ms);
	if (st.rounds)
		fprintf(out, "%-20s %" PRIu64 ", %.0f%% of %s done\n", "round:", st.rounds,
			st.round_bytes ? 100.0 * st.round_done_bytes / st.round_bytes : 100.0,
			progress_bytes(b1, sizeof(b1), st.round_bytes));
	fprintf(out, "%-20s %s of %s\n", "memory:", progress_bytes(b1, sizeof(b1), st.mem_bytes),
		"guest RAM");
	fprintf(out, "%-20s %s, %.1f MiB/s over the transfer\n", "transferred:",
		progress_bytes(b1, sizeof(b1), st.wire_bytes), overall_mib_s(&st));
	fprintf(out, "%-20s %s dirty at the last sync\n", "remaining:",
		progress_bytes(b1, sizeof(b1), st.remaining_bytes));
	fprintf(out, "%-20s %.1f MiB/s (last rounds)\n", "bandwidth:", st.bandwidth_bps / MIB);
	fprintf(out, "%-20s %.1f MiB/s\n", "dirty rate:", st.dirty_rate_bps / MIB);
	int64_t limit = (int64_t)jv_u64(reply, "parameters.downtime_ms");
	fprintf(out, "%-20s %" PRIu64 " ms (limit %" PRId64 " ms)\n", "expected downtime:",
		st.expected_downtime_ms, limit);
	if (st.downtime_ms || st.status == MFD_STATUS_COMPLETED)
		fprintf(out, "%-20s %" PRIu64 " ms\n", "downtime:", st.downtime_ms);
	double e = eta_s(&st, overall_mib_s(&st));
	if (final(st.status))
		fprintf(out, "%-20s -\n", "ETA:");
	else if (e < 0)
		fprintf(out, "%-20s unknown\n", "ETA:");
	else
		fprintf(out, "%-20s %.1f s\n", "ETA:", e);
	fprintf(out, "%-20s %u%% (highest %u%%)\n", "throttle:", st.throttle_pct, st.throttle_pct_max);
	fprintf(out, "%-20s %" PRIu64 " with data, %" PRIu64 " zero\n", "pages:", st.normal_pages,
		st.zero_pages);
	uint64_t bw = jv_u64(reply, "parameters.max_bandwidth");
	if (bw)
		progress_bytes(b2, sizeof(b2), bw);
	fprintf(out, "%-20s max-bandwidth %s%s, downtime-ms %" PRId64 ", channels %" PRIu64 "\n",
		"parameters:", bw ? b2 : "unlimited", bw ? "/s" : "", limit,
		jv_u64(reply, "parameters.channels"));
	fprintf(out, "%-20s %10s %10s %10s\n", "channel", "bytes", "packets", "MiB/s");
	uint64_t ms = st.total_ms > st.setup_ms ? st.total_ms - st.setup_ms : 0;
	for (unsigned i = 0; i <= st.channels && i <= MFD_MAX_CHANNELS; i++) {
		char name[16];
		snprintf(name, sizeof(name), i ? "  data %u" : "  main", i);
		fprintf(out, "%-20s %10s %10" PRIu64 " %10.1f\n", name,
			progress_bytes(b1, sizeof(b1), st.chan[i].bytes), st.chan[i].packets,
			ms ? st.chan[i].bytes / MIB / (ms / 1000.0) : 0.0);
	}
}

void progress_channels(FILE *out, const struct mfd_stats *st)
{
	char b[32];
	uint64_t ms = st->total_ms > st->setup_ms ? st->total_ms - st->setup_ms : 0;
	fprintf(out, "channels    ");
	for (unsigned i = 0; i <= st->channels && i <= MFD_MAX_CHANNELS; i++) {
		fprintf(out, " %s%s", i ? "" : "main ", progress_bytes(b, sizeof(b), st->chan[i].bytes));
		if (i)
			fprintf(out, " (%.0f MiB/s)", ms ? st->chan[i].bytes / MIB / (ms / 1000.0) : 0.0);
		fprintf(out, "%s", i == 0 ? ";" : i < st->channels ? "," : "");
	}
	fprintf(out, "\n");
}
