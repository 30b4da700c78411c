"""Federated teacher adaptation on Flower: the ``ServerApp`` and ``ClientApp`` of ``medkd adapt --federated``.

Only the trainable parameters travel (LoRA, adapters or the mask decoder, as the method leaves them),
as Flower ``ArrayRecord``s; the server aggregates them with Flower's own strategies (``FedAvg``,
``FedProx``, optionally wrapped in its server-side DP clipping), weighted by each site's training
objects. The server sends the adapt configuration with every round, so a site needs only its own
manifest. The same two apps run in one process (``medkd.distill.federated_local``) or on separate
machines (``flower-superlink``, ``flower-supernode`` per site, ``flwr run``: see the README); every
message through the server's grid is counted in bytes, beside what full weights would have cost.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg, FedProx, Strategy
from flwr.supercore.run import Run
from medkd.distill.adapt import AdaptConfig, FederatedConfig, finalize_teacher, prepare_teacher, save_teacher, teacher_inputs, trainable_fraction
from medkd.distill.distributed import init_world
from medkd.distill.federated_site import Site, load_trainable, trainable_state
from torch import nn

from medkd.config import from_mapping, load_yaml
from medkd.errors import BadInput
from medkd.zoo import trained_preprocessing

CONFIG_KEY = "medkd-adapt"  # the adapt configuration (JSON) in every round's ConfigRecord


def make_strategy(federated: FederatedConfig, sites: int) -> Strategy:
    """Flower's FedAvg or FedProx over all ``sites`` every round (no federated evaluation rounds),
    inside its server-side fixed-clipping DP wrapper when a noise multiplier is set."""
    sampling = {"fraction_evaluate": 0.0, "min_train_nodes": sites, "min_available_nodes": sites}
    if federated.aggregation == "fedprox":
        strategy: Strategy = FedProx(proximal_mu=federated.proximal_mu, **sampling)
    else:
        strategy = FedAvg(**sampling)
    if federated.dp_noise_multiplier > 0:
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy, federated.dp_noise_multiplier, federated.dp_clipping_norm, num_sampled_clients=sites
        )
    return strategy


def _bytes(messages: Iterable[Message]) -> tuple[int, int]:
    """(all records, arrays alone) in bytes of ``messages``' contents, as Flower counts them."""
    total = arrays = 0
    for message in messages:
        if message.has_content():
            total += sum(record.count_bytes() for record in message.content.values())
            arrays += sum(record.count_bytes() for record in message.content.array_records.values())
    return total, arrays


class CountingGrid(Grid):
    """A grid that passes everything to ``grid`` and counts the bytes of each exchange it carries."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.exchanges: list[dict[str, int]] = []

    def set_run(self, run: Run) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        self._count(messages, [])
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.grid.pull_messages(message_ids))
        self._count([], replies)
        return replies

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        self._count(messages, replies)
        return replies

    def _count(self, sent: list[Message], received: list[Message]) -> None:
        (sent_total, sent_arrays), (received_total, received_arrays) = _bytes(sent), _bytes(received)
        self.exchanges.append(
            {
                "messages_to_sites": len(sent),
                "messages_from_sites": len(received),
                "bytes_to_sites": sent_total,
                "bytes_from_sites": received_total,
                "array_bytes_to_sites": sent_arrays,
                "array_bytes_from_sites": received_arrays,
            }
        )


def communication(exchanges: list[dict[str, int]], full_model_bytes: int, trainable_bytes: int) -> dict[str, Any]:
    """Bytes per round and in all, against sending the full weights in every message instead."""
    per_round = [{**e, "bytes": e["bytes_to_sites"] + e["bytes_from_sites"]} for e in exchanges if e["messages_to_sites"]]
    total = sum(e["bytes"] for e in per_round)
    full = sum(full_model_bytes * (e["messages_to_sites"] + e["messages_from_sites"]) for e in per_round)
    return {
        "per_round": per_round,
        "total_bytes": total,
        "trainable_parameter_bytes": trainable_bytes,
        "full_model_bytes": full_model_bytes,
        "full_weights_total_bytes": full,
        "fraction_of_full_weights": total / full if full else None,
    }


def _tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def run_server(grid: Grid, config: AdaptConfig, sites: int) -> tuple[nn.Module, dict[str, Any]]:
    """Run ``config.federated.rounds`` rounds over ``sites`` sites on ``grid``; the finalised teacher
    (LoRA merged) and the run's metrics (communication, per-round site metrics)."""
    if config.federated is None:
        raise BadInput("federated adaptation needs a 'federated' section in the adapt configuration")
    torch.manual_seed(config.train.seed)
    sam = prepare_teacher(config)
    trainable, total = trainable_fraction(sam)
    state = trainable_state(sam)
    counting = CountingGrid(grid)
    result = make_strategy(config.federated, sites).start(
        grid=counting,
        initial_arrays=ArrayRecord(state),
        num_rounds=config.federated.rounds,
        train_config=ConfigRecord({CONFIG_KEY: json.dumps(asdict(config))}),
    )
    if not len(result.arrays):
        raise BadInput("no site sent an update: the federated run produced no model")
    load_trainable(sam, result.arrays.to_torch_state_dict())
    sam = finalize_teacher(sam)
    full_bytes = _tensor_bytes(sam.state_dict().values())  # what sending the whole teacher would cost
    metrics = {
        "trainable_params": trainable,
        "total_params": total,
        "federated": {
            "sites": sites,
            "rounds": {str(r): dict(m) for r, m in result.train_metrics_clientapp.items()},
            "communication": communication(counting.exchanges, full_bytes, _tensor_bytes(state.values())),
        },
    }
    return sam, metrics


@functools.lru_cache(maxsize=None)
def site_for(config_json: str, data: str, spec: str, work: str) -> Site:
    """The site a node plays, built once per process and configuration (the teacher, its objects)."""
    config = from_mapping(AdaptConfig, json.loads(config_json), where="adapt")
    return Site(config, Path(data), spec, Path(work), init_world())


client_app = ClientApp()


@client_app.train()
def train_site(message: Message, context: Context) -> Message:
    """One round at this node's site: local steps from the global parameters, the new ones back.

    The node's ``node_config`` names its manifest (``data``), optionally the part of it that is the
    site (``site``: ``dataset:NAME`` / ``subjects:I/N``) and where the round logs go (``work``)."""
    if "data" not in context.node_config:
        raise BadInput("this node's node_config names no 'data' manifest")
    config = message.content["config"]
    site = site_for(
        str(config[CONFIG_KEY]),
        str(context.node_config["data"]),
        str(context.node_config.get("site", "")),
        str(context.node_config.get("work", "medkd-federated-site")),
    )
    global_state = dict(message.content["arrays"].to_torch_state_dict())
    state, metrics = site.train_round(global_state, int(config["server-round"]), float(config.get("proximal-mu", 0.0)))
    return Message(RecordDict({"arrays": ArrayRecord(state), "metrics": MetricRecord(metrics)}), reply_to=message)


server_app = ServerApp()


@server_app.main()
def serve(grid: Grid, context: Context) -> None:
    """The deployed server: the adapt section of the ``recipe`` in the run config, waiting for
    ``sites`` nodes, writes the teacher artifact to ``out``."""
    for key in ("recipe", "out"):
        if key not in context.run_config:
            raise BadInput(f"the run config names no '{key}'")
    section = load_yaml(str(context.run_config["recipe"])).get("adapt", {})
    config = from_mapping(AdaptConfig, {"federated": {}, **section}, where="adapt")
    sam, metrics = run_server(grid, config, int(context.run_config.get("sites", 2)))
    out = Path(str(context.run_config["out"]))
    preprocessing = trained_preprocessing(config.teacher, config.model_kwargs, config.crop, config.checkpoint)
    save_teacher(config, sam, out, teacher_inputs(config, None), metrics, preprocessing)

