/* ram/track — dirty-page trackers behind one ops table.
 *
 * A tracker watches the registered RAM blocks of a session for writes.  start() arms it (every
 * page is clean from then on); sync() ORs into a caller bitmap (one bit per page of that block,
 * bit i = page i) every page written since start() or the previous sync() of that block, and
 * re-arms those pages atomically with the collection, so a write racing with sync() is either
 * reported now or by the next sync(), never lost; stop() disarms and leaves memory untouched and
 * writable.  Trackers never write to guest memory.
 *
 * Implementations: userfaultfd write-protect (track_uffd.c), KVM dirty log (track_kvm.c),
 * explicit marking by the embedder (track_manual.c). */
#ifndef MFD_RAM_TRACK_H
#define MFD_RAM_TRACK_H

#include <stdint.h>
#include "multifd.h"
#include "ram/block.h"

struct mfd__tracker;

struct mfd__tracker_ops {
	const char *name;
	/* start() leaves a marker in the page table entry of every never-touched page, which
	 * pagemap shows as a swap entry (uffd-wp with WP_UNPOPULATED): ram/resident.c must then
	 * tell markers from real swap entries. */
	bool marks_untouched;
	int (*start)(struct mfd__tracker *t, struct mfd_error *err);
	/* OR the pages of block `block` written since the last sync into bitmap; re-arm them.
	 * Returns 0, MFD_EBLOCK (no such block), MFD_ESTATE (not started) or a system error.
	 * Syncs of different blocks may run concurrently; syncs of one block may not. */
	int (*sync)(struct mfd__tracker *t, uint32_t block, uint64_t *bitmap, struct mfd_error *err);
	void (*stop)(struct mfd__tracker *t);	/* idempotent; safe after a failed start */
	void (*destroy)(struct mfd__tracker *t);	/* stop if needed, free; NULL-safe wrapper below */
};

struct mfd__tracker {
	const struct mfd__tracker_ops *ops;
	const struct mfd__ram *ram;	/* the session's blocks; outlives the tracker */
};

/* userfaultfd write-protect: async mode (UFFD_FEATURE_WP_ASYNC) with PAGEMAP_SCAN to collect and
 * re-protect in one call; falls back to synchronous write-protect faults handled by a thread.
 * Needs the blocks to be private anonymous (or shmem) memory.  -ENOSYS/-EPERM when unavailable. */
int mfd__tracker_uffd_new(struct mfd__tracker **out, const struct mfd__ram *ram, bool force_sync_mode,
			  struct mfd_error *err);
/* Which mode a uffd tracker ended up in: "async" or "sync" (NULL if t is not a uffd tracker). */
const char *mfd__tracker_uffd_mode(const struct mfd__tracker *t);

/* mfd__tracker_uffd_new with explicit flags.  MFD__UFFD_NO_UNPOPULATED is a test knob: sync mode
 * as on a kernel without UFFD_FEATURE_WP_UNPOPULATED (never-touched private anonymous pages are
 * then read once at start() so that they can be protected). */
#define MFD__UFFD_FORCE_SYNC 0x1u
#define MFD__UFFD_NO_UNPOPULATED 0x2u
int mfd__tracker_uffd_new_flags(struct mfd__tracker **out, const struct mfd__ram *ram,
				unsigned flags, struct mfd_error *err);

/* KVM dirty log over the VMM's memory slots (see struct mfd_kvm_slot in multifd.h).  slots is
 * copied; vm_fd stays the VMM's and must outlive the tracker.  Each slot must lie inside its block
 * (MFD_EBLOCK, MFD_ERANGE) with size, offset and guest address host-page aligned (MFD_EALIGN).
 * Only guest writes are logged: the VMM reports its own writes to guest RAM another way. */
int mfd__tracker_kvm_new(struct mfd__tracker **out, const struct mfd__ram *ram, int vm_fd,
			 const struct mfd_kvm_slot *slots, unsigned nslots, struct mfd_error *err);
/* Test knob: MFD__KVM_NO_MANUAL collects with plain KVM_GET_DIRTY_LOG (as on kernels without
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) instead of GET + KVM_CLEAR_DIRTY_LOG. */
#define MFD__KVM_NO_MANUAL 0x1u
int mfd__tracker_kvm_new_flags(struct mfd__tracker **out, const struct mfd__ram *ram, int vm_fd,
			       const struct mfd_kvm_slot *slots, unsigned nslots, unsigned flags,
			       struct mfd_error *err);
/* Whether a started KVM tracker uses manual re-protection (KVM_CLEAR_DIRTY_LOG). */
bool mfd__tracker_kvm_manual(const struct mfd__tracker *t);

/* Explicit marking: the embedder calls mfd__tracker_manual_mark (thread-safe, lock-free). */
int mfd__tracker_manual_new(struct mfd__tracker **out, const struct mfd__ram *ram,
			    struct mfd_error *err);
/* Mark dirty every page of block `block` overlapping [offset, offset+len), after writing them.
 * Returns 0, -EINVAL (t not a manual tracker, or no such block) or MFD_ERANGE (outside the
 * block).  len 0 is a no-op.  Marks made while the tracker is stopped are dropped by start(). */
int mfd__tracker_manual_mark(struct mfd__tracker *t, uint32_t block, uint64_t offset, uint64_t len);

static inline void mfd__tracker_destroy(struct mfd__tracker *t)
{
	if (t)
		t->ops->destroy(t);
}

#endif
