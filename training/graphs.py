"""Run an exported encoder/decoder pair with onnxruntime, so evaluation and reports measure what ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


class OnnxPair:
    """encoder.onnx + decoder.onnx of one model folder, on the CPU, in batches."""

    def __init__(self, folder: Path, batch: int = 1000):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.encoder = ort.InferenceSession(
            str(Path(folder) / "encoder.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        self.decoder = ort.InferenceSession(
            str(Path(folder) / "decoder.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        self.encoder_inputs = {i.name for i in self.encoder.get_inputs()}
        self.decoder_inputs = {i.name for i in self.decoder.get_inputs()}
        self.decoder_outputs = [o.name for o in self.decoder.get_outputs()]
        self.batch = batch

    def _run(self, session, feeds: dict[str, np.ndarray | None], wanted: set[str]) -> dict[str, np.ndarray]:
        given = {k: v for k, v in feeds.items() if k in wanted and v is not None}
        n = len(next(iter(given.values())))
        names = [o.name for o in session.get_outputs()]
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for start in range(0, n, self.batch):
            chunk = {k: v[start : start + self.batch] for k, v in given.items()}
            for name, out in zip(names, session.run(names, chunk), strict=True):
                parts[name].append(out)
        return {name: np.concatenate(p) for name, p in parts.items()}

    def encode(self, images: np.ndarray, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """images float32 [N, C, H, W] in [0, 1] -> {'mu': [N, D], 'logvar': [N, D] (absent for an ae)}."""
        return self._run(self.encoder, {"image": images, "label": labels}, self.encoder_inputs)

    def decode(self, z: np.ndarray, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """z float32 [N, D] -> {'image': [N, C, H, W], 'logits': ... (bernoulli only)}."""
        return self._run(self.decoder, {"z": z, "label": labels}, self.decoder_inputs)
