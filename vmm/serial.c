/*
 * vmm/serial — guest COM1 output: line-buffered per vCPU so lines of different vCPUs never
 * interleave in opts.serial_fd, and parsed for the dirty workload's "cpu<i> sweep <n>" counters.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include "vm_priv.h"

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

void vm__serial_flush(struct vm_vcpu *v)
{
	struct vm *vm = v->vm;
	if (!v->line_len)
		return;
	if (vm->opts.serial_fd >= 0) {
		pthread_mutex_lock(&vm->serial_lock);
		const char *p = v->line;
		size_t left = v->line_len;
		while (left) {	/* a log: on a write error the output is dropped */
			ssize_t n = write(vm->opts.serial_fd, p, left);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			p += n;
			left -= (size_t)n;
		}
		pthread_mutex_unlock(&vm->serial_lock);
	}
	serial_parse(v, v->line, v->line_len);
	v->line_len = 0;
}

void vm__serial_out(struct vm_vcpu *v, const void *buf, size_t len)
{
	const char *p = buf;
	for (size_t i = 0; i < len; i++) {
		v->line[v->line_len++] = p[i];
		if (p[i] == '\n' || v->line_len == sizeof(v->line))
			vm__serial_flush(v);
	}
}
