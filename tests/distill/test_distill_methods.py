"""medkd distill: each method trains what it should on the tiny stand-in teacher, and the students load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from medkd.distill.decoupled import keep_finetuned
from medkd.distill.embedding_cache import EmbeddingCache
from medkd.distill.perceptual import perceptual_distance, vgg_features
from medkd.distill.prompt_loop import disagreement_point
from medkd.distill.sam2unet import soft_target_loss
from medkd.distill.trainer import STATE_FILE, read_log
from PIL import Image

from medkd.artifacts import read_manifest
from medkd.cli import run
from medkd.runtime import load_segmenter
from medkd.zoo import WEIGHTS_FILE, create_model, load_model
from tests.conftest import REPO_ROOT

TINY_TINYVIT = json.dumps({"img_size": 64})
TINY_UNET = json.dumps({"channels": [8, 16, 32], "num_res_units": 1})


def tiny_distill_args(recipe: str, teacher: Path, data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    """``medkd distill`` with a recipe, shortened for the tiny teacher (64 px, 4 x 4 embeddings)."""
    return [
        "distill",
        "--recipe",
        str(REPO_ROOT / "recipes" / f"{recipe}.yaml"),
        "--teacher-run",
        str(teacher),
        "--data",
        str(data),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "2",
        "--val-objects",
        "4",
        *extra,
    ]


@pytest.fixture(scope="module")
def decoupled_student(tiny_teacher: Path, synth_manifest_train: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LiteMedSAM recipe on the tiny teacher, with two guarded decoder fine-tuning steps."""
    root = tmp_path_factory.mktemp("decoupled")
    args = tiny_distill_args("litemedsam", tiny_teacher, synth_manifest_train, root / "student", root / "cache")
    assert run([*args, "--student-kwargs", TINY_TINYVIT, "--finetune-steps", "2"]) == 0
    return root / "student"


def test_decoupled_student_is_the_teacher_decoder_on_a_distilled_encoder(decoupled_student: Path, tiny_teacher: Path) -> None:
    manifest = read_manifest(decoupled_student, kind="student")
    assert manifest.config["model"] == {"name": "tinyvit-256", "kwargs": {"img_size": 64, "embedding_grid": 4}}
    recorded = manifest.config["preprocessing"]  # the recipe trains on box crops at the student's size
    assert (recorded["crop"], recorded["input_size"], recorded["embedding_grid"], recorded["normalization"]) == ("box", 64, 4, "sam")
    cache = manifest.metrics["cache"]
    assert cache["hits"] == 0 and cache["misses"] == EmbeddingCache(cache["directory"]).info()["entries"] > 0
    log = read_log(decoupled_student / "kd")
    assert [r["step"] for r in log] == [1, 2, 3] and all(r["mse"] > 0 for r in log)
    assert [r["step"] for r in read_log(decoupled_student / "finetune")] == [1, 2]
    guard = manifest.metrics["finetune_guard"]
    kept_finetuned = keep_finetuned(guard["val_dsc_distilled"], guard["val_dsc_finetuned"])
    assert guard["kept"] == ("finetuned" if kept_finetuned else "distilled")
    assert guard["val_dsc_distilled"] == manifest.metrics["val_kd"]["overall"]["dsc"]["mean"]
    phase = read_manifest(decoupled_student / "kd", kind="distill-phase")  # distillation alone, evaluable as it is
    assert phase.config["preprocessing"] == recorded
    student, teacher = load_model(decoupled_student), load_model(tiny_teacher)
    for part in ("prompt_encoder",) + (() if kept_finetuned else ("mask_decoder",)):
        ours, theirs = getattr(student, part).state_dict(), getattr(teacher, part).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert not (decoupled_student / "kd" / STATE_FILE).exists() and not (decoupled_student / "finetune" / STATE_FILE).exists()
    assert 0.0 <= manifest.metrics["val"]["overall"]["agreement_dsc"]["mean"] <= 1.0


def test_decoupled_student_runs_in_mobile_sam_predictor(decoupled_student: Path) -> None:
    from mobile_sam import SamPredictor

    student = create_model("tinyvit-256", checkpoint=decoupled_student)
    assert type(student).__module__.startswith("mobile_sam")
    image = np.zeros((90, 120, 3), np.uint8)
    image[30:60, 40:80] = 200
    predictor = SamPredictor(student)
    predictor.set_image(image)
    masks, scores, low_res = predictor.predict(box=np.array([40, 30, 79, 59]), multimask_output=False)
    assert masks.shape == (1, 90, 120) and masks.dtype == bool and low_res.shape == (1, 16, 16)


def test_guard_keeps_the_distilled_model_unless_validation_holds() -> None:
    assert keep_finetuned(0.70, 0.71) and keep_finetuned(0.70, 0.70)
    assert not keep_finetuned(0.70, 0.50)
    assert not keep_finetuned(None, 0.9)  # nothing to validate on: keep the distilled model


def test_kd_sam_adds_a_perceptual_term(tiny_teacher: Path, synth_manifest_train: Path, tmp_path: Path) -> None:
    args = tiny_distill_args("kd-sam", tiny_teacher, synth_manifest_train, tmp_path / "student", tmp_path / "cache")
    assert run([*args, "--student-kwargs", TINY_TINYVIT, "--finetune-steps", "0", "--val-objects", "0"]) == 0
    log = read_log(tmp_path / "student" / "kd")
    weight = read_manifest(tmp_path / "student").config["distill"]["perceptual_weight"]
    for record in log:
        assert record["perceptual"] > 0
        assert record["loss"] == pytest.approx(record["mse"] + weight * record["perceptual"], rel=1e-5)


def test_vgg_perceptual_network_from_a_checkpoint(tmp_path: Path) -> None:
    from torchvision.models import vgg16

    torch.manual_seed(0)
    features = vgg16(weights=None).features[:16]
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, tmp_path / "vgg16.pth")
    network = vgg_features(str(tmp_path / "vgg16.pth"), 32)
    assert len(network(torch.zeros(1, 1, 16, 16))) == 3 and not any(p.requires_grad for p in network.parameters())
    logits = torch.randn(2, 1, 16, 16)
    assert float(perceptual_distance(network, logits, logits)) == 0.0
    assert float(perceptual_distance(network, logits, -logits)) > 0.0


def test_sam2unet_learns_soft_teacher_masks_with_a_box_channel(tiny_teacher: Path, synth_manifest_train: Path, tmp_path: Path) -> None:
    args = tiny_distill_args("sam2unet", tiny_teacher, synth_manifest_train, tmp_path / "student", tmp_path / "cache")
    assert run([*args, "--student-kwargs", TINY_UNET]) == 0
    manifest = read_manifest(tmp_path / "student", kind="student")
    assert manifest.config["model"]["name"] == "unet" and manifest.config["distill"]["crop"] == "box"
    assert manifest.config["preprocessing"]["crop"] == "box" and manifest.config["preprocessing"]["mask_size"] == 256
    assert all(r["soft_loss"] > 0 and r["gt_loss"] > 0 for r in read_log(tmp_path / "student" / "kd"))
    segmenter = load_segmenter(str(tmp_path / "student"), device="cpu")
    assert segmenter.family == "unet" and next(m for m in segmenter.module.modules() if isinstance(m, torch.nn.Conv2d)).in_channels == 4
    assert 0.0 <= manifest.metrics["val"]["overall"]["dsc"]["mean"] <= 1.0
    teacher = torch.tensor([[[[4.0, -4.0]]]])
    assert float(soft_target_loss(teacher, teacher, 2.0)) < float(soft_target_loss(-teacher, teacher, 2.0))


def test_prompt_loop_trains_only_the_decoder(decoupled_student: Path, tiny_teacher: Path, synth_manifest_train: Path, tmp_path: Path) -> None:
    args = tiny_distill_args("edgesam", tiny_teacher, synth_manifest_train, tmp_path / "student", tmp_path / "cache")
    assert run([*args, "--student", str(decoupled_student), "--val-objects", "0"]) == 0
    log = read_log(tmp_path / "student" / "kd")
    assert len(log) == 3 and all({"round0_loss", "round1_loss", "round2_loss"} <= set(r) for r in log)
    before, after = load_model(decoupled_student), load_model(tmp_path / "student")
    same = lambda part: all(torch.equal(v, getattr(after, part).state_dict()[k]) for k, v in getattr(before, part).state_dict().items())  # noqa: E731
    assert same("image_encoder") and same("prompt_encoder") and not same("mask_decoder")
    assert read_manifest(tmp_path / "student").inputs[-1].path == str(decoupled_student)


def test_refinement_points_fall_where_student_and_teacher_disagree() -> None:
    torch.manual_seed(0)
    student = torch.full((1, 1, 8, 8), -1.0)
    teacher = student.clone()
    assert disagreement_point(student, teacher, 32) is None
    teacher[0, 0, 2, 5] = 1.0  # teacher sees the object where the student does not: a positive point
    point, label = disagreement_point(student, teacher, 32)
    assert label == 1 and point.tolist() == [(5 + 0.5) * 4, (2 + 0.5) * 4]
    student[0, 0, 6, 1] = 1.0
    teacher[0, 0, 2, 5] = -1.0  # only the student's false positive remains: a negative point
    point, label = disagreement_point(student, teacher, 32)
    assert label == 0 and point.tolist() == [(1 + 0.5) * 4, (6 + 0.5) * 4]


@pytest.mark.slow
def test_vit_h_checkpoint_to_mobile_sam_on_a_real_image(shared_data: Path, tmp_path: Path) -> None:
    """``medkd distill --teacher sam-vit-h --student tinyvit --method decoupled`` as written, 1024 px."""
    from mobile_sam import SamPredictor, sam_model_registry

    from medkd.data import build_manifest, save_manifest

    torch.manual_seed(0)
    torch.save(create_model("sam-vit-h").state_dict(), tmp_path / "sam_vit_h_random.pth")  # the official file's stand-in
    manifest = build_manifest(shared_data / "fetal-head-us", progress=False)
    manifest.rows = manifest.select("train")[:1]
    save_manifest(manifest, tmp_path / "one.jsonl")
    args = [
        "distill", "--teacher", "sam-vit-h", "--teacher-checkpoint", str(tmp_path / "sam_vit_h_random.pth"),
        "--student", "tinyvit", "--method", "decoupled", "--data", str(tmp_path / "one.jsonl"),
        "--out", str(tmp_path / "student"), "--cache-dir", str(tmp_path / "cache"),
        "--steps", "2", "--batch-size", "1", "--val-objects", "0",
    ]  # fmt: skip
    assert run(args) == 0
    assert [r["step"] for r in read_log(tmp_path / "student" / "kd")] == [1, 2]
    student = sam_model_registry["vit_t"](checkpoint=str(tmp_path / "student" / WEIGHTS_FILE))
    row = manifest.rows[0]
    image = np.array(Image.open(manifest.resolve(row.image)).convert("RGB"))
    predictor = SamPredictor(student.eval())
    predictor.set_image(image)
    masks, _, _ = predictor.predict(box=np.array(row.box), multimask_output=False)
    assert masks.shape == (1, *image.shape[:2])
