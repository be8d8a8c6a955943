/* t_disconnect — a peer that disappears mid-transfer.  A real source and a real destination run
 * in two processes; one is killed (SIGKILL) while pages are moving.  The survivor must fail with
 * a transport error within a second, join every thread, and (for a source) keep its memory
 * intact.  Also: a hand-made destination that handshakes, then closes in the middle of a packet. */
#include <signal.h>
#include <sys/wait.h>
#include "fakepeer.h"
#include "pair.h"

#define LEN (1024u << 20)

static uint8_t *make_mem(int fill)
{
	uint8_t *m = t_map(LEN);
	if (fill)
		memset(m, fill, LEN);	/* non-zero everywhere: every page carries data */
	return m;
}

struct watcher {
	struct mfd_session *s;
	pid_t victim;
	uint64_t kill_at_bytes;
	uint64_t killed_ns;
	pthread_t t;
};

/* Kill the peer once this side has moved some bytes: the kill lands mid-transfer. */
static void *watch(void *arg)
{
	struct watcher *w = arg;
	for (int i = 0; i < 300000; i++) {	/* 60 s: sanitizer builds are slow */
		struct mfd_stats st;
		mfd_session_get_stats(w->s, &st);
		if (st.wire_bytes >= w->kill_at_bytes)
			break;
		usleep(200);
	}
	kill(w->victim, SIGKILL);
	w->killed_ns = t_now_ns();
	return NULL;
}

/* Run `side` here while a watcher kills the peer process `victim` mid-transfer (then reaped).
 * Returns how long after the kill the run ended (ns); its code is in side->rc. */
static uint64_t run_while_killing(struct pair_side *side, pid_t victim, const char *who)
{
	struct watcher w = { .s = side->s, .victim = victim, .kill_at_bytes = 64u << 20 };
	pthread_create(&w.t, NULL, watch, &w);
	side->rc = mfd_session_run(side->s, &side->err);
	uint64_t done = t_now_ns();
	pthread_join(w.t, NULL);
	waitpid(victim, NULL, 0);
	fprintf(stderr, "%s saw: %s (%.0f ms after the kill)\n", who, side->err.msg,
		(double)(done - w.killed_ns) / 1e6);
	return done - w.killed_ns;
}

static void kill_destination(void)
{
	struct pair p;
	pair_new(&p);
	pid_t pid = pair_fork_destination(&p, LEN);
	uint8_t *m = make_mem(0x5a);
	mfd_ram_block_add(p.src.s, "ram", m, LEN, 4096, 0);
	CHECK_CODE(pair_connect(&p), 0);
	uint64_t late_ns = run_while_killing(&p.src, pid, "source");
	int rc = p.src.rc;
	CHECK(rc == -EPIPE || rc == -ECONNRESET || rc == MFD_ECLOSED || rc == MFD_ETRUNC);
	CHECK(late_ns < 1000000000ull);
	CHECK(p.src.err.channel >= 0);	/* the message names the channel */
	struct mfd_stats st;
	mfd_session_get_stats(p.src.s, &st);
	CHECK_EQ(st.status, MFD_STATUS_FAILED);
	for (size_t i = 0; i < LEN; i += 4096)	/* source memory intact */
		if (m[i] != 0x5a || m[i + 4095] != 0x5a) {
			CHECK(!"source memory changed");
			break;
		}
	pair_free(&p);
	munmap(m, LEN);
}

static void kill_source(void)
{
	struct pair p;
	pair_new(&p);
	uint8_t *m = make_mem(0);
	mfd_ram_block_add(p.dst.s, "ram", m, LEN, 4096, MFD_BLOCK_ZEROED);
	pair_bind(&p, pair_unix(&p, "t-disconnect"), 0);
	pid_t pid = fork();
	if (pid == 0) {
		uint8_t *sm = make_mem(0x33);
		mfd_ram_block_add(p.src.s, "ram", sm, LEN, 4096, 0);
		pair_source(&p);
		_exit(0);
	}
	uint64_t late_ns = run_while_killing(&p.dst, pid, "destination");
	int rc = p.dst.rc;
	CHECK(rc == -ECONNRESET || rc == MFD_ECLOSED || rc == MFD_ETRUNC || rc == -EPIPE);
	CHECK(late_ns < 1000000000ull);
	pair_free(&p);
	munmap(m, LEN);
}

/* A destination that handshakes, accepts the block table, reads part of the first RAM packet
 * and closes every channel: the real source must fail, never hang. */
static void fake_destination_closes_mid_packet(void)
{
	struct mfd__uri u;
	mfd__uri_parse("tcp:127.0.0.1:0", &u, NULL);
	int lfd = mfd__sock_listen(&u, 16, NULL);
	char uri[256];
	mfd__sock_local_uri(lfd, uri, sizeof(uri));
	pid_t pid = fork();
	if (pid == 0) {
		int fds[3];
		if (fake_dest_admit(lfd, fds, 3) < 0)	/* the source connects 0, 1, 2 in order */
			_exit(2);
		uint64_t seq = 0;
		if (fake_dest_accept_blocks(fds[0], &seq))
			_exit(3);
		static uint8_t part[100000];
		mfd__io_read_fd(fds[1], part, sizeof(part));	/* header, meta, part of the data */
		_exit(0);	/* closes everything mid-packet */
	}
	close(lfd);
	size_t len = 64u << 20;
	uint8_t *m = t_map(len);
	memset(m, 0x77, len);
	struct mfd_session *s = mfd_session_new(MFD_OUTGOING);
	mfd_session_set(s, MFD_OPT_CHANNELS, 2);
	mfd_ram_block_add(s, "ram", m, len, 4096, 0);
	struct mfd_error err;
	mfd_error_clear(&err);
	int rc = mfd_session_connect(s, uri, &err);
	CHECK_CODE(rc, 0);
	rc = mfd_session_run(s, &err);
	fprintf(stderr, "source saw: %s\n", err.msg);
	CHECK(rc == -EPIPE || rc == -ECONNRESET || rc == MFD_ECLOSED);
	waitpid(pid, NULL, 0);
	mfd_session_free(s);
	munmap(m, len);
}

int main(void)
{
	fake_destination_closes_mid_packet();
	kill_destination();
	kill_source();
	return t_done("t_disconnect");
}
