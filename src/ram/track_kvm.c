/* ram/track_kvm — dirty tracking with the KVM dirty log.
 *
 * The VMM maps RAM blocks into the guest through KVM memory slots.  start() turns on
 * KVM_MEM_LOG_DIRTY_PAGES on each slot (KVM write-protects the slot, or clears the dirty bits
 * PML watches, and from then on sets one bit per 4 KiB guest page written).  sync(block) reads
 * the log of every slot of that block and ORs it into the caller's bitmap, at the slot's offset
 * in the block.  stop() gives the slots back the flags the VMM set.
 *
 * Only guest writes are logged: a write the VMM makes through its own mapping of guest memory
 * (device emulation, virtio) never goes through the guest's page tables and is invisible here.
 * The embedder reports those itself (the manual tracker).
 *
 * Manual re-protection (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, Linux 5.3+) is used when present:
 * KVM_GET_DIRTY_LOG then only copies the log, and KVM_CLEAR_DIRTY_LOG clears and re-protects
 * exactly the pages we collected, in chunks, so the mmu lock is held briefly and a large slot
 * is not write-protected in one go.  Without it, KVM_GET_DIRTY_LOG collects and re-protects in
 * one call.  Either way a page is re-protected before sync() returns it: a guest write racing
 * with sync() either lands before the re-protection (the caller's copy, made after sync()
 * returns, sees it) or faults after it (the page is dirty again for the next sync()).  Pages
 * dirtied between GET and CLEAR that we did not collect keep their bit, since CLEAR only clears
 * the bits it is given.
 *
 * KVM_DIRTY_LOG_INITIALLY_SET is not used.  With it the log starts all ones, which would break
 * "start() leaves every page clean" unless we cleared the whole log right away — doing the same
 * write-protection work it exists to defer.  Its benefit (spreading that work over the first
 * pass) matters for huge guests and can be added with a "first pass reports everything" mode.
 *
 * The capability is enabled before any slot gets the log flag: KVM does not require that order,
 * but enabling it while a slot is logging would change how a concurrent GET behaves midway.  It
 * is left enabled after stop(): KVM offers no way to read the previous setting back, and it only
 * changes GET_DIRTY_LOG on logging slots, which stop() turned off.
 *
 * vCPUs may run during sync(); KVM serialises the log against them.  sync() of different blocks
 * may run concurrently (each slot has its own buffer, and a slot belongs to one block). */
#include <errno.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include "core/err.h"
#include "core/util.h"
#include "ram/track.h"

#ifndef KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE
#define KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE (1 << 0)
#endif

/* Pages per KVM_CLEAR_DIRTY_LOG call: a multiple of 64 as the API requires (1 GiB of 4 KiB pages).
 * Chunks without a collected page are skipped. */
#define CLEAR_CHUNK_PAGES (1u << 18)

struct kslot {
	struct mfd_kvm_slot s;	/* copy of the embedder's description; read-only */
	uint64_t host;		/* userspace_addr of the slot */
	uint64_t npages;	/* 4 KiB (host) pages in the slot */
	uint64_t *log;		/* KVM_GET_DIRTY_LOG buffer, npages bits rounded to 64; private to
				 * the sync() of the slot's block */
	bool logging;		/* start() set the log flag; control thread only */
};

struct kvm {
	struct mfd__tracker t;	/* first member: ops receive &kvm->t */
	int vm_fd;		/* the VMM's; not owned */
	bool manual;		/* manual re-protection in use; set by start() */
	bool cap_present;	/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 exists; set at new */
	bool want_manual;	/* use it (not disabled by the test knob); set at new */
	bool started;		/* control thread only */
	uint32_t nblocks;	/* blocks of ram at new */
	unsigned nslots;
	struct kslot *slots;	/* [nslots] */
	long host_page;
};

static struct kvm *to_kvm(struct mfd__tracker *t)
{
	return (struct kvm *)t;
}

static int set_slot_flags(struct kvm *k, const struct kslot *ks, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = ks->s.slot,
		.flags = flags,
		.guest_phys_addr = ks->s.guest_phys_addr,
		.memory_size = ks->s.size,
		.userspace_addr = ks->host,
	};
	return ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

/* Collect the log of one slot into ks->log, re-protecting what was collected. */
static int collect_slot(struct kvm *k, struct kslot *ks, struct mfd_error *err)
{
	size_t words = mfd__bitmap_words(ks->npages);

	memset(ks->log, 0, words * sizeof(uint64_t));
	struct kvm_dirty_log get = { .slot = ks->s.slot, .dirty_bitmap = ks->log };
	if (ioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &get) < 0)
		return mfd__err_set(err, -errno, -1, "KVM_GET_DIRTY_LOG slot 0x%x", ks->s.slot);
	if (!k->manual)
		return 0;	/* GET cleared and re-protected already */

	for (uint64_t first = 0; first < ks->npages; first += CLEAR_CHUNK_PAGES) {
		uint64_t n = MFD_MIN((uint64_t)CLEAR_CHUNK_PAGES, ks->npages - first);
		uint64_t *bits = ks->log + first / 64;
		bool any = false;
		for (size_t w = 0; w < mfd__bitmap_words(n) && !any; w++)
			any = bits[w] != 0;
		if (!any)
			continue;
		/* first is a multiple of 64; n is too, or reaches the end of the slot. */
		struct kvm_clear_dirty_log clr = {
			.slot = ks->s.slot,
			.num_pages = (uint32_t)n,
			.first_page = first,
			.dirty_bitmap = bits,
		};
		if (ioctl(k->vm_fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0)
			/* Nothing is lost: uncleared pages stay dirty in KVM for the next sync. */
			return mfd__err_set(err, -errno, -1, "KVM_CLEAR_DIRTY_LOG slot 0x%x", ks->s.slot);
	}
	return 0;
}

/* OR a slot's collected log into the block bitmap. */
static void or_into_block(const struct kslot *ks, uint64_t *bitmap, uint32_t page_size,
			  long host_page)
{
	uint64_t first_page = ks->s.block_offset / (uint64_t)host_page;

	if (page_size == (uint64_t)host_page && first_page % 64 == 0) {
		uint64_t *dst = bitmap + first_page / 64;
		for (size_t w = 0; w < mfd__bitmap_words(ks->npages); w++)
			dst[w] |= ks->log[w];
		return;
	}
	for (uint64_t i = mfd__bitmap_next_set(ks->log, ks->npages, 0); i < ks->npages;
	     i = mfd__bitmap_next_set(ks->log, ks->npages, i + 1))
		mfd__bit_set(bitmap, (ks->s.block_offset + i * (uint64_t)host_page) / page_size);
}

static void kvm_stop(struct mfd__tracker *t)
{
	struct kvm *k = to_kvm(t);

	for (unsigned i = k->nslots; i-- > 0;) {
		struct kslot *ks = &k->slots[i];
		if (!ks->logging)
			continue;
		/* If this fails the slot keeps logging, which costs the guest some exits but
		 * changes nothing it can see; stop() has nobody to report to. */
		set_slot_flags(k, ks, ks->s.flags);
		ks->logging = false;
	}
	k->started = false;
}

static int kvm_start(struct mfd__tracker *t, struct mfd_error *err)
{
	struct kvm *k = to_kvm(t);
	int rc;

	if (k->started)
		return mfd__err_set(err, MFD_ESTATE, -1, "KVM tracker: already started");
	k->manual = false;
	if (k->cap_present) {
		/* Set it either way: the VMM (or an earlier tracker) may have turned it on. */
		struct kvm_enable_cap cap = {
			.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
			.args = { k->want_manual ? KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE : 0 },
		};
		rc = ioctl(k->vm_fd, KVM_ENABLE_CAP, &cap) < 0 ? -errno : 0;
		if (rc < 0 && !k->want_manual)
			return mfd__err_set(err, rc, -1, "KVM: turning manual dirty-log protect off");
		k->manual = rc == 0 && k->want_manual;
	}
	k->started = true;
	for (unsigned i = 0; i < k->nslots; i++) {
		struct kslot *ks = &k->slots[i];
		rc = set_slot_flags(k, ks, ks->s.flags | KVM_MEM_LOG_DIRTY_PAGES);
		if (rc < 0) {
			mfd__err_set(err, rc, -1, "KVM slot 0x%x: turning on the dirty log",
				     ks->s.slot);
			goto fail;
		}
		ks->logging = true;
		if (ks->s.flags & KVM_MEM_LOG_DIRTY_PAGES) {
			/* The VMM logged this slot already, so the flag change was a no-op and the
			 * log may hold old bits: drain it so every page starts clean. */
			rc = collect_slot(k, ks, err);
			if (rc < 0)
				goto fail;
		}
	}
	return 0;

fail:
	kvm_stop(t);
	return rc;
}

static int kvm_sync(struct mfd__tracker *t, uint32_t block, uint64_t *bitmap, struct mfd_error *err)
{
	struct kvm *k = to_kvm(t);

	if (block >= k->nblocks)
		return mfd__err_set(err, MFD_EBLOCK, -1, "KVM tracker: no block %u", block);
	if (!k->started)
		return mfd__err_set(err, MFD_ESTATE, -1, "KVM tracker: not started");
	const struct mfd__block *b = &t->ram->blocks[block];
	for (unsigned i = 0; i < k->nslots; i++) {
		struct kslot *ks = &k->slots[i];
		if ((uint32_t)ks->s.block != block)
			continue;
		int rc = collect_slot(k, ks, err);
		if (rc < 0)
			return rc;
		or_into_block(ks, bitmap, b->page_size, k->host_page);
	}
	return 0;
}

static void kvm_destroy(struct mfd__tracker *t)
{
	struct kvm *k = to_kvm(t);

	kvm_stop(t);
	if (k->slots)
		for (unsigned i = 0; i < k->nslots; i++)
			free(k->slots[i].log);
	free(k->slots);
	free(k);
}

static const struct mfd__tracker_ops kvm_ops = {
	.name = "kvm",
	.start = kvm_start,
	.sync = kvm_sync,
	.stop = kvm_stop,
	.destroy = kvm_destroy,
};

int mfd__tracker_kvm_new_flags(struct mfd__tracker **out, const struct mfd__ram *ram, int vm_fd,
			       const struct mfd_kvm_slot *slots, unsigned nslots, unsigned flags,
			       struct mfd_error *err)
{
	int rc;

	if (vm_fd < 0 || (nslots && !slots))
		return mfd__err_set(err, -EINVAL, -1, "KVM tracker: no VM fd or slots");
	struct kvm *k = calloc(1, sizeof(*k));
	if (!k)
		return mfd__err_set(err, -ENOMEM, -1, "KVM tracker");
	k->t.ops = &kvm_ops;
	k->t.ram = ram;
	k->vm_fd = vm_fd;
	k->nblocks = ram->n;
	k->host_page = sysconf(_SC_PAGESIZE);
	k->nslots = nslots;
	k->slots = calloc(nslots ? nslots : 1, sizeof(*k->slots));
	if (!k->slots) {
		rc = mfd__err_set(err, -ENOMEM, -1, "KVM tracker");
		goto fail;
	}
	uint64_t hp = (uint64_t)k->host_page;
	for (unsigned i = 0; i < nslots; i++) {
		const struct mfd_kvm_slot *s = &slots[i];
		struct kslot *ks = &k->slots[i];
		if (s->block < 0 || (uint32_t)s->block >= ram->n) {
			rc = mfd__err_set(err, MFD_EBLOCK, -1, "KVM slot 0x%x: no block %d", s->slot,
					  s->block);
			goto fail;
		}
		const struct mfd__block *b = &ram->blocks[s->block];
		if (s->size == 0 || s->size % hp || s->block_offset % hp || s->guest_phys_addr % hp) {
			rc = mfd__err_set(err, MFD_EALIGN, -1,
					  "KVM slot 0x%x: size, offset and guest address must be "
					  "multiples of %" PRIu64 " (and size not 0)", s->slot, hp);
			goto fail;
		}
		if (s->block_offset > b->len || s->size > b->len - s->block_offset) {
			rc = mfd__err_set(err, MFD_ERANGE, -1,
					  "KVM slot 0x%x: 0x%" PRIx64 "+0x%" PRIx64
					  " is outside block '%s'", s->slot, s->block_offset, s->size,
					  b->name);
			goto fail;
		}
		ks->s = *s;
		ks->host = (uint64_t)(uintptr_t)b->host + s->block_offset;
		ks->npages = s->size / hp;
		ks->log = calloc(mfd__bitmap_words(ks->npages), sizeof(uint64_t));
		if (!ks->log) {
			rc = mfd__err_set(err, -ENOMEM, -1, "KVM tracker dirty log buffers");
			goto fail;
		}
	}
	int caps = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (caps < 0 && errno != EINVAL) {
		rc = mfd__err_set(err, -errno, -1, "KVM_CHECK_EXTENSION on the VM fd");
		goto fail;
	}
	k->cap_present = caps > 0 && (caps & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
	k->want_manual = !(flags & MFD__KVM_NO_MANUAL);
	*out = &k->t;
	return 0;

fail:
	kvm_destroy(&k->t);
	return rc;
}

int mfd__tracker_kvm_new(struct mfd__tracker **out, const struct mfd__ram *ram, int vm_fd,
			 const struct mfd_kvm_slot *slots, unsigned nslots, struct mfd_error *err)
{
	return mfd__tracker_kvm_new_flags(out, ram, vm_fd, slots, nslots, 0, err);
}

bool mfd__tracker_kvm_manual(const struct mfd__tracker *t)
{
	return t && t->ops == &kvm_ops && ((const struct kvm *)t)->manual;
}
