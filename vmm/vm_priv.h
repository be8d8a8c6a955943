/*
 * vmm/vm_priv — what the tinyvm front (vm.c, boot.c, vm_run.c, serial.c, workload.c,
 * vm_state.c) shares between its modules and with its backends (kvm.c, soft.c): the struct vm
 * itself, the per-vCPU record, the backend ops table, the run-control helpers every vCPU thread
 * calls, and the state-buffer record plumbing.  Not for use outside vmm/.
 *
 * Run control.  Each vCPU has one thread.  It loops: vm__vcpu_checkpoint() (park while paused,
 * sleep while throttled, leave when stopping), then run guest code for a while (one KVM_RUN, or
 * a batch of pages in soft mode).  Control operations set flags under vm->lock, raise
 * vm->attention so the fast path notices, and kick the vCPUs (a signal for KVM, nothing for soft
 * threads, which poll).  vm_pause returns once every live vCPU thread is parked or has exited.
 *
 * Locks: vm->lock, vm->serial_lock and the KVM backend's uart_lock are never held together,
 * so there is no lock order to keep.  Nothing blocks on the guest while holding one.
 */
#ifndef TINYVM_VM_PRIV_H
#define TINYVM_VM_PRIV_H

#include <pthread.h>
#include "multifd.h"
#include "vm.h"
#include "layout.h"

#define VM_SERIAL_LINE_MAX	128	/* a longer line is flushed in pieces */
#define VM_SERIAL_REC_BYTES	(24 + VM_SERIAL_LINE_MAX)	/* the serial state record */
#define VM_SLICE_NS		10000000ull	/* throttle slice: 10 ms */

struct vm_vcpu {
	struct vm *vm;			/* set at create, then read-only */
	unsigned index;			/* set at create, then read-only */
	/* Protected by vm->lock; written only by the control thread (vm_start, vm_destroy). */
	pthread_t thread;
	bool thread_started;

	/* Protected by vm->lock. */
	bool parked;			/* waiting in vm__vcpu_checkpoint for vm_resume */
	bool off;			/* halted for good (KVM), see vm__vcpu_set_off */
	bool exited;			/* the thread left its loop */

	/* vCPU-private: touched by the vCPU thread while it runs, and by the control thread only
	 * while the vCPU is parked, stopped or not started (the vm->lock hand-off orders them). */
	uint64_t slice_start_ns;	/* throttle: start of the current run slice, 0 = none */

	/* Serial output (serial.c), protected by vm->serial_lock. */
	char line[VM_SERIAL_LINE_MAX];	/* the line so far, not yet ended by a newline */
	size_t line_len;
	size_t line_printed;		/* bytes of line already written to serial_fd */
	uint64_t pending_ns;		/* when line[line_printed] arrived; 0: nothing unwritten */

	/* Written by the vCPU thread, read anywhere: atomic. */
	uint64_t serial_sweep;		/* last "cpu<i> sweep <n>" counter printed */
	uint64_t serial_gaps;		/* printed counters that were not the previous one + 1 */

	void *priv;			/* the backend's per-vCPU data */
};

/* One record of a state buffer, bounds-checked by the front before a backend sees it. */
struct vm_rec {
	uint32_t type;
	uint32_t vcpu;			/* VM_REC_VM for VM-wide records */
	uint32_t len;
	const uint8_t *data;		/* points into the caller's buffer */
};

#define VM_REC_VM	UINT32_MAX

/* Record types: one list for all backends so numbers never collide.  Changing a payload's
 * layout means a new type number or a new format version (vm_state.c). */
enum vm_rec_type {
	VM_REC_WORKLOAD = 1,		/* VM-wide: workload and dirty ranges (front) */
	VM_REC_SERIAL = 2,		/* per vCPU: serial counters and the line so far, which
					 * the saving VM printed (front, serial.c) */
	VM_REC_KVM_PORTS = 3,		/* VM-wide: UART registers, port 0x92 (kvm) */
	VM_REC_KVM_REGS = 16,		/* per vCPU, kvm: struct kvm_regs */
	VM_REC_KVM_SREGS,		/* struct kvm_sregs */
	VM_REC_KVM_XSAVE,		/* KVM_GET_XSAVE(2) area, 4096 .. KVM_CAP_XSAVE2 bytes */
	VM_REC_KVM_XCRS,		/* struct kvm_xcrs */
	VM_REC_KVM_MSRS,		/* u32 count, u32 0, count x {u32 index, u32 0, u64 value} */
	VM_REC_KVM_LAPIC,		/* struct kvm_lapic_state */
	VM_REC_KVM_EVENTS,		/* struct kvm_vcpu_events */
	VM_REC_KVM_DEBUGREGS,		/* struct kvm_debugregs */
	VM_REC_KVM_MP_STATE,		/* struct kvm_mp_state */
	VM_REC_SOFT_CPU = 32,		/* per vCPU, soft: u64 sweep, u64 next page */
	VM_REC_TYPES			/* bound for tables indexed by type */
};

/* Appending records to a state buffer; the first overflow sticks in err (-ENOSPC). */
struct vm_wbuf {
	uint8_t *buf;
	size_t len, pos;
	int err;
};

/* Append one record.  Returns a pointer to its len-byte payload (already zeroed, padding too)
 * for the caller to fill, or NULL when the buffer is full. */
void *vm__rec_put(struct vm_wbuf *w, uint32_t type, uint32_t vcpu, uint32_t len);
/* Bytes a record of payload len takes in the buffer. */
size_t vm__rec_size(uint32_t len);

struct vm_backend {
	const char *name;
	enum vm_accel accel;
	/* Set up after the front allocated RAM: open devices, create vCPUs.  Called once; fini is
	 * called (also after a failed init) to undo whatever was done. */
	int (*init)(struct vm *vm, char *errbuf, size_t errlen);
	void (*fini)(struct vm *vm);
	/* Fresh start: set the vCPUs at the entry point (the front wrote the RAM). */
	int (*boot)(struct vm *vm, char *errbuf, size_t errlen);
	void *(*vcpu_thread)(void *vcpu);
	/* Make a vCPU thread reach vm__vcpu_checkpoint soon.  May be NULL (soft threads poll). */
	void (*kick)(struct vm_vcpu *v);
	/* Before parking: finish anything half done (pending port I/O).  May be NULL. */
	void (*prepare_park)(struct vm_vcpu *v);
	/* State buffer: the backend's records. */
	size_t (*state_size)(struct vm *vm);
	int (*state_save)(struct vm *vm, struct vm_wbuf *w);
	/* Which per-vCPU record types the backend needs (terminated by 0), and which VM-wide. */
	const uint32_t *vcpu_records;
	const uint32_t *vm_records;
	/* Check one backend record's content (lengths and values), without side effects. */
	int (*state_check)(struct vm *vm, const struct vm_rec *r, char *errbuf, size_t errlen);
	/* Apply checked records: recs[type] for VM-wide ones when v == NULL, else vCPU v's. */
	int (*state_apply)(struct vm *vm, struct vm_vcpu *v, const struct vm_rec *const *recs,
			   char *errbuf, size_t errlen);
};

extern const struct vm_backend vm_kvm_backend;
extern const struct vm_backend vm_soft_backend;

struct vm {
	/* Set by vm_create, then read-only. */
	const struct vm_backend *ops;
	struct vm_opts opts;		/* boot_sector points to boot_image below */
	uint8_t boot_image[VM_BOOT_SECTOR_MAX];
	char accel_note[VM_ERROR_MAX];
	unsigned nr_vcpus;
	struct vm_vcpu vcpus[VM_MAX_VCPUS];
	void *ram;			/* one host mapping for all of guest RAM */
	uint64_t ram_bytes;
	struct vm_region regions[VM_MAX_REGIONS];
	unsigned nr_regions;
	struct vm_dirty_range dirty[VM_MAX_VCPUS];	/* dirty workload only */
	unsigned nr_dirty;
	void *priv;			/* the backend's VM data */

	/* Set before vm_start by the control thread, then read-only. */
	bool loaded;			/* vm_state_load succeeded: start from that state */

	pthread_mutex_t lock;
	pthread_cond_t cond;		/* any change below; signalled with lock held */
	/* Protected by lock. */
	enum vm_run_state state;
	bool pause_req;
	bool stopping;			/* vCPU threads must leave their loops */
	unsigned nr_parked;
	unsigned nr_exited;
	unsigned nr_off;
	enum vm_stop_reason reason;
	uint32_t exit_code;
	char error[VM_ERROR_MAX];
	unsigned throttle_pct;		/* also read without the lock: atomic */
	/* Atomic: pause_req || stopping, so vCPU threads notice without taking the lock. */
	int attention;
	/* Atomic (stats only). */
	uint64_t unhandled_io;

	/* COM1 output (serial.c): serialises writes to opts.serial_fd and protects every vCPU's
	 * line buffer and the two fields below. */
	pthread_mutex_t serial_lock;
	pthread_cond_t serial_cond;	/* bytes wait to be written, or serial_stop; CLOCK_MONOTONIC */
	bool serial_stop;		/* the flusher must leave */
	/* The flusher thread: created by vm_start, joined by vm_destroy (control thread). */
	pthread_t serial_thread;
	bool serial_thread_started;
};

/* ---- for vCPU threads ----------------------------------------------------------------- */

/* Called by a vCPU thread between runs of guest code.  Parks while the VM is paused, sleeps
 * while throttled, and returns true when the thread must leave its loop. */
bool vm__vcpu_checkpoint(struct vm_vcpu *v);
/* The end of the current throttle run slice (CLOCK_MONOTONIC ns), 0 when not throttled. */
uint64_t vm__vcpu_slice_end(struct vm_vcpu *v);
/* Called by a vCPU thread when it leaves its loop. */
void vm__vcpu_exit(struct vm_vcpu *v);
/* A vCPU observed itself halted for good (true) or running again (false).  When every vCPU is
 * off the VM stops with VM_STOP_HALT. */
void vm__vcpu_set_off(struct vm_vcpu *v, bool off);
/* Stop the whole VM (first reason wins).  msg may be NULL; it is formatted like printf. */
void vm__request_stop(struct vm *vm, enum vm_stop_reason reason, uint32_t exit_code,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Guest COM1 output from vCPU v (line-buffered per vCPU; see serial.c). */
void vm__serial_out(struct vm_vcpu *v, const void *buf, size_t len);
/* Block until the VM needs this vCPU's attention (pause or stop): for vCPUs with nothing to
 * run (the soft idle workload). */
void vm__vcpu_idle_wait(struct vm_vcpu *v);
void vm__count_unhandled_io(struct vm *vm);

uint64_t vm__now_ns(void);
/* snprintf into errbuf when errbuf is not NULL; returns err for `return vm__err(...)`. */
int vm__err(char *errbuf, size_t errlen, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Host pointer of guest-physical [gpa, gpa + len) in the VM's RAM, NULL when outside. */
void *vm__gpa_to_host(struct vm *vm, uint64_t gpa, uint64_t len);

/* ---- between the front's modules ------------------------------------------------------ */

/* vm_run.c: make every vCPU thread leave its loop (first reason wins) and join them all.
 * Control thread only. */
void vm__stop_threads(struct vm *vm, enum vm_stop_reason reason);
/* boot.c: write what a fresh guest needs into RAM (boot area or boot sector). */
int vm__boot_write(struct vm *vm, char *errbuf, size_t errlen);
/* serial.c: write out vCPU v's (every vCPU's) serial bytes not written yet (a line without its
 * newline yet).  Without vm->lock held. */
void vm__serial_flush(struct vm_vcpu *v);
void vm__serial_flush_all(struct vm *vm);
/* serial.c: start the thread that writes out bytes left waiting by a line that does not end;
 * stop it (and write out what is left).  Control thread. */
int vm__serial_start(struct vm *vm, char *errbuf, size_t errlen);
void vm__serial_stop(struct vm *vm);
/* serial.c: vCPU v's serial state record (VM_SERIAL_REC_BYTES, zeroed by the caller): its
 * counters and the line so far, which the saving VM has printed; and loading it back. */
void vm__serial_save(struct vm_vcpu *v, uint8_t *rec);
void vm__serial_load(struct vm_vcpu *v, const uint8_t *rec);
/* workload.c: split the dirty area into one range per vCPU (vm->dirty, vm->nr_dirty). */
void vm__workload_init(struct vm *vm);

/* Little-endian fields of the boot area, the workload pattern and the state buffer. */
static inline void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

#endif
