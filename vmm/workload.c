/*
 * vmm/workload — the dirty workload's ranges (one per vCPU) and the verifier of its page
 * pattern, which works on the VM's own RAM or on any image of it (received by migration, or a
 * mapped snapshot).
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include "vm_priv.h"

/* vCPU i sweeps the i-th of nr equal slices of the dirty area; the remainder pages go one
 * each to the last vCPUs, so slices differ by at most one page. */
void vm__workload_init(struct vm *vm)
{
	uint64_t bytes = vm->opts.dirty_bytes ? vm->opts.dirty_bytes : vm->ram_bytes - TVM_DATA_GPA;
	uint64_t pages = bytes / TVM_PAGE_SIZE, n = vm->nr_vcpus;
	uint64_t base = pages / n, extra = pages % n, next = 0;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		uint64_t count = base + (i >= n - extra ? 1 : 0);
		vm->dirty[i].gpa = TVM_DATA_GPA + next * TVM_PAGE_SIZE;
		vm->dirty[i].pages = count;
		next += count;
	}
	vm->nr_dirty = vm->nr_vcpus;
}

void vm_data_area(const struct vm *vm, void **host, uint64_t *gpa, uint64_t *bytes)
{
	*host = (uint8_t *)vm->ram + TVM_DATA_GPA;
	*gpa = TVM_DATA_GPA;
	*bytes = vm->ram_bytes - TVM_DATA_GPA;
}

unsigned vm_dirty_ranges(const struct vm *vm, struct vm_dirty_range *out, unsigned max)
{
	unsigned n = vm->nr_dirty < max ? vm->nr_dirty : max;
	if (n)
		memcpy(out, vm->dirty, n * sizeof(*out));
	return vm->nr_dirty;
}

/* ---- the dirty pattern -------------------------------------------------------------------- */

static const uint8_t *image_page(const struct vm_region *regions, unsigned nr, uint64_t gpa)
{
	for (unsigned i = 0; i < nr; i++)
		if (gpa >= regions[i].gpa && gpa - regions[i].gpa < regions[i].size &&
		    regions[i].size - (gpa - regions[i].gpa) >= TVM_PAGE_SIZE)
			return (const uint8_t *)regions[i].host + (gpa - regions[i].gpa);
	return NULL;
}

int vm_dirty_verify_image(const struct vm_region *regions, unsigned nr_regions,
			  const struct vm_dirty_range *ranges, unsigned nr_ranges,
			  struct vm_dirty_result *res, char *errbuf, size_t errlen)
{
	for (unsigned r = 0; r < nr_ranges; r++) {
		uint64_t n = ranges[r].pages, sweep = 0, done = n;
		for (uint64_t j = 0; j < n; j++) {
			uint64_t gpa = ranges[r].gpa + j * TVM_PAGE_SIZE;
			const uint8_t *p = image_page(regions, nr_regions, gpa);
			if (!p)
				return vm__err(errbuf, errlen, MFD_ERANGE,
					       "range %u page %" PRIu64 ": GPA 0x%" PRIx64
					       " is not in the image", r, j, gpa);
			uint64_t frame = get_le64(p), s = get_le64(p + 8);
			if (frame != gpa >> TVM_PAGE_SHIFT)
				return vm__err(errbuf, errlen, MFD_ERANGE,
					       "range %u page %" PRIu64 " (GPA 0x%" PRIx64 "): frame "
					       "word 0x%" PRIx64 ", expected 0x%" PRIx64, r, j, gpa,
					       frame, gpa >> TVM_PAGE_SHIFT);
			if (j == 0) {
				sweep = s;
				continue;
			}
			/* Run one: pages that hold sweep; then run two: pages that hold sweep-1. */
			if (done == n && s == sweep)
				continue;
			if (done == n && sweep > 0 && s == sweep - 1) {
				done = j;
				continue;
			}
			if (done < n && s == sweep - 1)
				continue;
			if (done == n)
				return vm__err(errbuf, errlen, MFD_ERANGE,
					       "range %u page %" PRIu64 " (GPA 0x%" PRIx64 ") holds "
					       "sweep %" PRIu64 " after pages of sweep %" PRIu64
					       " (expected %" PRIu64 " or %" PRIu64 ")", r, j, gpa,
					       s, sweep, sweep, sweep ? sweep - 1 : 0);
			return vm__err(errbuf, errlen, MFD_ERANGE,
				       "range %u page %" PRIu64 " (GPA 0x%" PRIx64 ") holds sweep %"
				       PRIu64 " but pages %" PRIu64 "..%" PRIu64 " hold %" PRIu64
				       " (expected %" PRIu64 ")", r, j, gpa, s, done, j - 1,
				       sweep - 1, sweep - 1);
		}
		res[r] = (struct vm_dirty_result){ .sweep = sweep, .pages_done = done, .pages = n };
	}
	return 0;
}

int vm_verify_dirty_pattern(struct vm *vm, struct vm_dirty_result *res, char *errbuf,
			    size_t errlen)
{
	pthread_mutex_lock(&vm->lock);
	bool running = vm->state == VM_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	if (running)
		return vm__err(errbuf, errlen, -EINVAL, "pause the VM before verifying its RAM");
	if (vm->opts.workload != VM_WORKLOAD_DIRTY)
		return vm__err(errbuf, errlen, -EINVAL, "the workload is not dirty");
	return vm_dirty_verify_image(vm->regions, vm->nr_regions, vm->dirty, vm->nr_dirty, res,
				     errbuf, errlen);
}
