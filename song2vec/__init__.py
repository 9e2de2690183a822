"""song2vec: unsupervised song embeddings with Adversarially Learned Inference.

The notebook API, imported on first use so that `import song2vec` stays light:

    encoder = song2vec.load_encoder("runs/ali_lsgan")
    v = encoder.embed_file("song.mp3")
    lib = song2vec.Library.open("runs/ali_lsgan/library")
    lib.nearest("song.mp3", k=10)
"""

_LAZY = {
  "load_encoder": "song2vec.encoder",
  "Encoder": "song2vec.encoder",
  "Library": "song2vec.library",
}


def __getattr__(name):
  if name in _LAZY:
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'song2vec' has no attribute {name!r}")
