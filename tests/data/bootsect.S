# tests/data/bootsect — a boot sector for tinyvm's boot-sector mode (tests/t_vm_boot.sh).
#
# Starts in real mode at 0000:7c00 with no BIOS, prints "real\n" on COM1 (polling the line
# status register before each byte), enables A20 through port 0x92 and checks that the port
# reads back, switches to 32-bit protected mode with its own GDT, prints "prot\n", then either
# writes 0 to the shutdown port 0x501 or, when assembled with --defsym HALT=1, halts with
# interrupts disabled, or, with --defsym TICK=1, runs forever printing one letter per line
# ("a", "b", ... "z", "a", ...) after each delay loop, so a migrated run can be checked for
# continuity (tests/t_vm_migrate.sh); with --defsym NONL=1 as well, the letters come slower
# (a five times longer delay) and without newlines (tests/t_vm_serial.sh).  Plain GNU as (no
# cpp):
#
#     as --32 -o boot.o bootsect.S
#     ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o boot.bin boot.o

	.code16
	.text
	.globl	_start
_start:
	cli
	xor	%ax, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	$0x7c00, %sp
	cld

	mov	$msg_real, %si
1:	lodsb
	test	%al, %al
	jz	2f
	call	putc16
	jmp	1b
2:
	# fast A20: set bit 1 of port 0x92 (never bit 0, which would reset a real PC)
	in	$0x92, %al
	or	$0x02, %al
	and	$0xfe, %al
	out	%al, $0x92
	in	$0x92, %al
	test	$0x02, %al
	jz	fail16

	lgdt	gdt_desc
	mov	%cr0, %eax
	or	$1, %eax
	mov	%eax, %cr0
	ljmp	$0x08, $prot32

# Send al on COM1 once the transmitter holding register is empty (LSR bit 5).
putc16:
	mov	%al, %bl
	mov	$0x3fd, %dx
3:	in	%dx, %al
	test	$0x20, %al
	jz	3b
	mov	$0x3f8, %dx
	mov	%bl, %al
	out	%al, %dx
	ret

fail16:
	mov	$0x501, %dx
	mov	$3, %al
	out	%al, %dx
	hlt

	.code32
prot32:
	mov	$0x10, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	$0x7c00, %esp

	mov	$msg_prot, %esi
4:	lodsb
	test	%al, %al
	jz	5f
	mov	%al, %bl
	mov	$0x3fd, %dx
6:	in	%dx, %al
	test	$0x20, %al
	jz	6b
	mov	$0x3f8, %dx
	mov	%bl, %al
	out	%al, %dx
	jmp	4b
5:
.ifdef HALT
	cli
7:	hlt
	jmp	7b
.else
.ifdef TICK
	xor	%edi, %edi		# tick number
8:
.ifdef NONL
	mov	$200000, %ecx
.else
	mov	$40000, %ecx		# delay: a guest instruction costs microseconds here
.endif
9:	loop	9b
	mov	%edi, %eax
	xor	%edx, %edx
	mov	$26, %ecx
	div	%ecx
	lea	'a'(%edx), %eax
	call	putc32
.ifndef NONL
	mov	$'\n', %al
	call	putc32
.endif
	inc	%edi
	jmp	8b
# Send al on COM1 once the transmitter is empty (32-bit code).
putc32:
	mov	%al, %bl
	mov	$0x3fd, %dx
10:	in	%dx, %al
	test	$0x20, %al
	jz	10b
	mov	$0x3f8, %dx
	mov	%bl, %al
	out	%al, %dx
	ret
.else
	mov	$0x501, %dx
	xor	%eax, %eax
	out	%al, %dx
	hlt
.endif
.endif

	.p2align 3
gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	# 0x08: 32-bit code, flat
	.quad	0x00cf92000000ffff	# 0x10: data, flat
gdt_desc:
	.word	gdt_desc - gdt - 1
	.long	gdt

msg_real:
	.asciz	"real\n"
msg_prot:
	.asciz	"prot\n"

	.org	510
	.word	0xaa55
