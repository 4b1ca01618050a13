"""Kill-torture machinery shared by tests/drivers/netcdf/test_durability_torture.py and
tools/torture.py."""
