// Writes tcetest.elf: a 23-instruction big-endian ppc64 guest for `-M pseries,x-vof=on -kernel`, which makes one
// H_PUT_TCE(liobn 0x80000000, ioba 0, 0x1000000 | R | W) on the default PHB's 32-bit DMA window and then powers the
// machine off through the RTAS hypercall, so QEMU exits 0 by itself.
//
// VOF enters the image at its load address in 32-bit big-endian real mode, so every constant is built with
// li/lis/ori/oris without sign extension and all addresses are guest physical. The RTAS token of "power-off" (0x2003) is the one QEMU 7.2 puts
// in /rtas/power-off; the RTAS hypercall is QEMU's KVMPPC_H_RTAS (0xf000, r4 = the argument buffer).
//
// Usage: make_tcetest_elf OUT.elf
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

// D-form and X-form encodings of the few instructions used.
constexpr uint32_t addi(int rd, int ra, int16_t v) { return 14u << 26 | rd << 21 | ra << 16 | uint16_t(v); }
constexpr uint32_t li(int rd, int16_t v) { return addi(rd, 0, v); }
constexpr uint32_t lis(int rd, uint16_t v) { return 15u << 26 | rd << 21 | v; }
constexpr uint32_t ori(int ra, int rs, uint16_t v) { return 24u << 26 | rs << 21 | ra << 16 | v; }
constexpr uint32_t oris(int ra, int rs, uint16_t v) { return 25u << 26 | rs << 21 | ra << 16 | v; }
constexpr uint32_t stw(int rs, int16_t d, int ra) { return 36u << 26 | rs << 21 | ra << 16 | uint16_t(d); }
constexpr uint32_t mr(int ra, int rs) { return 31u << 26 | rs << 21 | ra << 16 | rs << 11 | 444u << 1; }
constexpr uint32_t kHypercall = 0x44000022;  // sc 1
constexpr uint32_t kSpin = 0x48000000;       // b .

constexpr uint16_t kHPutTce = 0x20;
constexpr uint16_t kHRtas = 0xf000;
constexpr uint16_t kRtasPowerOff = 0x2003;
constexpr uint16_t kRtasArgs = 0x0050;  // << 16: guest physical 0x500000, clear of VOF and the image

const std::vector<uint32_t> kProgram = {
    li(3, kHPutTce),            // r3 = H_PUT_TCE
    li(4, 0),                   //
    oris(4, 4, 0x8000),         // r4 = liobn 0x80000000 (the default PHB's 32-bit window; lis would sign-extend)
    li(5, 0),                   // r5 = ioba 0
    lis(6, 0x0100),             //
    ori(6, 6, 3),               // r6 = tce 0x1000000 | read | write
    kHypercall,                 //
    lis(7, kRtasArgs),          // r7 = RTAS argument buffer
    li(8, kRtasPowerOff),       //
    stw(8, 0, 7),               // token
    li(8, 2),                   //
    stw(8, 4, 7),               // nargs = 2 (power-on mask hi, lo)
    li(8, 1),                   //
    stw(8, 8, 7),               // nret = 1
    li(8, 0),                   //
    stw(8, 12, 7),              // mask hi
    stw(8, 16, 7),              // mask lo
    stw(8, 20, 7),              // status
    li(3, 0),                   //
    ori(3, 3, kHRtas),          // r3 = KVMPPC_H_RTAS (0xf000 would sign-extend with li)
    mr(4, 7),                   // r4 = the buffer
    kHypercall,                 //
    kSpin,                      // not reached once power-off took effect
};

void be16(std::vector<uint8_t>& o, uint16_t v) { o.push_back(v >> 8), o.push_back(v & 0xff); }
void be32(std::vector<uint8_t>& o, uint32_t v) { be16(o, v >> 16), be16(o, v & 0xffff); }
void be64(std::vector<uint8_t>& o, uint64_t v) { be32(o, v >> 32), be32(o, v & 0xffffffff); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT.elf\n", argv[0]);
    return 2;
  }
  constexpr uint64_t kCodeOffset = 0x100;
  const uint64_t code_size = kProgram.size() * 4;
  std::vector<uint8_t> o;
  // ELF64 header: big-endian, EM_PPC64 (21), ET_EXEC, ELF ABI v1 flags.
  const uint8_t ident[16] = {0x7f, 'E', 'L', 'F', 2, 2, 1, 0};
  o.insert(o.end(), ident, ident + 16);
  be16(o, 2);            // e_type ET_EXEC
  be16(o, 21);           // e_machine EM_PPC64
  be32(o, 1);            // e_version
  be64(o, 0);            // e_entry: the first instruction (QEMU starts at the load address anyway)
  be64(o, 64);           // e_phoff
  be64(o, 0);            // e_shoff
  be32(o, 1);            // e_flags: ABI v1
  be16(o, 64);           // e_ehsize
  be16(o, 56);           // e_phentsize
  be16(o, 1);            // e_phnum
  be16(o, 64);           // e_shentsize
  be16(o, 0);            // e_shnum
  be16(o, 0);            // e_shstrndx
  // One PT_LOAD, R+X, at address 0 (QEMU adds its kernel load address).
  be32(o, 1);            // p_type PT_LOAD
  be32(o, 5);            // p_flags R|X
  be64(o, kCodeOffset);  // p_offset
  be64(o, 0);            // p_vaddr
  be64(o, 0);            // p_paddr
  be64(o, code_size);    // p_filesz
  be64(o, code_size);    // p_memsz
  be64(o, 4);            // p_align
  o.resize(kCodeOffset, 0);
  for (uint32_t insn : kProgram) be32(o, insn);

  FILE* f = std::fopen(argv[1], "wb");
  if (!f || std::fwrite(o.data(), 1, o.size(), f) != o.size() || std::fclose(f) != 0) {
    std::perror(argv[1]);
    return 1;
  }
  return 0;
}
