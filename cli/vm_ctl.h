/* cli/vm_ctl — tinyvm's monitor side of live migration (public API only).
 *
 * A control socket speaks JSON lines (docs/control.md): one request object per line, one reply
 * object per line, served by ctl_server.c and checked by ctl_request.c.  A `migrate` request
 * starts a live migration of the running VM in a thread: its RAM regions become RAM blocks, its
 * KVM memory slots (or userfaultfd for the soft guest) the dirty tracker, its vCPU state one
 * device; the library's stop/resume/throttle callbacks pause, resume and throttle the vCPUs.
 * An incoming migration fills a new, not yet started VM and starts it once the source has
 * committed.  A completed source stays paused (its guest now runs elsewhere).
 *
 * `save` runs in the same thread slot, to a file instead of a peer.  Descriptors passed with a
 * request (SCM_RIGHTS) become the migration's channels or the snapshot file; a client can
 * never make the VM use a descriptor of its own by number.
 *
 * Threads: the caller's (the `vm run` main loop), the control server, and one migration thread
 * at a time.  Shared fields of struct vmctl are protected by its lock. */
#ifndef MFD_CLI_VM_CTL_H
#define MFD_CLI_VM_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct vmctl;

/* Wrap a created VM.  vm outlives the vmctl.  verify: at every switchover (a migration's, a
 * save's, an arrival's) digest guest RAM and check the workload's pattern for `query` to
 * report; a destination starts its guest only after that. */
struct vmctl *vmctl_new(struct vm *vm, bool verify);
/* Serve the control protocol on a unix socket at path (created; removed by vmctl_free). */
int vmctl_listen(struct vmctl *c, const char *path, char *err, size_t errlen);
/* Wait for an incoming migration on uri into the (created, not started) VM; returns once
 * listening.  The VM is started when the migration completes. */
int vmctl_incoming(struct vmctl *c, const char *uri, char *err, size_t errlen);
/* Restore the (created, not started) VM from a snapshot file, eagerly or lazily (its RAM is
 * then a private mapping of the file).  *ready_ms: when it could start.  0 or < 0 with err. */
int vmctl_restore(struct vmctl *c, const char *path, bool lazy, double *ready_ms, char *err,
		  size_t errlen);
/* Wait up to timeout_ms for an incoming migration to end: 0 (VM started) or < 0 with its
 * error in err (any code, -ETIMEDOUT included: a silent source); VMCTL_STILL_WAITING while it
 * still runs, -EINTR when a `quit` request came first. */
#define VMCTL_STILL_WAITING 1
int vmctl_incoming_wait(struct vmctl *c, uint64_t timeout_ms, char *err, size_t errlen);
/* --incoming defer: the VM waits (created, not started) until a `migrate-incoming` request
 * names where to listen; vmctl_incoming_wait waits for that too. */
void vmctl_incoming_defer(struct vmctl *c);
/* Is a source connected and sending (not merely being waited for)? */
bool vmctl_incoming_arriving(struct vmctl *c);
/* A `quit` request arrived. */
bool vmctl_quit_requested(struct vmctl *c);
/* The address an incoming migration listens on ("" when none). */
const char *vmctl_incoming_uri(struct vmctl *c);
/* Stop the control server and any migration (canceled), join every thread, free. */
void vmctl_free(struct vmctl *c);

#endif
