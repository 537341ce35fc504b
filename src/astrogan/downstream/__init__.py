"""Generated images put to use: the denoising experiment of Holzschuh et al. 2022 (`experiment.run_denoise`)."""
