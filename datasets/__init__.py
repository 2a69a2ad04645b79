"""Data loaders shared by the VAE and GAN scripts."""

from datasets.bmnist import DataError, TensorLoader, bmnist, load_bmnist_split
from datasets.mnist import load_mnist

__all__ = ["DataError", "TensorLoader", "bmnist", "load_bmnist_split", "load_mnist"]
