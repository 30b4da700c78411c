"""Model zoo: ``create_model`` / ``list_models`` over SAM teachers and distillation students."""

from medkd.zoo import models as _entries  # noqa: F401  (registers the zoo's entries)
from medkd.zoo.artifact import (
    WEIGHTS_FILE,
    create_model,
    load_model,
    save_model_artifact,
)
from medkd.zoo.checkpoints import load_checkpoint, packaged_checkpoint, read_state_dict
from medkd.zoo.defaults import default_preprocessing, model_preprocessing, recorded_preprocessing, trained_preprocessing
from medkd.zoo.profile import ModelProfile, profile_model
from medkd.zoo.registry import CheckpointInfo, ModelSpec, get_spec, list_models, split_model_ref

__all__ = [
    "WEIGHTS_FILE",
    "CheckpointInfo",
    "ModelProfile",
    "ModelSpec",
    "create_model",
    "default_preprocessing",
    "get_spec",
    "list_models",
    "load_checkpoint",
    "load_model",
    "model_preprocessing",
    "packaged_checkpoint",
    "profile_model",
    "read_state_dict",
    "recorded_preprocessing",
    "save_model_artifact",
    "split_model_ref",
    "trained_preprocessing",
]
