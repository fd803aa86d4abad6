"""Tools that print or measure what the docs show (tables, figures, pictures); run as `python -m docs.<tool>`."""
