"""Encoder then decoder in one call (reconstruct): z = mu goes from one session to the next by IO binding.

On CUDA the latent stays in GPU memory between the graphs (no device-to-host-to-device round trip); on the CPU the
binding is a plain hand-over. Either way it is one worker-thread hop instead of two. Feeds are the encoder's inputs
plus, for a conditional decoder, `label`; the one output is the decoder's `image`.
"""

from __future__ import annotations

import time

from ..metrics import Metrics
from .providers import GPU_PROVIDERS
from .runner import Feeds, Outputs, Session, Timing, rows_of


class Chain:
    """A `Graph` (service/engine/runner.py) made of two sessions, named graph "reconstruct" in the metrics."""

    graph = "reconstruct"

    def __init__(self, encoder: Session, decoder: Session, *, metrics: Metrics, device_id: int = 0) -> None:
        self.encoder = encoder.session
        self.decoder = decoder.session
        self.model = encoder.model
        self.version = encoder.version
        self.device = "cuda" if self.encoder.get_providers()[0] in GPU_PROVIDERS else "cpu"
        self.device_id = device_id if self.device == "cuda" else 0
        self._encoder_inputs = [i.name for i in self.encoder.get_inputs()]
        self._decoder_inputs = [i.name for i in self.decoder.get_inputs() if i.name != "z"]
        self.timing = Timing(metrics, self.model, self.version, self.graph)

    @property
    def providers(self) -> list[str]:
        return self.decoder.get_providers()

    @property
    def seconds_per_row(self) -> float | None:
        return self.timing.seconds_per_row

    def run(self, outputs: list[str], feeds: Feeds, rows: int | None = None) -> Outputs:
        start = time.perf_counter()
        result = self.run_untimed(outputs, feeds)
        self.timing.record(time.perf_counter() - start, rows_of(feeds) if rows is None else rows)
        return result

    def run_untimed(self, outputs: list[str], feeds: Feeds) -> Outputs:
        if outputs != ["image"]:
            raise ValueError(f"a chain returns ['image'], not {outputs}")
        encoder = self.encoder.io_binding()
        for name in self._encoder_inputs:
            encoder.bind_cpu_input(name, feeds[name])
        encoder.bind_output("mu", self.device, self.device_id)
        self.encoder.run_with_iobinding(encoder)
        decoder = self.decoder.io_binding()
        decoder.bind_ortvalue_input("z", encoder.get_outputs()[0])
        for name in self._decoder_inputs:
            decoder.bind_cpu_input(name, feeds[name])
        decoder.bind_output("image", "cpu")
        self.decoder.run_with_iobinding(decoder)
        result: Outputs = decoder.copy_outputs_to_cpu()
        return result
