"""Discovery: rank heads and save the sets you find (JSON / CSV), bound to the model they came from."""
