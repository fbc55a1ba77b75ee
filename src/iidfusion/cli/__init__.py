"""iidfusion.cli."""
