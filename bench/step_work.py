"""How much arithmetic one CycleGAN training step is, and how fast this machine multiplies
matrices: the two numbers that say how close a step's time is to what the hardware allows
(bench/cyclegan_step.py prints both beside its comparison). No flags here, so tests import it.
"""

from step_timing import median, timed  # bench/, beside this module


def conv_macs(net, size):
    """Multiply-accumulates of one image through `net` (convolutions, transposed convolutions
    and matrix products, from the ops of its traced graph) and those of its first layer (the
    convolutions that read the 3-channel image, whose input gradient a step needs only for a
    generated image)."""
    import numpy as np
    import tensorflow as tf

    graph = tf.function(lambda x: net(x, training=True)).get_concrete_function(
        tf.TensorSpec([1, size, size, 3], net.compute_dtype)).graph
    def shape(tensor):
        return [int(d) for d in tensor.shape]

    total = first = 0
    for op in graph.get_operations():
        if op.type == "Conv2D":                   # filter [kh, kw, in, out]
            kh, kw, cin, _ = shape(op.inputs[1])
            macs = int(np.prod(shape(op.outputs[0]))) * kh * kw * cin
        elif op.type == "DepthwiseConv2dNative":  # filter [kh, kw, in, multiplier]
            kh, kw, cin, _ = shape(op.inputs[1])
            macs = int(np.prod(shape(op.outputs[0]))) * kh * kw
        elif op.type == "Conv2DBackpropInput":    # a transposed convolution's forward pass
            kh, kw, cout, _ = shape(op.inputs[1])
            macs = int(np.prod(shape(op.inputs[2]))) * kh * kw * cout
            cin = 0
        elif op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
            a = shape(op.inputs[0])
            k = a[-2] if op.get_attr("adj_x" if "Batch" in op.type else "transpose_a") else a[-1]
            macs, cin = int(np.prod(shape(op.outputs[0]))) * k, 0
        else:
            continue
        total += macs
        first += macs if cin == 3 else 0
    return total, first


def step_gflop(model) -> float:
    """Floating-point operations (2 per multiply-accumulate) of one training step, from the
    passes it makes (both libraries make the same): each generator translates the real batch
    (and, with the identity loss, the other domain's) and reconstructs; forward, weight and
    input gradients, except the first layer's input gradient on real images; the
    discriminators score the fakes for the generators (forward and input gradients) and real
    and pooled fakes for their own update (forward and weight gradients, input gradients below
    the first layer). For the global batch (all replicas)."""
    c = model.config
    g, g1 = conv_macs(model.G, c.crop_size)
    d, d1 = conv_macs(model.D_A, c.crop_size)
    real = 4 if c.lambda_identity > 0 else 2        # generator inputs that are data
    passes = real + 2                               # + the two reconstructions
    macs = (3 * passes * g - real * g1              # generators: forward, weights, inputs
            + 4 * d                                 # D on fakes in the G step
            + 12 * d - 4 * d1)                      # D step, batch of real and fake per D
    return 2 * macs * model.global_batch / 1e9


def matmul_gflops_on(threads: int) -> float:
    """matmul_gflops() in a fresh process whose TensorFlow uses `threads` intra-op threads
    (0: all cores): the machine's rate for that many cores, whatever pools the caller has."""
    import json
    import os
    import subprocess
    import sys
    out = subprocess.run([sys.executable, os.path.abspath(__file__), str(threads)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def matmul_gflops(n=2048, repeats=10) -> float:
    """The float32 matrix-product rate (GFLOP/s) TensorFlow reaches here, median of `repeats`
    [n, n] x [n, n] products on random data (the thread pools as configured; on a recent
    NVIDIA GPU TensorFlow computes float32 products in TF32)."""
    import tensorflow as tf
    a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
    product = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    for _ in range(2):
        float(product(a, b))
    walls = timed(lambda: float(product(a, b)), repeats)[0]
    return 2 * n ** 3 / median(walls) / 1e9


if __name__ == "__main__":  # python bench/step_work.py THREADS: print matmul_gflops()
    import json
    import sys

    import tensorflow as tf
    if int(sys.argv[1]):
        tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[1]))
    print(json.dumps(matmul_gflops()))
