"""`python -m data_pipelines.synthetic`: writes the procedural motion-text corpus (llamo_jax.synthetic)."""
