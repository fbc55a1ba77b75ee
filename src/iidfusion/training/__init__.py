"""iidfusion.training."""
