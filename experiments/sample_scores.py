"""The sample quality of the final models, from their saved weights in
--out_dir, by sample_quality.Scorer: the VAE's binary samples (and the
Frechet distance of their Bernoulli means) against the binarized test
images, the GAN's averaged generator against the grey-scale test images,
and each one's floor, as many real training images of the same kind.

    python -m experiments.sample_scores --data_dir ../shared/datasets  # ~3 min
"""

import os

import torch

import a3_gan_template as gan
import a3_vae_template as vae
import sample_quality
from datasets import load_bmnist_split
from experiments import common


def against(test, train, samples, classifier):
    """The scorer of `test`, the scores of `samples` and of as many training images."""
    scorer = sample_quality.Scorer(test, classifier)
    floor = common.real_subset(train, len(samples), 0)
    return scorer, scorer(samples, two_sample=True), scorer(floor, two_sample=True)


def study(args):
    classifier, info = sample_quality.load_classifier()
    seeded = torch.Generator().manual_seed(args.seed)
    model = common.load(vae.VAE(z_dim=20), os.path.join(args.out_dir, "vae_z20_model.pt"))
    binary, means = model.sample(args.samples, seeded)
    test, train = (load_bmnist_split(args.data_dir, s).float() for s in ("test", "train"))
    scorer, samples, floor = against(test, train, binary, classifier)
    result = {"samples": args.samples, "seed": args.seed, "vae": samples, "vae_floor": floor}
    result["vae"]["means_frechet_distance"] = scorer(means)["frechet_distance"]
    generator = common.load(gan.Generator(), os.path.join(args.out_dir, "gan_generator.pt"))
    images = (gan.generate(generator, torch.randn(args.samples, 100, generator=seeded)) + 1) / 2
    test, train = (sample_quality.unit_images(args.data_dir, s)[0] for s in ("test", "train"))
    _, result["gan"], result["gan_floor"] = against(test, train, images, classifier)
    for name in ("vae", "vae_floor", "gan", "gan_floor"):
        print(f"{name}: " + ", ".join(f"{k} {result[name][k]:.3f}" for k in common.SCORES))
    return {**result, "classifier": info}


if __name__ == "__main__":
    p = common.parser(__doc__, os.path.join("images", "sample_scores.json"))
    p.add_argument("--out_dir", default="images", help="holds vae_z20_model.pt, gan_generator.pt")
    p.add_argument("--samples", type=int, default=10_000, help="images per score")
    p.add_argument("--seed", type=int, default=0, help="seeds the samples")
    common.finish(study, p.parse_args())
