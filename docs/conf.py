"""Sphinx settings for the monitor's manual (``make docs``)."""

project = "monitor"
author = "the monitor developers"
copyright = "the monitor developers"
extensions = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
# The pages are the reference: a broken link or heading is an error.
nitpicky = True
