"""The models the API's examples name: shipped models that can do what each route does (a test checks each
against models/)."""

EXAMPLE_MODEL = "mnist-vae"
EXAMPLE_CONDITIONAL_MODEL = "mnist-cvae"
