"""The workload registry and the shipped digits workload (model, test split, pre/postprocessing)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lab.errors import ConfigError, InputError, ModelLoadError
from lab.zoo import WORKLOADS, Workload, load_workload
from lab.zoo import digits as zd

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workload() -> Workload:
    return load_workload("digits")


@pytest.fixture(scope="module")
def session(workload: Workload):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(workload.model_path), providers=["CPUExecutionProvider"])


def test_digits_is_registered_and_loads(workload: Workload) -> None:
    assert "digits" in WORKLOADS
    assert isinstance(workload, Workload)
    assert workload.name == "digits"
    assert workload.model_path == zd.DATA_DIR / "digits_cnn.onnx"
    assert workload.model_path.is_file()
    assert zd.DATA_DIR == REPO / "data"
    assert workload.preprocess is zd.preprocess and workload.postprocess is zd.postprocess
    assert "digits" in workload.description
    assert load_workload("digits") is workload  # cached: the npz is read once


def test_samples_and_labels(workload: Workload) -> None:
    meta = json.loads((zd.DATA_DIR / "digits_cnn.json").read_text(encoding="utf-8"))
    n = meta["test_size"]
    assert workload.num_samples == n == 450
    assert workload.samples.shape == (n, 8, 8) and workload.samples.dtype == np.uint8
    assert workload.samples.min() == 0 and workload.samples.max() == 16
    assert workload.labels is not None
    assert workload.labels.shape == (n,) and workload.labels.dtype == np.int64
    assert set(np.unique(workload.labels).tolist()) == set(range(10))
    assert not workload.samples.flags.writeable and not workload.labels.flags.writeable  # shared, cached
    assert workload.info["num_parameters"] == 38282
    assert workload.info["train_size"] + n == 1797


def test_test_split_is_sklearns_images() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    with np.load(zd.DATA_DIR / "digits_test.npz") as npz:
        images, labels, indices = npz["images"], npz["labels"], npz["indices"]
    assert len(np.unique(indices)) == len(indices)
    np.testing.assert_array_equal(images, digits.images[indices])
    np.testing.assert_array_equal(labels, digits.target[indices])


def test_shipped_files_match_metadata() -> None:
    meta = json.loads((zd.DATA_DIR / "digits_cnn.json").read_text(encoding="utf-8"))
    for name, digest in meta["sha256"].items():
        assert hashlib.sha256((zd.DATA_DIR / name).read_bytes()).hexdigest() == digest, name
    for name in ("digits_cnn.onnx", "digits_cnn.pt", "digits_test.npz", "digits_cnn.json"):
        assert (zd.DATA_DIR / name).stat().st_size < 512 * 1024, name


def test_preprocess_shape_dtype_and_range(workload: Workload) -> None:
    x = zd.preprocess(workload.samples[:5])
    assert x.shape == (5, 1, 8, 8) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_array_equal(x[:, 0], workload.samples[:5] / np.float32(16))
    full = workload.inputs()
    assert full.shape == (450, 1, 8, 8) and full.min() == 0.0 and full.max() == 1.0
    assert zd.preprocess(workload.samples[:0]).shape == (0, 1, 8, 8)


def test_preprocess_does_not_modify_its_input() -> None:
    raw = np.full((2, 8, 8), 16.0, dtype=np.float32)
    out = zd.preprocess(raw)
    assert out is not raw and raw.max() == 16.0 and out.max() == 1.0


@pytest.mark.parametrize("shape", [(8, 8), (3, 64), (3, 1, 8, 8), (2, 8, 7)])
def test_preprocess_wrong_shape_names_expected_and_received(shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError) as info:
        zd.preprocess(np.zeros(shape, dtype=np.uint8))
    message = str(info.value)
    assert "(n, 8, 8)" in message
    assert str(shape) in message


def test_preprocess_rejects_non_numeric() -> None:
    with pytest.raises(InputError, match="dtype"):
        zd.preprocess(np.full((1, 8, 8), "x"))


def test_postprocess() -> None:
    logits = np.zeros((3, 10), dtype=np.float32)
    logits[[0, 1, 2], [7, 0, 9]] = 1.0
    pred = zd.postprocess([logits])
    assert pred.dtype == np.int64 and pred.tolist() == [7, 0, 9]
    with pytest.raises(InputError, match=r"\(n, 10\)"):
        zd.postprocess([np.zeros((3, 4), dtype=np.float32)])
    with pytest.raises(InputError):
        zd.postprocess([])


def test_accuracy_with_onnxruntime(workload: Workload, session) -> None:
    logits = session.run(None, {"image": workload.inputs()})
    predictions = workload.postprocess(logits)
    assert predictions.shape == (workload.num_samples,)
    accuracy = float(np.mean(predictions == workload.labels))
    assert accuracy >= 0.95
    assert accuracy == pytest.approx(workload.info["test_accuracy"], abs=1e-12)
    assert workload.accuracy(predictions) == pytest.approx(accuracy)


@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_runs_small_and_partial_batches(workload: Workload, session, batch: int) -> None:
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "image" and out.name == "logits"
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [1, 8, 8]  # dynamic batch axis
    x = workload.inputs(batch)
    (logits,) = session.run(["logits"], {"image": x})
    assert logits.shape == (batch, 10) and logits.dtype == np.float32
    # a sample's answer does not depend on the batch it is in
    (alone,) = session.run(["logits"], {"image": x[-1:]})
    np.testing.assert_allclose(alone[0], logits[-1], rtol=0, atol=1e-5)


def test_unknown_workload_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nope"):
        load_workload("nope")


def test_missing_files_tell_how_to_regenerate(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"python data/make_digits\.py") as info:
        zd.load_digits_workload(tmp_path)
    assert "digits_cnn.onnx" in str(info.value) and "digits_test.npz" in str(info.value)


def test_corrupt_npz_is_a_model_load_error(tmp_path: Path) -> None:
    for name in ("digits_cnn.onnx", "digits_cnn.json"):
        (tmp_path / name).write_bytes((zd.DATA_DIR / name).read_bytes())
    (tmp_path / "digits_test.npz").write_bytes(b"not an npz")
    with pytest.raises(ModelLoadError, match="make_digits"):
        zd.load_digits_workload(tmp_path)


def test_import_lab_zoo_does_not_import_torch() -> None:
    code = "import lab.zoo, lab.zoo.digits, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_state_dict_matches_onnx(workload: Workload, session) -> None:
    torch = pytest.importorskip("torch")
    model = zd.build_digits_cnn()
    model.load_state_dict(torch.load(zd.DATA_DIR / "digits_cnn.pt", weights_only=True))
    model.eval()
    assert sum(p.numel() for p in model.parameters()) == workload.info["num_parameters"]
    x = workload.inputs(64)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    (got,) = session.run(["logits"], {"image": x})
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_make_digits_regenerates(tmp_path: Path) -> None:
    """The generator runs offline in seconds and reaches the promised accuracy (a fresh folder)."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("onnxscript")
    sys.path.insert(0, str(REPO / "data"))
    try:
        import make_digits
    finally:
        sys.path.remove(str(REPO / "data"))
    meta = make_digits.main(tmp_path, epochs=make_digits.EPOCHS)
    assert meta["test_accuracy"] >= 0.97
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["digits_cnn.json", "digits_cnn.onnx", "digits_cnn.pt", "digits_test.npz"])
    regenerated = zd.load_digits_workload(tmp_path)
    np.testing.assert_array_equal(regenerated.samples, load_workload("digits").samples)
