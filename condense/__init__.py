"""Condensation stage: distil a training set into small synthetic sets, bucket by bucket, stored in HDF5."""
