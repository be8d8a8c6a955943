/* t_api — the API's promises around versions, growing structs, live parameters and events:
 *   - the version macros, mfd_version() and mfd_version_number() agree;
 *   - growing structs are served at the caller's size: an older (smaller) struct is filled only
 *     as far as it goes (the bytes after it untouched), a newer (larger) one zero-filled past
 *     ours; callbacks of an unknown size are refused (-EINVAL, -E2BIG); the 0.1 entry points
 *     (the plain names, called as functions) still work at the 0.1 size;
 *   - after connect, only MFD_OPT_MAX_BANDWIDTH and MFD_OPT_DOWNTIME_MS may change, from any
 *     thread; a new bandwidth cap set while a capped transfer runs changes its measured rate;
 *   - the event callback reports every status change in order and every round, and may read the
 *     stats; the round figures (round_bytes, round_done_bytes) add up. */
#include <stddef.h>
#include "pair.h"
#include "migrate/session.h"

#define MIB (1024.0 * 1024.0)

static void versions(void)
{
	char want[32];
	snprintf(want, sizeof(want), "%d.%d.%d", MFD_VERSION_MAJOR, MFD_VERSION_MINOR,
		 MFD_VERSION_PATCH);
	CHECK(!strcmp(mfd_version(), want));
	CHECK_EQ(mfd_version_number(), MFD_VERSION_NUMBER);
	CHECK_EQ(MFD_VERSION_NUMBER, MFD_VERSION_MAJOR * 10000 + MFD_VERSION_MINOR * 100 +
				     MFD_VERSION_PATCH);
}

/* What the 0.1 header declared: the library's own entry points of that release. */
void (mfd_session_get_stats)(struct mfd_session *s, struct mfd_stats *st);
void (mfd_session_set_callbacks)(struct mfd_session *s, const struct mfd_callbacks *cb);
int (mfd_stats_json)(const struct mfd_stats *st, char *buf, size_t len);

static void growth(void)
{
	struct mfd_session *s = mfd_session_new(MFD_OUTGOING);
	uint8_t *mem = t_map(1 << 20);
	CHECK_EQ(mfd_ram_block_add(s, "ram", mem, 1 << 20, 4096, 0), 0);
	const size_t old = offsetof(struct mfd_stats, round_bytes);	/* the 0.1 struct */
	union {
		struct mfd_stats st;
		uint8_t b[sizeof(struct mfd_stats) + 64];
	} u;
	memset(&u, 0xa5, sizeof(u));
	mfd_session_get_stats_sized(s, &u.st, old);
	CHECK_EQ(u.st.mem_bytes, 1 << 20);
	for (size_t i = old; i < sizeof(u); i++)	/* nothing written past an older struct */
		if (u.b[i] != 0xa5) {
			CHECK(!"get_stats wrote past the caller's struct");
			break;
		}
	memset(&u, 0xa5, sizeof(u));
	(mfd_session_get_stats)(s, &u.st);	/* the 0.1 symbol: the 0.1 size */
	CHECK_EQ(u.st.mem_bytes, 1 << 20);
	CHECK_EQ(u.b[old], 0xa5);
	memset(&u, 0xa5, sizeof(u));
	mfd_session_get_stats_sized(s, &u.st, sizeof(u));	/* a newer, larger struct */
	for (size_t i = sizeof(struct mfd_stats); i < sizeof(u); i++)
		if (u.b[i] != 0) {
			CHECK(!"a newer struct's unknown tail was not zeroed");
			break;
		}
	/* JSON of a 0.1 struct: the members it lacks read as zero. */
	char js[4096];
	u.st.round_bytes = 77777;
	CHECK(mfd_stats_json_sized(&u.st, old, js, sizeof(js)) > 0);
	CHECK(strstr(js, "\"round_bytes\":0,") != NULL);
	CHECK(strstr(js, "\"schema\":1,") != NULL);
	CHECK((mfd_stats_json)(&u.st, js, sizeof(js)) > 0 && strstr(js, "\"round_bytes\":0,"));

	union {
		struct mfd_callbacks cb;
		uint8_t b[sizeof(struct mfd_callbacks) + 16];
	} c;
	memset(&c, 0, sizeof(c));
	CHECK_CODE(mfd_session_set_callbacks_sized(s, &c.cb, offsetof(struct mfd_callbacks, log)),
		   -EINVAL);
	CHECK_CODE(mfd_session_set_callbacks_sized(s, &c.cb, sizeof(c)), 0);
	c.b[sizeof(struct mfd_callbacks) + 3] = 1;	/* a member this library does not know */
	CHECK_CODE(mfd_session_set_callbacks_sized(s, &c.cb, sizeof(c)), -E2BIG);
	(mfd_session_set_callbacks)(s, &c.cb);	/* the 0.1 symbol */
	CHECK_CODE(mfd_session_set_callbacks(s, NULL), 0);

	struct mfd_snapshot_info info;
	memset(&info, 0, sizeof(info));
	CHECK_CODE(mfd_snapshot_inspect_sized("/nonexistent", &info, 8, NULL), -EINVAL);
	CHECK_CODE(mfd_snapshot_inspect("/nonexistent/x.snap", &info, NULL), -ENOENT);
	mfd_snapshot_info_free(&info);
	mfd_session_free(s);
	munmap(mem, 1 << 20);
}

/* ---- a live transfer: events, rounds, parameters changed from another thread ------------------ */

struct watch {
	struct mfd_session *s;
	int statuses[16];
	unsigned nstatus;
	uint64_t rounds[64], round_bytes[64];
	unsigned nrounds;
	bool stats_ok;		/* get_stats from the callback agreed with the event */
};

static void on_event(void *opaque, int event, uint64_t value)
{
	struct watch *w = opaque;
	struct mfd_stats st;
	mfd_session_get_stats(w->s, &st);
	if (event == MFD_EVENT_STATUS && w->nstatus < 16) {
		w->statuses[w->nstatus++] = (int)value;
		w->stats_ok = w->stats_ok && st.status == (int)value;
	} else if (event == MFD_EVENT_ROUND && w->nrounds < 64) {
		w->round_bytes[w->nrounds] = st.round_bytes;
		w->rounds[w->nrounds++] = value;
		w->stats_ok = w->stats_ok && st.rounds == value;
	}
}

struct operator {
	struct mfd_session *s;
	double rate1, rate2;	/* MiB/s measured under the first and the second cap */
	uint64_t round_bytes, done1, done2;
	int set_rc;
};

static uint64_t wire(struct mfd_session *s)
{
	struct mfd_stats st;
	mfd_session_get_stats(s, &st);
	return st.wire_bytes;
}

static void *operator_thread(void *arg)
{
	struct operator *o = arg;
	struct mfd_stats st;
	usleep(400000);
	uint64_t b0 = wire(o->s), t0 = t_now_ns();
	usleep(600000);
	uint64_t b1 = wire(o->s), t1 = t_now_ns();
	mfd_session_get_stats(o->s, &st);
	o->round_bytes = st.round_bytes;
	o->done1 = st.round_done_bytes;
	o->set_rc = mfd_session_set(o->s, MFD_OPT_MAX_BANDWIDTH, 64 << 20);
	o->set_rc |= mfd_session_set(o->s, MFD_OPT_DOWNTIME_MS, 500);
	usleep(100000);
	mfd_session_get_stats(o->s, &st);
	o->done2 = st.round_done_bytes;	/* still the first round: over 40 MiB to go */
	uint64_t b2 = st.wire_bytes, t2 = t_now_ns();
	usleep(300000);
	uint64_t b3 = wire(o->s), t3 = t_now_ns();
	o->rate1 = (double)(b1 - b0) / MIB / ((double)(t1 - t0) / 1e9);
	o->rate2 = (double)(b3 - b2) / MIB / ((double)(t3 - t2) / 1e9);
	return NULL;
}

static void live(void)
{
	const size_t len = 48u << 20;
	uint8_t *src = t_map(len), *dst = t_map(len);
	t_fill(src, len, 7);
	struct pair p;
	pair_new(&p);
	pair_block_add(&p, "ram", src, dst, len, MFD_BLOCK_ZEROED);
	struct watch w = { .s = p.src.s, .stats_ok = true };
	struct mfd_callbacks cb = { .event = on_event, .opaque = &w };
	CHECK_CODE(mfd_session_set_callbacks(p.src.s, &cb), 0);
	CHECK_CODE(mfd_session_set(p.src.s, MFD_OPT_MAX_BANDWIDTH, 8 << 20), 0);
	CHECK_CODE(mfd_session_track_manual(p.src.s), 0);
	struct mfd__test_knobs k = { .min_rounds = 3 };	/* rounds 1..3, then the final one */
	mfd__session_set_test_knobs(p.src.s, &k);
	CHECK_CODE(pair_listen(&p, pair_unix(&p, "api"), 0), 0);
	CHECK_CODE(pair_connect(&p), 0);
	/* Connected: the operator's parameters only. */
	CHECK_CODE(mfd_session_set(p.src.s, MFD_OPT_CHANNELS, 2), MFD_ESTATE);
	CHECK_CODE(mfd_session_set(p.src.s, MFD_OPT_DEADLINE_MS, 5), MFD_ESTATE);
	CHECK_CODE(mfd_session_set(p.src.s, MFD_OPT_DOWNTIME_MS, 0), -EINVAL);
	CHECK_CODE(mfd_session_set(p.src.s, MFD_OPT_MAX_BANDWIDTH, -1), -EINVAL);
	CHECK_CODE(mfd_session_set_callbacks(p.src.s, &cb), MFD_ESTATE);
	struct operator o = { .s = p.src.s };
	pthread_t t;
	pthread_create(&t, NULL, operator_thread, &o);
	p.src.rc = mfd_session_run(p.src.s, &p.src.err);
	pthread_join(t, NULL);
	pair_join(&p);
	if (p.src.rc || p.dst.rc)
		pair_print(&p, "live");
	CHECK_CODE(p.src.rc, 0);
	CHECK_CODE(p.dst.rc, 0);
	CHECK(!memcmp(src, dst, len));

	/* The cap, then the new cap, measured within the first round. */
	printf("rate under 8 MiB/s: %.1f MiB/s, after the change to 64 MiB/s: %.1f MiB/s\n",
	       o.rate1, o.rate2);
	CHECK_CODE(o.set_rc, 0);
	CHECK(o.rate1 > 4 && o.rate1 < 11);
	CHECK(o.rate2 > 2.5 * o.rate1);
	CHECK_EQ(o.round_bytes, len);
	CHECK(o.done1 > 0 && o.done1 < o.done2 && o.done2 <= len);

	/* Events: every status in order, rounds 1..4 (the 4th the final one). */
	static const int want[] = { MFD_STATUS_SETUP, MFD_STATUS_ACTIVE, MFD_STATUS_SWITCHOVER,
				    MFD_STATUS_COMPLETED };
	CHECK_EQ(w.nstatus, 4);
	for (unsigned i = 0; i < 4 && i < w.nstatus; i++)
		CHECK_EQ(w.statuses[i], want[i]);
	CHECK_EQ(w.nrounds, 4);
	for (unsigned i = 0; i < w.nrounds; i++)
		CHECK_EQ(w.rounds[i], i + 1);
	CHECK_EQ(w.round_bytes[0], len);	/* the first pass: all of memory */
	CHECK(w.stats_ok);
	struct mfd_stats st;
	mfd_session_get_stats(p.src.s, &st);
	CHECK_EQ(st.rounds, 4);
	CHECK_EQ(st.round_bytes, 0);	/* nothing dirty was left for the final round */
	pair_free(&p);
	munmap(src, len);
	munmap(dst, len);
}

int main(void)
{
	versions();
	growth();
	live();
	return t_done("t_api");
}
