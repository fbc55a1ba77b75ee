"""iidfusion.losses."""
