/*
 * vmm/soft — the "soft" backend of tinyvm: no KVM, the workloads are C code on host threads.
 *
 * One host thread per "vCPU" runs the same workload the KVM guest runs, on the same guest RAM
 * layout: dirty stamps the first 16 bytes of every page of its range with the frame number and
 * the sweep counter, sweep after sweep, and prints "cpu<i> sweep <n>\n" through the same serial
 * path after each one; idle sleeps until paused or stopped.  It runs at full host speed,
 * checking the run-control flags every BATCH_PAGES pages, so pause, resume and throttle behave
 * as under KVM.
 *
 * A soft vCPU's whole state is its position: the sweep being written and the next page.  That
 * pair is what vm_state_save stores (VM_REC_SOFT_CPU), and a loaded VM continues from exactly
 * that page, so the two-run pattern holds across a save and load as it does under KVM.
 *
 * The stores are relaxed atomics: guest RAM is read concurrently by whoever migrates it, as
 * with a real guest, and the pattern check only relies on each 8-byte store being whole.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vm_priv.h"

#define BATCH_PAGES	64
#define SOFT_CPU_BYTES	16

struct soft_cpu {
	/* vCPU-private (see struct vm_vcpu): */
	uint64_t sweep;		/* the sweep being written, from 1 */
	uint64_t page;		/* next page of the range to write */
	uint8_t *base;		/* host address of the range's first page */
};

struct soft_vm {
	struct soft_cpu cpus[VM_MAX_VCPUS];
};

static struct soft_cpu *cpu_of(struct vm_vcpu *v)
{
	return v->priv;
}

static int soft_init(struct vm *vm, char *errbuf, size_t errlen)
{
	struct soft_vm *s = calloc(1, sizeof(*s));
	if (!s)
		return vm__err(errbuf, errlen, -ENOMEM, "out of memory");
	vm->priv = s;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct soft_cpu *c = &s->cpus[i];
		vm->vcpus[i].priv = c;
		if (vm->opts.workload == VM_WORKLOAD_DIRTY) {
			c->base = vm__gpa_to_host(vm, vm->dirty[i].gpa,
						  vm->dirty[i].pages * TVM_PAGE_SIZE);
			c->sweep = 1;
		}
	}
	return 0;
}

static void soft_fini(struct vm *vm)
{
	free(vm->priv);
	vm->priv = NULL;
}

static int soft_boot(struct vm *vm, char *errbuf, size_t errlen)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct soft_cpu *c = cpu_of(&vm->vcpus[i]);
		c->sweep = vm->opts.workload == VM_WORKLOAD_DIRTY ? 1 : 0;
		c->page = 0;
	}
	return 0;
}

static void sweep_batch(struct vm_vcpu *v)
{
	struct soft_cpu *c = cpu_of(v);
	const struct vm_dirty_range *r = &v->vm->dirty[v->index];
	uint64_t frame0 = r->gpa >> TVM_PAGE_SHIFT;
	for (unsigned n = 0; n < BATCH_PAGES; n++) {
		uint64_t *w = (uint64_t *)(c->base + c->page * TVM_PAGE_SIZE);
		__atomic_store_n(&w[0], frame0 + c->page, __ATOMIC_RELAXED);
		__atomic_store_n(&w[1], c->sweep, __ATOMIC_RELAXED);
		if (++c->page == r->pages) {
			char line[48];
			int len = snprintf(line, sizeof(line), "cpu%u sweep %" PRIu64 "\n", v->index,
					   c->sweep);
			vm__serial_out(v, line, (size_t)len);
			c->page = 0;
			c->sweep++;
		}
	}
}

static void *soft_vcpu_thread(void *arg)
{
	struct vm_vcpu *v = arg;
	bool dirty = v->vm->opts.workload == VM_WORKLOAD_DIRTY;
	for (;;) {
		if (vm__vcpu_checkpoint(v))
			break;
		if (dirty)
			sweep_batch(v);
		else
			vm__vcpu_idle_wait(v);
	}
	vm__vcpu_exit(v);
	return NULL;
}

static const uint32_t soft_vcpu_records[] = { VM_REC_SOFT_CPU, 0 };

static size_t soft_state_size(struct vm *vm)
{
	return vm->nr_vcpus * vm__rec_size(SOFT_CPU_BYTES);
}

static int soft_state_save(struct vm *vm, struct vm_wbuf *w)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct soft_cpu *c = cpu_of(&vm->vcpus[i]);
		uint8_t *p = vm__rec_put(w, VM_REC_SOFT_CPU, i, SOFT_CPU_BYTES);
		if (!p)
			return -ENOSPC;
		memcpy(p, &c->sweep, 8);
		memcpy(p + 8, &c->page, 8);
	}
	return 0;
}

static int soft_state_check(struct vm *vm, const struct vm_rec *r, char *errbuf, size_t errlen)
{
	if (r->type != VM_REC_SOFT_CPU)
		return vm__err(errbuf, errlen, MFD_ETYPE, "record type %u is not a soft record",
			       r->type);
	if (r->len != SOFT_CPU_BYTES)
		return vm__err(errbuf, errlen, MFD_ELENGTH, "soft vCPU %u record: %u bytes, "
			       "expected %d", r->vcpu, r->len, SOFT_CPU_BYTES);
	uint64_t sweep, page;
	memcpy(&sweep, r->data, 8);
	memcpy(&page, r->data + 8, 8);
	bool dirty = vm->opts.workload == VM_WORKLOAD_DIRTY;
	uint64_t pages = dirty ? vm->dirty[r->vcpu].pages : 0;
	if (dirty ? (sweep < 1 || sweep == UINT64_MAX || page >= pages) : (sweep || page))
		return vm__err(errbuf, errlen, MFD_ERANGE, "soft vCPU %u record: sweep %" PRIu64
			       " page %" PRIu64 " (range of %" PRIu64 " pages)", r->vcpu, sweep,
			       page, pages);
	return 0;
}

static int soft_state_apply(struct vm *vm, struct vm_vcpu *v, const struct vm_rec *const *recs,
			    char *errbuf, size_t errlen)
{
	if (!v)
		return 0;
	struct soft_cpu *c = cpu_of(v);
	memcpy(&c->sweep, recs[VM_REC_SOFT_CPU]->data, 8);
	memcpy(&c->page, recs[VM_REC_SOFT_CPU]->data + 8, 8);
	return 0;
}

const struct vm_backend vm_soft_backend = {
	.name = "soft",
	.accel = VM_ACCEL_SOFT,
	.init = soft_init,
	.fini = soft_fini,
	.boot = soft_boot,
	.vcpu_thread = soft_vcpu_thread,
	.kick = NULL,
	.prepare_park = NULL,
	.state_size = soft_state_size,
	.state_save = soft_state_save,
	.vcpu_records = soft_vcpu_records,
	.vm_records = NULL,
	.state_check = soft_state_check,
	.state_apply = soft_state_apply,
};
