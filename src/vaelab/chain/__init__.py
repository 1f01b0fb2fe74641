"""The ``chain`` stage: a VAE's reconstructions fed through an AE, pass by pass (study 000)."""
