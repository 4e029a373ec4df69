"""Customer value: the purchase and spend models (``models``); the projection comes later."""
