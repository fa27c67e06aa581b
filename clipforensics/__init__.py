"""clipforensics: cross-manipulation deepfake detection on cached CLIP embeddings."""

__version__ = "0.1.0"
