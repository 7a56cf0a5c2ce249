"""CycleGAN, CycleSE and CycleDA: residual blocks (the registry), networks, losses, data,
trainer, translator."""
