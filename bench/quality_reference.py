"""The official PyTorch CycleGAN on the known-truth task, for bench/quality.py.

Builds the reference's own CycleGANModel with its own option parser (as
bench/pytorch_reference_step.py does) and feeds it the task's tiles with the reference's
unaligned sampling and augmentation, written here in numpy (its data package, which needs
torchvision, is not used): each epoch visits trainA in a
shuffled order and draws a random trainB tile for each, both resized to load_size (a no-op
for the task's tiles), randomly cropped to crop_size and flipped. The learning rate follows
the reference's linear rule through its own scheduler (`update_learning_rate()` after each
epoch). Needs PyTorch and a checkout of the reference (e.g. zenml-io/pytorch-CycleGAN-and-
pix2pix); nothing of it is copied here.
"""

from __future__ import annotations

import os
import sys
import time
import types

import numpy as np

from tfstyle.core.images import list_images, read_image, resize, to_model_range, to_uint8


def check_reference_dir(reference_dir: str) -> None:
    if not os.path.isfile(os.path.join(reference_dir, "models", "cycle_gan_model.py")):
        sys.exit(f"--reference_dir={reference_dir}: not a pytorch-CycleGAN-and-pix2pix "
                 "checkout")


def _domain(folder, load_size) -> np.ndarray:
    return np.stack([resize(read_image(p), (load_size, load_size)) for p in list_images(folder)])


def train(reference_dir: str, root, run_dir, setting: dict, seed: int, threads: int = 1):
    """Train the reference on the task in `root` with the benchmark's `setting` (ngf, ndf,
    n_blocks, load_size, crop_size, epochs, decay_epochs); returns (translate, cpu_seconds,
    wall_seconds, iterations) where translate maps RGB uint8 [N, H, W, 3] through G_A."""
    import torch
    check_reference_dir(reference_dir)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if reference_dir not in sys.path:
        sys.path.insert(0, reference_dir)
    saved_argv = sys.argv
    sys.argv = [saved_argv[0], "--dataroot", str(root), "--name", "quality", "--model",
                "cycle_gan", "--ngf", str(setting["ngf"]), "--ndf", str(setting["ndf"]),
                "--netG", f"resnet_{setting['n_blocks']}blocks",
                "--load_size", str(setting["load_size"]),
                "--crop_size", str(setting["crop_size"]),
                "--n_epochs", str(setting["epochs"]),
                "--n_epochs_decay", str(setting["decay_epochs"]),
                "--gpu_ids", "-1", "--display_id", "0", "--checkpoints_dir", str(run_dir)]
    # The reference's option parser asks its `data` package for the dataset's options; that
    # package needs torchvision, which this benchmark does without (it feeds the batches).
    stub = types.ModuleType("data")
    stub.get_option_setter = lambda name: (lambda parser, is_train: parser)
    saved_data = sys.modules.get("data")
    sys.modules["data"] = stub
    try:
        from models import create_model  # the reference's
        from options.train_options import TrainOptions  # the reference's
        opt = TrainOptions().parse()
        model = create_model(opt)
        model.setup(opt)
    finally:
        sys.argv = saved_argv
        if saved_data is None:
            sys.modules.pop("data", None)
        else:
            sys.modules["data"] = saved_data
    a = _domain(os.path.join(root, "trainA"), setting["load_size"])
    b = _domain(os.path.join(root, "trainB"), setting["load_size"])
    crop, load = setting["crop_size"], setting["load_size"]

    def augment(image):
        i, j = rng.integers(0, load - crop + 1, size=2)
        image = image[i:i + crop, j:j + crop]
        if rng.random() < 0.5:
            image = image[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(
            to_model_range(image).transpose(2, 0, 1)))[None]

    iterations = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(setting["epochs"] + setting["decay_epochs"]):
        for index in rng.permutation(len(a)):
            model.set_input({"A": augment(a[index]), "B": augment(b[rng.integers(len(b))]),
                             "A_paths": ["a"], "B_paths": ["b"]})
            model.optimize_parameters()
            iterations += 1
        model.update_learning_rate()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    generator = model.netG_A
    generator.eval()

    def translate(images):
        with torch.no_grad():
            x = torch.from_numpy(to_model_range(np.asarray(images)).transpose(0, 3, 1, 2))
            return to_uint8(generator(x).numpy().transpose(0, 2, 3, 1))

    return translate, cpu, wall, iterations
