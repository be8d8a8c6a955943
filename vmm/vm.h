/*
 * vmm/vm — tinyvm, a tiny virtual machine monitor: the internal API used by cli/ (and, later,
 * by the migration glue).
 *
 * A struct vm is guest RAM plus N vCPUs running one of three workloads:
 *
 *   dirty        64-bit guest code that sweeps a range of the data area, stamping every page with
 *                its frame number and the sweep counter, and prints "cpu<i> sweep <n>\n" on COM1
 *                after each sweep (vmm/guest/dirty.S).
 *   idle         64-bit guest code that halts with interrupts enabled, forever (vmm/guest/idle.S).
 *   boot sector  a raw 512-byte image loaded at 0x7c00 and started in real mode at 0000:7c00
 *                on vCPU 0, no BIOS; the other vCPUs wait for INIT/SIPI as on real hardware.
 *
 * Two backends ("accelerators") sit behind one ops table (vm_priv.h):
 *
 *   kvm   /dev/kvm, one contiguous memory slot at GPA 0, an in-kernel irqchip, one thread per
 *         vCPU running KVM_RUN (vmm/kvm.c).
 *   soft  no KVM: the dirty and idle workloads written in C, one host thread per "vCPU",
 *         writing the same pattern into the same guest-physical layout (vmm/soft.c).
 *
 * Guest-physical layout of the long-mode workloads (vmm/layout.h): the first MiB belongs to the
 * monitor (GDT, parameter block, identity-mapped page tables with 2 MiB pages, guest code,
 * per-vCPU stacks); the workload's data area is everything from TVM_DATA_GPA (1 MiB) up.
 *
 * Ports (kvm): 0x3f8-0x3ff a minimal 16550 UART whose output goes to opts.serial_fd, line
 * buffered per vCPU so lines of different vCPUs never interleave; 0x92 fast A20 (writes kept,
 * reads return the last value); 0x501 shutdown: a write of any width stops the VM and records
 * the value as the exit code; 0x80 (POST) ignored.  Other ports read as all-ones and ignore
 * writes, as on a bus with nothing attached.
 *
 * Life cycle:
 *
 *     vm_create ──> [fill RAM] ──> vm_start ──> RUNNING <──> PAUSED ──> vm_destroy
 *          └──> [receive RAM] ──> vm_state_load ──> vm_start ──┘     STOPPED (shutdown, halt,
 *                                                                      error) ──> vm_destroy
 *
 * vm_start on a VM that got vm_state_load resumes from the loaded state and writes nothing to
 * RAM; otherwise it writes the boot area (page tables, GDT, code, parameters, the initial page
 * stamps of the dirty range) or the boot sector, and starts at the entry point.
 *
 * Threads: every function may be called from any one control thread.  vm_pause, vm_resume,
 * vm_set_throttle, vm_wait*, vm_get_status and vm_serial_sweep are also safe to call
 * concurrently from several threads.  vm_destroy must not race with anything.
 *
 * Errors: functions return 0 or a negative code (-errno, or MFD_E* from multifd.h for a bad
 * state buffer) and put a message in the caller's errbuf when they take one.  The VMM never
 * prints (except guest serial output to opts.serial_fd) and never exits.
 */
#ifndef TINYVM_VM_H
#define TINYVM_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VM_MAX_VCPUS		64
#define VM_MAX_REGIONS		4
#define VM_NO_SLOT		UINT32_MAX
#define VM_BOOT_SECTOR_MAX	512
#define VM_ERROR_MAX		256

struct vm;

enum vm_accel {
	VM_ACCEL_AUTO = 0,	/* kvm when /dev/kvm works, else soft */
	VM_ACCEL_KVM,
	VM_ACCEL_SOFT,
};

enum vm_workload {
	VM_WORKLOAD_DIRTY = 0,
	VM_WORKLOAD_IDLE,
	VM_WORKLOAD_BOOT_SECTOR,	/* kvm only */
};

struct vm_opts {
	enum vm_accel accel;
	uint64_t mem_bytes;		/* guest RAM: a multiple of 4 KiB, 2 MiB .. 64 GiB */
	unsigned vcpus;			/* 1 .. VM_MAX_VCPUS */
	enum vm_workload workload;
	uint64_t dirty_bytes;		/* dirty: bytes swept from the data area start, a multiple
					 * of 4 KiB and at least one page per vCPU; 0 = all of it */
	const void *boot_sector;	/* boot sector image; copied by vm_create */
	size_t boot_sector_len;		/* 1 .. VM_BOOT_SECTOR_MAX (zero-padded to 512) */
	int serial_fd;			/* COM1 output; -1 discards it.  Borrowed: must stay open
					 * until vm_destroy, never closed by the VM */
	bool prealloc;			/* fault in all guest RAM at creation (QEMU's prealloc=on):
					 * its first-touch cost is paid before a migration or the
					 * guest needs the memory, at the price of its full size
					 * resident from the start */
};

/* Defaults: auto, 256 MiB, 1 vCPU, dirty over the whole data area, serial discarded. */
void vm_opts_init(struct vm_opts *o);

/* Check options as vm_create does, without creating anything: 0, or -EINVAL with the reason in
 * errbuf (what a command line calls a usage error). */
int vm_opts_check(const struct vm_opts *o, char *errbuf, size_t errlen);

/* Create a VM: allocate RAM, open the backend, create the vCPUs (not yet running).  With
 * VM_ACCEL_AUTO a KVM failure falls back to soft and vm_accel_note() says why.  Returns 0,
 * -ENODEV when KVM was requested explicitly but /dev/kvm cannot be opened or KVM_CREATE_VM
 * fails, -EINVAL for bad options, or another -errno; errbuf gets the message. */
int vm_create(struct vm **out, const struct vm_opts *o, char *errbuf, size_t errlen);

/* Stop the vCPU threads (if any), release everything.  vm_destroy(NULL) is a no-op. */
void vm_destroy(struct vm *vm);

/* Start the vCPU threads, from the entry point or from the state given to vm_state_load.
 * Only once, on a created VM.  Returns 0 or -errno (errbuf has the message). */
int vm_start(struct vm *vm, char *errbuf, size_t errlen);

/* Stop every vCPU at a consistent point (all out of guest mode, pending port I/O completed) and
 * return when they all are.  Returns 0 when every vCPU is still: the state is then PAUSED, or
 * STOPPED if the guest stopped meanwhile; 0 at once when already paused; -EINVAL when not
 * running (never started, or stopped: a stopped VM is still already); -EAGAIN when another
 * thread resumed it before all vCPUs were parked. */
int vm_pause(struct vm *vm);

/* Let paused vCPUs continue.  0, or -EINVAL when the VM is not paused. */
int vm_resume(struct vm *vm);

/* Throttle: each vCPU runs (100 - pct)% of every 10 ms slice and sleeps the rest.  pct is
 * clamped to 0..99; 0 turns throttling off.  Takes effect within one slice. */
void vm_set_throttle(struct vm *vm, unsigned pct);
unsigned vm_throttle(struct vm *vm);

/* Block until the VM stops (guest shutdown, all vCPUs halted, or an error).  Returns 0 for a
 * clean stop (shutdown port or halt), -EIO after a vCPU error (see vm_get_status). */
int vm_wait(struct vm *vm);
/* The same with a limit: -ETIMEDOUT when the VM is still running (or paused) after
 * timeout_ms milliseconds. */
int vm_wait_for(struct vm *vm, uint64_t timeout_ms);

enum vm_run_state {
	VM_CREATED = 0,
	VM_RUNNING,
	VM_PAUSED,
	VM_STOPPED,
};

enum vm_stop_reason {
	VM_STOP_NONE = 0,
	VM_STOP_SHUTDOWN_PORT,	/* the guest wrote exit_code to port 0x501 */
	VM_STOP_HALT,		/* every vCPU halted with interrupts disabled (or never started) */
	VM_STOP_ERROR,		/* a vCPU failed: triple fault, KVM error, ...; see error */
	VM_STOP_DESTROY,	/* vm_destroy stopped it */
};

struct vm_status {
	enum vm_run_state state;
	enum vm_stop_reason reason;	/* when state == VM_STOPPED */
	uint32_t exit_code;		/* value written to the shutdown port */
	uint64_t unhandled_io;		/* port or MMIO accesses nothing answered */
	char error[VM_ERROR_MAX];	/* the first vCPU error, "" when none */
};

void vm_get_status(struct vm *vm, struct vm_status *st);
const char *vm_run_state_name(enum vm_run_state s);
const char *vm_stop_reason_name(enum vm_stop_reason r);

/* ---- what the VM is made of ---------------------------------------------------------------- */

/* The backend in use (never VM_ACCEL_AUTO), and its name ("kvm", "soft"). */
enum vm_accel vm_accel(const struct vm *vm);
const char *vm_accel_name(enum vm_accel a);
/* Why auto mode did not pick kvm ("" when it did, or when the accel was explicit). */
const char *vm_accel_note(const struct vm *vm);
unsigned vm_vcpu_count(const struct vm *vm);
/* What another VM must equal to take this one's state (a migration's or a snapshot's): the
 * accelerator, the vCPU count, the workload and its parameters, a boot sector's checksum.
 * Printable, at most 255 bytes. */
void vm_describe(const struct vm *vm, char *buf, size_t len);
uint64_t vm_mem_bytes(const struct vm *vm);

/* A guest RAM region: one host mapping, mapped into the guest at gpa by KVM memory slot
 * kvm_slot (created with kvm_flags, always 0).  The migration code registers each region as a
 * RAM block and hands vm_kvm_fd() plus the slots to the library's KVM dirty-log tracker, which
 * re-issues KVM_SET_USER_MEMORY_REGION on the slot with KVM_MEM_LOG_DIRTY_PAGES added.  host
 * stays valid until vm_destroy.  Soft VMs have regions too, with kvm_slot == VM_NO_SLOT. */
struct vm_region {
	const char *name;	/* "ram0", ... */
	void *host;
	uint64_t gpa;
	uint64_t size;		/* bytes, a multiple of 4 KiB */
	uint32_t kvm_slot;	/* as_id << 16 | id, or VM_NO_SLOT */
	uint32_t kvm_flags;
};

unsigned vm_region_count(const struct vm *vm);
/* Region i (0 <= i < vm_region_count), NULL otherwise. */
const struct vm_region *vm_region_get(const struct vm *vm, unsigned i);
/* The KVM VM file descriptor (owned by the VM), -1 for a soft VM. */
int vm_kvm_fd(const struct vm *vm);

/* The workload's data area: [TVM_DATA_GPA, end of RAM), where --fill writes. */
void vm_data_area(const struct vm *vm, void **host, uint64_t *gpa, uint64_t *bytes);

/* ---- device state ------------------------------------------------------------------------- */

/* Upper bound of the state buffer vm_state_save writes (constant for a VM). */
size_t vm_state_size(struct vm *vm);

/* Save the vCPU and device state into buf: a versioned header then tagged records (format in
 * vm_state.c).  The VM must be paused, stopped, or created-and-never-started.  *used gets the bytes
 * written.  Returns 0, -EINVAL (wrong state), -ENOSPC (len too small) or -errno from KVM. */
int vm_state_save(struct vm *vm, void *buf, size_t len, size_t *used);

/* Load a buffer from vm_state_save into a created, not yet started VM with the same options;
 * vm_start then resumes from it.  The buffer is untrusted: every field is checked before
 * anything is applied, and a rejected buffer leaves the VM untouched.  (A buffer that passes
 * the checks but that KVM itself refuses may leave the VM half-loaded: destroy it then.)
 * Returns 0, -EINVAL (wrong VM state), MFD_EMAGIC, MFD_EVERSION, MFD_ELENGTH, MFD_ECHECKSUM,
 * MFD_ETYPE, MFD_EBLOCKTABLE (different VM shape), MFD_ERANGE (a value out of range) or -errno
 * from KVM; errbuf says which field. */
int vm_state_load(struct vm *vm, const void *buf, size_t len, char *errbuf, size_t errlen);

/* Recompute the checksum of a state buffer after editing it, so that tests and fuzzers can
 * reach the checks behind the checksum.  Returns 0, or MFD_ELENGTH / MFD_EMAGIC when buf does
 * not start with a state header whose body fits in len. */
int vm_state_reseal(void *buf, size_t len);

/* ---- the dirty workload's pattern ---------------------------------------------------------- */

/* The pages one vCPU sweeps: [gpa, gpa + pages * 4096).  Page j of the range holds, in its
 * first 16 bytes, two little-endian u64: its guest frame number (gpa / 4096 + j) and the number
 * of the sweep that last wrote it.  Before the first sweep vm_start stamps every page with
 * sweep 0.  vCPU i sweeps the i-th of vcpus equal slices of the dirty area (the last ones get
 * one page more when it does not divide), each with its own counter. */
struct vm_dirty_range {
	uint64_t gpa;
	uint64_t pages;
};

/* What the pattern says about one range: pages [0, pages_done) hold sweep, the others hold
 * sweep - 1.  Completed sweeps are sweep when pages_done == pages, else sweep - 1. */
struct vm_dirty_result {
	uint64_t sweep;
	uint64_t pages_done;
	uint64_t pages;
};

/* The VM's ranges (one per vCPU; none unless the workload is dirty).  Returns the count. */
unsigned vm_dirty_ranges(const struct vm *vm, struct vm_dirty_range *out, unsigned max);

/* Check the pattern on any RAM image: regions say where each guest-physical range lives in
 * this process (regions[i].host, gpa, size; other fields ignored), so the image may be another
 * process's RAM received by migration or a mapped snapshot.  At any stop point of the guest,
 * every range must be two runs, sweep s+1 then sweep s, and every page must carry its own frame
 * number.  res (nr_ranges entries) gets the counters.  Returns 0, or MFD_ERANGE with the first
 * bad page in errbuf. */
int vm_dirty_verify_image(const struct vm_region *regions, unsigned nr_regions,
			  const struct vm_dirty_range *ranges, unsigned nr_ranges,
			  struct vm_dirty_result *res, char *errbuf, size_t errlen);

/* vm_dirty_verify_image on the VM's own RAM and ranges.  The VM must not be running (paused,
 * stopped, or not started).  res gets vm_vcpu_count() entries.  -EINVAL when running or when the
 * workload is not dirty. */
int vm_verify_dirty_pattern(struct vm *vm, struct vm_dirty_result *res, char *errbuf,
			    size_t errlen);

/* The last "cpu<i> sweep <n>" counter vCPU i printed on COM1 (0 before the first), and how many
 * printed counters were not the previous one plus one (0 for a correct run, including across a
 * state save and load).  Thread-safe. */
uint64_t vm_serial_sweep(struct vm *vm, unsigned vcpu);
uint64_t vm_serial_gaps(struct vm *vm, unsigned vcpu);

#endif
