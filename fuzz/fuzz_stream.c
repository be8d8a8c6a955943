/* fuzz/fuzz_stream — a whole incoming session fed by the fuzzer.
 *
 * Each run creates an incoming session with two RAM blocks ("ram0", 64 KiB, registered with
 * MFD_BLOCK_ZEROED; "ram1", 256 KiB; 4 KiB pages), one device ("cpu", instance 0, version 2),
 * a 200 ms timeout, a 1 MiB device-state bound, and three connected socket pairs given to
 * mfd_session_listen() as "fd:A,B,C" (enough for the main channel and two data channels, so the
 * receivers' meeting at SYNC markers is exercised; a source announcing two channels leaves C
 * unused).  One helper thread plays the source: it writes the fuzz input's bytes to the peer
 * ends, shuts their write sides when done, and drains (discards) whatever the session writes
 * back, so the session never blocks on a full socket.  mfd_session_run() must return: every
 * channel ends in end-of-file once the input is written, so a run that hangs is a library bug.
 *
 * Input format: a sequence of records
 *     u8  sel      bits 0-1: socket, (sel & 3) % 3 (0 = A, 1 = B, 2 = C; 3 means A);
 *                  bit 2: fix up the checksum (below); other bits ignored
 *     u16 len      little-endian; a record cut short by the end of the input keeps what is there
 *     u8  bytes[len]
 * The bytes of the records for one socket are concatenated, in input order, into that socket's
 * stream.  Which socket is the main channel is decided by the hellos (channel id 0 is main),
 * exactly as for a real source.  With bit 2 set the record's checksum is recomputed before it is
 * sent: if the record starts with a hello (magic "MFDH", >= 64 bytes) its CRC-32C at offset 60;
 * if it starts with a packet header (magic "MFDP", >= 32 bytes) its CRC-32C at offset 28 over the
 * header and as much of the meta as the record holds.  This lets mutations reach the checks
 * behind the checksum; the seeds use it, except those that test the checksum itself.
 *
 * The device's load callback accepts any state except one whose first byte is 0xEE (refused
 * with -EPROTO), so both outcomes are reachable.
 *
 * After each run: the result must be consistent (0 and status completed, or a negative code
 * recorded with a message and status failed), the session must have closed every descriptor it
 * was given, and no descriptor may have leaked.  With MFD_FUZZ_VERBOSE set in the environment,
 * each run's result is printed to stderr (for checking what a seed reaches). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "core/util.h"
#include "proto/proto.h"
#include "multifd.h"

#define FAIL(...)                                                    \
	do {                                                         \
		fprintf(stderr, "fuzz_stream: invariant: " __VA_ARGS__); \
		fprintf(stderr, "\n");                               \
		abort();                                             \
	} while (0)

#define PAGE 4096u
#define RAM0_LEN (64u * 1024u)
#define RAM1_LEN (256u * 1024u)

/* Destination memory: allocated once, cleared before every run. */
static uint8_t ram0[RAM0_LEN] __attribute__((aligned(PAGE)));
static uint8_t ram1[RAM1_LEN] __attribute__((aligned(PAGE)));

struct stream {
	uint8_t *buf;
	size_t len, cap;
};

static int append(struct stream *s, const uint8_t *p, size_t n)
{
	if (n == 0)
		return 0;
	if (s->len + n > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->len + n)
			cap *= 2;
		uint8_t *nb = realloc(s->buf, cap);
		if (!nb)
			return -1;
		s->buf = nb;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	return 0;
}

static void fix_checksum(uint8_t *r, size_t n)
{
	if (n >= MFD_HELLO_LEN && mfd__get32(r) == MFD_HELLO_MAGIC) {
		mfd__put32(r + 60, mfd__crc32c(0, r, 60));
	} else if (n >= MFD_PKT_HDR_LEN && mfd__get32(r) == MFD_PACKET_MAGIC) {
		uint32_t meta_len = mfd__get32(r + 16);
		size_t have = n - MFD_PKT_HDR_LEN;
		uint32_t crc = mfd__crc32c(0, r, 28);
		crc = mfd__crc32c(crc, r + MFD_PKT_HDR_LEN, meta_len < have ? meta_len : have);
		mfd__put32(r + 28, crc);
	}
}

#define NSOCK 3

/* Split the input into the sockets' streams. */
static int parse(const uint8_t *data, size_t size, struct stream out[NSOCK])
{
	size_t p = 0;
	while (p < size) {
		uint8_t sel = data[p++];
		if (size - p < 2)
			break;
		size_t n = mfd__get16(data + p);
		p += 2;
		if (n > size - p)
			n = size - p;
		struct stream *s = &out[(sel & 3) % NSOCK];
		size_t at = s->len;
		if (append(s, data + p, n))
			return -1;
		if ((sel & 4) && n)
			fix_checksum(s->buf + at, n);
		p += n;
	}
	return 0;
}

/* The source side: write every stream, then shut the write sides; read and discard until every
 * socket reports end-of-file or an error. */
struct peer {
	int fd[NSOCK];
	struct stream *out;
};

static void *peer_main(void *arg)
{
	struct peer *pr = arg;
	size_t done[NSOCK] = { 0 };
	bool wdone[NSOCK] = { false }, rdone[NSOCK] = { false };
	uint8_t sink[16384];
	for (int i = 0; i < NSOCK; i++) {
		if (pr->out[i].len == 0) {
			shutdown(pr->fd[i], SHUT_WR);
			wdone[i] = true;
		}
	}
	for (;;) {
		struct pollfd p[NSOCK];
		int active = 0;
		for (int i = 0; i < NSOCK; i++) {
			p[i].fd = rdone[i] && wdone[i] ? -1 : pr->fd[i];
			p[i].events = (short)((rdone[i] ? 0 : POLLIN) | (wdone[i] ? 0 : POLLOUT));
			p[i].revents = 0;
			active += !rdone[i];
		}
		if (!active)
			break;
		int n = poll(p, NSOCK, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			FAIL("poll: %s", strerror(errno));
		}
		for (int i = 0; i < NSOCK; i++) {
			if (!p[i].revents)
				continue;
			if (!wdone[i]) {
				ssize_t w = send(pr->fd[i], pr->out[i].buf + done[i],
						 pr->out[i].len - done[i], MSG_NOSIGNAL | MSG_DONTWAIT);
				if (w > 0)
					done[i] += (size_t)w;
				if ((w < 0 && errno != EAGAIN && errno != EINTR) ||
				    done[i] == pr->out[i].len) {
					shutdown(pr->fd[i], SHUT_WR);
					wdone[i] = true;
				}
			}
			if (!rdone[i] && (p[i].revents & (POLLIN | POLLHUP | POLLERR))) {
				ssize_t r = recv(pr->fd[i], sink, sizeof(sink), MSG_DONTWAIT);
				if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
					rdone[i] = true;
			}
			/* The session shut or closed its end: nothing more can be written. */
			if (!wdone[i] && (p[i].revents & (POLLHUP | POLLERR))) {
				shutdown(pr->fd[i], SHUT_WR);
				wdone[i] = true;
			}
		}
	}
	return NULL;
}

static int load_cpu(void *opaque, const void *buf, size_t len, uint32_t version)
{
	(void)opaque;
	(void)version;
	return len && ((const uint8_t *)buf)[0] == 0xEE ? -EPROTO : 0;
}

static const struct mfd_device_ops cpu_ops = { .save = NULL, .load = load_cpu };

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0 || errno != EBADF;
}

/* The lowest free descriptor number: if it moves between runs, a descriptor leaked. */
static int lowest_free_fd(void)
{
	int fd = fcntl(0, F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			FAIL("cannot probe descriptors: %s", strerror(errno));
	}
	close(fd);
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stream out[NSOCK];
	struct mfd_error err;
	int sp[NSOCK][2];
	char uri[64];
	int low = lowest_free_fd();

	memset(out, 0, sizeof(out));
	if (parse(data, size, out))
		goto free_streams;
	memset(ram0, 0, sizeof(ram0));
	memset(ram1, 0, sizeof(ram1));

	struct mfd_session *s = mfd_session_new(MFD_INCOMING);
	if (!s)
		FAIL("mfd_session_new");
	if (mfd_ram_block_add(s, "ram0", ram0, sizeof(ram0), PAGE, MFD_BLOCK_ZEROED) != 0 ||
	    mfd_ram_block_add(s, "ram1", ram1, sizeof(ram1), PAGE, 0) != 1 ||
	    mfd_device_add(s, "cpu", 0, 2, &cpu_ops, NULL) < 0 ||
	    mfd_session_set(s, MFD_OPT_TIMEOUT_MS, 200) ||
	    mfd_session_set(s, MFD_OPT_DEVICE_MAX_BYTES, 1 << 20))
		FAIL("session setup");
	for (int i = 0; i < NSOCK; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp[i]))
			FAIL("socketpair: %s", strerror(errno));
	/* The session owns sp[i][0] from here (it closes them, whether they are used or not). */
	snprintf(uri, sizeof(uri), "fd:%d,%d,%d", sp[0][0], sp[1][0], sp[2][0]);
	mfd_error_clear(&err);
	if (mfd_session_listen(s, uri, &err))
		FAIL("listen %s: %s", uri, err.msg);

	struct peer pr = { .out = out };
	for (int i = 0; i < NSOCK; i++)
		pr.fd[i] = sp[i][1];
	pthread_t th;
	if (pthread_create(&th, NULL, peer_main, &pr))
		FAIL("pthread_create");

	mfd_error_clear(&err);
	int rc = mfd_session_run(s, &err);
	struct mfd_stats st;
	mfd_session_get_stats(s, &st);
	if (getenv("MFD_FUZZ_VERBOSE"))
		fprintf(stderr, "fuzz_stream: run: %d %s (%llu normal + %llu zero pages)\n", rc,
			rc ? err.msg : "ok", (unsigned long long)st.normal_pages,
			(unsigned long long)st.zero_pages);
	if (rc == 0) {
		if (err.code != 0 || st.status != MFD_STATUS_COMPLETED)
			FAIL("success with error %d / status %d", err.code, st.status);
	} else {
		if (rc > 0 || err.code != rc)
			FAIL("run returned %d, error record %d", rc, err.code);
		if (!memchr(err.msg, '\0', sizeof(err.msg)) || !err.msg[0])
			FAIL("error without a message");
		/* Nobody cancels this session: a peer's cancel is a failure here, not ours. */
		if (st.status != MFD_STATUS_FAILED)
			FAIL("failure %d with status %d (%s)", rc, st.status,
			     mfd_status_name(st.status));
	}
	/* Freeing closes the session's ends, which ends the peer thread's reads and writes. */
	mfd_session_free(s);
	pthread_join(th, NULL);
	for (int i = 0; i < NSOCK; i++)
		if (fd_open(sp[i][0]))
			FAIL("the session did not close descriptor %d it was given", sp[i][0]);
	for (int i = 0; i < NSOCK; i++)
		close(sp[i][1]);
	if (lowest_free_fd() != low)
		FAIL("descriptor leak: lowest free fd %d, was %d", lowest_free_fd(), low);
free_streams:
	for (int i = 0; i < NSOCK; i++)
		free(out[i].buf);
	return 0;
}
