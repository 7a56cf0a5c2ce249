"""Time the official PyTorch CycleGAN's training step, for comparison with ours.

    python bench/pytorch_reference_step.py --reference_dir=PATH/pytorch-CycleGAN-and-pix2pix \
        --size=64 --ngf=32 --ndf=32 --n_blocks=6 --threads=1

Needs PyTorch (not a tfstyle dependency) and a checkout of the official code (e.g. the public
mirror zenml-io/pytorch-CycleGAN-and-pix2pix); nothing of it is copied here. It builds the
reference's CycleGANModel with its own option parser and times `optimize_parameters()` (G and F
update, image pools, D update: the same work as one tfstyle step) on random [-1, 1] batches,
after warm-up steps, reporting the median wall-clock and CPU seconds per iteration. CPU time
per step of a single-threaded run does not depend on other load on the machine.
"""

import argparse
import os
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference_dir", required=True)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ngf", type=int, default=32)
    parser.add_argument("--ndf", type=int, default=32)
    parser.add_argument("--n_blocks", type=int, choices=(6, 9), default=6)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.reference_dir, "models", "cycle_gan_model.py")):
        sys.exit(f"--reference_dir={args.reference_dir}: not a pytorch-CycleGAN-and-pix2pix checkout")
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, args.reference_dir)
    sys.argv = [sys.argv[0], "--dataroot", ".", "--name", "bench", "--model", "cycle_gan",
                "--ngf", str(args.ngf), "--ndf", str(args.ndf),
                "--netG", f"resnet_{args.n_blocks}blocks", "--load_size", str(args.size),
                "--crop_size", str(args.size), "--gpu_ids", "-1", "--display_id", "0",
                "--checkpoints_dir", os.path.join("/tmp", "tfstyle-bench-reference")]
    from models import create_model  # the reference's
    from options.train_options import TrainOptions  # the reference's
    opt = TrainOptions().parse()
    model = create_model(opt)
    model.setup(opt)
    walls, cpus = [], []
    for i in range(args.warmup + args.steps):
        batch = {"A": torch.rand(1, 3, args.size, args.size) * 2 - 1,
                 "B": torch.rand(1, 3, args.size, args.size) * 2 - 1,
                 "A_paths": ["a"], "B_paths": ["b"]}
        wall, cpu = time.perf_counter(), time.process_time()
        model.set_input(batch)
        model.optimize_parameters()
        if i >= args.warmup:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    median = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    print(f"| PyTorch {torch.__version__} reference | {args.size} | {torch.get_num_threads()} "
          f"| {median(walls):.3f} | {median(cpus):.3f} |")


if __name__ == "__main__":
    main()
