/*
 * vmm/boot — what a fresh guest finds in RAM: for the long-mode workloads the boot area of
 * layout.h (GDT, identity map of all RAM with 2 MiB pages, the workload's code, its parameter
 * block, and the sweep-0 stamps of the dirty ranges); for the boot-sector mode the image at
 * 0x7c00.  The backends then set the vCPUs at the entry point.
 */
#include <errno.h>
#include <string.h>
#include "vm_priv.h"

extern const uint8_t guest_dirty_start[], guest_dirty_end[];
extern const uint8_t guest_idle_start[], guest_idle_end[];

#define PTE_P	0x1ull
#define PTE_RW	0x2ull
#define PTE_PS	0x80ull

/* Write what a fresh long-mode guest needs into low RAM (layout.h): GDT, identity map of all
 * RAM with 2 MiB pages, the workload's code, its parameters, and the sweep-0 stamps. */
static int write_boot_area(struct vm *vm, char *errbuf, size_t errlen)
{
	uint8_t *ram = vm->ram;
	const uint8_t *code = guest_idle_start, *code_end = guest_idle_end;
	if (vm->opts.workload == VM_WORKLOAD_DIRTY) {
		code = guest_dirty_start;
		code_end = guest_dirty_end;
	}
	size_t code_len = (size_t)(code_end - code);
	if (code_len > TVM_CODE_MAX)
		return vm__err(errbuf, errlen, -E2BIG, "guest code is %zu bytes, more than %d",
			       code_len, TVM_CODE_MAX);

	memset(ram, 0, TVM_DATA_GPA);

	/* Descriptors: 64-bit code (L=1), flat 4 GiB data, and 32-bit code for completeness. */
	uint64_t gdt[4] = { 0, 0x00af9b000000ffffull, 0x00cf93000000ffffull,
			    0x00cf9b000000ffffull };
	memcpy(ram + TVM_GDT_GPA, gdt, sizeof(gdt));

	uint64_t gib = (vm->ram_bytes + (1ull << 30) - 1) >> 30;
	uint64_t *pml4 = (uint64_t *)(ram + TVM_PML4_GPA);
	uint64_t *pdpt = (uint64_t *)(ram + TVM_PDPT_GPA);
	pml4[0] = TVM_PDPT_GPA | PTE_P | PTE_RW;
	for (uint64_t g = 0; g < gib; g++) {
		uint64_t *pd = (uint64_t *)(ram + TVM_PD_GPA + g * TVM_PAGE_SIZE);
		pdpt[g] = (TVM_PD_GPA + g * TVM_PAGE_SIZE) | PTE_P | PTE_RW;
		for (uint64_t i = 0; i < 512; i++)
			pd[i] = (g << 30 | i << 21) | PTE_P | PTE_RW | PTE_PS;
	}

	memcpy(ram + TVM_CODE_GPA, code, code_len);

	uint8_t *params = ram + TVM_PARAMS_GPA;
	put_le64(params, TVM_PARAMS_MAGIC);
	put_le64(params + TVM_PARAMS_NR_VCPUS, vm->nr_vcpus);
	for (unsigned i = 0; i < vm->nr_dirty; i++) {
		uint8_t *e = params + TVM_PARAMS_VCPU + ((size_t)i << TVM_PARAMS_VCPU_SHIFT);
		put_le64(e + TVM_VP_START, vm->dirty[i].gpa);
		put_le64(e + TVM_VP_PAGES, vm->dirty[i].pages);
	}

	/* Sweep 0: every page of every range carries its frame number from the start, so the
	 * verifier is strict from the first instant, whatever --fill wrote there. */
	for (unsigned i = 0; i < vm->nr_dirty; i++) {
		uint64_t gpa = vm->dirty[i].gpa;
		for (uint64_t j = 0; j < vm->dirty[i].pages; j++, gpa += TVM_PAGE_SIZE) {
			uint64_t stamp[2] = { gpa >> TVM_PAGE_SHIFT, 0 };
			memcpy(ram + gpa, stamp, sizeof(stamp));
		}
	}
	return 0;
}

static void write_boot_sector(struct vm *vm)
{
	memset((uint8_t *)vm->ram + TVM_BOOT_SECTOR_GPA, 0, VM_BOOT_SECTOR_MAX);
	memcpy((uint8_t *)vm->ram + TVM_BOOT_SECTOR_GPA, vm->boot_image,
	       vm->opts.boot_sector_len);
}

int vm__boot_write(struct vm *vm, char *errbuf, size_t errlen)
{
	if (vm->opts.workload == VM_WORKLOAD_BOOT_SECTOR) {
		write_boot_sector(vm);
		return 0;
	}
	return write_boot_area(vm, errbuf, errlen);
}
