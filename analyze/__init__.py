"""blameset analyze."""
