"""emda's built-in domain-adaptation methods, each registered as a plugin.

Nothing in ``emda`` imports this package: the methods arrive through the
``emda`` entry-point group in ``pyproject.toml``, the same way a third-party
plugin's do.
"""
