"""Train the shipped digits CNN and write its ONNX model, weights, test split and metadata (offline, seconds).

Usage::

    python data/make_digits.py            # writes into data/
    python data/make_digits.py --out DIR  # writes elsewhere

Data: scikit-learn's bundled copy of the UCI optical recognition of handwritten digits
test set (``sklearn.datasets.load_digits``, 1,797 images of 8x8 pixels, values 0..16);
nothing is downloaded. The architecture and the pre/postprocessing live in
:mod:`lab.zoo.digits`, so the shipped model and the workload cannot drift apart.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python data/make_digits.py` puts data/, not the repo, on sys.path
    sys.path.insert(0, str(REPO))

from lab.zoo.digits import (  # noqa: E402 - after the sys.path fix above
    META_FILE,
    MODEL_FILE,
    STATE_FILE,
    TEST_FILE,
    build_digits_cnn,
    postprocess,
    preprocess,
)

SEED = 0
TEST_SIZE = 0.25
EPOCHS = 40
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 1e-4
OPSET = 18
#: The accuracy the script insists on (the README promises at least 95%).
MIN_ACCURACY = 0.97


def _split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's digits as uint8 images and int64 labels, plus stratified train/test indices."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # float64 holding integers 0..16
    if not np.array_equal(images, digits.images):
        raise RuntimeError("sklearn digits are not integers 0..16")
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=TEST_SIZE, random_state=seed,
                                           stratify=labels)
    return images, labels, np.sort(train_idx), np.sort(test_idx)


def _train(x: Any, y: Any, *, seed: int, epochs: int) -> Any:
    """Adam over shuffled mini-batches; deterministic for a given seed (one CPU thread)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = build_digits_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def _export(model: Any, path: Path) -> str:
    """Export ``model`` to a single ONNX file (input ``image``, output ``logits``, dynamic batch).

    Uses the dynamo exporter (torch's default); falls back to the TorchScript one if it fails.

    Returns:
        Which exporter wrote the file: ``"dynamo"`` or ``"torchscript"``.
    """
    import torch

    example = torch.zeros(2, 1, 8, 8)
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping torchvision::nms", ...
    try:
        with warnings.catch_warnings():  # torch's own pytree deprecation, raised inside torch.export
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=["image"],
                                        output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                        opset_version=OPSET, verbose=False)
        if program is None:
            raise RuntimeError("torch.onnx.export returned no program")
        program.save(str(path), external_data=False)
        return "dynamo"
    except Exception as exc:  # noqa: BLE001 - any exporter failure: try the other exporter
        print(f"dynamo export failed ({type(exc).__name__}: {exc}); using the TorchScript exporter", file=sys.stderr)
    finally:
        registry_log.setLevel(level)
    torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=OPSET)
    return "torchscript"


def _check_onnx(path: Path, model: Any) -> None:
    """The file is one self-contained model named as promised; batches 1, 7, 64 match torch within 1e-4."""
    import onnx
    import onnxruntime as ort
    import torch

    proto = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(proto)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise RuntimeError(f"{path} refers to external data")
    (inp,), (out,) = proto.graph.input, proto.graph.output
    if (inp.name, out.name) != ("image", "logits"):
        raise RuntimeError(f"{path}: expected input 'image' and output 'logits', got {inp.name!r}, {out.name!r}")
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    if not isinstance(dims[0], str) or dims[1:] != [1, 8, 8]:
        raise RuntimeError(f"{path}: expected input shape (batch, 1, 8, 8), got {dims}")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(SEED)
    for n in (1, 7, 64):
        x = preprocess(rng.integers(0, 17, size=(n, 8, 8), dtype=np.uint8))
        (got,) = sess.run(["logits"], {"image": x})
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        if got.shape != (n, 10) or not np.allclose(got, want, rtol=0, atol=1e-4):
            raise RuntimeError(f"{path}: batch {n}: ONNX logits {got.shape} differ from torch by "
                               f"{np.abs(got - want).max() if got.shape == want.shape else 'shape'}")


def _onnx_accuracy(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    predictions = postprocess(sess.run(None, {"image": preprocess(images)}))
    return float(np.mean(predictions == labels))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(out_dir: str | Path = "data", *, seed: int = SEED, epochs: int = EPOCHS) -> dict[str, Any]:
    """Train, export, verify and write the four files into ``out_dir``; return the metadata.

    A relative ``out_dir`` is taken relative to the repository root (so ``"data"`` is the
    shipped folder wherever the script is run from).
    """
    import onnx
    import onnxruntime
    import sklearn
    import torch

    out = Path(out_dir)
    out = out if out.is_absolute() else REPO / out
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    images, labels, train_idx, test_idx = _split(seed)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same weights on every machine of a platform
    try:
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state as it was
            x_train = torch.from_numpy(preprocess(images[train_idx]))
            y_train = torch.from_numpy(labels[train_idx])
            t0 = time.perf_counter()
            model = _train(x_train, y_train, seed=seed, epochs=epochs)
            train_s = time.perf_counter() - t0
        with torch.no_grad():
            torch_pred = model(torch.from_numpy(preprocess(images[test_idx]))).argmax(1).numpy()
        torch_acc = float(np.mean(torch_pred == labels[test_idx]))

        model_path = out / MODEL_FILE
        exporter = _export(model, model_path)
        _check_onnx(model_path, model)
    finally:
        torch.set_num_threads(threads)
    acc = _onnx_accuracy(model_path, images[test_idx], labels[test_idx])
    if acc < MIN_ACCURACY:
        raise RuntimeError(f"test accuracy {acc:.4f} is below {MIN_ACCURACY}; not shipping this model")

    torch.save(model.state_dict(), out / STATE_FILE)
    np.savez_compressed(out / TEST_FILE, images=images[test_idx], labels=labels[test_idx],
                        indices=test_idx.astype(np.int64))
    meta: dict[str, Any] = {
        "dataset": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits, 8x8, 0..16)",
        "split": f"stratified train_test_split(test_size={TEST_SIZE}, random_state={seed})",
        "train_size": int(len(train_idx)),
        "test_size": int(len(test_idx)),
        "test_accuracy": acc,
        "test_correct": int(round(acc * len(test_idx))),
        "test_accuracy_torch": torch_acc,
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "architecture": "conv1-16 3x3 p1, relu, conv16-32 3x3 p1, relu, maxpool2, flatten, fc512-64, relu, fc64-10",
        "input": {"name": "image", "shape": ["batch", 1, 8, 8], "dtype": "float32", "scale": "pixels / 16"},
        "output": {"name": "logits", "shape": ["batch", 10], "dtype": "float32"},
        "seed": seed,
        "epochs": epochs,
        "batch_size": BATCH_SIZE,
        "optimizer": f"Adam(lr={LEARNING_RATE}, weight_decay={WEIGHT_DECAY}), cosine schedule",
        "exporter": exporter,
        "opset": OPSET,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                     "scikit-learn": sklearn.__version__, "numpy": np.__version__},
        "sha256": {MODEL_FILE: _sha256(model_path), TEST_FILE: _sha256(out / TEST_FILE)},
        "command": "python data/make_digits.py",
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"digits CNN: {meta['num_parameters']:,} parameters, trained {epochs} epochs on {len(train_idx)} images "
          f"in {train_s:.1f} s; test accuracy (onnxruntime, {len(test_idx)} images) {acc:.4f} "
          f"[torch {torch_acc:.4f}]; total {time.perf_counter() - t_start:.1f} s; wrote {out}")
    return meta


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data", help="output folder (relative paths are under the repo root)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    main(args.out, seed=args.seed, epochs=args.epochs)
