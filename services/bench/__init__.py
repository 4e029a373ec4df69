"""`touchstream bench`: every figure beside the limit measured in the same run, one module per measurement."""
