/*
 * vmm/vm — the tinyvm front: options, guest RAM, creation through a backend, accessors and
 * destruction.
 *
 * The backends (kvm.c, soft.c) only run vCPUs; everything that must behave the same whichever
 * backend runs the guest lives in the front's modules: this one, boot.c (the long-mode boot
 * area and the boot sector), vm_run.c (run control shared by the vCPU threads), serial.c (COM1
 * output), workload.c (the dirty workload's ranges and pattern verifier) and vm_state.c (the
 * device-state format).  See vm.h for the API and vm_priv.h for how the vCPU threads cooperate
 * with the control operations.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include "vm_priv.h"

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

int vm_opts_check(const struct vm_opts *o, char *errbuf, size_t errlen)
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
	rc = vm_opts_check(o, errbuf, errlen);
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
	if (rc == 0 && (rc = pthread_cond_init(&vm->serial_cond, &ca)))
		pthread_cond_destroy(&vm->cond);
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
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
	if (o->prealloc && madvise(vm->ram, vm->ram_bytes, MADV_POPULATE_WRITE)) {
		rc = vm__err(errbuf, errlen, -errno, "cannot preallocate %" PRIu64 " MiB of guest "
			     "RAM: %s%s", vm->ram_bytes >> 20, strerror(errno),
			     errno == EINVAL ? " (MADV_POPULATE_WRITE needs Linux 5.14)" : "");
		goto err_unmap;
	}
	vm->regions[0] = (struct vm_region){ .name = "ram0", .host = vm->ram, .gpa = 0,
					     .size = vm->ram_bytes, .kvm_slot = VM_NO_SLOT };
	vm->nr_regions = 1;
	if (o->workload == VM_WORKLOAD_DIRTY)
		vm__workload_init(vm);

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
	pthread_cond_destroy(&vm->serial_cond);
	pthread_cond_destroy(&vm->cond);
	free(vm);
	return rc;
}

/* ---- accessors ---------------------------------------------------------------------------- */

enum vm_accel vm_accel(const struct vm *vm)
{
	return vm->ops->accel;
}

void vm_describe(const struct vm *vm, char *buf, size_t len)
{
	const struct vm_opts *o = &vm->opts;
	int n = snprintf(buf, len, "tinyvm accel=%s vcpus=%u", vm_accel_name(vm_accel(vm)),
			 vm->nr_vcpus);
	if (n < 0 || (size_t)n >= len)
		return;
	if (o->workload == VM_WORKLOAD_BOOT_SECTOR) {
		uint32_t sum = 0;	/* FNV-1a: which image, not a defence */
		for (size_t i = 0; i < o->boot_sector_len; i++)
			sum = (sum ^ vm->boot_image[i]) * 16777619u;
		snprintf(buf + n, len - (size_t)n, " workload=boot-sector:%08x", sum);
	} else if (o->workload == VM_WORKLOAD_IDLE) {
		snprintf(buf + n, len - (size_t)n, " workload=idle");
	} else {
		snprintf(buf + n, len - (size_t)n, " workload=dirty:%llu",
			 (unsigned long long)o->dirty_bytes);
	}
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

/* ---- destruction -------------------------------------------------------------------------- */

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	vm__stop_threads(vm, VM_STOP_DESTROY);
	vm__serial_stop(vm);
	vm->ops->fini(vm);
	munmap(vm->ram, vm->ram_bytes);
	pthread_mutex_destroy(&vm->serial_lock);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->serial_cond);
	pthread_cond_destroy(&vm->cond);
	free(vm);
}
