"""Reusable pieces of the app's pages (the 3D viewer, structure cards)."""
