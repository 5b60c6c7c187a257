"""gdig: G-DIG instruction-data selection for machine translation (Pan et al., ACL 2024)."""

__version__ = "0.1.0"
