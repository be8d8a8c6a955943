/*
 * vmm/vm — the tinyvm front: options, guest RAM, the boot area, run control shared by the
 * backends, serial output, the device-state format, and the dirty-pattern verifier.
 *
 * The backends (kvm.c, soft.c) only run vCPUs; everything that must behave the same whichever
 * backend runs the guest lives here.  See vm.h for the API and vm_priv.h for how the vCPU
 * threads cooperate with the control operations.
 *
 * State buffer format (version 1; little-endian, x86-64 only since KVM structures are stored
 * as the kernel defines them):
 *
 *     0      4   magic "TVMS"
 *     4      2   version (1)
 *     6      2   header bytes (40)
 *     8      4   accel: 1 kvm, 2 soft            (must match the loading VM)
 *     12     4   vCPU count                       (must match)
 *     16     8   guest RAM bytes                  (must match)
 *     24     8   body bytes (the records after the header)
 *     32     8   mfd_digest(body, body bytes, seed "TVMS")
 *     40     records, each:
 *              0  4  type (enum vm_rec_type)
 *              4  4  vCPU index, or 0xffffffff for a VM-wide record
 *              8  4  payload bytes
 *              12 4  reserved, 0
 *              16    payload, then zero padding to a multiple of 8
 *
 * Every record type appears at most once per vCPU (or once VM-wide); every type the backend
 * needs must be present; unknown types are refused.  Compatible additions get a new type and a
 * new version; a loader only accepts the version it writes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "vm_priv.h"

#define STATE_MAGIC	0x534d5654u	/* "TVMS" */
#define STATE_VERSION	1
#define STATE_HDR_BYTES	40
#define REC_HDR_BYTES	16
#define SERIAL_REC_BYTES	(24 + VM_SERIAL_LINE_MAX)

extern const uint8_t guest_dirty_start[], guest_dirty_end[];
extern const uint8_t guest_idle_start[], guest_idle_end[];

/* ---- small helpers ------------------------------------------------------------------------ */

int vm__err(char *errbuf, size_t errlen, int err, const char *fmt, ...)
{
	if (errbuf && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(errbuf, errlen, fmt, ap);
		va_end(ap);
	}
	return err;
}

uint64_t vm__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

void *vm__gpa_to_host(struct vm *vm, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < vm->nr_regions; i++) {
		const struct vm_region *r = &vm->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return (uint8_t *)r->host + (gpa - r->gpa);
	}
	return NULL;
}

void vm__count_unhandled_io(struct vm *vm)
{
	__atomic_fetch_add(&vm->unhandled_io, 1, __ATOMIC_RELAXED);
}

/* ---- names -------------------------------------------------------------------------------- */

const char *vm_accel_name(enum vm_accel a)
{
	switch (a) {
	case VM_ACCEL_AUTO: return "auto";
	case VM_ACCEL_KVM: return "kvm";
	case VM_ACCEL_SOFT: return "soft";
	}
	return "?";
}

const char *vm_run_state_name(enum vm_run_state s)
{
	switch (s) {
	case VM_CREATED: return "created";
	case VM_RUNNING: return "running";
	case VM_PAUSED: return "paused";
	case VM_STOPPED: return "stopped";
	}
	return "?";
}

const char *vm_stop_reason_name(enum vm_stop_reason r)
{
	switch (r) {
	case VM_STOP_NONE: return "none";
	case VM_STOP_SHUTDOWN_PORT: return "shutdown-port";
	case VM_STOP_HALT: return "halt";
	case VM_STOP_ERROR: return "error";
	case VM_STOP_DESTROY: return "destroy";
	}
	return "?";
}

static const char *rec_name(uint32_t type)
{
	switch (type) {
	case VM_REC_WORKLOAD: return "workload";
	case VM_REC_SERIAL: return "serial";
	case VM_REC_KVM_PORTS: return "kvm-ports";
	case VM_REC_KVM_REGS: return "kvm-regs";
	case VM_REC_KVM_SREGS: return "kvm-sregs";
	case VM_REC_KVM_XSAVE: return "kvm-xsave";
	case VM_REC_KVM_XCRS: return "kvm-xcrs";
	case VM_REC_KVM_MSRS: return "kvm-msrs";
	case VM_REC_KVM_LAPIC: return "kvm-lapic";
	case VM_REC_KVM_EVENTS: return "kvm-events";
	case VM_REC_KVM_DEBUGREGS: return "kvm-debugregs";
	case VM_REC_KVM_MP_STATE: return "kvm-mp-state";
	case VM_REC_SOFT_CPU: return "soft-cpu";
	}
	return "unknown";
}

/* ---- creation ----------------------------------------------------------------------------- */

void vm_opts_init(struct vm_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->accel = VM_ACCEL_AUTO;
	o->mem_bytes = 256ull << 20;
	o->vcpus = 1;
	o->workload = VM_WORKLOAD_DIRTY;
	o->serial_fd = -1;
}

static int check_opts(const struct vm_opts *o, char *errbuf, size_t errlen)
{
	if (o->accel != VM_ACCEL_AUTO && o->accel != VM_ACCEL_KVM && o->accel != VM_ACCEL_SOFT)
		return vm__err(errbuf, errlen, -EINVAL, "unknown accelerator %d", (int)o->accel);
	if (o->vcpus < 1 || o->vcpus > VM_MAX_VCPUS)
		return vm__err(errbuf, errlen, -EINVAL, "vcpus must be 1..%d", VM_MAX_VCPUS);
	if (o->mem_bytes % TVM_PAGE_SIZE || o->mem_bytes < (2ull << 20) ||
	    o->mem_bytes > ((uint64_t)TVM_MAX_RAM_GIB << 30))
		return vm__err(errbuf, errlen, -EINVAL,
			       "memory must be a multiple of 4 KiB between 2 MiB and %d GiB",
			       TVM_MAX_RAM_GIB);
	uint64_t data = o->mem_bytes - TVM_DATA_GPA;
	switch (o->workload) {
	case VM_WORKLOAD_DIRTY:
		if (o->dirty_bytes % TVM_PAGE_SIZE || o->dirty_bytes > data)
			return vm__err(errbuf, errlen, -EINVAL,
				       "dirty size must be a multiple of 4 KiB and at most the data "
				       "area (%" PRIu64 " KiB = memory - 1 MiB)", data >> 10);
		if ((o->dirty_bytes ? o->dirty_bytes : data) / TVM_PAGE_SIZE < o->vcpus)
			return vm__err(errbuf, errlen, -EINVAL,
				       "dirty size must give each vCPU at least one page");
		break;
	case VM_WORKLOAD_IDLE:
		break;
	case VM_WORKLOAD_BOOT_SECTOR:
		if (!o->boot_sector || o->boot_sector_len < 1 ||
		    o->boot_sector_len > VM_BOOT_SECTOR_MAX)
			return vm__err(errbuf, errlen, -EINVAL,
				       "a boot sector image is 1..%d bytes", VM_BOOT_SECTOR_MAX);
		if (o->accel == VM_ACCEL_SOFT)
			return vm__err(errbuf, errlen, -EINVAL,
				       "a boot sector needs real guest code: use --accel kvm");
		break;
	default:
		return vm__err(errbuf, errlen, -EINVAL, "unknown workload %d", (int)o->workload);
	}
	return 0;
}

/* vCPU i sweeps the i-th of nr equal slices of the dirty area; the remainder pages go one
 * each to the last vCPUs, so slices differ by at most one page. */
static void split_dirty(struct vm *vm)
{
	uint64_t bytes = vm->opts.dirty_bytes ? vm->opts.dirty_bytes : vm->ram_bytes - TVM_DATA_GPA;
	uint64_t pages = bytes / TVM_PAGE_SIZE, n = vm->nr_vcpus;
	uint64_t base = pages / n, extra = pages % n, next = 0;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		uint64_t count = base + (i >= n - extra ? 1 : 0);
		vm->dirty[i].gpa = TVM_DATA_GPA + next * TVM_PAGE_SIZE;
		vm->dirty[i].pages = count;
		next += count;
	}
	vm->nr_dirty = vm->nr_vcpus;
}

static int init_backend(struct vm *vm, const struct vm_backend *ops, char *errbuf, size_t errlen)
{
	vm->ops = ops;
	int rc = ops->init(vm, errbuf, errlen);
	if (rc < 0) {
		ops->fini(vm);
		vm->ops = NULL;
		vm->priv = NULL;
	}
	return rc;
}

int vm_create(struct vm **out, const struct vm_opts *o, char *errbuf, size_t errlen)
{
	int rc;
	*out = NULL;
	if (errbuf && errlen)
		errbuf[0] = '\0';
	rc = check_opts(o, errbuf, errlen);
	if (rc < 0)
		return rc;

	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return vm__err(errbuf, errlen, -ENOMEM, "out of memory");
	vm->opts = *o;
	if (o->workload == VM_WORKLOAD_BOOT_SECTOR) {
		memcpy(vm->boot_image, o->boot_sector, o->boot_sector_len);
		vm->opts.boot_sector = vm->boot_image;
	} else {
		vm->opts.boot_sector = NULL;
		vm->opts.boot_sector_len = 0;
	}
	vm->nr_vcpus = o->vcpus;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		vm->vcpus[i].vm = vm;
		vm->vcpus[i].index = i;
	}

	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	rc = pthread_cond_init(&vm->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (rc) {
		free(vm);
		return vm__err(errbuf, errlen, -rc, "pthread_cond_init: %s", strerror(rc));
	}
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->serial_lock, NULL);

	/* Guest RAM: anonymous, reserved lazily, huge pages advised (fewer faults and TLB misses
	 * for the host and, under KVM, for the guest mappings). */
	vm->ram_bytes = o->mem_bytes;
	vm->ram = mmap(NULL, vm->ram_bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->ram == MAP_FAILED) {
		rc = vm__err(errbuf, errlen, -errno, "cannot map %" PRIu64 " MiB of guest RAM: %s",
			     vm->ram_bytes >> 20, strerror(errno));
		vm->ram = NULL;
		goto err_free;
	}
	madvise(vm->ram, vm->ram_bytes, MADV_HUGEPAGE);
	vm->regions[0] = (struct vm_region){ .name = "ram0", .host = vm->ram, .gpa = 0,
					     .size = vm->ram_bytes, .kvm_slot = VM_NO_SLOT };
	vm->nr_regions = 1;
	if (o->workload == VM_WORKLOAD_DIRTY)
		split_dirty(vm);

	switch (o->accel) {
	case VM_ACCEL_SOFT:
		rc = init_backend(vm, &vm_soft_backend, errbuf, errlen);
		break;
	case VM_ACCEL_KVM:
		rc = init_backend(vm, &vm_kvm_backend, errbuf, errlen);
		break;
	case VM_ACCEL_AUTO:
		rc = init_backend(vm, &vm_kvm_backend, vm->accel_note, sizeof(vm->accel_note));
		if (rc == -ENODEV && o->workload == VM_WORKLOAD_BOOT_SECTOR)
			rc = vm__err(errbuf, errlen, -ENODEV,
				     "a boot sector needs KVM, which is unavailable: %s",
				     vm->accel_note);
		else if (rc == -ENODEV)
			rc = init_backend(vm, &vm_soft_backend, errbuf, errlen);
		else if (rc < 0)
			rc = vm__err(errbuf, errlen, rc, "%s", vm->accel_note);
		else
			vm->accel_note[0] = '\0';
		break;
	}
	if (rc < 0)
		goto err_unmap;
	*out = vm;
	return 0;

err_unmap:
	munmap(vm->ram, vm->ram_bytes);
err_free:
	pthread_mutex_destroy(&vm->serial_lock);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->cond);
	free(vm);
	return rc;
}

/* ---- accessors ---------------------------------------------------------------------------- */

enum vm_accel vm_accel(const struct vm *vm)
{
	return vm->ops->accel;
}

const char *vm_accel_note(const struct vm *vm)
{
	return vm->accel_note;
}

unsigned vm_vcpu_count(const struct vm *vm)
{
	return vm->nr_vcpus;
}

uint64_t vm_mem_bytes(const struct vm *vm)
{
	return vm->ram_bytes;
}

unsigned vm_region_count(const struct vm *vm)
{
	return vm->nr_regions;
}

const struct vm_region *vm_region_get(const struct vm *vm, unsigned i)
{
	return i < vm->nr_regions ? &vm->regions[i] : NULL;
}

void vm_data_area(const struct vm *vm, void **host, uint64_t *gpa, uint64_t *bytes)
{
	*host = (uint8_t *)vm->ram + TVM_DATA_GPA;
	*gpa = TVM_DATA_GPA;
	*bytes = vm->ram_bytes - TVM_DATA_GPA;
}

unsigned vm_dirty_ranges(const struct vm *vm, struct vm_dirty_range *out, unsigned max)
{
	unsigned n = vm->nr_dirty < max ? vm->nr_dirty : max;
	if (n)
		memcpy(out, vm->dirty, n * sizeof(*out));
	return vm->nr_dirty;
}

uint64_t vm_serial_sweep(struct vm *vm, unsigned vcpu)
{
	if (vcpu >= vm->nr_vcpus)
		return 0;
	return __atomic_load_n(&vm->vcpus[vcpu].serial_sweep, __ATOMIC_RELAXED);
}

uint64_t vm_serial_gaps(struct vm *vm, unsigned vcpu)
{
	if (vcpu >= vm->nr_vcpus)
		return 0;
	return __atomic_load_n(&vm->vcpus[vcpu].serial_gaps, __ATOMIC_RELAXED);
}

/* ---- the boot area ------------------------------------------------------------------------ */

#define PTE_P	0x1ull
#define PTE_RW	0x2ull
#define PTE_PS	0x80ull

/* Write what a fresh long-mode guest needs into low RAM (layout.h): GDT, identity map of all
 * RAM with 2 MiB pages, the workload's code, its parameters, and the sweep-0 stamps. */
static int write_boot_area(struct vm *vm, char *errbuf, size_t errlen)
{
	uint8_t *ram = vm->ram;
	const uint8_t *code = guest_idle_start, *code_end = guest_idle_end;
	if (vm->opts.workload == VM_WORKLOAD_DIRTY) {
		code = guest_dirty_start;
		code_end = guest_dirty_end;
	}
	size_t code_len = (size_t)(code_end - code);
	if (code_len > TVM_CODE_MAX)
		return vm__err(errbuf, errlen, -E2BIG, "guest code is %zu bytes, more than %d",
			       code_len, TVM_CODE_MAX);

	memset(ram, 0, TVM_DATA_GPA);

	/* Descriptors: 64-bit code (L=1), flat 4 GiB data, and 32-bit code for completeness. */
	uint64_t gdt[4] = { 0, 0x00af9b000000ffffull, 0x00cf93000000ffffull,
			    0x00cf9b000000ffffull };
	memcpy(ram + TVM_GDT_GPA, gdt, sizeof(gdt));

	uint64_t gib = (vm->ram_bytes + (1ull << 30) - 1) >> 30;
	uint64_t *pml4 = (uint64_t *)(ram + TVM_PML4_GPA);
	uint64_t *pdpt = (uint64_t *)(ram + TVM_PDPT_GPA);
	pml4[0] = TVM_PDPT_GPA | PTE_P | PTE_RW;
	for (uint64_t g = 0; g < gib; g++) {
		uint64_t *pd = (uint64_t *)(ram + TVM_PD_GPA + g * TVM_PAGE_SIZE);
		pdpt[g] = (TVM_PD_GPA + g * TVM_PAGE_SIZE) | PTE_P | PTE_RW;
		for (uint64_t i = 0; i < 512; i++)
			pd[i] = (g << 30 | i << 21) | PTE_P | PTE_RW | PTE_PS;
	}

	memcpy(ram + TVM_CODE_GPA, code, code_len);

	uint8_t *params = ram + TVM_PARAMS_GPA;
	put_le64(params, TVM_PARAMS_MAGIC);
	put_le64(params + TVM_PARAMS_NR_VCPUS, vm->nr_vcpus);
	for (unsigned i = 0; i < vm->nr_dirty; i++) {
		uint8_t *e = params + TVM_PARAMS_VCPU + ((size_t)i << TVM_PARAMS_VCPU_SHIFT);
		put_le64(e + TVM_VP_START, vm->dirty[i].gpa);
		put_le64(e + TVM_VP_PAGES, vm->dirty[i].pages);
	}

	/* Sweep 0: every page of every range carries its frame number from the start, so the
	 * verifier is strict from the first instant, whatever --fill wrote there. */
	for (unsigned i = 0; i < vm->nr_dirty; i++) {
		uint64_t gpa = vm->dirty[i].gpa;
		for (uint64_t j = 0; j < vm->dirty[i].pages; j++, gpa += TVM_PAGE_SIZE) {
			uint64_t stamp[2] = { gpa >> TVM_PAGE_SHIFT, 0 };
			memcpy(ram + gpa, stamp, sizeof(stamp));
		}
	}
	return 0;
}

static void write_boot_sector(struct vm *vm)
{
	memset((uint8_t *)vm->ram + TVM_BOOT_SECTOR_GPA, 0, VM_BOOT_SECTOR_MAX);
	memcpy((uint8_t *)vm->ram + TVM_BOOT_SECTOR_GPA, vm->boot_image,
	       vm->opts.boot_sector_len);
}

/* ---- run control -------------------------------------------------------------------------- */

static void set_attention(struct vm *vm)	/* with vm->lock held */
{
	__atomic_store_n(&vm->attention, vm->pause_req || vm->stopping, __ATOMIC_RELEASE);
}

/* Kick every vCPU thread that is started and has not left its loop.  Takes vm->lock: vCPU
 * threads kick each other (a stop request) while vm_start may still be creating the later
 * threads, or vm_destroy joining the earlier ones (a thread being joined has set exited). */
static void kick_all(struct vm *vm)
{
	if (!vm->ops->kick)
		return;
	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i].thread_started && !vm->vcpus[i].exited)
			vm->ops->kick(&vm->vcpus[i]);
	pthread_mutex_unlock(&vm->lock);
}

static void stop_threads(struct vm *vm, enum vm_stop_reason reason)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->stopping) {
		vm->stopping = true;
		vm->reason = reason;
	}
	set_attention(vm);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	kick_all(vm);
	/* Only the control thread creates or joins threads, so thread_started is stable here. */
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i].thread_started)
			pthread_join(vm->vcpus[i].thread, NULL);
	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vm->vcpus[i].thread_started = false;
	pthread_mutex_unlock(&vm->lock);
}

int vm_start(struct vm *vm, char *errbuf, size_t errlen)
{
	int rc;
	pthread_mutex_lock(&vm->lock);
	bool created = vm->state == VM_CREATED;
	pthread_mutex_unlock(&vm->lock);
	if (!created)
		return vm__err(errbuf, errlen, -EINVAL, "the VM was already started");

	if (!vm->loaded) {
		if (vm->opts.workload == VM_WORKLOAD_BOOT_SECTOR) {
			write_boot_sector(vm);
		} else {
			rc = write_boot_area(vm, errbuf, errlen);
			if (rc < 0)
				return rc;
		}
		rc = vm->ops->boot(vm, errbuf, errlen);
		if (rc < 0)
			return rc;
	}

	/* Threads are created under the lock, so kickers see thread and thread_started
	 * together, and every thread sees RUNNING from its start.  A failure stops the threads
	 * already started and leaves the VM stopped. */
	pthread_mutex_lock(&vm->lock);
	vm->state = VM_RUNNING;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vm_vcpu *v = &vm->vcpus[i];
		rc = pthread_create(&v->thread, NULL, vm->ops->vcpu_thread, v);
		if (rc) {
			snprintf(vm->error, sizeof(vm->error), "cannot start vCPU thread %u: %s", i,
				 strerror(rc));
			pthread_mutex_unlock(&vm->lock);
			stop_threads(vm, VM_STOP_ERROR);
			pthread_mutex_lock(&vm->lock);
			vm->state = VM_STOPPED;
			pthread_mutex_unlock(&vm->lock);
			return vm__err(errbuf, errlen, -rc, "cannot start vCPU thread %u: %s", i,
				       strerror(rc));
		}
		v->thread_started = true;
	}
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vm_pause(struct vm *vm)
{
	int rc = 0;
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_PAUSED)
		goto out;
	if (vm->state != VM_RUNNING) {
		rc = -EINVAL;
		goto out;
	}
	vm->pause_req = true;
	set_attention(vm);
	pthread_cond_broadcast(&vm->cond);	/* idle and throttled vCPUs wait on it */
	pthread_mutex_unlock(&vm->lock);

	kick_all(vm);

	pthread_mutex_lock(&vm->lock);
	while (vm->pause_req && vm->nr_parked + vm->nr_exited < vm->nr_vcpus)
		pthread_cond_wait(&vm->cond, &vm->lock);
	if (!vm->pause_req)
		rc = -EAGAIN;		/* someone resumed it meanwhile */
	else if (vm->state == VM_RUNNING)
		vm->state = VM_PAUSED;	/* (or it stopped meanwhile: still, and STOPPED) */
out:
	pthread_mutex_unlock(&vm->lock);
	return rc;
}

int vm_resume(struct vm *vm)
{
	int rc = 0;
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_PAUSED) {
		rc = -EINVAL;
	} else {
		vm->pause_req = false;
		vm->state = VM_RUNNING;
		set_attention(vm);
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	return rc;
}

void vm_set_throttle(struct vm *vm, unsigned pct)
{
	if (pct > 99)
		pct = 99;
	__atomic_store_n(&vm->throttle_pct, pct, __ATOMIC_RELAXED);
	/* Running vCPUs re-arm their slice timer at their next checkpoint; kick them there. */
	pthread_mutex_lock(&vm->lock);
	bool running = vm->state == VM_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	if (running)
		kick_all(vm);
}

unsigned vm_throttle(struct vm *vm)
{
	return __atomic_load_n(&vm->throttle_pct, __ATOMIC_RELAXED);
}

int vm_wait_for(struct vm *vm, uint64_t timeout_ms)
{
	bool forever = timeout_ms > (1ull << 40);	/* 35 years: as good as forever */
	uint64_t until = forever ? 0 : vm__now_ns() + timeout_ms * 1000000ull;
	struct timespec ts = { .tv_sec = (time_t)(until / 1000000000ull),
			       .tv_nsec = (long)(until % 1000000000ull) };

	int rc = 0;
	pthread_mutex_lock(&vm->lock);
	while (vm->state != VM_STOPPED && rc != ETIMEDOUT)
		rc = forever ? pthread_cond_wait(&vm->cond, &vm->lock)
			     : pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
	if (vm->state != VM_STOPPED)
		rc = -ETIMEDOUT;
	else
		rc = vm->reason == VM_STOP_ERROR ? -EIO : 0;
	pthread_mutex_unlock(&vm->lock);
	return rc;
}

int vm_wait(struct vm *vm)
{
	return vm_wait_for(vm, UINT64_MAX);
}

void vm_get_status(struct vm *vm, struct vm_status *st)
{
	pthread_mutex_lock(&vm->lock);
	st->state = vm->state;
	st->reason = vm->reason;
	st->exit_code = vm->exit_code;
	memcpy(st->error, vm->error, sizeof(st->error));
	pthread_mutex_unlock(&vm->lock);
	st->unhandled_io = __atomic_load_n(&vm->unhandled_io, __ATOMIC_RELAXED);
}

void vm__request_stop(struct vm *vm, enum vm_stop_reason reason, uint32_t exit_code,
		      const char *fmt, ...)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->stopping) {
		vm->stopping = true;
		vm->reason = reason;
		vm->exit_code = exit_code;
		if (fmt) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(vm->error, sizeof(vm->error), fmt, ap);
			va_end(ap);
		}
		set_attention(vm);
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	kick_all(vm);
}

void vm__vcpu_exit(struct vm_vcpu *v)
{
	struct vm *vm = v->vm;
	pthread_mutex_lock(&vm->lock);
	v->exited = true;
	if (++vm->nr_exited == vm->nr_vcpus)
		vm->state = VM_STOPPED;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

void vm__vcpu_set_off(struct vm_vcpu *v, bool off)
{
	struct vm *vm = v->vm;
	bool all_off;
	pthread_mutex_lock(&vm->lock);
	if (v->off != off) {
		v->off = off;
		if (off)
			vm->nr_off++;
		else
			vm->nr_off--;
	}
	all_off = vm->nr_off == vm->nr_vcpus;
	pthread_mutex_unlock(&vm->lock);
	if (all_off)
		vm__request_stop(vm, VM_STOP_HALT, 0, NULL);
}

bool vm__vcpu_checkpoint(struct vm_vcpu *v)
{
	struct vm *vm = v->vm;
	for (;;) {
		if (__atomic_load_n(&vm->attention, __ATOMIC_ACQUIRE)) {
			bool prepared = false, stop;
			pthread_mutex_lock(&vm->lock);
			while (vm->pause_req && !vm->stopping) {
				if (!v->parked) {
					if (!prepared && vm->ops->prepare_park) {
						/* Finish half-done I/O outside the lock (it may
						 * stop the VM, which takes the lock). */
						pthread_mutex_unlock(&vm->lock);
						vm->ops->prepare_park(v);
						prepared = true;
						pthread_mutex_lock(&vm->lock);
						continue;
					}
					v->parked = true;
					vm->nr_parked++;
					pthread_cond_broadcast(&vm->cond);
				}
				pthread_cond_wait(&vm->cond, &vm->lock);
			}
			if (v->parked) {
				v->parked = false;
				vm->nr_parked--;
				v->slice_start_ns = 0;	/* time parked is not run time */
			}
			stop = vm->stopping;
			pthread_mutex_unlock(&vm->lock);
			if (stop)
				return true;
		}

		unsigned pct = __atomic_load_n(&vm->throttle_pct, __ATOMIC_RELAXED);
		if (!pct) {
			v->slice_start_ns = 0;
			return false;
		}
		uint64_t now = vm__now_ns();
		if (!v->slice_start_ns)
			v->slice_start_ns = now;
		if (now - v->slice_start_ns < VM_SLICE_NS * (100 - pct) / 100)
			return false;

		/* The run part of the slice is used up: sleep pct% of a slice, waking early for
		 * a pause or a stop, then start a new slice. */
		uint64_t until = now + VM_SLICE_NS * pct / 100;
		struct timespec ts = { .tv_sec = (time_t)(until / 1000000000ull),
				       .tv_nsec = (long)(until % 1000000000ull) };
		pthread_mutex_lock(&vm->lock);
		while (!vm->pause_req && !vm->stopping &&
		       pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&vm->lock);
		v->slice_start_ns = vm__now_ns();
	}
}

uint64_t vm__vcpu_slice_end(struct vm_vcpu *v)
{
	unsigned pct = __atomic_load_n(&v->vm->throttle_pct, __ATOMIC_RELAXED);
	if (!pct || !v->slice_start_ns)
		return 0;
	return v->slice_start_ns + VM_SLICE_NS * (100 - pct) / 100;
}

void vm__vcpu_idle_wait(struct vm_vcpu *v)
{
	struct vm *vm = v->vm;
	pthread_mutex_lock(&vm->lock);
	while (!vm->pause_req && !vm->stopping)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}

/* ---- serial output ------------------------------------------------------------------------ */

/* "cpu<i> sweep <n>\n" from the dirty workload: track the counter and count gaps. */
static void serial_parse(struct vm_vcpu *v, const char *s, size_t len)
{
	static const char mid[] = " sweep ";
	size_t i = 3;
	uint64_t idx = 0, n = 0;
	if (len < 3 || memcmp(s, "cpu", 3))
		return;
	if (i >= len || s[i] < '0' || s[i] > '9')
		return;
	while (i < len && s[i] >= '0' && s[i] <= '9' && idx < VM_MAX_VCPUS)
		idx = idx * 10 + (uint64_t)(s[i++] - '0');
	if (idx != v->index || len - i < sizeof(mid) || memcmp(s + i, mid, sizeof(mid) - 1))
		return;
	i += sizeof(mid) - 1;
	if (s[i] < '0' || s[i] > '9')
		return;
	while (i < len && s[i] >= '0' && s[i] <= '9' && n < UINT64_MAX / 10)
		n = n * 10 + (uint64_t)(s[i++] - '0');
	if (i != len - 1 || s[i] != '\n')
		return;
	uint64_t last = __atomic_load_n(&v->serial_sweep, __ATOMIC_RELAXED);
	if (n != last + 1)
		__atomic_fetch_add(&v->serial_gaps, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&v->serial_sweep, n, __ATOMIC_RELAXED);
}

static void serial_flush(struct vm_vcpu *v)
{
	struct vm *vm = v->vm;
	if (!v->line_len)
		return;
	if (vm->opts.serial_fd >= 0) {
		pthread_mutex_lock(&vm->serial_lock);
		const char *p = v->line;
		size_t left = v->line_len;
		while (left) {	/* a log: on a write error the output is dropped */
			ssize_t n = write(vm->opts.serial_fd, p, left);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			p += n;
			left -= (size_t)n;
		}
		pthread_mutex_unlock(&vm->serial_lock);
	}
	serial_parse(v, v->line, v->line_len);
	v->line_len = 0;
}

void vm__serial_out(struct vm_vcpu *v, const void *buf, size_t len)
{
	const char *p = buf;
	for (size_t i = 0; i < len; i++) {
		v->line[v->line_len++] = p[i];
		if (p[i] == '\n' || v->line_len == sizeof(v->line))
			serial_flush(v);
	}
}

/* ---- destruction -------------------------------------------------------------------------- */

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	stop_threads(vm, VM_STOP_DESTROY);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		serial_flush(&vm->vcpus[i]);	/* a last line without its newline */
	vm->ops->fini(vm);
	munmap(vm->ram, vm->ram_bytes);
	pthread_mutex_destroy(&vm->serial_lock);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->cond);
	free(vm);
}

/* ---- the dirty pattern -------------------------------------------------------------------- */

static const uint8_t *image_page(const struct vm_region *regions, unsigned nr, uint64_t gpa)
{
	for (unsigned i = 0; i < nr; i++)
		if (gpa >= regions[i].gpa && gpa - regions[i].gpa < regions[i].size &&
		    regions[i].size - (gpa - regions[i].gpa) >= TVM_PAGE_SIZE)
			return (const uint8_t *)regions[i].host + (gpa - regions[i].gpa);
	return NULL;
}

int vm_dirty_verify_image(const struct vm_region *regions, unsigned nr_regions,
			  const struct vm_dirty_range *ranges, unsigned nr_ranges,
			  struct vm_dirty_result *res, char *errbuf, size_t errlen)
{
	for (unsigned r = 0; r < nr_ranges; r++) {
		uint64_t n = ranges[r].pages, sweep = 0, done = n;
		for (uint64_t j = 0; j < n; j++) {
			uint64_t gpa = ranges[r].gpa + j * TVM_PAGE_SIZE;
			const uint8_t *p = image_page(regions, nr_regions, gpa);
			if (!p)
				return vm__err(errbuf, errlen, MFD_ERANGE,
					       "range %u page %" PRIu64 ": GPA 0x%" PRIx64
					       " is not in the image", r, j, gpa);
			uint64_t frame = get_le64(p), s = get_le64(p + 8);
			if (frame != gpa >> TVM_PAGE_SHIFT)
				return vm__err(errbuf, errlen, MFD_ERANGE,
					       "range %u page %" PRIu64 " (GPA 0x%" PRIx64 "): frame "
					       "word 0x%" PRIx64 ", expected 0x%" PRIx64, r, j, gpa,
					       frame, gpa >> TVM_PAGE_SHIFT);
			if (j == 0) {
				sweep = s;
				continue;
			}
			/* Run one: pages that hold sweep; then run two: pages that hold sweep-1. */
			if (done == n && s == sweep)
				continue;
			if (done == n && sweep > 0 && s == sweep - 1) {
				done = j;
				continue;
			}
			if (done < n && s == sweep - 1)
				continue;
			if (done == n)
				return vm__err(errbuf, errlen, MFD_ERANGE,
					       "range %u page %" PRIu64 " (GPA 0x%" PRIx64 ") holds "
					       "sweep %" PRIu64 " after pages of sweep %" PRIu64
					       " (expected %" PRIu64 " or %" PRIu64 ")", r, j, gpa,
					       s, sweep, sweep, sweep ? sweep - 1 : 0);
			return vm__err(errbuf, errlen, MFD_ERANGE,
				       "range %u page %" PRIu64 " (GPA 0x%" PRIx64 ") holds sweep %"
				       PRIu64 " but pages %" PRIu64 "..%" PRIu64 " hold %" PRIu64
				       " (expected %" PRIu64 ")", r, j, gpa, s, done, j - 1,
				       sweep - 1, sweep - 1);
		}
		res[r] = (struct vm_dirty_result){ .sweep = sweep, .pages_done = done, .pages = n };
	}
	return 0;
}

int vm_verify_dirty_pattern(struct vm *vm, struct vm_dirty_result *res, char *errbuf,
			    size_t errlen)
{
	pthread_mutex_lock(&vm->lock);
	bool running = vm->state == VM_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	if (running)
		return vm__err(errbuf, errlen, -EINVAL, "pause the VM before verifying its RAM");
	if (vm->opts.workload != VM_WORKLOAD_DIRTY)
		return vm__err(errbuf, errlen, -EINVAL, "the workload is not dirty");
	return vm_dirty_verify_image(vm->regions, vm->nr_regions, vm->dirty, vm->nr_dirty, res,
				     errbuf, errlen);
}

/* ---- device state ------------------------------------------------------------------------- */

size_t vm__rec_size(uint32_t len)
{
	return REC_HDR_BYTES + (((size_t)len + 7) & ~(size_t)7);
}

void *vm__rec_put(struct vm_wbuf *w, uint32_t type, uint32_t vcpu, uint32_t len)
{
	size_t need = vm__rec_size(len);
	if (w->err || w->len - w->pos < need) {
		w->err = -ENOSPC;
		return NULL;
	}
	uint8_t *p = w->buf + w->pos;
	memset(p, 0, need);
	put_le32(p, type);
	put_le32(p + 4, vcpu);
	put_le32(p + 8, len);
	w->pos += need;
	return p + REC_HDR_BYTES;
}

static size_t workload_rec_bytes(const struct vm *vm)
{
	return 8 + 16 * (size_t)vm->nr_dirty;
}

size_t vm_state_size(struct vm *vm)
{
	return STATE_HDR_BYTES + vm__rec_size((uint32_t)workload_rec_bytes(vm)) +
	       vm->nr_vcpus * vm__rec_size(SERIAL_REC_BYTES) + vm->ops->state_size(vm);
}

int vm_state_save(struct vm *vm, void *buf, size_t len, size_t *used)
{
	*used = 0;
	pthread_mutex_lock(&vm->lock);
	bool running = vm->state == VM_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	if (running)
		return -EINVAL;
	if (len < STATE_HDR_BYTES)
		return -ENOSPC;

	struct vm_wbuf w = { .buf = buf, .len = len, .pos = STATE_HDR_BYTES };
	uint8_t *p = vm__rec_put(&w, VM_REC_WORKLOAD, VM_REC_VM, (uint32_t)workload_rec_bytes(vm));
	if (p) {
		put_le32(p, (uint32_t)vm->opts.workload);
		put_le32(p + 4, vm->nr_dirty);
		for (unsigned i = 0; i < vm->nr_dirty; i++) {
			put_le64(p + 8 + 16 * i, vm->dirty[i].gpa);
			put_le64(p + 16 + 16 * i, vm->dirty[i].pages);
		}
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vm_vcpu *v = &vm->vcpus[i];
		p = vm__rec_put(&w, VM_REC_SERIAL, i, SERIAL_REC_BYTES);
		if (!p)
			break;
		put_le64(p, vm_serial_sweep(vm, i));
		put_le64(p + 8, vm_serial_gaps(vm, i));
		put_le32(p + 16, (uint32_t)v->line_len);
		memcpy(p + 24, v->line, v->line_len);
	}
	if (w.err)
		return w.err;
	int rc = vm->ops->state_save(vm, &w);
	if (rc < 0)
		return rc;
	if (w.err)
		return w.err;

	uint8_t *h = buf;
	put_le32(h, STATE_MAGIC);
	put_le16(h + 4, STATE_VERSION);
	put_le16(h + 6, STATE_HDR_BYTES);
	put_le32(h + 8, vm->ops->accel == VM_ACCEL_KVM ? 1 : 2);
	put_le32(h + 12, vm->nr_vcpus);
	put_le64(h + 16, vm->ram_bytes);
	put_le64(h + 24, w.pos - STATE_HDR_BYTES);
	put_le64(h + 32, mfd_digest(h + STATE_HDR_BYTES, w.pos - STATE_HDR_BYTES, STATE_MAGIC));
	*used = w.pos;
	return 0;
}

int vm_state_reseal(void *buf, size_t len)
{
	uint8_t *h = buf;
	if (len < STATE_HDR_BYTES)
		return MFD_ELENGTH;
	if (get_le32(h) != STATE_MAGIC)
		return MFD_EMAGIC;
	uint64_t body_len = get_le64(h + 24);
	if (body_len > len - STATE_HDR_BYTES)
		return MFD_ELENGTH;
	put_le64(h + 32, mfd_digest(h + STATE_HDR_BYTES, body_len, STATE_MAGIC));
	return 0;
}

static bool type_in(const uint32_t *list, uint32_t type)
{
	for (; list && *list; list++)
		if (*list == type)
			return true;
	return false;
}

static const uint32_t front_vm_records[] = { VM_REC_WORKLOAD, 0 };
static const uint32_t front_vcpu_records[] = { VM_REC_SERIAL, 0 };

static int check_front_rec(struct vm *vm, const struct vm_rec *r, char *errbuf, size_t errlen)
{
	if (r->type == VM_REC_WORKLOAD) {
		if (r->len != workload_rec_bytes(vm))
			return vm__err(errbuf, errlen, MFD_EBLOCKTABLE,
				       "workload record: %u bytes, expected %zu (different "
				       "workload or vCPU count)", r->len, workload_rec_bytes(vm));
		if (get_le32(r->data) != (uint32_t)vm->opts.workload ||
		    get_le32(r->data + 4) != vm->nr_dirty)
			return vm__err(errbuf, errlen, MFD_EBLOCKTABLE,
				       "workload record: workload %u with %u ranges, this VM runs "
				       "%u with %u", get_le32(r->data), get_le32(r->data + 4),
				       (unsigned)vm->opts.workload, vm->nr_dirty);
		for (unsigned i = 0; i < vm->nr_dirty; i++)
			if (get_le64(r->data + 8 + 16 * i) != vm->dirty[i].gpa ||
			    get_le64(r->data + 16 + 16 * i) != vm->dirty[i].pages)
				return vm__err(errbuf, errlen, MFD_EBLOCKTABLE,
					       "workload record: range %u differs (dirty size?)", i);
		return 0;
	}
	/* VM_REC_SERIAL */
	if (r->len != SERIAL_REC_BYTES)
		return vm__err(errbuf, errlen, MFD_ELENGTH, "serial record of vCPU %u: %u bytes, "
			       "expected %d", r->vcpu, r->len, SERIAL_REC_BYTES);
	if (get_le32(r->data + 16) > VM_SERIAL_LINE_MAX || get_le32(r->data + 20))
		return vm__err(errbuf, errlen, MFD_ERANGE, "serial record of vCPU %u: line length "
			       "%u (max %d), reserved 0x%x", r->vcpu, get_le32(r->data + 16),
			       VM_SERIAL_LINE_MAX, get_le32(r->data + 20));
	return 0;
}

/* Walk the records of a checked header into recs[(vcpu + 1) * VM_REC_TYPES + type] (vcpu + 1:
 * slot 0 holds the VM-wide ones), checking bounds, padding, types, indices and duplicates. */
static int index_records(struct vm *vm, const uint8_t *body, size_t body_len,
			 struct vm_rec *recs, char *errbuf, size_t errlen)
{
	size_t pos = 0;
	while (pos < body_len) {
		if (body_len - pos < REC_HDR_BYTES)
			return vm__err(errbuf, errlen, MFD_ELENGTH,
				       "record at offset %zu: truncated header", pos);
		const uint8_t *h = body + pos;
		uint32_t type = get_le32(h), vcpu = get_le32(h + 4), len = get_le32(h + 8);
		if (get_le32(h + 12))
			return vm__err(errbuf, errlen, MFD_ERANGE,
				       "record at offset %zu: reserved field not zero", pos);
		size_t avail = body_len - pos - REC_HDR_BYTES;
		size_t padded = ((size_t)len + 7) & ~(size_t)7;
		if (len > avail || padded > avail)
			return vm__err(errbuf, errlen, MFD_ELENGTH,
				       "record %s at offset %zu: %u bytes, only %zu left",
				       rec_name(type), pos, len, avail);
		for (size_t i = len; i < padded; i++)
			if (h[REC_HDR_BYTES + i])
				return vm__err(errbuf, errlen, MFD_ELENGTH,
					       "record %s at offset %zu: padding not zero",
					       rec_name(type), pos);
		bool vm_wide = type_in(front_vm_records, type) || type_in(vm->ops->vm_records, type);
		bool per_vcpu = type_in(front_vcpu_records, type) ||
				type_in(vm->ops->vcpu_records, type);
		if (!vm_wide && !per_vcpu)
			return vm__err(errbuf, errlen, MFD_ETYPE,
				       "record at offset %zu: type %u (%s) is not used by a %s VM",
				       pos, type, rec_name(type), vm->ops->name);
		if (vm_wide ? vcpu != VM_REC_VM : vcpu >= vm->nr_vcpus)
			return vm__err(errbuf, errlen, MFD_ERANGE,
				       "record %s at offset %zu: vCPU index %u out of range",
				       rec_name(type), pos, vcpu);
		struct vm_rec *slot = &recs[(vm_wide ? 0 : (size_t)vcpu + 1) * VM_REC_TYPES + type];
		if (slot->data)
			return vm__err(errbuf, errlen, MFD_ETYPE,
				       "record %s for vCPU %d appears twice", rec_name(type),
				       vm_wide ? -1 : (int)vcpu);
		*slot = (struct vm_rec){ .type = type, .vcpu = vcpu, .len = len,
					 .data = h + REC_HDR_BYTES };
		pos += REC_HDR_BYTES + padded;
	}
	return 0;
}

static int require_records(struct vm *vm, const struct vm_rec *recs, char *errbuf, size_t errlen)
{
	for (unsigned i = 0; i <= vm->nr_vcpus; i++) {
		const uint32_t *lists[2] = { i ? front_vcpu_records : front_vm_records,
					     i ? vm->ops->vcpu_records : vm->ops->vm_records };
		for (int l = 0; l < 2; l++)
			for (const uint32_t *t = lists[l]; t && *t; t++)
				if (!recs[(size_t)i * VM_REC_TYPES + *t].data)
					return vm__err(errbuf, errlen, MFD_ETYPE,
						       "record %s%s%d is missing", rec_name(*t),
						       i ? " of vCPU " : "", i ? (int)i - 1 : 0);
	}
	return 0;
}

int vm_state_load(struct vm *vm, const void *buf, size_t len, char *errbuf, size_t errlen)
{
	const uint8_t *h = buf;
	int rc;

	pthread_mutex_lock(&vm->lock);
	bool created = vm->state == VM_CREATED;
	pthread_mutex_unlock(&vm->lock);
	if (!created)
		return vm__err(errbuf, errlen, -EINVAL,
			       "state can only be loaded into a VM that was never started");

	if (len < STATE_HDR_BYTES)
		return vm__err(errbuf, errlen, MFD_ELENGTH, "state buffer of %zu bytes is shorter "
			       "than its header", len);
	if (get_le32(h) != STATE_MAGIC)
		return vm__err(errbuf, errlen, MFD_EMAGIC, "not a tinyvm state buffer (magic 0x%08x)",
			       get_le32(h));
	if (get_le16(h + 4) != STATE_VERSION)
		return vm__err(errbuf, errlen, MFD_EVERSION, "state version %u, this build reads %d",
			       get_le16(h + 4), STATE_VERSION);
	if (get_le16(h + 6) != STATE_HDR_BYTES)
		return vm__err(errbuf, errlen, MFD_ELENGTH, "state header of %u bytes, expected %d",
			       get_le16(h + 6), STATE_HDR_BYTES);
	uint32_t accel = get_le32(h + 8), want = vm->ops->accel == VM_ACCEL_KVM ? 1 : 2;
	if (accel != want)
		return vm__err(errbuf, errlen, MFD_EBLOCKTABLE, "state of a %s VM, this VM is %s",
			       accel == 1 ? "kvm" : accel == 2 ? "soft" : "unknown",
			       vm->ops->name);
	if (get_le32(h + 12) != vm->nr_vcpus || get_le64(h + 16) != vm->ram_bytes)
		return vm__err(errbuf, errlen, MFD_EBLOCKTABLE,
			       "state of a VM with %u vCPUs and %" PRIu64 " bytes of RAM, this one "
			       "has %u and %" PRIu64, get_le32(h + 12), get_le64(h + 16),
			       vm->nr_vcpus, vm->ram_bytes);
	uint64_t body_len = get_le64(h + 24);
	if (body_len > len - STATE_HDR_BYTES)
		return vm__err(errbuf, errlen, MFD_ELENGTH, "state body of %" PRIu64 " bytes, the "
			       "buffer holds %zu", body_len, len - STATE_HDR_BYTES);
	if (mfd_digest(h + STATE_HDR_BYTES, body_len, STATE_MAGIC) != get_le64(h + 32))
		return vm__err(errbuf, errlen, MFD_ECHECKSUM, "state buffer checksum mismatch");

	struct vm_rec *recs = calloc((size_t)(vm->nr_vcpus + 1) * VM_REC_TYPES, sizeof(*recs));
	if (!recs)
		return vm__err(errbuf, errlen, -ENOMEM, "out of memory");
	rc = index_records(vm, h + STATE_HDR_BYTES, body_len, recs, errbuf, errlen);
	if (rc < 0)
		goto out;
	rc = require_records(vm, recs, errbuf, errlen);
	if (rc < 0)
		goto out;

	/* Check every record's content before anything is applied. */
	for (size_t i = 0; i < (size_t)(vm->nr_vcpus + 1) * VM_REC_TYPES; i++) {
		const struct vm_rec *r = &recs[i];
		if (!r->data)
			continue;
		if (r->type == VM_REC_WORKLOAD || r->type == VM_REC_SERIAL)
			rc = check_front_rec(vm, r, errbuf, errlen);
		else
			rc = vm->ops->state_check(vm, r, errbuf, errlen);
		if (rc < 0)
			goto out;
	}

	/* Apply. */
	const struct vm_rec *table[VM_REC_TYPES];
	for (unsigned t = 0; t < VM_REC_TYPES; t++)
		table[t] = recs[t].data ? &recs[t] : NULL;
	rc = vm->ops->state_apply(vm, NULL, table, errbuf, errlen);
	if (rc < 0)
		goto out;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vm_vcpu *v = &vm->vcpus[i];
		for (unsigned t = 0; t < VM_REC_TYPES; t++) {
			struct vm_rec *r = &recs[(size_t)(i + 1) * VM_REC_TYPES + t];
			table[t] = r->data ? r : NULL;
		}
		const uint8_t *s = table[VM_REC_SERIAL]->data;
		__atomic_store_n(&v->serial_sweep, get_le64(s), __ATOMIC_RELAXED);
		__atomic_store_n(&v->serial_gaps, get_le64(s + 8), __ATOMIC_RELAXED);
		v->line_len = get_le32(s + 16);
		memcpy(v->line, s + 24, v->line_len);
		rc = vm->ops->state_apply(vm, v, table, errbuf, errlen);
		if (rc < 0)
			goto out;
	}
	vm->loaded = true;
out:
	free(recs);
	return rc;
}
