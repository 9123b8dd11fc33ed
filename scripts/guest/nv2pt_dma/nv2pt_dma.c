// SPDX-License-Identifier: GPL-2.0
/*
 * nv2pt_dma: the guest-side trigger of the 64-bit DMA window. It binds the V100 (10de:1db1, 10de:1db5) and asks for
 * a 64-bit DMA mask as the NVIDIA driver does, so that the guest kernel's own pseries IOMMU code (enable_ddw)
 * creates the dynamic DMA window through RTAS and maps all guest RAM into it. It then maps one page of its own RAM
 * and, if the GPU-RAM page gpu_ram=A0,A1,... names for it (the Nth GPU bound takes AN) is online, that page too,
 * and prints both DMA addresses:
 *   nv2pt_dma: ram dma 0x... phys 0x...
 *   nv2pt_dma: gpu-ram dma 0x... phys 0x...
 * /sys/module/nv2pt_dma/parameters/peek reads the first 8 bytes of each page (what a device's DMA wrote there).
 * For the benchmark: the time of dma_set_mask_and_coherent (the guest's whole 64-bit window set-up: RTAS calls and
 * the mapping of all its RAM) is printed as "ddw-setup-ns"; writing "GPA LEN" to .../parameters/touch writes LEN
 * bytes of onlined memory at GPA through the kernel's linear map (GPA 0: a fresh vmalloc buffer of guest RAM) and
 * prints "touch GPA LEN NS".
 */
#include <linux/dma-mapping.h>
#include <linux/ktime.h>
#include <linux/vmalloc.h>
#include <linux/gfp.h>
#include <linux/memory_hotplug.h>
#include <linux/module.h>
#include <linux/pci.h>

static unsigned long gpu_ram[16];
static int gpu_ram_count;
module_param_array(gpu_ram, ulong, &gpu_ram_count, 0444);
MODULE_PARM_DESC(gpu_ram, "guest-physical address of a GPU-RAM page to map, one per GPU in binding order");
static int probed; /* GPUs bound so far: which gpu_ram entry the next one maps */

struct nv2pt_dma {
	struct page *ram;
	dma_addr_t ram_dma;
	struct page *gpu;
	dma_addr_t gpu_dma;
};
static struct nv2pt_dma *bound; /* the first GPU bound: what peek reads */

static int map_one(struct pci_dev *pdev, const char *what, struct page *page, dma_addr_t *dma)
{
	*dma = dma_map_page(&pdev->dev, page, 0, PAGE_SIZE, DMA_BIDIRECTIONAL);
	if (dma_mapping_error(&pdev->dev, *dma)) {
		dev_err(&pdev->dev, "nv2pt_dma: %s: dma_map_page failed\n", what);
		return -EIO;
	}
	pr_info("nv2pt_dma: %s %s dma 0x%llx phys 0x%llx\n", pci_name(pdev), what, (unsigned long long)*dma,
		(unsigned long long)page_to_phys(page));
	return 0;
}

static int nv2pt_dma_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct nv2pt_dma *d;
	u64 t0;
	int ret;

	d = devm_kzalloc(&pdev->dev, sizeof(*d), GFP_KERNEL);
	if (!d)
		return -ENOMEM;
	/* What the NVIDIA driver does: 64-bit DMA, which makes the pseries IOMMU code create the 64-bit window. */
	t0 = ktime_get_ns();
	ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	pr_info("nv2pt_dma: %s ddw-setup-ns %llu\n", pci_name(pdev), ktime_get_ns() - t0);
	/* bypass 1: the window maps all memory (direct), DMA addresses are the window base + the physical address */
	pr_info("nv2pt_dma: %s dma_set_mask_and_coherent(64) = %d bypass %d\n", pci_name(pdev), ret,
		pdev->dev.dma_ops_bypass);
	if (ret)
		return ret;
	d->ram = alloc_page(GFP_KERNEL | __GFP_ZERO);
	if (!d->ram)
		return -ENOMEM;
	memset(page_address(d->ram), 0x5a, 8);
	ret = map_one(pdev, "ram", d->ram, &d->ram_dma);
	if (ret)
		goto free_ram;
	if (probed < gpu_ram_count) {
		unsigned long addr = gpu_ram[probed];
		struct page *p = pfn_to_online_page(PHYS_PFN(addr));

		if (!p) {
			pr_info("nv2pt_dma: %s gpu-ram 0x%lx not online\n", pci_name(pdev), addr);
		} else if (!map_one(pdev, "gpu-ram", p, &d->gpu_dma)) {
			d->gpu = p;
		}
	}
	probed++;
	pci_set_drvdata(pdev, d);
	if (!bound)
		bound = d;
	return 0;
free_ram:
	__free_page(d->ram);
	return ret;
}

static void nv2pt_dma_remove(struct pci_dev *pdev)
{
	struct nv2pt_dma *d = pci_get_drvdata(pdev);

	if (bound == d)
		bound = NULL;
	if (d->gpu)
		dma_unmap_page(&pdev->dev, d->gpu_dma, PAGE_SIZE, DMA_BIDIRECTIONAL);
	dma_unmap_page(&pdev->dev, d->ram_dma, PAGE_SIZE, DMA_BIDIRECTIONAL);
	__free_page(d->ram);
}

static int peek_get(char *buf, const struct kernel_param *kp)
{
	struct nv2pt_dma *d = bound;
	int n = 0;

	if (!d)
		return sysfs_emit(buf, "none\n");
	n += sysfs_emit_at(buf, n, "ram 0x%016llx", *(u64 *)page_address(d->ram));
	if (d->gpu)
		n += sysfs_emit_at(buf, n, " gpu-ram 0x%016llx", *(u64 *)page_address(d->gpu));
	n += sysfs_emit_at(buf, n, "\n");
	return n;
}
static const struct kernel_param_ops peek_ops = { .get = peek_get };
module_param_cb(peek, &peek_ops, NULL, 0444);

static int touch_set(const char *val, const struct kernel_param *kp)
{
	unsigned long gpa, len;
	void *p;
	u64 t0, ns;

	if (sscanf(val, "%lx %lu", &gpa, &len) != 2 || !len)
		return -EINVAL;
	if (gpa) {
		/* onlined memory: every page of the range must be online (it is in the linear map) */
		unsigned long pfn;

		for (pfn = PHYS_PFN(gpa); pfn < PHYS_PFN(gpa + len); pfn += PAGES_PER_SECTION)
			if (!pfn_to_online_page(pfn))
				return -EINVAL;
		p = phys_to_virt(gpa);
	} else {
		p = vmalloc(len);
		if (!p)
			return -ENOMEM;
	}
	t0 = ktime_get_ns();
	memset(p, 0xa5, len);
	ns = ktime_get_ns() - t0;
	pr_info("nv2pt_dma: touch 0x%lx %lu %llu\n", gpa, len, ns);
	if (!gpa)
		vfree(p);
	return 0;
}
static const struct kernel_param_ops touch_ops = { .set = touch_set };
module_param_cb(touch, &touch_ops, NULL, 0200);

static const struct pci_device_id nv2pt_dma_ids[] = {
	{ PCI_DEVICE(0x10de, 0x1db1) },
	{ PCI_DEVICE(0x10de, 0x1db5) },
	{ }
};
MODULE_DEVICE_TABLE(pci, nv2pt_dma_ids);

static struct pci_driver nv2pt_dma_driver = {
	.name = "nv2pt_dma",
	.id_table = nv2pt_dma_ids,
	.probe = nv2pt_dma_probe,
	.remove = nv2pt_dma_remove,
};
module_pci_driver(nv2pt_dma_driver);

MODULE_DESCRIPTION("Sets a 64-bit DMA mask on a V100 and maps a RAM and a GPU-RAM page (nv2pt's guest test)");
MODULE_LICENSE("GPL");
