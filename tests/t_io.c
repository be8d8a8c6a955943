/* t_io — the full-I/O helpers resume inside partly transferred iovec entries, retry EINTR,
 * split at IOV_MAX, report end of stream precisely, and work over a real socketpair with tiny
 * buffers. */
#include <fcntl.h>
#include <limits.h>
#include "core/err.h"
#include "core/io.h"
#include <signal.h>
#include "tutil.h"

/* A fake transfer op that moves at most `chunk[k]` bytes on call k (cycling), fails with EINTR
 * every third call, and copies into/out of a flat buffer. */
struct fake {
	uint8_t *flat;
	size_t cap, pos;
	unsigned calls;
	bool eintr;
	size_t eof_at;		/* reading: stream ends here */
	int max_iovcnt_seen;
};

static const size_t chunks[] = { 1, 7, 4096, 3, 1000, 13, 2 };

static ssize_t fake_op(void *ctx, const struct iovec *iov, int iovcnt, int64_t off, bool reading)
{
	struct fake *f = ctx;
	f->calls++;
	if (iovcnt > f->max_iovcnt_seen)
		f->max_iovcnt_seen = iovcnt;
	if (f->eintr && f->calls % 3 == 0) {
		errno = EINTR;
		return -1;
	}
	size_t budget = chunks[f->calls % (sizeof(chunks) / sizeof(chunks[0]))], moved = 0;
	size_t pos = off >= 0 ? (size_t)off : f->pos;
	size_t limit = reading ? f->eof_at : f->cap;
	for (int i = 0; i < iovcnt && budget; i++) {
		size_t n = iov[i].iov_len < budget ? iov[i].iov_len : budget;
		if (pos + n > limit)
			n = limit - pos;
		if (reading)
			memcpy(iov[i].iov_base, f->flat + pos, n);
		else
			memcpy(f->flat + pos, iov[i].iov_base, n);
		pos += n;
		moved += n;
		budget -= n;
		if (n < iov[i].iov_len)
			break;
	}
	if (off < 0)
		f->pos = pos;
	return (ssize_t)moved;
}

static ssize_t fake_read(void *c, const struct iovec *v, int n, int64_t off) { return fake_op(c, v, n, off, true); }
static ssize_t fake_write(void *c, const struct iovec *v, int n, int64_t off) { return fake_op(c, v, n, off, false); }

static void test_resume_inside_entries(void)
{
	enum { N = 40 };
	uint8_t src[N][3000], dst[N][3000];
	struct iovec iov[N];
	size_t total = 0;
	uint64_t st = 42;
	for (int i = 0; i < N; i++) {
		size_t len = 1 + t_rand(&st) % 3000;
		for (size_t k = 0; k < len; k++)
			src[i][k] = (uint8_t)t_rand(&st);
		iov[i] = (struct iovec){ src[i], len };
		total += len;
	}
	iov[5].iov_len = 0;	/* empty entries are skipped */
	total -= 0;
	size_t lens[N];
	for (int i = 0; i < N; i++)
		lens[i] = iov[i].iov_len;
	total = 0;
	for (int i = 0; i < N; i++)
		total += lens[i];

	struct fake f = { .flat = calloc(1, total), .cap = total, .eintr = true };
	size_t done = 0;
	CHECK_CODE(mfd__io_full(fake_write, &f, iov, N, -1, false, &done), 0);
	CHECK_EQ(done, total);
	CHECK(f.calls > 10);	/* it really was split into many partial calls */
	size_t pos = 0;
	for (int i = 0; i < N; i++) {
		CHECK(memcmp(f.flat + pos, src[i], lens[i]) == 0);
		pos += lens[i];
	}

	/* Read it back into differently shaped entries. */
	struct iovec rv[N];
	for (int i = 0; i < N; i++)
		rv[i] = (struct iovec){ dst[i], lens[i] };
	f.pos = 0;
	f.eof_at = total;
	f.calls = 0;
	CHECK_CODE(mfd__io_full(fake_read, &f, rv, N, -1, true, &done), 0);
	CHECK_EQ(done, total);
	for (int i = 0; i < N; i++)
		CHECK(memcmp(dst[i], src[i], lens[i]) == 0);

	/* End of stream: before the first byte, then in the middle. */
	f.pos = 0;
	f.eof_at = 0;
	struct iovec one = { dst[0], 100 };
	CHECK_CODE(mfd__io_full(fake_read, &f, &one, 1, -1, true, &done), MFD_ECLOSED);
	CHECK_EQ(done, 0);
	f.pos = 0;
	f.eof_at = 50;
	one = (struct iovec){ dst[0], 100 };
	CHECK_CODE(mfd__io_full(fake_read, &f, &one, 1, -1, true, &done), MFD_ETRUNC);
	CHECK_EQ(done, 50);
	free(f.flat);
}

static void test_positional(void)
{
	uint8_t buf[10000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7);
	struct fake f = { .flat = calloc(1, 20000), .cap = 20000 };
	struct iovec v[2] = { { buf, 6000 }, { buf + 6000, 4000 } };
	CHECK_CODE(mfd__io_full(fake_write, &f, v, 2, 5000, false, NULL), 0);
	CHECK(memcmp(f.flat + 5000, buf, sizeof(buf)) == 0);
	CHECK_EQ(f.flat[4999], 0);
	free(f.flat);

	/* And the real pwritev/preadv on a file. */
	char path[] = "/tmp/mfd-t-io-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	unlink(path);
	struct iovec w[2] = { { buf, 3333 }, { buf + 3333, 6667 } };
	CHECK_CODE(mfd__io_pwritev_fd(fd, w, 2, 12345), 0);
	uint8_t back[10000];
	struct iovec r[3] = { { back, 1 }, { back + 1, 5000 }, { back + 5001, 4999 } };
	CHECK_CODE(mfd__io_preadv_fd(fd, r, 3, 12345), 0);
	CHECK(memcmp(back, buf, sizeof(buf)) == 0);
	struct iovec past = { back, 10 };
	CHECK_CODE(mfd__io_preadv_fd(fd, &past, 1, 12345 + 10000), MFD_ECLOSED);
	close(fd);
}

static void test_iov_max_split(void)
{
	int n = IOV_MAX * 2 + 17;
	struct iovec *iov = calloc((size_t)n, sizeof(*iov));
	uint8_t *data = malloc((size_t)n * 3);
	for (int i = 0; i < n * 3; i++)
		data[i] = (uint8_t)i;
	for (int i = 0; i < n; i++)
		iov[i] = (struct iovec){ data + 3 * i, 3 };
	struct fake f = { .flat = calloc(1, (size_t)n * 3), .cap = (size_t)n * 3 };
	CHECK_CODE(mfd__io_full(fake_write, &f, iov, n, -1, false, NULL), 0);
	CHECK(f.max_iovcnt_seen <= IOV_MAX);
	CHECK(memcmp(f.flat, data, (size_t)n * 3) == 0);
	free(f.flat);
	free(iov);
	free(data);
}

/* A real socketpair with the smallest buffers the kernel allows: a writer moves 4 MiB in an
 * iovec of odd-sized entries while a reader drains it in small, odd reads. */
struct pipe_job {
	int fd;
	uint8_t *buf;
	size_t len;
	int rc;
};

static void *slow_reader(void *arg)
{
	struct pipe_job *j = arg;
	size_t got = 0;
	uint64_t st = 7;
	while (got < j->len) {
		size_t want = 1 + t_rand(&st) % 5000;
		if (want > j->len - got)
			want = j->len - got;
		struct iovec v = { j->buf + got, want };
		j->rc = mfd__io_readv_fd(j->fd, &v, 1);
		if (j->rc)
			return NULL;
		got += want;
	}
	return NULL;
}

static void test_socketpair_tiny_buffers(void)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	int small = 1;	/* the kernel rounds up to its minimum */
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	size_t len = 4 << 20;
	uint8_t *src = malloc(len), *dst = calloc(1, len);
	for (size_t i = 0; i < len; i++)
		src[i] = (uint8_t)(i * 131 + (i >> 11));
	struct pipe_job j = { .fd = sv[1], .buf = dst, .len = len };
	pthread_t t;
	pthread_create(&t, NULL, slow_reader, &j);
	enum { E = 97 };
	struct iovec iov[E];
	size_t per = len / E, pos = 0;
	for (int i = 0; i < E; i++) {
		size_t l = i == E - 1 ? len - pos : per;
		iov[i] = (struct iovec){ src + pos, l };
		pos += l;
	}
	CHECK_CODE(mfd__io_writev_fd(sv[0], iov, E), 0);
	pthread_join(t, NULL);
	CHECK_CODE(j.rc, 0);
	CHECK(memcmp(src, dst, len) == 0);

	/* A peer that is gone: writes fail with EPIPE (never SIGPIPE), reads see end of stream. */
	close(sv[1]);
	struct iovec v = { src, 1 << 20 };
	CHECK_CODE(mfd__io_writev_fd(sv[0], &v, 1), -EPIPE);
	close(sv[0]);
	free(src);
	free(dst);
}

/* A pipe whose reader is gone: the write fails with -EPIPE and the process lives, whatever its
 * SIGPIPE disposition (here the default, which kills), and a SIGPIPE the caller had pending
 * before stays pending (it is not ours to consume). */
static void test_pipe_without_reader(void)
{
	CHECK(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
	int p[2];
	CHECK(pipe(p) == 0);
	close(p[0]);
	char buf[100] = { 0 };
	CHECK_CODE(mfd__io_write_fd(p[1], buf, sizeof(buf)), -EPIPE);
	CHECK_CODE(mfd__io_write_fd(p[1], buf, sizeof(buf)), -EPIPE);
	sigset_t set, pend;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sigpending(&pend);
	CHECK(!sigismember(&pend, SIGPIPE));	/* ours were consumed */
	raise(SIGPIPE);				/* the caller's own, blocked */
	CHECK_CODE(mfd__io_write_fd(p[1], buf, sizeof(buf)), -EPIPE);
	sigpending(&pend);
	CHECK(sigismember(&pend, SIGPIPE));	/* still there */
	int got = 0;
	CHECK(sigwait(&set, &got) == 0 && got == SIGPIPE);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	close(p[1]);
}

int main(void)
{
	test_resume_inside_entries();
	test_positional();
	test_iov_max_split();
	test_socketpair_tiny_buffers();
	test_pipe_without_reader();
	return t_done("t_io");
}
