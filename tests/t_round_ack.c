/* t_round_ack — a destination that lies in its round acknowledgements.  A real source migrates a
 * live (manually tracked) block to a hand-made destination that handshakes, accepts the block
 * table, then sends a ROUND_ACK that is wrong: a round never sent, a duplicate, a short record,
 * reserved bytes set, a COMMIT before any acknowledgement.  The source must fail with the exact code, naming the round where it
 * applies, never stop its guest, and join every thread.  (The honest destination's
 * acknowledgements, and the wait for them before the stop, are t_precopy's settle test.) */
#include <poll.h>
#include <sys/wait.h>
#include "fakepeer.h"
#include "guest.h"
#include "migrate/session.h"

#define NCH 3	/* main + 2 data channels */

enum lie { ROUND_NEVER_SENT, ROUND_TWICE, SHORT_RECORD, RESERVED_SET, COMMIT_UNACKED };

static void send_ack(int fd, uint64_t *seq, uint32_t round, uint32_t len, uint8_t reserved)
{
	uint8_t m[MFD_ROUND_ACK_LEN];
	mfd__round_ack_encode(m, round);
	m[4] = reserved;
	fake_send_pkt(fd, seq, MFD_PKT_ROUND_ACK, m, len, NULL, 0);
}

/* Read whatever comes on every channel until each is closed (the source's workers must never
 * block on a full socket), for at most 10 s. */
static void drain(const int *fds)
{
	static uint8_t buf[1 << 16];
	struct pollfd p[NCH];
	for (int i = 0; i < NCH; i++)
		p[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	uint64_t end = t_now_ns() + 10000000000ull;
	int open = NCH;
	while (open && t_now_ns() < end && poll(p, NCH, 100) >= 0)
		for (int i = 0; i < NCH; i++)
			if (p[i].fd >= 0 && (p[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    read(p[i].fd, buf, sizeof(buf)) <= 0) {
				p[i].fd = -1;
				open--;
			}
}

static void fake_destination(int lfd, enum lie lie)
{
	int fds[NCH];
	int64_t features = fake_dest_admit(lfd, fds, NCH);
	if (features < 0 || !(features & (int64_t)MFD_FEAT_ROUND_ACK))
		_exit(2);	/* the source connects 0, 1, 2 in order and offers the feature */
	uint64_t seq = 0;
	if (fake_dest_accept_blocks(fds[0], &seq))
		_exit(3);
	struct mfd__status_rec ok = { 0 };
	uint8_t sm[MFD_STATUS_REC_LEN];
	mfd__status_encode(sm, &ok);
	switch (lie) {
	case ROUND_NEVER_SENT:
		send_ack(fds[0], &seq, 1000, MFD_ROUND_ACK_LEN, 0);
		break;
	case ROUND_TWICE:
		/* Round 0 may be acknowledged once its SYNC went out: give the source time. */
		usleep(300000);
		send_ack(fds[0], &seq, 0, MFD_ROUND_ACK_LEN, 0);
		send_ack(fds[0], &seq, 0, MFD_ROUND_ACK_LEN, 0);
		break;
	case SHORT_RECORD:
		send_ack(fds[0], &seq, 0, 4, 0);
		break;
	case RESERVED_SET:
		send_ack(fds[0], &seq, 0, MFD_ROUND_ACK_LEN, 1);
		break;
	case COMMIT_UNACKED:	/* rounds went out, none acknowledged, and a COMMIT */
		usleep(300000);
		fake_send_pkt(fds[0], &seq, MFD_PKT_COMMIT, sm, sizeof(sm), NULL, 0);
		break;
	}
	drain(fds);
	_exit(0);
}

static void lying_destination(enum lie lie, int want_code, const char *want_msg)
{
	struct mfd__uri u;
	mfd__uri_parse("tcp:127.0.0.1:0", &u, NULL);
	int lfd = mfd__sock_listen(&u, 16, NULL);
	CHECK(lfd >= 0);
	char uri[256];
	mfd__sock_local_uri(lfd, uri, sizeof(uri));
	pid_t pid = fork();
	if (pid == 0)
		fake_destination(lfd, lie);
	close(lfd);

	size_t len = 8u << 20;
	uint8_t *m = t_map(len);
	t_fill(m, len, 9);
	struct mfd_session *s = mfd_session_new(MFD_OUTGOING);
	mfd_session_set(s, MFD_OPT_CHANNELS, NCH - 1);
	mfd_ram_block_add(s, "ram", m, len, 4096, 0);
	CHECK_CODE(mfd_session_track_manual(s), 0);
	struct mfd__test_knobs k = { .min_rounds = 1000000 };	/* iterate until it fails */
	mfd__session_set_test_knobs(s, &k);
	struct guest g = { .mem = m, .len = len };
	struct mfd_callbacks cb = guest_callbacks(&g);
	mfd_session_set_callbacks(s, &cb);
	struct mfd_error err;
	mfd_error_clear(&err);
	int rc = mfd_session_connect(s, uri, &err);
	CHECK_CODE(rc, 0);
	uint64_t t0 = t_now_ns();
	rc = mfd_session_run(s, &err);
	uint64_t ms = (t_now_ns() - t0) / 1000000;
	fprintf(stderr, "lie %d: source failed in %llu ms: %s\n", (int)lie, (unsigned long long)ms,
		err.msg);
	CHECK_CODE(rc, want_code);
	CHECK(strstr(err.msg, want_msg) != NULL);
	CHECK_EQ(g.stops, 0);	/* the guest ran on throughout */
	int st = 0;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	mfd_session_free(s);
	munmap(m, len);
}

int main(void)
{
	lying_destination(ROUND_NEVER_SENT, MFD_EROUND, "acknowledged round 1000; expected round 0");
	lying_destination(ROUND_TWICE, MFD_EROUND, "acknowledged round 0; expected round 1");
	lying_destination(SHORT_RECORD, MFD_ELENGTH, "round acknowledgement of 4 bytes");
	lying_destination(RESERVED_SET, MFD_EFEATURE, "round acknowledgement reserved bytes");
	lying_destination(COMMIT_UNACKED, MFD_EROUND, "committed with 0 of");
	return t_done("t_round_ack");
}
