/*
 * vmm/guest/dirty — the "dirty" workload: 64-bit guest code that sweeps this vCPU's range of the
 * data area forever, stamping the first 16 bytes of every page with its guest frame number and
 * the sweep counter, and printing "cpu<index> sweep <counter>\n" on COM1 after each sweep.
 *
 * The monitor copies the bytes between guest_dirty_start and guest_dirty_end to TVM_CODE_GPA
 * and starts every vCPU there in long mode with RDI = vCPU index, RSP = top of its stack and
 * the parameter block at TVM_PARAMS_GPA (vmm/layout.h).  The code is position independent
 * (relative jumps, absolute addresses only for the parameter block and the ports).
 *
 * Guest instructions are expensive under nested virtualisation and every port access is a VM
 * exit, so the page loop is six instructions and the report is one line per sweep sent with a
 * single rep outsb.  All the workload's state lives in registers (r8, r9, r13; rdi), so it
 * travels with the vCPU registers when the VM is saved or migrated:
 *
 *   r8   GPA of the first page of the range      r9   pages in the range
 *   r13  the sweep being written (1, 2, ...)     rdi  vCPU index
 *
 * At any stop point pages [0, k) of the range hold sweep r13 and pages [k, n) hold r13 - 1,
 * which is what vm_dirty_verify_image() checks.
 */
#include "../layout.h"

	.section .rodata.tinyvm_guest, "a"
	.code64
	.balign 16
	.globl	guest_dirty_start
	.globl	guest_dirty_end

guest_dirty_start:
	cld
	cli
	mov	%rdi, %rbx
	shl	$TVM_PARAMS_VCPU_SHIFT, %rbx
	add	$(TVM_PARAMS_GPA + TVM_PARAMS_VCPU), %rbx
	mov	TVM_VP_START(%rbx), %r8
	mov	TVM_VP_PAGES(%rbx), %r9
	xor	%r13d, %r13d
	test	%r9, %r9
	jz	.Lnothing

.Lsweep:
	inc	%r13
	mov	%r8, %rax			/* rax: address of the page */
	mov	%r8, %rdx
	shr	$TVM_PAGE_SHIFT, %rdx		/* rdx: its frame number */
	mov	%r9, %rcx			/* rcx: pages left */
.Lpage:
	mov	%rdx, (%rax)
	mov	%r13, 8(%rax)
	add	$TVM_PAGE_SIZE, %rax
	inc	%rdx
	dec	%rcx
	jnz	.Lpage

	/* Build the line backwards in 64 bytes of stack, then send it in one instruction. */
	sub	$64, %rsp
	lea	64(%rsp), %rsi
	mov	$10, %r10
	dec	%rsi
	movb	$0x0a, (%rsi)			/* "\n" */
	mov	%r13, %rax
	call	.Lutoa
	mov	$0x2070656577732000, %rax	/* " sweep " with a leading NUL, little endian */
	sub	$7, %rsi
	mov	%rax, -1(%rsi)			/* 8-byte store; the NUL lands before the text */
	mov	%rdi, %rax
	call	.Lutoa
	sub	$3, %rsi
	movw	$0x7063, (%rsi)			/* "cp" */
	movb	$0x75, 2(%rsi)			/* "u" */
	lea	64(%rsp), %rcx
	sub	%rsi, %rcx
	mov	$TVM_PORT_COM1, %dx
	rep outsb
	add	$64, %rsp
	jmp	.Lsweep

/* Write rax in decimal just before rsi, moving rsi back.  r10 = 10.  Clobbers rax, rdx. */
.Lutoa:
	xor	%edx, %edx
	div	%r10
	add	$0x30, %dl
	dec	%rsi
	mov	%dl, (%rsi)
	test	%rax, %rax
	jnz	.Lutoa
	ret

/* An empty range (the monitor never makes one): halt for good. */
.Lnothing:
	hlt
	jmp	.Lnothing

guest_dirty_end:

	.section .note.GNU-stack, "", @progbits
