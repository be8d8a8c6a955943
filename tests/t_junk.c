/* t_junk — a listening destination that strangers cannot disrupt, and stalls found in seconds.
 *
 * 1. Strangers: before the source comes, 500 connections reach the destination — 250 connect
 *    and close, 200 stay open and say nothing, 50 send 64 bytes of garbage — plus a client
 *    that trickles a hello a byte at a time, a hello of another page size (refused, the reply
 *    says why), and a valid hello of another session that never completes.  The genuine
 *    migration then completes and verifies, promptly; every stranger is counted; the
 *    destination runs no thread per connection and its memory stays bounded.
 * 2. A source that handshakes and then trickles a record is dropped within the stall time.
 * 3. A black hole: a proxy between the two stops forwarding one data channel mid-migration;
 *    both sides fail within 3 s, the source naming that channel. */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include "fakepeer.h"
#include "pair.h"

static int dial(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("dial");
		exit(1);
	}
	return fd;
}

static uint16_t port_of(const char *uri)
{
	const char *c = strrchr(uri, ':');
	return (uint16_t)atoi(c + 1);
}

static unsigned threads(void)
{
	DIR *d = opendir("/proc/self/task");
	unsigned n = 0;
	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n - 2;	/* . and .. */
}

static uint64_t rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	uint64_t v = 0;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			v = strtoull(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

/* ---- 1. strangers ---------------------------------------------------------------------------- */

struct trickler {
	uint16_t port;
	int stop;	/* atomic */
};

static void *trickle(void *arg)
{
	struct trickler *t = arg;
	int fd = dial(t->port);
	uint8_t b[MFD_HELLO_LEN];
	struct mfd__hello h = fake_hello(0, 2, 64);
	mfd__hello_encode(b, &h);
	for (unsigned i = 0; i < sizeof(b) && !__atomic_load_n(&t->stop, __ATOMIC_RELAXED); i++) {
		if (send(fd, b + i, 1, MSG_NOSIGNAL) != 1)
			break;	/* dropped: fine */
		usleep(100000);
	}
	close(fd);
	return NULL;
}

static int reply_status(int fd)
{
	uint8_t r[MFD_ACCEPT_LEN];
	struct mfd__accept a;
	if (mfd__io_read_fd(fd, r, sizeof(r)) || mfd__accept_decode(r, sizeof(r), &a, 0, NULL))
		return 1;
	return a.status;
}

static void strangers(void)
{
	size_t len = 16u << 20;
	uint8_t *a = t_map(len), *b = t_map(len);
	t_fill(a, len, 41);
	struct pair p;
	pair_new(&p);
	pair_block_add(&p, "ram", a, b, len, MFD_BLOCK_ZEROED);
	mfd_session_set(p.src.s, MFD_OPT_VERIFY, 1);
	mfd_session_set(p.src.s, MFD_OPT_CHANNELS, 4);
	mfd_session_set(p.dst.s, MFD_OPT_TIMEOUT_MS, 3000);
	CHECK_CODE(pair_listen(&p, "tcp:127.0.0.1:0", 0), 0);
	uint16_t port = port_of(p.uri);
	unsigned t0 = threads();
	uint64_t r0 = rss_kib();

	int silent[200], n_rejected_min = 0;
	for (int i = 0; i < 250; i++)
		close(dial(port));
	n_rejected_min += 250;
	for (int i = 0; i < 200; i++)
		silent[i] = dial(port);
	for (int i = 0; i < 50; i++) {
		int fd = dial(port);
		uint8_t junk[MFD_HELLO_LEN];
		memset(junk, 'A' + i % 26, sizeof(junk));
		mfd__io_write_fd(fd, junk, sizeof(junk));
		CHECK_CODE(reply_status(fd), MFD_EMAGIC);	/* refused, and told why */
		close(fd);
	}
	n_rejected_min += 50;
	struct trickler tr = { .port = port };
	pthread_t tt;
	pthread_create(&tt, NULL, trickle, &tr);
	int other = dial(port);	/* a source we cannot serve: its page size */
	struct mfd__hello h = fake_hello(0, 2, 64);
	h.page_size = 8192;
	fake_send_hello(other, &h);
	CHECK_CODE(reply_status(other), MFD_EPAGESIZE);
	close(other);
	n_rejected_min++;
	int fake = dial(port);	/* a session that never completes */
	h = fake_hello(0, 3, 64);
	fake_send_hello(fake, &h);
	CHECK_CODE(reply_status(fake), 0);
	usleep(200000);
	struct mfd_stats st;
	mfd_session_get_stats(p.dst.s, &st);
	CHECK_EQ(st.status, MFD_STATUS_SETUP);	/* still waiting for its source */
	unsigned t1 = threads();

	/* The genuine source, with all that still open. */
	uint64_t g0 = t_now_ns();
	pair_run(&p);
	uint64_t ms = (t_now_ns() - g0) / 1000000;
	if (p.src.rc || p.dst.rc)
		pair_print(&p, "strangers");
	CHECK_CODE(p.src.rc, 0);
	CHECK_CODE(p.dst.rc, 0);
	CHECK(memcmp(a, b, len) == 0);
	mfd_session_get_stats(p.src.s, &st);
	CHECK(st.verified);
	mfd_session_get_stats(p.dst.s, &st);
	uint64_t r1 = rss_kib();
	fprintf(stderr, "strangers: migration in %llu ms; %llu connections refused; threads %u -> %u "
		"while waiting; RSS +%llu KiB\n", (unsigned long long)ms,
		(unsigned long long)st.rejected_connections, t0, t1,
		(unsigned long long)(r1 > r0 ? r1 - r0 : 0));
	CHECK(ms < 3000);
	CHECK(st.rejected_connections >= (uint64_t)n_rejected_min + 200);	/* + the silent ones */
	CHECK_EQ(t1, t0 + 1);	/* the trickler is ours: no thread per connection */
#ifndef MFD_SANITIZE	/* sanitizers' shadow memory grows with everything touched */
	CHECK(r1 < r0 + 64 * 1024);	/* 16 MiB of destination memory, a little more */
#endif
	__atomic_store_n(&tr.stop, 1, __ATOMIC_RELAXED);
	pthread_join(tt, NULL);
	for (int i = 0; i < 200; i++)
		close(silent[i]);
	close(fake);
	pair_free(&p);
	munmap(a, len);
	munmap(b, len);
}

/* ---- 2. a record trickled ------------------------------------------------------------------------ */

static void trickled_record(void)
{
	size_t len = 1u << 20;
	uint8_t *b = t_map(len);
	struct pair p;
	pair_new(&p);
	mfd_ram_block_add(p.dst.s, "ram", b, len, 4096, MFD_BLOCK_ZEROED);
	mfd_session_set(p.dst.s, MFD_OPT_STALL_MS, 1000);
	CHECK_CODE(pair_listen(&p, "tcp:127.0.0.1:0", 0), 0);
	uint16_t port = port_of(p.uri);
	int ch[2];
	for (int i = 0; i < 2; i++) {
		ch[i] = dial(port);
		struct mfd__hello h = fake_hello((uint16_t)i, 2, 64);
		fake_send_hello(ch[i], &h);
	}
	for (int i = 0; i < 2; i++)
		CHECK_CODE(reply_status(ch[i]), 0);
	/* A BLOCKS header announcing 128 KiB of meta, a byte every 200 ms. */
	uint8_t hdr[MFD_PKT_HDR_LEN];
	static const uint8_t meta[128u << 10];
	struct mfd__pkt_hdr ph = { .type = MFD_PKT_BLOCKS, .meta_len = sizeof(meta) };
	mfd__pkt_hdr_encode(hdr, &ph, meta);
	uint64_t t0 = t_now_ns();
	for (unsigned i = 0; i < sizeof(hdr) + 100 && p.dst.running; i++) {
		uint8_t byte = i < sizeof(hdr) ? hdr[i] : 0;
		if (send(ch[0], &byte, 1, MSG_NOSIGNAL) != 1)
			break;
		struct pollfd pf = { .fd = ch[0], .events = POLLIN };
		if (poll(&pf, 1, 200) > 0)	/* the destination hung up or sent its ERROR */
			break;
	}
	pair_join(&p);
	uint64_t ms = (t_now_ns() - t0) / 1000000;
	fprintf(stderr, "trickled record: %s after %llu ms\n", p.dst.err.msg, (unsigned long long)ms);
	CHECK_CODE(p.dst.rc, -ETIMEDOUT);
	CHECK(ms < 2000);	/* the stall time (1 s) and a little */
	close(ch[0]);
	close(ch[1]);
	pair_free(&p);
	munmap(b, len);
}

/* ---- 3. a black hole -------------------------------------------------------------------------- */

/* A TCP proxy: every connection to its port is forwarded to the destination.  Once `hole` is
 * set, the data channel `hole_id` is neither read nor written any more (its sockets stay open):
 * a black hole, as a dead router would make. */
struct proxy {
	int lfd;
	uint16_t port, to;
	int hole_id;
	int hole;		/* atomic: black-hole from now on */
	uint64_t hole_ns;	/* atomic: when it started */
	int stop;		/* atomic */
	pthread_t t;
};

struct link {
	int a, b;		/* client side, destination side */
	int id;			/* channel id from the hello, -1 until seen */
	uint8_t hello[MFD_HELLO_LEN];
	unsigned seen;
};

static void *proxy_main(void *arg)
{
	struct proxy *px = arg;
	struct link l[16];
	int n = 0;
	static uint8_t buf[1 << 16];
	while (!__atomic_load_n(&px->stop, __ATOMIC_RELAXED)) {
		struct pollfd pf[1 + 32];
		int map[1 + 32], np = 0;
		pf[np] = (struct pollfd){ .fd = px->lfd, .events = POLLIN };
		map[np++] = -1;
		bool hole = __atomic_load_n(&px->hole, __ATOMIC_RELAXED);
		for (int i = 0; i < n; i++) {
			if (hole && l[i].id == px->hole_id)
				continue;	/* nothing in, nothing out */
			pf[np] = (struct pollfd){ .fd = l[i].a, .events = POLLIN };
			map[np++] = 2 * i;
			pf[np] = (struct pollfd){ .fd = l[i].b, .events = POLLIN };
			map[np++] = 2 * i + 1;
		}
		if (poll(pf, (nfds_t)np, 50) <= 0)
			continue;
		if (pf[0].revents && n < 16) {
			int c = accept(px->lfd, NULL, NULL);
			if (c >= 0)
				l[n++] = (struct link){ .a = c, .b = dial(px->to), .id = -1 };
		}
		for (int k = 1; k < np; k++) {
			if (!pf[k].revents)
				continue;
			struct link *x = &l[map[k] / 2];
			bool from_client = map[k] % 2 == 0;
			ssize_t r = recv(from_client ? x->a : x->b, buf, sizeof(buf), MSG_DONTWAIT);
			if (r <= 0) {
				shutdown(from_client ? x->b : x->a, SHUT_WR);
				continue;
			}
			if (from_client && x->seen < MFD_HELLO_LEN) {
				size_t c = MFD_MIN((size_t)r, MFD_HELLO_LEN - x->seen);
				memcpy(x->hello + x->seen, buf, c);
				x->seen += (unsigned)c;
				if (x->seen == MFD_HELLO_LEN)
					x->id = mfd__get16(x->hello + 24);
			}
			mfd__io_write_fd(from_client ? x->b : x->a, buf, (size_t)r);
		}
	}
	for (int i = 0; i < n; i++) {
		close(l[i].a);
		close(l[i].b);
	}
	return NULL;
}

static void black_hole(void)
{
	size_t len = 128u << 20;
	uint8_t *a = t_map(len), *b = t_map(len);
	t_fill(a, len, 43);
	struct pair p;
	pair_new(&p);
	pair_block_add(&p, "ram", a, b, len, MFD_BLOCK_ZEROED);
	mfd_session_set(p.src.s, MFD_OPT_CHANNELS, 3);
	mfd_session_set(p.src.s, MFD_OPT_MAX_BANDWIDTH, 48 << 20);	/* about 2.5 s in all */
	CHECK_CODE(pair_listen(&p, "tcp:127.0.0.1:0", 0), 0);
	struct proxy px = { .to = port_of(p.uri), .hole_id = 2 };
	px.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof(sa);
	CHECK(bind(px.lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(px.lfd, 16) == 0);
	getsockname(px.lfd, (struct sockaddr *)&sa, &sl);
	px.port = ntohs(sa.sin_port);
	pthread_create(&px.t, NULL, proxy_main, &px);
	snprintf(p.uri, sizeof(p.uri), "tcp:127.0.0.1:%u", px.port);
	CHECK_CODE(pair_connect(&p), 0);
	pair_side_start(&p.src);	/* the source runs in a thread; we pull the plug */
	usleep(800000);
	uint64_t hole_ns = t_now_ns();
	__atomic_store_n(&px.hole, 1, __ATOMIC_RELAXED);
	pair_side_join(&p.src);
	pair_join(&p);
	double src_s = (double)(p.src.done_ns - hole_ns) / 1e9;
	double dst_s = (double)(p.dst.done_ns - hole_ns) / 1e9;
	fprintf(stderr, "black hole on channel 2: source after %.2f s (%s), destination after %.2f s "
		"(%s)\n", src_s, p.src.err.msg, dst_s, p.dst.err.msg);
	CHECK(p.src.rc != 0 && p.dst.rc != 0);
#ifdef MFD_SANITIZE
	double bound = 5.0;	/* instrumented code fills the buffers more slowly */
#else
	double bound = 3.0;
#endif
	CHECK(src_s < bound && dst_s < bound);
	CHECK(strstr(p.src.err.msg, "channel 2") != NULL);
	__atomic_store_n(&px.stop, 1, __ATOMIC_RELAXED);
	pthread_join(px.t, NULL);
	close(px.lfd);
	pair_free(&p);
	munmap(a, len);
	munmap(b, len);
}

int main(void)
{
	strangers();
	trickled_record();
	black_hole();
	return t_done("t_junk");
}
