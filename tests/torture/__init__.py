"""Kill-torture machinery shared by tests/test_durability_torture.py and tools/torture.py."""
