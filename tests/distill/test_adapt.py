"""Teacher adaptation: methods train the right parameters, LoRA merges exactly, runs resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from medkd.distill.adapt import (
    AdaptConfig,
    finalize_teacher,
    prepare_teacher,
    trainable_fraction,
)
from medkd.distill.trainer import STATE_FILE, read_log
from PIL import Image
from segment_anything import SamPredictor, sam_model_registry

from medkd.artifacts import read_manifest
from medkd.zoo import WEIGHTS_FILE, create_model, load_model, save_model_artifact
from tests.conftest import TINY_STAND_IN, tiny_adapt_args


def test_tiny_teacher_artifact(tiny_teacher: Path) -> None:
    manifest = read_manifest(tiny_teacher, kind="teacher")
    assert manifest.config["adapt"]["train"]["steps"] == 4
    assert manifest.config["adapt"]["crop"] == "box"  # from the recipe
    assert 0.0 <= manifest.metrics["val"]["overall"]["dsc"]["mean"] <= 1.0
    assert [r["step"] for r in read_log(tiny_teacher)] == [1, 2, 3, 4]
    assert not (tiny_teacher / STATE_FILE).exists()
    model = load_model(tiny_teacher)
    assert model.image_encoder.img_size == TINY_STAND_IN["img_size"]


@pytest.mark.parametrize(
    "method, trains",
    [("full", {"image_encoder", "mask_decoder"}), ("decoder", {"mask_decoder"}), ("adapter", {"image_encoder", "mask_decoder"})],
)
def test_methods_train_the_right_parts(method: str, trains: set[str]) -> None:
    sam = prepare_teacher(AdaptConfig(teacher="sam-vit-stand-in", method=method, model_kwargs=TINY_STAND_IN))
    trained = {name.split(".")[0] for name, p in sam.named_parameters() if p.requires_grad}
    assert trained == trains
    if method == "adapter":
        encoder_trained = {n for n, p in sam.image_encoder.named_parameters() if p.requires_grad}
        assert encoder_trained and all(".attn.adapter." in n for n in encoder_trained)


def test_adapter_artifact_keeps_a_plain_base_state_dict(tmp_path: Path) -> None:
    sam = prepare_teacher(AdaptConfig(teacher="sam-vit-stand-in", method="adapter", model_kwargs=TINY_STAND_IN))
    for block in sam.image_encoder.blocks:
        torch.nn.init.normal_(block.attn.adapter.up.weight, std=0.1)
    save_model_artifact(sam, tmp_path, name="sam-vit-stand-in", kind="teacher", model_kwargs=TINY_STAND_IN)
    base = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
    assert not any("adapter" in key for key in base) and "image_encoder.blocks.0.attn.qkv.weight" in base
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = sam.eval().image_encoder(image)
        assert torch.allclose(load_model(tmp_path).image_encoder(image), expected, atol=1e-6)
        by_checkpoint = create_model("sam-vit-stand-in", checkpoint=tmp_path)
        assert torch.allclose(by_checkpoint.image_encoder(image), expected, atol=1e-6)


@pytest.mark.slow
def test_lora_on_sam_vit_b_trains_under_1_percent_and_merges_exactly(tmp_path: Path, shared_data: Path) -> None:
    sam = prepare_teacher(AdaptConfig(teacher="sam-vit-b", method="lora"))
    trainable, total = trainable_fraction(sam)
    assert 0 < trainable < 0.01 * total
    torch.manual_seed(0)
    for name, parameter in sam.image_encoder.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.02)  # a trained-looking update, not the zero init
    image = np.array(Image.open(shared_data / "fetal-head-us" / "images" / "000_HC.png").convert("RGB"))
    box = np.array([150, 100, 650, 450])

    def logits(model) -> np.ndarray:
        predictor = SamPredictor(model)
        predictor.set_image(image)
        return predictor.predict(box=box, multimask_output=False, return_logits=True)[0]

    unmerged = logits(sam.eval())
    merged = finalize_teacher(sam)
    save_model_artifact(merged, tmp_path, name="sam-vit-b", kind="teacher")
    loaded = sam_model_registry["vit_b"](checkpoint=str(tmp_path / WEIGHTS_FILE))
    assert np.abs(logits(loaded.eval()) - unmerged).max() <= 1e-4


def _medkd(*args: str) -> list[str]:
    return [sys.executable, "-m", "medkd", *args]


def test_sigkill_mid_run_then_resume_completes(synth_manifest_train: Path, tmp_path: Path) -> None:
    out = tmp_path / "teacher"
    args = tiny_adapt_args(synth_manifest_train, out)
    args[args.index("--steps") + 1] = "20"
    process = subprocess.Popen(_medkd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (out / STATE_FILE).exists():
        time.sleep(0.2)
    time.sleep(1.0)  # let it run into the steps after the checkpoint
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (out / STATE_FILE).exists() and not (out / "manifest.json").exists()
    saved_step = torch.load(out / STATE_FILE, weights_only=True)["step"]
    logged_before = len(read_log(out))

    assert subprocess.run(_medkd(*args), capture_output=True, check=False).returncode == 2  # must say --resume
    resumed = subprocess.run(_medkd(*args, "--resume"), capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    lines = (out / "train_log.jsonl").read_text().splitlines()
    first_resumed = json.loads(lines[logged_before])["step"] if logged_before < len(lines) else None
    assert first_resumed == saved_step + 1
    assert [r["step"] for r in read_log(out)] == list(range(1, 21))
    assert read_manifest(out, kind="teacher").config["adapt"]["train"]["steps"] == 20
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == STATE_FILE]
    assert leftovers == []


def test_torchrun_two_ranks_match_one_process_of_the_same_global_batch(synth_manifest_train: Path, tmp_path: Path) -> None:
    single, double = tmp_path / "single", tmp_path / "double"
    args = tiny_adapt_args(synth_manifest_train, single, "--no-bf16")  # compare in fp32: bf16 rounds per rank
    args[args.index("--batch-size") + 1] = "4"
    args[args.index("--steps") + 1] = "3"
    assert subprocess.run(_medkd(*args), capture_output=True, check=False).returncode == 0
    args[args.index("--out") + 1] = str(double)
    args[args.index("--batch-size") + 1] = "2"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "medkd", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (double / "manifest.json").exists() and (double / WEIGHTS_FILE).exists()
    one = [r["loss"] for r in read_log(single)]
    two = [r["loss"] for r in read_log(double)]
    assert len(one) == len(two) == 3
    np.testing.assert_allclose(two, one, rtol=1e-4)


def test_rerun_of_a_finished_teacher_does_nothing_and_another_config_is_refused(
    tiny_teacher: Path, synth_manifest_train: Path, capsys: pytest.CaptureFixture
) -> None:
    from medkd.cli import run

    before = (tiny_teacher / WEIGHTS_FILE).stat().st_mtime_ns
    assert run(tiny_adapt_args(synth_manifest_train, tiny_teacher)) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (tiny_teacher / WEIGHTS_FILE).stat().st_mtime_ns == before
    assert run(tiny_adapt_args(synth_manifest_train, tiny_teacher, "--lr", "0.5")) == 2
    assert "another configuration" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["lora", "adapter"])
def test_litemedsam_takes_lora_and_adapters_in_its_tinyvit_attention(method: str, tmp_path: Path) -> None:
    config = AdaptConfig(teacher="litemedsam", method=method, lora_decoder=True)
    sam = prepare_teacher(config)
    trainable, total = trainable_fraction(sam)
    names = [name for name, p in sam.named_parameters() if p.requires_grad]
    if method == "lora":
        assert 0 < trainable < 0.01 * total  # LoRA in 10 TinyViT attention blocks and the decoder's attention
        assert any("image_encoder" in n and "lora_A" in n for n in names) and any("mask_decoder" in n and "lora_A" in n for n in names)
        torch.manual_seed(0)
        for name, parameter in sam.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(parameter, std=0.02)
    else:
        assert sum(".attn.adapter." in n for n in names) == 4 * 10  # down / up weight and bias in 10 blocks
        for block in sam.image_encoder.layers[1].blocks:
            torch.nn.init.normal_(block.attn.adapter.up.weight, std=0.02)
    image, box = torch.rand(1, 3, 256, 256), torch.tensor([[40.0, 50.0, 180.0, 200.0]])
    from medkd.distill.sam_forward import BoxPromptedSam

    with torch.no_grad():
        before = BoxPromptedSam(sam.eval())({"image": image, "box": box})["logits"]
        save_model_artifact(finalize_teacher(sam), tmp_path, name="litemedsam", kind="teacher")
        after = BoxPromptedSam(load_model(tmp_path))({"image": image, "box": box})["logits"]
    assert (before - after).abs().max() < 1e-3
    assert not torch.equal(before, BoxPromptedSam(create_model("litemedsam").eval())({"image": image, "box": box})["logits"])


def test_decoder_adaptation_trains_on_cached_embeddings_that_distillation_reuses(synth_manifest_train: Path, tmp_path: Path) -> None:
    from medkd.cli import run
    from medkd.distill.embedding_cache import EmbeddingCache

    teacher, cache = tmp_path / "teacher", tmp_path / "cache"
    args = tiny_adapt_args(synth_manifest_train, teacher, "--method", "decoder")
    recipe = tmp_path / "adapt.yaml"
    recipe.write_text(json.dumps({"adapt": {"teacher": "sam-vit-stand-in", "crop": "box", "cache_dir": str(cache), "val_objects": 4}}))
    args[args.index("--recipe") + 1] = str(recipe)
    assert run(args) == 0
    metrics = read_manifest(teacher, kind="teacher").metrics
    entries = EmbeddingCache(cache).info()["entries"]
    assert metrics["cache"]["misses"] == entries > 0 and metrics["trainable_params"] == sum(
        p.numel() for p in load_model(teacher).mask_decoder.parameters()
    )
    student = tmp_path / "student"
    distill = [
        "distill", "--teacher-run", str(teacher), "--student", "tinyvit-256", "--student-kwargs", json.dumps({"img_size": 64}),
        "--crop", "box", "--data", str(synth_manifest_train), "--out", str(student), "--cache-dir", str(cache),
        "--steps", "1", "--batch-size", "2", "--val-objects", "0",
    ]  # fmt: skip
    assert run(distill) == 0
    filled = read_manifest(student, kind="student").metrics["cache"]
    assert filled == {"directory": str(cache), "hits": entries, "misses": 0}  # the adapted decoder leaves the embeddings as they were


def test_decoder_lora_trains_low_rank_decoder_updates_on_cached_embeddings(synth_manifest_train: Path, tmp_path: Path) -> None:
    from medkd.cli import run

    modules = ["q_proj", "k_proj", "v_proj", "out_proj", "lin1", "lin2"]
    config = AdaptConfig(teacher="sam-vit-stand-in", method="lora", model_kwargs=TINY_STAND_IN, lora_encoder=False, lora_decoder=True, lora_rank=2, lora_decoder_modules=modules)
    sam = prepare_teacher(config)
    linears = [m for name, m in create_model("sam-vit-stand-in", **TINY_STAND_IN).mask_decoder.named_modules() if name.rsplit(".", 1)[-1] in modules]
    expected = sum(2 * (m.in_features + m.out_features) for m in linears)
    assert trainable_fraction(sam)[0] == expected and {n.split(".")[0] for n, p in sam.named_parameters() if p.requires_grad} == {"mask_decoder"}

    teacher, cache = tmp_path / "teacher", tmp_path / "cache"
    args = tiny_adapt_args(synth_manifest_train, teacher, "--method", "lora", "--no-lora-encoder", "--lora-decoder", "--lora-rank", "2", "--lr", "0.01")
    recipe = tmp_path / "adapt.yaml"
    recipe.write_text(json.dumps({"adapt": {"teacher": "sam-vit-stand-in", "crop": "box", "cache_dir": str(cache), "val_objects": 0, "lora_decoder_modules": modules}}))
    args[args.index("--recipe") + 1] = str(recipe)
    assert run(args) == 0
    manifest = read_manifest(teacher, kind="teacher")
    assert manifest.metrics["trainable_params"] == expected and manifest.metrics["cache"]["misses"] > 0  # trained on the cached embeddings
    torch.manual_seed(manifest.config["adapt"]["train"]["seed"])  # the initial weights adapt started from
    base, adapted = create_model("sam-vit-stand-in", **TINY_STAND_IN).state_dict(), load_model(teacher).state_dict()
    assert set(base) == set(adapted)  # LoRA merged: a plain SAM state dict
    changed = {name.split(".")[0] for name in base if not torch.equal(base[name], adapted[name])}
    assert changed == {"mask_decoder"}


def test_lora_with_nothing_to_train_is_refused() -> None:
    from medkd.errors import BadInput

    with pytest.raises(BadInput, match="trains nothing"):
        prepare_teacher(AdaptConfig(teacher="sam-vit-stand-in", method="lora", model_kwargs=TINY_STAND_IN, lora_encoder=False))
