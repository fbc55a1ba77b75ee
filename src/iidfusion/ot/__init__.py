"""iidfusion.ot."""
