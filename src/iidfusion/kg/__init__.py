"""iidfusion.kg."""
