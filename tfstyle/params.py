"""Print the parameter counts of the CycleGAN-family networks as a markdown table.

    python -m tfstyle.params [--ngf=64] [--ndf=64]
"""

from absl import app, flags

from tfstyle.models import PatchDiscriminator, ResnetGenerator, count_params

flags.DEFINE_integer("ngf", 64, "Generator filters in the first layer.")
flags.DEFINE_integer("ndf", 64, "Discriminator filters in the first layer.")
FLAGS = flags.FLAGS

ROWS = [
    ("CycleGAN generator", "ResnetGenerator(block='resnet', n_blocks=9)", dict(block="resnet", n_blocks=9)),
    ("CycleGAN generator, 6 blocks", "ResnetGenerator(block='resnet', n_blocks=6)", dict(block="resnet", n_blocks=6)),
    ("CycleSE generator", "ResnetGenerator(block='se', n_blocks=9)", dict(block="se", n_blocks=9)),
    ("CycleSE generator, 6 blocks", "ResnetGenerator(block='se', n_blocks=6)", dict(block="se", n_blocks=6)),
    ("CycleDA generator", "ResnetGenerator(block='da', n_blocks=9)", dict(block="da", n_blocks=9)),
    ("CycleDA generator, 6 blocks", "ResnetGenerator(block='da', n_blocks=6)", dict(block="da", n_blocks=6)),
]


def main(argv):
    del argv
    print(f"| network | constructor (ngf={FLAGS.ngf}, ndf={FLAGS.ndf}) | parameters |")
    print("|---|---|---:|")
    for label, ctor, kwargs in ROWS:
        print(f"| {label} | `{ctor}` | {count_params(ResnetGenerator(ngf=FLAGS.ngf, **kwargs)):,} |")
    d = count_params(PatchDiscriminator(ndf=FLAGS.ndf))
    print(f"| 70x70 PatchGAN discriminator | `PatchDiscriminator(n_layers=3)` | {d:,} |")


if __name__ == "__main__":
    app.run(main)
