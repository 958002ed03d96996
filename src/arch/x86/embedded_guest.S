/* The tiny guest built from guest/, linked into the kvmlite binary so that
 * `kvmlite run` with no --kernel has something to boot. */
	.section .rodata
	.balign 16
	.globl embedded_guest_start, embedded_guest_end
embedded_guest_start:
	.incbin GUEST_ELF
embedded_guest_end:
	.section .note.GNU-stack,"",@progbits
