"""Data: sources, FITS I/O, preprocessing, the dataset artifact (build + reader), Galaxy10."""
