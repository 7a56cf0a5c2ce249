"""Evaluation: FID/KID/PSNR/SSIM, the HTML comparison report, the rating study."""
