"""Timing of training steps and the worker protocol that bench/cyclegan_step.py speaks with
its workers (ours and bench/pytorch_reference_step.py): no TensorFlow or PyTorch here, so
either side imports it.

A worker builds its step, warms up, prints {"ready": INFO, ...facts}, then for each line "STEPS N" on
stdin runs N timed steps and prints {"wall": [...], "cpu": [...]}; "QUIT" or end of input
ends it."""

import json
import sys
import time


def timed(step, n):
    """Wall-clock and CPU (this process) seconds of each of `n` calls of `step`."""
    walls, cpus = [], []
    for _ in range(n):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def median(values):
    return sorted(values)[len(values) // 2]


def serve(step, info: str, **facts) -> None:
    """The worker side of the protocol, for a step already built and warmed up; `facts`
    (numbers about the step or the machine) travel with the ready line."""
    print(json.dumps({"ready": info, **facts}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "QUIT":
            break
        walls, cpus = timed(step, int(words[1]))
        print(json.dumps({"wall": walls, "cpu": cpus}), flush=True)
