/* cli/cmd_bench — `multifd bench`: a destination and a source process on this machine move a
 * filled memory area over N channels; both sides then digest every page and the digests must
 * match.  With --dirty, writer threads in the source keep changing the first SIZE bytes while
 * the memory moves (userfaultfd write-protect tracking): a live migration, with the writers
 * stopped at the switchover as a VMM stops its vCPUs.  --baseline also measures, in the same
 * run, a plain copy of the same bytes from the same source memory into new destination memory
 * over the same number of connections (no protocol, no zero detection), so the result is a ratio
 * taken on one machine at one time.  The receiving memory is preallocated before the clock
 * starts (unless --fresh-dest): on a virtual machine whose host takes free memory back, the
 * cost of its first touch varies twentyfold from run to run (docs/design.md).
 *
 * --save PATH and --restore PATH measure mapped-ram snapshots in one process instead: fill the
 * memory and save it (stopped, or live with --dirty), or read a snapshot back into fresh memory
 * (eagerly, or mapped with --lazy).  The save stores a "bench" device section holding the digest
 * of the memory as saved (taken at the stop in a live save), and the restore checks the restored
 * memory against it.  --baseline times, in the same run and the same directory, a plain
 * sequential write (save) or read (restore) of the same number of bytes in 1 MiB requests, with
 * the same flags (O_DIRECT with --direct-io) and, for the write, the same final fsync.
 *
 * This file parses the options and dispatches; the modes live in bench_transfer.c (two
 * processes), bench_snap.c (snapshots), bench_live.c (the writers of --dirty) and
 * bench_baseline.c (the plain copy and file baselines). */
#include <getopt.h>
#include <string.h>
#include "bench.h"
#include "progress.h"
#include "timeline.h"

int bench_run(struct mfd_session *s, const struct bench_opts *o, const char *what,
	      struct mfd_error *err)
{
	if (!o->timeline)
		return mfd_session_run(s, err);
	struct timeline tl = { 0 };
	struct tl_sampler sp;
	bool sampling = timeline_sampler_start(&sp, &tl, s, 50) == 0;
	int rc = mfd_session_run(s, err);
	timeline_sampler_stop(&sp);
	struct mfd_stats st;
	mfd_session_get_stats(s, &st);
	char title[256], msg[256];
	snprintf(title, sizeof(title), "multifd bench: %s, %.0f MiB%s%s, %u channels", what,
		 o->mem / 1048576.0, o->dirty ? " with writers" : "", o->max_bandwidth ? ", capped" : "",
		 o->channels);
	if (!sampling || timeline_write_svg(&tl, &st, title, o->timeline, msg, sizeof(msg)))
		fprintf(stderr, "multifd bench: timeline: %s\n", sampling ? msg : "no sampling thread");
	timeline_free(&tl);
	return rc;
}

void cmd_bench_usage(FILE *out)
{
	fprintf(out,
		"usage: multifd bench [--mem SIZE] [--channels N] [--fill random|zero|pattern]\n"
		"                     [--transport tcp|unix] [--batch PAGES] [--baseline] [--json]\n"
		"                     [--repeat N] [--fresh-dest]\n"
		"                     [--dirty SIZE [--dirty-threads N] [--downtime-ms N]\n"
		"                      [--max-bandwidth RATE] [--deadline-ms N] [--no-throttle]\n"
		"                      [--deadline-force]] [--timeline FILE]\n"
		"       multifd bench --save PATH [--mem SIZE] [--fill KIND] [--channels N]\n"
		"                     [--direct-io] [--baseline] [--json] [--dirty SIZE ...]\n"
		"                     [--no-page-checksums]\n"
		"                     [--timeline FILE]\n"
		"       multifd bench --restore PATH [--lazy] [--channels N] [--direct-io]\n"
		"                     [--baseline] [--json] [--fresh-dest]\n"
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
		"  --json            print one JSON object on stdout (docs/json.md)\n"
		"  --timeline FILE   draw the (first) transfer or the save over time into FILE,\n"
		"                    an SVG picture: throughput, dirty rate, bytes left in the\n"
		"                    round, throttle, round starts, downtime\n"
		"  --repeat N        measure N times in this run (a fresh destination each time)\n"
		"                    and report the medians, with every sample; default 5 with\n"
		"                    --baseline (each time ours, then the plain copy), else 1\n"
		"  --fresh-dest      do not preallocate the receiving memory (destination, eager\n"
		"                    restore, their baselines): its page faults are then timed,\n"
		"                    at a cost that varies from run to run where the host takes\n"
		"                    free memory back (docs/design.md, \"Steady measurements\")\n"
		"  --dirty SIZE      live migration: writer threads keep changing the first SIZE\n"
		"                    bytes (page index and sweep number in every page), tracked\n"
		"                    with userfaultfd write-protect; they stop at the switchover\n"
		"  --dirty-threads N writer threads (default 1)\n"
		"  --downtime-ms N   downtime limit (default 300)\n"
		"  --max-bandwidth RATE  bytes per second over all channels (K, M, G), default none\n"
		"  --deadline-ms N   fail if not converged after N ms (default: no deadline)\n"
		"  --no-throttle     never throttle the writers\n"
		"  --deadline-force  at the deadline, switch over anyway instead of failing\n"
		"\n"
		"Snapshots, in one process (--channels is then the number of workers):\n"
		"  --save PATH       fill the memory and save it to PATH (live with --dirty);\n"
		"                    a device section records the digest of what was saved;\n"
		"                    an old PATH is removed before the clock starts\n"
		"  --restore PATH    read PATH back into fresh memory and check the digest\n"
		"  --lazy            restore by mapping the file (report ready_ms)\n"
		"  --direct-io       O_DIRECT for page data (and for the baseline)\n"
		"  --no-page-checksums  save without a checksum per page (what they cost)\n"
		"  --baseline        also time a sequential write (read) of the same bytes in the\n"
		"                    same directory, 1 MiB at a time, same flags\n"
		"\n"
		"Exit status: 0 when the transfer completed and verified, 1 otherwise, 2 for a\n"
		"usage error.\n",
		MFD_MAX_CHANNELS, MFD_MAX_BATCH_PAGES);
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
		{ "repeat", required_argument, NULL, 'n' },
		{ "dirty-threads", required_argument, NULL, 'T' },
		{ "downtime-ms", required_argument, NULL, 'D' },
		{ "max-bandwidth", required_argument, NULL, 'W' },
		{ "deadline-ms", required_argument, NULL, 'L' },
		{ "no-throttle", no_argument, NULL, 'N' },
		{ "deadline-force", no_argument, NULL, 'F' },
		{ "save", required_argument, NULL, 'S' },
		{ "restore", required_argument, NULL, 'R' },
		{ "direct-io", no_argument, NULL, 'I' },
		{ "lazy", no_argument, NULL, 'Z' },
		{ "timeline", required_argument, NULL, 'G' },
		{ "fresh-dest", no_argument, NULL, 'P' },
		{ "no-page-checksums", no_argument, NULL, 'K' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	int opt;
	optind = 1;
	uint64_t v64;
	unsigned v;
	while ((opt = getopt_long(argc, argv, "m:c:f:t:b:Bjhd:T:D:W:L:NFS:R:IZG:", lopts, NULL)) != -1) {
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
		case 'n':
			if (cli_parse_uint(optarg, 1, MAX_REPEAT, &o.repeat)) {
				fprintf(stderr, "multifd bench: --repeat must be 1..%d\n", MAX_REPEAT);
				return 2;
			}
			break;
		case 'F': o.deadline_force = true; break;
		case 'S': o.save_path = optarg; break;
		case 'R': o.restore_path = optarg; break;
		case 'I': o.direct_io = true; break;
		case 'Z': o.lazy = true; break;
		case 'G': o.timeline = optarg; break;
		case 'P': o.fresh_dest = true; break;
		case 'K': o.no_page_checksums = true; break;
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
	if (o.save_path && o.restore_path) {
		fprintf(stderr, "multifd bench: --save and --restore are separate runs\n");
		return 2;
	}
	if ((o.lazy || o.direct_io) && !o.save_path && !o.restore_path) {
		fprintf(stderr, "multifd bench: --lazy and --direct-io go with --save or --restore\n");
		return 2;
	}
	if (o.no_page_checksums && !o.save_path) {
		fprintf(stderr, "multifd bench: --no-page-checksums is a --save option\n");
		return 2;
	}
	if (o.fresh_dest && o.save_path) {
		fprintf(stderr, "multifd bench: --fresh-dest is about receiving memory: a transfer's "
			"destination or a restore\n");
		return 2;
	}
	if (o.lazy && !o.restore_path) {
		fprintf(stderr, "multifd bench: --lazy is a --restore mode\n");
		return 2;
	}
	if (o.timeline && o.restore_path) {
		fprintf(stderr, "multifd bench: --timeline draws a transfer or a save, not a restore\n");
		return 2;
	}
	if (o.restore_path && o.dirty) {
		fprintf(stderr, "multifd bench: --dirty is a --save mode\n");
		return 2;
	}
	/* A ratio on a shared machine is noisy: with a baseline, take five pairs by default. */
	if (!o.repeat)
		o.repeat = o.baseline && !o.save_path && !o.restore_path ? 5 : 1;
	if (o.save_path)
		return bench_snap_save(&o);
	if (o.restore_path)
		return bench_snap_restore(&o);
	return bench_transfer(&o);
}
