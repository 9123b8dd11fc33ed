#include "iommu/host_table_groups.h"

#include <gtest/gtest.h>

namespace nv2pt::iommu {
namespace {

// A compound NVLink group offers only the IOMMU page sizes its GPU's PHB4 and its bridges' NPU2 both support: of
// PHB4's 4K|64K|2M|1G and NPU2's 4K|64K|16M|256M, 4K and 64K.
TEST(HostTableGroups, CompoundGroupOffersOnlyThePageSizesBothPhbsShare) {
  const platform::Machine machine = platform::Machine::load_default();
  auto hardware = platform::Hardware::create(machine, {.hmi_policy = platform::HmiPolicy::kLog});
  ASSERT_TRUE(hardware);
  const HostTableGroups built = build_host_table_groups(machine, **hardware);
  ASSERT_TRUE(built.groups.contains(4));
  const TableGroup& group = *built.groups.at(4);
  ASSERT_EQ(group.ops(), TableGroup::Ops::kNpuCompound);
  PageSizeMask phb4 = 0, npu2 = 0;
  for (const platform::PciFunction* f : machine.functions_in_group(4)) {
    const PageSizeMask sizes = page_size_mask(machine.phb_of(*f).tce_page_shifts);
    (f->kind == platform::PciFunctionKind::kNvlinkBridge ? npu2 : phb4) = sizes;
  }
  ASSERT_EQ(phb4, page_size_mask({12, 16, 21, 30}));
  ASSERT_EQ(npu2, page_size_mask({12, 16, 24, 28}));
  EXPECT_EQ(group.properties().pgsizes, page_size_mask({12, 16}));
  // One PHB4 PE for the GPU, one NPU2 PE for both of its bridges.
  ASSERT_EQ(group.members().size(), 2u);
  EXPECT_NE(group.members()[0]->kind(), group.members()[1]->kind());
}

// pnv_npu_take_ownership unmaps the GPU's context from the host (DESTROY_CONTEXT, MAP_LPAR 0) and
// pnv_npu_release_ownership maps it back (MAP_LPAR 0, INIT_CONTEXT with MSR DR|PR|HV): both are firmware calls the
// log must show. The GPU's own PHB4 PE makes none.
TEST(HostTableGroups, NpuOwnershipChangesAreLoggedFirmwareCalls) {
  using Call = platform::Hardware::OpalNpuCall;
  const platform::Machine machine = platform::Machine::load_default();
  auto hardware = platform::Hardware::create(machine, {.hmi_policy = platform::HmiPolicy::kLog});
  ASSERT_TRUE(hardware);
  const HostTableGroups built = build_host_table_groups(machine, **hardware);
  TableGroup& group = *built.groups.at(4);
  const platform::PciAddress gpu = platform::PciAddress::parse("0004:04:00.0").value();
  ASSERT_TRUE((*hardware)->opal_npu_calls().empty());

  group.take_ownership();
  std::vector<Call> calls = (*hardware)->opal_npu_calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].kind, Call::kDestroyContext);
  EXPECT_EQ(calls[1].kind, Call::kMapLpar);
  EXPECT_EQ(calls[1].lpid, 0u);

  group.release_ownership();
  calls = (*hardware)->opal_npu_calls();
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls[2].kind, Call::kMapLpar);
  EXPECT_EQ(calls[2].lpid, 0u);
  EXPECT_EQ(calls[3].kind, Call::kInitContext);
  EXPECT_EQ(calls[3].msr, platform::kMsrDr | platform::kMsrPr | platform::kMsrHv);
  for (const Call& call : calls) EXPECT_EQ(call.gpu, gpu);
  EXPECT_EQ((*hardware)->npu_lpid(gpu), 0u);
}

}  // namespace
}  // namespace nv2pt::iommu
