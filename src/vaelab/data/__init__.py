"""Data sets: download, extract and prepare the images the models train on."""
