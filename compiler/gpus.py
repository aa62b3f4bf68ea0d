"""Portable GPU model names and the node-label values that select them.

The one table of GPU models (LANGUAGE.md, v1, "Scheduling on real clusters"):
``gpu_model = "H100-80GB"`` names a model, and each label convention turns it
into node-label requirements a pod's node affinity can use.

Conventions (``aipc compile --gpu-labels``):

- ``gfd``: the labels the vendors' own feature discovery puts on nodes.
  NVIDIA GPU feature discovery writes ``nvidia.com/gpu.product``: the NVML
  device name with every space replaced by ``-`` (NVIDIA/k8s-device-plugin,
  internal/lm/resource.go, ``productLabel``, commit 02f65cca). A model has
  several product names (SXM, PCIe, NVL boards; drivers before R470 wrote no
  ``NVIDIA`` prefix), so a portable name selects all of them. AMD's node
  labeller writes ``amd.com/gpu.product-name`` with ``_`` for spaces
  (ROCm/k8s-device-plugin, docs/user-guide/installation.md, commit 190849cf:
  ``amd.com/gpu.product-name=AMD_Instinct_MI300X_OAM`` for an MI300X).
- ``gke``: GKE's ``cloud.google.com/gke-accelerator``, whose values are the
  Compute Engine accelerator types (kubernetes/autoscaler,
  cluster-autoscaler/utils/gpu: "GPULabel is the label added to nodes with GPU
  resource on GKE"; the types: https://cloud.google.com/compute/docs/gpus).
- ``karpenter``: the AWS provider's ``karpenter.k8s.aws/instance-gpu-name``,
  the EC2 GPU name in lower case with ``-`` for spaces
  (aws/karpenter-provider-aws, website/content/en/docs/reference/instance-types.md,
  commit 0c5e7d81). EC2 names A100 40 GB (p4d) and 80 GB (p4de) both ``a100``,
  so those two also require ``karpenter.k8s.aws/instance-gpu-memory``, the
  memory of one GPU in MiB (40960 and 81920 in the same file).

Not every cloud has every model: GKE has no L40S, A10G or MI300X, EC2 no MI300X;
there the model has no values and the caller reports it (an empty tuple, never a
guess). Label values that mean something else are left out on purpose: GFD's
``-SHARED`` (time-slicing) and ``-MIG-<profile>`` suffixes name a shared or
partitioned GPU, not a whole one; ``NVIDIA H100 NVL`` has 94 GB, not 80;
``Tesla V100S`` and ``T4G`` are other boards; GKE's ``nvidia-gb200`` is a
Grace Blackwell superchip, not a B200 board. GKE's ``nvidia-h100-mega-80gb`` (A3
Mega) is an H100 80 GB, so H100-80GB selects it.

Lookup rule: a portable name matches case-insensitively and exactly (``h100-80gb``
is ``H100-80GB``); there are no aliases and no other normalisation, so every
other string stays what it was in v0, a label value written as is. No label value
of the table is another model's portable name (the tests check it), so a v0
program that wrote a real label value keeps its meaning.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from aipc.compiler.ir import GpuLabels, GpuNodes, GpuVendor, NodeRequirement

# The conventions and node requirements are IR types: backends read them there.
LabelConvention = GpuLabels

GFD_PRODUCT_LABEL = {
    GpuVendor.NVIDIA: "nvidia.com/gpu.product",
    GpuVendor.AMD: "amd.com/gpu.product-name",
    # Node Feature Discovery's rules of Intel's GPU plugin, `_` for spaces (as SkyPilot's
    # Kubernetes docs show them: gpu.intel.com/product=Arc_B580); no portable Intel model.
    GpuVendor.INTEL: "gpu.intel.com/product",
}
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
KARPENTER_GPU_NAME_LABEL = "karpenter.k8s.aws/instance-gpu-name"
KARPENTER_GPU_MEMORY_LABEL = "karpenter.k8s.aws/instance-gpu-memory"


@dataclass(frozen=True)
class GpuModel:
    name: str
    vendor: GpuVendor
    products: tuple[str, ...]  # GFD (or AMD labeller) product values
    gke: tuple[str, ...]  # cloud.google.com/gke-accelerator values; () where GKE has none
    karpenter: str | None  # karpenter.k8s.aws/instance-gpu-name; None where EC2 has none
    karpenter_memory_mib: str | None = None  # only where the GPU name is ambiguous


# Sources of the product values (NVML device names, spaces as "-"):
# - NVIDIA/open-gpu-kernel-modules README.md, "Compatible GPUs", release 550.40.82
#   (commit 015742d3): "NVIDIA A100-SXM4-40GB" 20B0, "NVIDIA A100-PCIE-40GB" 20F1,
#   "NVIDIA A100-SXM4-80GB" 20B2, "NVIDIA A100 80GB PCIe" 20B5, "NVIDIA H100 80GB HBM3"
#   2330, "NVIDIA H100 PCIe" 2331, "NVIDIA H200" 2335, "NVIDIA L40S" 26B9, "NVIDIA L4"
#   27B8, "NVIDIA A10G" 2237. The table of the 610.43.03 release adds "NVIDIA H200 NVL"
#   233B and "NVIDIA B200" 2901.
# - Names from drivers before R470, without the "NVIDIA " prefix: GFD's own README shows
#   `nvidia.com/gpu.product: A100-SXM4-40GB` (NVIDIA/k8s-device-plugin,
#   docs/gpu-feature-discovery/README.md, commit 0719b2a4).
# - T4 and V100, absent from that table (V100 is older than Turing): NVML says "Tesla T4",
#   "Tesla V100-SXM2-16GB" and so on, and GFD labels nodes Tesla-T4, Tesla-V100-SXM2-16GB,
#   Tesla-V100-SXM2-32GB, Tesla-V100-PCIE-16GB, Tesla-V100-PCIE-32GB (seen in published
#   cluster configurations; the v0 backend already writes "Tesla T4" as Tesla-T4).
# GKE values: https://cloud.google.com/compute/docs/gpus ("A2 Standard: NVIDIA A100 40GB:
#   nvidia-tesla-a100", "A3 Mega: nvidia-h100-mega-80gb", "A3 Ultra: nvidia-h200-141gb",
#   "A4: nvidia-b200", "G2: nvidia-l4", "N1: nvidia-tesla-t4, nvidia-tesla-v100").
# Karpenter values (instance-types.md above): p4d a100/40960, p4de a100/81920, p5 h100,
#   p5e and p5en h200, p6-b200 b200, g6 and gr6 l4, g4dn t4, g5 a10g, p3 and p3dn v100;
#   g6e l40s (docs.aws.amazon.com/eks/latest/best-practices/aiml-compute.html:
#   `karpenter.k8s.aws/instance-gpu-name: "l40s"`).
MODELS: tuple[GpuModel, ...] = (
    GpuModel("A100-40GB", GpuVendor.NVIDIA,
             ("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB", "A100-SXM4-40GB", "A100-PCIE-40GB"),
             gke=("nvidia-tesla-a100",), karpenter="a100", karpenter_memory_mib="40960"),
    GpuModel("A100-80GB", GpuVendor.NVIDIA,
             ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe", "A100-SXM4-80GB"),
             gke=("nvidia-a100-80gb",), karpenter="a100", karpenter_memory_mib="81920"),
    GpuModel("H100-80GB", GpuVendor.NVIDIA, ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"),
             gke=("nvidia-h100-80gb", "nvidia-h100-mega-80gb"), karpenter="h100"),
    GpuModel("H200", GpuVendor.NVIDIA, ("NVIDIA-H200", "NVIDIA-H200-NVL"),
             gke=("nvidia-h200-141gb",), karpenter="h200"),
    GpuModel("B200", GpuVendor.NVIDIA, ("NVIDIA-B200",), gke=("nvidia-b200",), karpenter="b200"),
    GpuModel("L4", GpuVendor.NVIDIA, ("NVIDIA-L4",), gke=("nvidia-l4",), karpenter="l4"),
    GpuModel("L40S", GpuVendor.NVIDIA, ("NVIDIA-L40S",), gke=(), karpenter="l40s"),
    GpuModel("T4", GpuVendor.NVIDIA, ("Tesla-T4",), gke=("nvidia-tesla-t4",), karpenter="t4"),
    GpuModel("A10G", GpuVendor.NVIDIA, ("NVIDIA-A10G",), gke=(), karpenter="a10g"),
    GpuModel("V100", GpuVendor.NVIDIA,
             ("Tesla-V100-SXM2-16GB", "Tesla-V100-SXM2-32GB", "Tesla-V100-PCIE-16GB", "Tesla-V100-PCIE-32GB"),
             gke=("nvidia-tesla-v100",), karpenter="v100"),
    # AMD's labeller reports the OAM module on bare metal and the SR-IOV virtual function
    # ("AMD_Instinct_MI300X_VF") in VMs. No MI300X on GKE or EC2.
    GpuModel("MI300X", GpuVendor.AMD, ("AMD_Instinct_MI300X_OAM", "AMD_Instinct_MI300X_VF"),
             gke=(), karpenter=None),
)

PORTABLE_NAMES: tuple[str, ...] = tuple(model.name for model in MODELS)
_BY_FOLDED_NAME = {model.name.casefold(): model for model in MODELS}


def lookup(name: str) -> GpuModel | None:
    """The model a portable name stands for (any letter case), or None for any other
    text, which callers treat as a label value written as is."""
    return _BY_FOLDED_NAME.get(name.casefold())


def node_requirements(model: GpuModel, convention: LabelConvention) -> tuple[NodeRequirement, ...]:
    """The node labels that select ``model`` under ``convention``, all of which must
    hold; empty when nodes of that convention never carry the model."""
    if convention is LabelConvention.GFD:
        return (NodeRequirement(GFD_PRODUCT_LABEL[model.vendor], model.products),)
    if convention is LabelConvention.GKE:
        return (NodeRequirement(GKE_ACCELERATOR_LABEL, model.gke),) if model.gke else ()
    if model.karpenter is None:
        return ()
    requirements = [NodeRequirement(KARPENTER_GPU_NAME_LABEL, (model.karpenter,))]
    if model.karpenter_memory_mib is not None:
        requirements.append(NodeRequirement(KARPENTER_GPU_MEMORY_LABEL, (model.karpenter_memory_mib,)))
    return tuple(requirements)


def node_affinity_values(model: GpuModel, convention: LabelConvention) -> tuple[str, ...]:
    """The values of the convention's GPU label that select ``model`` (its first
    requirement); empty when the convention has no such GPU."""
    requirements = node_requirements(model, convention)
    return requirements[0].values if requirements else ()


def describe(text: str) -> str | None:
    """Markdown saying which nodes the portable model ``text`` selects under each
    convention (the language server's hover on a `gpu_model` value); None for any
    other text."""
    model = lookup(text)
    if model is None:
        return None
    vendor = {GpuVendor.NVIDIA: "NVIDIA", GpuVendor.AMD: "AMD", GpuVendor.INTEL: "Intel"}[model.vendor]
    lines = [f"`{model.name}`: a portable {vendor} GPU model; the nodes it selects under each label "
             "convention (`--gpu-labels`, the header's `gpu_labels`):", ""]
    for convention in LabelConvention:
        requirements = node_requirements(model, convention)
        selects = "; ".join(f"`{r.key}` in " + ", ".join(f"`{value}`" for value in r.values) for r in requirements)
        lines.append(f"- {convention.value}: " + (selects or "no such nodes (an error on Kubernetes and Argo)"))
    return "\n".join(lines)


# ------------------------------------------------------------------ what `gpu_model` selects

# A name shaped like the portable ones: a model code (letters, then digits, perhaps a
# letter or two: H100, L40S, MI300X, RTX4090) and at most one more part (-80GB). Feature
# discovery's product values start with a vendor or family word (NVIDIA-, Tesla-,
# AMD_), so such text is a misspelt or unknown portable name, not a label value.
_PORTABLE_SHAPE = re.compile(r"[A-Za-z]{1,3}[0-9]{1,4}[A-Za-z]{0,2}(?:[-_ ][A-Za-z0-9]{1,8})?")
# Product values shaped so (`A100-SXM4-40GB` from drivers before R470) stay label values.
# Karpenter's bare codes (`h100`) do not: a portable name selects the same nodes.
_PRODUCT_VALUES = frozenset(product.casefold() for model in MODELS for product in model.products)


def looks_portable(text: str) -> bool:
    """Whether ``text``, which is no portable name, reads as a misspelt or unknown one
    (``H100``, ``A100-40G``) rather than a node label value (``Tesla-T4``): that is an
    error, where a label value no node carries would leave the pod pending."""
    text = text.strip()
    return _PORTABLE_SHAPE.fullmatch(text) is not None and text.casefold() not in _PRODUCT_VALUES


def closest_names(text: str) -> list[str]:
    """The portable names ``text`` may have meant: those of its model code (``A100``:
    both A100s), else the nearest in spelling."""
    code = re.split(r"[-_ ]", text.strip().casefold(), maxsplit=1)[0]
    same_code = [name for name in PORTABLE_NAMES if name.casefold().split("-", 1)[0] == code]
    if same_code:
        return same_code
    folded = {name.casefold(): name for name in PORTABLE_NAMES}
    return [folded[match] for match in
            difflib.get_close_matches(text.strip().casefold(), list(folded), n=2, cutoff=0.6)]


def raw_label_key(vendor: GpuVendor, convention: LabelConvention) -> str:
    """The node label a GPU label value written as is belongs to."""
    if convention is LabelConvention.GFD:
        return GFD_PRODUCT_LABEL[vendor]
    return GKE_ACCELERATOR_LABEL if convention is LabelConvention.GKE else KARPENTER_GPU_NAME_LABEL


def raw_label_value(text: str, vendor: GpuVendor, convention: LabelConvention) -> str:
    """A GPU label value written as is, spaces as nodes carry them: NVIDIA's feature
    discovery writes ``-`` for a space, AMD's and Intel's labellers ``_`` (see above)."""
    joiner = "_" if convention is LabelConvention.GFD and vendor is not GpuVendor.NVIDIA else "-"
    return joiner.join(text.split())


def gpu_nodes(text: str, vendor: GpuVendor) -> GpuNodes:
    """What ``gpu_model = text`` selects under each convention: a portable model's
    requirements, or ``text`` as the value of the convention's GPU label."""
    model = lookup(text)
    if model is not None:
        return GpuNodes(True, tuple((convention, node_requirements(model, convention))
                                    for convention in LabelConvention))
    return GpuNodes(False, tuple(
        (convention, (NodeRequirement(raw_label_key(vendor, convention),
                                      (raw_label_value(text, vendor, convention),)),))
        for convention in LabelConvention))
