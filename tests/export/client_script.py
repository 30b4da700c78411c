"""A client of a medkd SAM-family ONNX export that imports no medkd: the graph files from the export manifest, the
preprocessing spec only from the encoder's ONNX ``metadata_props``, the box from the command line.

    python client_script.py EXPORT_DIR IMAGE.png x0,y0,x1,y1 OUT.npz

IMAGE.png is the RGB image after the intensity rule (``rules.intensity``). OUT.npz holds the crop
window (y0, x0, y1, x1) and the low-resolution mask logits (1, M, M) in model space.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from PIL import Image


def window(height, width, box, spec):
    if spec["crop"] == "none":
        return 0, 0, height, width
    bx0, by0, bx1, by1 = box
    side = max(spec["context"] * max(bx1 - bx0 + 1, by1 - by0 + 1), float(spec["min_side"]))

    def span(start, stop, limit):
        length = min(math.ceil(side), limit)
        begin = int(np.clip(math.floor((start + stop + 1) / 2 - length / 2), 0, limit - length))
        return begin, begin + length

    (y0, y1), (x0, x1) = span(by0, by1, height), span(bx0, bx1, width)
    return y0, x0, y1, x1


def normalise(pixels, spec):
    if spec["normalization"] == "sam":
        return (pixels - np.float32(spec["pixel_mean"])) / np.float32(spec["pixel_std"])
    if spec["normalization"] == "unit":
        return pixels / np.float32(255.0)
    low = pixels.min()
    return (pixels - low) / np.float32(max(float(pixels.max() - low), 1e-8))


def model_input(region, spec):
    size = spec["input_size"]
    if spec["resize"] == "stretch":
        image = torch.from_numpy(normalise(region.astype(np.float32), spec)).permute(2, 0, 1)[None]
        return F.interpolate(image, (size, size), mode="bilinear", align_corners=False).numpy(), (size, size)
    h, w = region.shape[:2]
    scale = size / max(h, w)
    new_h, new_w = int(h * scale + 0.5), int(w * scale + 0.5)
    resized = np.asarray(Image.fromarray(region).resize((new_w, new_h), Image.BILINEAR))
    padded = np.zeros((1, 3, size, size), np.float32)
    padded[0, :, :new_h, :new_w] = normalise(resized.astype(np.float32), spec).transpose(2, 0, 1)
    return padded, (new_h, new_w)


def main(export_dir, image_path, box_text, out):
    export = json.loads((Path(export_dir) / "manifest.json").read_text())["config"]["export"]
    graphs = {name: str(Path(export_dir) / entry["file"]) for name, entry in export["graphs"].items()}
    metadata = {p.key: p.value for p in onnx.load(graphs["encoder"], load_external_data=False).metadata_props}
    spec = json.loads(metadata["medkd.preprocessing"])
    box = [float(v) for v in box_text.split(",")]
    rgb = np.asarray(Image.open(image_path).convert("RGB"))
    y0, x0, y1, x1 = window(*rgb.shape[:2], box, spec)
    image, (h, w) = model_input(np.ascontiguousarray(rgb[y0:y1, x0:x1]), spec)
    sx, sy = w / (x1 - x0), h / (y1 - y0)
    model_box = np.array([(box[0] - x0) * sx, (box[1] - y0) * sy, (box[2] - x0) * sx, (box[3] - y0) * sy], np.float32)
    session = lambda name: ort.InferenceSession(graphs[name], providers=["CPUExecutionProvider"])  # noqa: E731
    low_res = spec["mask_size"]
    embedding = session("encoder").run(["image_embeddings"], {"image": image})[0]
    feeds = {
        "image_embeddings": embedding,
        "point_coords": model_box.reshape(1, 2, 2),
        "point_labels": np.array([[2.0, 3.0]], np.float32),  # box corners, as metadata medkd.prompts says
        "mask_input": np.zeros((1, 1, low_res, low_res), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array([low_res, low_res], np.float32),
    }
    logits = session("decoder").run(["low_res_masks"], feeds)[0][:, 0]  # a box prompt: the first mask
    np.savez(out, region=np.array([y0, x0, y1, x1]), logits=logits, prompts=np.array(metadata["medkd.prompts"]))


if __name__ == "__main__":
    main(*sys.argv[1:])
