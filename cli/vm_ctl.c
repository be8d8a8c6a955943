/* cli/vm_ctl — see vm_ctl.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "cli.h"
#include "ctl_json.h"
#include "vm_ctl.h"
#include "../vmm/vm.h"

#define DEVICE_NAME "tinyvm"
#define DEVICE_VERSION 1

enum role { ROLE_NONE, ROLE_SOURCE, ROLE_DEST };

struct vmctl {
	struct vm *vm;			/* set at creation, read-only */
	pthread_mutex_t lock;		/* protects everything below except where noted */
	pthread_cond_t cond;

	/* Control server. */
	int lfd;			/* set before the server thread starts */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int wake[2];			/* pipe: written to stop the server */
	pthread_t ctl_thread;
	bool ctl_started;
	bool quit;

	/* The migration (one at a time). */
	enum role role;
	struct mfd_session *mig;	/* while a migration thread runs */
	pthread_t mig_thread;
	bool mig_running, mig_joinable;
	int mig_rc;
	char mig_err[MFD_ERROR_MSG_MAX];
	bool have_stats;
	struct mfd_stats stats;		/* final stats of the last migration */
	struct mfd_session *pending;	/* incoming session created by vmctl_incoming */
	char incoming_uri[256];
	bool migrated_away;		/* source: completed, guest runs elsewhere */

	/* Verification (demo and tests): the digest of guest RAM and the workload's pattern at the
	 * switchover, taken on the source after it completed (the VM stays paused) and on the
	 * destination before it starts the VM. */
	bool have_digest;
	uint64_t digest;
	bool pattern_checked, pattern_ok;
	char pattern_err[256];
	unsigned nswitch;
	uint64_t switch_sweeps[VM_MAX_VCPUS];
	double verify_ms;

	/* Migration request parameters (copied by the thread at start). */
	char uri[CTL_MAX_STR + 1];
	int64_t channels, downtime_ms, max_bandwidth;
	/* Save requests: the same thread slot, a file instead of a peer. */
	bool saving, live, direct_io;
};

/* ---- library callbacks -------------------------------------------------------------------- */

static int cb_stop(void *opaque)
{
	struct vmctl *c = opaque;
	int rc = vm_pause(c->vm);
	if (rc == -EINVAL) {	/* the guest stopped by itself: its state is final, fine */
		struct vm_status st;
		vm_get_status(c->vm, &st);
		if (st.state == VM_STOPPED)
			return 0;
	}
	return rc;
}

static void cb_resume(void *opaque)
{
	struct vmctl *c = opaque;
	vm_resume(c->vm);
}

static void cb_throttle(void *opaque, unsigned pct)
{
	struct vmctl *c = opaque;
	vm_set_throttle(c->vm, pct);
}

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
	int prc = vm_verify_dirty_pattern(c->vm, res, err, sizeof(err));
	uint64_t d = vm_digest(c);
	pthread_mutex_lock(&c->lock);
	c->digest = d;
	c->have_digest = true;
	c->pattern_checked = prc != -ENOTSUP && prc != -EINVAL;
	c->pattern_ok = prc == 0;
	snprintf(c->pattern_err, sizeof(c->pattern_err), "%s", prc ? err : "");
	c->nswitch = vm_vcpu_count(c->vm);
	for (unsigned i = 0; i < c->nswitch; i++)
		c->switch_sweeps[i] = vm_serial_sweep(c->vm, i);
	c->verify_ms = (cli_now_s() - t0) * 1000;
	pthread_mutex_unlock(&c->lock);
}

static void finish_migration(struct vmctl *c, struct mfd_session *s, int rc,
			     const struct mfd_error *err)
{
	pthread_mutex_lock(&c->lock);
	mfd_session_get_stats(s, &c->stats);
	c->have_stats = true;
	c->mig_rc = rc;
	if (rc && !c->mig_err[0])
		snprintf(c->mig_err, sizeof(c->mig_err), "%s", err->code ? err->msg : mfd_strerror(rc));
	c->mig = NULL;
	c->mig_running = false;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	mfd_session_free(s);
}

static void *outgoing_thread(void *arg)
{
	struct vmctl *c = arg;
	pthread_mutex_lock(&c->lock);
	bool saving = c->saving, live = c->live, direct = c->direct_io;
	pthread_mutex_unlock(&c->lock);
	struct mfd_session *s = mfd_session_new(saving ? MFD_SAVE : MFD_OUTGOING);
	bool paused_here = false;
	struct mfd_error err;
	mfd_error_clear(&err);
	int rc = s ? 0 : -ENOMEM;
	pthread_mutex_lock(&c->lock);
	char uri[sizeof(c->uri)];
	memcpy(uri, c->uri, sizeof(uri));
	int64_t ch = c->channels, dt = c->downtime_ms, bw = c->max_bandwidth;
	c->mig = s;
	pthread_mutex_unlock(&c->lock);
	if (rc == 0 && ch)
		rc = mfd_session_set(s, MFD_OPT_CHANNELS, ch);
	if (rc == 0 && dt)
		rc = mfd_session_set(s, MFD_OPT_DOWNTIME_MS, dt);
	if (rc == 0 && bw)
		rc = mfd_session_set(s, MFD_OPT_MAX_BANDWIDTH, bw);
	if (rc == 0 && saving && direct)
		rc = mfd_session_set(s, MFD_OPT_DIRECT_IO, 1);
	if (rc == 0)
		rc = add_vm(c, s, false, saving && !live);
	if (rc == 0) {
		struct mfd_callbacks cb = { cb_stop, cb_resume, cb_throttle, c };
		mfd_session_set_callbacks(s, &cb);
		if (saving && !live) {	/* a stopped save: pause first, the memory must not move */
			rc = cb_stop(c);
			paused_here = rc == 0;
		}
		if (rc == 0)
			rc = saving ? mfd_session_open_file(s, uri, &err)
				    : mfd_session_connect(s, uri, &err);
	}
	if (rc == 0)
		rc = mfd_session_run(s, &err);
	if (rc == 0 && !saving) {
		/* The guest now runs on the destination; this one stays paused for good. */
		record_switchover(c);
		pthread_mutex_lock(&c->lock);
		c->migrated_away = true;
		pthread_mutex_unlock(&c->lock);
	}
	if (saving && (rc == 0 || paused_here)) {
		/* A snapshot is a checkpoint: the guest goes on here (a live save leaves it stopped
		 * after the last pass; a failed live save has already resumed it). */
		if (rc == 0)
			record_switchover(c);
		vm_resume(c->vm);
	}
	if (!s) {
		pthread_mutex_lock(&c->lock);
		c->mig_rc = rc;
		snprintf(c->mig_err, sizeof(c->mig_err), "out of memory");
		c->mig_running = false;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		return NULL;
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
		record_switchover(c);
		char e[256];
		rc = vm_start(c->vm, e, sizeof(e));
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
	if ((rc = mfd_session_listen(s, uri, &err)) < 0) {
		snprintf(errbuf, errlen, "%s", err.msg);
		goto fail;
	}
	pthread_mutex_lock(&c->lock);
	if (mfd_session_local_uri(s, c->incoming_uri, sizeof(c->incoming_uri)) < 0)
		snprintf(c->incoming_uri, sizeof(c->incoming_uri), "%s", uri);
	c->role = ROLE_DEST;
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

int vmctl_restore(struct vmctl *c, const char *path, bool lazy, double *ready_ms, char *errbuf,
		  size_t errlen)
{
	struct mfd_session *s = mfd_session_new(MFD_RESTORE);
	struct mfd_error err;
	mfd_error_clear(&err);
	if (!s)
		return snprintf(errbuf, errlen, "out of memory"), -ENOMEM;
	int rc = add_vm(c, s, true, true);
	if (rc == 0 && lazy)
		rc = mfd_session_set(s, MFD_OPT_LAZY, 1);
	if (rc < 0)
		snprintf(errbuf, errlen, "registering the VM: %s", mfd_strerror(rc));
	if (rc == 0 && (rc = mfd_session_open_file(s, path, &err)) < 0)
		snprintf(errbuf, errlen, "%s", err.msg);
	if (rc == 0 && (rc = mfd_session_run(s, &err)) < 0)
		snprintf(errbuf, errlen, "%s", err.msg);
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

int vmctl_incoming_wait(struct vmctl *c, char *errbuf, size_t errlen)
{
	pthread_mutex_lock(&c->lock);
	while (c->mig_running && !c->quit)
		pthread_cond_wait(&c->cond, &c->lock);
	int rc = c->mig_running ? -EINTR : c->mig_rc;
	if (rc == 0 && c->mig_err[0])
		rc = -EIO;	/* migrated, but the VM would not start */
	snprintf(errbuf, errlen, "%s", c->mig_err);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

const char *vmctl_incoming_uri(struct vmctl *c)
{
	return c->incoming_uri;
}

/* ---- control protocol ----------------------------------------------------------------------- */

struct out {
	char *buf;
	size_t cap, len;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(o->buf + o->len, o->len < o->cap ? o->cap - o->len : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len = o->len + (size_t)n < o->cap ? o->len + (size_t)n : o->cap - 1;
}

/* A JSON string value (messages may hold quotes). */
static void put_str(struct out *o, const char *s)
{
	put(o, "\"");
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			put(o, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			put(o, "\\u%04x", *s);
		else
			put(o, "%c", *s);
	}
	put(o, "\"");
}

static void reply_error(struct out *o, const char *msg)
{
	put(o, "{\"ok\":false,\"error\":");
	put_str(o, msg);
	put(o, "}");
}

static void do_query(struct vmctl *c, struct out *o)
{
	struct vm_status vs;
	vm_get_status(c->vm, &vs);
	unsigned n = vm_vcpu_count(c->vm);
	put(o, "{\"ok\":true,\"accel\":\"%s\",\"vm\":\"%s\",\"vcpus\":%u,\"sweeps\":[",
	    vm_accel_name(vm_accel(c->vm)), vm_run_state_name(vs.state), n);
	for (unsigned i = 0; i < n; i++)
		put(o, "%s%" PRIu64, i ? "," : "", vm_serial_sweep(c->vm, i));
	put(o, "]");
	pthread_mutex_lock(&c->lock);
	put(o, ",\"role\":\"%s\"", c->role == ROLE_SOURCE ? "source"
				   : c->role == ROLE_DEST ? "destination" : "none");
	if (c->incoming_uri[0]) {
		put(o, ",\"incoming_uri\":");
		put_str(o, c->incoming_uri);
	}
	if (c->role != ROLE_NONE || c->have_stats || c->mig_running) {
		put(o, ",\"operation\":\"%s\"", c->saving ? "save" : c->role == ROLE_DEST ? "incoming"
										      : "migrate");
		struct mfd_stats st;
		if (c->mig)
			mfd_session_get_stats(c->mig, &st);
		else
			st = c->stats;
		char js[4096];
		mfd_stats_json(&st, js, sizeof(js));
		put(o, ",\"migration\":%s", js);
		if (!c->mig_running && c->mig_err[0]) {
			put(o, ",\"migration_error\":");
			put_str(o, c->mig_err);
		}
	}
	if (c->have_digest) {
		put(o, ",\"switchover\":{\"digest\":\"%016" PRIx64 "\",\"verify_ms\":%.1f", c->digest,
		    c->verify_ms);
		if (c->pattern_checked) {
			put(o, ",\"pattern_ok\":%s", c->pattern_ok ? "true" : "false");
			if (!c->pattern_ok) {
				put(o, ",\"pattern_error\":");
				put_str(o, c->pattern_err);
			}
		}
		put(o, ",\"sweeps\":[");
		for (unsigned i = 0; i < c->nswitch; i++)
			put(o, "%s%" PRIu64, i ? "," : "", c->switch_sweeps[i]);
		put(o, "]}");
	}
	pthread_mutex_unlock(&c->lock);
	put(o, "}");
}

static void do_migrate(struct vmctl *c, const struct ctl_msg *m, struct out *o, bool saving)
{
	const char *uri = ctl_str(m, saving ? "path" : "uri");
	int64_t ch = 0, dt = 0, bw = 0;
	bool live = false, direct = false;
	if (!uri)
		return reply_error(o, saving ? "save needs \"path\"" : "migrate needs \"uri\"");
	ctl_bool(m, "live", &live);
	ctl_bool(m, "direct_io", &direct);
	if ((ctl_int(m, "channels", &ch) && (ch < 1 || ch > MFD_MAX_CHANNELS)) ||
	    (ctl_int(m, "downtime_ms", &dt) && (dt < 1 || dt > 3600000)) ||
	    (ctl_int(m, "max_bandwidth", &bw) && bw < 0))
		return reply_error(o, "channels, downtime_ms or max_bandwidth out of range");
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
	if (c->mig_joinable) {	/* a previous, finished (failed) attempt */
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->mig_thread, NULL);
		pthread_mutex_lock(&c->lock);
		c->mig_joinable = false;
	}
	snprintf(c->uri, sizeof(c->uri), "%s", uri);
	c->saving = saving;
	c->live = live;
	c->direct_io = direct;
	c->channels = ch;
	c->downtime_ms = dt;
	c->max_bandwidth = bw;
	if (!saving)
		c->role = ROLE_SOURCE;
	c->mig_err[0] = '\0';
	c->have_stats = false;
	memset(&c->stats, 0, sizeof(c->stats));	/* status "none" until the thread's session runs */
	c->have_digest = false;	/* the next switchover's, not the arrival's */
	c->mig_running = true;
	int rc = pthread_create(&c->mig_thread, NULL, outgoing_thread, c);
	c->mig_joinable = rc == 0;
	if (rc)
		c->mig_running = false;
	pthread_mutex_unlock(&c->lock);
	if (rc)
		return reply_error(o, "cannot start the migration thread");
	put(o, "{\"ok\":true}");
}

static void handle(struct vmctl *c, const char *line, size_t len, struct out *o)
{
	static struct ctl_msg m;	/* control requests are served one at a time */
	char err[160];
	if (ctl_parse(line, len, &m, err, sizeof(err)))
		return reply_error(o, err);
	const char *cmd = ctl_str(&m, "cmd");
	if (!cmd)
		return reply_error(o, "missing \"cmd\"");
	if (!strcmp(cmd, "query"))
		return do_query(c, o);
	if (!strcmp(cmd, "migrate"))
		return do_migrate(c, &m, o, false);
	if (!strcmp(cmd, "save"))
		return do_migrate(c, &m, o, true);
	if (!strcmp(cmd, "cancel")) {
		pthread_mutex_lock(&c->lock);
		bool running = c->mig_running && c->mig;
		if (running)
			mfd_session_cancel(c->mig);	/* safe from any thread */
		pthread_mutex_unlock(&c->lock);
		if (!running)
			return reply_error(o, "no migration is running");
		return put(o, "{\"ok\":true}");
	}
	if (!strcmp(cmd, "stop")) {
		int rc = vm_pause(c->vm);
		return rc < 0 ? reply_error(o, strerror(-rc)) : put(o, "{\"ok\":true}");
	}
	if (!strcmp(cmd, "cont")) {
		pthread_mutex_lock(&c->lock);
		bool away = c->migrated_away,
		     running = c->mig_running && (c->role == ROLE_SOURCE || c->saving);
		pthread_mutex_unlock(&c->lock);
		if (away)
			return reply_error(o, "the guest migrated away; it runs on the destination");
		if (running)
			return reply_error(o, "a migration is running (cancel it first)");
		int rc = vm_resume(c->vm);
		return rc < 0 ? reply_error(o, strerror(-rc)) : put(o, "{\"ok\":true}");
	}
	if (!strcmp(cmd, "quit")) {
		pthread_mutex_lock(&c->lock);
		c->quit = true;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		return put(o, "{\"ok\":true}");
	}
	char msg[96];
	snprintf(msg, sizeof(msg), "unknown command '%.40s'", cmd);
	reply_error(o, msg);
}

/* Serve one client: lines in, replies out, until it closes or we stop. */
static void serve(struct vmctl *c, int fd)
{
	char in[CTL_MAX_LINE + 2];
	size_t have = 0;
	static char reply[16384];
	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = c->wake[0], .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (p[1].revents)
			return;
		ssize_t n = read(fd, in + have, sizeof(in) - have);
		if (n <= 0)
			return;
		have += (size_t)n;
		char *nl;
		while ((nl = memchr(in, '\n', have))) {
			struct out o = { reply, sizeof(reply) - 1, 0 };
			handle(c, in, (size_t)(nl - in), &o);
			reply[o.len++] = '\n';
			if (send(fd, reply, o.len, MSG_NOSIGNAL) != (ssize_t)o.len)
				return;
			have -= (size_t)(nl + 1 - in);
			memmove(in, nl + 1, have);
		}
		if (have == sizeof(in)) {	/* a line over the bound: refuse and drop the client */
			const char *e = "{\"ok\":false,\"error\":\"line too long\"}\n";
			ssize_t w = send(fd, e, strlen(e), MSG_NOSIGNAL);
			(void)w;
			return;
		}
	}
}

static void *ctl_thread(void *arg)
{
	struct vmctl *c = arg;
	for (;;) {
		struct pollfd p[2] = { { .fd = c->lfd, .events = POLLIN }, { .fd = c->wake[0], .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		int fd = accept4(c->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve(c, fd);
		close(fd);
	}
	return NULL;
}

int vmctl_listen(struct vmctl *c, const char *path, char *errbuf, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sun.sun_path))
		return snprintf(errbuf, errlen, "%s: path too long", path), -ENAMETOOLONG;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	unlink(path);	/* a stale socket from an earlier run */
	c->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->lfd < 0 || bind(c->lfd, (struct sockaddr *)&sun, sizeof(sun)) || listen(c->lfd, 4)) {
		int e = errno;
		snprintf(errbuf, errlen, "control socket %s: %s", path, strerror(e));
		if (c->lfd >= 0)
			close(c->lfd);
		c->lfd = -1;
		return -e;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	if (pthread_create(&c->ctl_thread, NULL, ctl_thread, c))
		return snprintf(errbuf, errlen, "cannot start the control thread"), -EAGAIN;
	c->ctl_started = true;
	return 0;
}

struct vmctl *vmctl_new(struct vm *vm)
{
	struct vmctl *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	if (pipe2(c->wake, O_CLOEXEC)) {
		free(c);
		return NULL;
	}
	c->vm = vm;
	c->lfd = -1;
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
	ssize_t w = write(c->wake[1], "x", 1);
	(void)w;
	if (c->ctl_started)
		pthread_join(c->ctl_thread, NULL);
	pthread_mutex_lock(&c->lock);
	c->quit = true;
	if (c->mig_running && c->mig)
		mfd_session_cancel(c->mig);
	pthread_cond_broadcast(&c->cond);
	bool join = c->mig_joinable;
	pthread_mutex_unlock(&c->lock);
	if (join)
		pthread_join(c->mig_thread, NULL);
	if (c->lfd >= 0) {
		close(c->lfd);
		unlink(c->path);
	}
	close(c->wake[0]);
	close(c->wake[1]);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
