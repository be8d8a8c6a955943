/*
 * vmm/vm_run — run control shared by the backends: starting the vCPU threads, pause, resume,
 * throttle, stop, and the checkpoint every vCPU thread calls between runs of guest code.  The
 * protocol between control operations and vCPU threads is described in vm_priv.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "vm_priv.h"

static void set_attention(struct vm *vm)	/* with vm->lock held */
{
	__atomic_store_n(&vm->attention, vm->pause_req || vm->stopping, __ATOMIC_RELEASE);
}

/* Kick every vCPU thread that is started and has not left its loop.  Takes vm->lock: vCPU
 * threads kick each other (a stop request) while vm_start may still be creating the later
 * threads, or vm_destroy joining the earlier ones (a thread being joined has set exited). */
static void kick_all(struct vm *vm)
{
	if (!vm->ops->kick)
		return;
	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i].thread_started && !vm->vcpus[i].exited)
			vm->ops->kick(&vm->vcpus[i]);
	pthread_mutex_unlock(&vm->lock);
}

void vm__stop_threads(struct vm *vm, enum vm_stop_reason reason)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->stopping) {
		vm->stopping = true;
		vm->reason = reason;
	}
	set_attention(vm);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	kick_all(vm);
	/* Only the control thread creates or joins threads, so thread_started is stable here. */
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i].thread_started)
			pthread_join(vm->vcpus[i].thread, NULL);
	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vm->vcpus[i].thread_started = false;
	pthread_mutex_unlock(&vm->lock);
}

int vm_start(struct vm *vm, char *errbuf, size_t errlen)
{
	int rc;
	pthread_mutex_lock(&vm->lock);
	bool created = vm->state == VM_CREATED;
	pthread_mutex_unlock(&vm->lock);
	if (!created)
		return vm__err(errbuf, errlen, -EINVAL, "the VM was already started");

	if (!vm->loaded) {
		rc = vm__boot_write(vm, errbuf, errlen);
		if (rc < 0)
			return rc;
		rc = vm->ops->boot(vm, errbuf, errlen);
		if (rc < 0)
			return rc;
	}

	rc = vm__serial_start(vm, errbuf, errlen);
	if (rc < 0)
		return rc;

	/* Threads are created under the lock, so kickers see thread and thread_started
	 * together, and every thread sees RUNNING from its start.  A failure stops the threads
	 * already started and leaves the VM stopped. */
	pthread_mutex_lock(&vm->lock);
	vm->state = VM_RUNNING;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vm_vcpu *v = &vm->vcpus[i];
		rc = pthread_create(&v->thread, NULL, vm->ops->vcpu_thread, v);
		if (rc) {
			snprintf(vm->error, sizeof(vm->error), "cannot start vCPU thread %u: %s", i,
				 strerror(rc));
			pthread_mutex_unlock(&vm->lock);
			vm__stop_threads(vm, VM_STOP_ERROR);
			pthread_mutex_lock(&vm->lock);
			vm->state = VM_STOPPED;
			pthread_mutex_unlock(&vm->lock);
			return vm__err(errbuf, errlen, -rc, "cannot start vCPU thread %u: %s", i,
				       strerror(rc));
		}
		v->thread_started = true;
	}
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vm_pause(struct vm *vm)
{
	int rc = 0;
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_PAUSED)
		goto out;
	if (vm->state != VM_RUNNING) {
		rc = -EINVAL;
		goto out;
	}
	vm->pause_req = true;
	set_attention(vm);
	pthread_cond_broadcast(&vm->cond);	/* idle and throttled vCPUs wait on it */
	pthread_mutex_unlock(&vm->lock);

	kick_all(vm);

	pthread_mutex_lock(&vm->lock);
	while (vm->pause_req && vm->nr_parked + vm->nr_exited < vm->nr_vcpus)
		pthread_cond_wait(&vm->cond, &vm->lock);
	if (!vm->pause_req)
		rc = -EAGAIN;		/* someone resumed it meanwhile */
	else if (vm->state == VM_RUNNING)
		vm->state = VM_PAUSED;	/* (or it stopped meanwhile: still, and STOPPED) */
out:
	pthread_mutex_unlock(&vm->lock);
	if (rc == 0)
		vm__serial_flush_all(vm);	/* the VM stands still: all it printed is out */
	return rc;
}

int vm_resume(struct vm *vm)
{
	int rc = 0;
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_PAUSED) {
		rc = -EINVAL;
	} else {
		vm->pause_req = false;
		vm->state = VM_RUNNING;
		set_attention(vm);
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	return rc;
}

void vm_set_throttle(struct vm *vm, unsigned pct)
{
	if (pct > 99)
		pct = 99;
	__atomic_store_n(&vm->throttle_pct, pct, __ATOMIC_RELAXED);
	/* Running vCPUs re-arm their slice timer at their next checkpoint; kick them there. */
	pthread_mutex_lock(&vm->lock);
	bool running = vm->state == VM_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	if (running)
		kick_all(vm);
}

unsigned vm_throttle(struct vm *vm)
{
	return __atomic_load_n(&vm->throttle_pct, __ATOMIC_RELAXED);
}

int vm_wait_for(struct vm *vm, uint64_t timeout_ms)
{
	bool forever = timeout_ms > (1ull << 40);	/* 35 years: as good as forever */
	uint64_t until = forever ? 0 : vm__now_ns() + timeout_ms * 1000000ull;
	struct timespec ts = { .tv_sec = (time_t)(until / 1000000000ull),
			       .tv_nsec = (long)(until % 1000000000ull) };

	int rc = 0;
	pthread_mutex_lock(&vm->lock);
	while (vm->state != VM_STOPPED && rc != ETIMEDOUT)
		rc = forever ? pthread_cond_wait(&vm->cond, &vm->lock)
			     : pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
	if (vm->state != VM_STOPPED)
		rc = -ETIMEDOUT;
	else
		rc = vm->reason == VM_STOP_ERROR ? -EIO : 0;
	pthread_mutex_unlock(&vm->lock);
	return rc;
}

int vm_wait(struct vm *vm)
{
	return vm_wait_for(vm, UINT64_MAX);
}

void vm_get_status(struct vm *vm, struct vm_status *st)
{
	pthread_mutex_lock(&vm->lock);
	st->state = vm->state;
	st->reason = vm->reason;
	st->exit_code = vm->exit_code;
	memcpy(st->error, vm->error, sizeof(st->error));
	pthread_mutex_unlock(&vm->lock);
	st->unhandled_io = __atomic_load_n(&vm->unhandled_io, __ATOMIC_RELAXED);
}

void vm__request_stop(struct vm *vm, enum vm_stop_reason reason, uint32_t exit_code,
		      const char *fmt, ...)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->stopping) {
		vm->stopping = true;
		vm->reason = reason;
		vm->exit_code = exit_code;
		if (fmt) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(vm->error, sizeof(vm->error), fmt, ap);
			va_end(ap);
		}
		set_attention(vm);
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	kick_all(vm);
}

void vm__vcpu_exit(struct vm_vcpu *v)
{
	struct vm *vm = v->vm;
	vm__serial_flush(v);	/* it prints no more */
	pthread_mutex_lock(&vm->lock);
	v->exited = true;
	if (++vm->nr_exited == vm->nr_vcpus)
		vm->state = VM_STOPPED;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

void vm__vcpu_set_off(struct vm_vcpu *v, bool off)
{
	struct vm *vm = v->vm;
	bool all_off;
	pthread_mutex_lock(&vm->lock);
	if (v->off != off) {
		v->off = off;
		if (off)
			vm->nr_off++;
		else
			vm->nr_off--;
	}
	all_off = vm->nr_off == vm->nr_vcpus;
	pthread_mutex_unlock(&vm->lock);
	if (all_off)
		vm__request_stop(vm, VM_STOP_HALT, 0, NULL);
}

bool vm__vcpu_checkpoint(struct vm_vcpu *v)
{
	struct vm *vm = v->vm;
	for (;;) {
		if (__atomic_load_n(&vm->attention, __ATOMIC_ACQUIRE)) {
			bool prepared = false, stop;
			pthread_mutex_lock(&vm->lock);
			while (vm->pause_req && !vm->stopping) {
				if (!v->parked) {
					if (!prepared && vm->ops->prepare_park) {
						/* Finish half-done I/O outside the lock (it may
						 * stop the VM, which takes the lock). */
						pthread_mutex_unlock(&vm->lock);
						vm->ops->prepare_park(v);
						prepared = true;
						pthread_mutex_lock(&vm->lock);
						continue;
					}
					v->parked = true;
					vm->nr_parked++;
					pthread_cond_broadcast(&vm->cond);
				}
				pthread_cond_wait(&vm->cond, &vm->lock);
			}
			if (v->parked) {
				v->parked = false;
				vm->nr_parked--;
				v->slice_start_ns = 0;	/* time parked is not run time */
			}
			stop = vm->stopping;
			pthread_mutex_unlock(&vm->lock);
			if (stop)
				return true;
		}

		unsigned pct = __atomic_load_n(&vm->throttle_pct, __ATOMIC_RELAXED);
		if (!pct) {
			v->slice_start_ns = 0;
			return false;
		}
		uint64_t now = vm__now_ns();
		if (!v->slice_start_ns)
			v->slice_start_ns = now;
		if (now - v->slice_start_ns < VM_SLICE_NS * (100 - pct) / 100)
			return false;

		/* The run part of the slice is used up: sleep pct% of a slice, waking early for
		 * a pause or a stop, then start a new slice. */
		uint64_t until = now + VM_SLICE_NS * pct / 100;
		struct timespec ts = { .tv_sec = (time_t)(until / 1000000000ull),
				       .tv_nsec = (long)(until % 1000000000ull) };
		pthread_mutex_lock(&vm->lock);
		while (!vm->pause_req && !vm->stopping &&
		       pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&vm->lock);
		v->slice_start_ns = vm__now_ns();
	}
}

uint64_t vm__vcpu_slice_end(struct vm_vcpu *v)
{
	unsigned pct = __atomic_load_n(&v->vm->throttle_pct, __ATOMIC_RELAXED);
	if (!pct || !v->slice_start_ns)
		return 0;
	return v->slice_start_ns + VM_SLICE_NS * (100 - pct) / 100;
}

void vm__vcpu_idle_wait(struct vm_vcpu *v)
{
	struct vm *vm = v->vm;
	pthread_mutex_lock(&vm->lock);
	while (!vm->pause_req && !vm->stopping)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}
