"""The backend contract suite (``contract.DriverContract``), run once per backend."""
