"""llamo_jax: LLaMo (unified motion + language from a pretrained LLM) in JAX/Flax NNX."""
import setuptools

# Pinned: these versions are installed together and tested on Python 3.11 by .ci/run.
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "grain==0.2.18",
    "array_record==0.8.6",
    "tensorflow-datasets==4.9.10",
    "importlib_resources==7.1.0",
    "sentencepiece==0.2.3",
    "tokenizers==0.23.3",
    "ml-collections==1.1.0",
    "clu==0.0.12",
    # clu's metric writers and periodic actions import TensorFlow.
    "tensorflow-cpu==2.21.0",
    "tensorboard==2.21.0",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "matplotlib==3.11.2",
    "pillow==13.0.0",
    "absl-py==2.5.1",
    "etils==1.15.0",
    # Reading pretrained LLMs (HF safetensors folders, GGUF files) and writing HF safetensors:
    # the recipe starts from an imported LLM, so these are base, not the torch extra.
    "safetensors==0.8.0",
    "gguf==0.19.0",
    # Evaluation (llamo_jax/eval): caption metrics (coco-caption's BLEU and CIDEr-D, ROUGE-L) and
    # progress bars of long evaluations.
    "pycocoevalcap==1.2",
    "rouge-score==0.1.2",
    "tqdm==4.70.1",
]

# PyTorch side: parity checks against HF transformers and the PyTorch export. torch is
# pinned exactly so pip never resolves a range to a multi-GB CUDA build. Nothing in the
# base install (demo, training, sampling, evaluation, import_llm) imports these:
# .ci/check_base_install.py checks that in a venv without them.
TORCH_REQUIRES = [
    "torch==2.13.0",
    "transformers==5.24.0",
    "accelerate==1.15.0",
]

# Ahead-of-time compiles for TPU topologies on any machine (python -m llamo_jax.train_compile):
# the TPU compiler, the version jax 0.10.2's own `tpu` extra pins. Also what a TPU VM runs on.
TPU_REQUIRES = ["libtpu==0.0.42.1"]
# orbax's CheckpointManager on a gs:// workdir imports google.cloud.storage (pod runs).
GCS_REQUIRES = ["google-cloud-storage==3.17.1"]

setuptools.setup(
    name="llamo_jax",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["llamo_jax", "llamo_jax.*", "data_pipelines", "data_pipelines.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "torch": TORCH_REQUIRES,
        "tpu": TPU_REQUIRES + GCS_REQUIRES,
        "test": TORCH_REQUIRES + TPU_REQUIRES + ["pytest==9.2.0"],
    },
)
