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
	int (*start)(struct mfd__tracker *t, struct mfd_error *err);
	/* OR the pages of block `block` written since the last sync into bitmap; re-arm them. */
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
/* Which mode a uffd tracker ended up in: "async" or "sync". */
const char *mfd__tracker_uffd_mode(const struct mfd__tracker *t);

/* KVM dirty log over the VMM's memory slots (see struct mfd_kvm_slot in multifd.h). */
int mfd__tracker_kvm_new(struct mfd__tracker **out, const struct mfd__ram *ram, int vm_fd,
			 const struct mfd_kvm_slot *slots, unsigned nslots, struct mfd_error *err);

/* Explicit marking: the embedder calls mfd__tracker_manual_mark (thread-safe, lock-free). */
int mfd__tracker_manual_new(struct mfd__tracker **out, const struct mfd__ram *ram,
			    struct mfd_error *err);
int mfd__tracker_manual_mark(struct mfd__tracker *t, uint32_t block, uint64_t offset, uint64_t len);

static inline void mfd__tracker_destroy(struct mfd__tracker *t)
{
	if (t)
		t->ops->destroy(t);
}

#endif
