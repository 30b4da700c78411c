"""Vendor bundles: one signed archive per target with a run's deployable models and what they are.

A bundle (``NAME.medkd``, a gzip tar) holds ``variants/NAME/`` (export-layout artifact directories:
ONNX FP32 / FP16 / INT8, TensorRT engines), ``data/DATASET/LICENSE-*``, ``MODEL_CARD.md``,
``manifest.json`` (schema in :mod:`medkd.bundle.schema`: model, target, provenance chain, tensors,
preprocessing, prompts, precision, engine and ONNX requirements, accuracy, latency, licences, and the
SHA-256 and size of every file) and optionally ``manifest.sig`` (Ed25519 over ``manifest.json``'s
bytes). A bundle is accepted only when a key of the trust store signed it (:mod:`medkd.bundle.trust`).

Typical use::

    result = pack_bundle(Path("runs/stand-in"), Path("litemedsam.medkd"), PackOptions("jetson-orin", key=Path("vendor.pem")))
    trust = trust_policy("vendor.pem.pub")   # trust_policy(): the store $MEDKD_TRUST_STORE names
    verification = verify_bundle(Path("litemedsam.medkd"), trust)
    segmenter = load_bundle_segmenter(Path("litemedsam.medkd"), trust)   # then medkd.runtime.segment.segment_image
"""

from medkd.bundle.checks import Check
from medkd.bundle.device import DeviceProfile, local_device
from medkd.bundle.pack import PackOptions, PackResult, pack_bundle
from medkd.bundle.runtime import default_variant, load_bundle_segmenter
from medkd.bundle.schema import BundleManifest, parse_manifest
from medkd.bundle.signing import generate_keypair
from medkd.bundle.targets import TARGETS
from medkd.bundle.trust import TrustPolicy, TrustStore, load_trust_store, trust_policy
from medkd.bundle.unpack import UnpackLimits, UnsafeBundle, scan_bundle
from medkd.bundle.verify import Verification, verify_bundle

__all__ = [
    "TARGETS",
    "BundleManifest",
    "Check",
    "DeviceProfile",
    "PackOptions",
    "PackResult",
    "TrustPolicy",
    "TrustStore",
    "UnpackLimits",
    "UnsafeBundle",
    "Verification",
    "default_variant",
    "generate_keypair",
    "load_bundle_segmenter",
    "load_trust_store",
    "local_device",
    "pack_bundle",
    "parse_manifest",
    "scan_bundle",
    "trust_policy",
    "verify_bundle",
]
