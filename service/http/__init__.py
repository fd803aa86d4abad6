"""The web layer, the only part that imports the web framework: the app, the edge, the data plane (inference routes on
public ASGI), the control plane (FastAPI), bodies, images, rendering, OpenAPI, and the one seam with uvicorn."""
