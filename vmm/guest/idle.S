/*
 * vmm/guest/idle — the "idle" workload: enable interrupts and halt, forever.
 *
 * Nothing ever raises an interrupt in tinyvm, so each vCPU sleeps in the kernel (KVM handles HLT
 * itself with the in-kernel irqchip) and costs no CPU.  Because interrupts are enabled the
 * monitor does not count these vCPUs as powered off (that takes HLT with IF = 0), so an idle
 * VM runs until it is paused, destroyed or migrated.  Same entry conventions as dirty.S.
 */
#include "../layout.h"

	.section .rodata.tinyvm_guest, "a"
	.code64
	.balign 16
	.globl	guest_idle_start
	.globl	guest_idle_end

guest_idle_start:
	sti
1:	hlt
	jmp	1b
guest_idle_end:

	.section .note.GNU-stack, "", @progbits
