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
    segmenter = load_bundle_segmenter(Path("litemedsam.medkd"), trust)   # then medkd.runtime.segment.segment_objects

Packing reads training artifacts (the full install); verifying and running a bundle needs only the
runtime install (no torch). The names below are imported on first use.
"""

from medkd.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "Check": "medkd.bundle.checks",
        "DeviceProfile": "medkd.bundle.device",
        "local_device": "medkd.bundle.device",
        "PackOptions": "medkd.bundle.pack",
        "PackResult": "medkd.bundle.pack",
        "pack_bundle": "medkd.bundle.pack",
        "default_variant": "medkd.bundle.runtime",
        "load_bundle_segmenter": "medkd.bundle.runtime",
        "BundleManifest": "medkd.bundle.schema",
        "parse_manifest": "medkd.bundle.schema",
        "generate_keypair": "medkd.bundle.signing",
        "TARGETS": "medkd.bundle.targets",
        "TrustPolicy": "medkd.bundle.trust",
        "TrustStore": "medkd.bundle.trust",
        "load_trust_store": "medkd.bundle.trust",
        "trust_policy": "medkd.bundle.trust",
        "UnpackLimits": "medkd.bundle.unpack",
        "UnsafeBundle": "medkd.bundle.unpack",
        "scan_bundle": "medkd.bundle.unpack",
        "Verification": "medkd.bundle.verify",
        "verify_bundle": "medkd.bundle.verify",
    },
)
