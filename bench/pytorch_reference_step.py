"""Time the official PyTorch CycleGAN's training step, for comparison with ours.

    python bench/pytorch_reference_step.py --reference_dir=PATH/pytorch-CycleGAN-and-pix2pix \
        --size=64 --ngf=32 --ndf=32 --n_blocks=6 --threads=1

Needs PyTorch (not a tfstyle dependency) and a checkout of the official code (e.g. the public
mirror zenml-io/pytorch-CycleGAN-and-pix2pix); nothing of it is copied here. It builds the
reference's CycleGANModel with its own option parser and times `optimize_parameters()` (G and F
update, image pools, D update: the same work as one tfstyle step) on random [-1, 1] batches,
after warm-up steps, reporting the median wall-clock and CPU seconds per iteration. CPU time
per step of a single-threaded run does not depend on other load on the machine to first order.
The reference's `data` package (it needs torchvision) is not used: the batches are fed here.

With --serve it is a worker of `bench/cyclegan_step.py --reference_dir=...`, which interleaves
rounds of it with rounds of ours: after building and warming up it prints one JSON line
{"ready": ...}; then each line `STEPS N` on stdin runs N steps and prints
{"wall": [...], "cpu": [...]}, and `QUIT` (or the end of stdin) ends it.
"""

import argparse
import os
import sys
import types

from step_timing import median, serve, timed  # bench/, beside this script


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference_dir", required=True)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ngf", type=int, default=32)
    parser.add_argument("--ndf", type=int, default=32)
    parser.add_argument("--n_blocks", type=int, choices=(6, 9), default=6)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--serve", action="store_true", help="worker mode (see above)")
    return parser.parse_args(argv)


def build(args):
    """The reference's CycleGANModel and a function running one optimize_parameters()."""
    if not os.path.isfile(os.path.join(args.reference_dir, "models", "cycle_gan_model.py")):
        sys.exit(f"--reference_dir={args.reference_dir}: not a pytorch-CycleGAN-and-pix2pix "
                 "checkout (no models/cycle_gan_model.py)")
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device=cuda: this PyTorch sees no CUDA device")
    sys.path.insert(0, args.reference_dir)
    sys.argv = [sys.argv[0], "--dataroot", ".", "--name", "bench", "--model", "cycle_gan",
                "--ngf", str(args.ngf), "--ndf", str(args.ndf),
                "--netG", f"resnet_{args.n_blocks}blocks", "--load_size", str(args.size),
                "--crop_size", str(args.size), "--gpu_ids", "0" if args.device == "cuda" else "-1",
                "--display_id", "0",
                "--checkpoints_dir", os.path.join("/tmp", "tfstyle-bench-reference")]
    # The option parser asks the reference's `data` package for the dataset's options; that
    # package imports torchvision, which this benchmark does without (it feeds the batches).
    stub = types.ModuleType("data")
    stub.get_option_setter = lambda name: (lambda parser, is_train: parser)
    sys.modules["data"] = stub
    from models import create_model  # the reference's
    from options.train_options import TrainOptions  # the reference's
    opt = TrainOptions().parse()
    model = create_model(opt)
    model.setup(opt)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

    def step():
        batch = {"A": torch.rand(1, 3, args.size, args.size) * 2 - 1,
                 "B": torch.rand(1, 3, args.size, args.size) * 2 - 1,
                 "A_paths": ["a"], "B_paths": ["b"]}
        model.set_input(batch)
        model.optimize_parameters()
        sync()

    return torch, step



def main():
    args = parse_args()
    torch, step = build(args)
    for _ in range(args.warmup):
        step()
    info = f"PyTorch {torch.__version__} reference, {torch.get_num_threads()} threads"
    if args.serve:
        serve(step, info)
        return
    walls, cpus = timed(step, args.steps)
    print(f"| PyTorch {torch.__version__} reference | {args.size} | {torch.get_num_threads()} "
          f"| {median(walls):.3f} | {median(cpus):.3f} |")


if __name__ == "__main__":
    main()
