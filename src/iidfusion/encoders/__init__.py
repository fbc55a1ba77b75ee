"""iidfusion.encoders."""
