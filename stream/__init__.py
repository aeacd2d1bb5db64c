"""Live customer-advocacy KPIs from Kafka event streams."""

__all__ = ["__version__"]

__version__ = "0.1.0"
