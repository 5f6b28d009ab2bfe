"""Analytic signal-propagation theory (numpy/scipy only; never imports torch)."""
