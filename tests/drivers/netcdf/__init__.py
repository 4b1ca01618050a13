"""The netCDF backend's own tests: its file format, recovery, journals and side files."""
