"""iidfusion.data."""
