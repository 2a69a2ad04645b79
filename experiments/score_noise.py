"""How far can the sample score be trusted? Two checks on a finished GAN run.

1. Noise: the two-sample accuracy of one test depends on its seed (the random
   split and the network's initial weights). This repeats the test with
   SEEDS seeds on the run's final averaged generator, its last iterate and the
   floor's real training digits; the score is the median of the first
   sample_quality.TWO_SAMPLE_RESTARTS of them.
2. Floor bias: the floor's digits are among those the classifier trained on.
   A classifier trained on the first 50k training digits gives the Frechet
   distance to the test digits of digits it saw and of the last 10k, which
   it did not.

    python -m experiments.score_noise --data_dir ../shared/datasets --run_dir images \\
        --out images/score_noise.json
"""
import os
import statistics
import sys

import torch

import a3_gan_template as gan
import sample_quality as sq
import utils
from experiments.gan_rescore import load_generator

SEEDS = 7
SEEN = 50000  # digits the floor-bias check's classifier trains on


def generators(run_dir, latent_dim):
    """The run's final averaged generator and its last iterate (from the
    checkpoint, which holds both)."""
    state = torch.load(os.path.join(run_dir, "gan_checkpoint.pt"), map_location="cpu",
                       weights_only=True)["state"]
    last = gan.Generator(latent_dim)
    last.load_state_dict(state["generator"])
    return {"averaged generator": load_generator(run_dir, latent_dim), "last iterate": last}


def restarts(images, reference):
    """The accuracy of each seed's test and what the score makes of them."""
    ours, theirs = images.flatten(1).float(), reference.flatten(1).float()
    accuracies = [sq.two_sample_test(ours, theirs, seed) for seed in range(SEEDS)]
    return {"accuracies": accuracies, "std": statistics.stdev(accuracies),
            "score": statistics.median(accuracies[:sq.TWO_SAMPLE_RESTARTS])}


def floor_bias(data_dir):
    """Frechet distances to the test digits, under a classifier trained on
    the first SEEN training digits, of 10k digits it saw and 10k it did not."""
    images, labels = sq.unit_images(data_dir, "train")
    model = sq.train_classifier(images[:SEEN], labels[:SEEN])
    reference = sq.feature_stats(model, sq.unit_images(data_dir, "test")[0])
    slices = {"seen, first 10k": slice(0, 10000), "seen, 40k to 50k": slice(40000, SEEN),
              "unseen, last 10k": slice(SEEN, None)}
    return {name: sq.frechet_distance(*sq.feature_stats(model, images[s]), *reference)
            for name, s in slices.items()}


def main(argv=None):
    parser = utils.parser(__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--run_dir", default="images", help="a finished GAN run's --out_dir")
    parser.add_argument("--out", default="images/score_noise.json")
    args = parser.parse_args(argv)
    code = utils.code_version()
    try:
        run = gan.build_parser().parse_args(["--data_dir", args.data_dir])
        train_images = gan.real_images(run, "train")
        score = gan.SampleScore(run, train_images)
        sets = {name: gan.to_unit(gan.generate(g, score.noise))
                for name, g in generators(args.run_dir, run.latent_dim).items()}
    except (OSError, KeyError, RuntimeError, utils.RunError) as err:
        sys.exit(f"error: {err}")
    sets["real training digits"] = gan.to_unit(train_images[:run.quality_samples])
    result = {"seeds": SEEDS, "restarts_in_score": sq.TWO_SAMPLE_RESTARTS, "sets": {}}
    for name, images in sets.items():
        result["sets"][name] = restarts(images, score.scorer.reference)
        print(f"{name:>22}: " + ", ".join(
            f"{a:.3f}" for a in result["sets"][name]["accuracies"]), flush=True)
    result["floor_frechet_distance"] = floor_bias(args.data_dir)
    result["floor_seen_images"] = SEEN
    print("floor bias:", result["floor_frechet_distance"])
    result["code"] = code
    utils.save_json(result, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
