"""Federated adaptation: Flower's aggregate is the example-weighted mean of the sites' updates, only
the trainable parameters travel, FedProx's term, site splits, and the CLI's refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from medkd.distill.adapt import AdaptConfig, FederatedConfig, prepare_teacher
from medkd.distill.federated_site import ProximalTask, site_rows, trainable_state
from medkd.distill.trainer import TrainConfig

from medkd.data import load_manifest
from tests.conftest import TINY_STAND_IN, tiny_adapt_args


def _lora_config(**federated) -> AdaptConfig:
    return AdaptConfig(
        teacher="sam-vit-stand-in",
        method="lora",
        model_kwargs=TINY_STAND_IN,
        crop="box",
        federated=FederatedConfig(rounds=2, **federated),
        train=TrainConfig(steps=1, batch_size=2, lr=1e-2, warmup_steps=0, bf16=False, seed=3),
    )


def _weighted_mean(replies) -> dict[str, np.ndarray]:
    weights = np.array([float(r.content["metrics"]["num-examples"]) for r in replies])
    weights = weights / weights.sum()
    arrays = [{k: v.numpy() for k, v in r.content["arrays"].items()} for r in replies]
    return {key: sum(w * a[key] for w, a in zip(weights, arrays)) for key in arrays[0]}


def test_two_rounds_two_sites_aggregate_the_weighted_mean_and_send_only_trainable_parameters(
    synth_manifest_train: Path, tmp_path: Path
) -> None:
    pytest.importorskip("flwr")
    from flwr.app import ArrayRecord
    from medkd.distill.federated import run_server, site_for
    from medkd.distill.federated_local import LocalGrid, client_app

    class RecordingGrid(LocalGrid):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            self.rounds: list[tuple[list, list]] = []

        def send_and_receive(self, messages, *, timeout=None):
            messages = list(messages)
            replies = list(super().send_and_receive(messages, timeout=timeout))
            if messages:  # the evaluation half of a round sends nothing (no federated evaluation)
                self.rounds.append((messages, replies))
            return replies

    config = _lora_config()
    sites = {"dataset:synth-2d": 16, "dataset:synth-3d": 41}  # training objects per site
    grid = RecordingGrid(client_app, {n: {"data": str(synth_manifest_train), "site": s, "work": str(tmp_path / str(n))} for n, s in enumerate(sites, 1)})
    try:
        sam, metrics = run_server(grid, config, sites=2)
    finally:
        site_for.cache_clear()

    torch.manual_seed(config.train.seed)
    start = prepare_teacher(config)  # the server's initial global model
    trainable = trainable_state(start)
    assert len(grid.rounds) == 2
    for messages, replies in grid.rounds:
        assert len(messages) == len(replies) == 2
        for message in [*messages, *replies]:
            assert set(next(iter(message.content.array_records.values())).keys()) == set(trainable)
        assert sorted(float(r.content["metrics"]["num-examples"]) for r in replies) == sorted(sites.values())
    # round 1's aggregate is the weighted mean of the sites' updates, and round 2 starts from it
    first_mean = _weighted_mean(grid.rounds[0][1])
    second_global = {k: v.numpy() for k, v in grid.rounds[1][0][0].content["arrays"].items()}
    updates = [{k: v.numpy() for k, v in r.content["arrays"].items()} for r in grid.rounds[0][1]]
    moved = [key for key in trainable if not np.allclose(updates[0][key], updates[1][key])]
    assert moved  # the sites' updates differ, so the weights matter
    for key in trainable:
        np.testing.assert_allclose(second_global[key], first_mean[key], rtol=1e-6, atol=1e-7)
    assert not np.allclose(second_global[moved[0]], (updates[0][moved[0]] + updates[1][moved[0]]) / 2)
    # round 2's aggregate, merged into the saved weights: W + scaling * B_mean @ A_mean
    final = _weighted_mean(grid.rounds[1][1])
    prefix = "image_encoder.base_model.model.blocks.0.attn.qkv"
    a, b = final[f"{prefix}.lora_A.default.weight"], final[f"{prefix}.lora_B.default.weight"]
    base = start.state_dict()[f"{prefix}.base_layer.weight"].numpy()
    expected = base + config.lora_alpha / config.lora_rank * (b @ a)
    np.testing.assert_allclose(sam.state_dict()["image_encoder.blocks.0.attn.qkv.weight"].numpy(), expected, rtol=1e-5, atol=1e-6)
    # bytes: each message carries the trainable parameters alone, as Flower serialises them
    per_message = ArrayRecord(trainable).count_bytes()
    communication = metrics["federated"]["communication"]
    for exchange in communication["per_round"]:
        assert exchange["array_bytes_to_sites"] == exchange["array_bytes_from_sites"] == 2 * per_message
    assert communication["trainable_parameter_bytes"] == 4 * sum(t.numel() for t in trainable.values()) < per_message
    full = sum(t.numel() * t.element_size() for t in sam.state_dict().values())
    assert communication["full_weights_total_bytes"] == 2 * 4 * full
    assert communication["total_bytes"] == sum(e["bytes_to_sites"] + e["bytes_from_sites"] for e in communication["per_round"])
    assert communication["total_bytes"] < 0.01 * communication["full_weights_total_bytes"]


def test_fedprox_adds_half_mu_times_the_squared_distance_to_the_global_parameters() -> None:
    module = torch.nn.Linear(3, 2)

    class Task:
        def __init__(self) -> None:
            self.module = module

        def loss(self, outputs, batch):
            return outputs.sum(), {}

    task = ProximalTask(Task(), mu=0.5)
    with torch.no_grad():
        module.weight += 2.0  # six weights moved by 2 from the round's start; the bias has not moved
    outputs = module(torch.ones(1, 3))
    loss, metrics = task.loss(outputs, {})
    assert metrics["proximal"] == pytest.approx(6 * 4.0)
    assert float(loss.detach()) == pytest.approx(float(outputs.sum().detach()) + 0.25 * 24.0)


def test_subject_sites_partition_the_subjects(synth_manifest_train: Path) -> None:
    rows = load_manifest(synth_manifest_train).select("train")
    groups = [site_rows(rows, f"subjects:{i}/3") for i in range(3)]
    subjects = [{(r.dataset, r.subject) for r in group} for group in groups]
    assert sum(len(g) for g in groups) == len(rows)
    assert all(s and not (s & t) for i, s in enumerate(subjects) for t in subjects[i + 1 :])
    assert {r.id for r in site_rows(rows, "dataset:synth-3d")} == {r.id for r in rows if r.dataset == "synth-3d"}


@pytest.mark.parametrize(
    "extra, message",
    [(["--rounds", "2"], "need --federated"), (["--federated", "--sites", "hospitals"], "federated.sites")],
)
def test_bad_federated_options_are_one_line_errors(
    synth_manifest_train: Path, tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    if "--federated" in extra:
        pytest.importorskip("flwr")
    from medkd.cli import run

    assert run(tiny_adapt_args(synth_manifest_train, tmp_path / "t", *extra)) == 2
    assert message in capsys.readouterr().err
