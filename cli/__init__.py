"""blameset cli."""
