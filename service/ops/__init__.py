"""Domain operations over a served model, without HTTP: the latent-space operations and scoring."""
