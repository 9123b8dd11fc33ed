// KVM's in-kernel TCE path (docs/kernel/kvm.md) and its races: guest TCE tables, attaching VFIO groups, and the TCE
// hypercalls with 16 MiB guest pages backed by 64 KiB host TCEs.
#include "kvm/vm.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "kvm/stt_accounting.h"
#include "vfio/host.h"
#include "vfio/test_host.h"

namespace nv2pt::kvm {
namespace {

using namespace vfio::testing;

constexpr uint64_t kWindow1 = 1ull << 59;
constexpr uint64_t kLiobn = 0x80000001;
constexpr uint64_t kGpuHpa = 0x400000000000ull;

class KvmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(g4.group.open());
    ASSERT_TRUE(g4.group.set_container(container));  // KVM finds the group's tables through its container
    ASSERT_TRUE(container->set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
    vfio_iommu_spapr_register_memory reg{sizeof(reg), 0, ram.ua(), ram.size()};
    ASSERT_TRUE(iommu().register_memory(as, reg));
    vfio_iommu_spapr_tce_remove rm{sizeof(rm), 0, 0};
    ASSERT_TRUE(iommu().remove_window(as, rm));
    vfio_iommu_spapr_tce_create cr{sizeof(cr), 0, 12, 0, 1 * GiB, 2, 0, 0};
    ASSERT_TRUE(iommu().create_window(as, cr));
    cr.page_shift = 16;
    cr.window_size = 1ull << 40;
    ASSERT_TRUE(iommu().create_window(as, cr));
    ASSERT_EQ(cr.start_addr, kWindow1);
    ASSERT_TRUE(vm.set_memory_region(0, 0, ram.size(), ram.ua()));
  }
  void TearDown() override {
    check();
    if (vm.has_group(g4.group)) {
      EXPECT_TRUE(vm.vfio_group_del(g4.group));  // KVM's hold keeps it in the container
    }
    (void)g4.group.unset_container();  // the container goes with the fixture, before the memory it registered
  }
  void check() {
    uint64_t stt_pages = 0;
    for (uint64_t liobn : {kLiobn, kLiobn + 1}) {
      if (GuestTceTable* t = vm.tce_table(liobn)) stt_pages += t->charged_pages();
    }
    vfio::InvariantReport r = vfio::check_invariants(as, {&iommu()}, stt_pages);
    EXPECT_TRUE(r.ok()) << r.to_string();
  }
  vfio::SpaprTceIommu& iommu() { return *container->iommu(); }
  const iommu::TceTable& host_table() { return *g4.table_group.table(1); }
  // A guest table of 16 MiB pages over the 64-bit window, attached to group 4.
  GuestTceTable* attach_16m() {
    auto t = vm.create_tce_table({kLiobn, 24, 0, kWindow1 >> 24, (1ull << 40) >> 24});
    EXPECT_TRUE(t);
    EXPECT_TRUE(vm.vfio_group_add(g4.group));
    EXPECT_TRUE(vm.vfio_set_spapr_tce(g4.group, kLiobn));
    return t ? *t : nullptr;
  }
  uint64_t host_index(uint64_t ioba) { return (ioba - kWindow1) >> 16; }

  mm::AddressSpace as{process_options(1)};
  NvlinkGroup g4{4};
  ClientMemory ram{64 * MiB, PROT_READ | PROT_WRITE, 16 * MiB};
  std::shared_ptr<vfio::Container> container = std::make_shared<vfio::Container>();
  Vm vm{as, 1};
};

TEST_F(KvmTest, CreateTceTableRefusesBadArgumentsDuplicatesAndOverLimit) {
  EXPECT_EQ(vm.create_tce_table({kLiobn, 16, 1, 0, 16}).error(), kEINVAL);
  EXPECT_EQ(vm.create_tce_table({kLiobn, 16, 0, 0, 0}).error(), kEINVAL);
  EXPECT_EQ(vm.create_tce_table({kLiobn, 11, 0, 0, 16}).error(), kEINVAL);
  EXPECT_EQ(vm.create_tce_table({kLiobn, 35, 0, 0, 16}).error(), kEINVAL);
  EXPECT_EQ(vm.create_tce_table({kLiobn, 16, 0, ~0ull >> 16, 16}).error(), kEINVAL);
  const uint64_t before = as.locked_memory().locked_pages();
  auto t = vm.create_tce_table({kLiobn, 16, 0, kWindow1 >> 16, (1ull << 40) >> 16});
  ASSERT_TRUE(t);
  EXPECT_EQ(as.locked_memory().locked_pages() - before, *stt_charged_pages((1ull << 40) >> 16));
  EXPECT_EQ(vm.create_tce_table({kLiobn, 16, 0, 0, 16}).error(), kEBUSY);
  as.locked_memory().set_policy(mm::MemlockPolicy::fixed(1 * MiB, false));
  EXPECT_EQ(vm.create_tce_table({kLiobn + 1, 12, 0, 0, 1ull << 30}).error(), kENOMEM);
  as.locked_memory().set_policy(mm::MemlockPolicy::fixed(64 * GiB, false));
}

// kvm_vm_ioctl_create_spapr_tce refuses offset + size > 2^64-1 >> page_shift. A size so large that the bound
// "offset > limit - size" wrapped was accepted, charged one page for 2^62 entries, and its hypercalls indexed the
// page array far out of bounds.
TEST_F(KvmTest, HugeGuestTableSizeIsEinvalNotAOnePageCharge) {
  const uint64_t before = as.locked_memory().locked_pages();
  EXPECT_EQ(vm.create_tce_table({kLiobn, 12, 0, 0, 1ull << 62}).error(), kEINVAL);
  EXPECT_EQ(vm.create_tce_table({kLiobn, 12, 0, 0, ~0ull}).error(), kEINVAL);
  EXPECT_EQ(vm.create_tce_table({kLiobn, 16, 0, ~0ull, 2}).error(), kEINVAL);  // offset + size wraps to 1
  EXPECT_EQ(vm.create_tce_table({kLiobn, 12, 0, 1, (~0ull >> 12)}).error(), kEINVAL);  // one past the bound
  EXPECT_EQ(as.locked_memory().locked_pages(), before);
  EXPECT_EQ(vm.tce_table(kLiobn), nullptr);
  // At the bound the size is valid; such a table cannot be charged.
  EXPECT_EQ(vm.create_tce_table({kLiobn, 12, 0, 0, (~0ull >> 12)}).error(), kENOMEM);
  EXPECT_EQ(as.locked_memory().locked_pages(), before);
}

TEST(SttAccounting, ChargeOverflowIsNullopt) {
  EXPECT_EQ(stt_tce_pages(8192), 1u);
  EXPECT_EQ(stt_tce_pages(8193), 2u);
  EXPECT_EQ(stt_charged_pages(8192), 2u);  // one page of TCEs and the descriptor
  EXPECT_FALSE(stt_tce_pages(1ull << 61));   // 2^64 bytes
  EXPECT_FALSE(stt_charged_pages(~0ull));
  EXPECT_TRUE(stt_charged_pages((1ull << 61) - 8192));
}

TEST_F(KvmTest, SetSpaprTceNeedsAnAddedGroupAndAMatchingHostWindow) {
  ASSERT_TRUE(vm.create_tce_table({kLiobn, 24, 0, kWindow1 >> 24, (1ull << 40) >> 24}));
  EXPECT_EQ(vm.vfio_set_spapr_tce(g4.group, kLiobn).error(), kENOENT);  // group not added
  ASSERT_TRUE(vm.vfio_group_add(g4.group));
  EXPECT_EQ(vm.vfio_set_spapr_tce(g4.group, 0x1234).error(), kEINVAL);  // not a table of this VM
  ASSERT_TRUE(vm.create_tce_table({kLiobn + 1, 12, 0, kWindow1 >> 12, 16}));  // 4K guest page < 64K host page
  EXPECT_EQ(vm.vfio_set_spapr_tce(g4.group, kLiobn + 1).error(), kEINVAL);
  vm.release_tce_table(kLiobn + 1);
  ASSERT_TRUE(vm.create_tce_table({kLiobn + 1, 24, 0, (kWindow1 >> 24) + 1, 16}));  // starts differ
  EXPECT_EQ(vm.vfio_set_spapr_tce(g4.group, kLiobn + 1).error(), kEINVAL);
  vm.release_tce_table(kLiobn + 1);
  ASSERT_TRUE(vm.create_tce_table({kLiobn + 1, 24, 0, kWindow1 >> 24, (1ull << 41) >> 24}));  // guest window larger
  EXPECT_EQ(vm.vfio_set_spapr_tce(g4.group, kLiobn + 1).error(), kEINVAL);
  vm.release_tce_table(kLiobn + 1);
  EXPECT_TRUE(vm.vfio_set_spapr_tce(g4.group, kLiobn));
  EXPECT_TRUE(vm.vfio_set_spapr_tce(g4.group, kLiobn));  // again: one more reference
  EXPECT_EQ(vm.tce_table(kLiobn)->attached().front().refs(), 2);
}

// Two groups in one container share its tables: attaching both to one guest table gives the hardware table one
// reference per group (kvm_spapr_tce_attach_iommu_group), and deleting one group from KVM leaves the other's
// attachment working (kvm_spapr_tce_release_iommu_group drops only that group's).
TEST_F(KvmTest, GroupDelKeepsTheOtherGroupsAttachment) {
  NvlinkGroup g5{5};
  ASSERT_TRUE(g5.group.open());
  ASSERT_TRUE(g5.group.set_container(container));
  attach_16m();
  ASSERT_TRUE(vm.vfio_group_add(g5.group));
  ASSERT_TRUE(vm.vfio_set_spapr_tce(g5.group, kLiobn));
  ASSERT_EQ(vm.tce_table(kLiobn)->attached().size(), 1u);  // one hardware table, two references
  EXPECT_EQ(vm.tce_table(kLiobn)->attached().front().refs(), 2);

  ASSERT_TRUE(vm.vfio_group_del(g4.group));
  ASSERT_EQ(vm.tce_table(kLiobn)->attached().size(), 1u) << "g5's attachment went with g4";
  EXPECT_EQ(vm.tce_table(kLiobn)->attached().front().refs(), 1);
  ASSERT_EQ(vm.h_put_tce(kLiobn, kWindow1, (16 * MiB) | 3), kHSuccess);
  EXPECT_EQ(host_table().get(0) & ~3ull, *as.pinner().ua_to_hpa(ram.ua() + 16 * MiB));
  ASSERT_EQ(vm.h_stuff_tce(kLiobn, kWindow1, 0, 1), kHSuccess);

  ASSERT_TRUE(vm.vfio_group_del(g5.group));
  EXPECT_TRUE(vm.tce_table(kLiobn)->attached().empty());
  ASSERT_TRUE(g5.group.unset_container());
}

// The kernel drops one reference per table on DEL, so a group that attached twice stays attached; here DEL drops
// all of the group's references.
TEST_F(KvmTest, GroupDelDropsEveryReferenceTheGroupTook) {
  attach_16m();
  ASSERT_TRUE(vm.vfio_set_spapr_tce(g4.group, kLiobn));
  EXPECT_EQ(vm.tce_table(kLiobn)->attached().front().refs(), 2);
  ASSERT_TRUE(vm.vfio_group_del(g4.group));
  EXPECT_TRUE(vm.tce_table(kLiobn)->attached().empty());
  ASSERT_EQ(vm.h_put_tce(kLiobn, kWindow1, (16 * MiB) | 3), kHSuccess);
  EXPECT_EQ(host_table().get(0), 0u);
}

// kvm_vfio_set_group takes the group as an external user first: a group without a container (or whose container
// has no IOMMU driver) is EINVAL, and nothing is added.
TEST_F(KvmTest, GroupAddWithoutAContainerIsEinval) {
  NvlinkGroup g5{5};
  ASSERT_TRUE(g5.group.open());
  EXPECT_EQ(vm.vfio_group_add(g5.group).error(), kEINVAL);
  EXPECT_FALSE(vm.has_group(g5.group));
  EXPECT_FALSE(g5.group.kvm());
  auto bare = std::make_shared<vfio::Container>();  // no VFIO_SET_IOMMU yet
  ASSERT_TRUE(g5.group.set_container(bare));
  EXPECT_EQ(vm.vfio_group_add(g5.group).error(), kEINVAL);
  EXPECT_FALSE(vm.has_group(g5.group));
  EXPECT_TRUE(g5.group.unset_container());
}

// While KVM holds a group (vfio_group_get_external_user), VFIO_GROUP_UNSET_CONTAINER is EBUSY and closing the group
// fd keeps the container binding; KVM's DEL then dissolves it.
TEST_F(KvmTest, GroupHeldByKvmCannotLeaveItsContainer) {
  NvlinkGroup g5{5};  // keeps the container's IOMMU driver (and windows) while g4 is out
  ASSERT_TRUE(g5.group.open());
  ASSERT_TRUE(g5.group.set_container(container));
  attach_16m();
  EXPECT_EQ(vm.vfio_group_add(g4.group).error(), kEEXIST);  // and the failed add took no extra hold
  EXPECT_EQ(g4.group.unset_container().error(), kEBUSY);
  EXPECT_EQ(g4.group.container(), container);
  ASSERT_EQ(vm.h_put_tce(kLiobn, kWindow1, (16 * MiB) | 3), kHSuccess);
  EXPECT_NE(host_table().get(0), 0u);
  ASSERT_EQ(vm.h_stuff_tce(kLiobn, kWindow1, 0, 1), kHSuccess);
  g4.group.release();  // the group fd closed: the binding stays for KVM
  EXPECT_EQ(g4.group.container(), container);
  ASSERT_TRUE(vm.vfio_group_del(g4.group));
  EXPECT_EQ(g4.group.container(), nullptr);  // KVM was the last user
  ASSERT_TRUE(g4.group.open());
  ASSERT_TRUE(g4.group.set_container(container));
  ASSERT_TRUE(vm.vfio_group_add(g4.group));
  ASSERT_TRUE(vm.vfio_group_del(g4.group));
  EXPECT_TRUE(g4.group.unset_container());  // the group fd is open: DEL left the binding, UNSET removes it
  ASSERT_TRUE(g4.group.set_container(container));
  EXPECT_TRUE(g5.group.unset_container());
}

TEST_F(KvmTest, SixteenMegGuestPageIs256HostTces) {
  GuestTceTable* stt = attach_16m();
  const uint64_t tce = 16 * MiB | 3;  // guest RAM at 16 MiB, R|W
  ASSERT_EQ(vm.h_put_tce(kLiobn, kWindow1 + 16 * MiB, tce), kHSuccess);
  const uint64_t first = host_index(kWindow1 + 16 * MiB);
  for (uint64_t i = 0; i < 256; ++i) {
    ASSERT_EQ(host_table().get(first + i) & ~3ull, *as.pinner().ua_to_hpa(ram.ua() + 16 * MiB + i * 64 * KiB));
    ASSERT_EQ(host_table().cached_ua(first + i), ram.ua() + 16 * MiB + i * 64 * KiB);
  }
  EXPECT_EQ(host_table().get(first + 256), 0u);
  EXPECT_EQ(iommu().registrations().front()->mapped(), 1u + 256u);
  EXPECT_EQ(stt->get(1), tce);
}

TEST_F(KvmTest, PutTceRefusesUnknownLiobnBadIobaAndUnregisteredMemory) {
  attach_16m();
  EXPECT_EQ(vm.h_put_tce(0x42, kWindow1, 3), kHTooHard);  // unknown LIOBN: QEMU's emulated devices
  EXPECT_EQ(vm.h_put_tce(kLiobn, kWindow1 + 64 * KiB, 3), kHParameter);
  EXPECT_EQ(vm.h_put_tce(kLiobn, 0, 3), kHParameter);
  EXPECT_EQ(vm.h_put_tce(kLiobn, kWindow1, (256 * MiB) | 3), kHTooHard);  // no memslot
  ASSERT_TRUE(vm.set_memory_region(1, 256 * MiB, 16 * MiB, ram.ua() + 32 * MiB + 64 * MiB));
  EXPECT_EQ(vm.h_put_tce(kLiobn, kWindow1, (256 * MiB) | 3), kHTooHard);  // memslot, but not registered memory
  EXPECT_EQ(host_table().get(0), 0u);
}

TEST_F(KvmTest, FailureOnSubpage100ClearsTheWholeEntry) {  // nothing leaks; kvmppc_clear_tce leaked
  ClientMemory part(32 * MiB, PROT_READ | PROT_WRITE, 16 * MiB);
  vfio_iommu_spapr_register_memory reg{sizeof(reg), 0, part.ua(), 100 * 64 * KiB};
  ASSERT_TRUE(iommu().register_memory(as, reg));
  ASSERT_TRUE(vm.set_memory_region(1, 512 * MiB, 32 * MiB, part.ua()));
  attach_16m();
  EXPECT_EQ(vm.h_put_tce(kLiobn, kWindow1, (512 * MiB) | 3), kHTooHard);
  for (uint64_t i = 0; i < 256; ++i) ASSERT_EQ(host_table().get(i), 0u);
  for (const auto& r : iommu().registrations()) EXPECT_EQ(r->mapped(), 1u);
  EXPECT_EQ(vm.h_get_tce(kLiobn, kWindow1).second, 0u);
}

TEST_F(KvmTest, PutTceIndirectValidatesEveryEntryBeforeApplyingAny) {
  attach_16m();
  // The list lives in guest RAM at gpa 0.
  auto* list = reinterpret_cast<uint64_t*>(ram.ua());
  for (int i = 0; i < 512; ++i) list[i] = iommu::to_be(((16 + 16 * (i % 2)) * MiB) | 1);
  EXPECT_EQ(vm.h_put_tce_indirect(kLiobn, kWindow1, 0, 513), kHParameter);
  EXPECT_EQ(vm.h_put_tce_indirect(kLiobn, kWindow1, 0x800, 2), kHParameter);
  list[1] = iommu::to_be((16 * MiB + 4 * KiB) | 1);  // misaligned gpa among the 512
  EXPECT_EQ(vm.h_put_tce_indirect(kLiobn, kWindow1, 0, 512), kHTooHard);
  EXPECT_EQ(host_table().get(0), 0u);  // nothing applied
  list[1] = iommu::to_be((32 * MiB) | 1);
  ASSERT_EQ(vm.h_put_tce_indirect(kLiobn, kWindow1, 0, 4), kHSuccess);
  EXPECT_EQ(vm.h_get_tce(kLiobn, kWindow1 + 3 * 16 * MiB).second, (32 * MiB) | 1);
  EXPECT_EQ(host_table().get(256) & 3, iommu::kTceRead);
  EXPECT_EQ(iommu().registrations().front()->mapped(), 1u + 4 * 256);
}

// The TCE list is read as the kernel's get_user reads it: a memory slot over memory the client cannot read is
// H_TOO_HARD, not a fault in the model.
TEST_F(KvmTest, IndirectListInUnreadableMemoryIsTooHard) {
  attach_16m();
  ClientMemory unreadable(1 * MiB, PROT_NONE);
  ASSERT_TRUE(vm.set_memory_region(1, 1ull << 40, unreadable.size(), unreadable.ua()));
  EXPECT_EQ(vm.h_put_tce_indirect(kLiobn, kWindow1, 1ull << 40, 4), kHTooHard);
  EXPECT_EQ(host_table().get(0), 0u);
}

TEST_F(KvmTest, IndirectEntryWithoutPermissionsUnmaps) {  // the kernel maps it and leaks a count
  attach_16m();
  ASSERT_EQ(vm.h_put_tce(kLiobn, kWindow1, (16 * MiB) | 3), kHSuccess);
  auto* list = reinterpret_cast<uint64_t*>(ram.ua());
  list[0] = iommu::to_be(16 * MiB);  // a gpa, but neither R nor W
  ASSERT_EQ(vm.h_put_tce_indirect(kLiobn, kWindow1, 0, 1), kHSuccess);
  for (uint64_t i = 0; i < 256; ++i) ASSERT_EQ(host_table().get(i), 0u);
  EXPECT_EQ(iommu().registrations().front()->mapped(), 1u);
  EXPECT_EQ(vm.h_get_tce(kLiobn, kWindow1).second, 16 * MiB);
}

// kvmppc_h_put_tce_indirect translates every entry's address through the memory slots, also one without
// permissions (which only clears): in no slot it is H_PARAMETER. Nothing is applied (the kernel has applied the
// entries before the bad one by then).
TEST_F(KvmTest, IndirectEntryInNoMemorySlotIsParameter) {
  attach_16m();
  ASSERT_EQ(vm.h_put_tce(kLiobn, kWindow1 + 16 * MiB, (32 * MiB) | 3), kHSuccess);
  auto* list = reinterpret_cast<uint64_t*>(ram.ua());
  list[0] = iommu::to_be((16 * MiB) | 3);
  list[1] = iommu::to_be(1ull << 40);  // no permissions, and no memory slot at 1 TiB
  EXPECT_EQ(vm.h_put_tce_indirect(kLiobn, kWindow1, 0, 2), kHParameter);
  EXPECT_EQ(host_table().get(0), 0u);
  EXPECT_EQ(vm.h_get_tce(kLiobn, kWindow1).second, 0u);
  EXPECT_EQ(vm.h_get_tce(kLiobn, kWindow1 + 16 * MiB).second, (32 * MiB) | 3);  // not cleared
  EXPECT_NE(host_table().get(256), 0u);
  list[1] = iommu::to_be((1ull << 40) | 3);  // with permissions it fails validation first: H_TOO_HARD
  EXPECT_EQ(vm.h_put_tce_indirect(kLiobn, kWindow1, 0, 2), kHTooHard);
  list[1] = iommu::to_be(32 * MiB);  // no permissions, in a slot: clears
  ASSERT_EQ(vm.h_put_tce_indirect(kLiobn, kWindow1, 0, 2), kHSuccess);
  EXPECT_EQ(host_table().get(256), 0u);
  EXPECT_EQ(vm.h_get_tce(kLiobn, kWindow1).second, (16 * MiB) | 3);
  ASSERT_EQ(vm.h_stuff_tce(kLiobn, kWindow1, 0, 2), kHSuccess);
}

TEST_F(KvmTest, StuffTceClearsEveryHostSubpageAndRefusesPermissions) {
  attach_16m();
  ASSERT_EQ(vm.h_put_tce(kLiobn, kWindow1, (16 * MiB) | 3), kHSuccess);
  ASSERT_EQ(vm.h_put_tce(kLiobn, kWindow1 + 16 * MiB, (32 * MiB) | 3), kHSuccess);
  EXPECT_EQ(vm.h_stuff_tce(kLiobn, kWindow1, 1, 10), kHParameter);
  ASSERT_EQ(vm.h_stuff_tce(kLiobn, kWindow1, 0, 1000), kHSuccess);
  for (uint64_t i = 0; i < 512; ++i) ASSERT_EQ(host_table().get(i), 0u);
  EXPECT_EQ(iommu().registrations().front()->mapped(), 1u);
  EXPECT_EQ(vm.h_get_tce(kLiobn, kWindow1 + 16 * MiB).second, 0u);
}

// kvmppc_tce_put returns early for a zero TCE into a page never allocated: clearing a fresh table (H_STUFF_TCE
// over a whole window, as a guest does at boot) allocates none of its pages.
TEST_F(KvmTest, ZeroTceIntoAnUnallocatedPageAllocatesNothing) {
  GuestTceTable* stt = attach_16m();
  ASSERT_EQ(vm.h_stuff_tce(kLiobn, kWindow1, 0, 3 * 8192), kHSuccess);  // three pages' worth of entries
  EXPECT_EQ(stt->allocated_pages(), 0u);
  ASSERT_EQ(vm.h_put_tce(kLiobn, kWindow1 + 16 * MiB, 0), kHSuccess);
  EXPECT_EQ(stt->allocated_pages(), 0u);
  ASSERT_EQ(vm.h_stuff_tce(kLiobn, kWindow1, 0x1000, 2), kHSuccess);  // a poison value is stored
  EXPECT_EQ(stt->allocated_pages(), 1u);
  EXPECT_EQ(vm.h_get_tce(kLiobn, kWindow1 + 16 * MiB).second, 0x1000u);
  ASSERT_EQ(vm.h_stuff_tce(kLiobn, kWindow1, 0, 1), kHSuccess);  // into an allocated page: written
  EXPECT_EQ(vm.h_get_tce(kLiobn, kWindow1).second, 0u);
}

TEST_F(KvmTest, GetTceReturnsTheStoredGuestTceOrZero) {
  GuestTceTable* stt = attach_16m();
  EXPECT_EQ(vm.h_get_tce(kLiobn, kWindow1 + 48 * MiB), std::make_pair(kHSuccess, uint64_t{0}));
  EXPECT_EQ(stt->allocated_pages(), 0u);
  ASSERT_EQ(vm.h_put_tce(kLiobn, kWindow1 + 48 * MiB, (16 * MiB) | 1), kHSuccess);
  EXPECT_EQ(vm.h_get_tce(kLiobn, kWindow1 + 48 * MiB), std::make_pair(kHSuccess, (16 * MiB) | 1));
  EXPECT_EQ(vm.h_get_tce(0x42, kWindow1).first, kHTooHard);
  EXPECT_EQ(vm.h_get_tce(kLiobn, kWindow1 + 4 * KiB).first, kHParameter);
}

TEST_F(KvmTest, PutTceIntoGpuRamIsDirect) {
  ClientMemory gpu(64 * MiB, PROT_NONE, 16 * MiB);
  ASSERT_TRUE(as.pinner().add_special_mapping(gpu.ua(), gpu.size()));
  auto dev = as.registry().add_device(gpu.ua(), gpu.size() >> 16, kGpuHpa);
  ASSERT_TRUE(dev);
  ASSERT_TRUE(vm.set_memory_region(1, 0x400000000000ull, gpu.size(), gpu.ua()));
  attach_16m();
  const uint64_t pinned = as.pinner().pinned_pages();
  ASSERT_EQ(vm.h_put_tce(kLiobn, kWindow1, (0x400000000000ull + 16 * MiB) | 3), kHSuccess);
  EXPECT_EQ(host_table().get(5) & ~3ull, kGpuHpa + 16 * MiB + 5 * 64 * KiB);
  EXPECT_EQ(as.pinner().pinned_pages(), pinned);
  EXPECT_EQ((*dev)->mapped(), 257u);
  ASSERT_EQ(vm.h_stuff_tce(kLiobn, kWindow1, 0, 1), kHSuccess);
  EXPECT_TRUE(as.registry().put(*dev));
}

TEST_F(KvmTest, TwoVcpusIntoTheSameUnallocatedPageAllocateItOnce) {
  for (int round = 0; round < 50; ++round) {
    vm.release_tce_table(kLiobn);
    ASSERT_TRUE(vm.create_tce_table({kLiobn, 24, 0, kWindow1 >> 24, (1ull << 40) >> 24}));
    GuestTceTable* stt = vm.tce_table(kLiobn);
    std::thread a([&] { EXPECT_EQ(vm.h_put_tce(kLiobn, kWindow1, (16 * MiB) | 1), kHSuccess); });
    std::thread b([&] { EXPECT_EQ(vm.h_put_tce(kLiobn, kWindow1 + 16 * MiB, (32 * MiB) | 1), kHSuccess); });
    a.join();
    b.join();
    EXPECT_EQ(stt->allocated_pages(), 1u);
    EXPECT_EQ(stt->get(0), (16 * MiB) | 1);
    EXPECT_EQ(stt->get(1), (32 * MiB) | 1);
  }
}

// The container's MAP/UNMAP and KVM's hypercalls write the same entries, each without the other's lock: racing on
// them must not lose an old entry on either side (the invariant checker counts every region's mappings).
TEST_F(KvmTest, KvmAttachingWhileTheContainerMapsLosesNoEntry) {
  constexpr uint64_t kBytes = 16 * MiB;  // one 16 MiB guest page: 256 host TCEs
  std::atomic<bool> stop{false};
  std::thread qemu([&] {
    vfio_iommu_type1_dma_map map{sizeof(map), VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, ram.ua(), kWindow1,
                                 kBytes};
    vfio_iommu_type1_dma_unmap unmap{sizeof(unmap), 0, kWindow1, kBytes};
    while (!stop) {
      EXPECT_TRUE(iommu().map_dma(as, map));
      EXPECT_TRUE(iommu().unmap_dma(as, unmap));
    }
  });
  attach_16m();
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(vm.h_put_tce(kLiobn, kWindow1, (16 * MiB) | 3), kHSuccess);
    EXPECT_EQ(vm.h_put_tce(kLiobn, kWindow1, 0), kHSuccess);
  }
  stop = true;
  qemu.join();
  ASSERT_EQ(vm.h_stuff_tce(kLiobn, kWindow1, 0, 1), kHSuccess);
  EXPECT_EQ(host_table().live_entries(), 0u);
  check();
}

// A memory slot removed while a hypercall holds a translation through it waits for that hypercall, as the kernel's
// synchronize_srcu does: the call maps what it translated and validated, and the next one finds no slot.
TEST_F(KvmTest, SlotRemovalWaitsForTheHypercallUsingIt) {
  using namespace std::chrono_literals;
  attach_16m();
  ClientMemory probe_memory(1 * MiB, PROT_NONE);
  // Held here, the host table's update lock stops the hypercall after its translation and validation.
  UniqueMutexLock updates(g4.table_group.table(1)->update_mutex());
  std::atomic<long> rc{-1};
  std::thread vcpu([&] { rc = vm.h_put_tce(kLiobn, kWindow1, (16 * MiB) | 3); });
  // The call holds the registry's read guard from before its validation until it returns: a registry change
  // that cannot finish says the call is in flight.
  std::atomic<bool> probed{false};
  std::thread probe;
  for (bool in_flight = false; !in_flight;) {
    probed = false;
    probe = std::thread([&] {
      auto d = as.registry().add_device(probe_memory.ua(), probe_memory.size() >> 16, kGpuHpa);
      if (d) {
        EXPECT_TRUE(as.registry().put(*d));
      }
      probed = true;
    });
    for (int ms = 0; ms < 500 && !probed; ++ms) std::this_thread::sleep_for(1ms);
    in_flight = !probed;
    if (!in_flight) probe.join();
  }
  std::atomic<bool> removed{false};
  std::thread remover([&] {
    EXPECT_TRUE(vm.set_memory_region(0, 0, 0, 0));
    removed = true;
  });
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(removed) << "the slot went while a hypercall was using its translation";
  updates.unlock();
  vcpu.join();
  probe.join();
  remover.join();
  EXPECT_EQ(rc, kHSuccess);
  EXPECT_EQ(host_table().get(0) & ~3ull, *as.pinner().ua_to_hpa(ram.ua() + 16 * MiB));
  EXPECT_EQ(host_table().cached_ua(0), ram.ua() + 16 * MiB);
  EXPECT_EQ(vm.h_put_tce(kLiobn, kWindow1 + 16 * MiB, (16 * MiB) | 3), kHTooHard);  // no slot any more
  ASSERT_EQ(vm.h_stuff_tce(kLiobn, kWindow1, 0, 2), kHSuccess);
}

// A slot added and removed over and over while a vCPU runs the map hypercalls through it: each call sees the slot
// or not, never half of a change; what it mapped is the slot's memory, and nothing is left behind (run under TSan).
TEST_F(KvmTest, SlotChurnDuringHypercallsLeavesNothingBehind) {
  constexpr uint64_t kGpa = 1ull << 40;  // slot 1: the second half of the registered RAM
  attach_16m();
  auto* list = reinterpret_cast<uint64_t*>(ram.ua());  // in slot 0, which stays
  for (int i = 0; i < 4; ++i) list[i] = iommu::to_be((kGpa + i * 16 * MiB) | 3);
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    while (!stop) {
      EXPECT_TRUE(vm.set_memory_region(1, kGpa, 32 * MiB, ram.ua() + 32 * MiB));
      EXPECT_TRUE(vm.set_memory_region(1, 0, 0, 0));
    }
  });
  int mapped = 0;
  for (int i = 0; i < 300; ++i) {
    const long put = vm.h_put_tce(kLiobn, kWindow1, kGpa | 3);
    ASSERT_TRUE(put == kHSuccess || put == kHTooHard) << put;
    if (put == kHSuccess) {
      ++mapped;
      EXPECT_EQ(host_table().cached_ua(255), ram.ua() + 32 * MiB + 255 * 64 * KiB);
    }
    const long indirect = vm.h_put_tce_indirect(kLiobn, kWindow1 + 16 * MiB, 0, 2);
    ASSERT_TRUE(indirect == kHSuccess || indirect == kHTooHard) << indirect;
    ASSERT_EQ(vm.h_stuff_tce(kLiobn, kWindow1, 0, 3), kHSuccess);
  }
  stop = true;
  churn.join();
  EXPECT_EQ(host_table().live_entries(), 0u);
  EXPECT_EQ(iommu().registrations().front()->mapped(), 1u);
  RecordProperty("mapped", mapped);
}

// The guest table keeps the hardware table it was attached to, as the kernel's reference does: after the container
// removes the window, hypercalls still succeed on the guest table, write nothing into the retired one, and leave no
// mapping behind (the registration can go).
TEST_F(KvmTest, WindowRemovedUnderAnAttachedGuestTable) {
  attach_16m();
  ASSERT_EQ(vm.h_put_tce(kLiobn, kWindow1, (16 * MiB) | 3), kHSuccess);
  const std::weak_ptr<iommu::TceTable> held = vm.tce_table(kLiobn)->attached().front().table;
  vfio_iommu_spapr_tce_remove rm{sizeof(rm), 0, kWindow1};
  ASSERT_TRUE(iommu().remove_window(as, rm));
  ASSERT_FALSE(held.expired()) << "the guest table must keep the hardware table alive";
  EXPECT_EQ(held.lock()->live_entries(), 0u);
  EXPECT_EQ(vm.h_put_tce(kLiobn, kWindow1 + 16 * MiB, (32 * MiB) | 3), kHSuccess);
  EXPECT_EQ(held.lock()->live_entries(), 0u) << "a retired table took new entries";
  EXPECT_EQ(vm.h_get_tce(kLiobn, kWindow1 + 16 * MiB).second, (32 * MiB) | 3);  // the guest table itself is kept
  EXPECT_EQ(vm.h_stuff_tce(kLiobn, kWindow1, 0, 4), kHSuccess);
  check();
  vfio_iommu_spapr_register_memory unreg{sizeof(unreg), 0, ram.ua(), ram.size()};
  EXPECT_TRUE(iommu().unregister_memory(as, unreg));
  vm.release_tce_table(kLiobn);
  EXPECT_TRUE(held.expired()) << "the table outlived its last holder";
}

TEST_F(KvmTest, DeviceReleaseRacingPutTceIntoGpuRamHasOneWinner) {
  ClientMemory gpu(64 * MiB, PROT_NONE, 16 * MiB);
  ASSERT_TRUE(vm.set_memory_region(1, 0x400000000000ull, gpu.size(), gpu.ua()));
  attach_16m();
  for (int round = 0; round < 100; ++round) {
    auto dev = as.registry().add_device(gpu.ua(), gpu.size() >> 16, kGpuHpa);
    ASSERT_TRUE(dev);
    long rc = kHSuccess;
    std::thread vcpu([&] { rc = vm.h_put_tce(kLiobn, kWindow1, (0x400000000000ull) | 3); });
    auto put = as.registry().put(*dev);  // the device's release
    vcpu.join();
    if (put) {
      EXPECT_EQ(rc, kHTooHard);  // the release won: the lookup failed
      EXPECT_EQ(host_table().get(0), 0u);
    } else {
      EXPECT_EQ(put.error(), kEBUSY);  // the hcall won: the release sees the mapping
      EXPECT_EQ(rc, kHSuccess);
      ASSERT_EQ(vm.h_stuff_tce(kLiobn, kWindow1, 0, 1), kHSuccess);
      ASSERT_TRUE(as.registry().put(*dev));
    }
    check();
  }
}

// A v1 container pins each page it maps, into a table without a user-address cache. The kernel lets a guest clear
// such an entry through KVM (kvmppc_tce_iommu_do_unmap: no cache slot is success), and the pin is never released;
// here KVM leaves the entry to userspace (H_TOO_HARD), whose UNMAP through the container unpins it. A map over it
// fails before anything changes, and its undo of the entry's subpages leaves the v1 entry alone too.
TEST(KvmV1, GuestClearOfAV1MappingGoesToUserspaceAndKeepsThePinBalanced) {
  mm::AddressSpace as(process_options(1));
  ClientMemory ram(1 * MiB);
  LegacyGroup legacy(3, 12, 128 * MiB);
  PhbGroup phb(7);  // a v2 container beside it registers the RAM, so KVM's validation passes
  auto v1 = std::make_shared<vfio::Container>();
  auto v2 = std::make_shared<vfio::Container>();
  ASSERT_TRUE(legacy.group.open());
  ASSERT_TRUE(legacy.group.set_container(v1));
  ASSERT_TRUE(v1->set_iommu(VFIO_SPAPR_TCE_IOMMU));
  ASSERT_TRUE(v1->iommu()->enable(as));
  ASSERT_TRUE(phb.group.open());
  ASSERT_TRUE(phb.group.set_container(v2));
  ASSERT_TRUE(v2->set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  vfio_iommu_spapr_register_memory reg{sizeof(reg), 0, ram.ua(), ram.size()};
  ASSERT_TRUE(v2->iommu()->register_memory(as, reg));
  const uint64_t pinned_by_registration = as.pinner().pinned_pages();

  // The client's v1 MAP of 64 KiB at bus address 64 KiB: host TCEs 16-31 (4 KiB pages), one 64 KiB host page pinned.
  vfio_iommu_type1_dma_map map{sizeof(map), 3, ram.ua(), 64 * KiB, 64 * KiB};
  ASSERT_TRUE(v1->iommu()->map_dma(as, map));
  const iommu::TceTable& table = *legacy.table_group.legacy_table();
  const uint64_t tce = table.get(16);
  ASSERT_NE(tce, 0u);
  const uint64_t pins = as.pinner().pin_count(ram.ua());

  Vm vm{as, 1};
  ASSERT_TRUE(vm.set_memory_region(0, 0, ram.size(), ram.ua()));
  ASSERT_TRUE(vm.create_tce_table({kLiobn, 12, 0, 0, (128 * MiB) >> 12}));
  ASSERT_TRUE(vm.vfio_group_add(legacy.group));
  ASSERT_TRUE(vm.vfio_set_spapr_tce(legacy.group, kLiobn));
  EXPECT_EQ(vm.h_put_tce(kLiobn, 64 * KiB, 0), kHTooHard);
  EXPECT_EQ(vm.h_stuff_tce(kLiobn, 0, 0, 32), kHTooHard);
  EXPECT_EQ(vm.h_put_tce(kLiobn, 64 * KiB, 3), kHTooHard);  // guest RAM at 0, R|W: registered, but no cache slot
  EXPECT_EQ(table.get(16), tce);
  EXPECT_EQ(as.pinner().pin_count(ram.ua()), pins);
  EXPECT_EQ(vm.h_put_tce(kLiobn, 0, 0), kHSuccess);  // an entry nothing mapped clears as before

  vfio_iommu_type1_dma_unmap unmap{sizeof(unmap), 0, 64 * KiB, 64 * KiB};
  ASSERT_TRUE(v1->iommu()->unmap_dma(as, unmap));
  EXPECT_EQ(as.pinner().pinned_pages(), pinned_by_registration);
  EXPECT_EQ(vm.h_put_tce(kLiobn, 64 * KiB, 0), kHSuccess);
  const uint64_t stt_pages = vm.tce_table(kLiobn)->charged_pages();
  vfio::InvariantReport r = vfio::check_invariants(as, {v1->iommu(), v2->iommu()}, stt_pages);
  EXPECT_TRUE(r.ok()) << r.to_string();

  ASSERT_TRUE(vm.vfio_group_del(legacy.group));
  vm.release_tce_table(kLiobn);
  ASSERT_TRUE(v2->iommu()->unregister_memory(as, reg));
  ASSERT_TRUE(v1->iommu()->disable(as));
  ASSERT_TRUE(legacy.group.unset_container());
  ASSERT_TRUE(phb.group.unset_container());
  EXPECT_EQ(as.pinner().pinned_pages(), 0u);
  EXPECT_EQ(as.locked_memory().locked_pages(), 0u);
}

}  // namespace
}  // namespace nv2pt::kvm

namespace nv2pt::kvm {
namespace {

// docs/kernel/kvm.md#kvm-set-notifier: the GPU is mapped to the guest's LPID in the NPU only when KVM was added to the
// group before the device was opened; closing the device maps it back to the host.
TEST(KvmNpuContext, MapLparOnlyForAKvmAddedBeforeOpen) {
  mm::AddressSpace as(process_options(1));
  auto host = vfio::Host::create(platform::Machine::load_default()).value();
  const platform::PciAddress gpu = platform::PciAddress::parse("0004:04:00.0").value();
  vfio::Group* group = host->open_group(4).value();
  auto container = host->open_container();
  ASSERT_TRUE(group->set_container(container));
  ASSERT_TRUE(container->set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  Vm vm(as, 42);
  // Taking the group unmapped the GPU's context from the host (pnv_npu_take_ownership: DESTROY_CONTEXT, MAP_LPAR 0).
  const size_t taken = host->hardware().opal_npu_calls().size();
  ASSERT_EQ(taken, 2u);

  // Opened before KVM_DEV_VFIO_GROUP_ADD: nothing is mapped, and the later add does not reach the device.
  vfio::PciDevice* dev = group->get_device(as, "0004:04:00.0").value();
  ASSERT_TRUE(vm.vfio_group_add(*group));
  EXPECT_EQ(host->hardware().npu_lpid(gpu), 0u);
  EXPECT_EQ(host->hardware().opal_npu_calls().size(), taken);
  group->device_released(*dev);  // closing still unmaps (DESTROY_CONTEXT, MAP_LPAR 0)
  auto calls = host->hardware().opal_npu_calls();
  ASSERT_EQ(calls.size(), taken + 2);
  EXPECT_EQ(calls[taken].kind, platform::Hardware::OpalNpuCall::kDestroyContext);
  EXPECT_EQ(calls[taken + 1].kind, platform::Hardware::OpalNpuCall::kMapLpar);
  EXPECT_EQ(calls[taken + 1].lpid, 0u);

  // Opened after the add: MAP_LPAR(42), INIT_CONTEXT(DR|PR).
  dev = group->get_device(as, "0004:04:00.0").value();
  EXPECT_EQ(host->hardware().npu_lpid(gpu), 42u);
  calls = host->hardware().opal_npu_calls();
  ASSERT_EQ(calls.size(), taken + 4);
  EXPECT_EQ(calls[taken + 2].kind, platform::Hardware::OpalNpuCall::kMapLpar);
  EXPECT_EQ(calls[taken + 2].lpid, 42u);
  EXPECT_EQ(calls[taken + 3].kind, platform::Hardware::OpalNpuCall::kInitContext);
  EXPECT_EQ(calls[taken + 3].msr, platform::kMsrDr | platform::kMsrPr);
  group->device_released(*dev);
  EXPECT_EQ(host->hardware().npu_lpid(gpu), 0u);
  ASSERT_TRUE(vm.vfio_group_del(*group));
  host->release_group(*group);
}

}  // namespace
}  // namespace nv2pt::kvm
