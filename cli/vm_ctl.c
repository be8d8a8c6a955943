/* cli/vm_ctl — see vm_ctl.h.
 *
 * Threads and what they touch:
 *   - the `vm run` main thread: vmctl_new/listen/incoming/restore/incoming_wait/free;
 *   - the control server's thread (ctl_server.c): handle(), one request at a time;
 *   - one operation thread at a time (outgoing_thread for a migration or a save,
 *     incoming_thread for an arriving migration), which also runs the library's callbacks.
 * Everything in struct vmctl that more than one of them touches is protected by its lock; the
 * VM itself has its own (vm.h). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"
#include "ctl_request.h"
#include "ctl_server.h"
#include "vm_ctl.h"
#include "../vmm/vm.h"

#define DEVICE_NAME "tinyvm"
#define DEVICE_VERSION 1

enum role { ROLE_NONE, ROLE_SOURCE, ROLE_DEST };

/* What the library's callbacks get as their opaque: set under the lock before the operation's
 * session has its callbacks, then read-only until the next operation (one at a time). */
struct op_ctx {
	struct vmctl *c;
	struct mfd_session *s;
	const char *operation;		/* "migrate", "save" or "incoming" */
};

/* The operator's parameters of the running or last migration or save, as in force. */
struct op_live {
	int64_t channels, downtime_ms, max_bandwidth;
};

/* What a migrate or save request asked for: written by the server thread before it starts the
 * operation thread, which takes it (descriptors included) at its start; both under the lock. */
struct op_params {
	bool saving, live, direct_io;
	char target[CTL_MAX_STR + 1];	/* URI or path; "" with descriptors */
	int64_t channels, downtime_ms, max_bandwidth;
	int fds[CTL_MAX_FDS];		/* passed by the client; owned here until taken */
	unsigned nfds;
};

struct vmctl {
	struct vm *vm;			/* set at creation, read-only */
	struct ctl_server *srv;		/* the main thread's: set by vmctl_listen */
	pthread_mutex_t lock;		/* protects everything below; taken before the VM's own
					 * lock when both are held (query, stop, cont and
					 * resume_guest call the VM under it) */
	pthread_cond_t cond;		/* mig_running or quit changed */

	bool quit;			/* a `quit` request arrived */
	bool user_paused;		/* the operator's `stop` holds (until `cont`): operations
					 * leave the guest paused */

	/* The operation (one at a time). */
	enum role role;
	struct op_params op;
	struct op_ctx ctx;		/* the callbacks' opaque (see struct op_ctx) */
	struct op_live live;		/* changed by `set` while it runs */
	bool have_live;
	bool deferred;			/* vm run --incoming defer: waits for migrate-incoming */
	bool incoming_started;		/* migrate-incoming (or --incoming URI) began listening */
	bool saving;			/* the running or last operation is a save */
	struct mfd_session *mig;	/* while an operation thread runs */
	pthread_t mig_thread;
	bool mig_running, mig_joinable;
	int mig_rc;
	char mig_err[MFD_ERROR_MSG_MAX];
	bool have_stats;
	struct mfd_stats stats;		/* final stats of the last operation */
	struct mfd_session *pending;	/* incoming session created by vmctl_incoming */
	char incoming_uri[256];
	bool migrated_away;		/* source: completed, guest runs elsewhere */

	/* The switchover record: each vCPU's sweep counter where the guest stood still, and with
	 * verify (vm run --verify, demo and tests) the digest of guest RAM and the workload's
	 * pattern, taken on the source after it completed (the VM stays paused) and on the
	 * destination before it starts the VM, which then waits for them. */
	bool verify;			/* set by vmctl_new, then read-only */
	bool have_switch;
	bool have_digest;
	uint64_t digest;
	bool pattern_checked, pattern_ok;
	char pattern_err[256];
	unsigned nswitch;
	uint64_t switch_sweeps[VM_MAX_VCPUS];
	double verify_ms;
	double start_ms;		/* destination: from the session's end to the guest running */
	bool have_start;
};

/* ---- library callbacks -------------------------------------------------------------------- */

static int vm_stop_for(struct vmctl *c)
{
	int rc = vm_pause(c->vm);
	if (rc == -EINVAL) {	/* the guest stopped by itself: its state is final, fine */
		struct vm_status st;
		vm_get_status(c->vm, &st);
		if (st.state == VM_STOPPED)
			return 0;
	}
	return rc;
}

static int cb_stop(void *opaque)
{
	return vm_stop_for(((struct op_ctx *)opaque)->c);
}

/* Let the guest run again after an operation paused it, unless the operator paused it: an
 * operation leaves the guest in the run state it found it in. */
static void resume_guest(struct vmctl *c)
{
	pthread_mutex_lock(&c->lock);	/* held across: a `stop` cannot slip in between */
	if (!c->user_paused)
		vm_resume(c->vm);
	pthread_mutex_unlock(&c->lock);
}

static void cb_resume(void *opaque)
{
	resume_guest(((struct op_ctx *)opaque)->c);
}

static void cb_throttle(void *opaque, unsigned pct)
{
	vm_set_throttle(((struct op_ctx *)opaque)->c->vm, pct);
}

/* One event line (docs/json.md, "Events"): kind "status" (value: the status) or "round". */
static void event_line(struct ctl_out *o, const char *operation, const char *kind,
		       uint64_t value, const struct mfd_stats *st, const char *error)
{
	char js[8192];
	mfd_stats_json(st, js, sizeof(js));
	ctl_out_printf(o, "{\"schema\":%d,\"event\":\"%s\",", MFD_JSON_SCHEMA, kind);
	if (!strcmp(kind, "round"))
		ctl_out_printf(o, "\"round\":%" PRIu64, value);
	else
		ctl_out_printf(o, "\"status\":\"%s\"", mfd_status_name((int)value));
	ctl_out_printf(o, ",\"operation\":\"%s\",\"migration\":%s", operation, js);
	if (error) {
		ctl_out_printf(o, ",\"migration_error\":");
		ctl_out_json_str(o, error);
	}
	ctl_out_printf(o, "}");
}

static bool final_status(int status)
{
	return status == MFD_STATUS_COMPLETED || status == MFD_STATUS_FAILED ||
	       status == MFD_STATUS_CANCELLED;
}

/* The library's events, to the control socket's subscribers.  On the operation's thread, or on
 * the server's (a cancel before the run), possibly under c->lock: it takes no lock of ours. */
static void cb_event(void *opaque, int event, uint64_t value)
{
	struct op_ctx *x = opaque;
	/* The end is told by finish_migration, once a query shows it too (with what it reports). */
	if (event == MFD_EVENT_STATUS && final_status((int)value))
		return;
	if (event != MFD_EVENT_STATUS && event != MFD_EVENT_ROUND)
		return;
	char line[CTL_MAX_REPLY];
	struct ctl_out o = { line, sizeof(line), 0, false };
	struct mfd_stats st;
	mfd_session_get_stats(x->s, &st);
	event_line(&o, x->operation, event == MFD_EVENT_ROUND ? "round" : "status", value, &st, NULL);
	if (!o.truncated)
		ctl_server_broadcast(x->c->srv, o.buf, o.len);
}

static const struct mfd_callbacks op_callbacks = { .stop = cb_stop, .resume = cb_resume,
						   .throttle = cb_throttle, .event = cb_event };

static long dev_save(void *opaque, void *buf, size_t cap)
{
	struct vmctl *c = opaque;
	size_t need = vm_state_size(c->vm), used = 0;
	if (cap < need)
		return (long)need;
	int rc = vm_state_save(c->vm, buf, cap, &used);
	return rc < 0 ? rc : (long)used;
}

static int dev_load(void *opaque, const void *buf, size_t len, uint32_t version)
{
	struct vmctl *c = opaque;
	char err[256];
	int rc = vm_state_load(c->vm, buf, len, err, sizeof(err));
	if (rc < 0) {
		pthread_mutex_lock(&c->lock);
		snprintf(c->mig_err, sizeof(c->mig_err), "vCPU state: %s", err);
		pthread_mutex_unlock(&c->lock);
	}
	return rc;
}

static const struct mfd_device_ops dev_ops = { dev_save, dev_load };

/* Register the VM's RAM regions as blocks (and, outgoing on KVM, its slots as the tracker). */
static void cb_log(void *opaque, const char *msg)
{
	(void)opaque;
	fprintf(stderr, "tinyvm: %s\n", msg);
}

static int add_vm(struct vmctl *c, struct mfd_session *s, bool incoming, bool no_tracker)
{
	struct mfd_kvm_slot slots[VM_MAX_REGIONS];
	unsigned nslots = 0;
	for (unsigned i = 0; i < vm_region_count(c->vm); i++) {
		const struct vm_region *r = vm_region_get(c->vm, i);
		/* A new VM's RAM is fresh anonymous memory, all zero: zero pages need no write. */
		int b = mfd_ram_block_add(s, r->name, r->host, r->size, 4096,
					  incoming ? MFD_BLOCK_ZEROED : 0);
		if (b < 0)
			return b;
		if (r->kvm_slot != VM_NO_SLOT)
			slots[nslots++] = (struct mfd_kvm_slot){ .slot = r->kvm_slot, .flags = r->kvm_flags,
								 .guest_phys_addr = r->gpa,
								 .size = r->size, .block = b };
	}
	int rc = mfd_device_add(s, DEVICE_NAME, 0, DEVICE_VERSION, &dev_ops, c);
	if (rc == 0) {
		/* A destination configured otherwise refuses before any page moves. */
		char cfg[256];
		vm_describe(c->vm, cfg, sizeof(cfg));
		rc = mfd_device_describe(s, DEVICE_NAME, 0, cfg, 0);
	}
	if (rc < 0 || incoming || no_tracker)
		return rc < 0 ? rc : 0;
	if (vm_kvm_fd(c->vm) >= 0 && nslots)
		return mfd_session_track_kvm(s, vm_kvm_fd(c->vm), slots, nslots);
	return mfd_session_track_uffd(s);
}

static uint64_t vm_digest(struct vmctl *c)
{
	uint64_t d = 0;
	for (unsigned i = 0; i < vm_region_count(c->vm); i++) {
		const struct vm_region *r = vm_region_get(c->vm, i);
		d += cli_digest(r->host, r->size, 4096, 2) * (2 * i + 1);
	}
	return d;
}

/* At the switchover point (source paused after completing; destination before starting). */
static void record_switchover(struct vmctl *c)
{
	double t0 = cli_now_s();
	struct vm_dirty_result res[VM_MAX_VCPUS];
	char err[256] = "";
	int prc = c->verify ? vm_verify_dirty_pattern(c->vm, res, err, sizeof(err)) : -ENOTSUP;
	uint64_t d = c->verify ? vm_digest(c) : 0;
	pthread_mutex_lock(&c->lock);
	c->have_switch = true;
	c->digest = d;
	c->have_digest = c->verify;
	c->pattern_checked = prc != -ENOTSUP && prc != -EINVAL;
	c->pattern_ok = prc == 0;
	snprintf(c->pattern_err, sizeof(c->pattern_err), "%s", prc ? err : "");
	c->nswitch = vm_vcpu_count(c->vm);
	for (unsigned i = 0; i < c->nswitch; i++)
		c->switch_sweeps[i] = vm_serial_sweep(c->vm, i);
	c->verify_ms = (cli_now_s() - t0) * 1000;
	pthread_mutex_unlock(&c->lock);
}

static const char *op_name(const struct vmctl *c)	/* under c->lock */
{
	return c->saving ? "save" : c->role == ROLE_DEST ? "incoming" : "migrate";
}

/* The operation thread's last act: publish its outcome, and tell the subscribers.  Until then
 * query shows no final status (see do_query), so whatever a final status reports exists by the
 * time it is seen. */
static void finish_migration(struct vmctl *c, struct mfd_session *s, int rc,
			     const struct mfd_error *err)
{
	static char line[CTL_MAX_REPLY];	/* one operation thread at a time */
	struct ctl_out o = { line, sizeof(line), 0, false };
	pthread_mutex_lock(&c->lock);
	if (s)
		mfd_session_get_stats(s, &c->stats);
	else
		c->stats.status = MFD_STATUS_FAILED;
	c->have_stats = true;
	c->mig_rc = rc;
	if (rc && !c->mig_err[0])
		snprintf(c->mig_err, sizeof(c->mig_err), "%s", err->code ? err->msg : mfd_strerror(rc));
	c->mig = NULL;
	c->mig_running = false;
	event_line(&o, op_name(c), "status", (uint64_t)c->stats.status, &c->stats,
		   c->mig_err[0] ? c->mig_err : NULL);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	if (!o.truncated)
		ctl_server_broadcast(c->srv, o.buf, o.len);
	mfd_session_free(s);
}

/* Connect (migrate) or open the file (save): to the target, or on the passed descriptors,
 * which the session owns from the call on (the ones never handed over are closed here). */
static int open_target(struct mfd_session *s, struct op_params *op, struct mfd_error *err)
{
	if (op->saving && op->nfds)
		return mfd_session_open_fds(s, op->fds[0], op->nfds > 1 ? op->fds[1] : -1, err);
	if (op->saving)
		return mfd_session_open_file(s, op->target, err);
	if (!op->nfds)
		return mfd_session_connect(s, op->target, err);
	char uri[16 + CTL_MAX_FDS * 12];
	int n = snprintf(uri, sizeof(uri), "fd:");
	for (unsigned i = 0; i < op->nfds; i++)
		n += snprintf(uri + n, sizeof(uri) - (size_t)n, "%s%d", i ? "," : "", op->fds[i]);
	return mfd_session_connect(s, uri, err);
}

static void *outgoing_thread(void *arg)
{
	struct vmctl *c = arg;
	struct op_params op;
	pthread_mutex_lock(&c->lock);
	op = c->op;
	c->op.nfds = 0;		/* the descriptors are this thread's now */
	pthread_mutex_unlock(&c->lock);

	struct mfd_session *s = mfd_session_new(op.saving ? MFD_SAVE : MFD_OUTGOING);
	bool paused_here = false, handed_over = false;
	struct mfd_error err;
	mfd_error_clear(&err);
	int rc = s ? 0 : -ENOMEM;
	/* The request's parameters first: a `set` may change the two live ones from the moment
	 * the session is published below. */
	if (rc == 0 && op.channels)
		rc = mfd_session_set(s, MFD_OPT_CHANNELS, op.channels);
	if (rc == 0 && op.downtime_ms)
		rc = mfd_session_set(s, MFD_OPT_DOWNTIME_MS, op.downtime_ms);
	if (rc == 0 && op.max_bandwidth)
		rc = mfd_session_set(s, MFD_OPT_MAX_BANDWIDTH, op.max_bandwidth);
	pthread_mutex_lock(&c->lock);
	c->mig = s;
	c->ctx = (struct op_ctx){ c, s, op.saving ? "save" : "migrate" };
	c->live = (struct op_live){ .channels = op.channels ? op.channels : 4,
				    .downtime_ms = op.downtime_ms ? op.downtime_ms : 300,
				    .max_bandwidth = op.max_bandwidth };
	c->have_live = true;
	pthread_mutex_unlock(&c->lock);
	if (rc == 0 && op.saving && op.direct_io && !op.nfds)
		rc = mfd_session_set(s, MFD_OPT_DIRECT_IO, 1);	/* with descriptors: direct_fd */
	if (rc == 0)
		rc = add_vm(c, s, false, op.saving && !op.live);
	if (rc == 0) {
		struct mfd_callbacks cb = op_callbacks;
		cb.opaque = &c->ctx;
		rc = mfd_session_set_callbacks(s, &cb);
		if (rc == 0 && op.saving && !op.live) {	/* a stopped save: pause first */
			rc = vm_stop_for(c);
			paused_here = rc == 0;
		}
		if (rc == 0) {
			handed_over = true;
			rc = open_target(s, &op, &err);
		}
	}
	if (!handed_over)
		for (unsigned i = 0; i < op.nfds; i++)
			close(op.fds[i]);
	if (rc == 0)
		rc = mfd_session_run(s, &err);
	if (rc == 0 && !op.saving) {
		/* The guest now runs on the destination; this one stays paused for good. */
		record_switchover(c);
		pthread_mutex_lock(&c->lock);
		c->migrated_away = true;
		pthread_mutex_unlock(&c->lock);
	}
	if (op.saving && (rc == 0 || paused_here)) {
		/* A snapshot is a checkpoint: the guest goes on here (a live save leaves it stopped
		 * after the last pass; a failed live save has already resumed it), unless the
		 * operator had paused it. */
		if (rc == 0)
			record_switchover(c);
		resume_guest(c);
	}
	if (!s) {
		pthread_mutex_lock(&c->lock);
		snprintf(c->mig_err, sizeof(c->mig_err), "out of memory");
		pthread_mutex_unlock(&c->lock);
	}
	finish_migration(c, s, rc, &err);
	return NULL;
}

static void *incoming_thread(void *arg)
{
	struct vmctl *c = arg;
	pthread_mutex_lock(&c->lock);
	struct mfd_session *s = c->pending;
	c->pending = NULL;
	pthread_mutex_unlock(&c->lock);
	struct mfd_error err;
	mfd_error_clear(&err);
	int rc = mfd_session_run(s, &err);
	if (rc == 0) {
		double t0 = cli_now_s();
		record_switchover(c);
		char e[256];
		rc = vm_start(c->vm, e, sizeof(e));
		pthread_mutex_lock(&c->lock);
		c->start_ms = (cli_now_s() - t0) * 1000;
		c->have_start = rc == 0;
		pthread_mutex_unlock(&c->lock);
		if (rc < 0) {
			pthread_mutex_lock(&c->lock);
			snprintf(c->mig_err, sizeof(c->mig_err), "starting the migrated VM: %s", e);
			pthread_mutex_unlock(&c->lock);
		}
	}
	finish_migration(c, s, rc, &err);
	return NULL;
}

int vmctl_incoming(struct vmctl *c, const char *uri, char *errbuf, size_t errlen)
{
	struct mfd_session *s = mfd_session_new(MFD_INCOMING);
	struct mfd_error err;
	mfd_error_clear(&err);
	if (!s)
		return snprintf(errbuf, errlen, "out of memory"), -ENOMEM;
	int rc = add_vm(c, s, true, true);
	if (rc < 0) {
		snprintf(errbuf, errlen, "registering the VM: %s", mfd_strerror(rc));
		goto fail;
	}
	pthread_mutex_lock(&c->lock);	/* no operation runs: the context is free */
	c->ctx = (struct op_ctx){ c, s, "incoming" };
	pthread_mutex_unlock(&c->lock);
	/* Events to the control socket's subscribers; what the library wants logged (strangers
	 * refused while we wait) to stderr. */
	struct mfd_callbacks cb = { .log = cb_log, .event = cb_event, .opaque = &c->ctx };
	if ((rc = mfd_session_set_callbacks(s, &cb)) < 0) {
		snprintf(errbuf, errlen, "callbacks: %s", mfd_strerror(rc));
		goto fail;
	}
	if ((rc = mfd_session_listen(s, uri, &err)) < 0) {
		snprintf(errbuf, errlen, "%s", err.msg);
		goto fail;
	}
	pthread_mutex_lock(&c->lock);
	if (mfd_session_local_uri(s, c->incoming_uri, sizeof(c->incoming_uri)) < 0)
		snprintf(c->incoming_uri, sizeof(c->incoming_uri), "%s", uri);
	c->role = ROLE_DEST;
	c->incoming_started = true;
	c->pending = s;
	c->mig = s;
	c->mig_running = true;
	rc = -pthread_create(&c->mig_thread, NULL, incoming_thread, c);
	c->mig_joinable = rc == 0;
	if (rc) {
		c->mig = NULL;
		c->pending = NULL;
		c->mig_running = false;
	}
	pthread_mutex_unlock(&c->lock);
	if (rc == 0)
		return 0;
	snprintf(errbuf, errlen, "cannot start the migration thread");
fail:
	mfd_session_free(s);
	return rc;
}

/* A restore session for path, opened: eager ones read page data with O_DIRECT (straight into
 * guest RAM, no copy through the page cache and no second copy of the guest left there: on
 * these machines also steadier, docs/design.md), unless the file system refuses it. */
static struct mfd_session *open_restore(struct vmctl *c, const char *path, bool lazy, bool direct,
					int *rcp, char *errbuf, size_t errlen)
{
	struct mfd_session *s = mfd_session_new(MFD_RESTORE);
	struct mfd_error err;
	mfd_error_clear(&err);
	if (!s) {
		*rcp = -ENOMEM;
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	int rc = add_vm(c, s, true, true);
	if (rc == 0)
		rc = mfd_session_set(s, lazy ? MFD_OPT_LAZY : MFD_OPT_DIRECT_IO, lazy || direct);
	if (rc < 0)
		snprintf(errbuf, errlen, "registering the VM: %s", mfd_strerror(rc));
	if (rc == 0 && (rc = mfd_session_open_file(s, path, &err)) < 0)
		cli_file_errmsg(&err, rc, errbuf, errlen);
	*rcp = rc;
	return s;
}

int vmctl_restore(struct vmctl *c, const char *path, bool lazy, double *ready_ms, char *errbuf,
		  size_t errlen)
{
	struct mfd_error err;
	mfd_error_clear(&err);
	int rc;
	struct mfd_session *s = open_restore(c, path, lazy, !lazy, &rc, errbuf, errlen);
	if (rc == -EINVAL && !lazy) {	/* no O_DIRECT here (tmpfs, some network file systems) */
		mfd_session_free(s);
		fprintf(stderr, "tinyvm: %s: the file system refuses O_DIRECT; reading it through the "
			"page cache\n", path);
		s = open_restore(c, path, false, false, &rc, errbuf, errlen);
	}
	if (!s)
		return rc;
	if (rc == 0 && (rc = mfd_session_run(s, &err)) < 0)
		cli_file_errmsg(&err, rc, errbuf, errlen);
	struct mfd_stats st;
	mfd_session_get_stats(s, &st);
	*ready_ms = (double)st.ready_ms;
	mfd_session_free(s);
	if (rc == 0) {
		pthread_mutex_lock(&c->lock);
		bool failed = c->mig_err[0];
		if (failed)
			snprintf(errbuf, errlen, "%s", c->mig_err);
		pthread_mutex_unlock(&c->lock);
		if (failed)
			rc = -EIO;
	}
	return rc;
}

int vmctl_incoming_wait(struct vmctl *c, uint64_t timeout_ms, char *errbuf, size_t errlen)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(timeout_ms / 1000);
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	int rc = 0;
	pthread_mutex_lock(&c->lock);
	/* Deferred: nothing runs until migrate-incoming, which is waited for as well. */
#define WAITING (c->mig_running || (c->deferred && !c->incoming_started))
	while (WAITING && !c->quit && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&c->cond, &c->lock, &ts);
	if (WAITING) {
#undef WAITING
		/* Not an errno: a migration that fails with -ETIMEDOUT (a silent source) must not
		 * read as "still waiting". */
		rc = c->quit ? -EINTR : VMCTL_STILL_WAITING;
		snprintf(errbuf, errlen, "%s", c->quit ? "quit requested" : "still waiting");
	} else {
		rc = c->mig_rc;
		if (rc == 0 && c->mig_err[0])
			rc = -EIO;	/* migrated, but the VM would not start */
		snprintf(errbuf, errlen, "%s", c->mig_err);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

bool vmctl_incoming_arriving(struct vmctl *c)
{
	struct mfd_stats st = { 0 };
	pthread_mutex_lock(&c->lock);
	if (c->mig_running && c->mig)
		mfd_session_get_stats(c->mig, &st);
	pthread_mutex_unlock(&c->lock);
	return st.status == MFD_STATUS_ACTIVE || st.status == MFD_STATUS_SWITCHOVER;
}

const char *vmctl_incoming_uri(struct vmctl *c)
{
	return c->incoming_uri;
}

void vmctl_incoming_defer(struct vmctl *c)
{
	pthread_mutex_lock(&c->lock);
	c->deferred = true;
	c->role = ROLE_DEST;
	pthread_mutex_unlock(&c->lock);
}

/* ---- control protocol ----------------------------------------------------------------------- */

static void reply_error(struct ctl_out *o, const char *msg)
{
	ctl_out_printf(o, "{\"ok\":false,\"error\":");
	ctl_out_json_str(o, msg);
	ctl_out_printf(o, "}");
}

static void do_query(struct vmctl *c, struct ctl_out *o)
{
	struct vm_status vs;
	/* The VM's state is read under our lock: an operation thread resumes or leaves the guest
	 * before it publishes its outcome, so a final status never comes with a stale VM state. */
	pthread_mutex_lock(&c->lock);
	vm_get_status(c->vm, &vs);
	unsigned n = vm_vcpu_count(c->vm);
	ctl_out_printf(o, "{\"ok\":true,\"schema\":%d,\"accel\":\"%s\",\"vm\":\"%s\",\"vcpus\":%u,"
		       "\"sweeps\":[", MFD_JSON_SCHEMA, vm_accel_name(vm_accel(c->vm)),
		       vm_run_state_name(vs.state), n);
	for (unsigned i = 0; i < n; i++)
		ctl_out_printf(o, "%s%" PRIu64, i ? "," : "", vm_serial_sweep(c->vm, i));
	ctl_out_printf(o, "]");
	ctl_out_printf(o, ",\"role\":\"%s\"", c->role == ROLE_SOURCE ? "source"
					   : c->role == ROLE_DEST ? "destination" : "none");
	if (c->incoming_uri[0]) {
		ctl_out_printf(o, ",\"incoming_uri\":");
		ctl_out_json_str(o, c->incoming_uri);
	}
	if (c->have_live)
		ctl_out_printf(o, ",\"parameters\":{\"channels\":%" PRId64 ",\"downtime_ms\":%" PRId64
			       ",\"max_bandwidth\":%" PRId64 "}", c->live.channels, c->live.downtime_ms,
			       c->live.max_bandwidth);
	if (c->role != ROLE_NONE || c->have_stats || c->mig_running) {
		ctl_out_printf(o, ",\"operation\":\"%s\"", op_name(c));
		struct mfd_stats st;
		if (c->mig)
			mfd_session_get_stats(c->mig, &st);
		else
			st = c->stats;
		/* The session may have ended while its thread still records the switchover, resumes
		 * the guest or keeps the error: until that thread published the outcome, a finished
		 * session reads as still finishing. */
		if (c->mig_running && final_status(st.status))
			st.status = st.status == MFD_STATUS_COMPLETED ? MFD_STATUS_SWITCHOVER
								      : MFD_STATUS_ACTIVE;
		char js[4096];
		mfd_stats_json(&st, js, sizeof(js));
		ctl_out_printf(o, ",\"migration\":%s", js);
		if (!c->mig_running && c->mig_err[0]) {
			ctl_out_printf(o, ",\"migration_error\":");
			ctl_out_json_str(o, c->mig_err);
		}
	}
	if (c->have_switch) {
		ctl_out_printf(o, ",\"switchover\":{\"sweeps\":[");
		for (unsigned i = 0; i < c->nswitch; i++)
			ctl_out_printf(o, "%s%" PRIu64, i ? "," : "", c->switch_sweeps[i]);
		ctl_out_printf(o, "]");
		if (c->have_digest)
			ctl_out_printf(o, ",\"digest\":\"%016" PRIx64 "\",\"verify_ms\":%.1f",
				       c->digest, c->verify_ms);
		if (c->pattern_checked) {	/* pattern_error: "" when the check passed */
			ctl_out_printf(o, ",\"pattern_ok\":%s,\"pattern_error\":",
				       c->pattern_ok ? "true" : "false");
			ctl_out_json_str(o, c->pattern_err);
		}
		if (c->have_start)
			ctl_out_printf(o, ",\"start_ms\":%.1f", c->start_ms);
		ctl_out_printf(o, "}");
	}
	pthread_mutex_unlock(&c->lock);
	ctl_out_printf(o, "}");
}

/* migrate or save: checked by ctl_request_parse; here, whether the VM can do it now. */
static void do_operation(struct vmctl *c, const struct ctl_request *req, int *fds, unsigned nfds,
			 struct ctl_out *o)
{
	bool saving = req->cmd == CTL_CMD_SAVE;
	pthread_mutex_lock(&c->lock);
	/* A guest that arrived by migration may leave again once it runs here. */
	const char *why = c->mig_running ? (c->role == ROLE_DEST ? "an incoming migration is running"
							 : "a migration is already running")
			  : c->role == ROLE_DEST && c->mig_rc ? "the incoming migration failed"
			  : c->migrated_away ? "this VM already migrated away"
					     : NULL;
	if (!why) {
		struct vm_status vs;
		vm_get_status(c->vm, &vs);
		if (vs.state == VM_CREATED)
			why = "the VM has not started";
	}
	if (why) {
		pthread_mutex_unlock(&c->lock);
		return reply_error(o, why);
	}
	if (c->mig_joinable) {	/* a previous, finished operation */
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->mig_thread, NULL);
		pthread_mutex_lock(&c->lock);
		c->mig_joinable = false;
	}
	struct op_params *op = &c->op;
	*op = (struct op_params){ .saving = saving, .live = req->live, .direct_io = req->direct_io,
				  .channels = req->channels, .downtime_ms = req->downtime_ms,
				  .max_bandwidth = req->max_bandwidth };
	if (req->fds_used) {
		for (unsigned i = 0; i < nfds; i++) {	/* taken: the server no longer closes them */
			op->fds[i] = fds[i];
			fds[i] = -1;
		}
		op->nfds = nfds;
	} else {
		snprintf(op->target, sizeof(op->target), "%s", req->target);
	}
	c->saving = saving;
	if (!saving)
		c->role = ROLE_SOURCE;
	c->mig_err[0] = '\0';
	c->have_stats = false;
	memset(&c->stats, 0, sizeof(c->stats));	/* status "none" until the thread's session runs */
	/* The next switchover's record, not the arrival's. */
	c->have_switch = c->have_digest = c->have_start = c->pattern_checked = false;
	c->mig_running = true;
	int rc = pthread_create(&c->mig_thread, NULL, outgoing_thread, c);
	c->mig_joinable = rc == 0;
	if (rc) {
		c->mig_running = false;
		for (unsigned i = 0; i < op->nfds; i++)
			close(op->fds[i]);
		op->nfds = 0;
	}
	pthread_mutex_unlock(&c->lock);
	if (rc)
		return reply_error(o, "cannot start the migration thread");
	ctl_out_printf(o, "{\"ok\":true}");
}

/* The control server's handler: one request, one reply (docs/control.md). */
/* set: the operator's parameters of the running migration or save (QMP's
 * migrate-set-parameters), any time while it runs. */
static void do_set(struct vmctl *c, const struct ctl_request *req, struct ctl_out *o)
{
	int rc = 0;
	pthread_mutex_lock(&c->lock);
	bool running = c->mig_running && c->mig && c->role != ROLE_DEST;
	if (running && req->has_max_bandwidth) {
		rc = mfd_session_set(c->mig, MFD_OPT_MAX_BANDWIDTH, req->max_bandwidth);
		if (rc == 0)
			c->live.max_bandwidth = req->max_bandwidth;
	}
	if (running && rc == 0 && req->downtime_ms) {
		rc = mfd_session_set(c->mig, MFD_OPT_DOWNTIME_MS, req->downtime_ms);
		if (rc == 0)
			c->live.downtime_ms = req->downtime_ms;
	}
	pthread_mutex_unlock(&c->lock);
	if (!running)
		return reply_error(o, "no migration or save is running here (give the values with "
				      "migrate or save)");
	if (rc < 0)
		return reply_error(o, mfd_strerror(rc));
	ctl_out_printf(o, "{\"ok\":true}");
}

/* migrate-incoming: a VM started with --incoming defer listens now. */
static void do_migrate_incoming(struct vmctl *c, const struct ctl_request *req, struct ctl_out *o)
{
	char err[MFD_ERROR_MSG_MAX + 64];
	pthread_mutex_lock(&c->lock);
	const char *why = !c->deferred ? "this VM was not started with --incoming defer"
			  : c->incoming_started ? "the incoming migration was already started"
						: NULL;
	pthread_mutex_unlock(&c->lock);
	if (why)
		return reply_error(o, why);
	if (vmctl_incoming(c, req->target, err, sizeof(err)) < 0)
		return reply_error(o, err);
	pthread_mutex_lock(&c->lock);
	pthread_cond_broadcast(&c->cond);	/* the main thread's wait has something to wait for */
	ctl_out_printf(o, "{\"ok\":true,\"incoming_uri\":");
	ctl_out_json_str(o, c->incoming_uri);
	ctl_out_printf(o, "}");
	pthread_mutex_unlock(&c->lock);
}

static void handle(void *opaque, const char *line, size_t len, int *fds, unsigned nfds,
		   struct ctl_out *o, bool *subscribe)
{
	static struct ctl_msg m;	/* the server runs one request at a time */
	struct vmctl *c = opaque;
	struct ctl_request req;
	char err[320];
	if (ctl_request_parse(line, len, nfds, &m, &req, err, sizeof(err)))
		return reply_error(o, err);
	switch (req.cmd) {
	case CTL_CMD_QUERY:
		return do_query(c, o);
	case CTL_CMD_MIGRATE:
	case CTL_CMD_SAVE:
		return do_operation(c, &req, fds, nfds, o);
	case CTL_CMD_CANCEL: {
		pthread_mutex_lock(&c->lock);
		bool running = c->mig_running && c->mig;
		if (running)
			mfd_session_cancel(c->mig);	/* safe from any thread */
		pthread_mutex_unlock(&c->lock);
		if (!running)
			return reply_error(o, "no migration is running");
		return ctl_out_printf(o, "{\"ok\":true}");
	}
	case CTL_CMD_STOP: {
		pthread_mutex_lock(&c->lock);	/* against resume_guest */
		int rc = vm_pause(c->vm);
		if (rc == 0)
			c->user_paused = true;
		pthread_mutex_unlock(&c->lock);
		if (rc < 0)
			return reply_error(o, rc == -EINVAL ? "the guest is not running"
							    : strerror(-rc));
		return ctl_out_printf(o, "{\"ok\":true}");
	}
	case CTL_CMD_CONT: {
		pthread_mutex_lock(&c->lock);
		bool away = c->migrated_away,
		     running = c->mig_running && (c->role == ROLE_SOURCE || c->saving);
		int rc = away || running ? 0 : vm_resume(c->vm);
		if (!away && !running && rc == 0)
			c->user_paused = false;
		pthread_mutex_unlock(&c->lock);
		if (away)
			return reply_error(o, "the guest migrated away; it runs on the destination");
		if (running)
			return reply_error(o, "a migration is running (cancel it first)");
		if (rc < 0)
			return reply_error(o, rc == -EINVAL ? "the guest is not paused"
							    : strerror(-rc));
		return ctl_out_printf(o, "{\"ok\":true}");
	}
	case CTL_CMD_QUIT:
		pthread_mutex_lock(&c->lock);
		c->quit = true;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		return ctl_out_printf(o, "{\"ok\":true}");
	case CTL_CMD_SET:
		return do_set(c, &req, o);
	case CTL_CMD_EVENTS:
		*subscribe = true;
		return ctl_out_printf(o, "{\"ok\":true}");
	case CTL_CMD_MIGRATE_INCOMING:
		return do_migrate_incoming(c, &req, o);
	}
	reply_error(o, "unknown command");
}

int vmctl_listen(struct vmctl *c, const char *path, char *errbuf, size_t errlen)
{
	return ctl_server_start(&c->srv, path, handle, c, errbuf, errlen);
}

struct vmctl *vmctl_new(struct vm *vm, bool verify)
{
	struct vmctl *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->vm = vm;
	c->verify = verify;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	return c;
}

bool vmctl_quit_requested(struct vmctl *c)
{
	pthread_mutex_lock(&c->lock);
	bool q = c->quit;
	pthread_mutex_unlock(&c->lock);
	return q;
}

void vmctl_free(struct vmctl *c)
{
	if (!c)
		return;
	ctl_server_stop(c->srv);	/* no request is handled from here on */
	pthread_mutex_lock(&c->lock);
	c->quit = true;
	if (c->mig_running && c->mig)
		mfd_session_cancel(c->mig);
	pthread_cond_broadcast(&c->cond);
	bool join = c->mig_joinable;
	pthread_mutex_unlock(&c->lock);
	if (join)
		pthread_join(c->mig_thread, NULL);
	ctl_server_free(c->srv);	/* after the operation thread: it broadcasts events */
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
