"""Fix recipes: named, tested graph rewrites that make a model DLA-friendly."""
