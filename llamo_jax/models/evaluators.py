"""Text-motion evaluators: embed captions and motions into one space (docs/design.md, Evaluators).

Two families, both trained contrastively by `llamo_jax.tasks.evaluator`:

`GuoEvaluator` is the HumanML3D evaluator architecture of Guo et al. (CVPR 2022) layer for
layer, so the released PyTorch weights load into it (`llamo_jax.import_evaluator`):
  movement encoder  Conv1d(k4,s2,p1) -> Dropout -> LeakyReLU(0.2), twice, then Linear:
                    normalised features without the 4 foot-contact dims [B, T, D] -> [B, T/4, M]
  motion encoder    Linear -> BiGRU (hidden 1024) over the first length/4 latents -> last states
                    of both directions [B, 2H] -> Linear, LayerNorm, LeakyReLU, Linear -> [B, E]
  text encoder      word vectors [B, L, 300] + Linear(POS one-hot [B, L, 15]) -> Linear -> BiGRU
                    (hidden 512) over the first `length` tokens -> the same head -> [B, E]
  Each BiGRU starts from a learned initial state (2, H). Embeddings are compared by Euclidean
  distance (unnormalised), as the released evaluator does. Word vectors come from a table in
  the model (`word_table`): GloVe for the released weights, learned for ours.

`TMREvaluator` is TMR-style (Petrovich et al., ICCV 2023) without the VAE branch: a
transformer over [CLS, motion patches of 4 frames] and one over [CLS, words], CLS -> Linear -> L2-normalised
[B, E], compared by cosine similarity; trained with a symmetric InfoNCE.

Shapes: B batch, T frames, L words, D feature dims, H GRU hidden, E embedding.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from llamo_jax.core import config_dataclass
from llamo_jax.models.causal_conv import REPLICATED

NUM_POS = 15  # the released WordVectorizer's POS_enumerator (VERB ... Desc_VIP, OTHER)
UNIT_LENGTH = 4  # frames per movement latent (two stride-2 convolutions)


def _param(value: jax.Array) -> nnx.Param:
  """A replicated Param: evaluators are small, data parallelism is all they need."""
  return nnx.Param(value, **REPLICATED(value.ndim))


def _xavier(rngs: nnx.Rngs, fan_in: int, fan_out: int) -> nnx.Param:
  return _param(nnx.initializers.xavier_normal()(rngs.params(), (fan_in, fan_out), jnp.float32))


def _layer_norm(dim: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs, scale_metadata=REPLICATED(1), bias_metadata=REPLICATED(1))


class Linear(nnx.Module):
  """y = x @ kernel + bias, kernel [in, out] (xavier-normal, zero bias, as the reference inits)."""

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
    self.kernel = _xavier(rngs, in_features, out_features)
    self.bias = _param(jnp.zeros((out_features,), jnp.float32))

  def __call__(self, x: jax.Array) -> jax.Array:
    return x @ self.kernel[...] + self.bias[...]


def _dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
  """Inverted dropout when `key` is given (training), identity otherwise."""
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


# --------------------------------------------------------------------------- recurrent


class GRU(nnx.Module):
  """One direction of a GRU with PyTorch's gate layout (r, z, n) and two biases.

    r = sigmoid(x Wir + bir + h Whr + bhr);  z = sigmoid(x Wiz + biz + h Whz + bhz)
    n = tanh(x Win + bin + r * (h Whn + bhn));  h' = (1 - z) * n + z * h
  kernel_i [D, 3H] = torch weight_ih.T, kernel_h [H, 3H] = weight_hh.T.
  """

  def __init__(self, in_features: int, hidden: int, *, rngs: nnx.Rngs):
    bound = hidden ** -0.5  # torch's default GRU init
    init = nnx.initializers.uniform(2 * bound)
    shift = lambda a: a - bound
    self.hidden = hidden
    self.kernel_i = _param(shift(init(rngs.params(), (in_features, 3 * hidden), jnp.float32)))
    self.kernel_h = _param(shift(init(rngs.params(), (hidden, 3 * hidden), jnp.float32)))
    self.bias_i = _param(shift(init(rngs.params(), (3 * hidden,), jnp.float32)))
    self.bias_h = _param(shift(init(rngs.params(), (3 * hidden,), jnp.float32)))

  def __call__(self, x: jax.Array, lengths: jax.Array, h0: jax.Array, *, reverse: bool = False) -> jax.Array:
    """The state after reading x[b, :lengths[b]] ([B, T, D]) from h0 [B, H] -> [B, H].

    reverse=True reads each sequence backwards from its own last valid step, as a packed
    PyTorch sequence does; steps past `lengths` never touch the state.
    """
    steps = jnp.arange(x.shape[1])
    valid = steps[None, :] < lengths[:, None]  # [B, T]
    if reverse:
      order = jnp.where(valid, lengths[:, None] - 1 - steps[None, :], steps[None, :])
      x = jnp.take_along_axis(x, order[..., None], axis=1)
    xi = x @ self.kernel_i[...] + self.bias_i[...]  # all input projections at once: [B, T, 3H]
    kernel_h, bias_h = self.kernel_h[...], self.bias_h[...]

    def update(h, x_t, valid_t):
      xr, xz, xn = jnp.split(x_t, 3, axis=-1)
      hr, hz, hn = jnp.split(h @ kernel_h + bias_h, 3, axis=-1)
      r = jax.nn.sigmoid(xr + hr)
      z = jax.nn.sigmoid(xz + hz)
      n = jnp.tanh(xn + r * hn)
      return jnp.where(valid_t[:, None], (1.0 - z) * n + z * h, h)

    def step(h, inputs):
      x_t, valid_t = inputs
      # Once every sequence of the batch has ended, skip the matmul (padded batches of short clips).
      return jax.lax.cond(jnp.any(valid_t), update, lambda h, *_: h, h, x_t, valid_t), None

    h, _ = jax.lax.scan(step, h0, (xi.swapaxes(0, 1), valid.T))
    return h


class BiGRUCo(nnx.Module):
  """Linear -> BiGRU from a learned initial state -> [last fwd; last bwd] -> the co-embedding head."""

  def __init__(self, in_features: int, hidden: int, out_features: int, *, rngs: nnx.Rngs):
    self.input_emb = Linear(in_features, hidden, rngs=rngs)
    self.forward_gru = GRU(hidden, hidden, rngs=rngs)
    self.backward_gru = GRU(hidden, hidden, rngs=rngs)
    self.initial_state = _param(jax.random.normal(rngs.params(), (2, hidden), jnp.float32))
    self.head_in = Linear(2 * hidden, hidden, rngs=rngs)
    self.head_norm = _layer_norm(hidden, rngs)
    self.head_out = Linear(hidden, out_features, rngs=rngs)

  def __call__(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
    """x [B, T, in], lengths [B] (>= 1) -> [B, out]."""
    x = self.input_emb(x)
    h0 = jnp.broadcast_to(self.initial_state[...][:, None], (2, x.shape[0], x.shape[-1]))
    last = jnp.concatenate([self.forward_gru(x, lengths, h0[0]),
                            self.backward_gru(x, lengths, h0[1], reverse=True)], axis=-1)
    return self.head_out(jax.nn.leaky_relu(self.head_norm(self.head_in(last)), 0.2))


class MovementConvEncoder(nnx.Module):
  """[B, T, D] -> [B, T/4, M]: (Conv1d k4 s2 p1, Dropout, LeakyReLU 0.2) x 2, Linear."""

  def __init__(self, in_features: int, hidden: int, out_features: int, dropout: float, *, rngs: nnx.Rngs):
    conv = lambda i, o: nnx.Conv(i, o, kernel_size=(4,), strides=(2,), padding=((1, 1),),
                                 kernel_init=nnx.initializers.xavier_normal(), rngs=rngs,
                                 kernel_metadata=REPLICATED(3), bias_metadata=REPLICATED(1))
    self.conv1 = conv(in_features, hidden)
    self.conv2 = conv(hidden, out_features)
    self.out = Linear(out_features, out_features, rngs=rngs)
    self.dropout = dropout

  def __call__(self, x: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    keys = jax.random.split(dropout_key) if dropout_key is not None else (None, None)
    x = jax.nn.leaky_relu(_dropout(self.conv1(x), self.dropout, keys[0]), 0.2)
    x = jax.nn.leaky_relu(_dropout(self.conv2(x), self.dropout, keys[1]), 0.2)
    return self.out(x)


# --------------------------------------------------------------------------- Guo et al.


@dataclasses.dataclass(frozen=True)
class GuoConfig(config_dataclass.FromDict):
  """Sizes of `GuoEvaluator`; the defaults are the released HumanML3D evaluator's."""
  input_dim: int = 259        # hml263 without its 4 foot-contact dims
  vocab_size: int = 0         # rows of the word table (set from the vocabulary)
  word_dim: int = 300         # GloVe's width
  movement_hidden: int = 512
  movement_latent: int = 512
  text_hidden: int = 512
  motion_hidden: int = 1024
  embed_dim: int = 512
  dropout: float = 0.2
  train_word_table: bool = True  # False for imported GloVe vectors (kept frozen if fine-tuned)


class GuoEvaluator(nnx.Module):
  """The HumanML3D evaluator (see the module docstring)."""

  def __init__(self, config: GuoConfig, *, rngs: nnx.Rngs):
    if config.vocab_size < 1:
      raise ValueError(f"GuoConfig.vocab_size must be >= 1 (the word table's rows), got {config.vocab_size}.")
    self.config = config
    self.word_table = _param(0.3 * jax.random.normal(rngs.params(), (config.vocab_size, config.word_dim),
                                                     jnp.float32))
    self.movement_encoder = MovementConvEncoder(config.input_dim, config.movement_hidden,
                                                config.movement_latent, config.dropout, rngs=rngs)
    self.motion_encoder = BiGRUCo(config.movement_latent, config.motion_hidden, config.embed_dim, rngs=rngs)
    self.pos_emb = Linear(NUM_POS, config.word_dim, rngs=rngs)
    self.text_encoder = BiGRUCo(config.word_dim, config.text_hidden, config.embed_dim, rngs=rngs)

  def encode_motion(self, features: jax.Array, lengths: jax.Array, dropout_key: jax.Array | None = None
                    ) -> jax.Array:
    """Normalised features [B, T, input_dim] (zero past each length; T a multiple of 4), lengths
    [B] in frames (multiples of 4) -> [B, E]. The GRU reads lengths // 4 latents."""
    movements = self.movement_encoder(features, dropout_key)
    return self.motion_encoder(movements, jnp.maximum(lengths // UNIT_LENGTH, 1))

  def encode_text(self, words: jax.Array, pos: jax.Array, lengths: jax.Array) -> jax.Array:
    """Word ids [B, L], POS ids [B, L] (0..14), lengths [B] (tokens incl. sos/eos) -> [B, E]."""
    vectors = jnp.take(self.word_table[...], words, axis=0)
    inputs = vectors + self.pos_emb(jax.nn.one_hot(pos, NUM_POS, dtype=vectors.dtype))
    return self.text_encoder(inputs, lengths)


def guo_contrastive_loss(text: jax.Array, motion: jax.Array, shifts: jax.Array, margin: float
                         ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The released evaluator's loss on [B, E] embeddings: matched pairs pulled together (d^2), and
  the motions rolled by each of `shifts` (ints in 1..B-1; the release draws one per step) pushed
  past `margin` (max(0, margin - d)^2), averaged over the shifts."""
  dist = lambda a, b: jnp.sqrt(jnp.sum(jnp.square(a - b + 1e-6), axis=-1))  # F.pairwise_distance
  d_pos = dist(text, motion)
  d_neg = jax.vmap(lambda s: dist(text, jnp.roll(motion, -s, axis=0)))(shifts)  # [S, B]
  loss_pos = jnp.mean(jnp.square(d_pos))
  loss_neg = jnp.mean(jnp.square(jnp.maximum(margin - d_neg, 0.0)))
  return loss_pos + loss_neg, {"loss_pos": loss_pos, "loss_neg": loss_neg,
                               "dist_pos": jnp.mean(d_pos), "dist_neg": jnp.mean(d_neg)}


# --------------------------------------------------------------------------- TMR-style


@dataclasses.dataclass(frozen=True)
class TMRConfig(config_dataclass.FromDict):
  """Sizes of `TMREvaluator`."""
  input_dim: int = 263
  vocab_size: int = 0          # rows of the learned word table (set from the vocabulary)
  text_feature_dim: int = 0    # > 0: the text encoder reads given features [B, L, this] instead
  width: int = 256
  layers: int = 4
  heads: int = 4
  mlp_dim: int = 1024
  embed_dim: int = 256
  dropout: float = 0.1
  max_frames: int = 196
  max_words: int = 64
  frames_per_token: int = 4    # motion tokens are patches of this many frames (4: guo's unit length)


class TransformerEncoder(nnx.Module):
  """Linear in, learned positions, a CLS token, pre-LN self-attention blocks; CLS -> Linear, L2-normalised."""

  def __init__(self, in_features: int, config: TMRConfig, max_len: int, *, rngs: nnx.Rngs):
    c = config
    self.config = c
    self.input = Linear(in_features, c.width, rngs=rngs)
    self.cls = _param(0.02 * jax.random.normal(rngs.params(), (c.width,), jnp.float32))
    self.positions = _param(0.02 * jax.random.normal(rngs.params(), (max_len + 1, c.width), jnp.float32))
    self.attn_norms = nnx.List([_layer_norm(c.width, rngs) for _ in range(c.layers)])
    self.attn_qkv = nnx.List([Linear(c.width, 3 * c.width, rngs=rngs) for _ in range(c.layers)])
    self.attn_out = nnx.List([Linear(c.width, c.width, rngs=rngs) for _ in range(c.layers)])
    self.mlp_norms = nnx.List([_layer_norm(c.width, rngs) for _ in range(c.layers)])
    self.mlp_in = nnx.List([Linear(c.width, c.mlp_dim, rngs=rngs) for _ in range(c.layers)])
    self.mlp_out = nnx.List([Linear(c.mlp_dim, c.width, rngs=rngs) for _ in range(c.layers)])
    self.final_norm = _layer_norm(c.width, rngs)
    self.out = Linear(c.width, c.embed_dim, rngs=rngs)
    self.max_len = max_len

  def __call__(self, x: jax.Array, lengths: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    """x [B, T, in] (T <= max_len), lengths [B] -> unit vectors [B, E]."""
    b, t = x.shape[:2]
    if t > self.max_len:
      raise ValueError(f"TMR encoder got {t} steps; it was built for at most {self.max_len}.")
    h = self.input(x)
    h = jnp.concatenate([jnp.broadcast_to(self.cls[...], (b, 1, h.shape[-1])), h], axis=1)
    h = h + self.positions[...][:t + 1]
    valid = jnp.arange(t + 1)[None, :] <= lengths[:, None]  # CLS + the first `length` steps
    bias = jnp.where(valid, 0.0, -1e9)[:, None, None, :]  # [B, 1, 1, T+1]: keys past the length
    heads = self.config.heads
    keys = (list(jax.random.split(dropout_key, 2 * self.config.layers))
            if dropout_key is not None else [None] * (2 * self.config.layers))
    rate = self.config.dropout
    for i in range(self.config.layers):
      q, k, v = jnp.split(self.attn_qkv[i](self.attn_norms[i](h)), 3, axis=-1)
      q, k, v = (x.reshape(b, t + 1, heads, -1) for x in (q, k, v))
      scores = jnp.einsum("bqnh,bknh->bnqk", q, k) / jnp.sqrt(q.shape[-1]) + bias
      a = jnp.einsum("bnqk,bknh->bqnh", jax.nn.softmax(scores, axis=-1), v).reshape(b, t + 1, -1)
      a = self.attn_out[i](a)
      h = h + _dropout(a, rate, keys[2 * i])
      m = self.mlp_out[i](jax.nn.gelu(self.mlp_in[i](self.mlp_norms[i](h))))
      h = h + _dropout(m, rate, keys[2 * i + 1])
    z = self.out(self.final_norm(h[:, 0]))
    return z / jnp.linalg.norm(z, axis=-1, keepdims=True).clip(1e-6)


class TMREvaluator(nnx.Module):
  """Motion and text transformers into a shared unit sphere (see the module docstring)."""

  def __init__(self, config: TMRConfig, *, rngs: nnx.Rngs):
    if config.text_feature_dim <= 0 and config.vocab_size < 1:
      raise ValueError("TMRConfig needs vocab_size >= 1 (learned words) or text_feature_dim > 0.")
    self.config = config
    text_in = config.text_feature_dim if config.text_feature_dim > 0 else config.width
    if config.text_feature_dim <= 0:
      self.word_table = _param(0.02 * jax.random.normal(rngs.params(), (config.vocab_size, config.width),
                                                        jnp.float32))
    p = config.frames_per_token
    self.motion_encoder = TransformerEncoder(config.input_dim * p, config, -(-config.max_frames // p), rngs=rngs)
    self.text_encoder = TransformerEncoder(text_in, config, config.max_words, rngs=rngs)

  def encode_motion(self, features: jax.Array, lengths: jax.Array, dropout_key: jax.Array | None = None
                    ) -> jax.Array:
    """Normalised features [B, T, D] (zero past each length), lengths [B] -> [B, E] unit vectors."""
    b, t, d = features.shape
    p = self.config.frames_per_token
    features = jnp.pad(features, ((0, 0), (0, -t % p), (0, 0))).reshape(b, -(-t // p), p * d)
    return self.motion_encoder(features, -(-lengths // p), dropout_key)

  def encode_text(self, words: jax.Array, lengths: jax.Array, dropout_key: jax.Array | None = None
                  ) -> jax.Array:
    """Word ids [B, L] (or text features [B, L, text_feature_dim]), lengths [B] -> [B, E]."""
    inputs = jnp.take(self.word_table[...], words, axis=0) if words.ndim == 2 else words
    return self.text_encoder(inputs, lengths, dropout_key)


def infonce_loss(text: jax.Array, motion: jax.Array, same_text: jax.Array, temperature: float
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Symmetric InfoNCE over a batch of unit vectors [B, E]; `same_text` [B, B] marks pairs whose
  captions are near-duplicates: off the diagonal they are not used as negatives (TMR's filtering)."""
  logits = text @ motion.T / temperature
  eye = jnp.eye(text.shape[0], dtype=bool)
  logits = jnp.where(same_text & ~eye, -1e9, logits)
  labels = jnp.arange(text.shape[0])
  t2m = -jnp.mean(jax.nn.log_softmax(logits, axis=1)[labels, labels])
  m2t = -jnp.mean(jax.nn.log_softmax(logits, axis=0)[labels, labels])
  top1 = jnp.mean(jnp.argmax(logits, axis=1) == labels)
  return 0.5 * (t2m + m2t), {"loss_t2m": t2m, "loss_m2t": m2t, "batch_top1": top1.astype(jnp.float32)}
