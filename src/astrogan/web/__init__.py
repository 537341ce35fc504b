"""The "these nebulae do not exist" web app: FastAPI on ONNX Runtime, a shared pool, a refill worker."""
