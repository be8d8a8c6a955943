/*
 * vmm/layout — the guest-physical layout tinyvm builds for its long-mode workloads, shared by the
 * monitor (C) and the guest code (the .S files in vmm/guest include it through cpp): plain
 * #defines only.
 *
 *   0x00000  -  0x00fff   unused (a null page)
 *   0x01000  -  0x01fff   GDT: 0x08 64-bit code, 0x10 flat data, 0x18 32-bit code
 *   0x02000  -  0x02fff   parameter block (below), written by the monitor before start
 *   0x03000  -  0x03fff   PML4
 *   0x04000  -  0x04fff   PDPT
 *   0x05000  -  0x44fff   page directories, one per GiB of RAM (2 MiB pages, identity map)
 *   0x80000  -  0x8ffff   guest code, entry at its first byte
 *   0x90000  -  0xcffff   stacks, 4 KiB per vCPU; vCPU i starts with RSP at its page's top
 *   0x100000 -  RAM end   the data area: the workload's pages, filled by --fill
 *
 * Every vCPU starts in 64-bit mode at TVM_CODE_GPA with RDI = its index and interrupts
 * disabled.  The boot-sector mode uses none of this: it loads the image at 0x7c00 and starts in
 * real mode.
 */
#ifndef TINYVM_LAYOUT_H
#define TINYVM_LAYOUT_H

#define TVM_PAGE_SIZE		4096
#define TVM_PAGE_SHIFT		12
#define TVM_GDT_GPA		0x1000
#define TVM_PARAMS_GPA		0x2000
#define TVM_PML4_GPA		0x3000
#define TVM_PDPT_GPA		0x4000
#define TVM_PD_GPA		0x5000
#define TVM_MAX_RAM_GIB		64
#define TVM_CODE_GPA		0x80000
#define TVM_CODE_MAX		0x10000
#define TVM_STACK_GPA		0x90000
#define TVM_STACK_SIZE		0x1000
#define TVM_DATA_GPA		0x100000
#define TVM_BOOT_SECTOR_GPA	0x7c00

#define TVM_SEL_CODE64		0x08
#define TVM_SEL_DATA		0x10
#define TVM_SEL_CODE32		0x18

/* The parameter block: a u64 magic, a u64 vCPU count, then from TVM_PARAMS_VCPU one 32-byte
 * entry per vCPU: the GPA of its first page and its page count (u64 each), 16 bytes reserved. */
#define TVM_PARAMS_MAGIC	0x315241504d5654	/* "TVMPAR1" */
#define TVM_PARAMS_NR_VCPUS	8
#define TVM_PARAMS_VCPU		64
#define TVM_PARAMS_VCPU_SHIFT	5
#define TVM_VP_START		0
#define TVM_VP_PAGES		8

/* I/O ports. */
#define TVM_PORT_COM1		0x3f8	/* .. 0x3ff */
#define TVM_PORT_A20		0x92
#define TVM_PORT_POST		0x80
#define TVM_PORT_SHUTDOWN	0x501

#endif
