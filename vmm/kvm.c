/*
 * vmm/kvm — the KVM backend of tinyvm.
 *
 * Setup: /dev/kvm, KVM_CREATE_VM, an in-kernel irqchip (so vCPUs have a LAPIC whose state can
 * be saved, and HLT sleeps in the kernel instead of exiting), one memory slot per RAM region
 * created with flags 0, and one vCPU per struct vm_vcpu with the host's supported CPUID (APIC
 * ids patched).  Long-mode workloads start with segment, control registers and EFER set through
 * KVM_SET_SREGS (the page tables and GDT are in guest RAM, see layout.h); a boot sector starts in
 * real mode at 0000:7c00 with DL = 0x80.
 *
 * vCPU threads.  Each runs KVM_RUN in a loop and handles port I/O itself.  To get a thread out
 * of KVM_RUN the kicker stores kvm_run.immediate_exit = 1 and then sends KICK_SIGNAL to it: if
 * the thread is inside KVM_RUN the signal interrupts it (-EINTR); if it is about to enter,
 * immediate_exit makes KVM return at once, so no kick is lost.  A per-thread POSIX timer sends
 * the same signal (and its handler sets immediate_exit through a thread-local pointer) to end
 * throttle run slices and to wake the thread every HALT_TICK_NS.  Kicks are only hints: after
 * every return from KVM_RUN the thread re-evaluates pause, stop, throttle and tick from their
 * state, so a kick that races with an exit costs nothing.
 *
 * Halt.  With the in-kernel irqchip HLT never exits to userspace, so on each tick a vCPU asks
 * KVM for its mp_state: HALTED with IF = 0, or an AP that never received SIPI, is "off"
 * (nothing in tinyvm can wake it: there are no interrupt sources).  When every vCPU is off the
 * VM stops with VM_STOP_HALT, at most one tick after the last HLT.  (An off vCPU keeps sitting
 * in KVM_RUN, so an IPI from another vCPU still wakes it and it becomes on again.)
 *
 * Pause.  Port I/O completes on the next KVM_RUN, so before parking a thread re-enters KVM_RUN
 * with immediate_exit = 1 until KVM has nothing pending (a rep outsb may need several rounds);
 * the registers are then architecturally consistent and can be saved.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "vm_priv.h"

#define KICK_SIGNAL	(SIGRTMIN + 3)
#define HALT_TICK_NS	100000000ull	/* 100 ms */
#define TSS_GPA		0xfffbd000ull	/* 3 pages KVM needs on Intel for real-mode emulation */
#define MAX_MSRS	32
#define MAX_PARK_ROUNDS	4096

#define RFLAGS_IF	0x200ull

/* The MSRs saved with a vCPU, when the host's KVM lists them and can read them.  FS/GS base
 * travel in the segment registers (SREGS); the TSC deadline is not armed by tinyvm guests. */
static const uint32_t msr_wanted[] = {
	0x00000010,	/* TSC */
	0x00000174,	/* SYSENTER_CS */
	0x00000175,	/* SYSENTER_ESP */
	0x00000176,	/* SYSENTER_EIP */
	0x000001a0,	/* MISC_ENABLE */
	0x00000277,	/* PAT */
	0xc0000080,	/* EFER */
	0xc0000081,	/* STAR */
	0xc0000082,	/* LSTAR */
	0xc0000083,	/* CSTAR */
	0xc0000084,	/* FMASK */
	0xc0000102,	/* KERNEL_GS_BASE */
	0xc0000103,	/* TSC_AUX */
};

/* struct kvm_msrs ends in a flexible array: a buffer with room for MAX_MSRS entries. */
union msr_buf {
	struct kvm_msrs h;
	uint8_t bytes[sizeof(struct kvm_msrs) + MAX_MSRS * sizeof(struct kvm_msr_entry)];
};

struct kvm_cpu {
	int fd;
	struct kvm_run *run;		/* mmap of run_size bytes */
	struct kvm_cpuid2 *cpuid;	/* this vCPU's CPUID (APIC id patched) */
	/* vCPU-thread private: */
	timer_t timer;
	bool has_timer;
	uint64_t armed_ns;		/* deadline the timer is armed for, 0 = disarmed */
	uint64_t next_tick_ns;		/* next halt check */
	bool io_pending;		/* last exit was I/O: it completes in the next KVM_RUN */
	bool off;			/* what we last told vm__vcpu_set_off */
};

struct kvm_vm {
	int sys_fd;
	int vm_fd;
	size_t run_size;
	size_t xsave_size;		/* KVM_CAP_XSAVE2, at least sizeof(struct kvm_xsave) */
	bool xsave2;
	uint32_t msrs[MAX_MSRS];	/* msr_wanted the host supports, set at init */
	unsigned nr_msrs;
	struct kvm_cpu cpus[VM_MAX_VCPUS];

	/* Devices: the UART registers and port 0x92, protected by uart_lock. */
	pthread_mutex_t uart_lock;
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr, a20;
};

/* The running vCPU's kvm_run, for the signal handler.  initial-exec: the handler must not
 * allocate TLS. */
static __thread struct kvm_run *tls_run __attribute__((tls_model("initial-exec")));

static void kick_handler(int sig)
{
	struct kvm_run *run = tls_run;
	if (run)
		__atomic_store_n(&run->immediate_exit, 1, __ATOMIC_SEQ_CST);
}

/* The kick signal's handler is process-wide by nature; install it once, for every VM. */
static pthread_once_t kick_once = PTHREAD_ONCE_INIT;
static int kick_install_err;

static void kick_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sa.sa_flags = SA_RESTART;	/* KVM_RUN still returns -EINTR; other calls resume */
	sigemptyset(&sa.sa_mask);
	if (sigaction(KICK_SIGNAL, &sa, NULL) < 0)
		kick_install_err = errno;
}

static struct kvm_vm *kvm_of(struct vm *vm)
{
	return vm->priv;
}

static struct kvm_cpu *cpu_of(struct vm_vcpu *v)
{
	return v->priv;
}

/* ---- setup -------------------------------------------------------------------------------- */

static int get_supported_cpuid(struct kvm_vm *k, struct kvm_cpuid2 **out, char *errbuf,
			       size_t errlen)
{
	for (unsigned n = 64; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return vm__err(errbuf, errlen, -ENOMEM, "out of memory");
		c->nent = n;
		if (ioctl(k->sys_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			*out = c;
			return 0;
		}
		int err = errno;
		free(c);
		if (err != E2BIG)
			return vm__err(errbuf, errlen, -err, "KVM_GET_SUPPORTED_CPUID: %s",
				       strerror(err));
	}
	return vm__err(errbuf, errlen, -E2BIG, "KVM_GET_SUPPORTED_CPUID: too many entries");
}

static struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *base, unsigned index)
{
	size_t bytes = sizeof(*base) + base->nent * sizeof(base->entries[0]);
	struct kvm_cpuid2 *c = malloc(bytes);
	if (!c)
		return NULL;
	memcpy(c, base, bytes);
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == 1)		/* initial APIC id */
			e->ebx = (e->ebx & 0x00ffffffu) | index << 24;
		if (e->function == 0xb || e->function == 0x1f)	/* x2APIC id */
			e->edx = index;
	}
	return c;
}

/* Keep the wanted MSRs that KVM lists and that vCPU 0 can actually read and write back. */
static int probe_msrs(struct kvm_vm *k, char *errbuf, size_t errlen)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	if (ioctl(k->sys_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return vm__err(errbuf, errlen, -errno, "KVM_GET_MSR_INDEX_LIST: %s",
			       strerror(errno));
	struct kvm_msr_list *list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
	if (!list)
		return vm__err(errbuf, errlen, -ENOMEM, "out of memory");
	list->nmsrs = probe.nmsrs;
	if (ioctl(k->sys_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		int err = errno;
		free(list);
		return vm__err(errbuf, errlen, -err, "KVM_GET_MSR_INDEX_LIST: %s", strerror(err));
	}
	k->nr_msrs = 0;
	for (size_t w = 0; w < sizeof(msr_wanted) / sizeof(msr_wanted[0]); w++) {
		bool listed = false;
		for (uint32_t i = 0; i < list->nmsrs; i++)
			listed |= list->indices[i] == msr_wanted[w];
		if (!listed)
			continue;
		union msr_buf one;
		memset(&one, 0, sizeof(one));
		one.h.nmsrs = 1;
		one.h.entries[0].index = msr_wanted[w];
		if (ioctl(k->cpus[0].fd, KVM_GET_MSRS, &one) != 1)
			continue;
		if (ioctl(k->cpus[0].fd, KVM_SET_MSRS, &one) != 1)
			continue;
		k->msrs[k->nr_msrs++] = msr_wanted[w];
	}
	free(list);
	return 0;
}

static int need_cap(struct kvm_vm *k, int cap, const char *name, char *errbuf, size_t errlen)
{
	if (ioctl(k->sys_fd, KVM_CHECK_EXTENSION, cap) > 0)
		return 0;
	return vm__err(errbuf, errlen, -ENODEV, "kvm: this KVM lacks %s", name);
}

static int kvm_init(struct vm *vm, char *errbuf, size_t errlen)
{
	int rc;
	struct kvm_cpuid2 *cpuid = NULL;
	struct kvm_vm *k = calloc(1, sizeof(*k));
	if (!k)
		return vm__err(errbuf, errlen, -ENOMEM, "out of memory");
	vm->priv = k;
	k->sys_fd = -1;
	k->vm_fd = -1;
	for (unsigned i = 0; i < VM_MAX_VCPUS; i++)
		k->cpus[i].fd = -1;
	pthread_mutex_init(&k->uart_lock, NULL);
	k->a20 = 0x02;		/* A20 enabled: KVM never masks it anyway */
	k->lcr = 0x03;		/* 8N1 */

	pthread_once(&kick_once, kick_install);
	if (kick_install_err)
		return vm__err(errbuf, errlen, -kick_install_err, "sigaction: %s",
			       strerror(kick_install_err));

	k->sys_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->sys_fd < 0)
		return vm__err(errbuf, errlen, -ENODEV, "kvm: /dev/kvm: %s", strerror(errno));
	errno = 0;
	if (ioctl(k->sys_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		return vm__err(errbuf, errlen, -ENODEV, "kvm: /dev/kvm: KVM_GET_API_VERSION: %s",
			       errno ? strerror(errno) : "unexpected version");
	k->vm_fd = ioctl(k->sys_fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0)
		return vm__err(errbuf, errlen, -ENODEV, "kvm: KVM_CREATE_VM: %s", strerror(errno));

	static const struct { int cap; const char *name; } caps[] = {
		{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
		{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
		{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
		{ KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE" },
		{ KVM_CAP_XSAVE, "KVM_CAP_XSAVE" },
		{ KVM_CAP_XCRS, "KVM_CAP_XCRS" },
		{ KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS" },
		{ KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS" },
		{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	};
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		rc = need_cap(k, caps[i].cap, caps[i].name, errbuf, errlen);
		if (rc < 0)
			return rc;
	}
	int xs = ioctl(k->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	k->xsave2 = xs > 0;
	k->xsave_size = xs > (int)sizeof(struct kvm_xsave) ? (size_t)xs : sizeof(struct kvm_xsave);

	int run_size = ioctl(k->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(struct kvm_run))
		return vm__err(errbuf, errlen, -ENODEV, "kvm: KVM_GET_VCPU_MMAP_SIZE: %s",
			       strerror(errno));
	k->run_size = (size_t)run_size;

	/* The TSS pages must not overlap a memory slot; with RAM reaching past them (close to
	 * 4 GiB or more) leave them out: only CPUs without unrestricted-guest need them, for
	 * real mode. */
	if (vm->ram_bytes <= TSS_GPA && ioctl(k->vm_fd, KVM_SET_TSS_ADDR, TSS_GPA) < 0)
		return vm__err(errbuf, errlen, -errno, "kvm: KVM_SET_TSS_ADDR: %s", strerror(errno));
	if (ioctl(k->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return vm__err(errbuf, errlen, -errno, "kvm: KVM_CREATE_IRQCHIP: %s",
			       strerror(errno));

	for (unsigned i = 0; i < vm->nr_regions; i++) {
		struct vm_region *r = &vm->regions[i];
		struct kvm_userspace_memory_region mr = {
			.slot = i, .flags = 0, .guest_phys_addr = r->gpa,
			.memory_size = r->size, .userspace_addr = (uintptr_t)r->host,
		};
		if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0)
			return vm__err(errbuf, errlen, -errno,
				       "kvm: KVM_SET_USER_MEMORY_REGION slot %u: %s", i,
				       strerror(errno));
		r->kvm_slot = i;
		r->kvm_flags = 0;
	}

	rc = get_supported_cpuid(k, &cpuid, errbuf, errlen);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct kvm_cpu *c = &k->cpus[i];
		vm->vcpus[i].priv = c;
		c->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, i);
		if (c->fd < 0) {
			rc = vm__err(errbuf, errlen, -errno, "kvm: KVM_CREATE_VCPU %u: %s", i,
				     strerror(errno));
			goto out;
		}
		c->run = mmap(NULL, k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
		if (c->run == MAP_FAILED) {
			c->run = NULL;
			rc = vm__err(errbuf, errlen, -errno, "kvm: mmap of vCPU %u: %s", i,
				     strerror(errno));
			goto out;
		}
		c->cpuid = cpuid_for_vcpu(cpuid, i);
		if (!c->cpuid) {
			rc = vm__err(errbuf, errlen, -ENOMEM, "out of memory");
			goto out;
		}
		if (ioctl(c->fd, KVM_SET_CPUID2, c->cpuid) < 0) {
			rc = vm__err(errbuf, errlen, -errno, "kvm: KVM_SET_CPUID2 on vCPU %u: %s", i,
				     strerror(errno));
			goto out;
		}
	}
	rc = probe_msrs(k, errbuf, errlen);
out:
	free(cpuid);
	return rc;
}

static void kvm_fini(struct vm *vm)
{
	struct kvm_vm *k = kvm_of(vm);
	if (!k)
		return;
	for (unsigned i = 0; i < VM_MAX_VCPUS; i++) {
		struct kvm_cpu *c = &k->cpus[i];
		if (c->run)
			munmap(c->run, k->run_size);
		if (c->fd >= 0)
			close(c->fd);
		free(c->cpuid);
	}
	if (k->vm_fd >= 0)
		close(k->vm_fd);
	if (k->sys_fd >= 0)
		close(k->sys_fd);
	pthread_mutex_destroy(&k->uart_lock);
	free(k);
	vm->priv = NULL;
}

int vm_kvm_fd(const struct vm *vm)
{
	if (vm->ops != &vm_kvm_backend)
		return -1;
	return ((const struct kvm_vm *)vm->priv)->vm_fd;
}

/* ---- fresh start -------------------------------------------------------------------------- */

static void set_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type, .present = 1,
		.dpl = 0, .db = code64 ? 0 : 1, .s = 1, .l = code64 ? 1 : 0, .g = 1,
	};
}

static int boot_long_mode(struct vm *vm, struct vm_vcpu *v, char *errbuf, size_t errlen)
{
	struct kvm_cpu *c = cpu_of(v);
	struct kvm_sregs sr;
	if (ioctl(c->fd, KVM_GET_SREGS, &sr) < 0)
		return vm__err(errbuf, errlen, -errno, "KVM_GET_SREGS: %s", strerror(errno));
	set_seg(&sr.cs, TVM_SEL_CODE64, 0xb, true);
	set_seg(&sr.ds, TVM_SEL_DATA, 0x3, false);
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	sr.gdt.base = TVM_GDT_GPA;
	sr.gdt.limit = 4 * 8 - 1;
	sr.idt.base = 0;
	sr.idt.limit = 0;		/* any exception ends in a triple fault: an error exit */
	sr.cr0 = 0x80050033;		/* PG WP NE ET MP PE */
	sr.cr3 = TVM_PML4_GPA;
	sr.cr4 = 0x620;			/* OSXMMEXCPT OSFXSR PAE */
	sr.efer = 0x500;		/* LMA LME */
	if (ioctl(c->fd, KVM_SET_SREGS, &sr) < 0)
		return vm__err(errbuf, errlen, -errno, "KVM_SET_SREGS (long mode): %s",
			       strerror(errno));

	struct kvm_regs r = {
		.rip = TVM_CODE_GPA, .rflags = 0x2, .rdi = v->index,
		.rsp = TVM_STACK_GPA + (uint64_t)(v->index + 1) * TVM_STACK_SIZE,
	};
	if (ioctl(c->fd, KVM_SET_REGS, &r) < 0)
		return vm__err(errbuf, errlen, -errno, "KVM_SET_REGS: %s", strerror(errno));
	/* Application processors wait for INIT/SIPI with an in-kernel LAPIC; ours start at once. */
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	if (ioctl(c->fd, KVM_SET_MP_STATE, &mp) < 0)
		return vm__err(errbuf, errlen, -errno, "KVM_SET_MP_STATE: %s", strerror(errno));
	return 0;
}

/* Real mode at 0000:7c00 with flat 64 KiB segments, as a BIOS leaves it (DL = boot drive). */
static int boot_real_mode(struct vm_vcpu *v, char *errbuf, size_t errlen)
{
	struct kvm_cpu *c = cpu_of(v);
	struct kvm_sregs sr;
	if (ioctl(c->fd, KVM_GET_SREGS, &sr) < 0)
		return vm__err(errbuf, errlen, -errno, "KVM_GET_SREGS: %s", strerror(errno));
	struct kvm_segment *segs[] = { &sr.cs, &sr.ds, &sr.es, &sr.fs, &sr.gs, &sr.ss };
	for (size_t i = 0; i < sizeof(segs) / sizeof(segs[0]); i++) {
		segs[i]->selector = 0;
		segs[i]->base = 0;
		segs[i]->limit = 0xffff;
	}
	if (ioctl(c->fd, KVM_SET_SREGS, &sr) < 0)
		return vm__err(errbuf, errlen, -errno, "KVM_SET_SREGS (real mode): %s",
			       strerror(errno));
	struct kvm_regs r = { .rip = TVM_BOOT_SECTOR_GPA, .rflags = 0x2, .rdx = 0x80,
			      .rsp = TVM_BOOT_SECTOR_GPA };
	if (ioctl(c->fd, KVM_SET_REGS, &r) < 0)
		return vm__err(errbuf, errlen, -errno, "KVM_SET_REGS: %s", strerror(errno));
	return 0;
}

static int kvm_boot(struct vm *vm, char *errbuf, size_t errlen)
{
	if (vm->opts.workload == VM_WORKLOAD_BOOT_SECTOR)
		return boot_real_mode(&vm->vcpus[0], errbuf, errlen);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		int rc = boot_long_mode(vm, &vm->vcpus[i], errbuf, errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- devices ------------------------------------------------------------------------------ */

/* A 16550 with nothing attached to its receiver: transmit goes to the serial log, the line
 * status always says "transmitter empty", no interrupts are ever raised. */
static void uart_access(struct vm_vcpu *v, unsigned reg, bool out, uint8_t *val)
{
	struct kvm_vm *k = kvm_of(v->vm);
	bool transmit = false;
	uint8_t c = *val;

	pthread_mutex_lock(&k->uart_lock);
	bool dlab = k->lcr & 0x80;
	if (out) {
		switch (reg) {
		case 0: if (dlab) k->dll = c; else transmit = true; break;
		case 1: if (dlab) k->dlm = c; else k->ier = c & 0x0f; break;
		case 2: k->fcr = c; break;
		case 3: k->lcr = c; break;
		case 4: k->mcr = c & 0x1f; break;
		case 7: k->scr = c; break;
		default: break;		/* LSR, MSR: read-only */
		}
	} else {
		switch (reg) {
		case 0: *val = dlab ? k->dll : 0; break;
		case 1: *val = dlab ? k->dlm : k->ier; break;
		case 2: *val = (k->fcr & 1) ? 0xc1 : 0x01; break;	/* no interrupt pending */
		case 3: *val = k->lcr; break;
		case 4: *val = k->mcr; break;
		case 5: *val = 0x60; break;	/* THR empty, transmitter empty, no data */
		case 6: *val = 0xb0; break;	/* DCD, DSR, CTS */
		default: *val = k->scr; break;
		}
	}
	pthread_mutex_unlock(&k->uart_lock);
	if (transmit)
		vm__serial_out(v, &c, 1);
}

/* One port access of size bytes at data.  Returns -1 when the VM must stop. */
static int port_access(struct vm_vcpu *v, uint16_t port, bool out, uint8_t *data, unsigned size)
{
	struct vm *vm = v->vm;
	struct kvm_vm *k = kvm_of(vm);

	if (port >= TVM_PORT_COM1 && port < TVM_PORT_COM1 + 8) {
		uart_access(v, port - TVM_PORT_COM1, out, data);
		if (!out)
			memset(data + 1, 0xff, size - 1);
		return 0;
	}
	switch (port) {
	case TVM_PORT_SHUTDOWN:
		if (!out)
			break;
		uint32_t code = 0;
		for (unsigned i = 0; i < size; i++)
			code |= (uint32_t)data[i] << (8 * i);
		vm__request_stop(vm, VM_STOP_SHUTDOWN_PORT, code, NULL);
		return -1;
	case TVM_PORT_A20:
		pthread_mutex_lock(&k->uart_lock);
		if (out)
			k->a20 = data[0];
		else
			data[0] = k->a20;
		pthread_mutex_unlock(&k->uart_lock);
		if (!out)
			memset(data + 1, 0xff, size - 1);
		return 0;
	case TVM_PORT_POST:
		if (out)
			return 0;
		break;
	default:
		vm__count_unhandled_io(vm);
		break;
	}
	if (!out)
		memset(data, 0xff, size);	/* nothing drives the bus */
	return 0;
}

static int exit_io(struct vm_vcpu *v)
{
	struct kvm_vm *k = kvm_of(v->vm);
	struct kvm_run *run = cpu_of(v)->run;
	unsigned size = run->io.size;
	uint32_t count = run->io.count;
	uint64_t off = run->io.data_offset;
	bool out = run->io.direction == KVM_EXIT_IO_OUT;

	if ((size != 1 && size != 2 && size != 4) || off > k->run_size ||
	    (uint64_t)size * count > k->run_size - off) {
		vm__request_stop(v->vm, VM_STOP_ERROR, 0, "vcpu%u: malformed I/O exit", v->index);
		return -1;
	}
	uint8_t *data = (uint8_t *)run + off;
	/* rep outsb to the transmit register: the whole string in one go. */
	if (out && size == 1 && run->io.port == TVM_PORT_COM1) {
		pthread_mutex_lock(&k->uart_lock);
		bool dlab = k->lcr & 0x80;
		pthread_mutex_unlock(&k->uart_lock);
		if (!dlab) {
			vm__serial_out(v, data, count);
			return 0;
		}
	}
	for (uint32_t i = 0; i < count; i++)
		if (port_access(v, run->io.port, out, data + (size_t)i * size, size) < 0)
			return -1;
	return 0;
}

static uint64_t vcpu_rip(struct vm_vcpu *v)
{
	struct kvm_regs r;
	if (ioctl(cpu_of(v)->fd, KVM_GET_REGS, &r) < 0)
		return 0;
	return r.rip;
}

/* Handle the exit KVM_RUN just returned.  Returns -1 when the vCPU must stop. */
static int handle_exit(struct vm_vcpu *v)
{
	struct vm *vm = v->vm;
	struct kvm_cpu *c = cpu_of(v);
	struct kvm_run *run = c->run;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		c->io_pending = true;
		return exit_io(v);
	case KVM_EXIT_MMIO:
		/* Nothing is mapped outside RAM: reads float high, writes vanish. */
		c->io_pending = true;
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
		vm__count_unhandled_io(vm);
		return 0;
	case KVM_EXIT_SHUTDOWN:
		vm__request_stop(vm, VM_STOP_ERROR, 0, "vcpu%u: triple fault at rip 0x%" PRIx64,
				 v->index, vcpu_rip(v));
		return -1;
	case KVM_EXIT_HLT:	/* only without an in-kernel irqchip */
		vm__request_stop(vm, VM_STOP_HALT, 0, NULL);
		return -1;
	case KVM_EXIT_SYSTEM_EVENT:
		vm__request_stop(vm, VM_STOP_ERROR, 0, "vcpu%u: system event %u (reset or "
				 "shutdown) at rip 0x%" PRIx64, v->index, run->system_event.type,
				 vcpu_rip(v));
		return -1;
	case KVM_EXIT_FAIL_ENTRY:
		vm__request_stop(vm, VM_STOP_ERROR, 0, "vcpu%u: KVM entry failed, reason 0x%llx",
				 v->index, (unsigned long long)
				 run->fail_entry.hardware_entry_failure_reason);
		return -1;
	case KVM_EXIT_INTERNAL_ERROR:
		vm__request_stop(vm, VM_STOP_ERROR, 0, "vcpu%u: KVM internal error %u at rip 0x%"
				 PRIx64, v->index, run->internal.suberror, vcpu_rip(v));
		return -1;
	default:
		vm__request_stop(vm, VM_STOP_ERROR, 0, "vcpu%u: unexpected KVM exit %u at rip 0x%"
				 PRIx64, v->index, run->exit_reason, vcpu_rip(v));
		return -1;
	}
}

/* ---- the vCPU thread ---------------------------------------------------------------------- */

/* Is this vCPU halted for good?  Asked on ticks, from the vCPU's own thread. */
static void check_off(struct vm_vcpu *v)
{
	struct kvm_cpu *c = cpu_of(v);
	struct kvm_mp_state mp;
	bool off = false;
	if (ioctl(c->fd, KVM_GET_MP_STATE, &mp) < 0)
		return;
	if (mp.mp_state == KVM_MP_STATE_UNINITIALIZED || mp.mp_state == KVM_MP_STATE_INIT_RECEIVED) {
		off = true;
	} else if (mp.mp_state == KVM_MP_STATE_HALTED) {
		struct kvm_regs r;
		off = ioctl(c->fd, KVM_GET_REGS, &r) == 0 && !(r.rflags & RFLAGS_IF);
	}
	if (off != c->off) {
		c->off = off;
		vm__vcpu_set_off(v, off);
	}
}

static void arm_timer(struct vm_vcpu *v, uint64_t now)
{
	struct kvm_cpu *c = cpu_of(v);
	uint64_t want = c->next_tick_ns, slice_end = vm__vcpu_slice_end(v);
	if (slice_end && slice_end < want)
		want = slice_end;
	if (want <= now)
		want = now + 100000;	/* due already: fire right after entry */
	if (!c->has_timer || (want == c->armed_ns && c->armed_ns > now))
		return;
	struct itimerspec its = {
		.it_value = { .tv_sec = (time_t)(want / 1000000000ull),
			      .tv_nsec = (long)(want % 1000000000ull) },
	};
	if (timer_settime(c->timer, TIMER_ABSTIME, &its, NULL) == 0)
		c->armed_ns = want;
}

/* Complete pending port I/O so the registers are consistent, without running guest code. */
static void kvm_prepare_park(struct vm_vcpu *v)
{
	struct kvm_cpu *c = cpu_of(v);
	for (int round = 0; c->io_pending && round < MAX_PARK_ROUNDS; round++) {
		__atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		int rc = ioctl(c->fd, KVM_RUN, 0);
		int err = errno;
		__atomic_store_n(&c->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		c->io_pending = false;
		if (rc < 0) {
			if (err != EINTR && err != EAGAIN)
				vm__request_stop(v->vm, VM_STOP_ERROR, 0, "vcpu%u: KVM_RUN: %s",
						 v->index, strerror(err));
			return;
		}
		if (handle_exit(v) < 0)	/* a string instruction's next element */
			return;
	}
}

static void *kvm_vcpu_thread(void *arg)
{
	struct vm_vcpu *v = arg;
	struct vm *vm = v->vm;
	struct kvm_cpu *c = cpu_of(v);

	tls_run = c->run;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	struct sigevent sev;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = KICK_SIGNAL;
	sev._sigev_un._tid = gettid();
	c->has_timer = timer_create(CLOCK_MONOTONIC, &sev, &c->timer) == 0;
	c->armed_ns = 0;
	c->next_tick_ns = vm__now_ns() + HALT_TICK_NS;
	if (!c->has_timer) {
		vm__request_stop(vm, VM_STOP_ERROR, 0, "vcpu%u: timer_create: %s", v->index,
				 strerror(errno));
		goto out;
	}

	for (;;) {
		if (vm__vcpu_checkpoint(v))
			break;
		uint64_t now = vm__now_ns();
		if (now >= c->next_tick_ns) {
			c->next_tick_ns = now + HALT_TICK_NS;
			check_off(v);
		}
		arm_timer(v, now);

		int rc = ioctl(c->fd, KVM_RUN, 0);
		int err = errno;
		/* Whatever kick this was has done its job: conditions are re-read from state.  Any
		 * return from KVM_RUN has also completed the previous exit's I/O. */
		__atomic_store_n(&c->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		c->io_pending = false;
		if (rc < 0) {
			if (err == EINTR || err == EAGAIN)
				continue;
			vm__request_stop(vm, VM_STOP_ERROR, 0, "vcpu%u: KVM_RUN: %s", v->index,
					 strerror(err));
			break;
		}
		if (c->off) {		/* it ran guest code: on again */
			c->off = false;
			vm__vcpu_set_off(v, false);
		}
		if (handle_exit(v) < 0)
			break;
	}
	/* Leave the registers consistent for a state save after the stop. */
	kvm_prepare_park(v);
	timer_delete(c->timer);
	c->has_timer = false;
out:
	tls_run = NULL;
	vm__vcpu_exit(v);
	return NULL;
}

static void kvm_kick(struct vm_vcpu *v)
{
	struct kvm_cpu *c = cpu_of(v);
	__atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(v->thread, KICK_SIGNAL);
}

/* ---- state -------------------------------------------------------------------------------- */

#define PORTS_BYTES	8

static const uint32_t kvm_vcpu_records[] = {
	VM_REC_KVM_REGS, VM_REC_KVM_SREGS, VM_REC_KVM_XSAVE, VM_REC_KVM_XCRS, VM_REC_KVM_MSRS,
	VM_REC_KVM_LAPIC, VM_REC_KVM_EVENTS, VM_REC_KVM_DEBUGREGS, VM_REC_KVM_MP_STATE, 0
};
static const uint32_t kvm_vm_records[] = { VM_REC_KVM_PORTS, 0 };

static size_t msrs_bytes(unsigned n)
{
	return 8 + 16 * (size_t)n;
}

static size_t kvm_state_size(struct vm *vm)
{
	struct kvm_vm *k = kvm_of(vm);
	size_t per_cpu = vm__rec_size(sizeof(struct kvm_regs)) +
			 vm__rec_size(sizeof(struct kvm_sregs)) +
			 vm__rec_size((uint32_t)k->xsave_size) +
			 vm__rec_size(sizeof(struct kvm_xcrs)) +
			 vm__rec_size((uint32_t)msrs_bytes(k->nr_msrs)) +
			 vm__rec_size(sizeof(struct kvm_lapic_state)) +
			 vm__rec_size(sizeof(struct kvm_vcpu_events)) +
			 vm__rec_size(sizeof(struct kvm_debugregs)) +
			 vm__rec_size(sizeof(struct kvm_mp_state));
	return vm__rec_size(PORTS_BYTES) + vm->nr_vcpus * per_cpu;
}

/* Fetch one vCPU structure straight into a new record. */
static int save_ioctl(struct vm_wbuf *w, uint32_t type, struct vm_vcpu *v, unsigned long req,
		      size_t len)
{
	void *p = vm__rec_put(w, type, v->index, (uint32_t)len);
	if (!p)
		return -ENOSPC;
	if (ioctl(cpu_of(v)->fd, req, p) < 0)
		return -errno;
	return 0;
}

static int save_vcpu(struct vm *vm, struct vm_vcpu *v, struct vm_wbuf *w)
{
	struct kvm_vm *k = kvm_of(vm);
	struct kvm_cpu *c = cpu_of(v);
	int rc;

	if ((rc = save_ioctl(w, VM_REC_KVM_REGS, v, KVM_GET_REGS, sizeof(struct kvm_regs))) ||
	    (rc = save_ioctl(w, VM_REC_KVM_SREGS, v, KVM_GET_SREGS, sizeof(struct kvm_sregs))) ||
	    (rc = save_ioctl(w, VM_REC_KVM_XSAVE, v, k->xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE,
			     k->xsave_size)) ||
	    (rc = save_ioctl(w, VM_REC_KVM_XCRS, v, KVM_GET_XCRS, sizeof(struct kvm_xcrs))))
		return rc;

	uint8_t *p = vm__rec_put(w, VM_REC_KVM_MSRS, v->index, (uint32_t)msrs_bytes(k->nr_msrs));
	if (!p)
		return -ENOSPC;
	union msr_buf m;
	memset(&m, 0, sizeof(m));
	m.h.nmsrs = k->nr_msrs;
	for (unsigned i = 0; i < k->nr_msrs; i++)
		m.h.entries[i].index = k->msrs[i];
	rc = ioctl(c->fd, KVM_GET_MSRS, &m);
	if (rc < 0)
		return -errno;
	if ((unsigned)rc != k->nr_msrs)
		return -EIO;		/* MSR m.h.entries[rc].index became unreadable */
	uint32_t count = k->nr_msrs, zero = 0;
	memcpy(p, &count, 4);
	memcpy(p + 4, &zero, 4);
	for (unsigned i = 0; i < k->nr_msrs; i++) {
		memcpy(p + 8 + 16 * i, &m.h.entries[i].index, 4);
		memcpy(p + 12 + 16 * i, &zero, 4);
		memcpy(p + 16 + 16 * i, &m.h.entries[i].data, 8);
	}

	if ((rc = save_ioctl(w, VM_REC_KVM_LAPIC, v, KVM_GET_LAPIC,
			     sizeof(struct kvm_lapic_state))) ||
	    (rc = save_ioctl(w, VM_REC_KVM_EVENTS, v, KVM_GET_VCPU_EVENTS,
			     sizeof(struct kvm_vcpu_events))) ||
	    (rc = save_ioctl(w, VM_REC_KVM_DEBUGREGS, v, KVM_GET_DEBUGREGS,
			     sizeof(struct kvm_debugregs))) ||
	    (rc = save_ioctl(w, VM_REC_KVM_MP_STATE, v, KVM_GET_MP_STATE,
			     sizeof(struct kvm_mp_state))))
		return rc;
	return 0;
}

static int kvm_state_save(struct vm *vm, struct vm_wbuf *w)
{
	struct kvm_vm *k = kvm_of(vm);
	uint8_t *p = vm__rec_put(w, VM_REC_KVM_PORTS, VM_REC_VM, PORTS_BYTES);
	if (!p)
		return -ENOSPC;
	pthread_mutex_lock(&k->uart_lock);
	uint8_t ports[PORTS_BYTES] = { k->ier, k->lcr, k->mcr, k->scr, k->dll, k->dlm, k->fcr,
				       k->a20 };
	pthread_mutex_unlock(&k->uart_lock);
	memcpy(p, ports, PORTS_BYTES);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		int rc = save_vcpu(vm, &vm->vcpus[i], w);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int expect_len(const struct vm_rec *r, size_t len, char *errbuf, size_t errlen)
{
	if (r->len == len)
		return 0;
	return vm__err(errbuf, errlen, MFD_ELENGTH, "record type %u of vCPU %u: %u bytes, "
		       "expected %zu", r->type, r->vcpu, r->len, len);
}

static int kvm_state_check(struct vm *vm, const struct vm_rec *r, char *errbuf, size_t errlen)
{
	struct kvm_vm *k = kvm_of(vm);
	switch (r->type) {
	case VM_REC_KVM_PORTS:
		return expect_len(r, PORTS_BYTES, errbuf, errlen);
	case VM_REC_KVM_REGS:
		return expect_len(r, sizeof(struct kvm_regs), errbuf, errlen);
	case VM_REC_KVM_SREGS:
		return expect_len(r, sizeof(struct kvm_sregs), errbuf, errlen);
	case VM_REC_KVM_LAPIC:
		return expect_len(r, sizeof(struct kvm_lapic_state), errbuf, errlen);
	case VM_REC_KVM_EVENTS:
		return expect_len(r, sizeof(struct kvm_vcpu_events), errbuf, errlen);
	case VM_REC_KVM_XSAVE:
		if (r->len < sizeof(struct kvm_xsave) || r->len > k->xsave_size)
			return vm__err(errbuf, errlen, MFD_ELENGTH, "XSAVE area of vCPU %u: %u "
				       "bytes, this host takes %zu..%zu", r->vcpu, r->len,
				       sizeof(struct kvm_xsave), k->xsave_size);
		return 0;
	case VM_REC_KVM_XCRS: {
		struct kvm_xcrs x;
		int rc = expect_len(r, sizeof(x), errbuf, errlen);
		if (rc < 0)
			return rc;
		memcpy(&x, r->data, sizeof(x));
		if (x.nr_xcrs > KVM_MAX_XCRS || x.flags)
			return vm__err(errbuf, errlen, MFD_ERANGE, "XCRs of vCPU %u: count %u "
				       "(max %d), flags 0x%x", r->vcpu, x.nr_xcrs, KVM_MAX_XCRS,
				       x.flags);
		return 0;
	}
	case VM_REC_KVM_DEBUGREGS: {
		struct kvm_debugregs d;
		int rc = expect_len(r, sizeof(d), errbuf, errlen);
		if (rc < 0)
			return rc;
		memcpy(&d, r->data, sizeof(d));
		if (d.flags)
			return vm__err(errbuf, errlen, MFD_ERANGE, "debug registers of vCPU %u: "
				       "flags 0x%llx", r->vcpu, (unsigned long long)d.flags);
		return 0;
	}
	case VM_REC_KVM_MP_STATE: {
		struct kvm_mp_state mp;
		int rc = expect_len(r, sizeof(mp), errbuf, errlen);
		if (rc < 0)
			return rc;
		memcpy(&mp, r->data, sizeof(mp));
		if (mp.mp_state > KVM_MP_STATE_SIPI_RECEIVED)
			return vm__err(errbuf, errlen, MFD_ERANGE, "mp_state of vCPU %u: %u",
				       r->vcpu, mp.mp_state);
		return 0;
	}
	case VM_REC_KVM_MSRS: {
		uint32_t count, zero;
		if (r->len < 8)
			return expect_len(r, 8, errbuf, errlen);
		memcpy(&count, r->data, 4);
		memcpy(&zero, r->data + 4, 4);
		if (count > MAX_MSRS || zero)
			return vm__err(errbuf, errlen, MFD_ERANGE, "MSRs of vCPU %u: count %u "
				       "(max %d)", r->vcpu, count, MAX_MSRS);
		int rc = expect_len(r, msrs_bytes(count), errbuf, errlen);
		if (rc < 0)
			return rc;
		uint64_t seen = 0;	/* bit i: k->msrs[i] already present */
		for (uint32_t i = 0; i < count; i++) {
			uint32_t index, pad;
			memcpy(&index, r->data + 8 + 16 * i, 4);
			memcpy(&pad, r->data + 12 + 16 * i, 4);
			unsigned j = 0;
			while (j < k->nr_msrs && k->msrs[j] != index)
				j++;
			if (j == k->nr_msrs || pad || (seen & (1ull << j)))
				return vm__err(errbuf, errlen, MFD_ERANGE, "MSRs of vCPU %u: MSR "
					       "0x%x is unknown here, repeated or padded", r->vcpu,
					       index);
			seen |= 1ull << j;
		}
		return 0;
	}
	}
	return vm__err(errbuf, errlen, MFD_ETYPE, "record type %u is not a kvm record", r->type);
}

static int apply_ioctl(struct vm_vcpu *v, unsigned long req, const char *name,
		       const struct vm_rec *r, size_t size, char *errbuf, size_t errlen)
{
	/* Copy into an aligned buffer of the size KVM reads, zero-padded (XSAVE may be shorter
	 * than this host's area). */
	void *tmp = calloc(1, size);
	if (!tmp)
		return vm__err(errbuf, errlen, -ENOMEM, "out of memory");
	memcpy(tmp, r->data, r->len < size ? r->len : size);
	int rc = ioctl(cpu_of(v)->fd, req, tmp);
	int err = errno;
	free(tmp);
	if (rc < 0)
		return vm__err(errbuf, errlen, -err, "vCPU %u: %s refused the state: %s", v->index,
			       name, strerror(err));
	return 0;
}

static int kvm_state_apply(struct vm *vm, struct vm_vcpu *v, const struct vm_rec *const *recs,
			   char *errbuf, size_t errlen)
{
	struct kvm_vm *k = kvm_of(vm);
	int rc;
	if (!v) {
		const uint8_t *p = recs[VM_REC_KVM_PORTS]->data;
		pthread_mutex_lock(&k->uart_lock);
		k->ier = p[0];
		k->lcr = p[1];
		k->mcr = p[2];
		k->scr = p[3];
		k->dll = p[4];
		k->dlm = p[5];
		k->fcr = p[6];
		k->a20 = p[7];
		pthread_mutex_unlock(&k->uart_lock);
		return 0;
	}

	/* QEMU's order: registers, extended state, control registers, MSRs, then the LAPIC
	 * and pending events that depend on them. */
	if ((rc = apply_ioctl(v, KVM_SET_REGS, "KVM_SET_REGS", recs[VM_REC_KVM_REGS],
			      sizeof(struct kvm_regs), errbuf, errlen)) ||
	    (rc = apply_ioctl(v, KVM_SET_XSAVE, "KVM_SET_XSAVE", recs[VM_REC_KVM_XSAVE],
			      k->xsave_size, errbuf, errlen)) ||
	    (rc = apply_ioctl(v, KVM_SET_XCRS, "KVM_SET_XCRS", recs[VM_REC_KVM_XCRS],
			      sizeof(struct kvm_xcrs), errbuf, errlen)) ||
	    (rc = apply_ioctl(v, KVM_SET_SREGS, "KVM_SET_SREGS", recs[VM_REC_KVM_SREGS],
			      sizeof(struct kvm_sregs), errbuf, errlen)))
		return rc;

	const struct vm_rec *mr = recs[VM_REC_KVM_MSRS];
	uint32_t count;
	memcpy(&count, mr->data, 4);
	union msr_buf m;
	memset(&m, 0, sizeof(m));
	m.h.nmsrs = count;
	for (uint32_t i = 0; i < count; i++) {
		memcpy(&m.h.entries[i].index, mr->data + 8 + 16 * i, 4);
		memcpy(&m.h.entries[i].data, mr->data + 16 + 16 * i, 8);
	}
	rc = ioctl(cpu_of(v)->fd, KVM_SET_MSRS, &m);
	if (rc < 0)
		return vm__err(errbuf, errlen, -errno, "vCPU %u: KVM_SET_MSRS: %s", v->index,
			       strerror(errno));
	if ((uint32_t)rc != count)
		return vm__err(errbuf, errlen, -EINVAL, "vCPU %u: KVM refused MSR 0x%x = 0x%llx",
			       v->index, m.h.entries[rc].index,
			       (unsigned long long)m.h.entries[rc].data);

	if ((rc = apply_ioctl(v, KVM_SET_MP_STATE, "KVM_SET_MP_STATE", recs[VM_REC_KVM_MP_STATE],
			      sizeof(struct kvm_mp_state), errbuf, errlen)) ||
	    (rc = apply_ioctl(v, KVM_SET_LAPIC, "KVM_SET_LAPIC", recs[VM_REC_KVM_LAPIC],
			      sizeof(struct kvm_lapic_state), errbuf, errlen)) ||
	    (rc = apply_ioctl(v, KVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS",
			      recs[VM_REC_KVM_EVENTS], sizeof(struct kvm_vcpu_events), errbuf,
			      errlen)) ||
	    (rc = apply_ioctl(v, KVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS",
			      recs[VM_REC_KVM_DEBUGREGS], sizeof(struct kvm_debugregs), errbuf,
			      errlen)))
		return rc;
	return 0;
}

const struct vm_backend vm_kvm_backend = {
	.name = "kvm",
	.accel = VM_ACCEL_KVM,
	.init = kvm_init,
	.fini = kvm_fini,
	.boot = kvm_boot,
	.vcpu_thread = kvm_vcpu_thread,
	.kick = kvm_kick,
	.prepare_park = kvm_prepare_park,
	.state_size = kvm_state_size,
	.state_save = kvm_state_save,
	.vcpu_records = kvm_vcpu_records,
	.vm_records = kvm_vm_records,
	.state_check = kvm_state_check,
	.state_apply = kvm_state_apply,
};
