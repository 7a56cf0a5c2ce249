"""Print the parameter counts of the networks as markdown tables.

    python -m tfstyle.params [--ngf=64] [--ndf=64] [--autoencoder]

The CycleGAN-family generators (one row per registered block type, 9 and 6 blocks) and the
PatchGAN discriminator; with --autoencoder also the attention auto-encoders of the CBAM seed
per component, beside the seed's own totals (which include a full VGG19 with its
fully-connected layers).
"""

from absl import app, flags

flags.DEFINE_integer("ngf", 64, "Generator filters in the first layer.", lower_bound=1)
flags.DEFINE_integer("ndf", 64, "Discriminator filters in the first layer.", lower_bound=1)
flags.DEFINE_boolean("autoencoder", False, "Also print the attention auto-encoders' table "
                     "(builds every cut with random weights: a few seconds).")
FLAGS = flags.FLAGS


def cyclegan_table(ngf: int, ndf: int) -> str:
    from tfstyle.cyclegan.blocks import BLOCKS
    from tfstyle.cyclegan.networks import PatchDiscriminator, ResnetGenerator, count_params
    rows = [f"| network | constructor (ngf={ngf}, ndf={ndf}) | parameters |", "|---|---|---:|"]
    for name, block in BLOCKS.items():
        for n_blocks in (9, 6):
            suffix = "" if n_blocks == 9 else f", {n_blocks} blocks"
            count = count_params(ResnetGenerator(ngf=ngf, n_blocks=n_blocks, block=name))
            rows.append(f"| {block.label} generator{suffix} | `ResnetGenerator(block='{name}', "
                        f"n_blocks={n_blocks})` | {count:,} |")
    d = count_params(PatchDiscriminator(ndf=ndf))
    rows.append(f"| 70x70 PatchGAN discriminator | `PatchDiscriminator(n_layers=3)` | {d:,} |")
    return "\n".join(rows)


def autoencoder_table() -> str:
    from tfstyle.style.autoencoder import FULL_VGG19_PARAMETERS, parameter_table
    rows = ["| cut | attention | encoder | attention module | decoder | total (ours) "
            f"| seed total | seed - full VGG19 ({FULL_VGG19_PARAMETERS:,}) |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in parameter_table():
        seed = "" if r["seed"] is None else f"{r['seed']:,}"
        rest = "" if r["seed_minus_vgg19"] is None else f"{r['seed_minus_vgg19']:,}"
        name = {"self": "self (AAMS)", "cbam": "CBAM (seed)", "none": "none"}[r["attention_type"]]
        rows.append(f"| {r['cut']} | {name} | {r['encoder']:,} | {r['attention']:,} "
                    f"| {r['decoder']:,} | {r['total']:,} | {seed} | {rest} |")
    return "\n".join(rows)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    print(cyclegan_table(FLAGS.ngf, FLAGS.ndf))
    if FLAGS.autoencoder:
        print()
        print(autoencoder_table())


if __name__ == "__main__":
    app.run(main)
