"""The models: one model's life (load, warm up, serve, close), the registry that stores and finds them, and the
repository, the registry's only writer."""
