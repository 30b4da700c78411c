"""Calibration inputs from medical images, and activation ranges measured on them.

Encoder inputs are train-split objects (datasets in turn, every image's first object before any
second) preprocessed exactly as evaluation does (the export's preprocessing spec, its crop included); decoder inputs are the FP32 encoder's embeddings of
the same objects with their ground-truth box as the prompt. Ranges of the inputs and outputs of every
``MatMul`` / ``Gemm`` / ``Conv`` come from ONNX Runtime's calibrators (min-max, percentile or entropy
histograms), fed one image at a time. ``mean-minmax`` averages each image's own extremes instead of
taking the extremes over all images (NNCF's default for activations): on the published LiteMedSAM a
few of 32 calibration images stretched stage-0 ranges to four times what the others reach, and one
MBConv block quantized with them moved its own output by 44 %. Products of two activations that a recipe leaves in float are not
calibrated: the calibrator's reduction nodes keep every tensor they read alive until the end of the
forward pass, and the attention maps of a 1024-px ViT-B are 0.8 GB each.
"""

from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain, islice, zip_longest
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from medkd.runtime.prompts import pad_points, prompt_points
from medkd.runtime.onnx_runtime import decoder_feeds
from medkd.quantize.recipe import QUANTIZABLE_OP_TYPES
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
from onnxruntime.quantization.calibrate import (
    CalibraterBase,
    EntropyCalibrater,
    MinMaxCalibrater,
    PercentileCalibrater,
    TensorsData,
)

from medkd.data import ArrayCache, default_cache_dir, load_manifest
from medkd.data.loading import RowLoader
from medkd.data.manifest import DataManifest, ManifestRow
from medkd.data.preprocessing import Preprocessing
from medkd.data.progress import track
from medkd.runtime.layout import read_layout
from medkd.runtime.prompts import Prompts
from medkd.zoo import recorded_preprocessing

Feed = dict[str, np.ndarray]
ORT_METHODS = {"minmax": CalibrationMethod.MinMax, "mean-minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}
_CHUNK = 1  # one feed per call: a 1024-px ViT-B keeps GiBs of intermediate outputs per image


@dataclass
class Objects:
    """Calibration, validation or test objects: their manifest rows and the graph feeds made from them."""

    rows: list[ManifestRow]
    feeds: dict[str, list[Feed]]


class FeedReader(CalibrationDataReader):
    """ONNX Runtime's calibration reader over a list of feeds (restartable)."""

    def __init__(self, feeds: list[Feed]) -> None:
        self.feeds = feeds
        self._iterator: Iterator[Feed] = iter(feeds)

    def get_next(self) -> Feed | None:
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = iter(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)


def spread_rows(manifest: DataManifest, count: int, split: str) -> list[ManifestRow]:
    """``count`` objects of ``split`` taken in turn from each dataset; within one, every image's first
    object before any image's second (manifest order otherwise)."""
    per_dataset: dict[str, list[tuple[int, int, ManifestRow]]] = defaultdict(list)
    seen: Counter[str] = Counter()
    for index, row in enumerate(manifest.select(split)):
        per_dataset[row.dataset].append((seen[row.image_key], index, row))
        seen[row.image_key] += 1
    ordered = [[row for *_, row in sorted(rows, key=lambda item: item[:2])] for rows in per_dataset.values()]
    interleaved = (row for row in chain.from_iterable(zip_longest(*ordered)) if row is not None)
    return list(islice(interleaved, count))


def model_inputs(rows: list[ManifestRow], loader: RowLoader, preprocessing: Preprocessing) -> tuple[list[np.ndarray], list[Prompts]]:
    """``(1, 3, S, S)`` model inputs and box prompts (model pixels) of ``rows``, made by ``preprocessing``."""
    images, prompts = [], []
    for row in rows:
        image = loader.image(row)
        geometry = preprocessing.plan(image.shape[:2], np.asarray(row.box))
        images.append(geometry.image_to_model(image)[None].numpy())
        prompts.append(Prompts(boxes=geometry.boxes_to_model(np.array([row.box]))))
    return images, prompts


def graph_feeds(encoder: ort.InferenceSession, images: list[np.ndarray], prompts: list[Prompts], point_slots: int, progress: bool = True) -> dict[str, list[Feed]]:
    """Calibration feeds of ``encoder``, ``decoder`` (SamOnnxModel interface) and ``decoder_trt``."""
    feeds: dict[str, list[Feed]] = {"encoder": [], "decoder": [], "decoder_trt": []}
    for image, prompt in track(zip(images, prompts), len(images), "calibration embeddings", enabled=progress):
        embedding = encoder.run(["image_embeddings"], {"image": image})[0]
        coords, labels = prompt_points(prompt)
        feeds["encoder"].append({"image": image})
        feeds["decoder"].append(decoder_feeds(embedding, coords, labels))
        padded_coords, padded_labels = pad_points(coords, labels, point_slots)
        feeds["decoder_trt"].append({"image_embeddings": embedding, "point_coords": padded_coords, "point_labels": padded_labels})
    return feeds


def unet_feeds(images: list[np.ndarray], prompts: list[Prompts], size: int) -> list[Feed]:
    """Calibration feeds of a U-Net graph: the image plus its box channel."""
    from medkd.data.prompts import box_mask

    return [{"image": np.concatenate([image, box_mask(p.boxes[0], size)[None, None].astype(np.float32)], axis=1)} for image, p in zip(images, prompts)]


def _node_scoped(base: type[CalibraterBase], nodes: Collection[str]) -> type[CalibraterBase]:
    """``base`` calibrating only the inputs and outputs of ``nodes``."""
    wanted = set(nodes)

    class NodeScoped(base):
        def select_tensors_to_calibrate(self, model: onnx.ModelProto) -> tuple[set[str], dict]:
            tensors, value_infos = super().select_tensors_to_calibrate(model)
            scoped = {name for node in model.graph.node if node.name in wanted for name in chain(node.input, node.output)}
            return tensors & scoped, value_infos

    return NodeScoped


def activation_ranges(model_path: Path, feeds: list[Feed], nodes: Collection[str], method: str, percentile: float = 99.999) -> TensorsData:
    """Range (lowest, highest) over ``feeds``, by ``method``, of the inputs and outputs of ``nodes``
    (:func:`medkd.quantize.nodes.calibrated_nodes`): what ONNX Runtime and TensorRT need."""
    base, options = {
        "minmax": (MinMaxCalibrater, {}),
        "mean-minmax": (MinMaxCalibrater, {"moving_average": True}),
        "percentile": (PercentileCalibrater, {"num_bins": 2048, "percentile": percentile}),
        "entropy": (EntropyCalibrater, {"num_bins": 128, "num_quantized_bins": 128}),
    }[method]
    with tempfile.TemporaryDirectory(prefix="medkd-calibrate-") as scratch:
        calibrator = _node_scoped(base, nodes)(
            model_path, list(QUANTIZABLE_OP_TYPES), augmented_model_path=str(Path(scratch) / "augmented.onnx"), symmetric=True, **options
        )
        calibrator.augment_graph()
        calibrator.create_inference_session()
        # Min-max calibrators keep two numbers per tensor and image: all images in one call, so that
        # ``moving_average`` means the plain mean over images (across calls it is an exponential one).
        chunk = len(feeds) if base is MinMaxCalibrater else _CHUNK
        for start in range(0, len(feeds), chunk):
            calibrator.collect_data(FeedReader(feeds[start : start + chunk]))
        ranges = calibrator.compute_data()
        del calibrator
    return ranges


def amax(ranges: TensorsData) -> dict[str, float]:
    """Largest absolute value of each calibrated tensor."""
    result = {}
    for name, data in ranges.items():
        low, high = data.range_value
        result[name] = max(abs(float(np.min(low))), abs(float(np.max(high))))
    return result


def image_feeds(export_dir: Path, data: Path, counts: Mapping[str, int]) -> dict[str, list[Feed]]:
    """Encoder feeds (``{"image": ...}``) of ``counts[split]`` objects of each split of the manifest at
    ``data`` (:func:`spread_rows`), made by the export's recorded preprocessing with its own crop."""
    preprocessing = recorded_preprocessing(read_layout(export_dir), str(export_dir)).with_crop(None, source=str(export_dir))
    manifest = load_manifest(data)
    loader = RowLoader(manifest, ArrayCache(default_cache_dir()))
    return {split: [{"image": image} for image in model_inputs(spread_rows(manifest, count, split), loader, preprocessing)[0]] for split, count in counts.items()}
