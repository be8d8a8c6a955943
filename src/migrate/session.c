/* migrate/session — the public session API: create, options, blocks, devices, tracking,
 * callbacks, connect / listen / open, run, cancel, free.  Every role-specific step goes through
 * the role table (roles.c); the machinery the roles share is in runtime.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "migrate/session.h"

MFD_API struct mfd_session *mfd_session_new(enum mfd_role role)
{
	const struct mfd__role_ops *ops = mfd__role_find(role);
	if (!ops)
		return NULL;
	struct mfd_session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->role_id = role;
	s->role = ops;
	/* Incoming: the most to accept (it bounds our allocations).  Otherwise: what to use (for
	 * snapshots, the number of workers). */
	s->opt = (struct mfd__opts){
		.channels = role == MFD_INCOMING ? MFD_MAX_CHANNELS : 4,
		/* 512 pages: 2 MiB, one huge page per packet (docs/design.md, "batch size") */
		.batch_pages = role == MFD_INCOMING ? MFD_MAX_BATCH_PAGES : 512,
		.queue_depth = 4,
		.timeout_ms = 10000,
		.stall_ms = 2000,
		.zero_detect = true,
		.page_checksums = true,
		.device_max = 64ull << 20,
		.codec = MFD_CODEC_NONE,
		.conv = { .auto_throttle = true, .throttle_initial = 20, .throttle_step = 10,
			  .throttle_max = 99 },
	};
	s->downtime_ms = 300;
	s->track.kvm_fd = -1;
	s->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->cancel_fd < 0) {
		free(s);
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->main_tx_lock, NULL);
	mfd__ratelimit_init(&s->rate, 0);
	mfd__errbox_init(&s->errbox);
	mfd__payloads_init(&s->payloads);
	return s;
}

MFD_API void mfd_session_free(struct mfd_session *s)
{
	if (!s)
		return;
	mfd__pool_destroy(s->pool);
	if (s->role->free)
		s->role->free(s);
	mfd__stream_free(s);
	for (unsigned i = 0; i <= MFD_MAX_CHANNELS; i++)
		mfd__chan_free(s->chan[i]);
	for (unsigned i = 0; s->workers && i < s->nworkers; i++) {
		struct mfd__worker *w = &s->workers[i];
		if (w->codec)
			w->codec->ops->destroy(w->codec);
		for (unsigned k = 0; w->state && k < s->payloads.n; k++)
			free(w->state[k]);
		free(w->state);
		free(w->meta);
		free(w->iov);
	}
	free(s->workers);
	mfd__tracking_free(s);
	mfd__devices_free(&s->devices);
	mfd__ratelimit_destroy(&s->rate);
	mfd__ram_free(&s->ram);
	close(s->cancel_fd);
	mfd__errbox_destroy(&s->errbox);
	pthread_mutex_destroy(&s->main_tx_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static bool is_file_role(const struct mfd_session *s)
{
	return s->role->open != NULL;
}

MFD_API int mfd_session_set(struct mfd_session *s, enum mfd_option opt, int64_t v)
{
	/* The operator's parameters: any thread, any time (atomics, read where they apply). */
	switch (opt) {
	case MFD_OPT_DOWNTIME_MS:
		if (v < 1 || v > 3600 * 1000LL)
			return -EINVAL;
		__atomic_store_n(&s->downtime_ms, (uint64_t)v, __ATOMIC_RELAXED);
		return 0;
	case MFD_OPT_MAX_BANDWIDTH:
		if (v < 0)
			return -EINVAL;
		mfd__ratelimit_set(&s->rate, (uint64_t)v);
		return 0;
	default:
		break;
	}
	if (!mfd__session_configurable(s))
		return MFD_ESTATE;
	struct mfd__opts *o = &s->opt;
	switch (opt) {
	case MFD_OPT_CHANNELS:
		if (v < 1 || v > MFD_MAX_CHANNELS)
			return -EINVAL;
		o->channels = (unsigned)v;
		return 0;
	case MFD_OPT_BATCH_PAGES:
		if (v < 1 || v > MFD_MAX_BATCH_PAGES)
			return -EINVAL;
		o->batch_pages = (unsigned)v;
		return 0;
	case MFD_OPT_VERIFY:
		o->verify = v != 0;
		return 0;
	case MFD_OPT_QUEUE_DEPTH:
		if (v < 1 || v > 1024)
			return -EINVAL;
		o->queue_depth = (unsigned)v;
		return 0;
	case MFD_OPT_TIMEOUT_MS:
		if (v < 0 || v > 24 * 3600 * 1000LL)
			return -EINVAL;
		o->timeout_ms = (int)v;
		return 0;
	case MFD_OPT_STALL_MS:
		if (v < 0 || v > 24 * 3600 * 1000LL)
			return -EINVAL;
		o->stall_ms = (int)v;
		return 0;
	case MFD_OPT_ZERO_DETECT:
		o->zero_detect = v != 0;
		return 0;
	case MFD_OPT_DOWNTIME_MS:	/* above */
	case MFD_OPT_MAX_BANDWIDTH:
		return 0;
	case MFD_OPT_DEADLINE_MS:
		if (v < 0)
			return -EINVAL;
		o->conv.deadline_ms = (uint64_t)v;
		return 0;
	case MFD_OPT_DEADLINE_FORCE:
		o->conv.deadline_force = v != 0;
		return 0;
	case MFD_OPT_AUTO_THROTTLE:
		o->conv.auto_throttle = v != 0;
		return 0;
	case MFD_OPT_THROTTLE_INITIAL:
	case MFD_OPT_THROTTLE_STEP:
	case MFD_OPT_THROTTLE_MAX:
		if (v < 1 || v > 99)
			return -EINVAL;
		if (opt == MFD_OPT_THROTTLE_INITIAL)
			o->conv.throttle_initial = (unsigned)v;
		else if (opt == MFD_OPT_THROTTLE_STEP)
			o->conv.throttle_step = (unsigned)v;
		else
			o->conv.throttle_max = (unsigned)v;
		return 0;
	case MFD_OPT_DIRECT_IO:	/* file options: only where there is a file */
		if (!is_file_role(s))
			return -EINVAL;
		o->direct_io = v != 0;
		return 0;
	case MFD_OPT_LAZY:
		if (s->role_id != MFD_RESTORE)
			return -EINVAL;
		o->lazy = v != 0;
		return 0;
	case MFD_OPT_PAGE_CHECKSUMS:
		if (!is_file_role(s))
			return -EINVAL;
		o->page_checksums = v != 0;
		return 0;
	case MFD_OPT_DEVICE_MAX_BYTES:
		if (v < 1 || v > (int64_t)MFD_PROTO_MAX_DATA)
			return -EINVAL;
		o->device_max = (uint64_t)v;
		return 0;
	}
	return -EINVAL;
}

/* ---- dirty tracking ------------------------------------------------------------------------ */

static int set_tracking(struct mfd_session *s, enum mfd__track_kind kind)
{
	if (!s->role->trackable)	/* live migration, live save */
		return MFD_ESTATE;
	if (!mfd__session_configurable(s) || s->track.kind != MFD_TRACK_NONE)
		return MFD_ESTATE;
	if (s->ram.n == 0)
		return -EINVAL;	/* trackers cover the registered blocks: register them first */
	s->track.kind = kind;
	return 0;
}

MFD_API int mfd_session_track_uffd(struct mfd_session *s)
{
	return set_tracking(s, MFD_TRACK_UFFD);
}

MFD_API int mfd_session_track_kvm(struct mfd_session *s, int vm_fd, const struct mfd_kvm_slot *slots,
				  unsigned nslots)
{
	if (vm_fd < 0 || !slots || nslots == 0 || nslots > 4096)
		return -EINVAL;
	for (unsigned i = 0; i < nslots; i++) {
		const struct mfd_kvm_slot *k = &slots[i];
		if (k->block < 0 || (uint32_t)k->block >= s->ram.n || !k->size ||
		    k->size % s->ram.page_size || k->block_offset % s->ram.page_size ||
		    k->block_offset > s->ram.blocks[k->block].len ||
		    k->size > s->ram.blocks[k->block].len - k->block_offset)
			return -EINVAL;
	}
	int rc = set_tracking(s, MFD_TRACK_KVM);
	if (rc)
		return rc;
	s->track.kvm_slots = malloc(nslots * sizeof(*slots));
	if (!s->track.kvm_slots) {
		s->track.kind = MFD_TRACK_NONE;
		return -ENOMEM;
	}
	memcpy(s->track.kvm_slots, slots, nslots * sizeof(*slots));
	s->track.kvm_nslots = nslots;
	s->track.kvm_fd = vm_fd;
	return 0;
}

MFD_API int mfd_session_track_manual(struct mfd_session *s)
{
	int rc = set_tracking(s, MFD_TRACK_MANUAL);
	if (rc)
		return rc;
	/* Created now so that mfd_session_mark_dirty works from the start. */
	rc = mfd__tracker_manual_new(&s->track.tracker, &s->ram, NULL);
	if (rc)
		s->track.kind = MFD_TRACK_NONE;
	return rc;
}

MFD_API int mfd_session_mark_dirty(struct mfd_session *s, int block, uint64_t offset, uint64_t len)
{
	if (s->track.kind != MFD_TRACK_MANUAL || !s->track.tracker)
		return MFD_ESTATE;
	if (block < 0)
		return MFD_EBLOCK;
	return mfd__tracker_manual_mark(s->track.tracker, (uint32_t)block, offset, len);
}

/* The first release's struct mfd_callbacks ended with `log`. */
#define CALLBACKS_SIZE_0_1 (offsetof(struct mfd_callbacks, log) + sizeof(((struct mfd_callbacks *)0)->log))

MFD_API int mfd_session_set_callbacks_sized(struct mfd_session *s, const struct mfd_callbacks *cb,
					    size_t cb_size)
{
	if (!mfd__session_configurable(s))
		return MFD_ESTATE;
	if (!cb) {
		memset(&s->cb, 0, sizeof(s->cb));
		return 0;
	}
	if (cb_size < CALLBACKS_SIZE_0_1)
		return -EINVAL;
	return mfd__struct_in(&s->cb, sizeof(s->cb), cb, cb_size);
}

/* The 0.1 entry point (MULTIFD_0.1 in the linker map): a 0.1 struct, no result. */
MFD_API void (mfd_session_set_callbacks)(struct mfd_session *s, const struct mfd_callbacks *cb);
MFD_API void (mfd_session_set_callbacks)(struct mfd_session *s, const struct mfd_callbacks *cb)
{
	mfd_session_set_callbacks_sized(s, cb, CALLBACKS_SIZE_0_1);
}

MFD_API int mfd_device_add(struct mfd_session *s, const char *name, uint32_t instance,
			   uint32_t version, const struct mfd_device_ops *ops, void *opaque)
{
	if (!mfd__session_configurable(s))
		return MFD_ESTATE;
	return mfd__devices_add(&s->devices, name, instance, version, ops, opaque, NULL);
}

MFD_API int mfd_device_describe(struct mfd_session *s, const char *name, uint32_t instance,
				const char *config, uint64_t fixed_size)
{
	if (!mfd__session_configurable(s))
		return MFD_ESTATE;
	return mfd__devices_describe(&s->devices, name, instance, config, fixed_size);
}

void mfd__session_set_test_knobs(struct mfd_session *s, const struct mfd__test_knobs *k)
{
	s->opt.knobs = *k;
}

MFD_API int mfd_ram_block_add(struct mfd_session *s, const char *name, void *host, uint64_t len,
			      uint32_t page_size, unsigned flags)
{
	if (!mfd__session_configurable(s))
		return MFD_ESTATE;
	/* Under the lock: stats readers on other threads look at the totals. */
	pthread_mutex_lock(&s->lock);
	int rc = mfd__ram_add(&s->ram, name, host, len, page_size, flags, NULL);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* ---- connect, listen, open: through the role ----------------------------------------------- */

/* A step failed before run(): a cancel that came meanwhile is the cause, not its echo. */
static int setup_failed(struct mfd_session *s, int rc, const struct mfd_error *e,
			struct mfd_error *err)
{
	if (mfd__session_canceled(s))
		return mfd__err_set(err, MFD_ECANCELED, -1, "while setting up the %s", s->role->name);
	if (e)
		mfd__err_copy(err, e);
	mfd__session_set_status(s, MFD_STATUS_FAILED);
	return rc;
}

MFD_API int mfd_session_connect(struct mfd_session *s, const char *uri, struct mfd_error *err)
{
	if (!s->role->connect)
		return mfd__err_set(err, MFD_ESTATE, -1, "connect needs an outgoing session");
	if (!mfd__session_configurable(s))
		return mfd__err_set(err, MFD_ESTATE, -1, "session already connected");
	if (s->ram.n == 0)
		return mfd__err_set(err, -EINVAL, -1, "register RAM blocks before connecting");
	struct mfd_error e;
	mfd_error_clear(&e);
	int rc = s->role->connect(s, uri, &e);
	return rc ? setup_failed(s, rc, &e, err) : 0;
}

MFD_API int mfd_session_listen(struct mfd_session *s, const char *uri, struct mfd_error *err)
{
	if (!s->role->listen)
		return mfd__err_set(err, MFD_ESTATE, -1, "listen needs an incoming session");
	if (!mfd__session_configurable(s))
		return mfd__err_set(err, MFD_ESTATE, -1, "session already listening");
	return s->role->listen(s, uri, err);
}

MFD_API int mfd_session_local_uri(struct mfd_session *s, char *buf, size_t len)
{
	return s->role->local_uri ? s->role->local_uri(s, buf, len) : MFD_ESTATE;
}

static int open_file(struct mfd_session *s, const char *path, int fd, int direct_fd,
		     struct mfd_error *err)
{
	int rc;
	if (!s->role->open)
		rc = mfd__err_set(err, MFD_ESTATE, -1, "open_file needs a save or restore session");
	else if (!mfd__session_configurable(s) || s->priv)
		rc = mfd__err_set(err, MFD_ESTATE, -1, "the session already has its file");
	else if (s->ram.n == 0)
		rc = mfd__err_set(err, -EINVAL, -1, "register RAM blocks before opening the file");
	else if ((rc = s->role->open(s, path, fd, direct_fd, err)))	/* owns the fds now */
		return setup_failed(s, rc, NULL, err);
	else
		return 0;
	if (!path) {	/* the session owns the descriptors it was given, whatever happens */
		if (fd >= 0)
			close(fd);
		if (direct_fd >= 0)
			close(direct_fd);
	}
	return rc;
}

MFD_API int mfd_session_open_file(struct mfd_session *s, const char *path, struct mfd_error *err)
{
	if (!path || !path[0])
		return mfd__err_set(err, -EINVAL, -1, "snapshot path empty");
	return open_file(s, path, -1, -1, err);
}

MFD_API int mfd_session_open_fds(struct mfd_session *s, int fd, int direct_fd, struct mfd_error *err)
{
	return open_file(s, NULL, fd, direct_fd, err);
}

/* ---- run and cancel ------------------------------------------------------------------------ */

MFD_API int mfd_session_run(struct mfd_session *s, struct mfd_error *err)
{
	pthread_mutex_lock(&s->lock);
	bool again = s->started, canceled = s->canceled;
	s->started = true;
	pthread_mutex_unlock(&s->lock);
	if (again)
		return mfd__err_set(err, MFD_ESTATE, -1, "a session runs once");
	if (canceled)
		return mfd__err_set(err, MFD_ECANCELED, -1, "canceled before it ran");
	if (s->ram.n == 0)
		return mfd__err_set(err, -EINVAL, -1, "no RAM blocks registered");
	MFD_ST_SET(s, t_start_ns, mfd__now_ns());
	mfd__session_set_status(s, MFD_STATUS_SETUP);
	uint64_t cpu = mfd__thread_cpu_ns();
	int rc = s->role->run(s, err);
	MFD_ST_ADD(s, cpu_ns, mfd__thread_cpu_ns() - cpu);	/* before finish publishes the end */
	return mfd__session_finish(s, rc, err);
}

MFD_API void mfd_session_cancel(struct mfd_session *s)
{
	pthread_mutex_lock(&s->lock);
	if (s->committed) {	/* too late: the guest already belongs to the destination */
		pthread_mutex_unlock(&s->lock);
		return;
	}
	bool first = !s->canceled, before_run = first && !s->started;
	s->canceled = true;
	pthread_mutex_unlock(&s->lock);
	if (!first)
		return;
	if (before_run)	/* run() will not start (it sees `canceled`): say so now, unlocked */
		mfd__session_set_status(s, MFD_STATUS_CANCELLED);
	uint64_t one = 1;
	ssize_t n = write(s->cancel_fd, &one, sizeof(one));
	(void)n;	/* an eventfd write of 1 cannot fail short of overflow */
	mfd__session_fail(s, MFD_ECANCELED, -1, "%s", s->role->name);
}
