"""The engine: onnxruntime and nothing else. Providers, sessions, runners, the micro-batcher, large batches split
across threads, memory."""
