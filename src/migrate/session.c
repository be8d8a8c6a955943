/* migrate/session — public session API shared by both roles: options, blocks, listen, run,
 * cancel, statistics; and the helpers the outgoing and incoming state machines share. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include "core/json.h"
#include "migrate/session.h"
#include "migrate/snapshot.h"

MFD_API struct mfd_session *mfd_session_new(enum mfd_role role)
{
	if (role != MFD_OUTGOING && role != MFD_INCOMING && role != MFD_SAVE && role != MFD_RESTORE)
		return NULL;
	struct mfd_session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->role = role;
	/* Incoming: the most to accept (it bounds our allocations).  Otherwise: what to use (for
	 * snapshots, the number of workers). */
	s->channels = role == MFD_INCOMING ? MFD_MAX_CHANNELS : 4;
	s->batch_pages = role == MFD_INCOMING ? MFD_MAX_BATCH_PAGES : 512;	/* 512: 2 MiB, one
									 * huge page per packet */
	s->queue_depth = 4;
	s->timeout_ms = 10000;
	s->zero_detect = true;
	s->listen_fd = -1;
	s->admit_fd = -1;
	s->kvm_fd = -1;
	s->device_max = 64ull << 20;
	s->conv_cfg = (struct mfd__converge_cfg){ .downtime_ms = 300, .auto_throttle = true,
						  .throttle_initial = 20, .throttle_step = 10,
						  .throttle_max = 99 };
	s->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->cancel_fd < 0) {
		free(s);
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->main_tx_lock, NULL);
	mfd__ratelimit_init(&s->rate, 0);
	mfd__errbox_init(&s->errbox);
	return s;
}

static void free_workers(struct mfd__wstate *ws, unsigned n);

MFD_API void mfd_session_free(struct mfd_session *s)
{
	if (!s)
		return;
	mfd__pool_destroy(s->pool);
	mfd__snapshot_free(s);
	for (unsigned i = 0; i <= MFD_MAX_CHANNELS; i++)
		mfd__chan_free(s->chan[i]);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->unix_path[0])
		unlink(s->unix_path);
	for (int i = 0; i < s->pending_fds.nfds; i++)
		if (s->pending_fds.fds[i] >= 0)
			close(s->pending_fds.fds[i]);
	free_workers(s->ws, s->nws);
	mfd__tracker_destroy(s->tracker);
	if (s->dirty)
		for (uint32_t i = 0; i < s->ram.n; i++)
			free(s->dirty[i]);
	free(s->dirty);
	free(s->kvm_slots);
	mfd__devices_free(&s->devices);
	if (s->barrier_ready)
		mfd__barrier_destroy(&s->barrier);
	mfd__ratelimit_destroy(&s->rate);
	free(s->map);
	free(s->src_len);
	mfd__ram_free(&s->ram);
	close(s->cancel_fd);
	mfd__errbox_destroy(&s->errbox);
	pthread_mutex_destroy(&s->main_tx_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static bool configurable(struct mfd_session *s)
{
	pthread_mutex_lock(&s->lock);
	bool ok = !s->started && s->nchan == 0 && s->listen_fd < 0 && s->pending_fds.nfds == 0;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

MFD_API int mfd_session_set(struct mfd_session *s, enum mfd_option opt, int64_t v)
{
	if (!configurable(s))
		return MFD_ESTATE;
	switch (opt) {
	case MFD_OPT_CHANNELS:
		if (v < 1 || v > MFD_MAX_CHANNELS)
			return -EINVAL;
		s->channels = (unsigned)v;
		return 0;
	case MFD_OPT_BATCH_PAGES:
		if (v < 1 || v > MFD_MAX_BATCH_PAGES)
			return -EINVAL;
		s->batch_pages = (unsigned)v;
		return 0;
	case MFD_OPT_VERIFY:
		s->verify = v != 0;
		return 0;
	case MFD_OPT_QUEUE_DEPTH:
		if (v < 1 || v > 1024)
			return -EINVAL;
		s->queue_depth = (unsigned)v;
		return 0;
	case MFD_OPT_TIMEOUT_MS:
		if (v < 0 || v > 24 * 3600 * 1000LL)
			return -EINVAL;
		s->timeout_ms = (int)v;
		return 0;
	case MFD_OPT_ZERO_DETECT:
		s->zero_detect = v != 0;
		return 0;
	case MFD_OPT_DOWNTIME_MS:
		if (v < 1 || v > 3600 * 1000LL)
			return -EINVAL;
		s->conv_cfg.downtime_ms = (uint64_t)v;
		return 0;
	case MFD_OPT_MAX_BANDWIDTH:
		if (v < 0)
			return -EINVAL;
		s->rate.rate_bps = (uint64_t)v;
		return 0;
	case MFD_OPT_DEADLINE_MS:
		if (v < 0)
			return -EINVAL;
		s->conv_cfg.deadline_ms = (uint64_t)v;
		return 0;
	case MFD_OPT_DEADLINE_FORCE:
		s->conv_cfg.deadline_force = v != 0;
		return 0;
	case MFD_OPT_AUTO_THROTTLE:
		s->conv_cfg.auto_throttle = v != 0;
		return 0;
	case MFD_OPT_THROTTLE_INITIAL:
	case MFD_OPT_THROTTLE_STEP:
	case MFD_OPT_THROTTLE_MAX:
		if (v < 1 || v > 99)
			return -EINVAL;
		if (opt == MFD_OPT_THROTTLE_INITIAL)
			s->conv_cfg.throttle_initial = (unsigned)v;
		else if (opt == MFD_OPT_THROTTLE_STEP)
			s->conv_cfg.throttle_step = (unsigned)v;
		else
			s->conv_cfg.throttle_max = (unsigned)v;
		return 0;
	case MFD_OPT_DIRECT_IO:	/* file options: only where there is a file */
		if (s->role != MFD_SAVE && s->role != MFD_RESTORE)
			return -EINVAL;
		s->direct_io = v != 0;
		return 0;
	case MFD_OPT_LAZY:
		if (s->role != MFD_RESTORE)
			return -EINVAL;
		s->lazy = v != 0;
		return 0;
	case MFD_OPT_DEVICE_MAX_BYTES:
		if (v < 1 || v > (int64_t)MFD_PROTO_MAX_DATA)
			return -EINVAL;
		s->device_max = (uint64_t)v;
		return 0;
	}
	return -EINVAL;
}

static int set_tracking(struct mfd_session *s, enum mfd__track_kind kind)
{
	if (s->role != MFD_OUTGOING && s->role != MFD_SAVE)	/* live migration, live save */
		return MFD_ESTATE;
	if (!configurable(s) || s->track_kind != MFD_TRACK_NONE)
		return MFD_ESTATE;
	if (s->ram.n == 0)
		return -EINVAL;	/* trackers cover the registered blocks: register them first */
	s->track_kind = kind;
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
	s->kvm_slots = malloc(nslots * sizeof(*slots));
	if (!s->kvm_slots) {
		s->track_kind = MFD_TRACK_NONE;
		return -ENOMEM;
	}
	memcpy(s->kvm_slots, slots, nslots * sizeof(*slots));
	s->kvm_nslots = nslots;
	s->kvm_fd = vm_fd;
	return 0;
}

MFD_API int mfd_session_track_manual(struct mfd_session *s)
{
	int rc = set_tracking(s, MFD_TRACK_MANUAL);
	if (rc)
		return rc;
	/* Created now so that mfd_session_mark_dirty works from the start. */
	rc = mfd__tracker_manual_new(&s->tracker, &s->ram, NULL);
	if (rc)
		s->track_kind = MFD_TRACK_NONE;
	return rc;
}

MFD_API int mfd_session_mark_dirty(struct mfd_session *s, int block, uint64_t offset, uint64_t len)
{
	if (s->track_kind != MFD_TRACK_MANUAL || !s->tracker)
		return MFD_ESTATE;
	if (block < 0)
		return MFD_EBLOCK;
	return mfd__tracker_manual_mark(s->tracker, (uint32_t)block, offset, len);
}

MFD_API void mfd_session_set_callbacks(struct mfd_session *s, const struct mfd_callbacks *cb)
{
	if (cb)
		s->cb = *cb;
	else
		memset(&s->cb, 0, sizeof(s->cb));
}

MFD_API int mfd_device_add(struct mfd_session *s, const char *name, uint32_t instance,
			   uint32_t version, const struct mfd_device_ops *ops, void *opaque)
{
	if (!configurable(s))
		return MFD_ESTATE;
	return mfd__devices_add(&s->devices, name, instance, version, ops, opaque, NULL);
}

void mfd__session_set_test_knobs(struct mfd_session *s, const struct mfd__test_knobs *k)
{
	s->knobs = *k;
}

MFD_API int mfd_ram_block_add(struct mfd_session *s, const char *name, void *host, uint64_t len,
			      uint32_t page_size, unsigned flags)
{
	if (!configurable(s))
		return MFD_ESTATE;
	/* Under the lock: stats readers on other threads look at the totals. */
	pthread_mutex_lock(&s->lock);
	int rc = mfd__ram_add(&s->ram, name, host, len, page_size, flags, NULL);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

MFD_API int mfd_session_connect(struct mfd_session *s, const char *uri, struct mfd_error *err)
{
	if (s->role != MFD_OUTGOING)
		return mfd__err_set(err, MFD_ESTATE, -1, "connect needs an outgoing session");
	if (!configurable(s))
		return mfd__err_set(err, MFD_ESTATE, -1, "session already connected");
	struct mfd_error e;
	mfd_error_clear(&e);
	int rc = mfd__outgoing_connect(s, uri, &e);
	if (rc == 0)
		return 0;
	/* A cancel shuts the sockets down, so the connect fails with whatever that caused: report
	 * the cancel, not its echo. */
	if (mfd__session_canceled(s))
		return mfd__err_set(err, MFD_ECANCELED, -1, "while connecting");
	mfd__err_copy(err, &e);
	mfd__session_set_status(s, MFD_STATUS_FAILED);
	return rc;
}

MFD_API int mfd_session_listen(struct mfd_session *s, const char *uri, struct mfd_error *err)
{
	struct mfd__uri u;
	int rc;
	if (s->role != MFD_INCOMING)
		return mfd__err_set(err, MFD_ESTATE, -1, "listen needs an incoming session");
	if (!configurable(s))
		return mfd__err_set(err, MFD_ESTATE, -1, "session already listening");
	if ((rc = mfd__uri_parse(uri, &u, err)))
		return rc;
	if (u.kind == MFD_URI_FD) {
		if (u.nfds == 1 && mfd__sock_is_listening(u.fds[0])) {
			s->listen_fd = u.fds[0];
			return 0;
		}
		s->pending_fds = u;	/* connected sockets, one per channel */
		return 0;
	}
	if (u.kind == MFD_URI_FILE)
		return mfd__err_set(err, MFD_EURI, -1, "'%s': file channels are not streams", uri);
	int fd = mfd__sock_listen(&u, MFD_MAX_CHANNELS + 1, err);
	if (fd < 0)
		return fd;
	s->listen_fd = fd;
	if (u.kind == MFD_URI_UNIX)
		memcpy(s->unix_path, u.path, strlen(u.path) + 1);
	return 0;
}

MFD_API int mfd_session_local_uri(struct mfd_session *s, char *buf, size_t len)
{
	if (s->listen_fd < 0)
		return MFD_ESTATE;
	return mfd__sock_local_uri(s->listen_fd, buf, len);
}

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
	__atomic_store_n(&s->t_start_ns, mfd__now_ns(), __ATOMIC_RELAXED);
	mfd__session_set_status(s, MFD_STATUS_SETUP);
	int rc;
	switch (s->role) {
	case MFD_OUTGOING: rc = mfd__outgoing_run(s, err); break;
	case MFD_INCOMING: rc = mfd__incoming_run(s, err); break;
	case MFD_SAVE: rc = mfd__save_run(s, err); break;
	case MFD_RESTORE: rc = mfd__restore_run(s, err); break;
	default: rc = MFD_ESTATE; break;
	}
	return mfd__session_finish(s, rc, err);
}

MFD_API void mfd_session_cancel(struct mfd_session *s)
{
	pthread_mutex_lock(&s->lock);
	if (s->committed) {	/* too late: the guest already belongs to the destination */
		pthread_mutex_unlock(&s->lock);
		return;
	}
	bool first = !s->canceled;
	s->canceled = true;
	if (first && !s->started)	/* run() will not start; say so now */
		mfd__session_set_status(s, MFD_STATUS_CANCELLED);
	pthread_mutex_unlock(&s->lock);
	if (!first)
		return;
	uint64_t one = 1;
	ssize_t n = write(s->cancel_fd, &one, sizeof(one));
	(void)n;	/* an eventfd write of 1 cannot fail short of overflow */
	mfd__session_fail(s, MFD_ECANCELED, -1, "%s", s->role == MFD_SAVE	  ? "save"
						   : s->role == MFD_RESTORE ? "restore"
									    : "migration");
}

/* ---- helpers shared by the two roles ------------------------------------------------------ */

void mfd__session_set_status(struct mfd_session *s, int status)
{
	__atomic_store_n(&s->status, status, __ATOMIC_RELEASE);
}

bool mfd__session_canceled(struct mfd_session *s)
{
	pthread_mutex_lock(&s->lock);
	bool c = s->canceled;
	pthread_mutex_unlock(&s->lock);
	return c;
}

void mfd__session_shutdown_all(struct mfd_session *s)
{
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i <= MFD_MAX_CHANNELS; i++)
		mfd__chan_shutdown(s->chan[i]);
	if (s->admit_fd >= 0)	/* a hello being read: wake its reader */
		shutdown(s->admit_fd, SHUT_RDWR);
	pthread_mutex_unlock(&s->lock);
}

void mfd__session_commit(struct mfd_session *s)
{
	pthread_mutex_lock(&s->lock);
	s->committed = true;
	pthread_mutex_unlock(&s->lock);
}

bool mfd__transport_error(int code)
{
	return code == -EPIPE || code == -ECONNRESET || code == MFD_ECLOSED || code == MFD_ETRUNC ||
	       code == -EIO || code == -ESHUTDOWN || code == -ENOTCONN;
}

void mfd__session_peer_error(struct mfd_session *s, const struct mfd_error *e)
{
	pthread_mutex_lock(&s->errbox.lock);
	if (s->errbox.err.code == 0 || mfd__transport_error(s->errbox.err.code)) {
		s->errbox.err = *e;
		__atomic_store_n(&s->errbox.code, e->code, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&s->errbox.lock);
}

int mfd__session_send_main(struct mfd_session *s, uint8_t type, const void *meta, uint32_t len)
{
	pthread_mutex_lock(&s->main_tx_lock);
	int rc = mfd__send_packet(s->chan[0], &s->main_tx_seq, type, 0, meta, len, NULL);
	pthread_mutex_unlock(&s->main_tx_lock);
	return rc;
}

/* First failure: tell the peer why (best effort: the main channel may be the thing that broke),
 * then shut every channel down so no thread stays blocked in I/O. */
static void stop_on_failure(struct mfd_session *s)
{
	pthread_mutex_lock(&s->lock);
	bool first = !s->stopping;
	s->stopping = true;
	bool tell = first && s->main_ready && s->chan[0];
	pthread_mutex_unlock(&s->lock);
	if (tell && pthread_mutex_trylock(&s->main_tx_lock) == 0) {
		/* Best effort, never blocking: a failure must not wait on a peer that stopped
		 * reading (cancel would hang), and if another thread is mid-write on the main
		 * channel the record cannot go in between. */
		struct mfd_error e;
		uint8_t meta[8 + MFD_ERROR_MSG_MAX], hdr[MFD_PKT_HDR_LEN];
		mfd__errbox_get(&s->errbox, &e);
		uint32_t len = mfd__errrec_encode(meta, e.code ? e.code : MFD_EREJECTED, e.msg);
		uint64_t sq = __atomic_fetch_add(&s->main_tx_seq, 1, __ATOMIC_RELAXED);
		struct mfd__pkt_hdr h = { .type = MFD_PKT_ERROR, .seq = sq, .meta_len = len };
		mfd__pkt_hdr_encode(hdr, &h, meta);
		struct iovec iov[2] = { { hdr, sizeof(hdr) }, { meta, len } };
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
		ssize_t n = sendmsg(s->chan[0]->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)n;	/* all, part (the peer then sees a torn packet), or nothing */
		pthread_mutex_unlock(&s->main_tx_lock);
	}
	mfd__session_shutdown_all(s);
	pthread_mutex_lock(&s->lock);
	bool barrier = s->barrier_ready;
	pthread_mutex_unlock(&s->lock);
	if (barrier)
		mfd__barrier_abort(&s->barrier);
}

int mfd__session_fail(struct mfd_session *s, int code, int chan, const char *fmt, ...)
{
	char msg[MFD_ERROR_MSG_MAX];
	va_list ap;
	pthread_mutex_lock(&s->lock);
	bool committed = s->committed;
	pthread_mutex_unlock(&s->lock);
	if (committed)	/* the migration is done: what fails now is only teardown */
		return code;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mfd__errbox_set(&s->errbox, code, chan, "%s", msg);
	stop_on_failure(s);
	/* Under the lock, so the run thread cannot destroy the pool meanwhile (finish() takes it
	 * away under the same lock).  Lock order: s->lock, then the pool's. */
	pthread_mutex_lock(&s->lock);
	if (s->pool)
		mfd__pool_stop(s->pool, code);
	pthread_mutex_unlock(&s->lock);
	return code;
}

static void pool_on_fail(void *owner)
{
	stop_on_failure(owner);
}

int mfd__session_add_chan(struct mfd_session *s, unsigned id, int fd)
{
	struct mfd__chan *c = mfd__chan_sock_new(fd, (int)id);
	if (!c)
		return -ENOMEM;
	c->hook = s->knobs.hook;
	c->hook_ctx = s->knobs.hook_ctx;
	pthread_mutex_lock(&s->lock);
	s->chan[id] = c;
	bool canceled = s->canceled;
	pthread_mutex_unlock(&s->lock);
	if (canceled)
		mfd__chan_shutdown(c);
	return 0;
}

static void free_workers(struct mfd__wstate *ws, unsigned n)
{
	if (!ws)
		return;
	for (unsigned i = 0; i < n; i++) {
		free(ws[i].meta);
		free(ws[i].iov);
	}
	free(ws);
}

int mfd__session_alloc_workers(struct mfd_session *s, unsigned n)
{
	struct mfd__wstate *ws = calloc(n, sizeof(*ws));
	if (!ws)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		ws[i].meta = malloc(MFD_PROTO_MAX_META);
		ws[i].iov = malloc((MFD_MAX_BATCH_PAGES + 2) * sizeof(struct iovec));
		if (!ws[i].meta || !ws[i].iov) {
			free_workers(ws, n);
			return -ENOMEM;
		}
	}
	/* Published under the lock: stats readers on other threads look at it. */
	pthread_mutex_lock(&s->lock);
	s->ws = ws;
	s->nws = n;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int mfd__session_start_pool(struct mfd_session *s, unsigned workers, mfd__pool_fn fn)
{
	struct mfd__pool_cfg cfg = {
		.workers = workers,
		.job_size = sizeof(struct mfd__job),
		.queue_depth = s->queue_depth,
		.fn = fn,
		.owner = s,
		.on_fail = pool_on_fail,
		.errbox = &s->errbox,
	};
	struct mfd__pool *p;
	int rc = mfd__pool_create(&p, &cfg);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->lock);
	s->pool = p;
	bool canceled = s->canceled;
	pthread_mutex_unlock(&s->lock);
	if (canceled)
		mfd__pool_fail(p, MFD_ECANCELED);
	return 0;
}

int mfd__session_finish(struct mfd_session *s, int rc, struct mfd_error *err)
{
	/* Stop and join the workers before reporting, so nothing runs after run() returns. */
	pthread_mutex_lock(&s->lock);
	bool committed = s->committed;
	pthread_mutex_unlock(&s->lock);
	if (committed)
		rc = 0;	/* errors after the commit (teardown, a late cancel) change nothing */
	else if (rc == 0 && mfd__errbox_code(&s->errbox))
		rc = mfd__errbox_code(&s->errbox);
	if (rc) {
		mfd__session_fail(s, rc, -1, "%s", "session");
	}
	pthread_mutex_lock(&s->lock);
	struct mfd__pool *pool = s->pool;
	s->pool = NULL;	/* unpublished first: mfd__session_fail uses it under the lock */
	pthread_mutex_unlock(&s->lock);
	mfd__pool_destroy(pool);
	__atomic_store_n(&s->t_end_ns, mfd__now_ns(), __ATOMIC_RELAXED);
	if (rc) {
		struct mfd_error e;
		mfd__errbox_get(&s->errbox, &e);
		mfd__err_copy(err, &e);
		if (e.code)
			rc = e.code;	/* the first error is the cause; later ones are its echoes */
		/* "cancelled" only when this side was canceled; a peer's cancel is a failure here. */
		mfd__session_set_status(s, mfd__session_canceled(s) ? MFD_STATUS_CANCELLED
							      : MFD_STATUS_FAILED);
		return rc;
	}
	mfd__session_set_status(s, MFD_STATUS_COMPLETED);
	return 0;
}

/* ---- packets --------------------------------------------------------------------------- */

int mfd__send_packet(struct mfd__chan *c, uint64_t *seq, uint8_t type, uint32_t round,
		     const void *meta, uint32_t meta_len, struct mfd__errbox *eb)
{
	uint8_t hdr[MFD_PKT_HDR_LEN];
	/* Atomic only so stats readers see a consistent count; one thread sends per channel. */
	uint64_t sq = __atomic_fetch_add(seq, 1, __ATOMIC_RELAXED);
	struct mfd__pkt_hdr h = { .type = type, .seq = sq, .meta_len = meta_len, .round = round };
	mfd__pkt_hdr_encode(hdr, &h, meta);
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)meta, meta_len } };
	int rc = mfd__chan_writev(c, iov, meta_len ? 2 : 1);
	if (rc && eb)
		mfd__errbox_set(eb, rc, c->id, "sending packet type %u", type);
	return rc;
}

int mfd__recv_packet(struct mfd__chan *c, uint64_t *seq, struct mfd__pkt_hdr *h, uint8_t *meta,
		     struct mfd_error *err)
{
	uint8_t hdr[MFD_PKT_HDR_LEN];
	int rc = mfd__chan_read(c, hdr, sizeof(hdr));
	if (rc)
		return mfd__err_set(err, rc, c->id, "reading packet header");
	if ((rc = mfd__pkt_hdr_decode(hdr, h, c->id, err)))
		return rc;
	if (h->data_len && h->type != MFD_PKT_DEVICE)
		return mfd__err_set(err, MFD_ETYPE, c->id, "packet type %u with data on the main channel",
				    h->type);
	rc = mfd__chan_read(c, meta, h->meta_len);
	if (rc)
		return mfd__err_set(err, rc == MFD_ECLOSED ? MFD_ETRUNC : rc, c->id,
				    "reading packet meta");
	if ((rc = mfd__pkt_check(hdr, meta, h->meta_len, c->id, err)))
		return rc;
	uint64_t want = __atomic_load_n(seq, __ATOMIC_RELAXED);
	if (h->seq != want)
		return mfd__err_set(err, MFD_ESEQ, c->id, "packet %llu, expected %llu",
				    (unsigned long long)h->seq, (unsigned long long)want);
	__atomic_store_n(seq, want + 1, __ATOMIC_RELAXED);
	return 0;
}

/* ---- verify: digest of every page --------------------------------------------------------- */

#define DIGEST_CHUNK_PAGES 512

int mfd__job_digest(struct mfd_session *s, const struct mfd__job *j)
{
	const struct mfd__block *b = &s->ram.blocks[j->block];
	uint64_t sum = 0, ps = b->page_size;
	/* Seeds tie each page digest to its position, so a page landing at the wrong offset or in
	 * the wrong block changes the total.  The seed uses the block's position in the source's
	 * table (j->tag), which both sides know, not the local index. */
	for (uint64_t i = j->first; i < j->first + j->count; i++)
		sum += mfd_digest(b->host + i * ps, ps, (uint64_t)j->tag * 0x100000000ull + i);
	__atomic_fetch_add(&s->digest, sum, __ATOMIC_RELAXED);
	return 0;
}

int mfd__session_digest(struct mfd_session *s, const uint32_t *order, uint32_t n)
{
	__atomic_store_n(&s->digest, 0, __ATOMIC_RELAXED);
	for (uint32_t k = 0; k < n; k++) {
		const struct mfd__block *b = &s->ram.blocks[order[k]];
		for (uint64_t p = 0; p < b->npages; p += DIGEST_CHUNK_PAGES) {
			struct mfd__job j = {
				.kind = MFD_JOB_DIGEST,
				.block = order[k],
				.tag = k,
				.first = p,
				.count = MFD_MIN(DIGEST_CHUNK_PAGES, b->npages - p),
			};
			int rc = mfd__pool_submit(s->pool, &j);
			if (rc)
				return rc;
		}
	}
	return mfd__pool_sync(s->pool);
}

/* ---- statistics --------------------------------------------------------------------------- */

MFD_API const char *mfd_status_name(int status)
{
	static const char *const names[] = { "none", "setup", "active", "switchover", "completed",
					     "failed", "cancelled" };
	return status >= 0 && status < (int)MFD_ARRAY_SIZE(names) ? names[status] : "unknown";
}

MFD_API void mfd_session_get_stats(struct mfd_session *s, struct mfd_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->status = __atomic_load_n(&s->status, __ATOMIC_ACQUIRE);
	uint64_t start = __atomic_load_n(&s->t_start_ns, __ATOMIC_RELAXED), end = __atomic_load_n(&s->t_end_ns, __ATOMIC_RELAXED);
	uint64_t setup = __atomic_load_n(&s->t_setup_ns, __ATOMIC_RELAXED);
	if (start) {
		st->total_ms = ((end ? end : mfd__now_ns()) - start) / 1000000;
		st->setup_ms = setup ? (setup - start) / 1000000 : 0;
	}
	pthread_mutex_lock(&s->lock);
	st->mem_bytes = s->ram.total_bytes;
	st->channels = s->nchan ? s->nchan - 1 : s->channels;
	for (unsigned i = 0; i < s->nchan && i <= MFD_MAX_CHANNELS; i++) {
		struct mfd__chan *c = s->chan[i];
		if (!c)
			continue;
		st->chan[i].bytes = __atomic_load_n(&c->bytes_in, __ATOMIC_RELAXED) +
				    __atomic_load_n(&c->bytes_out, __ATOMIC_RELAXED);
		st->wire_bytes += st->chan[i].bytes;
	}
	for (unsigned i = 0; s->ws && i < s->nws; i++) {
		st->chan[i + 1].packets = __atomic_load_n(&s->ws[i].packets, __ATOMIC_RELAXED);
		st->normal_pages += __atomic_load_n(&s->ws[i].normal_pages, __ATOMIC_RELAXED);
		st->zero_pages += __atomic_load_n(&s->ws[i].zero_pages, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&s->lock);
	st->chan[0].packets = __atomic_load_n(&s->main_tx_seq, __ATOMIC_RELAXED) +
			      __atomic_load_n(&s->main_rx_seq, __ATOMIC_RELAXED);
	for (unsigned i = 0; i <= st->channels; i++)
		st->packets += st->chan[i].packets;
	st->rounds = __atomic_load_n(&s->st_rounds, __ATOMIC_RELAXED);
	st->dirty_sync_count = __atomic_load_n(&s->st_syncs, __ATOMIC_RELAXED);
	st->remaining_bytes = __atomic_load_n(&s->st_remaining, __ATOMIC_RELAXED);
	st->dirty_rate_bps = __atomic_load_n(&s->st_dirty_rate, __ATOMIC_RELAXED);
	st->bandwidth_bps = __atomic_load_n(&s->st_bandwidth, __ATOMIC_RELAXED);
	st->mbps = (double)st->bandwidth_bps * 8 / 1e6;
	st->expected_downtime_ms = __atomic_load_n(&s->st_expected_dt, __ATOMIC_RELAXED);
	st->downtime_ms = __atomic_load_n(&s->st_downtime_ms, __ATOMIC_RELAXED);
	st->eta_ms = __atomic_load_n(&s->st_eta_ms, __ATOMIC_RELAXED);
	st->throttle_pct = __atomic_load_n(&s->st_throttle, __ATOMIC_RELAXED);
	st->throttle_pct_max = __atomic_load_n(&s->st_throttle_max, __ATOMIC_RELAXED);
	st->device_bytes = __atomic_load_n(&s->st_device_bytes, __ATOMIC_RELAXED);
	st->file_bytes = __atomic_load_n(&s->st_file_bytes, __ATOMIC_RELAXED);
	st->ready_ms = __atomic_load_n(&s->st_ready_ms, __ATOMIC_RELAXED);
	st->verified = __atomic_load_n(&s->verified, __ATOMIC_RELAXED);
	st->digest = st->verified ? __atomic_load_n(&s->digest, __ATOMIC_RELAXED) : 0;
}

MFD_API int mfd_stats_json(const struct mfd_stats *st, char *buf, size_t len)
{
	struct mfd__json j;
	mfd__json_init(&j, buf, len);
	mfd__json_begin(&j, NULL);
	mfd__json_str(&j, "status", mfd_status_name(st->status));
	mfd__json_u64(&j, "total_ms", st->total_ms);
	mfd__json_u64(&j, "setup_ms", st->setup_ms);
	mfd__json_u64(&j, "mem_bytes", st->mem_bytes);
	mfd__json_u64(&j, "wire_bytes", st->wire_bytes);
	mfd__json_u64(&j, "normal_pages", st->normal_pages);
	mfd__json_u64(&j, "zero_pages", st->zero_pages);
	mfd__json_u64(&j, "packets", st->packets);
	mfd__json_u64(&j, "channels", st->channels);
	double secs = st->total_ms / 1000.0;
	mfd__json_double(&j, "throughput_mib_s",
			 secs > 0 ? (double)st->mem_bytes / (1024.0 * 1024.0) / secs : 0.0);
	mfd__json_begin_array(&j, "per_channel");
	for (unsigned i = 0; i <= st->channels && i <= MFD_MAX_CHANNELS; i++) {
		mfd__json_begin(&j, NULL);
		mfd__json_u64(&j, "bytes", st->chan[i].bytes);
		mfd__json_u64(&j, "packets", st->chan[i].packets);
		mfd__json_end(&j);
	}
	mfd__json_end_array(&j);
	mfd__json_u64(&j, "rounds", st->rounds);
	mfd__json_u64(&j, "dirty_sync_count", st->dirty_sync_count);
	mfd__json_u64(&j, "remaining_bytes", st->remaining_bytes);
	mfd__json_u64(&j, "dirty_rate_bps", st->dirty_rate_bps);
	mfd__json_u64(&j, "bandwidth_bps", st->bandwidth_bps);
	mfd__json_double(&j, "mbps", st->mbps);
	mfd__json_u64(&j, "expected_downtime_ms", st->expected_downtime_ms);
	mfd__json_u64(&j, "downtime_ms", st->downtime_ms);
	mfd__json_u64(&j, "eta_ms", st->eta_ms);
	mfd__json_u64(&j, "throttle_pct", st->throttle_pct);
	mfd__json_u64(&j, "throttle_pct_max", st->throttle_pct_max);
	mfd__json_u64(&j, "device_bytes", st->device_bytes);
	mfd__json_u64(&j, "file_bytes", st->file_bytes);
	mfd__json_u64(&j, "ready_ms", st->ready_ms);
	mfd__json_bool(&j, "verified", st->verified);
	mfd__json_end(&j);
	return (int)mfd__json_finish(&j);
}
