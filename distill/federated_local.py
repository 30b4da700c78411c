"""Federated adaptation with every site in this process: Flower's ``ServerApp`` logic and
``ClientApp`` exactly as deployed, joined by a grid that hands each message to its node's
``ClientApp`` at once (one site after another, no Ray, no network).

``medkd adapt --federated`` splits one manifest into sites (``federated.sites``), runs the rounds,
validates the aggregated teacher on the validation split (the data is all here) and writes the
teacher artifact that ``medkd adapt`` writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from uuid import uuid4

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity
from medkd.distill.adapt import AdaptConfig, save_teacher, teacher_inputs, validate_teacher
from medkd.distill.distributed import World
from medkd.distill.federated import client_app, run_server, site_for
from medkd.distill.federated_site import simulated_sites, site_rows
from medkd.distill.selection import capped_per_dataset

from medkd.data import RowLoader, load_manifest
from medkd.data.cache import ArrayCache, default_cache_dir
from medkd.errors import BadInput
from medkd.zoo import trained_preprocessing

RUN_ID = 1


class LocalGrid(Grid):
    """A Flower grid whose nodes are ``ClientApp`` calls in this process, one ``node_config`` each."""

    def __init__(self, app: ClientApp, node_configs: dict[int, dict[str, Any]]) -> None:
        self.app = app
        self.contexts = {
            node_id: Context(run_id=RUN_ID, node_id=node_id, node_config=config, state=RecordDict(), run_config={})
            for node_id, config in node_configs.items()
        }
        self._run = Run.create_empty(RUN_ID)
        # who sends the server's messages, as Flower's own simulation declares it
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = RUN_ID, SUPERLINK_NODE_ID, 1
        self.replies: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver each message to its node and keep the reply; the ids to pull the replies with."""
        ids = []
        for message in messages:
            message_id = uuid4().hex
            message.metadata.__dict__["_message_id"] = message_id  # what a SuperLink assigns on receipt
            node = message.metadata.dst_node_id
            if node not in self.contexts:
                raise BadInput(f"no node {node} in this process")
            self.replies[message_id] = self.app(message, self.contexts[node])
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self.replies.pop(i) for i in message_ids if i in self.replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


def run_federated_adapt(config: AdaptConfig, data: Path, out: Path, world: World) -> dict[str, Any]:
    """Simulate ``config.federated`` over the sites of the manifest ``data``; the teacher into ``out``."""
    if world.distributed:
        raise BadInput("federated adaptation simulates its sites in one process: run it without torchrun")
    manifest = load_manifest(data)
    sites = simulated_sites(manifest, config)
    train_rows = capped_per_dataset(manifest.select("train", config.datasets), config.max_objects_per_dataset)
    node_configs = {
        node: {"data": str(data), "site": spec, "work": str(out / "sites" / name)}
        for node, (name, spec) in enumerate(sites.items(), start=1)
    }
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        sam, metrics = run_server(LocalGrid(client_app, node_configs), config, len(sites))
    finally:
        site_for.cache_clear()  # the sites' teachers
    metrics["train_seconds_this_session"] = round(time.monotonic() - started, 1)
    metrics["federated"]["site_objects"] = {name: len(site_rows(train_rows, spec)) for name, spec in sites.items()}
    loader = RowLoader(manifest, ArrayCache(default_cache_dir()))
    preprocessing = trained_preprocessing(config.teacher, config.model_kwargs, config.crop, config.checkpoint)
    metrics.update(validate_teacher(config, sam, manifest.select("val", config.datasets), loader, preprocessing, world))
    save_teacher(config, sam, out, teacher_inputs(config, data), metrics, preprocessing)
    return metrics
