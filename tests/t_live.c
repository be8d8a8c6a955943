/* t_live — live migration tracked by userfaultfd write-protect (writers do not mark anything):
 * the destination ends equal to the source at the switchover; a destination killed mid-migration
 * is reported within a second and leaves the source running with tracking stopped (a second
 * migration of the same memory then works); a destination that got a corrupt stream can take a
 * new migration at once; device state travels, with its errors. */
#include <signal.h>
#include <sys/wait.h>
#include "fakedev.h"
#include "fakepeer.h"
#include "guest.h"
#include "pair.h"
#include "ram/track.h"
#include "migrate/session.h"

static bool uffd_available(void)
{
	struct mfd__ram ram = { 0 };
	uint8_t *m = t_map(1 << 20);
	mfd__ram_add(&ram, "probe", m, 1 << 20, 4096, 0, NULL);
	struct mfd__tracker *t = NULL;
	int rc = mfd__tracker_uffd_new(&t, &ram, false, NULL);
	if (rc == 0)
		rc = t->ops->start(t, NULL);
	mfd__tracker_destroy(t);
	mfd__ram_free(&ram);
	munmap(m, 1 << 20);
	return rc == 0;
}

/* One in-process live migration of `src` (tracked by uffd, writers running) to fresh memory,
 * over tcp or a unix socket. */
static int migrate_uffd(uint8_t *src, size_t len, struct guest *g, bool over_unix,
			struct mfd_stats *st)
{
	uint8_t *dm = t_map(len);
	struct pair p;
	pair_new(&p);
	pair_block_add(&p, "ram", src, dm, len, MFD_BLOCK_ZEROED);
	mfd_session_set(p.src.s, MFD_OPT_VERIFY, 1);
	CHECK_CODE(mfd_session_track_uffd(p.src.s), 0);
	struct mfd_callbacks cb = guest_callbacks(g);
	mfd_session_set_callbacks(p.src.s, &cb);
	CHECK_CODE(pair_listen(&p, over_unix ? pair_unix(&p, "t-live-again") : "tcp:127.0.0.1:0", 0),
		   0);
	int rc = pair_run(&p);
	if (rc)
		fprintf(stderr, "source: %s\n", p.src.err.msg);
	if (rc == 0) {
		CHECK_CODE(p.dst.rc, 0);
		CHECK(memcmp(src, dm, len) == 0);	/* writers are parked since the stop */
	}
	mfd_session_get_stats(p.src.s, st);
	pair_free(&p);
	munmap(dm, len);
	return rc;
}

static void test_uffd_live(void)
{
	size_t len = 64u << 20;
	uint8_t *src = t_map(len);
	t_fill(src, len, 3);
	struct guest g = { .mem = src, .len = 16u << 20, .nthreads = 2, .pages_per_ms = 200 };
	guest_start(&g);
	usleep(20000);
	struct mfd_stats st;
	CHECK_CODE(migrate_uffd(src, len, &g, false, &st), 0);
	fprintf(stderr, "uffd live: rounds %llu, downtime %llu ms, writes %llu\n",
		(unsigned long long)st.rounds, (unsigned long long)st.downtime_ms,
		(unsigned long long)g.writes);
	CHECK(st.verified);
	CHECK(st.rounds >= 2);
	CHECK_EQ(g.stops, 1);
	/* The guest continues on the source after a completed migration only if the embedder says
	 * so; here it resumes, and the memory must be writable (tracking is off). */
	g_resume(&g);
	uint64_t w = __atomic_load_n(&g.writes, __ATOMIC_RELAXED);
	usleep(20000);
	CHECK(__atomic_load_n(&g.writes, __ATOMIC_RELAXED) > w);
	guest_stop_threads(&g);
	munmap(src, len);
}

/* The destination process dies mid-migration: the source reports it within a second, keeps
 * running, and its memory can be migrated again (the tracker let go of it). */
static void test_kill_destination(void)
{
	size_t len = 256u << 20;
	uint8_t *src = t_map(len);
	t_fill(src, len, 11);
	struct pair p;
	pair_new(&p);
	pid_t pid = pair_fork_destination(&p, len);
	struct guest g = { .mem = src, .len = 32u << 20, .nthreads = 1, .pages_per_ms = 100 };
	guest_start(&g);
	mfd_ram_block_add(p.src.s, "ram", src, len, 4096, 0);
	CHECK_CODE(mfd_session_track_uffd(p.src.s), 0);
	mfd_session_set(p.src.s, MFD_OPT_MAX_BANDWIDTH, 200 << 20);	/* slow enough to kill mid-way */
	struct mfd_callbacks cb = guest_callbacks(&g);
	mfd_session_set_callbacks(p.src.s, &cb);
	CHECK_CODE(pair_connect(&p), 0);
	pair_side_start(&p.src);
	for (int i = 0; i < 3000; i++) {	/* until 64 MiB moved (or 6 s) */
		struct mfd_stats st;
		mfd_session_get_stats(p.src.s, &st);
		if (st.wire_bytes >= (64u << 20))
			break;
		usleep(2000);
	}
	kill(pid, SIGKILL);
	uint64_t killed_ns = t_now_ns();
	waitpid(pid, NULL, 0);
	pair_side_join(&p.src);
	fprintf(stderr, "killed destination: %s, %.0f ms after the kill\n", p.src.err.msg,
		(double)(p.src.done_ns - killed_ns) / 1e6);
	int rc = p.src.rc;
	CHECK(rc == -ECONNRESET || rc == -EPIPE || rc == MFD_ECLOSED || rc == MFD_ETRUNC);
	CHECK(p.src.done_ns - killed_ns < 1000000000ull);
	CHECK_EQ(g.stops, g.resumes);
	uint64_t w = __atomic_load_n(&g.writes, __ATOMIC_RELAXED);
	usleep(20000);
	CHECK(__atomic_load_n(&g.writes, __ATOMIC_RELAXED) > w);	/* the guest runs on */
	pair_free(&p);
	/* Tracking was released: the same memory migrates again, live, to a new destination. */
	struct mfd_stats st;
	CHECK_CODE(migrate_uffd(src, len, &g, true, &st), 0);
	guest_stop_threads(&g);
	munmap(src, len);
}

/* A destination that received a corrupt stream reports it and takes a new migration at once, on
 * the same memory and the same address. */
static void test_destination_reusable(void)
{
	size_t len = 8u << 20;
	uint8_t *src = t_map(len), *dm = t_map(len);
	t_fill(src, len, 21);
	memset(dm, 0x6b, len);	/* leftovers of the failed attempt must not survive */
	for (int attempt = 0; attempt < 2; attempt++) {
		struct pair p;
		pair_new(&p);
		pair_block_add(&p, "ram", src, dm, len, 0);
		CHECK_CODE(pair_listen(&p, pair_unix(&p, "t-live-reuse"), 0), 0);
		if (attempt == 0) {
			/* A hello whose checksum is wrong is refused (the reply says why) and counted;
			 * the destination goes on waiting. */
			int fd = pair_dial(&p);
			uint8_t b[MFD_HELLO_LEN], r[MFD_ACCEPT_LEN];
			struct mfd__hello h = fake_hello(0, 2, 64);
			mfd__hello_encode(b, &h);
			b[20] ^= 0x10;
			mfd__io_write_fd(fd, b, sizeof(b));
			struct mfd__accept a;
			CHECK_CODE(mfd__io_read_fd(fd, r, sizeof(r)), 0);
			CHECK_CODE(mfd__accept_decode(r, sizeof(r), &a, 0, NULL), 0);
			CHECK_CODE(a.status, MFD_ECHECKSUM);
			close(fd);
			/* A corrupt stream once the channels are in: the destination fails. */
			int ch[2];
			uint64_t seq = 0;
			for (int i = 0; i < 2; i++) {
				ch[i] = pair_dial(&p);
				h = fake_hello((uint16_t)i, 2, 64);
				fake_send_hello(ch[i], &h);
			}
			for (int i = 0; i < 2; i++) {
				CHECK_CODE(mfd__io_read_fd(ch[i], r, sizeof(r)), 0);
				CHECK_CODE(mfd__accept_decode(r, sizeof(r), &a, i, NULL), 0);
				CHECK_CODE(a.status, 0);
			}
			struct mfd__block_desc bd = { "ram", len, 4096 };
			uint8_t meta[512], hdr[MFD_PKT_HDR_LEN];
			uint32_t ml = mfd__blocks_encode(meta, &bd, 1);
			struct mfd__pkt_hdr ph = { .type = MFD_PKT_BLOCKS, .seq = seq, .meta_len = ml };
			mfd__pkt_hdr_encode(hdr, &ph, meta);
			meta[ml - 1] ^= 1;	/* the checksum no longer matches */
			mfd__io_write_fd(ch[0], hdr, sizeof(hdr));
			mfd__io_write_fd(ch[0], meta, ml);
			pair_join(&p);
			close(ch[0]);
			close(ch[1]);
			CHECK_CODE(p.dst.rc, MFD_ECHECKSUM);
			CHECK(strstr(p.dst.err.msg, "checksum") != NULL);
			struct mfd_stats st;
			mfd_session_get_stats(p.dst.s, &st);
			CHECK_EQ(st.rejected_connections, 1);
		} else {
			CHECK_CODE(pair_connect(&p), 0);
			CHECK_CODE(mfd_session_run(p.src.s, &p.src.err), 0);
			pair_join(&p);
			CHECK_CODE(p.dst.rc, 0);
			CHECK(memcmp(src, dm, len) == 0);
		}
		pair_free(&p);
	}
	munmap(src, len);
	munmap(dm, len);
}

/* ---- device state ---------------------------------------------------------------------- */

/* Descriptions for the next devices_case (mfd_device_describe of cpu.0 on each side). */
static const char *src_cfg, *dst_cfg;
static uint64_t src_fixed, dst_fixed;
/* Pages that reached the destination in the last devices_case, and both sides' messages. */
static uint64_t last_dst_pages;
static char last_src_msg[MFD_ERROR_MSG_MAX], last_dst_msg[MFD_ERROR_MSG_MAX];

/* Migrate 1 MiB with devices; src/dst device sets and versions per case.  Returns dst rc. */
static int devices_case(struct dev *sd, int ns, struct dev *dd, int nd, uint32_t dst_version,
			int64_t device_max, int *src_rc)
{
	size_t len = 1 << 20;
	uint8_t *a = t_map(len), *b = t_map(len);
	struct pair p;
	pair_new(&p);
	pair_block_add(&p, "ram", a, b, len, 0);
	if (device_max)
		mfd_session_set(p.dst.s, MFD_OPT_DEVICE_MAX_BYTES, device_max);
	for (int i = 0; i < nd; i++)
		CHECK(mfd_device_add(p.dst.s, "cpu", (uint32_t)i, dst_version, &dev_ops, &dd[i]) == i);
	for (int i = 0; i < ns; i++)
		CHECK(mfd_device_add(p.src.s, "cpu", (uint32_t)i, 2, &dev_ops, &sd[i]) == i);
	CHECK_CODE(mfd_device_add(p.src.s, "cpu", 0, 2, &dev_ops, &sd[0]), -EEXIST);
	if (src_cfg || src_fixed)
		CHECK_CODE(mfd_device_describe(p.src.s, "cpu", 0, src_cfg, src_fixed), 0);
	if (nd && (dst_cfg || dst_fixed))
		CHECK_CODE(mfd_device_describe(p.dst.s, "cpu", 0, dst_cfg, dst_fixed), 0);
	pair_listen(&p, "tcp:127.0.0.1:0", 0);
	*src_rc = pair_source(&p);
	pair_join(&p);
	if (p.dst.rc)
		fprintf(stderr, "devices: %s\n", p.dst.err.msg);
	struct mfd_stats st;
	mfd_session_get_stats(p.src.s, &st);
	if (*src_rc == 0) {
		size_t total = 0;
		for (int i = 0; i < ns; i++)
			total += sd[i].len;
		CHECK_EQ(st.device_bytes, total);
	}
	mfd_session_get_stats(p.dst.s, &st);
	last_dst_pages = st.normal_pages + st.zero_pages;
	snprintf(last_src_msg, sizeof(last_src_msg), "%s", p.src.err.msg);
	snprintf(last_dst_msg, sizeof(last_dst_msg), "%s", p.dst.err.msg);
	int rc = p.dst.rc;
	pair_free(&p);
	munmap(a, len);
	munmap(b, len);
	return rc;
}

static void test_devices(void)
{
	static struct dev sd[2], dd[2];
	memset(sd, 0, sizeof(sd));
	memset(dd, 0, sizeof(dd));
	sd[0].len = 12345;	/* bigger than the first buffer the library offers: asked twice */
	for (size_t i = 0; i < sd[0].len; i++)
		sd[0].state[i] = (uint8_t)(i * 7);
	sd[1].len = 0;	/* an empty state is a state */
	int src_rc;
	CHECK_CODE(devices_case(sd, 2, dd, 2, 3, 0, &src_rc), 0);
	CHECK_CODE(src_rc, 0);
	CHECK_EQ(dd[0].loaded_len, 12345);
	CHECK(memcmp(dd[0].loaded, sd[0].state, 12345) == 0);
	CHECK_EQ(dd[0].loaded_version, 2);
	CHECK_EQ(dd[1].loaded_len, 0);
	CHECK(sd[0].saves >= 2);

	/* A destination that could not load the source's devices refuses before any page moves,
	 * and both sides say why. */
	memset(dd, 0, sizeof(dd));
	CHECK_CODE(devices_case(sd, 2, dd, 1, 3, 0, &src_rc), MFD_EDEVICE);	/* no cpu.1 here */
	CHECK_CODE(src_rc, MFD_EDEVICE);
	CHECK_EQ(last_dst_pages, 0);
	CHECK(strstr(last_src_msg, "device cpu.1") && strstr(last_dst_msg, "device cpu.1"));
	CHECK_CODE(devices_case(sd, 1, dd, 2, 3, 0, &src_rc), MFD_EDEVICE);	/* cpu.1 never came */
	CHECK_EQ(last_dst_pages, 0);
	CHECK(strstr(last_src_msg, "cpu.1 ('') is not on the source") != NULL);
	CHECK_CODE(devices_case(sd, 2, dd, 2, 1, 0, &src_rc), MFD_EDEVICE);	/* state too new */
	CHECK_EQ(last_dst_pages, 0);
	src_cfg = "vcpus=2 workload=sweep";
	dst_cfg = "vcpus=1 workload=sweep";
	CHECK_CODE(devices_case(sd, 2, dd, 2, 3, 0, &src_rc), MFD_EDEVICE);	/* other config */
	CHECK_CODE(src_rc, MFD_EDEVICE);
	CHECK_EQ(last_dst_pages, 0);
	CHECK(strstr(last_src_msg, "'vcpus=2 workload=sweep' on the source, 'vcpus=1 workload=sweep' "
			       "here") != NULL);
	CHECK(strstr(last_dst_msg, "'vcpus=2 workload=sweep' on the source") != NULL);
	dst_cfg = src_cfg;
	src_fixed = 12345;
	dst_fixed = 12344;
	CHECK_CODE(devices_case(sd, 2, dd, 2, 3, 0, &src_rc), MFD_EDEVICE);	/* other size */
	CHECK_EQ(last_dst_pages, 0);
	dst_fixed = 12345;
	memset(dd, 0, sizeof(dd));
	CHECK_CODE(devices_case(sd, 2, dd, 2, 3, 0, &src_rc), 0);	/* same description */
	CHECK_EQ(dd[0].loaded_len, 12345);
	sd[0].len = 100;	/* saves another size than it declared: the source says so */
	CHECK_CODE(devices_case(sd, 2, dd, 2, 3, 0, &src_rc), MFD_EDEVICE);
	CHECK_CODE(src_rc, MFD_EDEVICE);
	CHECK(strstr(last_src_msg, "saved 100 bytes, it declared a fixed 12345") != NULL);
	sd[0].len = 12345;
	src_cfg = dst_cfg = NULL;
	src_fixed = dst_fixed = 0;
	CHECK_CODE(devices_case(sd, 2, dd, 2, 3, 4096, &src_rc), MFD_ELENGTH);	/* over the bound */
	dd[0].refuse = -EPROTO;
	CHECK_CODE(devices_case(sd, 2, dd, 2, 3, 0, &src_rc), -EPROTO);	/* loader said no */
}

int main(void)
{
	test_devices();
	test_destination_reusable();
	if (!uffd_available())
		SKIP("userfaultfd write-protect is not available here");
	test_uffd_live();
	test_kill_destination();
	return t_done("t_live");
}
