/* cli/bench_transfer — `multifd bench` between two processes: a destination process (forked)
 * and this one, the source, move the filled memory over N channels; both sides then digest
 * every page and the digests must match.  --repeat takes several samples with a fresh
 * destination each, and the medians are reported. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "bench.h"
#include "progress.h"

/* What the destination process reports back through the pipe. */
struct dst_result {
	int rc;
	char msg[MFD_ERROR_MSG_MAX];
	struct mfd_stats stats;
	uint64_t digest;
	bool pattern_ok;
};

/* The whole of [buf, buf + len) through a pipe to or from the other process; 0 or -1. */
static int pipe_io(int fd, void *buf, size_t len, bool writing)
{
	char *p = buf;
	while (len) {
		ssize_t n = writing ? write(fd, p, len) : read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	return pipe_io(fd, (void *)buf, len, true);
}

static int read_all(int fd, void *buf, size_t len)
{
	return pipe_io(fd, buf, len, false);
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

/* ---- the two processes ------------------------------------------------------------------- */

static int destination(const struct bench_opts *o, int to_src, int from_src)
{
	struct dst_result r = { 0 };
	char uri[256];
	uint8_t *mem = cli_alloc_mem(o->mem);
	if (mem && !o->fresh_dest && cli_prealloc(mem, o->mem) < 0) {	/* reported below */
		cli_free_mem(mem, o->mem);
		mem = NULL;
	}
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
		r.pattern_ok = !o->dirty || bench_pattern_ok(mem, o->dirty / PAGE, o->dirty_threads, o->fill);
	}
	cli_free_mem(mem, o->mem);
	write_all(to_src, &r, sizeof(r));

	if (!o->baseline)
		return 0;
	/* Baseline receiver: new memory, preallocated or not as ours was. */
	mem = cli_alloc_mem(o->mem);
	if (mem && !o->fresh_dest && cli_prealloc(mem, o->mem) < 0) {
		cli_free_mem(mem, o->mem);
		mem = NULL;
	}
	int lfd = mem ? bench_raw_listen(o->transport, uri, sizeof(uri)) : -1;
	if (lfd < 0)
		uri[0] = '\0';
	write_all(to_src, uri, strlen(uri) + 1);
	if (lfd < 0)
		return 1;
	int fds[MFD_MAX_CHANNELS];
	for (unsigned i = 0; i < o->channels; i++)
		fds[i] = accept(lfd, NULL, NULL);
	struct { int ok; double cpu_s; } res;
	res.ok = bench_base_run(fds, o->channels, mem, o->mem, false, &res.cpu_s);
	write_all(to_src, &res, sizeof(res));
	for (unsigned i = 0; i < o->channels; i++)
		close(fds[i]);
	close(lfd);
	if (!strncmp(uri, "unix:", 5))
		unlink(uri + 5);
	cli_free_mem(mem, o->mem);
	(void)from_src;
	return 0;
}

/* One measurement: a fresh destination process, our transfer of the (already filled) source
 * memory, digests of every page on both sides, then, with --baseline, the plain copy into fresh
 * destination memory.  With --dirty the writers run during our transfer only. */
struct sample {
	int rc;				/* ours: 0 when the transfer completed */
	struct dst_result r;
	struct mfd_stats st;
	uint64_t src_digest;
	bool verified;
	double mib_s, base_mib_s;
	double cpu_s;			/* CPU time of both sessions' threads */
	double base_cpu_s;		/* and of both sides' plain-copy threads */
	uint64_t sweeps;		/* --dirty: writer sweeps */
};

static void one_sample(const struct bench_opts *op, uint8_t *mem, struct sample *out)
{
	struct bench_opts o = *op;
	memset(out, 0, sizeof(*out));
	out->r.rc = -EPIPE;
	out->rc = -EPIPE;
	int up[2], down[2];
	if (pipe(up) || pipe(down)) {
		perror("multifd bench: pipe");
		return;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		perror("multifd bench: fork");
		return;
	}
	if (pid == 0) {
		close(up[0]);
		close(down[1]);
		_exit(destination(&o, up[1], down[0]));
	}
	close(up[1]);
	close(down[0]);
	struct dst_result r = { .rc = -EPIPE };
	struct mfd_stats st = { 0 };
	struct mfd_error err;
	mfd_error_clear(&err);
	double base_mib_s = 0, base_cpu_s = 0;
	uint64_t src_digest = 0;
	char uri[256];
	int rc = -EPIPE;
	bool verified = false;
	struct dirtier dz = { .mem = mem, .pages = o.dirty / PAGE, .n = o.dirty_threads };

	if (read_str(up[0], uri, sizeof(uri)) || !uri[0]) {
		fprintf(stderr, "multifd bench: destination did not start\n");
		goto out;
	}
	struct mfd_session *s = mfd_session_new(MFD_OUTGOING);
	rc = s ? 0 : -ENOMEM;
	if (rc == 0)
		rc = mfd_session_set(s, MFD_OPT_CHANNELS, o.channels);
	if (rc == 0)
		rc = mfd_session_set(s, MFD_OPT_BATCH_PAGES, o.batch);
	if (rc == 0 && (rc = mfd_ram_block_add(s, "ram0", mem, o.mem, PAGE, 0)) > 0)
		rc = 0;
	if (rc == 0 && o.dirty) {
		if (o.max_bandwidth)
			mfd_session_set(s, MFD_OPT_MAX_BANDWIDTH, o.max_bandwidth);
		rc = bench_live_start(s, &o, &dz);
	}
	if (rc == 0)
		rc = mfd_session_connect(s, uri, &err);
	if (rc == 0)
		rc = bench_run(s, &o, "transfer", &err);
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
	verified = rc == 0 && r.rc == 0 && src_digest == r.digest && r.pattern_ok;
	bench_live_stop(&dz);

	if (o.baseline && read_str(up[0], uri, sizeof(uri)) == 0 && uri[0]) {
		int fds[MFD_MAX_CHANNELS];
		unsigned n = 0;
		for (; n < o.channels; n++)
			if ((fds[n] = bench_raw_connect(uri)) < 0)
				break;
		if (n == o.channels) {
			double t0 = cli_now_s();
			double cpu_s = 0;
			int ok = bench_base_run(fds, n, mem, o.mem, true, &cpu_s);
			struct { int ok; double cpu_s; } dst = { -1, 0 };
			if (read_all(up[0], &dst, sizeof(dst)) == 0 && ok == 0 && dst.ok == 0) {
				base_mib_s = (double)o.mem / (1 << 20) / (cli_now_s() - t0);
				base_cpu_s = cpu_s + dst.cpu_s;
			}
		}
		for (unsigned i = 0; i < n; i++)
			close(fds[i]);
	}
out:
	close(up[0]);
	close(down[1]);
	int ws;
	if (!verified)
		kill(pid, SIGTERM);
	waitpid(pid, &ws, 0);
	out->rc = rc;
	out->r = r;
	out->st = st;
	out->src_digest = src_digest;
	out->verified = verified;
	out->base_mib_s = base_mib_s;
	out->base_cpu_s = base_cpu_s;
	/* Memory brought over per second (as the plain copy's): the ratio's terms. */
	out->mib_s = st.total_ms ? (double)o.mem / (1 << 20) / (st.total_ms / 1000.0) : 0;
	out->cpu_s = st.cpu_s + r.stats.cpu_s;
	out->sweeps = dz.sweeps;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int bench_transfer(const struct bench_opts *op)
{
	struct bench_opts o = *op;
	int status = 1;
	uint8_t *mem = cli_alloc_mem(o.mem);
	if (!mem || cli_fill(mem, o.mem, o.fill, 2, BENCH_FILL_SEED)) {
		fprintf(stderr, "multifd bench: cannot allocate %llu bytes\n", (unsigned long long)o.mem);
		cli_free_mem(mem, o.mem);
		return 1;
	}
	/* One untimed read pass first: the first pass over freshly written memory is measurably
	 * slower here, and it would fall on our transfer only (each pair runs ours first). */
	(void)cli_digest(mem, o.mem, PAGE, 2);
	struct sample samples[MAX_REPEAT];
	double ours[MAX_REPEAT], bases[MAX_REPEAT], ratios[MAX_REPEAT];
	bool all_verified = true;
	unsigned k;
	for (k = 0; k < o.repeat; k++) {
		one_sample(&o, mem, &samples[k]);
		o.timeline = NULL;	/* the first sample's picture only */
		ours[k] = samples[k].mib_s;
		bases[k] = samples[k].base_mib_s;
		ratios[k] = bases[k] > 0 ? ours[k] / bases[k] : 0;
		all_verified = all_verified && samples[k].verified;
		if (!samples[k].verified) {
			k++;
			break;
		}
	}
	unsigned nsamples = k;
	/* The reported sample: the one whose ratio (or throughput) is the median. */
	double mr[MAX_REPEAT];
	memcpy(mr, o.baseline ? ratios : ours, nsamples * sizeof(double));
	double med = median(mr, nsamples);
	unsigned pick = 0;
	for (unsigned i = 0; i < nsamples; i++)
		if (fabs((o.baseline ? ratios[i] : ours[i]) - med) <
		    fabs((o.baseline ? ratios[pick] : ours[pick]) - med))
			pick = i;
	const struct sample *sp = &samples[pick];
	const struct mfd_stats st = sp->st;
	const struct dst_result r = sp->r;
	struct { uint64_t sweeps; } dz = { sp->sweeps };
	int rc = sp->rc;
	bool verified = all_verified;
	uint64_t src_digest = sp->src_digest;
	double mib_s = nsamples > 1 ? median(memcpy(mr, ours, nsamples * sizeof(double)), nsamples)
				    : sp->mib_s;
	double base_mib_s = nsamples > 1 ? median(memcpy(mr, bases, nsamples * sizeof(double)), nsamples)
					 : sp->base_mib_s;
	double ratio = o.baseline ? (nsamples > 1 ? med : ratios[0]) : 0;
	const char *state = rc ? "failed" : r.rc ? "failed" : mfd_status_name(st.status);
	const double gib = (double)o.mem / (1u << 30);
	if (o.json) {
		/* docs/json.md, "bench --json": the bench's own facts, then the reported sample's
		 * statistics as the library writes them. */
		char stats[8192];
		mfd_stats_json(&st, stats, sizeof(stats));
		printf("{\"schema\":%d,\"mode\":\"transfer\",\"status\":\"%s\",\"mem_bytes\":%llu,"
		       "\"channels\":%u,\"transport\":\"%s\",\"fill\":\"%s\",\"dest_prealloc\":%s,"
		       "\"memory_mib_s\":%.1f,",
		       MFD_JSON_SCHEMA, state, (unsigned long long)o.mem, o.channels, o.transport,
		       o.fill, o.fresh_dest ? "false" : "true", mib_s);
		if (o.baseline)
			printf("\"baseline_mib_s\":%.1f,\"ratio\":%.3f,\"baseline_cpu_s_per_gib\":%.3f,",
			       base_mib_s, ratio, sp->base_cpu_s / gib);
		printf("\"cpu_s\":%.3f,\"cpu_s_per_gib\":%.3f,", sp->cpu_s, sp->cpu_s / gib);
		if (nsamples > 1) {
			printf("\"repeat\":%u,\"samples\":[", nsamples);
			for (unsigned i = 0; i < nsamples; i++) {
				printf("%s{\"memory_mib_s\":%.1f", i ? "," : "", ours[i]);
				if (o.baseline)
					printf(",\"baseline_mib_s\":%.1f,\"ratio\":%.3f", bases[i],
					       ratios[i]);
				printf(",\"cpu_s_per_gib\":%.3f", samples[i].cpu_s / gib);
				if (o.baseline)
					printf(",\"baseline_cpu_s_per_gib\":%.3f", samples[i].base_cpu_s / gib);
				printf(",\"verified\":%s}", samples[i].verified ? "true" : "false");
			}
			printf("],");
		}
		if (o.dirty)
			printf("\"dirty_bytes\":%llu,\"dirty_threads\":%u,\"writer_sweeps\":%llu,"
			       "\"pattern_ok\":%s,", (unsigned long long)o.dirty, o.dirty_threads,
			       (unsigned long long)dz.sweeps, r.pattern_ok ? "true" : "false");
		printf("\"verified\":%s,\"digest\":\"%016llx\",\"migration\":%s}\n",
		       verified ? "true" : "false", (unsigned long long)src_digest, stats);
	} else {
		char b[32];
		printf("status       %s\n", state);
		printf("memory       %.1f MiB (%s), %u channels over %s, destination %s\n",
		       (double)o.mem / (1 << 20), o.fill, o.channels, o.transport,
		       o.fresh_dest ? "fresh" : "preallocated");
		printf("time         %llu ms (setup %llu ms)\n", (unsigned long long)st.total_ms,
		       (unsigned long long)st.setup_ms);
		printf("memory rate  %.1f MiB/s\n", mib_s);
		if (o.baseline)
			printf("baseline     %.1f MiB/s plain copy (ratio %.3f)\n", base_mib_s, ratio);
		if (nsamples > 1) {
			printf("samples      %u (medians above):", nsamples);
			for (unsigned i = 0; i < nsamples; i++)
				printf(" %.0f%s", o.baseline ? ratios[i] * 1000 : ours[i],
				       o.baseline ? "" : " MiB/s");
			printf("%s\n", o.baseline ? " (ratio x 1000)" : "");
		}
		printf("wire         %s in %llu packets\n", progress_bytes(b, sizeof(b), st.wire_bytes),
		       (unsigned long long)st.packets);
		progress_channels(stdout, &st);
		printf("pages        %llu normal, %llu zero\n", (unsigned long long)st.normal_pages,
		       (unsigned long long)st.zero_pages);
		printf("cpu          %.2f s in both sessions' threads, %.2f s per GiB (source %.2f, "
		       "destination %.2f)", sp->cpu_s, sp->cpu_s / gib, st.cpu_s, r.stats.cpu_s);
		if (o.baseline)
			printf("; the plain copy %.2f s per GiB", sp->base_cpu_s / gib);
		printf("\n");
		if (o.dirty)
			printf("live         %llu rounds, %llu dirty syncs, downtime %llu ms, throttle "
			       "max %u%%, %llu writer sweeps\n", (unsigned long long)st.rounds,
			       (unsigned long long)st.dirty_sync_count,
			       (unsigned long long)st.downtime_ms, st.throttle_pct_max,
			       (unsigned long long)dz.sweeps);
		if (op->timeline)
			printf("timeline     %s\n", op->timeline);
		printf("verified     %s\n", verified ? "yes (digests match)" : "NO");
	}
	status = verified ? 0 : 1;
	cli_free_mem(mem, o.mem);
	return status;
}
