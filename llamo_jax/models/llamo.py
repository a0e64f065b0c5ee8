"""LLaMo: MoT Llama + motion adapter + flow-matching head + exit head, and losses.

Param paths: the Llama's (embed, layers.text, final_norm, lm_head) unchanged,
plus layers.motion.* (motion expert), special_embed.embedding [2,D] ([BOM],
[EOM]), motion_in.{kernel,bias} (latent C -> D), flow_head.*, exit_head.*.

Token ids: text ids are the base vocabulary [0, V). [BOM] = V and [EOM] = V+1
(`bom_id(cfg)`, `eom_id(cfg)`); their embeddings are the small trainable
`special_embed` table, so the frozen base table stays untouched. Text logits
cover the base vocabulary only (frozen LM head): never put [BOM]/[EOM] in the
text targets (the exit head decides where motion ends).

Batch format of `LLaMo.loss` (all [B,T] unless said; T = packed length):
  tokens       int32  text ids (incl. [BOM]/[EOM] ids); any value (0) at motion positions
  latents      f32 [B,T,C] the motion latent fed at motion positions, zeros elsewhere
  modality     int32  0 text (incl. BOS/BOM/EOM/EOS), 1 motion latent
  positions    int32  RoPE positions (0.. within each packed segment)
  segment_ids  int32  packed-example id (>= 1), 0 for padding
  text_targets int32  the next token id (tokens shifted left), < V
  text_mask    f32    1 where text_targets is a trained text target
  flow_targets f32 [B,T,C] the next latent: at position p, the latent of
                      token p+1 when token p+1 is a motion token
  flow_mask    f32    1 where flow_targets is a target (p+1 is a motion token:
                      from the [BOM] position up to the second-to-last motion token)
  exit_labels  f32    1 at the position of the last motion token mK, else 0
  exit_mask    f32    1 at every motion-token position (m1..mK)
  cond_mask    f32    (optional) 1 at caption tokens that condition motion; per
                      sequence, with prob cfg_dropout, they move to a segment of
                      their own (-segment id) so nothing attends to them: the
                      unconditional branch used by classifier-free guidance.
E.g. `[BOS] text [BOM] m1..mK [EOM] text [EOS]`: flow targets at [BOM]..m_{K-1}
(the latents m1..mK), exit label 1 at mK (its next token is [EOM]), text
targets on the text part that is trained.

At inference the unconditional h for CFG comes from the same prompt with the
caption tokens given their own segment id (exactly as dropped in training).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from flax import nnx
import jax
import jax.numpy as jnp
import optax

from llamo_jax.core import config_dataclass
from llamo_jax.models import flow_head as flow_lib
from llamo_jax.models import mot as mot_lib
from llamo_jax.models.attention import KVCache
from llamo_jax.models.layers import Dense, make_param
from llamo_jax.models.llama import LlamaConfig, init_cache
from llamo_jax.pytorch import layout  # the export format's field values, shared with the PyTorch side

# Trainable top-level modules per stage (docs/design.md, Staged recipe); all else stays frozen.
STAGES: dict[str, tuple[str, ...]] = {
    "align": ("motion_in", "flow_head", "special_embed"),
    "joint": ("motion", "motion_in", "flow_head", "exit_head", "special_embed"),
    "anneal": ("flow_head", "exit_head"),
}


@dataclasses.dataclass(frozen=True)
class LLaMoConfig(config_dataclass.FromDict):
  """LLaMo shapes and loss weights (hashable)."""
  llama: LlamaConfig
  latent_dim: int = 32
  split: str = "all"                   # "all" (paper) | "ffn"
  text_capacity: int | None = None     # MoT buffer sizes per sequence (None: T)
  motion_capacity: int | None = None
  flow_width: int = 1024
  flow_depth: int = 3
  k_t: int = 4
  sigma_tf: float = 0.1                # teacher-forcing noise std on input latents
  # "fixed": every sequence gets std sigma_tf; "uniform": each sequence draws its std from
  # U(0, sigma_tf), so some see a history too noisy to continue and must read the caption.
  sigma_tf_schedule: str = "fixed"
  lambda_text: float = 1.0
  lambda_exit: float = 0.1
  cfg_dropout: float = 0.1
  # The expert that runs the [BOM] position, whose h conditions the first latent. "text": the frozen
  # text expert (only [BOM]'s embedding trains); "motion": the trained motion expert, which reads
  # the caption as every later motion position does. [BOM] keeps its text-side embedding either way.
  bom_expert: str = "text"
  # Two-forward training (MotionStreamer's remedy for exposure bias): a first, gradient-free forward
  # predicts every T2M latent from its teacher-forced history (TWO_FORWARD_STEPS Euler steps of the
  # flow head); each motion input is then replaced by that prediction with this probability before
  # the forward that takes the loss, so the model learns to follow the caption from its own history.
  two_forward: float = 0.0
  # Gradient-free forwards before the one that takes the loss (two_forward > 0): each predicts from
  # the inputs the previous one left, so with 2 the second latent is predicted from a predicted first
  # one, as in free-running generation. Each costs one more forward per step.
  two_forward_passes: int = 1
  # Weight of the first latent's flow loss (the target at [BOM], conditioned by the caption
  # alone) against 1 for every later latent: free-running generation loses the text at the start.
  first_latent_weight: float = 1.0

  def __post_init__(self):
    if isinstance(self.llama, Mapping):
      object.__setattr__(self, "llama", LlamaConfig.from_dict(self.llama))
    if not isinstance(self.llama, LlamaConfig):
      raise ValueError(f"LLaMoConfig.llama must be a LlamaConfig or its dict, got {self.llama!r}.")
    if self.split not in mot_lib.SPLITS:
      raise ValueError(f"LLaMoConfig.split={self.split!r} is not one of {mot_lib.SPLITS}.")
    for name in ("latent_dim", "flow_width", "flow_depth", "k_t"):
      if getattr(self, name) <= 0:
        raise ValueError(f"LLaMoConfig.{name} must be positive, got {getattr(self, name)}.")
    if self.sigma_tf_schedule not in ("fixed", "uniform"):
      raise ValueError(f"LLaMoConfig.sigma_tf_schedule={self.sigma_tf_schedule!r}: choose 'fixed' or 'uniform'.")
    if self.bom_expert not in layout.BOM_EXPERTS:
      raise ValueError(f"LLaMoConfig.bom_expert={self.bom_expert!r}: choose one of {layout.BOM_EXPERTS}.")
    if not 0.0 <= self.two_forward <= 1.0:
      raise ValueError(f"LLaMoConfig.two_forward is a probability in [0,1], got {self.two_forward}.")
    if self.two_forward_passes < 1:
      raise ValueError(f"LLaMoConfig.two_forward_passes must be >= 1, got {self.two_forward_passes}.")
    if self.first_latent_weight <= 0:
      raise ValueError(f"LLaMoConfig.first_latent_weight must be positive, got {self.first_latent_weight}.")
    if not 0.0 <= self.cfg_dropout < 1.0:
      raise ValueError(f"LLaMoConfig.cfg_dropout must be in [0,1), got {self.cfg_dropout}.")


TWO_FORWARD_STEPS = 4  # Euler steps of the first forward's predictions (LLaMoConfig.two_forward)


def bom_id(cfg: LLaMoConfig) -> int:
  return cfg.llama.vocab_size


def eom_id(cfg: LLaMoConfig) -> int:
  return cfg.llama.vocab_size + 1


class SpecialEmbed(nnx.Module):
  """The trainable [BOM]/[EOM] embeddings [2,D] (row 0 [BOM], row 1 [EOM]).

  Its own small table (not rows of the frozen base table), with the 2-row
  axis unsharded so any tensor-parallel mesh accepts it.
  """

  def __init__(self, dim: int, *, rngs: nnx.Rngs, dtype: Any, param_dtype: Any):
    self.embedding = make_param(rngs, (2, dim), (None, "embed"), param_dtype)
    self.dtype = dtype

  def __call__(self, idx: jax.Array) -> jax.Array:
    """idx [B,T] in {0,1} -> [B,T,D]."""
    return jnp.take(self.embedding[...], idx, axis=0).astype(self.dtype)


class LLaMo(mot_lib.MoT):
  """The unified motion-language model."""

  def __init__(self, cfg: LLaMoConfig, *, rngs: nnx.Rngs):
    lc = cfg.llama
    super().__init__(lc, split=cfg.split, text_capacity=cfg.text_capacity,
                     motion_capacity=cfg.motion_capacity, rngs=rngs)
    self.config = cfg
    dt, pdt = lc.compute_dtype, lc.weight_dtype
    self.special_embed = SpecialEmbed(lc.dim, rngs=rngs, dtype=dt, param_dtype=pdt)
    self.motion_in = Dense("BTC,CD->BTD", (cfg.latent_dim, lc.dim), (None, "embed"),
                           rngs=rngs, dtype=dt, param_dtype=pdt)
    self.flow_head = flow_lib.FlowHead(cfg.latent_dim, lc.dim, cfg.flow_width, cfg.flow_depth,
                                       rngs=rngs)
    self.exit_head = flow_lib.Linear(lc.dim, 1, rngs=rngs)

  def embed_inputs(self, tokens: jax.Array, latents: jax.Array, modality: jax.Array
                   ) -> jax.Array:
    """Token/[BOM]/[EOM] embeddings at text positions, adapted latents at motion ones."""
    v = self.cfg.vocab_size
    text = self.embed_tokens(jnp.clip(tokens, 0, v - 1))
    special = self.special_embed(jnp.clip(tokens - v, 0, 1))
    text = jnp.where((tokens >= v)[..., None], special, text)
    motion = self.motion_in(latents).astype(text.dtype)
    return jnp.where((modality == mot_lib.MOTION)[..., None], motion, text)

  def experts(self, tokens: jax.Array, modality: jax.Array) -> jax.Array:
    """The expert each position runs [B,T] (mot.TEXT | mot.MOTION): its modality, except [BOM]
    under `bom_expert="motion"`."""
    if self.config.bom_expert == "motion":
      return jnp.where(tokens == bom_id(self.config), mot_lib.MOTION, modality)
    return modality

  def __call__(self, tokens: jax.Array, latents: jax.Array, modality: jax.Array,
               positions: jax.Array | None = None, segment_ids: jax.Array | None = None,
               cache: KVCache | None = None, buffers: mot_lib.Buffers | None = None
               ) -> tuple[jax.Array, jax.Array, KVCache | None]:
    """tokens [B,T], latents [B,T,C], modality [B,T] -> (logits [B,T,V] f32, h [B,T,D], cache).

    h is the final-normed hidden state (for motion positions: the motion expert's).
    `buffers` caps the MoT expert buffers of this call (`MoT.routing`).
    """
    if latents.shape != tokens.shape + (self.config.latent_dim,):
      raise ValueError(f"latents have shape {latents.shape}; expected [B,T,C]="
                       f"{tokens.shape + (self.config.latent_dim,)}.")
    h, cache, _ = self.mot_backbone(self.embed_inputs(tokens, latents, modality),
                                    self.experts(tokens, modality), positions, segment_ids, cache,
                                    buffers)
    return self.logits(h), h, cache

  def own_history(self, batch: Mapping[str, jax.Array], latents: jax.Array, segment_ids: jax.Array,
                  rng: jax.Array, replace: jax.Array | None = None) -> jax.Array:
    """Two-forward training's inputs (LLaMoConfig.two_forward): the clean latents [B,T,C] with each
    motion input whose latent is a flow target replaced, with probability two_forward, by the
    model's gradient-free prediction of it from the (teacher-forced, noised) `latents` before it.
    `replace` [B,T] bool fixes which inputs are replaced (drawn here when None)."""
    noise_rng, pick_rng = jax.random.split(rng)
    _, h, _ = self(batch["tokens"], latents, batch["modality"], batch["positions"], segment_ids)
    h = jax.lax.stop_gradient(h.astype(jnp.float32))
    x0 = jax.random.normal(noise_rng, h.shape[:-1] + (self.config.latent_dim,))
    # Only positions that predict a latent need the ODE (flow_rows); the others keep zeros.
    rows = self.flow_rows(batch["flow_mask"])
    pred_rows = flow_lib.integrate_head(self.flow_head, mot_lib.gather(h, rows), mot_lib.gather(x0, rows),
                                        steps=TWO_FORWARD_STEPS)
    pred = jnp.zeros_like(x0).at[jnp.arange(rows.shape[0])[:, None], rows].set(pred_rows)
    pred = jax.lax.stop_gradient(pred)
    # Position i-1 predicts the latent input at i (data/sequences.py: flow targets are the next latent).
    if replace is None:
      replace = self.own_history_mask(batch, pick_rng)
    return jnp.where(replace[..., None], jnp.roll(pred, 1, axis=1), batch["latents"])

  def flow_rows(self, flow_mask: jax.Array) -> jax.Array:
    """[B,R] positions that hold every flow target of flow_mask [B,T] (targets first, in order;
    then filler positions whose mask is 0). A target's latent is a motion token, so R is the MoT
    motion buffer (`motion_capacity`): the flow head runs on R rows per sequence instead of T."""
    r = mot_lib.capacities(flow_mask.shape[1], None, self.config.motion_capacity)[1]
    return jnp.argsort(flow_mask <= 0, axis=1, stable=True)[:, :r].astype(jnp.int32)

  def own_history_mask(self, batch: Mapping[str, jax.Array], rng: jax.Array) -> jax.Array:
    """[B,T] bool: the motion inputs own_history replaces, each with probability two_forward."""
    predicted = jnp.roll(batch["flow_mask"], 1, axis=1).at[:, 0].set(0) > 0
    return (predicted & (batch["modality"] == mot_lib.MOTION)
            & jax.random.bernoulli(rng, self.config.two_forward, predicted.shape))

  def exit_logits(self, h: jax.Array) -> jax.Array:
    """h [...,D] -> logit [...] that this motion token is the last one."""
    return self.exit_head(h)[..., 0]

  def loss(self, batch: Mapping[str, jax.Array], rng: jax.Array
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Total L_flow + lambda_text*L_text + lambda_exit*L_exit (batch: module docstring)."""
    cfg = self.config
    tf_rng, drop_rng, flow_rng = jax.random.split(rng, 3)
    modality = batch["modality"]
    is_motion = (modality == mot_lib.MOTION)[..., None]
    sigma = cfg.sigma_tf
    if cfg.sigma_tf_schedule == "uniform":
      sigma = sigma * jax.random.uniform(jax.random.fold_in(rng, 3), (modality.shape[0], 1, 1))
    tf_noise = sigma * is_motion * jax.random.normal(tf_rng, batch["latents"].shape)
    latents = batch["latents"] + tf_noise
    segment_ids = batch["segment_ids"]
    text_mask = batch["text_mask"].astype(jnp.float32)
    if "cond_mask" in batch:
      drop = jax.random.bernoulli(drop_rng, cfg.cfg_dropout, (modality.shape[0], 1))
      dropped = drop & (batch["cond_mask"] > 0)
      segment_ids = jnp.where(dropped, -segment_ids, segment_ids)
      text_mask = text_mask * (1 - dropped)
    if cfg.two_forward > 0:
      own_rng = jax.random.fold_in(rng, 4)
      replace = self.own_history_mask(batch, jax.random.split(own_rng)[1])
      for k in range(cfg.two_forward_passes):
        pass_rng = own_rng if k == 0 else jax.random.fold_in(own_rng, k)
        latents = self.own_history(batch, latents, segment_ids, pass_rng, replace) + tf_noise
    logits, h, _ = self(batch["tokens"], latents, modality, batch["positions"], segment_ids)

    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["text_targets"])
    l_text = jnp.sum(ce * text_mask) / jnp.maximum(jnp.sum(text_mask), 1.0)
    h32 = h.astype(jnp.float32)
    rows = self.flow_rows(batch["flow_mask"])
    flow_weight = batch["flow_mask"]
    if cfg.first_latent_weight != 1.0:
      flow_weight = flow_weight * jnp.where(batch["tokens"] == bom_id(cfg), cfg.first_latent_weight, 1.0)
    l_flow = flow_lib.flow_loss(self.flow_head, mot_lib.gather(batch["flow_targets"], rows),
                                mot_lib.gather(h32, rows), mot_lib.gather(flow_weight, rows),
                                flow_rng, cfg.k_t)
    exit_mask = batch["exit_mask"].astype(jnp.float32)
    bce = optax.sigmoid_binary_cross_entropy(self.exit_logits(h32),
                                             batch["exit_labels"].astype(jnp.float32))
    l_exit = jnp.sum(bce * exit_mask) / jnp.maximum(jnp.sum(exit_mask), 1.0)
    total = l_flow + cfg.lambda_text * l_text + cfg.lambda_exit * l_exit
    # Tokens that did not fit their expert's buffer (padding past a buffer does not count).
    overflow = jnp.sum(~self.routing(self.experts(batch["tokens"], modality)).keep
                       & (batch["segment_ids"] != 0))
    return total, {"loss": total, "flow_loss": l_flow, "text_loss": l_text,
                   "exit_loss": l_exit, "route_overflow": overflow}


def trainable_filter(stage: str) -> nnx.filterlib.Filter:
  """nnx filter of the Params a training stage updates ("align" | "joint" | "anneal").

  The text expert, text embeddings, final norm and LM head are never selected.
  """
  if stage not in STAGES:
    raise ValueError(f"Unknown training stage {stage!r}; known stages: {sorted(STAGES)}.")
  return nnx.All(nnx.Param, nnx.Any(*(nnx.PathContains(name) for name in STAGES[stage])))


# ------------------------------------------------------------------ decoding

def for_inference(model: LLaMo) -> LLaMo:
  """`model` with full-length MoT buffers (in place; returns it).

  Training capacities fit the packed training rows; prompts, captions of whole
  clips and long generations need not fit them, and inference batches are small.
  """
  model.text_capacity = None
  model.motion_capacity = None
  return model


def prefill(model: LLaMo, tokens: jax.Array, latents: jax.Array, modality: jax.Array,
            max_len: int, positions: jax.Array | None = None,
            segment_ids: jax.Array | None = None, buffers: mot_lib.Buffers | None = None
            ) -> tuple[KVCache, jax.Array, jax.Array]:
  """Runs the prompt [B,T] into a fresh cache of max_len slots.

  `buffers` caps the MoT expert buffers (`MoT.routing`; e.g. (None, 1) for a text
  prompt whose only motion-expert token is its [BOM]).
  Returns (cache, logits [B,V] and h [B,D] of the last prompt token).
  """
  if latents.shape != tokens.shape + (model.config.latent_dim,):
    raise ValueError(f"latents have shape {latents.shape}; expected [B,T,C]="
                     f"{tokens.shape + (model.config.latent_dim,)}.")
  cache = init_cache(model.cfg, tokens.shape[0], max_len)
  h, cache, _ = model.mot_backbone(model.embed_inputs(tokens, latents, modality),
                                   model.experts(tokens, modality), positions, segment_ids, cache,
                                   buffers)
  # The LM head on the last position only: XLA does not sink the slice into the
  # [B,T,D]x[D,V] matmul, which would otherwise cost T times more.
  h = h[:, -1]
  return cache, model.logits(h[:, None])[:, 0], h


def decode_step(model: LLaMo, cache: KVCache, token: jax.Array, latent: jax.Array,
                modality: jax.Array, position: jax.Array, segment_id: jax.Array | None = None,
                buffers: mot_lib.Buffers | None = None) -> tuple[KVCache, jax.Array, jax.Array]:
  """Feeds one token per sequence: token [B] (text/[BOM]/[EOM]), latent [B,C]
  (used where modality [B] is 1), position [B]. `buffers` as in `prefill` ((0, None):
  every token is motion, the text expert is skipped). Returns (cache, logits [B,V], h [B,D])."""
  seg = None if segment_id is None else segment_id[:, None]
  logits, h, cache = model(token[:, None], latent[:, None], modality[:, None],
                           position[:, None], seg, cache, buffers)
  return cache, logits[:, 0], h[:, 0]
