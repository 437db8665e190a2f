#include "textflag.h"

// func xadd64Flags(p *uint64, lo, hi uint32) uint32
TEXT ·xadd64Flags(SB),NOSPLIT,$0-16
	MOVL	p+0(FP), BP
	MOVL	lo+4(FP), SI
	MOVL	hi+8(FP), DI
	MOVL	0(BP), AX
	MOVL	4(BP), DX
loop:
	MOVL	AX, BX
	MOVL	DX, CX
	ADDL	SI, BX
	ADCL	DI, CX
	LOCK
	CMPXCHG8B	0(BP)
	JNZ	loop
	PUSHFL
	POPL	AX
	MOVL	AX, ret+12(FP)
	RET
