"""Installs `song2vec` (the library) and `data_prep` (audio -> TFRecords)."""

from setuptools import find_packages, setup

setup(
  name="song2vec",
  version="0.1.0",
  description="Unsupervised song embeddings with Adversarially Learned Inference (JAX/Flax).",
  python_requires=">=3.11,<3.13",
  packages=find_packages(include=["song2vec", "song2vec.*", "data_prep", "data_prep.*"]),
  install_requires=[
    "jax>=0.10,<0.11",
    "jaxlib>=0.10,<0.11",
    "flax>=0.12,<0.13",
    "optax>=0.2.5,<0.3",
    "orbax-checkpoint>=0.11,<0.13",
    "tensorflow-cpu>=2.19,<2.22",
    "tensorflow-datasets>=4.9.8,<4.10",
    "importlib_resources>=6",  # tensorflow-datasets 4.9.10 imports it undeclared.
    "librosa>=0.11,<0.12",
    "soundfile>=0.13,<0.15",  # Bundles libsndfile >= 1.1 (MP3 read/write).
    "scikit-learn>=1.5,<2",
    "ml-collections>=1.0,<2",
    "absl-py>=2.1,<3",
    "matplotlib>=3.9,<4",
    "music21>=9.1,<11",
    "pretty_midi>=0.2.10,<0.3",
    "midirenderer>=0.1.3,<0.2",
    "tensorboard>=2.19,<2.22",  # tf.summary needs it; tensorflow-cpu does not pull it in.
    "tqdm>=4.66,<5",
    "numpy>=1.26,<3",
    # Libraries: the HNSW index (chosen over hnswlib and usearch by bench/ann.py)
    # and the interactive map.
    "faiss-cpu>=1.8,<2",
    "plotly>=5.20,<8",
  ],
  extras_require={
    # pytest-xdist: the suite on both cores; pytest-timeout: a hung test fails
    # (both set in pyproject's addopts).
    "dev": [
      "pytest>=8,<10",
      "pytest-xdist>=3.5,<4",
      "pytest-timeout>=2.3,<3",
      "ruff>=0.6",
      "apache-beam>=2.60,<3",
    ],
    # data_prep on Apache Beam (python -m data_prep --runner=...).
    "beam": ["apache-beam>=2.60,<3"],
    # bench/ann.py's peers, and the map's check in a headless browser.
    "bench": ["hnswlib>=0.8,<1", "usearch>=2.12,<3"],
    "browser": ["playwright>=1.40,<2"],
  },
)
