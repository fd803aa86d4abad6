"""The model-folder format: manifest schema, confined file reads, graph I/O contract and the fitted-prior file.

Shared by training (which writes model folders) and the service (which validates and loads them); it imports
pydantic, numpy and the standard library only, and nothing of either.
"""
