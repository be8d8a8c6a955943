/* cli/bench_baseline — what bench compares itself with, measured in the same run: a plain
 * copy of the same bytes over the same number of connections (no protocol, no zero detection),
 * and a plain sequential file write or read in 1 MiB requests with the same flags. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>
#include "bench.h"

struct base_conn {
	int fd;
	uint8_t *base;
	uint64_t len;
	bool sending;
	int rc;
	double cpu_s;			/* this thread's CPU time */
	pthread_t t;
};

static void *base_xfer(void *arg)
{
	struct base_conn *c = arg;
	uint64_t done = 0;
	while (done < c->len) {
		size_t chunk = c->len - done > (1u << 20) ? (1u << 20) : (size_t)(c->len - done);
		ssize_t n = c->sending ? send(c->fd, c->base + done, chunk, MSG_NOSIGNAL)
				       : recv(c->fd, c->base + done, chunk, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			c->rc = -1;
			return NULL;
		}
		done += (uint64_t)n;
	}
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	c->cpu_s = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	return NULL;
}

int bench_base_run(int *fds, unsigned n, uint8_t *mem, uint64_t len, bool sending, double *cpu_s)
{
	struct base_conn c[MFD_MAX_CHANNELS];
	uint64_t per = (len / n) & ~(uint64_t)(PAGE - 1);
	int rc = 0;
	for (unsigned i = 0; i < n; i++) {
		c[i] = (struct base_conn){ .fd = fds[i], .base = mem + i * per, .sending = sending,
					   .len = i == n - 1 ? len - i * per : per };
		if (pthread_create(&c[i].t, NULL, base_xfer, &c[i]))
			return -1;
	}
	*cpu_s = 0;
	for (unsigned i = 0; i < n; i++) {
		pthread_join(c[i].t, NULL);
		rc |= c[i].rc;
		*cpu_s += c[i].cpu_s;
	}
	return rc;
}

int bench_raw_listen(const char *transport, char *uri, size_t urilen)
{
	int fd;
	if (!strcmp(transport, "unix")) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		snprintf(sun.sun_path, sizeof(sun.sun_path), "/tmp/multifd-bench-%d-base.sock", getpid());
		unlink(sun.sun_path);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) || listen(fd, 64))
			return -1;
		snprintf(uri, urilen, "unix:%s", sun.sun_path);
		return fd;
	}
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(in);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&in, sizeof(in)) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)&in, &sl))
		return -1;
	snprintf(uri, urilen, "tcp:127.0.0.1:%u", ntohs(in.sin_port));
	return fd;
}

int bench_raw_connect(const char *uri)
{
	if (!strncmp(uri, "unix:", 5)) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", uri + 5);
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)))
			return -1;
		return fd;
	}
	const char *port = strrchr(uri, ':');
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				  .sin_port = htons((uint16_t)atoi(port + 1)) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&in, sizeof(in)))
		return -1;
	return fd;
}

/* The baseline: one thread, 1 MiB requests, sequential, same flags; a write ends with fsync as
 * the save does.  Returns MiB/s or 0 on error (reported). */
double bench_baseline_io(const char *path, uint8_t *mem, uint64_t len, uint64_t off, bool writing,
			 bool direct)
{
	double t0 = cli_now_s();
	int fd = writing ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (direct ? O_DIRECT : 0),
				0600)
			 : open(path, O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
	if (fd < 0) {
		fprintf(stderr, "multifd bench: baseline: %s: %s\n", path, strerror(errno));
		return 0;
	}
	uint64_t done = 0;
	while (done < len) {
		size_t n = len - done > (1u << 20) ? (1u << 20) : (size_t)(len - done);
		ssize_t k = writing ? pwrite(fd, mem + done, n, (off_t)(off + done))
				    : pread(fd, mem + done, n, (off_t)(off + done));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			fprintf(stderr, "multifd bench: baseline: %s: %s\n", path,
				k < 0 ? strerror(errno) : "short transfer");
			close(fd);
			return 0;
		}
		done += (uint64_t)k;
	}
	if (writing && fsync(fd)) {
		fprintf(stderr, "multifd bench: baseline: fsync: %s\n", strerror(errno));
		close(fd);
		return 0;
	}
	close(fd);
	return (double)len / (1 << 20) / (cli_now_s() - t0);
}
