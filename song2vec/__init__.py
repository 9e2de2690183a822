"""song2vec: unsupervised song embeddings with Adversarially Learned Inference."""
