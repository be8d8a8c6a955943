/* t_track_kvm — the KVM dirty-log tracker against a real guest.
 *
 * A VM with 16 MiB of RAM in one block, mapped by two memory slots (8 MiB each, the second at
 * block offset 8 MiB, so the slot-to-block offset is exercised).  The guest is 11 bytes of 32-bit
 * flat protected-mode code at 0x1000 (segments set through KVM_SET_SREGS, no paging, no stack)
 * that stores DL at each address of a list at 0x2000 and halts; its code and list pages are only
 * read, so the guest dirties exactly the listed pages.  For both collection methods (GET +
 * KVM_CLEAR_DIRTY_LOG, and plain GET):
 *  - a sync after start is empty; after the guest writes a random set of pages (both slots, the
 *    pages around the slot boundary, the last page) sync reports exactly those; a second sync is
 *    empty; another round is reported again;
 *  - writes made by the host through its mapping are not in KVM's log (documented behaviour);
 *  - the guest's stores really reached the block's memory;
 *  - stop() turns logging off (KVM_GET_DIRTY_LOG then fails with ENOENT) and the guest still runs;
 *  - a slot the VMM already logged, dirtied before start(), reads clean after start().
 * Plus argument checks: bad block, slot outside its block, misaligned slot, sync errors.
 * Skips (77) without /dev/kvm or when KVM_CREATE_VM fails. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include "tutil.h"
#include "core/util.h"
#include "ram/block.h"
#include "ram/track.h"

#define PS 4096u
#define MEM (16u << 20)
#define NPAGES (MEM / PS)
#define SLOT_BYTES (MEM / 2)
#define CODE_GPA 0x1000u
#define LIST_GPA 0x2000u	/* up to 2048 u32 addresses: pages 2 and 3 */
#define MAX_LIST 2048u

struct vm {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	size_t run_size;
	uint8_t *mem;
	struct mfd_kvm_slot slots[2];
};

static const uint8_t guest_code[] = {
	0x8b, 0x06,		/* 0: mov eax, [esi]	*/
	0x88, 0x10,		/* 2: mov [eax], dl	*/
	0x83, 0xc6, 0x04,	/* 4: add esi, 4	*/
	0x49,			/* 7: dec ecx		*/
	0x75, 0xf6,		/* 8: jnz 0		*/
	0xf4,			/* a: hlt		*/
};

/* The concurrent workload: for i = eax .. eax+ecx-1, store i into page hash(i) & edi of the region
 * at esi (at offset 16), then halt. */
#define LOOP_GPA 0x1100u
static const uint8_t loop_code[] = {
	0x89, 0xc3,				/*  0: mov ebx, eax		*/
	0x69, 0xdb, 0xb1, 0x79, 0x37, 0x9e,	/*  2: imul ebx, ebx, 0x9e3779b1	*/
	0xc1, 0xeb, 0x14,			/*  8: shr ebx, 20		*/
	0x21, 0xfb,				/* 11: and ebx, edi		*/
	0xc1, 0xe3, 0x0c,			/* 13: shl ebx, 12		*/
	0x89, 0x44, 0x1e, 0x10,			/* 16: mov [esi+ebx+16], eax	*/
	0x40,					/* 20: inc eax			*/
	0x49,					/* 21: dec ecx			*/
	0x75, 0xe8,				/* 22: jnz 0			*/
	0xf4,					/* 24: hlt			*/
};

static int set_slot(struct vm *v, const struct mfd_kvm_slot *s)
{
	struct kvm_userspace_memory_region r = {
		.slot = s->slot,
		.flags = s->flags,
		.guest_phys_addr = s->guest_phys_addr,
		.memory_size = s->size,
		.userspace_addr = (uint64_t)(uintptr_t)(v->mem + s->block_offset),
	};
	return ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &r);
}

static void vm_create(struct vm *v, uint32_t slot_flags)
{
	memset(v, 0, sizeof(*v));
	v->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm < 0)
		SKIP("/dev/kvm: %s", strerror(errno));
	if (ioctl(v->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		SKIP("unexpected KVM API version");
	v->vm = ioctl(v->kvm, KVM_CREATE_VM, 0);
	if (v->vm < 0)
		SKIP("KVM_CREATE_VM: %s", strerror(errno));
	/* Intel without unrestricted guest needs a TSS area for real mode; harmless otherwise. */
	ioctl(v->vm, KVM_SET_TSS_ADDR, 0xfffbd000ul);

	v->mem = t_map(MEM);
	for (unsigned i = 0; i < 2; i++) {
		v->slots[i] = (struct mfd_kvm_slot){
			.slot = i,
			.flags = slot_flags,
			.guest_phys_addr = (uint64_t)i * SLOT_BYTES,
			.size = SLOT_BYTES,
			.block = 0,
			.block_offset = (uint64_t)i * SLOT_BYTES,
		};
		if (set_slot(v, &v->slots[i]) < 0) {
			perror("KVM_SET_USER_MEMORY_REGION");
			exit(1);
		}
	}
	memcpy(v->mem + CODE_GPA, guest_code, sizeof(guest_code));
	memcpy(v->mem + LOOP_GPA, loop_code, sizeof(loop_code));

	v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0);
	int sz = ioctl(v->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (v->vcpu < 0 || sz <= 0) {
		perror("KVM_CREATE_VCPU");
		exit(1);
	}
	v->run_size = (size_t)sz;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
	if (v->run == MAP_FAILED) {
		perror("mmap kvm_run");
		exit(1);
	}

	/* Flat 32-bit protected mode, no paging: only the hidden segment state matters. */
	struct kvm_sregs sr;
	if (ioctl(v->vcpu, KVM_GET_SREGS, &sr) < 0) {
		perror("KVM_GET_SREGS");
		exit(1);
	}
	struct kvm_segment seg = {
		.base = 0, .limit = 0xffffffff, .selector = 1 << 3, .present = 1,
		.type = 11, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
	sr.cs = seg;
	seg.type = 3;
	seg.selector = 2 << 3;
	sr.ds = sr.es = sr.fs = sr.gs = sr.ss = seg;
	sr.cr0 = 0x11;	/* PE | ET */
	if (ioctl(v->vcpu, KVM_SET_SREGS, &sr) < 0) {
		perror("KVM_SET_SREGS");
		exit(1);
	}
}

static void vm_destroy(struct vm *v)
{
	munmap(v->run, v->run_size);
	close(v->vcpu);
	close(v->vm);
	close(v->kvm);
	munmap(v->mem, MEM);
}

/* Have the guest store `value` into the first byte past offset 8 of each listed page. */
static int vcpu_run_to_hlt(struct vm *v, const struct kvm_regs *regs)
{
	if (ioctl(v->vcpu, KVM_SET_REGS, regs) < 0) {
		perror("KVM_SET_REGS");
		return -1;
	}
	for (;;) {
		if (ioctl(v->vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			perror("KVM_RUN");
			return -1;
		}
		if (v->run->exit_reason == KVM_EXIT_HLT)
			return 0;
		fprintf(stderr, "unexpected exit %u (internal suberror %u)\n", v->run->exit_reason,
			v->run->internal.suberror);
		return -1;
	}
}

static int guest_write(struct vm *v, const uint64_t *pages, unsigned n, uint8_t value)
{
	uint32_t *list = (uint32_t *)(v->mem + LIST_GPA);
	for (unsigned i = 0; i < n; i++)
		list[i] = (uint32_t)(pages[i] * PS + 8 + i % 64);
	struct kvm_regs regs = {
		.rip = CODE_GPA, .rsi = LIST_GPA, .rcx = n, .rdx = value, .rflags = 0x2,
	};
	return vcpu_run_to_hlt(v, &regs);
}

struct loop_arg {
	struct vm *v;
	uint32_t iterations;
	int rc;
	int done;	/* atomic */
};

static void *vcpu_loop_main(void *arg)
{
	struct loop_arg *a = arg;
	struct kvm_regs regs = {
		.rip = LOOP_GPA, .rax = 1, .rcx = a->iterations, .rsi = 4u << 20, .rdi = 2047,
		.rflags = 0x2,
	};
	a->rc = vcpu_run_to_hlt(a->v, &regs);
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int diff_bitmap(const uint64_t *got, const uint64_t *want)
{
	int diffs = 0;
	for (uint64_t p = 0; p < NPAGES; p++)
		if (mfd__bit_test(got, p) != mfd__bit_test(want, p) && diffs++ < 8)
			fprintf(stderr, "  page %" PRIu64 ": %s\n", p,
				mfd__bit_test(got, p) ? "reported, not written" : "written, not reported");
	return diffs;
}

static void rounds_test(unsigned flags)
{
	struct vm v;
	struct mfd_error err;
	struct mfd__ram ram = { 0 };
	struct mfd__tracker *t = NULL;
	uint64_t bm[NPAGES / 64], want[NPAGES / 64];
	uint64_t pages[MAX_LIST];

	vm_create(&v, 0);
	mfd_error_clear(&err);
	CHECK_EQ(mfd__ram_add(&ram, "guest", v.mem, MEM, PS, 0, &err), 0);
	int rc = mfd__tracker_kvm_new_flags(&t, &ram, v.vm, v.slots, 2, flags, &err);
	CHECK_CODE(rc, 0);
	if (rc) {
		fprintf(stderr, "%s\n", err.msg);
		exit(1);
	}
	mfd_error_clear(&err);
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), MFD_ESTATE);
	mfd_error_clear(&err);
	rc = t->ops->start(t, &err);
	CHECK_CODE(rc, 0);
	if (rc) {
		fprintf(stderr, "%s\n", err.msg);
		exit(1);
	}
	const char *how = mfd__tracker_kvm_manual(t) ? "GET + CLEAR_DIRTY_LOG" : "GET_DIRTY_LOG";
	printf("collecting with %s\n", how);
	CHECK(mfd__tracker_kvm_manual(t) == !(flags & MFD__KVM_NO_MANUAL));
	mfd_error_clear(&err);
	CHECK_CODE(t->ops->sync(t, 1, bm, &err), MFD_EBLOCK);

	memset(bm, 0, sizeof(bm));
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
	CHECK_EQ(mfd__bitmap_count(bm, NPAGES), 0);

	uint64_t rng = 7 + flags;
	for (int round = 1; round <= 3; round++) {
		unsigned n = 0;
		memset(want, 0, sizeof(want));
		uint64_t fixed[] = { 4, NPAGES / 2 - 1, NPAGES / 2, NPAGES - 1, 63, 64, 4095 };
		for (unsigned i = 0; i < MFD_ARRAY_SIZE(fixed); i++)
			pages[n++] = fixed[i];
		while (n < 200u * (unsigned)round) {
			uint64_t p = 4 + t_rand(&rng) % (NPAGES - 4);	/* not code or list */
			pages[n++] = p;
		}
		for (unsigned i = 0; i < n; i++)
			mfd__bit_set(want, pages[i]);
		CHECK_EQ(guest_write(&v, pages, n, (uint8_t)(0x40 + round)), 0);
		unsigned landed = 0;
		for (unsigned i = 0; i < n; i++)
			landed += v.mem[pages[i] * PS + 8 + i % 64] == (uint8_t)(0x40 + round);
		CHECK_EQ(landed, n);

		/* A host write: not logged by KVM. */
		v.mem[(NPAGES / 2 + 5) * PS] = 1;

		memset(bm, 0, sizeof(bm));
		mfd_error_clear(&err);
		CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
		CHECK_EQ(diff_bitmap(bm, want), 0);
		printf("  round %d: %" PRIu64 " pages reported, %" PRIu64 " written\n", round,
		       mfd__bitmap_count(bm, NPAGES), mfd__bitmap_count(want, NPAGES));

		memset(bm, 0, sizeof(bm));
		CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
		CHECK_EQ(mfd__bitmap_count(bm, NPAGES), 0);
	}

	t->ops->stop(t);
	t->ops->stop(t);	/* idempotent */
	mfd_error_clear(&err);
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), MFD_ESTATE);
	uint64_t log[SLOT_BYTES / PS / 64];
	struct kvm_dirty_log get = { .slot = 0, .dirty_bitmap = log };
	CHECK_EQ(ioctl(v.vm, KVM_GET_DIRTY_LOG, &get), -1);
	CHECK_EQ(errno, ENOENT);
	pages[0] = 10;
	CHECK_EQ(guest_write(&v, pages, 1, 0x77), 0);
	CHECK_EQ(v.mem[10 * PS + 8], 0x77);

	/* Start again after stop. */
	mfd_error_clear(&err);
	CHECK_CODE(t->ops->start(t, &err), 0);
	pages[0] = NPAGES - 2;
	CHECK_EQ(guest_write(&v, pages, 1, 0x78), 0);
	memset(bm, 0, sizeof(bm));
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
	CHECK_EQ(mfd__bitmap_count(bm, NPAGES), 1);
	CHECK(mfd__bit_test(bm, NPAGES - 2));

	mfd__tracker_destroy(t);
	CHECK_EQ(ioctl(v.vm, KVM_GET_DIRTY_LOG, &get), -1);
	mfd__ram_free(&ram);
	vm_destroy(&v);
}

/* The VMM logs its slots already: pages dirtied before start() must read clean after it. */
static void prelogged_test(unsigned flags)
{
	struct vm v;
	struct mfd_error err;
	struct mfd__ram ram = { 0 };
	struct mfd__tracker *t = NULL;
	uint64_t bm[NPAGES / 64];
	uint64_t pages[] = { 20, NPAGES / 2 + 20 };

	vm_create(&v, KVM_MEM_LOG_DIRTY_PAGES);
	mfd_error_clear(&err);
	CHECK_EQ(mfd__ram_add(&ram, "guest", v.mem, MEM, PS, 0, &err), 0);
	CHECK_EQ(guest_write(&v, pages, 2, 1), 0);	/* dirty before start */
	CHECK_CODE(mfd__tracker_kvm_new_flags(&t, &ram, v.vm, v.slots, 2, flags, &err), 0);
	CHECK_CODE(t->ops->start(t, &err), 0);
	memset(bm, 0, sizeof(bm));
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
	CHECK_EQ(mfd__bitmap_count(bm, NPAGES), 0);
	pages[0] = 21;
	CHECK_EQ(guest_write(&v, pages, 1, 2), 0);
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
	CHECK_EQ(mfd__bitmap_count(bm, NPAGES), 1);
	CHECK(mfd__bit_test(bm, 21));
	mfd__tracker_destroy(t);
	/* The VMM's own logging stays on. */
	uint64_t log[SLOT_BYTES / PS / 64];
	struct kvm_dirty_log get = { .slot = 0, .dirty_bitmap = log };
	CHECK_EQ(ioctl(v.vm, KVM_GET_DIRTY_LOG, &get), 0);
	mfd__ram_free(&ram);
	vm_destroy(&v);
}

/* The guest stores into 2048 pages across both slots while the host syncs in a loop and copies
 * every reported page into a shadow; after the guest halts and a final sync, the shadow must
 * equal guest memory: no guest write was lost while sync() ran beside the vCPU. */
static void concurrent_test(unsigned flags)
{
	struct vm v;
	struct mfd_error err;
	struct mfd__ram ram = { 0 };
	struct mfd__tracker *t = NULL;
	uint64_t bm[NPAGES / 64];

	vm_create(&v, 0);
	uint8_t *shadow = malloc(MEM);
	if (!shadow)
		exit(1);
	mfd_error_clear(&err);
	CHECK_EQ(mfd__ram_add(&ram, "guest", v.mem, MEM, PS, 0, &err), 0);
	CHECK_CODE(mfd__tracker_kvm_new_flags(&t, &ram, v.vm, v.slots, 2, flags, &err), 0);
	CHECK_CODE(t->ops->start(t, &err), 0);
	memcpy(shadow, v.mem, MEM);	/* the first pass */

	struct loop_arg a = { .v = &v, .iterations = 60000 };
	pthread_t th;
	if (pthread_create(&th, NULL, vcpu_loop_main, &a))
		exit(1);
	uint64_t syncs = 0, reported = 0, t0 = mfd__now_ms();
	int done;
	do {
		done = __atomic_load_n(&a.done, __ATOMIC_ACQUIRE);
		memset(bm, 0, sizeof(bm));
		int rc = t->ops->sync(t, 0, bm, &err);
		CHECK_CODE(rc, 0);
		if (rc)
			break;
		syncs++;
		for (uint64_t p = mfd__bitmap_next_set(bm, NPAGES, 0); p < NPAGES;
		     p = mfd__bitmap_next_set(bm, NPAGES, p + 1)) {
			/* The guest writes behind the compiler's back: copy with volatile reads. */
			volatile const uint8_t *src = v.mem + p * PS;
			for (unsigned i = 0; i < PS; i++)
				shadow[p * PS + i] = src[i];
			reported++;
		}
	} while (!done);	/* the last sync ran after the guest halted */
	pthread_join(th, NULL);
	CHECK_EQ(a.rc, 0);
	uint64_t stale = 0;
	for (uint64_t p = 0; p < NPAGES; p++)
		if (memcmp(shadow + p * PS, v.mem + p * PS, PS) && stale++ < 5)
			fprintf(stderr, "  page %" PRIu64 ": shadow copy is stale\n", p);
	CHECK_EQ(stale, 0);
	/* The guest's last store is visible: iteration 60000 wrote 60000 somewhere. */
	uint64_t hit = 0;
	for (uint64_t p = 1024; p < 1024 + 2048; p++)
		hit += *(uint32_t *)(v.mem + p * PS + 16) == 60000;
	CHECK_EQ(hit, 1);
	printf("  concurrent (%s): %" PRIu64 " syncs in %" PRIu64 " ms, %" PRIu64
	       " pages reported\n", mfd__tracker_kvm_manual(t) ? "manual" : "get", syncs,
	       mfd__now_ms() - t0, reported);
	CHECK(syncs > 2);
	mfd__tracker_destroy(t);
	mfd__ram_free(&ram);
	free(shadow);
	vm_destroy(&v);
}

static void args_test(void)
{
	struct vm v;
	struct mfd_error err;
	struct mfd__ram ram = { 0 };
	struct mfd__tracker *t = NULL;

	vm_create(&v, 0);
	CHECK_EQ(mfd__ram_add(&ram, "guest", v.mem, MEM, PS, 0, &err), 0);
	struct mfd_kvm_slot s = v.slots[1];
	s.block = 1;
	mfd_error_clear(&err);
	CHECK_CODE(mfd__tracker_kvm_new(&t, &ram, v.vm, &s, 1, &err), MFD_EBLOCK);
	s = v.slots[1];
	s.size += PS;
	mfd_error_clear(&err);
	CHECK_CODE(mfd__tracker_kvm_new(&t, &ram, v.vm, &s, 1, &err), MFD_ERANGE);
	s = v.slots[1];
	s.block_offset = UINT64_MAX - PS + 1;
	mfd_error_clear(&err);
	CHECK_CODE(mfd__tracker_kvm_new(&t, &ram, v.vm, &s, 1, &err), MFD_ERANGE);
	s = v.slots[1];
	s.block_offset += 512;
	mfd_error_clear(&err);
	CHECK_CODE(mfd__tracker_kvm_new(&t, &ram, v.vm, &s, 1, &err), MFD_EALIGN);
	s = v.slots[1];
	s.size = 0;
	mfd_error_clear(&err);
	CHECK_CODE(mfd__tracker_kvm_new(&t, &ram, v.vm, &s, 1, &err), MFD_EALIGN);
	mfd_error_clear(&err);
	CHECK_CODE(mfd__tracker_kvm_new(&t, &ram, -1, v.slots, 2, &err), -EINVAL);

	/* A slot id KVM does not know: start fails cleanly and leaves the real slots alone. */
	struct mfd_kvm_slot two[2] = { v.slots[0], v.slots[1] };
	two[1].slot = 77;
	mfd_error_clear(&err);
	CHECK_CODE(mfd__tracker_kvm_new(&t, &ram, v.vm, two, 2, &err), 0);
	mfd_error_clear(&err);
	CHECK(t->ops->start(t, &err) < 0);
	printf("  start with a bad slot: %s\n", err.msg);
	uint64_t log[SLOT_BYTES / PS / 64];
	struct kvm_dirty_log get = { .slot = 0, .dirty_bitmap = log };
	CHECK_EQ(ioctl(v.vm, KVM_GET_DIRTY_LOG, &get), -1);	/* slot 0 rolled back */
	mfd__tracker_destroy(t);
	mfd__tracker_destroy(NULL);
	mfd__ram_free(&ram);
	vm_destroy(&v);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	rounds_test(0);
	rounds_test(MFD__KVM_NO_MANUAL);
	prelogged_test(0);
	prelogged_test(MFD__KVM_NO_MANUAL);
	concurrent_test(0);
	concurrent_test(MFD__KVM_NO_MANUAL);
	args_test();
	return t_done("t_track_kvm");
}
