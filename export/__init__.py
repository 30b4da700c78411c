"""ONNX, TensorRT and AOTInductor export, and the runtime sessions that run them."""
