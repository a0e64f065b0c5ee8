"""Causal language modelling of the Llama backbone on packed text.

Used as the backbone's smoke run and as "stage 0" of the demo: a tiny text LLM
trained on the corpus captions, so captioning has a language model to start from.
"""
from __future__ import annotations

from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

from llamo_jax.convert import pretrained
from llamo_jax.data import prepare
from llamo_jax.data import text as text_data
from llamo_jax.data.tokenizer import Tokenizer
from llamo_jax.models.llama import Llama, LlamaConfig
from llamo_jax.training import task as task_lib


def next_token_loss(logits: jax.Array, tokens: jax.Array, segment_ids: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
  """Mean next-token cross-entropy within segments, and the number of predicted tokens.

  logits [B,T,V] predicts tokens[:, 1:]; a target counts when it is in the same
  (non-padding) segment as its input position.
  """
  targets = tokens[:, 1:]
  valid = (segment_ids[:, 1:] == segment_ids[:, :-1]) & (segment_ids[:, 1:] > 0)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1].astype(jnp.float32), targets)
  n = jnp.maximum(valid.sum(), 1)
  return jnp.where(valid, ce, 0.0).sum() / n, valid.sum()


class LanguageModelTask(task_lib.Task):
  """Config keys: model (LlamaConfig fields; vocab_size 0 = the tokenizer's), init_from
  (pretrained dir from `import_llm`, optional), tokenizer (path, optional), tokenizer_vocab_size
  (SentencePiece trained on the corpus when neither is given), data.corpus (see
  llamo_jax.data.prepare), data.seq_len,
  data.batch_size (global), eval_batches."""

  def prepare(self) -> None:
    cfg = self.config
    self.corpus_dir = prepare.ensure_synthetic_corpus(cfg.data.corpus)
    if cfg.get("init_from", ""):
      self.tokenizer = Tokenizer.load(f"{cfg.init_from}/tokenizer")
    elif cfg.get("tokenizer", ""):
      self.tokenizer = Tokenizer.load(cfg.tokenizer)
    else:
      sp_model = self.workdir / "tokenizer" / "sp.model"
      if jax.process_index() == 0 and not sp_model.exists():
        lines = text_data.read_caption_lines(self.corpus_dir, "train")
        text_data.train_sentencepiece(lines, cfg.tokenizer_vocab_size, sp_model.with_suffix(""))
        logging.info("trained a %d-piece SentencePiece tokenizer on %d captions -> %s",
                     cfg.tokenizer_vocab_size, len(lines), sp_model)
      multihost_utils.sync_global_devices("tokenizer")
      self.tokenizer = Tokenizer.load(str(sp_model))
    model_dict = cfg.model.to_dict()
    if not model_dict.get("vocab_size"):
      model_dict["vocab_size"] = self.tokenizer.vocab_size
    self.model_config = LlamaConfig.from_dict(model_dict)
    if self.tokenizer.vocab_size > self.model_config.vocab_size:
      raise ValueError(f"The tokenizer has {self.tokenizer.vocab_size} tokens but config.model.vocab_size is "
                       f"{self.model_config.vocab_size}; set config.model.vocab_size=0 to size it from the tokenizer.")

  def prepare_shapes(self) -> None:
    """Model shapes without data: vocab_size 0 = the pretrained model's (init_from), else the
    SentencePiece size the run would train (tokenizer_vocab_size)."""
    cfg = self.config
    model_dict = cfg.model.to_dict()
    if not model_dict.get("vocab_size"):
      if cfg.get("init_from", ""):
        model_dict["vocab_size"] = pretrained.read_config(cfg.init_from).vocab_size
      elif cfg.get("tokenizer", ""):
        raise ValueError("config.model.vocab_size=0 with config.tokenizer: set the vocab size to compile "
                         "without reading the tokenizer (--config.model.vocab_size=N).")
      else:
        model_dict["vocab_size"] = int(cfg.tokenizer_vocab_size)
    self.model_config = LlamaConfig.from_dict(model_dict)

  def abstract_batch(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """The packed rows `data.text.make_text_loader` yields: int32 [B, T]."""
    shape = (batch_size, int(self.config.data.seq_len))
    return {k: jax.ShapeDtypeStruct(shape, jnp.int32) for k in ("tokens", "segment_ids", "positions")}

  def make_model(self, rngs: nnx.Rngs) -> nnx.Module:
    return Llama(self.model_config, rngs=rngs)

  def load_pretrained(self, model: nnx.Module) -> None:
    if self.config.get("init_from", ""):
      cfg, loaded, _ = pretrained.load_pretrained(self.config.init_from)
      if cfg != self.model_config:
        raise ValueError(f"config.model does not match the pretrained model in {self.config.init_from}: "
                         f"{cfg} vs {self.model_config}. Use the preset of that model.")
      nnx.update(model, jax.tree.map(lambda new, old: jax.device_put(new, old.sharding),
                                     nnx.state(loaded), nnx.state(model)))

  def loss(self, model, batch, rng):
    del rng
    logits, _ = model(batch["tokens"], positions=batch["positions"], segment_ids=batch["segment_ids"])
    loss, n_tokens = next_token_loss(logits, batch["tokens"], batch["segment_ids"])
    return loss, {"ppl": jnp.exp(loss), "target_tokens": n_tokens.astype(jnp.float32)}

  def _token_lists(self, split: str) -> list[list[int]]:
    lines = text_data.read_caption_lines(self.corpus_dir, split)
    return [self.tokenizer.encode(line, add_bos=True, add_eos=True) for line in lines]

  def make_loader(self, split: str, *, seed: int, process_index: int, process_count: int) -> Iterator:
    return text_data.make_text_loader(
        self._token_lists(split), seq_len=self.config.data.seq_len,
        global_batch_size=self.config.data.batch_size, seed=seed,
        process_index=process_index, process_count=process_count)

  def units_per_batch(self, batch):
    return "tokens", float(np.prod(batch["tokens"].shape))

  def evaluate(self, model, step, writer):
    """Held-out next-token loss and perplexity over `config.eval_batches` val batches."""
    del step, writer
    loader = self.make_loader("val", seed=0, process_index=jax.process_index(),
                              process_count=jax.process_count())
    eval_fn = nnx.jit(lambda m, b: self.loss(m, b, None)[0])
    losses = []
    for _ in range(self.config.get("eval_batches", 4)):
      losses.append(float(eval_fn(model, self.global_batch(next(loader)))))
    loss = float(np.mean(losses))
    return {"loss": loss, "ppl": float(np.exp(loss))}
