/* cli/cmd_vm — `multifd vm`: run a tinyvm guest (KVM or soft) and check what it did.
 *
 *   multifd vm run ...             run a guest until it shuts down, or for --duration seconds,
 *                                  then pause it, verify the dirty pattern and print a summary
 *   multifd vm selftest-state ...  run a guest, pause it, save its state, check that hostile
 *                                  edits of the buffer are refused, load the state with a copy
 *                                  of the RAM into a second VM in this process, run that one
 *                                  and check that it continued where the first one stopped
 *
 * Exit status: 0 success, 1 failure, 2 usage error, 77 when --accel kvm was requested and KVM
 * is unavailable (so test scripts can skip).  `run` of a guest that writes to the shutdown port
 * exits with the low 8 bits of the value written.  A destination stopped (signal or `quit`)
 * before a migration arrived exits 0, one stopped while a migration arrives 1. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"
#include "vm_ctl.h"
#include "../vmm/vm.h"

#define FUZZ_ROUNDS	300

struct vm_cli {
	struct vm_opts opts;
	const char *workload_arg;
	const char *boot_path;
	const char *fill;
	const char *serial_path;
	double duration_s;		/* 0: until the guest stops */
	const char *control_path;	/* --control: serve the control protocol here */
	const char *incoming_uri;	/* --incoming: wait for a migration instead of booting */
	const char *restore_path;	/* --restore: start from a snapshot file */
	bool lazy;			/* --lazy: map the snapshot instead of reading it */
	bool verify;			/* --verify: digest and pattern at every switchover */
	unsigned throttle_pct;
	uint8_t boot[VM_BOOT_SECTOR_MAX];
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

void cmd_vm_usage(FILE *out)
{
	fprintf(out,
		"usage: multifd vm run [--accel kvm|soft|auto] [--mem SIZE] [--vcpus N]\n"
		"                      [--workload dirty[:SIZE]|idle] [--boot-sector FILE]\n"
		"                      [--fill random|zero|pattern] [--serial FILE]\n"
		"                      [--duration SECONDS] [--throttle PCT] [--prealloc]\n"
		"                      [--verify]\n"
		"                      [--control SOCKET] [--incoming URI | --restore PATH [--lazy]]\n"
		"       multifd vm selftest-state [same options]\n"
		"\n"
		"Run tinyvm, a tiny virtual machine: guest RAM, N vCPUs and a COM1 port, either on\n"
		"KVM or on host threads (soft).\n"
		"\n"
		"  --accel KIND        kvm, soft, or auto (default: kvm when /dev/kvm works)\n"
		"  --mem SIZE          guest RAM (default 256M; 2M..64G, K/M/G suffixes)\n"
		"  --vcpus N           vCPUs, 1..%d (default 1)\n"
		"  --workload W        dirty[:SIZE]: each vCPU sweeps its share of SIZE bytes of the\n"
		"                      data area (default: all of it), stamping every page with its\n"
		"                      frame number and the sweep counter and printing\n"
		"                      \"cpu<i> sweep <n>\" on COM1 after each sweep;\n"
		"                      idle: halt with interrupts enabled, forever\n"
		"  --boot-sector FILE  instead: load a raw image (up to 512 bytes) at 0x7c00 and start\n"
		"                      vCPU 0 in real mode at 0000:7c00, no BIOS (kvm only)\n"
		"  --fill KIND         fill the data area (RAM above 1 MiB) from the host first\n"
		"  --serial FILE       COM1 output to FILE (default: stdout)\n"
		"  --duration SECONDS  stop after this long: pause, verify, summarise (default: run\n"
		"                      until the guest shuts down, or Ctrl-C)\n"
		"  --throttle PCT      let each vCPU run only (100 - PCT)%% of the time\n"
		"  --prealloc          fault in all guest RAM at start, as QEMU's prealloc=on: an\n"
		"                      incoming migration or a restore then writes into memory\n"
		"                      already there (the process holds all of --mem from the\n"
		"                      start; not with --lazy)\n"
		"  --verify            at every switchover (migration, save, arrival) digest guest\n"
		"                      RAM and check the workload's page pattern, for `ctl query`\n"
		"                      to report (switchover.digest, pattern_ok); a destination\n"
		"                      starts the guest only after that (demo and tests)\n"
		"  --control SOCKET    serve the control protocol (JSON lines, docs/control.md) on a\n"
		"                      unix socket: query, migrate, save, cancel, stop, cont, quit,\n"
		"                      set, events, migrate-incoming; use `multifd ctl SOCKET ...`;\n"
		"                      the VM runs until `quit`\n"
		"  --incoming URI      do not boot: wait for a live migration on URI (tcp:HOST:PORT,\n"
		"                      port 0 for any; unix:PATH), then run the migrated guest;\n"
		"                      `defer`: wait for `ctl SOCKET migrate-incoming URI` (needs\n"
		"                      --control) to say where\n"
		"  --restore PATH      start from a snapshot (`multifd ctl SOCKET save`); the VM's\n"
		"                      options (--mem, --vcpus, --workload) must match the saved one\n"
		"  --lazy              map the snapshot instead of reading it: the guest starts at\n"
		"                      once and pages come from the file when first touched;\n"
		"                      their checksums are checked in the background, and a bad\n"
		"                      page is reported on stderr\n"
		"\n"
		"Guest side: port 0x3f8 is a 16550 UART (output only); a write to port 0x501 shuts\n"
		"the VM down and becomes the exit status; HLT with interrupts disabled on every vCPU\n"
		"also ends the run (status 0).\n"
		"\n"
		"selftest-state saves the state of a paused guest, checks that %d damaged copies of\n"
		"the buffer are handled safely, loads it with a copy of RAM into a second VM in this\n"
		"process, runs that one for --duration seconds (default 0.5) and checks that the\n"
		"dirty pattern and counters carried on (dirty workload, default dirty:16M).\n"
		"\n"
		"A destination (--incoming) told to stop by SIGINT, SIGTERM or `ctl quit` before a\n"
		"migration arrived says so and exits 0; one stopped while a migration arrives\n"
		"cancels it and exits 1 (the source keeps its guest).\n"
		"\n"
		"Exit status: 0 ok, 1 failure, 2 usage, 77 --accel kvm without usable KVM; a guest\n"
		"that writes to the shutdown port sets the status itself.\n",
		VM_MAX_VCPUS, FUZZ_ROUNDS);
}

/* ---- options ------------------------------------------------------------------------------ */

static int parse_workload(struct vm_cli *c, const char *w)
{
	if (!strcmp(w, "idle")) {
		c->opts.workload = VM_WORKLOAD_IDLE;
		return 0;
	}
	if (!strncmp(w, "dirty", 5) && (w[5] == '\0' || w[5] == ':')) {
		c->opts.workload = VM_WORKLOAD_DIRTY;
		c->opts.dirty_bytes = 0;
		if (w[5] == ':' && cli_parse_size(w + 6, &c->opts.dirty_bytes) < 0)
			return -1;
		return 0;
	}
	return -1;
}

static int read_boot_sector(struct vm_cli *c)
{
	int fd = open(c->boot_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "multifd vm: %s: %s\n", c->boot_path, strerror(errno));
		return -1;
	}
	uint8_t extra;
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, c->boot + len, sizeof(c->boot) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(c->boot))
			break;
	}
	ssize_t more = len == sizeof(c->boot) ? read(fd, &extra, 1) : 0;
	close(fd);
	if (len == 0 || more > 0) {
		fprintf(stderr, "multifd vm: %s: a boot sector image is 1..%d bytes\n", c->boot_path,
			VM_BOOT_SECTOR_MAX);
		return -1;
	}
	c->opts.workload = VM_WORKLOAD_BOOT_SECTOR;
	c->opts.boot_sector = c->boot;
	c->opts.boot_sector_len = len;
	return 0;
}

static int parse_opts(struct vm_cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "accel", required_argument, NULL, 'a' },
		{ "mem", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "workload", required_argument, NULL, 'w' },
		{ "boot-sector", required_argument, NULL, 'b' },
		{ "fill", required_argument, NULL, 'f' },
		{ "serial", required_argument, NULL, 's' },
		{ "duration", required_argument, NULL, 'd' },
		{ "throttle", required_argument, NULL, 't' },
		{ "control", required_argument, NULL, 'C' },
		{ "incoming", required_argument, NULL, 'I' },
		{ "restore", required_argument, NULL, 'R' },
		{ "lazy", no_argument, NULL, 'L' },
		{ "prealloc", no_argument, NULL, 'P' },
		{ "verify", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;
	char *end;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'a':
			if (!strcmp(optarg, "kvm"))
				c->opts.accel = VM_ACCEL_KVM;
			else if (!strcmp(optarg, "soft"))
				c->opts.accel = VM_ACCEL_SOFT;
			else if (!strcmp(optarg, "auto"))
				c->opts.accel = VM_ACCEL_AUTO;
			else
				goto bad;
			break;
		case 'm':
			if (cli_parse_size(optarg, &c->opts.mem_bytes) < 0)
				goto bad;
			break;
		case 'c':
			if (cli_parse_uint(optarg, 1, VM_MAX_VCPUS, &c->opts.vcpus) < 0)
				goto bad;
			break;
		case 'w':
			c->workload_arg = optarg;
			if (parse_workload(c, optarg) < 0)
				goto bad;
			break;
		case 'b':
			c->boot_path = optarg;
			break;
		case 'f':
			if (strcmp(optarg, "random") && strcmp(optarg, "zero") &&
			    strcmp(optarg, "pattern"))
				goto bad;
			c->fill = optarg;
			break;
		case 's':
			c->serial_path = optarg;
			break;
		case 'd':
			errno = 0;
			c->duration_s = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(c->duration_s > 0) ||
			    c->duration_s > 1e6)
				goto bad;
			break;
		case 't':
			if (cli_parse_uint(optarg, 0, 99, &c->throttle_pct) < 0)
				goto bad;
			break;
		case 'C':
			c->control_path = optarg;
			break;
		case 'I':
			c->incoming_uri = optarg;
			break;
		case 'R':
			c->restore_path = optarg;
			break;
		case 'L':
			c->lazy = true;
			break;
		case 'P':
			c->opts.prealloc = true;
			break;
		case 'V':
			c->verify = true;
			break;
		case 'h':
			cmd_vm_usage(stdout);
			exit(0);
		default:
			cmd_vm_usage(stderr);
			return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "multifd vm: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (c->opts.prealloc && c->lazy) {
		fprintf(stderr, "multifd vm: --prealloc and --lazy exclude each other (a lazy "
			"restore maps the snapshot over guest RAM)\n");
		return -1;
	}
	if (c->incoming_uri && c->restore_path) {
		fprintf(stderr, "multifd vm: --incoming and --restore exclude each other\n");
		return -1;
	}
	if (c->incoming_uri && !strcmp(c->incoming_uri, "defer") && !c->control_path) {
		fprintf(stderr, "multifd vm: --incoming defer needs --control (the address comes "
			"with `ctl SOCKET migrate-incoming URI`)\n");
		return -1;
	}
	if (c->lazy && !c->restore_path) {
		fprintf(stderr, "multifd vm: --lazy goes with --restore\n");
		return -1;
	}
	if (c->boot_path) {
		if (c->workload_arg) {
			fprintf(stderr, "multifd vm: --boot-sector and --workload exclude each other\n");
			return -1;
		}
		if (read_boot_sector(c) < 0)
			return -1;
	}
	char err[256];
	if (vm_opts_check(&c->opts, err, sizeof(err)) < 0) {
		fprintf(stderr, "multifd vm: %s\n", err);
		return -1;
	}
	return 0;
bad:
	for (const struct option *o = longopts; o->name; o++)
		if (o->val == opt)
			fprintf(stderr, "multifd vm: bad value '%s' for --%s\n", optarg, o->name);
	return -1;
}

/* ---- helpers ------------------------------------------------------------------------------ */

/* Create the VM; prints why not, and which accelerator it got unless quiet.  *status gets
 * the exit status to use on failure. */
static struct vm *create_vm(const struct vm_cli *c, int *status, bool quiet)
{
	char err[256];
	struct vm *vm;
	int rc = vm_create(&vm, &c->opts, err, sizeof(err));
	if (rc < 0) {
		bool skip = rc == -ENODEV && c->opts.accel == VM_ACCEL_KVM;
		fprintf(stderr, "multifd vm: %s%s\n", err, skip ? " (skipping)" : "");
		*status = skip ? 77 : 1;
		return NULL;
	}
	if (quiet)
		return vm;
	if (vm_accel_note(vm)[0])
		fprintf(stderr, "tinyvm: accel %s (%s)\n", vm_accel_name(vm_accel(vm)),
			vm_accel_note(vm));
	else
		fprintf(stderr, "tinyvm: accel %s\n", vm_accel_name(vm_accel(vm)));
	return vm;
}

static int fill_data(struct vm *vm, const char *fill)
{
	void *host;
	uint64_t gpa, bytes;
	if (!fill)
		return 0;
	vm_data_area(vm, &host, &gpa, &bytes);
	if (cli_fill(host, bytes, fill, 2, 1) < 0) {
		fprintf(stderr, "multifd vm: cannot fill with '%s'\n", fill);
		return -1;
	}
	return 0;
}

static uint64_t completed(const struct vm_dirty_result *r)
{
	return r->pages_done == r->pages ? r->sweep : r->sweep - 1;
}

/* Verify a paused VM's pattern and its agreement with what the guest printed: the counter on
 * COM1 is the last completed sweep, or one less while the report line is being sent. */
static int verify(struct vm *vm, struct vm_dirty_result *res, char *err, size_t errlen)
{
	int rc = vm_verify_dirty_pattern(vm, res, err, errlen);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < vm_vcpu_count(vm); i++) {
		uint64_t printed = vm_serial_sweep(vm, i), done = completed(&res[i]);
		if (vm_serial_gaps(vm, i)) {
			snprintf(err, errlen, "vCPU %u printed %" PRIu64 " out-of-order counters", i,
				 vm_serial_gaps(vm, i));
			return -1;
		}
		if (printed > done || done > printed + 1) {
			snprintf(err, errlen, "vCPU %u: RAM says %" PRIu64 " sweeps completed, COM1 "
				 "said %" PRIu64, i, done, printed);
			return -1;
		}
	}
	return 0;
}

static void print_list(const char *key, struct vm *vm, const struct vm_dirty_result *res,
		       bool serial)
{
	printf(" %s=", key);
	for (unsigned i = 0; i < vm_vcpu_count(vm); i++)
		printf("%s%" PRIu64, i ? "," : "", serial ? vm_serial_sweep(vm, i)
							  : completed(&res[i]));
}

static void describe(const struct vm_cli *c, struct vm *vm)
{
	printf("tinyvm: accel=%s vcpus=%u mem=%" PRIu64 "M", vm_accel_name(vm_accel(vm)),
	       vm_vcpu_count(vm), vm_mem_bytes(vm) >> 20);
	if (c->opts.workload == VM_WORKLOAD_BOOT_SECTOR) {
		printf(" workload=boot-sector");
	} else if (c->opts.workload == VM_WORKLOAD_IDLE) {
		printf(" workload=idle");
	} else {
		struct vm_dirty_range r[VM_MAX_VCPUS];
		unsigned n = vm_dirty_ranges(vm, r, VM_MAX_VCPUS);
		uint64_t pages = 0;
		for (unsigned i = 0; i < n; i++)
			pages += r[i].pages;
		printf(" workload=dirty:%" PRIu64 "K", pages * 4);
	}
}

/* Sleep up to seconds (0: no limit), returning early when the VM stops, on Ctrl-C, or when the
 * control socket asked to quit. */
static void run_for(struct vm *vm, double seconds, struct vmctl *ctl)
{
	double end = cli_now_s() + seconds;
	while (!interrupted && !(ctl && vmctl_quit_requested(ctl))) {
		double left = seconds > 0 ? end - cli_now_s() : 0.2;
		if (left <= 0)
			break;
		uint64_t ms = (uint64_t)(left * 1000) + 1;
		if (vm_wait_for(vm, ms < 200 ? ms : 200) != -ETIMEDOUT)
			break;
	}
}

/* ---- vm run ------------------------------------------------------------------------------- */

/* A lazy restore reads no page, so it checks none: the pages are checked in the background,
 * beside the running guest, by reading the file (mfd_snapshot_verify), and a bad one is
 * reported at once.  The thread only reads the file and prints; the process may end first. */
static void *scrub_main(void *arg)
{
	const char *path = arg;
	struct mfd_snapshot_info info;
	struct mfd_error err;
	mfd_error_clear(&err);
	double t0 = cli_now_s();
	int rc = mfd_snapshot_verify(path, &info, &err);
	if (rc)
		fprintf(stderr, "multifd vm: background check of %s: %s: the guest may have read "
			"bad data (%" PRIu64 " bad pages of %" PRIu64 ")\n", path, err.msg,
			info.pages_bad, info.pages_checked);
	else
		fprintf(stderr, "tinyvm: background check of %s: %" PRIu64 " pages good (%.1f s)\n", path,
			info.pages_checked, cli_now_s() - t0);
	mfd_snapshot_info_free(&info);
	return NULL;
}

static void scrub_start(const char *path)
{
	pthread_t t;
	if (pthread_create(&t, NULL, scrub_main, (void *)path) == 0)
		pthread_detach(t);
	else
		fprintf(stderr, "multifd vm: cannot start the background check of %s\n", path);
}

static int vm_run(struct vm_cli *c)
{
	int status = 1, serial_fd = STDOUT_FILENO;
	char err[256];

	if (c->serial_path) {
		serial_fd = open(c->serial_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (serial_fd < 0) {
			fprintf(stderr, "multifd vm: %s: %s\n", c->serial_path, strerror(errno));
			return 1;
		}
	}
	c->opts.serial_fd = serial_fd;
	struct vmctl *ctl = NULL;
	struct vm *vm = create_vm(c, &status, false);
	if (!vm)
		goto out_close;
	if (c->control_path || c->incoming_uri || c->restore_path) {
		ctl = vmctl_new(vm, c->verify);
		if (!ctl) {
			fprintf(stderr, "multifd vm: out of memory\n");
			goto out_destroy;
		}
	}
	/* A restoring VM opens its control socket only once it runs (a query must not see
	 * half-restored memory); a destination opens it at once (it reports where it listens). */
	if (c->control_path && !c->restore_path &&
	    vmctl_listen(ctl, c->control_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "multifd vm: %s\n", err);
		goto out_destroy;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	double t0 = cli_now_s();
	if (c->incoming_uri) {
		/* The guest's RAM and vCPU state come from the source; it starts when they have. */
		if (!strcmp(c->incoming_uri, "defer")) {
			vmctl_incoming_defer(ctl);
			fprintf(stderr, "tinyvm: waiting for `multifd ctl %s migrate-incoming URI`\n",
				c->control_path);
		} else if (vmctl_incoming(ctl, c->incoming_uri, err, sizeof(err)) < 0) {
			fprintf(stderr, "multifd vm: incoming: %s\n", err);
			goto out_destroy;
		} else {
			fprintf(stderr, "tinyvm: waiting for a migration on %s\n",
				vmctl_incoming_uri(ctl));
		}
		int wrc;
		while ((wrc = vmctl_incoming_wait(ctl, 100, err, sizeof(err))) == VMCTL_STILL_WAITING &&
		       !interrupted)
			;
		if (wrc == VMCTL_STILL_WAITING || wrc == -EINTR) {
			/* Told to stop (a signal, or `quit`) before the guest arrived: fine, unless a
			 * migration was arriving, which fails (vmctl_free cancels it; the source
			 * keeps its guest). */
			const char *why = wrc == -EINTR ? "quit requested"
					  : interrupted == SIGINT ? "SIGINT" : "SIGTERM";
			if (vmctl_incoming_arriving(ctl)) {
				fprintf(stderr, "multifd vm: %s during an incoming migration: "
					"migration canceled\n", why);
			} else {
				fprintf(stderr, "tinyvm: %s while waiting for a migration: none arrived; "
					"exiting\n", why);
				status = 0;
			}
			goto out_destroy;
		}
		if (wrc < 0) {
			fprintf(stderr, "multifd vm: incoming migration failed: %s\n", err);
			goto out_destroy;
		}
		fprintf(stderr, "tinyvm: migration completed; guest running\n");
		t0 = cli_now_s();
	} else if (c->restore_path) {
		double ready_ms = 0;
		if (vmctl_restore(ctl, c->restore_path, c->lazy, &ready_ms, err, sizeof(err)) < 0) {
			fprintf(stderr, "multifd vm: restore: %s\n", err);
			goto out_destroy;
		}
		if (vm_start(vm, err, sizeof(err)) < 0) {
			fprintf(stderr, "multifd vm: %s\n", err);
			goto out_destroy;
		}
		fprintf(stderr, "tinyvm: restored from %s (%s, ready in %.1f ms); guest running\n",
			c->restore_path, c->lazy ? "lazy" : "eager", ready_ms);
		if (c->lazy)
			scrub_start(c->restore_path);
		if (c->control_path && vmctl_listen(ctl, c->control_path, err, sizeof(err)) < 0) {
			fprintf(stderr, "multifd vm: %s\n", err);
			goto out_destroy;
		}
		t0 = cli_now_s();
	} else {
		if (fill_data(vm, c->fill) < 0)
			goto out_destroy;
		vm_set_throttle(vm, c->throttle_pct);
		if (vm_start(vm, err, sizeof(err)) < 0) {
			fprintf(stderr, "multifd vm: %s\n", err);
			goto out_destroy;
		}
	}
	run_for(vm, c->duration_s, ctl);
	int prc = vm_pause(vm);		/* -EINVAL: the guest stopped by itself */
	double secs = cli_now_s() - t0;

	struct vm_status st;
	vm_get_status(vm, &st);
	if (st.state == VM_STOPPED && st.reason == VM_STOP_ERROR) {
		fprintf(stderr, "multifd vm: guest failed: %s\n", st.error);
		goto out_destroy;
	}
	if (prc < 0 && st.state != VM_STOPPED) {
		fprintf(stderr, "multifd vm: cannot pause: %s\n", strerror(-prc));
		goto out_destroy;
	}

	describe(c, vm);
	printf(" seconds=%.2f state=%s", secs, vm_run_state_name(st.state));
	if (st.state == VM_STOPPED) {
		printf(" reason=%s", vm_stop_reason_name(st.reason));
		if (st.reason == VM_STOP_SHUTDOWN_PORT)
			printf(" exit_code=%" PRIu32, st.exit_code);
	}
	if (c->throttle_pct)
		printf(" throttle=%u", c->throttle_pct);
	if (st.unhandled_io)
		printf(" unhandled_io=%" PRIu64, st.unhandled_io);

	status = st.reason == VM_STOP_SHUTDOWN_PORT ? (int)(st.exit_code & 0xff) : 0;
	if (c->opts.workload == VM_WORKLOAD_DIRTY) {
		struct vm_dirty_result res[VM_MAX_VCPUS];
		struct vm_dirty_range r[VM_MAX_VCPUS];
		int vrc = verify(vm, res, err, sizeof(err));
		if (vrc == 0) {
			uint64_t bytes = 0, sweeps = 0;
			vm_dirty_ranges(vm, r, VM_MAX_VCPUS);
			for (unsigned i = 0; i < vm_vcpu_count(vm); i++) {
				sweeps += completed(&res[i]);
				bytes += completed(&res[i]) * r[i].pages * 4096;
			}
			print_list("sweeps", vm, res, false);
			print_list("serial", vm, res, true);
			printf(" sweeps_per_s=%.1f dirty_mib_s=%.1f verify=ok",
			       secs > 0 ? (double)sweeps / secs : 0,
			       secs > 0 ? (double)bytes / secs / 1048576.0 : 0);
		} else {
			printf(" verify=FAILED\n");
			fprintf(stderr, "multifd vm: pattern check failed: %s\n", err);
			status = 1;
			goto out_destroy;
		}
	}
	printf("\n");

out_destroy:
	fflush(stdout);
	vmctl_free(ctl);	/* joins the control and migration threads before the VM goes */
	vm_destroy(vm);
out_close:
	if (serial_fd != STDOUT_FILENO)
		close(serial_fd);
	return status;
}

/* ---- vm selftest-state -------------------------------------------------------------------- */

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Damaged buffers must be refused with a message, never crash or hang: the header checks,
 * the checksum, and (after resealing the checksum) random edits of the records. */
static int fuzz_loads(const struct vm_cli *c, const uint8_t *good, size_t used)
{
	int status = 1;
	char err[256];
	uint8_t *buf = malloc(used);
	struct vm *scratch = create_vm(c, &status, true);
	if (!buf || !scratch)
		goto out;
	status = 1;

	memcpy(buf, good, used);
	if (vm_state_load(scratch, buf, used - 1, err, sizeof(err)) != MFD_ELENGTH) {
		fprintf(stderr, "selftest: a truncated buffer was not refused as too short\n");
		goto out;
	}
	buf[0] ^= 0xff;
	if (vm_state_load(scratch, buf, used, err, sizeof(err)) != MFD_EMAGIC) {
		fprintf(stderr, "selftest: a bad magic was not refused\n");
		goto out;
	}
	buf[0] ^= 0xff;
	buf[used / 2] ^= 0x40;
	if (vm_state_load(scratch, buf, used, err, sizeof(err)) != MFD_ECHECKSUM) {
		fprintf(stderr, "selftest: a damaged body was not refused by its checksum\n");
		goto out;
	}

	/* Behind the checksum: edit record headers (lengths, types, indices) and payloads. */
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	unsigned refused = 0;
	for (unsigned round = 0; round < FUZZ_ROUNDS; round++) {
		memcpy(buf, good, used);
		unsigned edits = 1 + (unsigned)(xorshift(&seed) % 3);
		for (unsigned e = 0; e < edits; e++) {
			size_t at = 40 + (size_t)(xorshift(&seed) % (used - 40));
			uint64_t kind = xorshift(&seed) % 4;
			if (kind == 0)
				buf[at] = (uint8_t)xorshift(&seed);
			else if (kind == 1)
				buf[at] ^= (uint8_t)(1u << (xorshift(&seed) % 8));
			else if (kind == 2 && at + 4 <= used)
				memset(buf + at, 0xff, 4);
			else
				buf[at] = 0;
		}
		size_t len = used;
		if (round % 10 == 9)		/* also: a body that claims more than the buffer */
			len = used - 1 - (size_t)(xorshift(&seed) % 64);
		vm_state_reseal(buf, used);
		err[0] = '\0';
		int rc = vm_state_load(scratch, buf, len, err, sizeof(err));
		if (rc < 0) {
			refused++;
			if (!err[0]) {
				fprintf(stderr, "selftest: load refused (%d) without a message\n", rc);
				goto out;
			}
		}
	}
	printf(" fuzz=%u refused=%u", FUZZ_ROUNDS, refused);
	status = 0;
out:
	vm_destroy(scratch);
	free(buf);
	return status;
}

static int vm_selftest_state(struct vm_cli *c)
{
	int status = 1;
	char err[256];
	struct vm *a = NULL, *b = NULL;
	uint8_t *buf = NULL;
	struct vm_dirty_result ra[VM_MAX_VCPUS], rb[VM_MAX_VCPUS];
	uint64_t serial_a[VM_MAX_VCPUS];
	double secs = c->duration_s > 0 ? c->duration_s : 0.5;

	if (c->opts.workload == VM_WORKLOAD_BOOT_SECTOR) {
		fprintf(stderr, "multifd vm selftest-state: use the dirty or idle workload\n");
		return 2;
	}
	if (c->opts.workload == VM_WORKLOAD_DIRTY && !c->workload_arg)
		c->opts.dirty_bytes = 16ull << 20;
	c->opts.serial_fd = -1;
	if (c->serial_path) {
		c->opts.serial_fd = open(c->serial_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
					 0644);
		if (c->opts.serial_fd < 0) {
			fprintf(stderr, "multifd vm: %s: %s\n", c->serial_path, strerror(errno));
			return 1;
		}
	}
	bool dirty = c->opts.workload == VM_WORKLOAD_DIRTY;

	/* 1. Run VM a, pause it, check it. */
	a = create_vm(c, &status, false);
	if (!a)
		goto out;
	status = 1;
	if (fill_data(a, c->fill) < 0)
		goto out;
	if (vm_start(a, err, sizeof(err)) < 0) {
		fprintf(stderr, "selftest: start: %s\n", err);
		goto out;
	}
	run_for(a, secs, NULL);
	if (vm_pause(a) < 0) {
		struct vm_status st;
		vm_get_status(a, &st);
		fprintf(stderr, "selftest: cannot pause the first VM (%s: %s)\n",
			vm_stop_reason_name(st.reason), st.error);
		goto out;
	}
	if (dirty && verify(a, ra, err, sizeof(err)) < 0) {
		fprintf(stderr, "selftest: first VM: %s\n", err);
		goto out;
	}
	for (unsigned i = 0; i < vm_vcpu_count(a); i++)
		serial_a[i] = vm_serial_sweep(a, i);

	/* 2. Save its state; a short buffer must be refused. */
	size_t size = vm_state_size(a), used = 0;
	buf = malloc(size);
	if (!buf)
		goto out;
	if (vm_state_save(a, buf, size / 2, &used) != -ENOSPC) {
		fprintf(stderr, "selftest: saving into half the space did not fail with ENOSPC\n");
		goto out;
	}
	int rc = vm_state_save(a, buf, size, &used);
	if (rc < 0) {
		fprintf(stderr, "selftest: save: %s\n", strerror(-rc));
		goto out;
	}
	describe(c, a);
	printf(" state_bytes=%zu", used);
	if (dirty)
		print_list("sweeps_before", a, ra, false);

	/* 3. Hostile copies of the buffer. */
	if (fuzz_loads(c, buf, used) != 0)
		goto out;

	/* 4. A second VM gets a copy of the RAM and the state, and runs on. */
	b = create_vm(c, &status, true);
	if (!b)
		goto out;
	status = 1;
	for (unsigned i = 0; i < vm_region_count(a); i++) {
		const struct vm_region *ra_reg = vm_region_get(a, i), *rb_reg = vm_region_get(b, i);
		memcpy(rb_reg->host, ra_reg->host, ra_reg->size);
	}
	if (vm_state_load(b, buf, used, err, sizeof(err)) < 0) {
		fprintf(stderr, "\nselftest: load: %s\n", err);
		goto out;
	}
	vm_destroy(a);
	a = NULL;
	if (vm_start(b, err, sizeof(err)) < 0) {
		fprintf(stderr, "\nselftest: start after load: %s\n", err);
		goto out;
	}
	/* Pause, check and resume it a few times on the way: every pause point must verify. */
	for (int round = 0; round < 4; round++) {
		run_for(b, secs / 4, NULL);
		if (vm_pause(b) < 0) {
			struct vm_status st;
			vm_get_status(b, &st);
			fprintf(stderr, "\nselftest: the loaded VM stopped (%s: %s)\n",
				vm_stop_reason_name(st.reason), st.error);
			goto out;
		}
		if (dirty && verify(b, rb, err, sizeof(err)) < 0) {
			fprintf(stderr, "\nselftest: loaded VM, pause %d: %s\n", round + 1, err);
			goto out;
		}
		if (round < 3 && vm_resume(b) < 0) {
			fprintf(stderr, "\nselftest: resume failed\n");
			goto out;
		}
	}
	if (dirty) {
		print_list("sweeps_after", b, rb, false);
		for (unsigned i = 0; i < vm_vcpu_count(b); i++) {
			if (completed(&rb[i]) <= completed(&ra[i]) ||
			    vm_serial_sweep(b, i) <= serial_a[i]) {
				fprintf(stderr, "\nselftest: vCPU %u did not continue: %" PRIu64
					" -> %" PRIu64 " sweeps, COM1 %" PRIu64 " -> %" PRIu64 "\n",
					i, completed(&ra[i]), completed(&rb[i]), serial_a[i],
					vm_serial_sweep(b, i));
				goto out;
			}
		}
	}
	printf(" result=ok\n");
	status = 0;
out:
	fflush(stdout);
	vm_destroy(a);
	vm_destroy(b);
	free(buf);
	if (c->opts.serial_fd >= 0)
		close(c->opts.serial_fd);
	return status;
}

/* ---- entry -------------------------------------------------------------------------------- */

int cmd_vm(int argc, char **argv)
{
	struct vm_cli c;
	memset(&c, 0, sizeof(c));
	vm_opts_init(&c.opts);

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		cmd_vm_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *sub = argv[1];
	if (strcmp(sub, "run") && strcmp(sub, "selftest-state")) {
		fprintf(stderr, "multifd vm: unknown subcommand '%s'\n", sub);
		cmd_vm_usage(stderr);
		return 2;
	}
	if (parse_opts(&c, argc - 1, argv + 1) < 0)
		return 2;
	return !strcmp(sub, "run") ? vm_run(&c) : vm_selftest_state(&c);
}
