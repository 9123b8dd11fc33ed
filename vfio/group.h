// A VFIO group (/dev/vfio/<n>): the unit of ownership. Here the part the IOMMU driver sees: the group's IOMMU
// table group (the PEs it translates for) and the EEH state of its PE.
#pragma once

#include "iommu/table_group.h"
#include "vfio/eeh_pe.h"

namespace nv2pt::vfio {

class Group {
 public:
  // `table_group` may be null: a group without IOMMU table-group data (the container refuses it with ENODEV).
  Group(int id, iommu::TableGroup* table_group) : id_(id), table_group_(table_group) {}

  int id() const { return id_; }
  iommu::TableGroup* table_group() const { return table_group_; }
  EehPe& eeh() { return eeh_; }

 private:
  int id_;
  iommu::TableGroup* table_group_;
  EehPe eeh_;
};

}  // namespace nv2pt::vfio
