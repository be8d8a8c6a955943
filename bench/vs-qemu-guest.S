/*
 * bench/vs-qemu-guest.S — the QEMU guest of bench/vs-qemu: a multiboot kernel that does what
 * tinyvm's workloads do (vmm/guest/idle.S, vmm/guest/dirty.S), so that both tools migrate a
 * guest doing the same thing.
 *
 *   as --32 --defsym DIRTY_MIB=N -o guest.o bench/vs-qemu-guest.S
 *   ld -m elf_i386 -N -Ttext 0x100000 -e _start -o guest.elf guest.o
 *   qemu-system-x86_64 ... -kernel guest.elf -serial file:LOG
 *
 * DIRTY_MIB=0, idle: halt with interrupts disabled, forever (the vCPU sleeps and costs no CPU;
 * nothing in this machine interrupts it).
 * DIRTY_MIB=N, dirty: sweep the N MiB from DIRTY_BASE forever, stamping the first 16 bytes of
 * every page with its frame number (u64) and the sweep counter (u64), as tinyvm's dirty
 * workload does, and print "cpu0 sweep <n>\n" on COM1 after each sweep.
 *
 * QEMU's multiboot loader starts it in 32-bit protected mode, paging off, flat 4 GiB segments,
 * interrupts disabled, at _start (linked and loaded at 1 MiB).  The code stays under 4 KiB;
 * DIRTY_BASE leaves the rest of that first MiB above the kernel alone.  Everything it writes is
 * in the dirty range, its stack (in .bss) and the serial port.
 */
	.set	MB_MAGIC, 0x1badb002
	.set	MB_FLAGS, 0
	.set	COM1, 0x3f8
	.set	DIRTY_BASE, 0x200000
	.set	PAGE, 4096

	.text
	.code32
	.globl	_start

	.balign	4
multiboot_header:			/* within the first 8 KiB of the file: the loader looks there */
	.long	MB_MAGIC
	.long	MB_FLAGS
	.long	-(MB_MAGIC + MB_FLAGS)

_start:
	cli
	cld
	mov	$stack_top, %esp
.if DIRTY_MIB == 0
1:	hlt
	jmp	1b
.else
	xor	%ebx, %ebx			/* ebx: the sweep being written */
sweep:
	inc	%ebx
	mov	$DIRTY_BASE, %eax		/* eax: address of the page */
	mov	$(DIRTY_BASE / PAGE), %edx	/* edx: its frame number */
	mov	$(DIRTY_MIB * 1024 * 1024 / PAGE), %ecx
page:
	mov	%edx, (%eax)
	movl	$0, 4(%eax)
	mov	%ebx, 8(%eax)
	movl	$0, 12(%eax)
	add	$PAGE, %eax
	inc	%edx
	dec	%ecx
	jnz	page

	/* "cpu0 sweep <ebx>\n": the digits backwards into line_end, then one rep outsb. */
	lea	line_end, %edi
	movb	$0x0a, (%edi)
	mov	%ebx, %eax
	mov	$10, %ecx
1:	xor	%edx, %edx
	div	%ecx
	add	$0x30, %dl
	dec	%edi
	mov	%dl, (%edi)
	test	%eax, %eax
	jnz	1b
	mov	$line_head, %esi
	mov	$COM1, %dx
	mov	$(line_head_end - line_head), %ecx
	rep outsb
	mov	%edi, %esi
	lea	line_end + 1, %ecx
	sub	%edi, %ecx
	rep outsb
	jmp	sweep

line_head:
	.ascii	"cpu0 sweep "
line_head_end:
.endif

	.bss
	.balign	16
line_buf:
	.skip	16
line_end:
	.skip	1
	.balign	16
	.skip	1024
stack_top:
