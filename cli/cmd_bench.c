/* cli/cmd_bench — `multifd bench`: a destination and a source process on this machine move a
 * filled memory area over N channels; both sides then digest every page and the digests must
 * match.  With --dirty, writer threads in the source keep changing the first SIZE bytes while
 * the memory moves (userfaultfd write-protect tracking): a live migration, with the writers
 * stopped at the switchover as a VMM stops its vCPUs.  --baseline also measures, in the same run, a plain copy of the same bytes from the same
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
	uint64_t dirty;			/* bytes the writers keep changing (0: static memory) */
	unsigned dirty_threads;
	int64_t downtime_ms, max_bandwidth, deadline_ms;
	bool no_throttle;
};

/* The source's writer threads: each owns an interleaved share of the dirty pages and sweeps it,
 * stamping page p with (p, sweep).  stop/resume/throttle callbacks act on them. */
struct dirtier {
	uint8_t *mem;
	uint64_t pages;
	unsigned n;
	pthread_t t[64];
	int pause_req, paused, quit;	/* atomic */
	unsigned throttle;		/* atomic */
	uint64_t sweeps;		/* atomic: completed sweeps, all threads */
};

struct dirtier_arg {
	struct dirtier *d;
	unsigned id;
};

static void dirtier_nap(struct dirtier *d, uint64_t us)
{
	double end = cli_now_s() + (double)us / 1e6;
	while (!__atomic_load_n(&d->pause_req, __ATOMIC_ACQUIRE) && cli_now_s() < end)
		usleep(200);
}

static void *dirtier_main(void *arg)
{
	struct dirtier_arg *a = arg;
	struct dirtier *d = a->d;
	uint64_t sweep = 1;
	double t0 = cli_now_s();
	while (!__atomic_load_n(&d->quit, __ATOMIC_ACQUIRE)) {
		for (uint64_t p = a->id; p < d->pages; p += d->n) {
			if ((p / d->n) % 256 == 0) {	/* throttle: run (100 - pct)% of the time */
				unsigned pct = __atomic_load_n(&d->throttle, __ATOMIC_RELAXED);
				if (pct)
					dirtier_nap(d, (uint64_t)((cli_now_s() - t0) * 1e6 * pct /
								  (100 - pct)));
				t0 = cli_now_s();
			}
			if ((p / d->n) % 64 == 0 && __atomic_load_n(&d->pause_req, __ATOMIC_ACQUIRE)) {
				__atomic_fetch_add(&d->paused, 1, __ATOMIC_ACQ_REL);
				while (__atomic_load_n(&d->pause_req, __ATOMIC_ACQUIRE) &&
				       !__atomic_load_n(&d->quit, __ATOMIC_ACQUIRE))
					usleep(100);
				__atomic_fetch_sub(&d->paused, 1, __ATOMIC_ACQ_REL);
				if (__atomic_load_n(&d->quit, __ATOMIC_ACQUIRE))
					return NULL;
			}
			uint64_t *w = (uint64_t *)(d->mem + p * PAGE);
			w[0] = p;
			w[1] = sweep;
		}
		sweep++;
		__atomic_fetch_add(&d->sweeps, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static int dirtier_stop(void *opaque)
{
	struct dirtier *d = opaque;
	__atomic_store_n(&d->pause_req, 1, __ATOMIC_RELEASE);
	while (__atomic_load_n(&d->paused, __ATOMIC_ACQUIRE) < (int)d->n)
		usleep(50);
	return 0;
}

static void dirtier_resume(void *opaque)
{
	struct dirtier *d = opaque;
	__atomic_store_n(&d->pause_req, 0, __ATOMIC_RELEASE);
}

static void dirtier_throttle(void *opaque, unsigned pct)
{
	struct dirtier *d = opaque;
	__atomic_store_n(&d->throttle, pct, __ATOMIC_RELAXED);
}

/* Destination check of the writers' pattern: page p of the dirty area holds p, and for each
 * writer's share the sweep numbers form at most two runs, s+1 then s (or one run). */
static bool pattern_ok(const uint8_t *mem, uint64_t pages, unsigned n)
{
	for (unsigned id = 0; id < n; id++) {
		uint64_t first = 0, runs = 0, prev = 0;
		for (uint64_t p = id; p < pages; p += n) {
			const uint64_t *w = (const uint64_t *)(mem + p * PAGE);
			if (w[1] == 0)
				continue;	/* never written yet (the first sweep was cut short) */
			if (w[0] != p)
				return false;
			if (runs == 0) {
				first = w[1];
				runs = 1;
			} else if (w[1] != prev) {
				if (runs == 2 || w[1] + 1 != first)
					return false;
				runs = 2;
			}
			prev = w[1];
		}
	}
	return true;
}

/* What the destination process reports back through the pipe. */
struct dst_result {
	int rc;
	char msg[MFD_ERROR_MSG_MAX];
	struct mfd_stats stats;
	uint64_t digest;
	bool pattern_ok;
};

void cmd_bench_usage(FILE *out)
{
	fprintf(out,
		"usage: multifd bench [--mem SIZE] [--channels N] [--fill random|zero|pattern]\n"
		"                     [--transport tcp|unix] [--batch PAGES] [--baseline] [--json]\n"
		"                     [--dirty SIZE [--dirty-threads N] [--downtime-ms N]\n"
		"                      [--max-bandwidth RATE] [--deadline-ms N] [--no-throttle]]\n"
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
		"  --dirty SIZE      live migration: writer threads keep changing the first SIZE\n"
		"                    bytes (page index and sweep number in every page), tracked\n"
		"                    with userfaultfd write-protect; they stop at the switchover\n"
		"  --dirty-threads N writer threads (default 1)\n"
		"  --downtime-ms N   downtime limit (default 300)\n"
		"  --max-bandwidth RATE  bytes per second over all channels (K, M, G), default none\n"
		"  --deadline-ms N   fail if not converged after N ms (default: no deadline)\n"
		"  --no-throttle     never throttle the writers\n"
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
	if (r.rc == 0) {
		r.digest = cli_digest(mem, o->mem, PAGE, 2);
		r.pattern_ok = !o->dirty || pattern_ok(mem, o->dirty / PAGE, o->dirty_threads);
	}
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
		{ "dirty", required_argument, NULL, 'd' },
		{ "dirty-threads", required_argument, NULL, 'T' },
		{ "downtime-ms", required_argument, NULL, 'D' },
		{ "max-bandwidth", required_argument, NULL, 'W' },
		{ "deadline-ms", required_argument, NULL, 'L' },
		{ "no-throttle", no_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	int opt;
	optind = 1;
	uint64_t v64;
	unsigned v;
	while ((opt = getopt_long(argc, argv, "m:c:f:t:b:Bjhd:T:D:W:L:N", lopts, NULL)) != -1) {
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
		case 'd':
			if (cli_parse_size(optarg, &o.dirty) || o.dirty < PAGE) {
				fprintf(stderr, "multifd bench: bad --dirty '%s'\n", optarg);
				return 2;
			}
			o.dirty &= ~(uint64_t)(PAGE - 1);
			break;
		case 'T':
			if (cli_parse_uint(optarg, 1, 64, &o.dirty_threads)) {
				fprintf(stderr, "multifd bench: --dirty-threads must be 1..64\n");
				return 2;
			}
			break;
		case 'D':
		case 'L':
			if (cli_parse_uint(optarg, 1, 86400000, &v)) {
				fprintf(stderr, "multifd bench: bad %s '%s'\n",
					opt == 'D' ? "--downtime-ms" : "--deadline-ms", optarg);
				return 2;
			}
			*(opt == 'D' ? &o.downtime_ms : &o.deadline_ms) = v;
			break;
		case 'W':
			if (cli_parse_size(optarg, &v64) || v64 == 0) {
				fprintf(stderr, "multifd bench: bad --max-bandwidth '%s'\n", optarg);
				return 2;
			}
			o.max_bandwidth = (int64_t)v64;
			break;
		case 'N': o.no_throttle = true; break;
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
	if (o.dirty > o.mem) {
		fprintf(stderr, "multifd bench: --dirty larger than --mem\n");
		return 2;
	}
	if (o.dirty && o.dirty_threads == 0)
		o.dirty_threads = 1;
	if (o.dirty && o.baseline) {
		fprintf(stderr, "multifd bench: --baseline measures static transfers; drop --dirty\n");
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
	struct dirtier dz = { .mem = mem, .pages = o.dirty / PAGE, .n = o.dirty_threads };
	struct dirtier_arg dargs[64];
	unsigned started = 0;
	if (rc == 0 && o.dirty) {
		if (o.downtime_ms)
			mfd_session_set(s, MFD_OPT_DOWNTIME_MS, o.downtime_ms);
		if (o.max_bandwidth)
			mfd_session_set(s, MFD_OPT_MAX_BANDWIDTH, o.max_bandwidth);
		if (o.deadline_ms)
			mfd_session_set(s, MFD_OPT_DEADLINE_MS, o.deadline_ms);
		if (o.no_throttle)
			mfd_session_set(s, MFD_OPT_AUTO_THROTTLE, 0);
		rc = mfd_session_track_uffd(s);
		struct mfd_callbacks cb = { .stop = dirtier_stop, .resume = dirtier_resume,
					    .throttle = dirtier_throttle, .opaque = &dz };
		mfd_session_set_callbacks(s, &cb);
		for (; rc == 0 && started < dz.n; started++) {
			dargs[started] = (struct dirtier_arg){ &dz, started };
			if (pthread_create(&dz.t[started], NULL, dirtier_main, &dargs[started]))
				break;
		}
	}
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
	/* The writers stay stopped after a completed migration, so the source memory is still what
	 * it was at the switchover. */
	if (rc == 0 && r.rc == 0)
		src_digest = cli_digest(mem, o.mem, PAGE, 2);
	bool verified = rc == 0 && r.rc == 0 && src_digest == r.digest && r.pattern_ok;
	if (started) {
		__atomic_store_n(&dz.quit, 1, __ATOMIC_RELEASE);
		for (unsigned i = 0; i < started; i++)
			pthread_join(dz.t[i], NULL);
	}

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
		if (o.dirty)
			printf("\"dirty_bytes\":%llu,\"dirty_threads\":%u,\"writer_sweeps\":%llu,"
			       "\"downtime_ms\":%llu,\"expected_downtime_ms\":%llu,\"rounds\":%llu,"
			       "\"dirty_sync_count\":%llu,\"throttle_pct_max\":%u,\"pattern_ok\":%s,",
			       (unsigned long long)o.dirty, o.dirty_threads,
			       (unsigned long long)dz.sweeps, (unsigned long long)st.downtime_ms,
			       (unsigned long long)st.expected_downtime_ms, (unsigned long long)st.rounds,
			       (unsigned long long)st.dirty_sync_count, st.throttle_pct_max,
			       r.pattern_ok ? "true" : "false");
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
		if (o.dirty)
			printf("live         %llu rounds, %llu dirty syncs, downtime %llu ms, throttle "
			       "max %u%%, %llu writer sweeps\n", (unsigned long long)st.rounds,
			       (unsigned long long)st.dirty_sync_count,
			       (unsigned long long)st.downtime_ms, st.throttle_pct_max,
			       (unsigned long long)dz.sweeps);
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
