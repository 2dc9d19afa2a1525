"""One milestone of deep learning per file, each a LightningModule faithful to its paper (see each docstring)."""
