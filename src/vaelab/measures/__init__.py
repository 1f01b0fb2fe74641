"""Measures of images shared by the stages: blur and reconstruction, spectra, the headline table."""
