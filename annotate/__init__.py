"""Blinded human labeling studies of adversarial examples."""
