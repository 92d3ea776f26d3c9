/* twoostwo_native32: executes the BCD instructions that 64-bit mode lacks
 * (DAA, DAS, AAA, AAS, AAM imm8, AAD imm8) natively on the host CPU, as a
 * 32-bit process, for the differential tests in
 * tests/vmcore/emu_alu_bcd_test.cpp.
 *
 * Input: one instruction per line on stdin, "<op> <ax> <eflags> <imm8>",
 * numbers in hex, op one of daa das aaa aas aam aad (imm8 is read for every
 * op and used by aam/aad only). Only the arithmetic flags of <eflags> are
 * loaded (TF/DF/AC would disturb the process).
 * Output: one line per input line, "<ax> <eflags>" in hex after the
 * instruction, or "DE" when it raised #DE (AAM 0). A malformed line prints
 * "ERR". Built with `cc -m32` by this folder's CMakeLists.txt. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define ARITH_FLAGS 0x8D5u /* CF PF AF ZF SF OF */

typedef uint32_t (*bcd_fn)(uint32_t *ax, uint32_t flags);

#define BCD_OP(name, insn)                                                        \
  static uint32_t name(uint32_t *ax, uint32_t flags) {                            \
    uint32_t a = *ax;                                                             \
    __asm__ volatile("pushl %1\n\tpopfl\n\t" insn "\n\tpushfl\n\tpopl %1"         \
                     : "+a"(a), "+r"(flags)                                       \
                     :                                                            \
                     : "cc", "memory");                                           \
    *ax = a;                                                                      \
    return flags;                                                                 \
  }

BCD_OP(op_daa, "daa")
BCD_OP(op_das, "das")
BCD_OP(op_aaa, "aaa")
BCD_OP(op_aas, "aas")

/* AAM/AAD take their base as an immediate: one function per base. */
#define IMM_OP(n)                                                                 \
  static uint32_t aam_##n(uint32_t *ax, uint32_t flags) {                         \
    uint32_t a = *ax;                                                             \
    __asm__ volatile("pushl %1\n\tpopfl\n\t.byte 0xD4, " #n "\n\tpushfl\n\tpopl %1" \
                     : "+a"(a), "+r"(flags)                                       \
                     :                                                            \
                     : "cc", "memory");                                           \
    *ax = a;                                                                      \
    return flags;                                                                 \
  }                                                                               \
  static uint32_t aad_##n(uint32_t *ax, uint32_t flags) {                         \
    uint32_t a = *ax;                                                             \
    __asm__ volatile("pushl %1\n\tpopfl\n\t.byte 0xD5, " #n "\n\tpushfl\n\tpopl %1" \
                     : "+a"(a), "+r"(flags)                                       \
                     :                                                            \
                     : "cc", "memory");                                           \
    *ax = a;                                                                      \
    return flags;                                                                 \
  }

#define ROW(h)                                                                    \
  IMM_OP(0x##h##0) IMM_OP(0x##h##1) IMM_OP(0x##h##2) IMM_OP(0x##h##3)             \
  IMM_OP(0x##h##4) IMM_OP(0x##h##5) IMM_OP(0x##h##6) IMM_OP(0x##h##7)             \
  IMM_OP(0x##h##8) IMM_OP(0x##h##9) IMM_OP(0x##h##A) IMM_OP(0x##h##B)             \
  IMM_OP(0x##h##C) IMM_OP(0x##h##D) IMM_OP(0x##h##E) IMM_OP(0x##h##F)
#define ALL_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(A) X(B) X(C) X(D) X(E) X(F)
ALL_ROWS(ROW)

#define ENTRY(n, kind) kind##_##n,
#define ROW_ENTRIES(h, kind)                                                      \
  ENTRY(0x##h##0, kind) ENTRY(0x##h##1, kind) ENTRY(0x##h##2, kind)               \
  ENTRY(0x##h##3, kind) ENTRY(0x##h##4, kind) ENTRY(0x##h##5, kind)               \
  ENTRY(0x##h##6, kind) ENTRY(0x##h##7, kind) ENTRY(0x##h##8, kind)               \
  ENTRY(0x##h##9, kind) ENTRY(0x##h##A, kind) ENTRY(0x##h##B, kind)               \
  ENTRY(0x##h##C, kind) ENTRY(0x##h##D, kind) ENTRY(0x##h##E, kind)               \
  ENTRY(0x##h##F, kind)
#define AAM_ROW(h) ROW_ENTRIES(h, aam)
#define AAD_ROW(h) ROW_ENTRIES(h, aad)
static const bcd_fn aam_table[256] = {ALL_ROWS(AAM_ROW)};
static const bcd_fn aad_table[256] = {ALL_ROWS(AAD_ROW)};

static sigjmp_buf fault_jump;

static void on_sigfpe(int sig) {
  (void)sig;
  siglongjmp(fault_jump, 1);
}

/* Runs one instruction; returns 0, or 1 when it raised #DE (SIGFPE). */
static int run(bcd_fn fn, uint32_t *ax, uint32_t *flags) {
  if (sigsetjmp(fault_jump, 1) != 0) {
    return 1;
  }
  *flags = fn(ax, *flags);
  return 0;
}

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigfpe;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGFPE, &sa, NULL);

  char op[8];
  unsigned ax_in = 0, flags_in = 0, imm = 0;
  while (scanf("%7s %x %x %x", op, &ax_in, &flags_in, &imm) == 4) {
    bcd_fn fn = NULL;
    if (strcmp(op, "daa") == 0) fn = op_daa;
    else if (strcmp(op, "das") == 0) fn = op_das;
    else if (strcmp(op, "aaa") == 0) fn = op_aaa;
    else if (strcmp(op, "aas") == 0) fn = op_aas;
    else if (strcmp(op, "aam") == 0 && imm < 256) fn = aam_table[imm];
    else if (strcmp(op, "aad") == 0 && imm < 256) fn = aad_table[imm];
    if (fn == NULL) {
      puts("ERR");
      continue;
    }
    uint32_t ax = ax_in & 0xFFFFu;
    uint32_t flags = 0x2u | (flags_in & ARITH_FLAGS);
    if (run(fn, &ax, &flags) != 0) {
      puts("DE");
      continue;
    }
    printf("%x %x\n", ax & 0xFFFFu, flags);
  }
  return 0;
}
