/*
 * vmm/serial — guest COM1 output to opts.serial_fd, and the dirty workload's "cpu<i> sweep <n>"
 * counters parsed from it.
 *
 * Each vCPU collects its output in a line buffer.  A complete line is written at once, so lines
 * of different vCPUs never interleave; bytes that do not end a line yet are written by the
 * flusher thread once they have waited VM_SERIAL_FLUSH_NS, and by vm__serial_flush_all when the
 * VM pauses or a vCPU stops, so a guest that never prints a newline is still seen at once, and
 * nothing is pending while the VM stands still.  The line buffer keeps a line's bytes until it
 * ends even when they are written already (the counter parser needs the whole line); printed
 * says how far it was written.  The state buffer carries the line so far, all of it printed by
 * the saving VM (it is paused, so flushed): the loading VM keeps it for the parser and never
 * prints it again, so no byte is printed twice across a migration or a snapshot.
 *
 * Locking: vm->serial_lock protects every vCPU's line buffer and serialises the writes; the
 * vCPU thread appends under it, the flusher and the control thread write out under it.  It is
 * never held together with vm->lock.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include "vm_priv.h"

#define VM_SERIAL_FLUSH_NS	50000000ull	/* bytes wait at most this long, plus a wake-up */

uint64_t vm_serial_sweep(struct vm *vm, unsigned vcpu)
{
	if (vcpu >= vm->nr_vcpus)
		return 0;
	return __atomic_load_n(&vm->vcpus[vcpu].serial_sweep, __ATOMIC_RELAXED);
}

uint64_t vm_serial_gaps(struct vm *vm, unsigned vcpu)
{
	if (vcpu >= vm->nr_vcpus)
		return 0;
	return __atomic_load_n(&vm->vcpus[vcpu].serial_gaps, __ATOMIC_RELAXED);
}

/* "cpu<i> sweep <n>\n" from the dirty workload: track the counter and count gaps. */
static void serial_parse(struct vm_vcpu *v, const char *s, size_t len)
{
	static const char mid[] = " sweep ";
	size_t i = 3;
	uint64_t idx = 0, n = 0;
	if (len < 3 || memcmp(s, "cpu", 3))
		return;
	if (i >= len || s[i] < '0' || s[i] > '9')
		return;
	while (i < len && s[i] >= '0' && s[i] <= '9' && idx < VM_MAX_VCPUS)
		idx = idx * 10 + (uint64_t)(s[i++] - '0');
	if (idx != v->index || len - i < sizeof(mid) || memcmp(s + i, mid, sizeof(mid) - 1))
		return;
	i += sizeof(mid) - 1;
	if (s[i] < '0' || s[i] > '9')
		return;
	while (i < len && s[i] >= '0' && s[i] <= '9' && n < UINT64_MAX / 10)
		n = n * 10 + (uint64_t)(s[i++] - '0');
	if (i != len - 1 || s[i] != '\n')
		return;
	uint64_t last = __atomic_load_n(&v->serial_sweep, __ATOMIC_RELAXED);
	if (n != last + 1)
		__atomic_fetch_add(&v->serial_gaps, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&v->serial_sweep, n, __ATOMIC_RELAXED);
}

/* Write the bytes of v's line not written yet.  With serial_lock held. */
static void write_pending(struct vm_vcpu *v)
{
	int fd = v->vm->opts.serial_fd;
	const char *p = v->line + v->line_printed;
	size_t left = v->line_len - v->line_printed;
	while (fd >= 0 && left) {	/* a log: on a write error the output is dropped */
		ssize_t n = write(fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		p += n;
		left -= (size_t)n;
	}
	v->line_printed = v->line_len;
	v->pending_ns = 0;
}

void vm__serial_out(struct vm_vcpu *v, const void *buf, size_t len)
{
	struct vm *vm = v->vm;
	const char *p = buf;
	pthread_mutex_lock(&vm->serial_lock);
	for (size_t i = 0; i < len; i++) {
		v->line[v->line_len++] = p[i];
		if (p[i] == '\n' || v->line_len == sizeof(v->line)) {
			write_pending(v);
			serial_parse(v, v->line, v->line_len);
			v->line_len = v->line_printed = 0;
		} else if (!v->pending_ns) {
			v->pending_ns = vm__now_ns();	/* the flusher writes it if no line end comes */
			pthread_cond_signal(&vm->serial_cond);
		}
	}
	pthread_mutex_unlock(&vm->serial_lock);
}

void vm__serial_flush_all(struct vm *vm)
{
	pthread_mutex_lock(&vm->serial_lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		write_pending(&vm->vcpus[i]);
	pthread_mutex_unlock(&vm->serial_lock);
}

void vm__serial_flush(struct vm_vcpu *v)
{
	pthread_mutex_lock(&v->vm->serial_lock);
	write_pending(v);
	pthread_mutex_unlock(&v->vm->serial_lock);
}

static void *flusher(void *arg)
{
	struct vm *vm = arg;
	pthread_mutex_lock(&vm->serial_lock);
	while (!vm->serial_stop) {
		uint64_t now = vm__now_ns(), next = 0;
		for (unsigned i = 0; i < vm->nr_vcpus; i++) {
			struct vm_vcpu *v = &vm->vcpus[i];
			if (!v->pending_ns)
				continue;
			if (now - v->pending_ns >= VM_SERIAL_FLUSH_NS)
				write_pending(v);
			else if (!next || v->pending_ns + VM_SERIAL_FLUSH_NS < next)
				next = v->pending_ns + VM_SERIAL_FLUSH_NS;
		}
		if (!next) {
			pthread_cond_wait(&vm->serial_cond, &vm->serial_lock);
		} else {
			struct timespec ts = { .tv_sec = (time_t)(next / 1000000000ull),
					       .tv_nsec = (long)(next % 1000000000ull) };
			pthread_cond_timedwait(&vm->serial_cond, &vm->serial_lock, &ts);
		}
	}
	pthread_mutex_unlock(&vm->serial_lock);
	return NULL;
}

int vm__serial_start(struct vm *vm, char *errbuf, size_t errlen)
{
	if (vm->opts.serial_fd < 0)
		return 0;	/* output discarded: nothing to flush */
	int rc = pthread_create(&vm->serial_thread, NULL, flusher, vm);
	if (rc)
		return vm__err(errbuf, errlen, -rc, "cannot start the serial thread: %s", strerror(rc));
	vm->serial_thread_started = true;
	return 0;
}

void vm__serial_stop(struct vm *vm)
{
	if (vm->serial_thread_started) {
		pthread_mutex_lock(&vm->serial_lock);
		vm->serial_stop = true;
		pthread_cond_signal(&vm->serial_cond);
		pthread_mutex_unlock(&vm->serial_lock);
		pthread_join(vm->serial_thread, NULL);
		vm->serial_thread_started = false;
	}
	vm__serial_flush_all(vm);	/* a last line without its newline */
}

void vm__serial_save(struct vm_vcpu *v, uint8_t *rec)
{
	pthread_mutex_lock(&v->vm->serial_lock);
	write_pending(v);	/* the VM stands still: whatever it printed is out */
	put_le64(rec, vm_serial_sweep(v->vm, v->index));
	put_le64(rec + 8, vm_serial_gaps(v->vm, v->index));
	put_le32(rec + 16, (uint32_t)v->line_len);
	memcpy(rec + 24, v->line, v->line_len);
	pthread_mutex_unlock(&v->vm->serial_lock);
}

void vm__serial_load(struct vm_vcpu *v, const uint8_t *rec)
{
	pthread_mutex_lock(&v->vm->serial_lock);
	__atomic_store_n(&v->serial_sweep, get_le64(rec), __ATOMIC_RELAXED);
	__atomic_store_n(&v->serial_gaps, get_le64(rec + 8), __ATOMIC_RELAXED);
	v->line_len = get_le32(rec + 16);	/* checked <= VM_SERIAL_LINE_MAX by the loader */
	memcpy(v->line, rec + 24, v->line_len);
	v->line_printed = v->line_len;		/* the saving VM printed it */
	v->pending_ns = 0;
	pthread_mutex_unlock(&v->vm->serial_lock);
}
