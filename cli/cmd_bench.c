/* cli/cmd_bench — `multifd bench`: a destination and a source process on this machine move a
 * filled memory area over N channels; both sides then digest every page and the digests must
 * match.  --baseline also measures, in the same run, a plain copy of the same bytes from the same
 * source memory into fresh destination memory over the same number of connections (no protocol,
 * no zero detection), so the result is a ratio taken on one machine at one time. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cli.h"

#define PAGE 4096u

struct bench_opts {
	uint64_t mem;
	unsigned channels;
	unsigned batch;
	const char *fill;
	const char *transport;
	bool baseline;
	bool json;
};

/* What the destination process reports back through the pipe. */
struct dst_result {
	int rc;
	char msg[MFD_ERROR_MSG_MAX];
	struct mfd_stats stats;
	uint64_t digest;
};

void cmd_bench_usage(FILE *out)
{
	fprintf(out,
		"usage: multifd bench [--mem SIZE] [--channels N] [--fill random|zero|pattern]\n"
		"                     [--transport tcp|unix] [--batch PAGES] [--baseline] [--json]\n"
		"\n"
		"Start a destination and a source process, fill the source memory, move it over\n"
		"one main and N data channels, and verify every page with a digest on both sides.\n"
		"\n"
		"  --mem SIZE        memory to move (default 1G; K, M, G, T suffixes)\n"
		"  --channels N      data channels, 1..%d (default 4)\n"
		"  --fill KIND       random (default), zero (all pages zero, written), or pattern\n"
		"                    (every fourth page zero, the others hold their index)\n"
		"  --transport KIND  tcp on 127.0.0.1 (default) or unix sockets\n"
		"  --batch PAGES     pages per packet, 1..%d (default 512)\n"
		"  --baseline        also time a plain copy of the same bytes over N connections\n"
		"                    in the same run, and report baseline_mib_s\n"
		"  --json            print one JSON object on stdout\n"
		"\n"
		"Exit status: 0 when the transfer completed and verified, 1 otherwise.\n",
		MFD_MAX_CHANNELS, MFD_MAX_BATCH_PAGES);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- the plain-copy baseline ---------------------------------------------------------------- */

struct base_conn {
	int fd;
	uint8_t *base;
	uint64_t len;
	bool sending;
	int rc;
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
	return NULL;
}

static int base_run(int *fds, unsigned n, uint8_t *mem, uint64_t len, bool sending)
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
	for (unsigned i = 0; i < n; i++) {
		pthread_join(c[i].t, NULL);
		rc |= c[i].rc;
	}
	return rc;
}

static int raw_listen(const char *transport, char *uri, size_t urilen)
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

static int raw_connect(const char *uri)
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

/* ---- the two processes ------------------------------------------------------------------- */

static int destination(const struct bench_opts *o, int to_src, int from_src)
{
	struct dst_result r = { 0 };
	char uri[256];
	uint8_t *mem = cli_alloc_mem(o->mem);
	struct mfd_session *s = mfd_session_new(MFD_INCOMING);
	struct mfd_error err;
	mfd_error_clear(&err);
	if (!mem || !s) {
		r.rc = -ENOMEM;
		snprintf(r.msg, sizeof(r.msg), "destination: out of memory");
		write_all(to_src, "", 1);
		write_all(to_src, &r, sizeof(r));
		return 1;
	}
	if (!strcmp(o->transport, "unix"))
		snprintf(uri, sizeof(uri), "unix:/tmp/multifd-bench-%d.sock", getpid());
	else
		snprintf(uri, sizeof(uri), "tcp:127.0.0.1:0");
	int rc = mfd_ram_block_add(s, "ram0", mem, o->mem, PAGE, MFD_BLOCK_ZEROED);
	if (rc >= 0)
		rc = mfd_session_listen(s, uri, &err);
	if (rc >= 0)
		rc = mfd_session_local_uri(s, uri, sizeof(uri));
	if (rc < 0)
		uri[0] = '\0';
	write_all(to_src, uri, strlen(uri) + 1);
	if (rc >= 0)
		rc = mfd_session_run(s, &err);
	r.rc = rc < 0 ? rc : 0;
	snprintf(r.msg, sizeof(r.msg), "%s", err.code ? err.msg : mfd_strerror(r.rc));
	mfd_session_get_stats(s, &r.stats);
	mfd_session_free(s);
	if (r.rc == 0)
		r.digest = cli_digest(mem, o->mem, PAGE, 2);
	cli_free_mem(mem, o->mem);
	write_all(to_src, &r, sizeof(r));

	if (!o->baseline)
		return 0;
	/* Baseline receiver: fresh memory, as fresh as ours was, so both pay the same faults. */
	mem = cli_alloc_mem(o->mem);
	int lfd = mem ? raw_listen(o->transport, uri, sizeof(uri)) : -1;
	if (lfd < 0)
		uri[0] = '\0';
	write_all(to_src, uri, strlen(uri) + 1);
	if (lfd < 0)
		return 1;
	int fds[MFD_MAX_CHANNELS];
	for (unsigned i = 0; i < o->channels; i++)
		fds[i] = accept(lfd, NULL, NULL);
	int ok = base_run(fds, o->channels, mem, o->mem, false);
	write_all(to_src, &ok, sizeof(ok));
	for (unsigned i = 0; i < o->channels; i++)
		close(fds[i]);
	close(lfd);
	if (!strncmp(uri, "unix:", 5))
		unlink(uri + 5);
	cli_free_mem(mem, o->mem);
	(void)from_src;
	return 0;
}

static int read_str(int fd, char *buf, size_t len)
{
	size_t i = 0;
	while (i < len) {
		if (read_all(fd, &buf[i], 1))
			return -1;
		if (buf[i] == '\0')
			return 0;
		i++;
	}
	return -1;
}

int cmd_bench(int argc, char **argv)
{
	struct bench_opts o = { .mem = 1ull << 30, .channels = 4, .batch = 512, .fill = "random",
				.transport = "tcp" };
	static const struct option lopts[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "channels", required_argument, NULL, 'c' },
		{ "fill", required_argument, NULL, 'f' },
		{ "transport", required_argument, NULL, 't' },
		{ "batch", required_argument, NULL, 'b' },
		{ "baseline", no_argument, NULL, 'B' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "m:c:f:t:b:Bjh", lopts, NULL)) != -1) {
		switch (opt) {
		case 'm':
			if (cli_parse_size(optarg, &o.mem) || o.mem < PAGE) {
				fprintf(stderr, "multifd bench: bad --mem '%s'\n", optarg);
				return 2;
			}
			o.mem &= ~(uint64_t)(PAGE - 1);
			break;
		case 'c':
			if (cli_parse_uint(optarg, 1, MFD_MAX_CHANNELS, &o.channels)) {
				fprintf(stderr, "multifd bench: --channels must be 1..%d\n", MFD_MAX_CHANNELS);
				return 2;
			}
			break;
		case 'b':
			if (cli_parse_uint(optarg, 1, MFD_MAX_BATCH_PAGES, &o.batch)) {
				fprintf(stderr, "multifd bench: --batch must be 1..%d\n", MFD_MAX_BATCH_PAGES);
				return 2;
			}
			break;
		case 'f':
			if (strcmp(optarg, "random") && strcmp(optarg, "zero") && strcmp(optarg, "pattern")) {
				fprintf(stderr, "multifd bench: --fill must be random, zero or pattern\n");
				return 2;
			}
			o.fill = optarg;
			break;
		case 't':
			if (strcmp(optarg, "tcp") && strcmp(optarg, "unix")) {
				fprintf(stderr, "multifd bench: --transport must be tcp or unix\n");
				return 2;
			}
			o.transport = optarg;
			break;
		case 'B': o.baseline = true; break;
		case 'j': o.json = true; break;
		case 'h': cmd_bench_usage(stdout); return 0;
		default: cmd_bench_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "multifd bench: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}

	int up[2], down[2];
	if (pipe(up) || pipe(down)) {
		perror("multifd bench: pipe");
		return 1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		perror("multifd bench: fork");
		return 1;
	}
	if (pid == 0) {
		close(up[0]);
		close(down[1]);
		_exit(destination(&o, up[1], down[0]));
	}
	close(up[1]);
	close(down[0]);

	int status = 1;
	struct dst_result r = { .rc = -EPIPE };
	struct mfd_stats st = { 0 };
	struct mfd_error err;
	mfd_error_clear(&err);
	double base_mib_s = 0;
	uint64_t src_digest = 0;
	char uri[256];

	uint8_t *mem = cli_alloc_mem(o.mem);
	if (!mem || cli_fill(mem, o.mem, o.fill, 2, 0x1234)) {
		fprintf(stderr, "multifd bench: cannot allocate %llu bytes\n", (unsigned long long)o.mem);
		goto out;
	}
	if (read_str(up[0], uri, sizeof(uri)) || !uri[0]) {
		fprintf(stderr, "multifd bench: destination did not start\n");
		goto out;
	}
	struct mfd_session *s = mfd_session_new(MFD_OUTGOING);
	int rc = s ? 0 : -ENOMEM;
	if (rc == 0)
		rc = mfd_session_set(s, MFD_OPT_CHANNELS, o.channels);
	if (rc == 0)
		rc = mfd_session_set(s, MFD_OPT_BATCH_PAGES, o.batch);
	if (rc == 0 && (rc = mfd_ram_block_add(s, "ram0", mem, o.mem, PAGE, 0)) > 0)
		rc = 0;
	if (rc == 0)
		rc = mfd_session_connect(s, uri, &err);
	if (rc == 0)
		rc = mfd_session_run(s, &err);
	if (s)
		mfd_session_get_stats(s, &st);
	mfd_session_free(s);
	if (rc)
		fprintf(stderr, "multifd bench: source: %s\n", err.code ? err.msg : mfd_strerror(rc));
	if (read_all(up[0], &r, sizeof(r)))
		r.rc = -EPIPE;
	else if (r.rc)
		fprintf(stderr, "multifd bench: destination: %s\n", r.msg);
	if (rc == 0 && r.rc == 0)
		src_digest = cli_digest(mem, o.mem, PAGE, 2);
	bool verified = rc == 0 && r.rc == 0 && src_digest == r.digest;

	if (o.baseline && read_str(up[0], uri, sizeof(uri)) == 0 && uri[0]) {
		int fds[MFD_MAX_CHANNELS];
		unsigned n = 0;
		for (; n < o.channels; n++)
			if ((fds[n] = raw_connect(uri)) < 0)
				break;
		if (n == o.channels) {
			double t0 = cli_now_s();
			int ok = base_run(fds, n, mem, o.mem, true), dst_ok = -1;
			if (read_all(up[0], &dst_ok, sizeof(dst_ok)) == 0 && ok == 0 && dst_ok == 0)
				base_mib_s = (double)o.mem / (1 << 20) / (cli_now_s() - t0);
		}
		for (unsigned i = 0; i < n; i++)
			close(fds[i]);
	}

	double secs = st.total_ms / 1000.0;
	double mib_s = secs > 0 ? (double)o.mem / (1 << 20) / secs : 0;
	const char *state = rc ? "failed" : r.rc ? "failed" : mfd_status_name(st.status);
	if (o.json) {
		printf("{\"status\":\"%s\",\"mem_bytes\":%llu,\"channels\":%u,\"transport\":\"%s\","
		       "\"fill\":\"%s\",\"total_ms\":%llu,\"setup_ms\":%llu,\"throughput_mib_s\":%.1f,"
		       "\"wire_bytes\":%llu,\"packets\":%llu,\"normal_pages\":%llu,\"zero_pages\":%llu,",
		       state, (unsigned long long)o.mem, o.channels, o.transport, o.fill,
		       (unsigned long long)st.total_ms, (unsigned long long)st.setup_ms, mib_s,
		       (unsigned long long)st.wire_bytes, (unsigned long long)st.packets,
		       (unsigned long long)st.normal_pages, (unsigned long long)st.zero_pages);
		if (o.baseline)
			printf("\"baseline_mib_s\":%.1f,\"ratio\":%.3f,", base_mib_s,
			       base_mib_s > 0 ? mib_s / base_mib_s : 0.0);
		printf("\"verified\":%s,\"digest\":\"%016llx\"}\n", verified ? "true" : "false",
		       (unsigned long long)src_digest);
	} else {
		printf("status       %s\n", state);
		printf("memory       %.1f MiB (%s), %u channels over %s\n", (double)o.mem / (1 << 20),
		       o.fill, o.channels, o.transport);
		printf("time         %llu ms (setup %llu ms)\n", (unsigned long long)st.total_ms,
		       (unsigned long long)st.setup_ms);
		printf("throughput   %.1f MiB/s\n", mib_s);
		if (o.baseline)
			printf("baseline     %.1f MiB/s plain copy (ratio %.3f)\n", base_mib_s,
			       base_mib_s > 0 ? mib_s / base_mib_s : 0.0);
		printf("wire         %llu bytes in %llu packets\n", (unsigned long long)st.wire_bytes,
		       (unsigned long long)st.packets);
		printf("pages        %llu normal, %llu zero\n", (unsigned long long)st.normal_pages,
		       (unsigned long long)st.zero_pages);
		printf("verified     %s\n", verified ? "yes (digests match)" : "NO");
	}
	status = verified ? 0 : 1;
out:
	cli_free_mem(mem, o.mem);
	close(up[0]);
	close(down[1]);
	int ws;
	if (status != 0)
		kill(pid, SIGTERM);
	waitpid(pid, &ws, 0);
	return status;
}
