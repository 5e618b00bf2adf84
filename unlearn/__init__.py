"""Unlearning stage: training the original model and (later) unlearning requests on it."""
