r"""Text to motion and motion to text with an exported LLaMo, in PyTorch (no JAX needed).

  python -m llamo_jax.torch_generate --model=DIR --prompt="a person jumps." --out=jump.npy
  python -m llamo_jax.torch_generate --model=DIR --prompt="a person jumps." --out=jump.bvh
  python -m llamo_jax.torch_generate --model=DIR --motion=clip_features.npy   # prints a caption

DIR is what `python -m llamo_jax.export --checkpoint=LLAMO_RUN --format=pytorch --out=DIR`
wrote. Text to motion writes FILE.npy (joints [T,22,3], metres, Y up) and
FILE_features.npy (the VAE's representation, denormalised); with --out=FILE.bvh also
FILE.bvh (our 22-joint hierarchy, rotations by inverse kinematics of the joints).
Sampler settings default to the exported run's config.sampling. --motion takes a .npy
of denormalised features [T, dim] in the export's representation (hml263: 263, mm272:
272; what the text-to-motion output writes as FILE_features.npy) and prints the greedy
caption as JSON.

Needs the torch extra: pip install -e ".[torch]". Imports torch and numpy, never jax.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from llamo_jax.pytorch import bundle as bundle_lib


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m llamo_jax.torch_generate",
                                   description=__doc__.split("\n\n")[0].strip(),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", required=True, help="An exported folder (export --format=pytorch).")
  parser.add_argument("--prompt", help="Text to turn into motion.")
  parser.add_argument("--motion", help="Features .npy [T, dim] to caption.")
  parser.add_argument("--out", help="Output FILE.npy or FILE.bvh for --prompt (default: motion.npy).")
  parser.add_argument("--seed", type=int, default=0, help="Seed of the initial noise.")
  parser.add_argument("--cfg_scale", type=float, default=None, help="Guidance weight (default: the run's).")
  parser.add_argument("--flow_steps", type=int, default=None, help="ODE steps (default: the run's).")
  parser.add_argument("--max_latents", type=int, default=None, help="Most latents, 4 frames each.")
  parser.add_argument("--temperature", type=float, default=None, help="Initial noise scale.")
  args = parser.parse_args(argv)
  if not args.prompt and not args.motion:
    parser.error("nothing to do: pass --prompt=TEXT (text to motion) and/or --motion=FILE (caption).")
  if args.out and pathlib.Path(args.out).suffix not in (".npy", ".bvh"):
    parser.error(f"--out={args.out} must end with .npy or .bvh.")
  return args


def text_to_motion(bundle: bundle_lib.Bundle, args: argparse.Namespace) -> dict:
  """Samples one motion for --prompt and writes it (module docstring); returns a summary."""
  out = pathlib.Path(args.out or "motion.npy")
  result = bundle.text_to_motion([args.prompt], seed=args.seed, cfg_scale=args.cfg_scale,
                                 flow_steps=args.flow_steps, max_latents=args.max_latents,
                                 temperature=args.temperature)[0]
  out.parent.mkdir(parents=True, exist_ok=True)
  files = [out.with_suffix(".npy"), out.with_name(out.stem + "_features.npy")]
  np.save(files[0], result["joints"])
  np.save(files[1], result["features"])
  if out.suffix == ".bvh":
    bundle.write_bvh(out, result["joints"])
    files.append(out)
  return {"prompt": args.prompt, "frames": int(len(result["joints"])), "latents": result["latents"],
          "files": [str(f) for f in files]}


def caption(bundle: bundle_lib.Bundle, path: str) -> dict:
  """The greedy caption of the features in `path`."""
  path = pathlib.Path(path)
  if path.suffix != ".npy" or not path.is_file():
    raise ValueError(f"--motion={path}: expected an existing .npy of {bundle.representation} features.")
  features = np.load(path)
  dim = bundle.stats["feature_mean"].shape[0]
  if features.ndim != 2 or features.shape[1] != dim:
    raise ValueError(f"--motion={path} has shape {features.shape}; the export's VAE reads "
                     f"{bundle.representation} features [T, {dim}] (denormalised). Joint positions "
                     "or a .bvh need converting first: python -m llamo_jax.sample captions those with JAX.")
  return {"motion": str(path), "caption": bundle.caption(features)}


def main(argv: list[str] | None = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    bundle = bundle_lib.load(args.model)
    result = {}
    if args.prompt:
      result["t2m"] = text_to_motion(bundle, args)
    if args.motion:
      result["caption"] = caption(bundle, args.motion)
  except (ValueError, FileNotFoundError) as e:
    print(f"torch_generate: error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(result, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
