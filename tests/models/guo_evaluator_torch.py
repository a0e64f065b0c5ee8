"""A PyTorch re-implementation of the released HumanML3D evaluator (EricGuo5513/text-to-motion:
networks/modules.py MovementConvEncoder / TextEncoderBiGRUCo / MotionEncoderBiGRUCo,
networks/evaluator_wrapper.py get_co_embeddings, utils/word_vectorizer.py WordVectorizer and the
evaluation loader's token handling), written from the published code for the import-parity test.
Module and parameter names follow the released state dicts.
"""
import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

POS_ENUMERATOR = {"VERB": 0, "NOUN": 1, "DET": 2, "ADP": 3, "NUM": 4, "AUX": 5, "PRON": 6, "ADJ": 7, "ADV": 8,
                  "Loc_VIP": 9, "Body_VIP": 10, "Obj_VIP": 11, "Act_VIP": 12, "Desc_VIP": 13, "OTHER": 14}
VIP_DICT = {
    "Loc_VIP": ("left", "right", "clockwise", "counterclockwise", "anticlockwise", "forward", "back", "backward",
                "up", "down", "straight", "curve"),
    "Body_VIP": ("arm", "chin", "foot", "feet", "face", "hand", "mouth", "leg", "waist", "eye", "knee", "shoulder",
                 "thigh"),
    "Obj_VIP": ("stair", "dumbbell", "chair", "window", "floor", "car", "ball", "handrail", "baseball", "basketball"),
    "Act_VIP": ("walk", "run", "swing", "pick", "bring", "kick", "put", "squat", "throw", "hop", "dance", "jump",
                "turn", "stumble", "dance", "stop", "sit", "lift", "lower", "raise", "wash", "stand", "kneel",
                "stroll", "rub", "bend", "balance", "flap", "jog", "shuffle", "lean", "rotate", "spin", "spread",
                "climb"),
    "Desc_VIP": ("slowly", "carefully", "fast", "careful", "slow", "quickly", "happy", "angry", "sad", "happily",
                 "angrily", "sadly"),
}


def init_weight(m):
  if isinstance(m, (nn.Conv1d, nn.Linear, nn.ConvTranspose1d)):
    nn.init.xavier_normal_(m.weight)
    if m.bias is not None:
      nn.init.constant_(m.bias, 0)


class MovementConvEncoder(nn.Module):

  def __init__(self, input_size, hidden_size, output_size):
    super().__init__()
    self.main = nn.Sequential(
        nn.Conv1d(input_size, hidden_size, 4, 2, 1), nn.Dropout(0.2, inplace=True), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv1d(hidden_size, output_size, 4, 2, 1), nn.Dropout(0.2, inplace=True), nn.LeakyReLU(0.2, inplace=True))
    self.out_net = nn.Linear(output_size, output_size)
    self.main.apply(init_weight)
    self.out_net.apply(init_weight)

  def forward(self, inputs):
    outputs = self.main(inputs.permute(0, 2, 1)).permute(0, 2, 1)
    return self.out_net(outputs)


class TextEncoderBiGRUCo(nn.Module):

  def __init__(self, word_size, pos_size, hidden_size, output_size):
    super().__init__()
    self.pos_emb = nn.Linear(pos_size, word_size)
    self.input_emb = nn.Linear(word_size, hidden_size)
    self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
    self.output_net = nn.Sequential(nn.Linear(hidden_size * 2, hidden_size), nn.LayerNorm(hidden_size),
                                    nn.LeakyReLU(0.2, inplace=True), nn.Linear(hidden_size, output_size))
    self.input_emb.apply(init_weight)
    self.pos_emb.apply(init_weight)
    self.output_net.apply(init_weight)
    self.hidden = nn.Parameter(torch.randn((2, 1, hidden_size), requires_grad=True))

  def forward(self, word_embs, pos_onehot, cap_lens):
    num_samples = word_embs.shape[0]
    inputs = word_embs + self.pos_emb(pos_onehot)
    input_embs = self.input_emb(inputs)
    hidden = self.hidden.repeat(1, num_samples, 1)
    emb = pack_padded_sequence(input_embs, cap_lens.data.tolist(), batch_first=True)
    _, gru_last = self.gru(emb, hidden)
    return self.output_net(torch.cat([gru_last[0], gru_last[1]], dim=-1))


class MotionEncoderBiGRUCo(nn.Module):

  def __init__(self, input_size, hidden_size, output_size):
    super().__init__()
    self.input_emb = nn.Linear(input_size, hidden_size)
    self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
    self.output_net = nn.Sequential(nn.Linear(hidden_size * 2, hidden_size), nn.LayerNorm(hidden_size),
                                    nn.LeakyReLU(0.2, inplace=True), nn.Linear(hidden_size, output_size))
    self.input_emb.apply(init_weight)
    self.output_net.apply(init_weight)
    self.hidden = nn.Parameter(torch.randn((2, 1, hidden_size), requires_grad=True))

  def forward(self, inputs, m_lens):
    num_samples = inputs.shape[0]
    input_embs = self.input_emb(inputs)
    hidden = self.hidden.repeat(1, num_samples, 1)
    emb = pack_padded_sequence(input_embs, m_lens.data.tolist(), batch_first=True)
    _, gru_last = self.gru(emb, hidden)
    return self.output_net(torch.cat([gru_last[0], gru_last[1]], dim=-1))


class WordVectorizer:

  def __init__(self, vectors, words, word2idx):
    self.word2vec = {w: vectors[word2idx[w]] for w in words}

  def _get_pos_ohot(self, pos):
    pos_vec = np.zeros(len(POS_ENUMERATOR))
    pos_vec[POS_ENUMERATOR.get(pos, POS_ENUMERATOR["OTHER"])] = 1
    return pos_vec

  def __getitem__(self, item):
    word, pos = item.split("/")
    if word in self.word2vec:
      word_vec = self.word2vec[word]
      vip_pos = None
      for key, values in VIP_DICT.items():
        if word in values:
          vip_pos = key
          break
      pos_vec = self._get_pos_ohot(vip_pos if vip_pos is not None else pos)
    else:
      word_vec = self.word2vec["unk"]
      pos_vec = self._get_pos_ohot("OTHER")
    return word_vec, pos_vec


def text_inputs(tokens, vectorizer, max_text_len=20):
  """The evaluation loader's (word_embeddings [22, 300], pos_one_hots [22, 15], sent_len)."""
  if len(tokens) < max_text_len:
    tokens = ["sos/OTHER"] + tokens + ["eos/OTHER"]
    sent_len = len(tokens)
    tokens = tokens + ["unk/OTHER"] * (max_text_len + 2 - sent_len)
  else:
    tokens = ["sos/OTHER"] + tokens[:max_text_len] + ["eos/OTHER"]
    sent_len = len(tokens)
  pairs = [vectorizer[t] for t in tokens]
  return (np.stack([p[0] for p in pairs]).astype(np.float32), np.stack([p[1] for p in pairs]).astype(np.float32),
          sent_len)


class EvaluatorWrapper:
  """get_co_embeddings of the released evaluator_wrapper.py (unit_length 4, eval mode)."""

  def __init__(self, movement_encoder, text_encoder, motion_encoder):
    self.movement_encoder, self.text_encoder, self.motion_encoder = movement_encoder, text_encoder, motion_encoder
    for m in (movement_encoder, text_encoder, motion_encoder):
      m.eval()

  @torch.no_grad()
  def get_co_embeddings(self, word_embs, pos_ohot, cap_lens, motions, m_lens):
    align_idx = np.argsort(m_lens.data.tolist())[::-1].copy()
    motions, m_lens = motions[align_idx], m_lens[align_idx]
    movements = self.movement_encoder(motions[..., :-4]).detach()
    m_lens = m_lens // 4
    motion_embedding = self.motion_encoder(movements, m_lens)
    text_embedding = self.text_encoder(word_embs, pos_ohot, cap_lens)[align_idx]
    return text_embedding, motion_embedding, align_idx
