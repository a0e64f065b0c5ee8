"""Published model shapes (HF config.json values) as LlamaConfigs."""
from __future__ import annotations

from llamo_jax.models.attention import RopeScaling
from llamo_jax.models.llama import LlamaConfig

# Llama 3.x long-context RoPE scaling (config.json "rope_scaling", rope_type llama3).
_LLAMA3_2_SCALING = RopeScaling(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                original_max_position_embeddings=8192)
_LLAMA3_1_SCALING = RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                original_max_position_embeddings=8192)

PRESETS: dict[str, LlamaConfig] = {
    # CPU tests: same structure (GQA, tied off, rope scaling on) at toy size.
    "tiny": LlamaConfig(
        vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
        ffn_dim=128, rope_theta=10000.0, rope_scaling=_LLAMA3_2_SCALING,
        max_seq_len=512),
    "smollm2_135m": LlamaConfig(  # HuggingFaceTB/SmolLM2-135M
        vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3, head_dim=64,
        ffn_dim=1536, norm_eps=1e-5, rope_theta=100000.0, tie_embeddings=True,
        max_seq_len=8192),
    "llama3_2_1b": LlamaConfig(  # meta-llama/Llama-3.2-1B
        vocab_size=128256, dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, head_dim=64,
        ffn_dim=8192, norm_eps=1e-5, rope_theta=500000.0, rope_scaling=_LLAMA3_2_SCALING,
        tie_embeddings=True, max_seq_len=131072),
    "llama3_2_3b": LlamaConfig(  # meta-llama/Llama-3.2-3B
        vocab_size=128256, dim=3072, n_layers=28, n_heads=24, n_kv_heads=8, head_dim=128,
        ffn_dim=8192, norm_eps=1e-5, rope_theta=500000.0, rope_scaling=_LLAMA3_2_SCALING,
        tie_embeddings=True, max_seq_len=131072),
    "llama3_1_8b": LlamaConfig(  # meta-llama/Llama-3.1-8B
        vocab_size=128256, dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128,
        ffn_dim=14336, norm_eps=1e-5, rope_theta=500000.0, rope_scaling=_LLAMA3_1_SCALING,
        tie_embeddings=False, max_seq_len=131072),
}


def get_preset(name: str) -> LlamaConfig:
  """The preset `name`; raises ValueError listing the known names."""
  if name not in PRESETS:
    raise ValueError(f"Unknown model preset {name!r}; known presets: {sorted(PRESETS)}.")
  return PRESETS[name]
