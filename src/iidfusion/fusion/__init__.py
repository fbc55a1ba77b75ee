"""iidfusion.fusion."""
