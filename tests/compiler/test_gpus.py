"""The GPU model table: its invariants, the lookup rule, and what each label
convention selects (compiler/gpus.py cites the source of every value)."""

from __future__ import annotations

import subprocess
import sys

import kubernetes_validate
import pytest

from aipc.compiler import gpus
from aipc.compiler.gpus import LabelConvention
from aipc.compiler.ir import GpuVendor
from aipc.compiler.lower import LABEL_VALUE

# LANGUAGE.md, v1, "Scheduling on real clusters": "at least" these names.
LANGUAGE_NAMES = ("A100-40GB", "A100-80GB", "H100-80GB", "H200", "B200", "L4", "L40S", "T4", "A10G",
                  "V100", "MI300X")


def all_values(model: gpus.GpuModel) -> list[str]:
    return [value for convention in LabelConvention
            for requirement in gpus.node_requirements(model, convention) for value in requirement.values]


def test_every_name_of_the_language_is_portable_in_its_order():
    assert gpus.PORTABLE_NAMES[:len(LANGUAGE_NAMES)] == LANGUAGE_NAMES
    assert len(set(gpus.PORTABLE_NAMES)) == len(gpus.PORTABLE_NAMES)


@pytest.mark.parametrize("model", gpus.MODELS, ids=lambda model: model.name)
def test_every_model_has_a_vendor_and_product_values(model):
    assert isinstance(model.vendor, GpuVendor)
    assert model.products, "GPU feature discovery (or the vendor's labeller) always labels the node"
    assert len(set(model.products)) == len(model.products)


@pytest.mark.parametrize("model", gpus.MODELS, ids=lambda model: model.name)
def test_every_value_is_a_valid_label_value(model):
    for value in all_values(model):
        assert value and len(value) <= 63 and LABEL_VALUE.fullmatch(value), value


@pytest.mark.parametrize("convention", list(LabelConvention), ids=lambda convention: convention.value)
def test_no_two_models_are_selected_alike(convention):
    selections = [gpus.node_requirements(model, convention) for model in gpus.MODELS]
    selections = [requirements for requirements in selections if requirements]
    assert len(set(selections)) == len(selections)


@pytest.mark.parametrize("convention", [LabelConvention.GFD, LabelConvention.GKE], ids=lambda c: c.value)
def test_a_product_value_belongs_to_one_model(convention):
    values = [value for model in gpus.MODELS for value in gpus.node_affinity_values(model, convention)]
    assert len(set(values)) == len(values)


@pytest.mark.parametrize("text, name", [
    ("H100-80GB", "H100-80GB"), ("h100-80gb", "H100-80GB"), ("mi300x", "MI300X"), ("L40s", "L40S"),
])
def test_lookup_ignores_letter_case(text, name):
    model = gpus.lookup(text)
    assert model is not None and model.name == name


@pytest.mark.parametrize("text", ["H100", "A100 80GB", "A100_80GB", " L4", "NVIDIA-A100-SXM4-80GB", "Tesla T4", ""])
def test_other_text_is_not_a_portable_name(text):
    assert gpus.lookup(text) is None


def test_no_label_value_reads_as_another_models_name():
    """A v0 program that writes a label value keeps its meaning: the value is either
    no portable name at all or the name of the very model it belongs to."""
    for model in gpus.MODELS:
        for value in all_values(model):
            assert gpus.lookup(value) in (None, model), value


def test_gfd_selects_every_product_string_of_the_model():
    a100 = gpus.lookup("A100-80GB")
    assert gpus.node_requirements(a100, LabelConvention.GFD) == (gpus.NodeRequirement(
        "nvidia.com/gpu.product", ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe", "A100-SXM4-80GB")),)
    assert gpus.node_affinity_values(gpus.lookup("H100-80GB"), LabelConvention.GFD) == (
        "NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe")
    assert gpus.node_affinity_values(gpus.lookup("T4"), LabelConvention.GFD) == ("Tesla-T4",)


def test_amd_models_use_amds_labeller():
    mi300x = gpus.lookup("MI300X")
    assert mi300x.vendor is GpuVendor.AMD
    (requirement,) = gpus.node_requirements(mi300x, LabelConvention.GFD)
    assert requirement.key == "amd.com/gpu.product-name"
    assert "AMD_Instinct_MI300X_OAM" in requirement.values


def test_gke_accelerator_values():
    assert gpus.node_affinity_values(gpus.lookup("A100-40GB"), LabelConvention.GKE) == ("nvidia-tesla-a100",)
    assert gpus.node_affinity_values(gpus.lookup("H100-80GB"), LabelConvention.GKE) == (
        "nvidia-h100-80gb", "nvidia-h100-mega-80gb")
    (requirement,) = gpus.node_requirements(gpus.lookup("L4"), LabelConvention.GKE)
    assert requirement == gpus.NodeRequirement("cloud.google.com/gke-accelerator", ("nvidia-l4",))


@pytest.mark.parametrize("name, convention", [
    ("L40S", LabelConvention.GKE), ("A10G", LabelConvention.GKE), ("MI300X", LabelConvention.GKE),
    ("MI300X", LabelConvention.KARPENTER),
])
def test_a_cloud_without_the_gpu_selects_nothing(name, convention):
    model = gpus.lookup(name)
    assert gpus.node_requirements(model, convention) == ()
    assert gpus.node_affinity_values(model, convention) == ()


def test_karpenter_tells_the_two_a100s_apart_by_memory():
    forty = gpus.node_requirements(gpus.lookup("A100-40GB"), LabelConvention.KARPENTER)
    eighty = gpus.node_requirements(gpus.lookup("A100-80GB"), LabelConvention.KARPENTER)
    assert [r.key for r in forty] == [gpus.KARPENTER_GPU_NAME_LABEL, gpus.KARPENTER_GPU_MEMORY_LABEL]
    assert forty[0] == eighty[0] == gpus.NodeRequirement(gpus.KARPENTER_GPU_NAME_LABEL, ("a100",))
    assert (forty[1].values, eighty[1].values) == (("40960",), ("81920",))
    assert gpus.node_requirements(gpus.lookup("L4"), LabelConvention.KARPENTER) == (
        gpus.NodeRequirement(gpus.KARPENTER_GPU_NAME_LABEL, ("l4",)),)


@pytest.mark.parametrize("model", gpus.MODELS, ids=lambda model: model.name)
@pytest.mark.parametrize("convention", list(LabelConvention), ids=lambda convention: convention.value)
def test_requirements_make_a_valid_node_affinity(model, convention):
    requirements = gpus.node_requirements(model, convention)
    if not requirements:
        return
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "x:1"}],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [r.match_expression() for r in requirements]}]}}}}}
    kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)


def test_the_table_loads_no_parser_or_writer():
    code = ("import sys, aipc.compiler.gpus; "
            "print(sorted(m for m in ('lark', 'yaml', 'docker', 'kubernetes', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
