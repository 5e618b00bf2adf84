"""Attacks and defenses stage: membership inference, U-LiRA, model inversion, DC-U's defenses."""
