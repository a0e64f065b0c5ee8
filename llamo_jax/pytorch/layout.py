"""The layout of an exported LLaMo folder (no torch needed: the JAX exporter writes it).

  DIR/config.json          {"format": FORMAT, "format_version": VERSION,
                            "llamo": LLaMo shapes, "vae": VAE shapes,
                            "motion": {"representation", "fps"},
                            "skeleton": {"joint_names", "parents", "raw_offsets",
                                         "offsets" (metres)} (motion/skeleton.py, for BVH),
                            "tokens": {"bom_id", "eom_id", "bos_id", "eos_id",
                                       "t2m_template", "m2t_template"},
                            "sampling": default sampler settings, "source": where it came from}
  DIR/model.safetensors    the LLaMo, float32; the text expert under transformers' Llama names
                           (model.embed_tokens, model.layers.i.*, model.norm, lm_head), the
                           motion expert as model.motion_layers.i.* (same suffixes),
                           special_embed.weight [2,D] ([BOM],[EOM]), motion_in.weight [D,C],
                           flow_head.* and exit_head.* (torch Linear layout [out,in] + bias)
  DIR/vae.safetensors      the motion VAE, float32 (encoder.*, decoder.*: every causal conv
                           as NAME.conv.weight [Cout,Cin,k] + NAME.conv.bias), and the
                           statistics stats.feature_mean/std [Cin], stats.latent_mean/std [C]
  DIR/tokenizer/           the model's tokenizer (data/tokenizer.py's saved form)
"""
FORMAT = "llamo_pytorch"
VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
VAE_FILE = "vae.safetensors"
TOKENIZER_DIR = "tokenizer"
STATS = ("feature_mean", "feature_std", "latent_mean", "latent_std")

# Fields of config.json's "llamo" and "vae" sections (the PyTorch modules' constructor args).
LLAMO_FIELDS = ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim",
                "norm_eps", "rope_theta", "rope_scaling", "tie_embeddings", "latent_dim", "split",
                "flow_width", "flow_depth", "bom_expert")
# Fields an older export may lack, with the value it was made with.
LLAMO_DEFAULTS = {"bom_expert": "text"}
BOM_EXPERTS = ("text", "motion")  # LLaMoConfig.bom_expert (models/llamo.py checks against this)
VAE_FIELDS = ("input_dim", "latent_dim", "width", "depth", "dilation_growth_rate", "activation")
SPLITS = ("all", "ffn")
ACTIVATIONS = ("relu", "silu", "gelu")
REPRESENTATIONS = ("hml263", "mm272")
