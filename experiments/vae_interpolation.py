"""A VAE interpolation drawn by the GAN script's own save_interpolation: the
decoder stands in for the generator and the encoded means of --candidates
binarized test digits, drawn at random (the split is sorted by digit), for
its noise. The GAN's neutral rule picks the ends of 3 rows of 9 Bernoulli
means among them; writes the PNG and, in --out, the test indices and classes.

    python -m experiments.vae_interpolation --data_dir ../shared/datasets  # seconds
"""

import os

import torch

import a3_gan_template as gan
import a3_vae_template as vae
import sample_quality
from datasets import load_bmnist_split
from experiments import common


class Decoded(torch.nn.Module):
    """The VAE's decoder as the GAN script's generator: z to Bernoulli means,
    mapped to [-1, 1] and shaped as images."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, z):
        return (2 * self.decoder(z) - 1).view(-1, 1, 28, 28)


@torch.no_grad()
def study(args):
    model = common.load(vae.VAE(z_dim=20), os.path.join(args.out_dir, "vae_z20_model.pt"))
    test = load_bmnist_split(args.data_dir, "test").float()
    candidates = common.real_subset(torch.arange(len(test)), args.candidates, args.seed)
    means = model.encoder(test[candidates])[0]
    classifier = sample_quality.load_classifier()[0]
    path = common.figure_path(args.out)
    rows = gan.save_interpolation(Decoded(model.decoder), classifier, means, path)
    for row in rows:
        row["test_indices"] = candidates[row.pop("noise_indices")].tolist()
    return {"seed": args.seed, "candidates": args.candidates, "steps": 7, "rows": rows}


if __name__ == "__main__":
    p = common.parser(__doc__, os.path.join("images", "vae_interpolation.json"))
    p.add_argument("--out_dir", default="images", help="holds vae_z20_model.pt")
    p.add_argument("--candidates", type=int, default=1000, help="test digits to choose from")
    p.add_argument("--seed", type=int, default=0, help="draws the candidates")
    common.finish(study, p.parse_args())
