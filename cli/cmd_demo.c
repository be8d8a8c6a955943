/* cli/cmd_demo — `multifd demo`: the main job, end to end.  It starts two tinyvm processes on
 * this machine — a destination waiting for a migration and a source running the `dirty`
 * workload — migrates the running guest live through the control protocol, and verifies:
 *   1. the destination's RAM digest equals the source's at the switchover (the source stays
 *      paused once it completed; the destination digests before it starts the guest);
 *   2. the workload's page pattern is consistent on the destination (every page holds its
 *      frame number and a sweep number; per vCPU the sweeps form runs s+1 then s);
 *   3. the guest kept running on the destination: its serial sweep counter moves past the
 *      value it had at the switchover.
 * On a terminal it shows one updating line (the round and how much of it is done, ETA,
 * throughput, dirty rate, expected downtime), elsewhere the source's query replies as JSON lines,
 * both on stderr; then a summary with every channel (or, with --json, one JSON object:
 * docs/json.md).  --timeline draws the migration over time into an SVG file. */
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
#include "ctl_json.h"
#include "jsonv.h"
#include "progress.h"
#include "timeline.h"

struct demo {
	const char *accel;
	uint64_t mem, dirty;
	unsigned channels, vcpus, downtime_ms;
	bool json;
	const char *timeline;
	char dir[64];
	char src_sock[128], dst_sock[128];
	pid_t src, dst;
};

void cmd_demo_usage(FILE *out)
{
	fprintf(out,
		"usage: multifd demo [--accel kvm|soft|auto] [--mem SIZE] [--dirty SIZE]\n"
		"                    [--channels N] [--vcpus N] [--downtime-ms N] [--json]\n"
		"                    [--timeline FILE]\n"
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
		"  --json            print one JSON object instead of the summary (docs/json.md)\n"
		"  --timeline FILE   draw the migration over time (throughput, dirty rate, bytes\n"
		"                    left in the round, throttle, rounds, downtime) into FILE (SVG)\n"
		"\n"
		"While it migrates: one updating line on a terminal, else the source's query\n"
		"replies as JSON lines, once a second, on stderr.  The logs of both VMs are kept\n"
		"(and named) only when something failed.\n"
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

static bool alive(pid_t pid)
{
	return waitpid(pid, NULL, WNOHANG) == 0;
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
		{ "timeline", required_argument, NULL, 't' },
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
		case 't':
			d.timeline = optarg;
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
			     "--vcpus", vcpus, "--workload", dirty, "--serial", sdst, "--verify",
			     "--control", d.dst_sock, "--incoming", "tcp:127.0.0.1:0", NULL };
	char *src_args[] = { "multifd", "vm", "run", "--accel", (char *)d.accel, "--mem", mem,
			     "--vcpus", vcpus, "--workload", dirty, "--fill", "random", "--serial",
			     ssrc, "--verify", "--control", d.src_sock, NULL };
	bool tty = isatty(STDERR_FILENO) && !getenv("CI");
	int status = 1;
	char src_q[16384] = "", dst_q[16384] = "", msg[512] = "";
	char accel[16] = "?", uri[256] = "";
	struct timeline tl = { 0 };
	double t_mig = 0;
	bool verified = false, resumed = false, pattern_ok = false, completed = false;
	char src_digest[32] = "", dst_digest[32] = "";
	uint64_t switch_sweep = 0, now_sweep = 0;
	double verify_ms = 0, start_ms = 0;	/* the destination's, before its guest started */

	d.dst = spawn(&d, dst_args, ldst);
	d.src = spawn(&d, src_args, lsrc);
	if (!d.json)
		fprintf(stderr, "multifd demo: guest of %" PRIu64 " MiB dirtying %" PRIu64
			" MiB, %u channels\n", d.mem >> 20, d.dirty >> 20, d.channels);

	/* The source guest runs (a few sweeps done), the destination listens. */
	double deadline = cli_now_s() + 60;
	for (;;) {
		if (ask(d.src_sock, "{\"cmd\":\"query\"}", src_q, sizeof(src_q)) == 0 &&
		    jv_u64(src_q, "sweeps.0") >= 2)
			break;
		if (!alive(d.src) || cli_now_s() > deadline) {
			snprintf(msg, sizeof(msg), "the source VM did not start (see %s)", lsrc);
			goto out;
		}
		usleep(100000);
	}
	jv_str(src_q, "accel", accel, sizeof(accel));
	if (ask(d.dst_sock, "{\"cmd\":\"query\"}", dst_q, sizeof(dst_q)) ||
	    !jv_str(dst_q, "incoming_uri", uri, sizeof(uri))) {
		snprintf(msg, sizeof(msg), "the destination VM did not start (see %s)", ldst);
		goto out;
	}
	if (!d.json)
		fprintf(stderr, "multifd demo: accel %s; source guest running (sweep %" PRIu64
			"); migrating to %s\n", accel, jv_u64(src_q, "sweeps.0"), uri);

	char req[512];
	snprintf(req, sizeof(req), "{\"cmd\":\"migrate\",\"uri\":\"%s\",\"channels\":%u,"
		 "\"downtime_ms\":%u}", uri, d.channels, d.downtime_ms);
	if (ask(d.src_sock, req, src_q, sizeof(src_q)) || !strstr(src_q, "\"ok\":true")) {
		snprintf(msg, sizeof(msg), "migrate refused: %.400s", src_q);
		goto out;
	}
	t_mig = cli_now_s();
	double last_line = 0;
	struct progress pg = { 0 };
	for (;;) {
		if (ask(d.src_sock, "{\"cmd\":\"query\"}", src_q, sizeof(src_q))) {
			snprintf(msg, sizeof(msg), "the source VM stopped answering");
			goto out;
		}
		struct mfd_stats st;
		jv_stats(src_q, "migration", &st);
		bool done = st.status == MFD_STATUS_COMPLETED || st.status == MFD_STATUS_FAILED ||
			    st.status == MFD_STATUS_CANCELLED;
		if (d.timeline && timeline_add(&tl, &st)) {
			snprintf(msg, sizeof(msg), "out of memory");
			goto out;
		}
		if (st.status != MFD_STATUS_NONE) {
			if (tty)
				progress_line(stderr, &pg, &st);	/* each round starts empty */
			else if (done || cli_now_s() - last_line >= 1) {
				fprintf(stderr, "%s\n", src_q);
				last_line = cli_now_s();
			}
		}
		if (done) {
			completed = st.status == MFD_STATUS_COMPLETED;
			break;
		}
		if (cli_now_s() - t_mig > 300) {
			ask(d.src_sock, "{\"cmd\":\"cancel\"}", dst_q, sizeof(dst_q));
			snprintf(msg, sizeof(msg), "no completion within 300 s: canceled");
			goto out;
		}
		usleep(d.timeline || tty ? 100000 : 200000);
	}
	if (d.timeline) {
		struct mfd_stats fin;
		char err[256], title[160];
		jv_stats(src_q, "migration", &fin);
		snprintf(title, sizeof(title), "multifd demo: %s guest of %" PRIu64 " MiB dirtying %"
			 PRIu64 " MiB, %u channels", accel, d.mem >> 20, d.dirty >> 20, d.channels);
		if (timeline_write_svg(&tl, &fin, title, d.timeline, err, sizeof(err))) {
			snprintf(msg, sizeof(msg), "timeline: %s", err);
			goto out;
		}
	}
	if (!completed) {
		char e[300] = "";
		jv_str(src_q, "migration_error", e, sizeof(e));
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
	jv_str(src_q, "switchover.digest", src_digest, sizeof(src_digest));
	if (jv_str(dst_q, "switchover.digest", dst_digest, sizeof(dst_digest))) {
		pattern_ok = jv_bool(dst_q, "switchover.pattern_ok");
		switch_sweep = jv_u64(dst_q, "switchover.sweeps.0");
		verify_ms = jv_num(dst_q, "switchover.verify_ms");
		start_ms = jv_num(dst_q, "switchover.start_ms");
	}
	verified = src_digest[0] && !strcmp(src_digest, dst_digest) && pattern_ok;
	for (int i = 0; i < 100 && !resumed; i++) {
		ask(d.dst_sock, "{\"cmd\":\"query\"}", dst_q, sizeof(dst_q));
		now_sweep = jv_u64(dst_q, "sweeps.0");
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
	struct mfd_stats st;
	size_t mlen = 0, dlen = 0;
	const char *mig = jv_find(src_q, "migration", &mlen), *dmig = jv_find(dst_q, "migration", &dlen);
	jv_stats(src_q, "migration", &st);
	double mem_mib_s = completed && st.total_ms ? st.mem_bytes / 1048576.0 / (st.total_ms / 1000.0)
						    : 0.0;
	if (d.json) {
		/* docs/json.md, "demo --json": the demo's own facts, then both sides' statistics. */
		char out[CTL_MAX_LINE];
		struct ctl_out o = { out, sizeof(out), 0, false };
		ctl_out_printf(&o, "{\"schema\":%d,\"status\":\"%s\",\"accel\":", MFD_JSON_SCHEMA,
			       completed && status == 0 ? "completed" : "failed");
		ctl_out_json_str(&o, accel);
		ctl_out_printf(&o, ",\"mem_bytes\":%" PRIu64 ",\"dirty_bytes\":%" PRIu64 ",\"channels\":%u,"
			       "\"downtime_limit_ms\":%u,\"memory_mib_s\":%.1f,\"verified\":%s,"
			       "\"pattern_ok\":%s,\"guest_resumed\":%s,\"switchover_sweep\":%" PRIu64
			       ",\"sweep_after\":%" PRIu64 ",\"dest_start_ms\":%.1f,\"error\":", d.mem,
			       d.dirty, d.channels, d.downtime_ms, mem_mib_s, verified ? "true" : "false",
			       pattern_ok ? "true" : "false", resumed ? "true" : "false", switch_sweep,
			       now_sweep, start_ms);
		ctl_out_json_str(&o, msg);
		ctl_out_printf(&o, ",\"logs\":");
		ctl_out_json_str(&o, status == 0 ? "" : d.dir);
		printf("%s,\"migration\":%.*s,\"destination\":%.*s}\n", out, mig ? (int)mlen : 2,
		       mig ? mig : "{}", dmig ? (int)dlen : 2, dmig ? dmig : "{}");
	} else {
		if (mig) {
			char b[32];
			printf("migration    %s in %" PRIu64 " ms, %" PRIu64 " rounds, %s moved at "
			       "%.1f MiB/s (memory at %.1f MiB/s)\n", completed ? "completed" : "failed",
			       st.total_ms, st.rounds, progress_bytes(b, sizeof(b), st.wire_bytes),
			       jv_num(mig, "throughput_mib_s"), mem_mib_s);
			progress_channels(stdout, &st);
			printf("downtime     %" PRIu64 " ms (limit %u ms, expected %" PRIu64 " ms); the "
			       "destination verified for %.0f ms, its guest started %.0f ms after "
			       "the migration\n", st.downtime_ms, d.downtime_ms,
			       st.expected_downtime_ms, verify_ms, start_ms);
		}
		printf("accel        %s\n", accel);
		printf("verified     %s\n", verified ? "yes: destination RAM digest equals the "
						       "source's at switchover, page pattern intact"
						     : "NO");
		printf("guest        %s (sweep %" PRIu64 " at switchover, %" PRIu64 " now)\n",
		       resumed ? "resumed on the destination" : "NOT running on the destination",
		       switch_sweep, now_sweep);
		if (d.timeline && completed)
			printf("timeline     %s\n", d.timeline);
		if (msg[0])
			printf("error        %s\n", msg);
	}
	timeline_free(&tl);
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
