"""A VAE interpolation in the form of the GAN's: 3 rows of 9 Bernoulli means
decoded along the line between the encoded means of two binarized test
digits of different classes, ends included, chosen by the GAN's neutral rule
(a3_gan_template.save_interpolation) among --candidates test digits drawn at
random (the binarized test split is sorted by digit, in another order than
the grey-scale labels): the committed classifier labels them. Writes the PNG
and, in --out, the chosen test indices and classes.

    python -m experiments.vae_interpolation --data_dir ../shared/datasets  # seconds
"""

import os

import torch

import a3_vae_template as vae
import figures
import sample_quality
from datasets import load_bmnist_split
from experiments import common


def clearest_pairs(classifier, images, rows):
    """The ends of each row, indices into `images`, by the GAN's rule: a class
    is represented by its digit of widest logit margin over the runner-up,
    and the rows pair the classes in the order in which they first appear."""
    top = classifier(images).topk(2, dim=1)
    margin, labels = top.values[:, 0] - top.values[:, 1], top.indices[:, 0].tolist()
    clearest = {}  # a dict keeps the order of first appearance
    for i, label in enumerate(labels):
        if label not in clearest or margin[i] > margin[clearest[label]]:
            clearest[label] = i
    ends = list(clearest.values())
    return list(zip(ends[: 2 * rows : 2], ends[1 : 2 * rows : 2])), labels


@torch.no_grad()
def study(args):
    model = common.load(vae.VAE(z_dim=20), os.path.join(args.out_dir, "vae_z20_model.pt"))
    test = load_bmnist_split(args.data_dir, "test").float()
    candidates = common.real_subset(torch.arange(len(test)), args.candidates, args.seed)
    pairs, labels = clearest_pairs(sample_quality.load_classifier()[0], test[candidates], rows=3)
    t = torch.linspace(0, 1, 9).unsqueeze(1)
    lines, rows = [], []
    for a, b in pairs:
        (mean_a, mean_b), _ = model.encoder(test[candidates[[a, b]]])
        lines.append(model.decoder((1 - t) * mean_a + t * mean_b))
        rows.append(
            {"test_indices": candidates[[a, b]].tolist(), "classes": [labels[a], labels[b]]}
        )
    path = common.figure_path(args.out)
    figures.save_png(torch.cat(lines).view(-1, 1, 28, 28), path, upscale=4, nrow=9, pad_value=0.5)
    return {"seed": args.seed, "candidates": args.candidates, "steps": 7, "rows": rows}


if __name__ == "__main__":
    p = common.parser(__doc__, os.path.join("images", "vae_interpolation.json"))
    p.add_argument("--out_dir", default="images", help="holds vae_z20_model.pt")
    p.add_argument("--candidates", type=int, default=1000, help="test digits to choose from")
    p.add_argument("--seed", type=int, default=0, help="draws the candidates")
    common.finish(study, p.parse_args())
