/* cli/bench — what the files of `multifd bench` share (cmd_bench.c parses the options and
 * dispatches; bench_transfer.c runs transfers between two processes, bench_snap.c snapshots,
 * bench_live.c the writer threads of the live modes, bench_baseline.c the plain-copy and plain
 * file baselines).  Uses only multifd.h and cli.h. */
#ifndef MFD_CLI_BENCH_H
#define MFD_CLI_BENCH_H

#include <pthread.h>
#include "cli.h"

#define PAGE 4096u
#define MAX_REPEAT 15
#define MAX_WRITERS 64
#define BENCH_FILL_SEED 0x1234	/* cli_fill's seed for the memory moved or saved */

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
	bool deadline_force;
	unsigned repeat;		/* measurements; the medians are reported */
	const char *save_path;		/* snapshot modes */
	const char *restore_path;
	bool direct_io, lazy;
	bool no_page_checksums;		/* --save without MFD_OPT_PAGE_CHECKSUMS */
	bool fresh_dest;		/* the receiving memory is not preallocated: its page
					 * faults fall into the timed transfer (restore) */
	const char *timeline;		/* --timeline FILE: the (first) transfer's or save's picture */
};

/* The source's writer threads: each owns an interleaved share of the dirty pages and sweeps it,
 * stamping page p with (p, sweep).  stop/resume/throttle callbacks act on them. */
struct dirtier_arg {
	struct dirtier *d;
	unsigned id;
};

struct dirtier {
	uint8_t *mem;			/* set before the threads start, then read-only */
	uint64_t pages;
	unsigned n;
	pthread_t t[MAX_WRITERS];	/* the control thread's */
	struct dirtier_arg args[MAX_WRITERS];
	unsigned started;		/* threads running; the control thread's */
	int pause_req, paused, quit;	/* atomic */
	unsigned throttle;		/* atomic */
	uint64_t sweeps;		/* atomic: completed sweeps, all threads */
};

/* bench_live.c */
/* Live modes: the convergence options, userfaultfd tracking, the writers' callbacks, and the
 * writer threads themselves (dz->started of them).  Returns 0 or the tracker's error. */
int bench_live_start(struct mfd_session *s, const struct bench_opts *o, struct dirtier *dz);
/* End the writer threads (stopped at the switchover or not) and join them. */
void bench_live_stop(struct dirtier *dz);
/* Destination check of the writers' pattern over the first `pages` pages of mem, which n
 * writers stamped over memory filled by cli_fill(fill, BENCH_FILL_SEED). */
bool bench_pattern_ok(const uint8_t *mem, uint64_t pages, unsigned n, const char *fill);

/* bench_baseline.c */
/* Plain copy of [mem, mem + len) over the n connected fds, split evenly; 0 or -1. */
int bench_base_run(int *fds, unsigned n, uint8_t *mem, uint64_t len, bool sending, double *cpu_s);
/* A listening socket for the plain copy (uri gets its address), or -1. */
int bench_raw_listen(const char *transport, char *uri, size_t urilen);
int bench_raw_connect(const char *uri);
/* Sequential file I/O of len bytes at off in 1 MiB requests (write: then fsync).  Returns
 * MiB/s, or 0 on error (reported). */
double bench_baseline_io(const char *path, uint8_t *mem, uint64_t len, uint64_t off, bool writing,
			 bool direct);

/* cmd_bench.c: mfd_session_run, sampled into o->timeline's picture when there is one (titled
 * `what`).  Returns mfd_session_run's result. */
int bench_run(struct mfd_session *s, const struct bench_opts *o, const char *what,
	      struct mfd_error *err);

/* bench_transfer.c: two processes, --repeat samples, report.  Returns the exit status. */
int bench_transfer(const struct bench_opts *o);
/* bench_snap.c: --save and --restore.  Return the exit status. */
int bench_snap_save(const struct bench_opts *o);
int bench_snap_restore(const struct bench_opts *o);

#endif
