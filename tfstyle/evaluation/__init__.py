"""Evaluation: FID/KID/PSNR/SSIM, the HTML comparison report, the seeds' rating studies
(`studies` what is asked, `rating` the web app, `answers` the store, `summary` the tables)."""
