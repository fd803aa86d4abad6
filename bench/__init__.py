"""`make bench`: raw onnxruntime vs the service on this machine; `python -m bench.run --help`."""
