/* ram/track_uffd — dirty tracking with userfaultfd write-protection.
 *
 * Every registered block is write-protected with userfaultfd (UFFDIO_REGISTER_MODE_WP); the first
 * write to a protected page is what marks it dirty.  Two modes, chosen when the tracker is made:
 *
 * async (Linux 6.7+: UFFD_FEATURE_WP_ASYNC and the PAGEMAP_SCAN ioctl).  The kernel resolves a
 * write fault on a protected page by itself — it drops the protection and the page table entry
 * then reads "written" — so writers never stop.  sync() is one PAGEMAP_SCAN per block with
 * PM_SCAN_WP_MATCHING: under the page table lock, the kernel reports every written page and
 * protects it again, so a write is either before the scan reached its page (reported now, and the
 * caller's copy, made after sync() returns, sees it) or after (it faults and is reported next
 * time).  UFFD_FEATURE_WP_UNPOPULATED (implied by WP_ASYNC) protects never-touched pages too, so
 * the first write to fresh memory is seen.  No thread, no per-page system call.
 *
 * sync (older kernels, or forced).  A write to a protected page blocks the writer and queues a
 * message on the userfaultfd.  A handler thread owned by the tracker reads it, removes the
 * protection of that one page (which wakes the writer) and then sets the page's bit in the
 * block's `pending` bitmap.  sync() takes the pending bits word by word (atomic exchange),
 * protects those pages again, and only then ORs them into the caller's bitmap.  See
 * sync_mode_collect() for why no write is lost.
 *
 * Memory: blocks must be private anonymous or shmem (tmpfs, memfd, shared anonymous).  File-backed
 * memory can change under us through the file (write(2), another mapping), which no page table
 * sees, so it is refused when the tracker is made, with the path in the message.
 *
 * Kernel-mode writes (a read(2) into tracked memory, vhost, O_DIRECT): in async mode the kernel
 * resolves them like user writes.  In sync mode they fault like user writes and wait for the
 * handler — unless the userfaultfd had to be opened with UFFD_USER_MODE_ONLY (unprivileged,
 * vm.unprivileged_userfaultfd=0, no /dev/userfaultfd access), in which case such a write fails
 * with EFAULT.  So sync mode tries the full-power fd first and UFFD_USER_MODE_ONLY last; async
 * mode, where that flag changes nothing, tries it first (least privilege).
 *
 * Threads: the control thread (the caller of start/sync/stop) and, in sync mode, the handler
 * thread.  Writers are the embedder's threads (vCPUs, workload). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "core/err.h"
#include "core/util.h"
#include "ram/track.h"

/* ---- kernel ABI newer than the build headers (Debian 12 ships 6.1 uapi headers) ------------
 * Values from include/uapi/linux/userfaultfd.h and include/uapi/linux/fs.h of Linux 6.7+,
 * documented in Documentation/admin-guide/mm/pagemap.rst and userfaultfd.rst. */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

#include "ram/pagemap.h"

#define SCAN_VEC_LEN 512	/* page_region entries per PAGEMAP_SCAN call */
#define MSGS_PER_READ 64	/* uffd messages read at once by the handler */
#define EAGAIN_RETRIES 100000	/* UFFDIO_WRITEPROTECT while the mm changes: retry, yielding */

struct ublock {
	uint64_t start;		/* host address; set at new, then read-only */
	uint64_t len;
	uint32_t page_size;
	uint64_t npages;
	bool anon_private;	/* some of it is private anonymous (pre-touch candidate) */
	bool registered;	/* control thread only */
	uint64_t *pending;	/* sync mode: pages the handler unprotected and that no sync() has
				 * taken yet.  Atomic words: OR by the handler, exchange by sync() */
	struct page_region *vec;	/* async mode: PAGEMAP_SCAN output; private to sync() */
};

struct uffd {
	struct mfd__tracker t;		/* first member: ops receive &uffd->t */
	bool async;			/* set at new, then read-only */
	uint64_t features;		/* what start() asks UFFDIO_API for; set at new */
	uint32_t nblocks;		/* blocks of ram at new; read-only */
	struct ublock *blk;		/* [nblocks] */
	long host_page;			/* sysconf(_SC_PAGESIZE) */

	/* Control thread only (start/sync/stop); the handler only reads uffd and wake_fd, and only
	 * between pthread_create and pthread_join. */
	int uffd;			/* -1 when stopped */
	int pagemap_fd;			/* async: /proc/self/pagemap, -1 when stopped */
	int wake_fd;			/* sync: eventfd that tells the handler to leave */
	pthread_t handler;
	bool handler_running;

	/* Held by the handler from "unprotect page" to "bit set"; sync() takes it once before
	 * collecting, as a barrier (see sync_mode_collect).  A leaf lock. */
	pthread_mutex_t fault_lock;
	int handler_err;		/* atomic: first error of the handler, 0 if none */
	char handler_msg[160];		/* written once by the handler before handler_err (release) */
	int stopping;			/* atomic: stop() is tearing down; handler errors are moot */
};

static struct uffd *to_uffd(struct mfd__tracker *t)
{
	return (struct uffd *)t;
}

/* ---- opening the userfaultfd ------------------------------------------------------------ */

static int open_syscall(int flags)
{
	long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | flags);
	return fd < 0 ? -errno : (int)fd;
}

static int open_dev(void)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -errno;
	int fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	int rc = fd < 0 ? -errno : fd;
	close(dev);
	return rc;
}

/* Open a userfaultfd; which ways are tried first depends on the mode (see the top comment).
 * Returns the fd or -EPERM/-ENOSYS/... of the most telling failure. */
static int uffd_open(bool prefer_user_mode_only)
{
	int fd, first_err = 0;

	if (prefer_user_mode_only) {
		fd = open_syscall(UFFD_USER_MODE_ONLY);
		if (fd >= 0)
			return fd;
		first_err = fd;
	}
	fd = open_syscall(0);
	if (fd >= 0)
		return fd;
	if (!first_err || first_err == -EINVAL)	/* EINVAL: kernel without USER_MODE_ONLY */
		first_err = fd;
	fd = open_dev();
	if (fd >= 0)
		return fd;
	if (!prefer_user_mode_only) {
		fd = open_syscall(UFFD_USER_MODE_ONLY);
		if (fd >= 0)
			return fd;
	}
	return first_err == -EINVAL ? -ENOSYS : first_err;
}

/* UFFDIO_API may be called once per fd; it returns the kernel's full feature set whatever was
 * asked, so a probe uses a throwaway fd. */
static int uffd_api(int fd, uint64_t want, uint64_t *got)
{
	struct uffdio_api api = { .api = UFFD_API, .features = want };
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return -errno;
	if (got)
		*got = api.features;
	return 0;
}

/* Protect (wp = true) or unprotect [start, start+len).  Unprotecting wakes writers waiting on
 * the range.  EAGAIN means the mm is changing (a non-cooperative event is being delivered):
 * retry.  Returns 0 or -errno. */
static int writeprotect(int fd, uint64_t start, uint64_t len, bool wp)
{
	struct uffdio_writeprotect w = {
		.range = { .start = start, .len = len },
		.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	for (int tries = 0;; tries++) {
		if (ioctl(fd, UFFDIO_WRITEPROTECT, &w) == 0)
			return 0;
		if ((errno != EAGAIN && errno != EINTR) || tries >= EAGAIN_RETRIES)
			return -errno;
		sched_yield();
	}
}

/* ---- what memory backs a block ------------------------------------------------------------ */

static bool is_shmem_path(const char *path)
{
	if (!strncmp(path, "/memfd:", 7) || !strncmp(path, "/dev/zero", 9) ||
	    !strncmp(path, "/SYSV", 5))
		return true;	/* memfd, shared anonymous, SysV shm: all tmpfs inside the kernel */
	struct statfs sf;
	if (path[0] == '/' && !strstr(path, " (deleted)") && statfs(path, &sf) == 0)
		return sf.f_type == TMPFS_MAGIC;
	return false;
}

static bool is_hugetlbfs_path(const char *path)
{
	struct statfs sf;
	return path[0] == '/' && statfs(path, &sf) == 0 && sf.f_type == HUGETLBFS_MAGIC;
}

/* Check that every byte of the block is mapped, by private anonymous or shmem memory. */
static int check_backing(struct ublock *ub, const char *name, struct mfd_error *err)
{
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return mfd__err_set(err, -errno, -1, "uffd tracker: /proc/self/maps");
	char *line = NULL;
	size_t cap = 0;
	uint64_t covered = ub->start, end = ub->start + ub->len;
	int rc = 0;

	while (covered < end && getline(&line, &cap, f) > 0) {
		unsigned long lo, hi, inode;
		char perms[8];
		int path_at = 0;
		if (sscanf(line, "%lx-%lx %7s %*x %*x:%*x %lu %n", &lo, &hi, perms, &inode,
			   &path_at) < 4)
			continue;
		if (hi <= covered)
			continue;
		if (lo > covered)
			break;	/* a hole */
		char *path = path_at ? line + path_at : line + strlen(line);
		path[strcspn(path, "\n")] = '\0';
		bool private_anon = inode == 0 && perms[3] == 'p' &&
				    (path[0] == '\0' || path[0] == '[');
		if (is_hugetlbfs_path(path)) {
			rc = mfd__err_set(err, -EINVAL, -1,
					  "block '%s': hugetlbfs memory (%s) is not supported by the "
					  "uffd tracker", name, path);
			goto out;
		}
		if (!private_anon && !is_shmem_path(path)) {
			rc = mfd__err_set(err, -EINVAL, -1,
					  "block '%s': memory at 0x%lx is backed by '%s', not private "
					  "anonymous or shmem memory; the uffd tracker cannot see writes "
					  "made through a file", name, lo, path[0] ? path : "?");
			goto out;
		}
		ub->anon_private |= private_anon;
		covered = hi;
	}
	if (covered < end)
		rc = mfd__err_set(err, -EFAULT, -1, "block '%s': 0x%" PRIx64 " is not mapped", name,
				  covered);
out:
	free(line);
	fclose(f);
	return rc;
}

/* ---- sync mode: the fault handler ---------------------------------------------------------- */

/* Record the handler's first error (sync() reports it).  what: the failing step. */
static void handler_fail(struct uffd *u, int code, const char *what, uint64_t addr)
{
	int zero = 0;

	if (__atomic_load_n(&u->stopping, __ATOMIC_ACQUIRE))
		return;	/* stop() unregistered under our feet: expected, not an error */
	/* Claim the slot with a positive placeholder, write the message, then publish the code
	 * with release so a sync() that sees it also sees the message. */
	if (!__atomic_compare_exchange_n(&u->handler_err, &zero, 1, false, __ATOMIC_ACQUIRE,
					 __ATOMIC_RELAXED))
		return;
	snprintf(u->handler_msg, sizeof(u->handler_msg), "uffd handler: %s at 0x%" PRIx64, what,
		 addr);
	__atomic_store_n(&u->handler_err, code, __ATOMIC_RELEASE);
}

static struct ublock *find_block(struct uffd *u, uint64_t addr)
{
	for (uint32_t i = 0; i < u->nblocks; i++)
		if (addr - u->blk[i].start < u->blk[i].len)
			return &u->blk[i];
	return NULL;
}

static void handle_fault(struct uffd *u, uint64_t addr)
{
	struct ublock *ub = find_block(u, addr);
	uint64_t page_start, page_len;
	int rc;

	if (!ub) {
		/* Cannot happen (only blocks are registered); unprotect the host page anyway so
		 * the writer is not left waiting forever. */
		page_start = addr & ~(uint64_t)(u->host_page - 1);
		writeprotect(u->uffd, page_start, (uint64_t)u->host_page, false);
		return;
	}
	uint64_t page = (addr - ub->start) / ub->page_size;
	page_start = ub->start + page * ub->page_size;
	page_len = ub->page_size;

	pthread_mutex_lock(&u->fault_lock);
	rc = writeprotect(u->uffd, page_start, page_len, false);
	if (rc == 0)
		/* After the unprotect, never before: sync() may take the bit and re-protect the
		 * page at any moment, and a bit set first could be taken and the page re-protected
		 * before our unprotect lands, leaving the page writable with no bit set. */
		mfd__bit_set_atomic(ub->pending, page);
	pthread_mutex_unlock(&u->fault_lock);

	if (rc < 0) {
		handler_fail(u, rc, "unprotecting a page", page_start);
		/* The writer waits on this page and the tracker cannot serve it: give the block up
		 * so the embedder's threads keep running (unregistering wakes them); the error
		 * reaches the caller through the next sync(). */
		struct uffdio_range r = { .start = ub->start, .len = ub->len };
		ioctl(u->uffd, UFFDIO_UNREGISTER, &r);
	}
}

static void *handler_main(void *arg)
{
	struct uffd *u = arg;
	struct uffd_msg msgs[MSGS_PER_READ];
	struct pollfd pfd[2] = {
		{ .fd = u->uffd, .events = POLLIN },
		{ .fd = u->wake_fd, .events = POLLIN },
	};

	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			handler_fail(u, -errno, "poll", 0);
			break;
		}
		if (pfd[1].revents)
			break;
		if (pfd[0].revents & (POLLERR | POLLHUP)) {
			handler_fail(u, -EIO, "userfaultfd hung up", 0);
			break;
		}
		ssize_t n = read(u->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			handler_fail(u, -errno, "read", 0);
			break;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				continue;	/* no other event was asked for */
			if (!(msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP))
				continue;	/* missing faults: not registered */
			handle_fault(u, msgs[i].arg.pagefault.address);
		}
	}
	return NULL;
}

/* Take the pending bits of one block, re-protect those pages, then report them.
 *
 * Why nothing is lost.  Invariant: a page of the block is writable only if its pending bit is
 * set, or the handler is between its unprotect and its bit set (holding fault_lock).  The
 * handler keeps it (bit set after unprotect).  This function keeps it: between the exchange that
 * clears a word and the re-protect of its pages, those pages are writable with the bit clear —
 * but that window lies inside this sync(), before the bits are handed out, so a write landing in
 * it is seen by the caller, who copies the page after sync() returns.  A write after the
 * re-protect faults and sets the bit again, for the next sync().
 *
 * The barrier: a writer whose write completed before sync() was called was woken by an unprotect
 * that happened before; locking fault_lock once waits for the handler to set that bit, so the
 * write is reported by this sync(), not the next one.
 *
 * Re-protect first, report second: reporting first would let the caller copy the page while it is
 * still writable and bit-less, and a write after the copy would never be seen.  A stale fault
 * (the handler unprotecting a page after we re-protected it) is harmless: it sets the bit again,
 * costing one extra copy of the page. */
static int sync_mode_collect(struct uffd *u, struct ublock *ub, uint64_t *bitmap,
			     struct mfd_error *err)
{
	pthread_mutex_lock(&u->fault_lock);
	pthread_mutex_unlock(&u->fault_lock);

	size_t words = mfd__bitmap_words(ub->npages);
	for (size_t w = 0; w < words; w++) {
		if (!__atomic_load_n(&ub->pending[w], __ATOMIC_RELAXED))
			continue;
		uint64_t bits = __atomic_exchange_n(&ub->pending[w], 0, __ATOMIC_ACQUIRE);
		/* One ioctl per run of consecutive pages. */
		for (uint64_t rest = bits; rest;) {
			unsigned lo = (unsigned)__builtin_ctzll(rest);
			uint64_t run = ~rest >> lo;
			unsigned n = run ? (unsigned)__builtin_ctzll(run) : 64 - lo;
			uint64_t first = w * 64 + lo;
			int rc = writeprotect(u->uffd, ub->start + first * ub->page_size,
					      (uint64_t)n * ub->page_size, true);
			if (rc < 0) {
				/* Put the bits back: they stay owed to the caller. */
				__atomic_fetch_or(&ub->pending[w], bits, __ATOMIC_RELAXED);
				return mfd__err_set(err, rc, -1,
						    "uffd tracker: re-protecting 0x%" PRIx64,
						    ub->start + first * ub->page_size);
			}
			rest &= n + lo >= 64 ? 0 : ~0ull << (lo + n);
		}
		bitmap[w] |= bits;
	}
	return 0;
}

/* ---- async mode: PAGEMAP_SCAN --------------------------------------------------------------- */

/* Set the bits of every block page overlapping [s, e) (host addresses inside the block). */
static void set_range(const struct ublock *ub, uint64_t *bitmap, uint64_t s, uint64_t e)
{
	uint64_t first = (s - ub->start) / ub->page_size;
	uint64_t last = (e - ub->start + ub->page_size - 1) / ub->page_size;
	if (last > ub->npages)
		last = ub->npages;
	if (last > first)
		mfd__bitmap_set_range(bitmap, first, last - first);
}

static int async_collect(struct uffd *u, struct ublock *ub, uint64_t *bitmap, struct mfd_error *err)
{
	uint64_t cur = ub->start, end = ub->start + ub->len;

	while (cur < end) {
		struct pm_scan_arg arg = {
			.size = sizeof(arg),
			.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = cur,
			.end = end,
			.vec = (uint64_t)(uintptr_t)ub->vec,
			.vec_len = SCAN_VEC_LEN,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		long n = ioctl(u->pagemap_fd, PAGEMAP_SCAN, &arg);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = -errno;
			if (e == -EPERM)
				return mfd__err_set(err, e, -1,
						    "uffd tracker: part of 0x%" PRIx64 "..0x%" PRIx64
						    " is no longer write-protect tracked (remapped?)",
						    cur, end);
			return mfd__err_set(err, e, -1, "uffd tracker: PAGEMAP_SCAN 0x%" PRIx64, cur);
		}
		/* Each region was reported and re-protected atomically by the kernel. */
		for (long i = 0; i < n; i++)
			set_range(ub, bitmap, ub->vec[i].start, ub->vec[i].end);
		/* The walk stops early when vec fills up; carry on from where it stopped. */
		if (arg.walk_end <= cur)
			return mfd__err_set(err, -EIO, -1,
					    "uffd tracker: PAGEMAP_SCAN made no progress at 0x%" PRIx64,
					    cur);
		cur = arg.walk_end;
	}
	return 0;
}

/* ---- ops -------------------------------------------------------------------------------- */

static void uffd_stop(struct mfd__tracker *t)
{
	struct uffd *u = to_uffd(t);

	__atomic_store_n(&u->stopping, 1, __ATOMIC_RELEASE);
	/* Unregistering removes every protection of the range and wakes any writer still waiting
	 * in a fault, so the embedder's threads run on whatever the handler does meanwhile. */
	for (uint32_t i = 0; i < u->nblocks; i++) {
		struct ublock *ub = &u->blk[i];
		if (!ub->registered)
			continue;
		struct uffdio_range r = { .start = ub->start, .len = ub->len };
		ioctl(u->uffd, UFFDIO_UNREGISTER, &r);	/* nothing useful to do if it fails: the
							 * close below drops the protection too */
		ub->registered = false;
	}
	if (u->handler_running) {
		uint64_t one = 1;
		ssize_t wr = write(u->wake_fd, &one, sizeof(one));
		(void)wr;	/* an eventfd write of 1 cannot fail short of overflow */
		pthread_join(u->handler, NULL);
		u->handler_running = false;
	}
	if (u->wake_fd >= 0) {
		close(u->wake_fd);
		u->wake_fd = -1;
	}
	if (u->pagemap_fd >= 0) {
		close(u->pagemap_fd);
		u->pagemap_fd = -1;
	}
	if (u->uffd >= 0) {
		close(u->uffd);
		u->uffd = -1;
	}
}

static void prefault_read(const struct ublock *ub, long host_page)
{
	/* Without WP_UNPOPULATED, protection only sticks to pages that have a page table entry.
	 * Reading a never-touched private anonymous page maps the shared zero page read-only,
	 * which can then be protected, so its first write faults to us.  (Writing would allocate
	 * memory; reading a shmem hole would too, but shmem protection uses markers for empty
	 * entries anyway.) */
	for (uint64_t off = 0; off < ub->len; off += (uint64_t)host_page)
		(void)__atomic_load_n((const volatile uint8_t *)(uintptr_t)(ub->start + off),
				      __ATOMIC_RELAXED);
}

static int uffd_start(struct mfd__tracker *t, struct mfd_error *err)
{
	struct uffd *u = to_uffd(t);
	int rc;

	if (u->uffd >= 0)
		return mfd__err_set(err, MFD_ESTATE, -1, "uffd tracker: already started");
	__atomic_store_n(&u->stopping, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&u->handler_err, 0, __ATOMIC_RELAXED);

	rc = uffd_open(u->async);
	if (rc < 0)
		return mfd__err_set(err, rc, -1, "userfaultfd");
	u->uffd = rc;
	rc = uffd_api(u->uffd, u->features, NULL);
	if (rc < 0) {
		mfd__err_set(err, rc, -1, "userfaultfd: UFFDIO_API features 0x%" PRIx64,
			     u->features);
		goto fail;
	}

	for (uint32_t i = 0; i < u->nblocks; i++) {
		struct ublock *ub = &u->blk[i];
		struct uffdio_register reg = {
			.range = { .start = ub->start, .len = ub->len },
			.mode = UFFDIO_REGISTER_MODE_WP,
		};
		if (ioctl(u->uffd, UFFDIO_REGISTER, &reg) < 0) {
			rc = mfd__err_set(err, -errno, -1,
					  "block '%s': UFFDIO_REGISTER (write-protect mode)",
					  t->ram->blocks[i].name);
			goto fail;
		}
		ub->registered = true;
		if (!(reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT))) {
			rc = mfd__err_set(err, -ENOTSUP, -1,
					  "block '%s': this memory does not support write-protection",
					  t->ram->blocks[i].name);
			goto fail;
		}
		if (!u->async) {
			free(ub->pending);
			ub->pending = calloc(mfd__bitmap_words(ub->npages), sizeof(uint64_t));
			if (!ub->pending) {
				rc = mfd__err_set(err, -ENOMEM, -1, "uffd tracker bitmaps");
				goto fail;
			}
		} else if (!ub->vec) {
			ub->vec = calloc(SCAN_VEC_LEN, sizeof(*ub->vec));
			if (!ub->vec) {
				rc = mfd__err_set(err, -ENOMEM, -1, "uffd tracker scan buffer");
				goto fail;
			}
		}
	}

	if (u->async) {
		u->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (u->pagemap_fd < 0) {
			rc = mfd__err_set(err, -errno, -1, "uffd tracker: /proc/self/pagemap");
			goto fail;
		}
	} else {
		u->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (u->wake_fd < 0) {
			rc = mfd__err_set(err, -errno, -1, "uffd tracker: eventfd");
			goto fail;
		}
		/* The handler runs before anything is protected, so no writer ever waits on a
		 * handler that is not there yet. */
		rc = -pthread_create(&u->handler, NULL, handler_main, u);
		if (rc < 0) {
			mfd__err_set(err, rc, -1, "uffd tracker: handler thread");
			goto fail;
		}
		u->handler_running = true;
		if (!(u->features & UFFD_FEATURE_WP_UNPOPULATED))
			for (uint32_t i = 0; i < u->nblocks; i++)
				if (u->blk[i].anon_private)
					prefault_read(&u->blk[i], u->host_page);
	}

	/* Arm: from here on, every page is clean and its first write is seen. */
	for (uint32_t i = 0; i < u->nblocks; i++) {
		rc = writeprotect(u->uffd, u->blk[i].start, u->blk[i].len, true);
		if (rc < 0) {
			mfd__err_set(err, rc, -1, "block '%s': UFFDIO_WRITEPROTECT",
				     t->ram->blocks[i].name);
			goto fail;
		}
	}
	return 0;

fail:
	uffd_stop(t);
	return rc;
}

static int uffd_sync(struct mfd__tracker *t, uint32_t block, uint64_t *bitmap,
		     struct mfd_error *err)
{
	struct uffd *u = to_uffd(t);

	if (block >= u->nblocks)
		return mfd__err_set(err, MFD_EBLOCK, -1, "uffd tracker: no block %u", block);
	if (u->uffd < 0)
		return mfd__err_set(err, MFD_ESTATE, -1, "uffd tracker: not started");
	if (u->async)
		return async_collect(u, &u->blk[block], bitmap, err);

	int herr = __atomic_load_n(&u->handler_err, __ATOMIC_ACQUIRE);
	if (herr < 0)
		return mfd__err_set(err, herr, -1, "%s", u->handler_msg);
	return sync_mode_collect(u, &u->blk[block], bitmap, err);
}

static void uffd_destroy(struct mfd__tracker *t)
{
	struct uffd *u = to_uffd(t);

	uffd_stop(t);
	if (u->blk)
		for (uint32_t i = 0; i < u->nblocks; i++) {
			free(u->blk[i].pending);
			free(u->blk[i].vec);
		}
	free(u->blk);
	pthread_mutex_destroy(&u->fault_lock);
	free(u);
}

static const struct mfd__tracker_ops uffd_ops = {
	.name = "uffd",
	.marks_untouched = true,
	.start = uffd_start,
	.sync = uffd_sync,
	.stop = uffd_stop,
	.destroy = uffd_destroy,
};

/* Does this kernel have the PAGEMAP_SCAN ioctl?  An empty range answers without walking. */
static bool have_pagemap_scan(void)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	struct pm_scan_arg arg = { .size = sizeof(arg), .start = 0, .end = 0 };
	bool ok = ioctl(fd, PAGEMAP_SCAN, &arg) >= 0;
	close(fd);
	return ok;
}

int mfd__tracker_uffd_new_flags(struct mfd__tracker **out, const struct mfd__ram *ram,
				unsigned flags, struct mfd_error *err)
{
	int rc;
	struct uffd *u = calloc(1, sizeof(*u));
	if (!u)
		return mfd__err_set(err, -ENOMEM, -1, "uffd tracker");
	u->t.ops = &uffd_ops;
	u->t.ram = ram;
	u->uffd = u->pagemap_fd = u->wake_fd = -1;
	u->host_page = sysconf(_SC_PAGESIZE);
	pthread_mutex_init(&u->fault_lock, NULL);
	u->nblocks = ram->n;
	u->blk = calloc(ram->n ? ram->n : 1, sizeof(*u->blk));
	if (!u->blk) {
		rc = mfd__err_set(err, -ENOMEM, -1, "uffd tracker");
		goto fail;
	}
	for (uint32_t i = 0; i < ram->n; i++) {
		const struct mfd__block *b = &ram->blocks[i];
		struct ublock *ub = &u->blk[i];
		ub->start = (uint64_t)(uintptr_t)b->host;
		ub->len = b->len;
		ub->page_size = b->page_size;
		ub->npages = b->npages;
		if (ub->start % (uint64_t)u->host_page || ub->len % (uint64_t)u->host_page ||
		    ub->page_size % (uint64_t)u->host_page) {
			rc = mfd__err_set(err, -EINVAL, -1,
					  "block '%s': not aligned to the host page size %ld",
					  b->name, u->host_page);
			goto fail;
		}
		rc = check_backing(ub, b->name, err);
		if (rc < 0)
			goto fail;
	}

	/* Probe the kernel on a throwaway fd (UFFDIO_API works once per fd). */
	uint64_t supported = 0;
	int fd = uffd_open(true);
	if (fd < 0) {
		rc = mfd__err_set(err, fd, -1, "userfaultfd unavailable");
		goto fail;
	}
	rc = uffd_api(fd, 0, &supported);
	close(fd);
	if (rc < 0) {
		mfd__err_set(err, rc, -1, "userfaultfd: UFFDIO_API");
		goto fail;
	}
	if (!(supported & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
		rc = mfd__err_set(err, -ENOSYS, -1, "userfaultfd without write-protect support");
		goto fail;
	}
	if (flags & MFD__UFFD_NO_UNPOPULATED)
		supported &= ~(uint64_t)(UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_WP_ASYNC);

	uint64_t shmem = supported & UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	u->async = !(flags & MFD__UFFD_FORCE_SYNC) && (supported & UFFD_FEATURE_WP_ASYNC) &&
		   have_pagemap_scan();
	if (u->async)
		u->features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED | shmem;
	else
		u->features = UFFD_FEATURE_PAGEFAULT_FLAG_WP | shmem |
			      (supported & UFFD_FEATURE_WP_UNPOPULATED);
	*out = &u->t;
	return 0;

fail:
	uffd_destroy(&u->t);
	return rc;
}

int mfd__tracker_uffd_new(struct mfd__tracker **out, const struct mfd__ram *ram, bool force_sync_mode,
			  struct mfd_error *err)
{
	return mfd__tracker_uffd_new_flags(out, ram, force_sync_mode ? MFD__UFFD_FORCE_SYNC : 0, err);
}

const char *mfd__tracker_uffd_mode(const struct mfd__tracker *t)
{
	if (!t || t->ops != &uffd_ops)
		return NULL;
	return ((const struct uffd *)t)->async ? "async" : "sync";
}
