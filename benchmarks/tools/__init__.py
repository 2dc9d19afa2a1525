"""Commands built on the harness: the demo, the feature classifier's export, the GPU check."""
