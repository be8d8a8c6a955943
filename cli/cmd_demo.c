/* cli/cmd_demo — `multifd demo`: the main job, end to end.  It starts two tinyvm processes on
 * this machine — a destination waiting for a migration and a source running the `dirty`
 * workload — migrates the running guest live through the control protocol, and verifies:
 *   1. the destination's RAM digest equals the source's at the switchover (the source stays
 *      paused once it completed; the destination digests before it starts the guest);
 *   2. the workload's page pattern is consistent on the destination (every page holds its
 *      frame number and a sweep number; per vCPU the sweeps form runs s+1 then s);
 *   3. the guest kept running on the destination: its serial sweep counter moves past the
 *      value it had at the switchover.
 * It shows a progress bar on a terminal (plain lines otherwise) and a summary (or --json). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cli.h"

struct demo {
	const char *accel;
	uint64_t mem, dirty;
	unsigned channels, vcpus, downtime_ms;
	bool json;
	char dir[64];
	char src_sock[128], dst_sock[128];
	pid_t src, dst;
};

void cmd_demo_usage(FILE *out)
{
	fprintf(out,
		"usage: multifd demo [--accel kvm|soft|auto] [--mem SIZE] [--dirty SIZE]\n"
		"                    [--channels N] [--vcpus N] [--downtime-ms N] [--json]\n"
		"\n"
		"Start a destination and a source `multifd vm run` on this machine, live-migrate\n"
		"the running guest (which keeps dirtying SIZE bytes) from one to the other, and\n"
		"verify the destination's memory, the guest's page pattern, and that the guest\n"
		"runs on after the switchover.\n"
		"\n"
		"  --accel KIND      kvm, soft, or auto (default: kvm when /dev/kvm works)\n"
		"  --mem SIZE        guest RAM (default 512M)\n"
		"  --dirty SIZE      memory the guest keeps rewriting (default 64M)\n"
		"  --channels N      data channels (default 4)\n"
		"  --vcpus N         vCPUs (default 1)\n"
		"  --downtime-ms N   downtime limit (default 300)\n"
		"  --json            print one JSON object instead of the summary\n"
		"\n"
		"Exit status: 0 when the migration completed, verified, and the guest resumed,\n"
		"1 otherwise, 2 for a usage error.\n");
}

static pid_t spawn(struct demo *d, char *const args[], const char *log)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execv("/proc/self/exe", args);
		_exit(127);
	}
	(void)d;
	return pid;
}

/* One request to a control socket; the reply in buf.  Retries the connection for a while
 * (the VM process may still be starting). */
static int ask(const char *sock, const char *req, char *buf, size_t cap)
{
	for (int i = 0; i < 200; i++) {
		int fd = ctl_connect(sock);
		if (fd >= 0) {
			int rc = ctl_call(fd, req, NULL, 0, buf, cap);
			close(fd);
			return rc;
		}
		usleep(50000);
	}
	return -ETIMEDOUT;
}

static uint64_t num(const char *js, const char *key)
{
	char v[64];
	return js && json_find(js, key, v, sizeof(v)) ? strtoull(v, NULL, 10) : 0;
}

/* The first element of a "key":[a,b,...] array, or of the one after `after` if given. */
static uint64_t first_of(const char *js, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":[", key);
	const char *p = js ? strstr(js, pat) : NULL;
	return p ? strtoull(p + strlen(pat), NULL, 10) : 0;
}

static bool alive(pid_t pid)
{
	return waitpid(pid, NULL, WNOHANG) == 0;
}

static void progress(const struct demo *d, const char *mig, bool tty, double t0, bool final)
{
	char status[32] = "";
	json_find(mig, "status", status, sizeof(status));
	uint64_t sent = num(mig, "wire_bytes"), rem = num(mig, "remaining_bytes");
	uint64_t rounds = num(mig, "rounds"), thr = num(mig, "throttle_pct");
	double frac = d->mem ? (double)sent / (double)d->mem : 0;
	if (frac > 1)
		frac = 1;
	if (tty) {
		char bar[31];
		int n = (int)(frac * 30);
		for (int i = 0; i < 30; i++)
			bar[i] = i < n ? '#' : '.';
		bar[30] = '\0';
		fprintf(stderr, "\r  [%s] %-10s round %-3" PRIu64 " sent %5" PRIu64
			" MiB  dirty %4" PRIu64 " MiB  throttle %2" PRIu64 "%%  %5.1fs%s", bar, status,
			rounds, sent >> 20, rem >> 20, thr, cli_now_s() - t0, final ? "\n" : "");
	} else {
		fprintf(stderr, "  %-10s round %" PRIu64 ", sent %" PRIu64 " MiB, dirty %" PRIu64
			" MiB, throttle %" PRIu64 "%%, %.1f s\n", status, rounds, sent >> 20, rem >> 20,
			thr, cli_now_s() - t0);
	}
}

int cmd_demo(int argc, char **argv)
{
	struct demo d = { .accel = "auto", .mem = 512ull << 20, .dirty = 64ull << 20, .channels = 4,
			  .vcpus = 1, .downtime_ms = 300 };
	static const struct option lopts[] = {
		{ "accel", required_argument, NULL, 'a' },
		{ "mem", required_argument, NULL, 'm' },
		{ "dirty", required_argument, NULL, 'd' },
		{ "channels", required_argument, NULL, 'c' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "downtime-ms", required_argument, NULL, 'D' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	int opt;
	const char *why = NULL;
	optind = 1;
	while (!why && (opt = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (opt) {
		case 'a':
			if (strcmp(optarg, "kvm") && strcmp(optarg, "soft") && strcmp(optarg, "auto"))
				why = "--accel is kvm, soft or auto";
			d.accel = optarg;
			break;
		case 'm':
			if (cli_parse_size(optarg, &d.mem) || d.mem < (8ull << 20) ||
			    d.mem > (64ull << 30) || d.mem % 4096)
				why = "--mem is a multiple of 4 KiB from 8M to 64G";
			break;
		case 'd':
			if (cli_parse_size(optarg, &d.dirty) || d.dirty < 4096 || d.dirty % 4096)
				why = "--dirty is a multiple of 4 KiB, at least 4K";
			break;
		case 'c':
			if (cli_parse_uint(optarg, 1, MFD_MAX_CHANNELS, &d.channels))
				why = "--channels is 1..64";
			break;
		case 'v':
			if (cli_parse_uint(optarg, 1, 64, &d.vcpus))
				why = "--vcpus is 1..64";
			break;
		case 'D':
			if (cli_parse_uint(optarg, 1, 3600000, &d.downtime_ms))
				why = "--downtime-ms is 1..3600000";
			break;
		case 'j':
			d.json = true;
			break;
		case 'h':
			cmd_demo_usage(stdout);
			return 0;
		default:
			goto bad;	/* getopt said what */
		}
	}
	if (why) {
		fprintf(stderr, "multifd demo: bad value '%s': %s\n", optarg, why);
		goto bad;
	}
	if (optind != argc) {
		fprintf(stderr, "multifd demo: unexpected argument '%s'\n", argv[optind]);
		goto bad;
	}
	if (d.dirty > d.mem - (2ull << 20)) {
		fprintf(stderr, "multifd demo: --dirty must be at most --mem minus 2 MiB\n");
		goto bad;
	}

	snprintf(d.dir, sizeof(d.dir), "/tmp/multifd-demo-XXXXXX");
	if (!mkdtemp(d.dir)) {
		perror("multifd demo: mkdtemp");
		return 1;
	}
	snprintf(d.src_sock, sizeof(d.src_sock), "%s/src.sock", d.dir);
	snprintf(d.dst_sock, sizeof(d.dst_sock), "%s/dst.sock", d.dir);
	char mem[32], dirty[48], vcpus[16], ssrc[128], sdst[128], lsrc[128], ldst[128];
	snprintf(mem, sizeof(mem), "%" PRIu64 "K", d.mem >> 10);
	snprintf(dirty, sizeof(dirty), "dirty:%" PRIu64 "K", d.dirty >> 10);
	snprintf(vcpus, sizeof(vcpus), "%u", d.vcpus);
	snprintf(ssrc, sizeof(ssrc), "%s/src.serial", d.dir);
	snprintf(sdst, sizeof(sdst), "%s/dst.serial", d.dir);
	snprintf(lsrc, sizeof(lsrc), "%s/src.log", d.dir);
	snprintf(ldst, sizeof(ldst), "%s/dst.log", d.dir);
	char *dst_args[] = { "multifd", "vm", "run", "--accel", (char *)d.accel, "--mem", mem,
			     "--vcpus", vcpus, "--workload", dirty, "--serial", sdst, "--control",
			     d.dst_sock, "--incoming", "tcp:127.0.0.1:0", NULL };
	char *src_args[] = { "multifd", "vm", "run", "--accel", (char *)d.accel, "--mem", mem,
			     "--vcpus", vcpus, "--workload", dirty, "--fill", "random", "--serial",
			     ssrc, "--control", d.src_sock, NULL };
	bool tty = isatty(STDERR_FILENO) && !getenv("CI");
	int status = 1;
	char src_q[16384], dst_q[16384], msg[512] = "";
	char accel[16] = "?", uri[256] = "";
	double t_mig = 0;
	bool verified = false, resumed = false, pattern_ok = false, completed = false;
	char src_digest[32] = "", dst_digest[32] = "";
	uint64_t switch_sweep = 0, now_sweep = 0;

	d.dst = spawn(&d, dst_args, ldst);
	d.src = spawn(&d, src_args, lsrc);
	if (!d.json)
		fprintf(stderr, "multifd demo: guest of %" PRIu64 " MiB dirtying %" PRIu64
			" MiB, %u channels\n", d.mem >> 20, d.dirty >> 20, d.channels);

	/* The source guest runs (a few sweeps done), the destination listens. */
	double deadline = cli_now_s() + 60;
	for (;;) {
		if (ask(d.src_sock, "{\"cmd\":\"query\"}", src_q, sizeof(src_q)) == 0 &&
		    first_of(src_q, "sweeps") >= 2)
			break;
		if (!alive(d.src) || cli_now_s() > deadline) {
			snprintf(msg, sizeof(msg), "the source VM did not start (see %s)", lsrc);
			goto out;
		}
		usleep(100000);
	}
	json_find(src_q, "accel", accel, sizeof(accel));
	if (ask(d.dst_sock, "{\"cmd\":\"query\"}", dst_q, sizeof(dst_q)) ||
	    !json_find(dst_q, "incoming_uri", uri, sizeof(uri))) {
		snprintf(msg, sizeof(msg), "the destination VM did not start (see %s)", ldst);
		goto out;
	}
	if (!d.json)
		fprintf(stderr, "multifd demo: accel %s; source guest running (sweep %" PRIu64
			"); migrating to %s\n", accel, first_of(src_q, "sweeps"), uri);

	char req[512];
	snprintf(req, sizeof(req), "{\"cmd\":\"migrate\",\"uri\":\"%s\",\"channels\":%u,"
		 "\"downtime_ms\":%u}", uri, d.channels, d.downtime_ms);
	if (ask(d.src_sock, req, src_q, sizeof(src_q)) || !strstr(src_q, "\"ok\":true")) {
		snprintf(msg, sizeof(msg), "migrate refused: %.400s", src_q);
		goto out;
	}
	t_mig = cli_now_s();
	double last_line = 0;
	for (;;) {
		if (ask(d.src_sock, "{\"cmd\":\"query\"}", src_q, sizeof(src_q))) {
			snprintf(msg, sizeof(msg), "the source VM stopped answering");
			goto out;
		}
		const char *mig = strstr(src_q, "\"migration\":");
		char st[32] = "";
		if (mig)
			json_find(mig, "status", st, sizeof(st));
		bool done = !strcmp(st, "completed") || !strcmp(st, "failed") ||
			    !strcmp(st, "cancelled");
		if (mig && !d.json && (tty || done || cli_now_s() - last_line >= 1)) {
			progress(&d, mig, tty, t_mig, done);
			last_line = cli_now_s();
		}
		if (done) {
			completed = !strcmp(st, "completed");
			break;
		}
		if (cli_now_s() - t_mig > 300) {
			ask(d.src_sock, "{\"cmd\":\"cancel\"}", dst_q, sizeof(dst_q));
			snprintf(msg, sizeof(msg), "no completion within 300 s: canceled");
			goto out;
		}
		usleep(tty ? 100000 : 200000);
	}
	if (!completed) {
		char e[300] = "";
		json_find(src_q, "migration_error", e, sizeof(e));
		snprintf(msg, sizeof(msg), "migration failed: %s", e);
		goto out;
	}
	/* Verify: digests at the switchover, the pattern, and the guest running on. */
	for (int i = 0; i < 200; i++) {	/* the source records its digest right after completing */
		ask(d.src_sock, "{\"cmd\":\"query\"}", src_q, sizeof(src_q));
		ask(d.dst_sock, "{\"cmd\":\"query\"}", dst_q, sizeof(dst_q));
		if (strstr(src_q, "\"switchover\":") && strstr(dst_q, "\"switchover\":"))
			break;
		usleep(50000);
	}
	const char *ssw = strstr(src_q, "\"switchover\":"), *dsw = strstr(dst_q, "\"switchover\":");
	if (ssw)
		json_find(ssw, "digest", src_digest, sizeof(src_digest));
	if (dsw) {
		json_find(dsw, "digest", dst_digest, sizeof(dst_digest));
		pattern_ok = strstr(dsw, "\"pattern_ok\":true") != NULL;
		switch_sweep = first_of(dsw, "sweeps");
	}
	verified = src_digest[0] && !strcmp(src_digest, dst_digest) && pattern_ok;
	for (int i = 0; i < 100 && !resumed; i++) {
		ask(d.dst_sock, "{\"cmd\":\"query\"}", dst_q, sizeof(dst_q));
		now_sweep = first_of(dst_q, "sweeps");
		resumed = now_sweep > switch_sweep;
		if (!resumed)
			usleep(100000);
	}
	if (!verified)
		snprintf(msg, sizeof(msg), "verification failed: source digest %s, destination %s, "
			 "pattern %s", src_digest, dst_digest, pattern_ok ? "ok" : "bad");
	else if (!resumed)
		snprintf(msg, sizeof(msg), "the guest did not advance on the destination");
	status = verified && resumed ? 0 : 1;
out:;
	const char *mig = strstr(src_q, "\"migration\":");
	uint64_t total = num(mig, "total_ms"), mem_b = num(mig, "mem_bytes");
	if (d.json) {
		printf("{\"status\":\"%s\",\"accel\":\"%s\",\"mem_bytes\":%" PRIu64 ",\"dirty_bytes\":%"
		       PRIu64 ",\"channels\":%u,\"total_ms\":%" PRIu64 ",\"downtime_ms\":%" PRIu64
		       ",\"expected_downtime_ms\":%" PRIu64 ",\"rounds\":%" PRIu64
		       ",\"throttle_pct_max\":%" PRIu64 ",\"throughput_mib_s\":%.1f,\"wire_bytes\":%"
		       PRIu64 ",\"verified\":%s,\"pattern_ok\":%s,\"guest_resumed\":%s,"
		       "\"switchover_sweep\":%" PRIu64 ",\"sweep_after\":%" PRIu64 "",
		       completed ? "completed" : "failed", accel, d.mem, d.dirty, d.channels, total,
		       num(mig, "downtime_ms"), num(mig, "expected_downtime_ms"), num(mig, "rounds"),
		       num(mig, "throttle_pct_max"),
		       total ? (double)mem_b / 1048576.0 / ((double)total / 1000.0) : 0.0,
		       num(mig, "wire_bytes"), verified ? "true" : "false",
		       pattern_ok ? "true" : "false", resumed ? "true" : "false", switch_sweep,
		       now_sweep);
		if (msg[0]) {
			printf(",\"error\":\"");
			for (const char *p = msg; *p; p++)
				printf(*p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
			printf("\"");
		}
		printf("}\n");
	} else {
		if (mig) {
			printf("migration    %s in %" PRIu64 " ms, %" PRIu64 " rounds, %.1f MiB/s\n",
			       completed ? "completed" : "failed", total, num(mig, "rounds"),
			       total ? (double)mem_b / 1048576.0 / ((double)total / 1000.0) : 0.0);
			printf("downtime     %" PRIu64 " ms (limit %u ms, expected %" PRIu64 " ms)\n",
			       num(mig, "downtime_ms"), d.downtime_ms, num(mig, "expected_downtime_ms"));
		}
		printf("accel        %s\n", accel);
		printf("verified     %s\n", verified ? "yes: destination RAM digest equals the "
						       "source's at switchover, page pattern intact"
						     : "NO");
		printf("guest        %s (sweep %" PRIu64 " at switchover, %" PRIu64 " now)\n",
		       resumed ? "resumed on the destination" : "NOT running on the destination",
		       switch_sweep, now_sweep);
		if (msg[0])
			printf("error        %s\n", msg);
	}
	/* Shut both VMs down and clean up. */
	char ignored[16384];
	if (d.src > 0) {
		ask(d.src_sock, "{\"cmd\":\"quit\"}", ignored, sizeof(ignored));
		for (int i = 0; i < 50 && alive(d.src); i++)
			usleep(100000);
		kill(d.src, SIGKILL);
		waitpid(d.src, NULL, 0);
	}
	if (d.dst > 0) {
		ask(d.dst_sock, "{\"cmd\":\"quit\"}", ignored, sizeof(ignored));
		for (int i = 0; i < 50 && alive(d.dst); i++)
			usleep(100000);
		kill(d.dst, SIGKILL);
		waitpid(d.dst, NULL, 0);
	}
	if (status == 0) {
		const char *files[] = { "src.serial", "dst.serial", "src.log", "dst.log" };
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			char p[160];
			snprintf(p, sizeof(p), "%s/%s", d.dir, files[i]);
			unlink(p);
		}
		rmdir(d.dir);
	} else if (!d.json) {
		fprintf(stderr, "multifd demo: logs kept in %s\n", d.dir);
	}
	return status;
bad:
	fprintf(stderr, "usage: multifd demo [--accel kvm|soft|auto] [--mem SIZE] [--dirty SIZE] "
		"[--channels N] [--vcpus N] [--downtime-ms N] [--json]  (multifd help demo)\n");
	return 2;
}
